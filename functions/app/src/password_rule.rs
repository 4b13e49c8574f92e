//! The EventBridge rule `<stack>-db-password-rotated`: when Secrets Manager
//! finishes rotating the database password RDS manages (every 7 days by default),
//! it starts a repair of the stack at once. ECS injects `MB_DB_PASS` only when a
//! task starts, so the tasks running at the rotation hold a password that no
//! longer opens a connection; the repair sees that and replaces them (see
//! `service.rs`). Without the rule, the next scheduled or manual repair does.
//!
//! The event is CloudTrail's `RotationSucceeded` (detail-type `AWS Service Event
//! via CloudTrail`, the secret's ARN in `additionalEventData.SecretId`). The
//! target is the deployment's state machine, started with the role `mbstack
//! deploy` made for EventBridge (`<prefix>-events`: StartExecution on that state
//! machine only), with the input `{"stack": …, "action": "apply"}`.

use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use aws_sdk_eventbridge::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, Action, TierError, Work};
use serde_json::{json, Value};

pub(crate) const KIND: &str = "event-rule";
const TARGET_ID: &str = "mbstack-repair";

pub(crate) fn name(stack: &str) -> String {
    format!("{stack}-db-password-rotated")
}

/// Where the rule sends the repair: the state machine, and the role EventBridge
/// starts it with.
pub(crate) struct Repair {
    pub state_machine_arn: String,
    pub role_arn: String,
}

fn pattern(secret_arn: &str) -> Value {
    json!({
        "source": ["aws.secretsmanager"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["secretsmanager.amazonaws.com"],
            "eventName": ["RotationSucceeded"],
            "additionalEventData": {"SecretId": [secret_arn]}
        }
    })
}

fn input(stack: &str) -> String {
    json!({"stack": stack, "action": "apply"}).to_string()
}

struct Found {
    arn: String,
    pattern: Option<Value>,
    enabled: bool,
    tags: Vec<(String, String)>,
}

async fn find(events: &Client, w: &Work<'_>) -> Result<Option<Found>, TierError> {
    let rule = name(&w.spec.stack);
    let out = match events.describe_rule().name(&rule).send().await {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("events:DescribeRule", e)),
    };
    let arn = out.arn().unwrap_or_default().to_string();
    let tags = events
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("events:ListTagsForResource", e))?;
    let tags: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    if !w.is_ours(&tags) {
        return Err(w.not_ours("EventBridge rule", &rule));
    }
    Ok(Some(Found {
        arn,
        pattern: out
            .event_pattern()
            .and_then(|p| serde_json::from_str(p).ok()),
        enabled: out.state() == Some(&RuleState::Enabled),
        tags,
    }))
}

/// Whether the rule's one target is the repair wanted.
async fn target_is(
    events: &Client,
    rule: &str,
    repair: &Repair,
    stack: &str,
) -> Result<bool, TierError> {
    let out = events
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .map_err(|e| aws_error("events:ListTargetsByRule", e))?;
    let want: Option<Value> = serde_json::from_str(&input(stack)).ok();
    Ok(match out.targets() {
        [t] => {
            t.arn() == repair.state_machine_arn
                && t.role_arn() == Some(repair.role_arn.as_str())
                && t.input()
                    .and_then(|i| serde_json::from_str::<Value>(i).ok())
                    == want
        }
        _ => false,
    })
}

