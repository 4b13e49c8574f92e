//! EventBridge Scheduler schedules of a stack (nightly repair, pause, resume),
//! in the schedule group `<prefix>`, started with a role that may only start
//! the deployment's state machine.

use super::*;

/// One schedule: `repair` (apply the stored spec), `pause` or `resume`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: String,
    pub expression: String,
}

/// Creates or updates the stack's schedules in the group `<prefix>`.
pub async fn set_schedules(
    aws: &Aws,
    prefix: &str,
    stack: &str,
    schedules: &[Schedule],
    timezone: &str,
) -> Result<Vec<String>, TierError> {
    let sfn = client!(aws_sdk_sfn, aws);
    let Some(sm) = find_state_machine(&sfn, &format!("{prefix}-provision")).await? else {
        return Err(TierError::Terminal(format!(
            "no state machine {prefix}-provision: run mbstack deploy first"
        )));
    };
    let iam = client!(aws_sdk_iam, aws);
    let mut report = Report::default();
    let ctx = Context {
        partition: sm.split(':').nth(1).unwrap_or("aws").to_string(),
        prefix: prefix.to_string(),
        account: account_of(&sm).to_string(),
        notify_topic_arn: None,
        hosted_zones: None,
        notify_kms_key: None,
    };
    let role = ensure_role(
        &iam,
        &format!("{prefix}-scheduler"),
        "scheduler.amazonaws.com",
        &policies::scheduler_policy(&sm),
        &ctx,
        &mut report,
    )
    .await?;
    let sched = client!(aws_sdk_scheduler, aws);
    match sched.create_schedule_group().name(prefix).send().await {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("ConflictException") => {}
        Err(e) => return Err(aws_error("scheduler:CreateScheduleGroup", e)),
    }
    let mut done = Vec::new();
    for s in schedules {
        let action = if s.kind == "repair" {
            "apply"
        } else {
            s.kind.as_str()
        };
        let input = json!({"stack": stack, "action": action}).to_string();
        let target = aws_sdk_scheduler::types::Target::builder()
            .arn(&sm)
            .role_arn(&role)
            .input(input)
            .build()
            .map_err(|e| TierError::Terminal(format!("building the schedule target: {e}")))?;
        let window = aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
            .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| TierError::Terminal(format!("building the schedule window: {e}")))?;
        let sname = format!("{stack}-{}", s.kind);
        let existing = sched
            .get_schedule()
            .group_name(prefix)
            .name(&sname)
            .send()
            .await
            .ok();
        let was = existing.as_ref().map(|e| {
            format!(
                " (replaces {} ({}))",
                e.schedule_expression().unwrap_or("?"),
                e.schedule_expression_timezone().unwrap_or("UTC")
            )
        });
        // CreateSchedule and UpdateSchedule take the same fields.
        macro_rules! schedule {
            ($call:expr) => {
                $call
                    .group_name(prefix)
                    .name(&sname)
                    .schedule_expression(&s.expression)
                    .schedule_expression_timezone(timezone)
                    .target(target)
                    .flexible_time_window(window)
                    .send()
            };
        }
        if existing.is_some() {
            schedule!(sched.update_schedule())
                .await
                .map_err(|e| aws_error("scheduler:UpdateSchedule", e))?;
        } else {
            schedule!(sched.create_schedule())
                .await
                .map_err(|e| aws_error("scheduler:CreateSchedule", e))?;
        }
        done.push(format!(
            "{sname}: {} ({timezone}) → {action}{}",
            s.expression,
            was.unwrap_or_default()
        ));
    }
    Ok(done)
}

/// The schedules in our group: (name, expression, time zone, input).
pub async fn list_schedules(
    aws: &Aws,
    prefix: &str,
) -> Result<Vec<(String, String, String, String)>, TierError> {
    let sched = client!(aws_sdk_scheduler, aws);
    let page = match sched.list_schedules().group_name(prefix).send().await {
        Ok(p) => p,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(Vec::new()),
        Err(e) => return Err(aws_error("scheduler:ListSchedules", e)),
    };
    let mut out = Vec::new();
    for s in page.schedules() {
        let Some(n) = s.name() else { continue };
        let d = sched
            .get_schedule()
            .group_name(prefix)
            .name(n)
            .send()
            .await
            .map_err(|e| aws_error("scheduler:GetSchedule", e))?;
        out.push((
            n.to_string(),
            d.schedule_expression().unwrap_or("").to_string(),
            d.schedule_expression_timezone()
                .unwrap_or("UTC")
                .to_string(),
            d.target().and_then(|t| t.input()).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

/// Removes the stack's schedules (every schedule of the group when `stack` is None).
pub async fn remove_schedules(
    aws: &Aws,
    prefix: &str,
    stack: Option<&str>,
    done: &mut Vec<String>,
) -> Result<(), TierError> {
    let sched = client!(aws_sdk_scheduler, aws);
    for (n, _, _, _) in list_schedules(aws, prefix).await? {
        if stack.is_none_or(|s| n.starts_with(&format!("{s}-"))) {
            sched
                .delete_schedule()
                .group_name(prefix)
                .name(&n)
                .send()
                .await
                .map_err(|e| aws_error("scheduler:DeleteSchedule", e))?;
            done.push(format!("schedule {n}"));
        }
    }
    if stack.is_none() {
        let _ = sched.delete_schedule_group().name(prefix).send().await;
    }
    Ok(())
}
