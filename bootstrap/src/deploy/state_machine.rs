//! The state machine: its execution log group (errors only, no payloads), its
//! definition rendered for this deployment, created or updated when it differs.

use super::*;

/// What the state machine is wired to.
pub(super) struct Wiring<'a> {
    pub opts: &'a Options,
    pub ctx: &'a Context,
    pub region: &'a str,
    /// Every function's ARN.
    pub functions: &'a [(Tier, String)],
    /// The boundary policy of the app tier's roles.
    pub boundary: &'a str,
    /// The state machine's own role.
    pub role: &'a str,
}

/// Creates or updates the state machine; its ARN.
pub(super) async fn ensure(
    logs: &aws_sdk_cloudwatchlogs::Client,
    sfn: &aws_sdk_sfn::Client,
    w: &Wiring<'_>,
    report: &mut Report,
) -> Result<String, TierError> {
    let partition = w.ctx.partition.as_str();
    // The execution log group (errors only, without execution data: no payloads).
    let group = format!("/aws/vendedlogs/states/{}-provision", w.opts.prefix);
    let existing = logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .map_err(|e| aws_error("logs:DescribeLogGroups", e))?;
    if !existing
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group.as_str()))
    {
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .map_err(|e| aws_error("logs:CreateLogGroup", e))?;
        logs.put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(30)
            .send()
            .await
            .map_err(|e| aws_error("logs:PutRetentionPolicy", e))?;
        report.changes.push(format!("create log group {group}"));
    }
    let group_arn = format!(
        "arn:{partition}:logs:{}:{}:log-group:{group}:*",
        w.region, w.ctx.account
    );
    let logging = aws_sdk_sfn::types::LoggingConfiguration::builder()
        .level(aws_sdk_sfn::types::LogLevel::Error)
        .include_execution_data(false)
        .destinations(
            aws_sdk_sfn::types::LogDestination::builder()
                .cloud_watch_logs_log_group(
                    aws_sdk_sfn::types::CloudWatchLogsLogGroup::builder()
                        .log_group_arn(&group_arn)
                        .build(),
                )
                .build(),
        )
        .build();
    let definition = mbstack_statemachine::render(&mbstack_statemachine::Deployment {
        functions: w.functions,
        partition,
        role_boundary_arn: w.boundary,
        events_role_arn: &w.ctx.events_role_arn(),
        hosted_zones: w.ctx.hosted_zones.as_deref(),
        notify_topic_arn: w.ctx.notify_topic_arn.as_deref().unwrap_or(""),
    });
    let sm_name = format!("{}-provision", w.opts.prefix);
    let found = find_state_machine(sfn, &sm_name).await?;
    let arn = match found {
        Some(arn) => {
            let d = sfn
                .describe_state_machine()
                .state_machine_arn(&arn)
                .send()
                .await
                .map_err(|e| aws_error("states:DescribeStateMachine", e))?;
            let same_def = serde_json::from_str::<Value>(d.definition()).ok()
                == serde_json::from_str::<Value>(&definition).ok();
            if !same_def || d.role_arn() != w.role {
                patiently(
                    "states:UpdateStateMachine",
                    w.opts.first_wait,
                    report,
                    || {
                        sfn.update_state_machine()
                            .state_machine_arn(&arn)
                            .definition(&definition)
                            .role_arn(w.role)
                            .logging_configuration(logging.clone())
                            .send()
                    },
                )
                .await
                .map_err(|e| aws_error("states:UpdateStateMachine", e))?;
                report.changes.push(format!("state machine {sm_name}"));
            } else {
                report.unchanged.push(format!("state machine {sm_name}"));
            }
            arn
        }
        None => {
            let out = patiently(
                "states:CreateStateMachine",
                w.opts.first_wait,
                report,
                || {
                    sfn.create_state_machine()
                        .name(&sm_name)
                        .definition(&definition)
                        .role_arn(w.role)
                        .logging_configuration(logging.clone())
                        .tags(
                            aws_sdk_sfn::types::Tag::builder()
                                .key("mbstack:deployment")
                                .value(&w.opts.prefix)
                                .build(),
                        )
                        .send()
                },
            )
            .await
            .map_err(|e| aws_error("states:CreateStateMachine", e))?;
            report
                .changes
                .push(format!("create state machine {sm_name}"));
            out.state_machine_arn().to_string()
        }
    };
    Ok(arn)
}

pub async fn find_state_machine(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
) -> Result<Option<String>, TierError> {
    let mut token = None;
    loop {
        let page = sfn
            .list_state_machines()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("states:ListStateMachines", e))?;
        if let Some(m) = page.state_machines().iter().find(|m| m.name() == name) {
            return Ok(Some(m.state_machine_arn().to_string()));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(None);
        }
    }
}

/// The state machine `name` as DescribeStateMachine tells it, if it exists.
pub async fn describe_named(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
) -> Result<
    Option<aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineOutput>,
    TierError,
> {
    let Some(arn) = find_state_machine(sfn, name).await? else {
        return Ok(None);
    };
    sfn.describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .map(Some)
        .map_err(|e| aws_error("states:DescribeStateMachine", e))
}