/// Converges the rule for the database password `secret_arn` (None: not known
/// yet, in a plan). Nothing without `repair` (the tier called outside a
/// deployment's state machine).
pub(crate) async fn ensure(
    events: &Client,
    w: &mut Work<'_>,
    secret_arn: Option<&str>,
    repair: Option<&Repair>,
) -> Result<(), TierError> {
    let Some(repair) = repair else {
        return Ok(());
    };
    let rule = name(&w.spec.stack);
    let found = find(events, w).await?;
    let Some(secret_arn) = secret_arn else {
        if found.is_none() {
            w.record_named(
                KIND,
                "db-password-rotated",
                Action::Create,
                "repair when the database password rotates",
            );
        }
        return Ok(());
    };
    let want = pattern(secret_arn);
    let (action, detail) = match &found {
        None => (
            Action::Create,
            "repair the stack when the database password rotates".to_string(),
        ),
        Some(f) => {
            let same_rule = f.pattern.as_ref() == Some(&want) && f.enabled;
            let same_target = target_is(events, &rule, repair, &w.spec.stack).await?;
            match (same_rule, same_target) {
                (true, true) => {
                    w.record(
                        KIND,
                        &f.arn,
                        Action::None,
                        "repair when the database password rotates",
                    );
                    return Ok(());
                }
                (false, _) => (
                    Action::Update,
                    "event pattern → this database's password, enabled".to_string(),
                ),
                (true, false) => (
                    Action::Update,
                    "target → this deployment's state machine".to_string(),
                ),
            }
        }
    };
    let mut arn = found
        .as_ref()
        .map(|f| f.arn.clone())
        .unwrap_or_else(|| rule.clone());
    if !w.dry_run {
        let mut put = events
            .put_rule()
            .name(&rule)
            .event_pattern(want.to_string())
            .state(RuleState::Enabled)
            .description(format!(
                "mbstack {}: repair the stack (new Metabase tasks) when RDS rotates its password",
                w.spec.stack
            ));
        if found.is_none() {
            for (k, v) in w.tags("password-rule") {
                put =
                    put.tags(Tag::builder().key(k).value(v).build().map_err(|e| {
                        TierError::Terminal(format!("building the rule's tags: {e}"))
                    })?);
            }
        }
        let out = put
            .send()
            .await
            .map_err(|e| aws_error("events:PutRule", e))?;
        arn = out.rule_arn().unwrap_or(&arn).to_string();
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(&repair.state_machine_arn)
            .role_arn(&repair.role_arn)
            .input(input(&w.spec.stack))
            .build()
            .map_err(|e| TierError::Terminal(format!("building the rule's target: {e}")))?;
        let put = events
            .put_targets()
            .rule(&rule)
            .targets(target)
            .send()
            .await
            .map_err(|e| aws_error("events:PutTargets", e))?;
        if put.failed_entry_count() > 0 {
            let why: Vec<String> = put
                .failed_entries()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code().unwrap_or(""),
                        f.error_message().unwrap_or("")
                    )
                })
                .collect();
            return Err(TierError::Terminal(format!(
                "events:PutTargets refused the repair target of {rule}: {}",
                why.join("; ")
            )));
        }
    }
    w.record(KIND, arn, action, detail);
    Ok(())
}

/// Removes the rule (its target first, as EventBridge requires).
pub(crate) async fn delete(events: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some(found) = find(events, w).await? else {
        return Ok(());
    };
    if !w.owns(&found.tags) {
        return Ok(());
    }
    let rule = name(&w.spec.stack);
    events
        .remove_targets()
        .rule(&rule)
        .ids(TARGET_ID)
        .send()
        .await
        .map_err(|e| aws_error("events:RemoveTargets", e))?;
    events
        .delete_rule()
        .name(&rule)
        .send()
        .await
        .map_err(|e| aws_error("events:DeleteRule", e))?;
    w.record(KIND, &found.arn, Action::Delete, "rotation repair rule");
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::on(
        "PasswordRule",
        &[
            "events:DescribeRule",
            "events:ListTagsForResource",
            "events:ListTargetsByRule",
            "events:PutRule",
            "events:PutTargets",
            "events:RemoveTargets",
            "events:DeleteRule",
            "events:TagResource",
        ],
        &["arn:${Partition}:events:*:*:rule/*-db-password-rotated"],
    ),
    // EventBridge starts the repair with the deployment's own role, and only it.
    Permission::on(
        "PassEventsRole",
        &["iam:PassRole"],
        &["arn:${Partition}:iam::*:role/${Prefix}-events"],
    )
    .when(r#"{"StringEquals": {"iam:PassedToService": "events.amazonaws.com"}}"#),
];
