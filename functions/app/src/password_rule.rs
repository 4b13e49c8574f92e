//! The EventBridge rule `<stack>-db-password-rotated`, which replaces
//! Metabase's tasks after RDS rotates the database password (every 7 days by
//! default). ECS injects `MB_DB_PASS` only when a task starts, so the tasks
//! running at the rotation hold a password that no longer opens a connection.
//!
//! The rule fires on two things (EventBridge's PutRule: "A rule can have both
//! an EventPattern and a ScheduleExpression, in which case the rule triggers on
//! matching events as well as on a schedule"):
//! - CloudTrail's `RotationSucceeded` for the stack's secret (detail-type `AWS
//!   Service Event via CloudTrail`, the secret's ARN in
//!   `additionalEventData.SecretId`), at once;
//! - once a day (`rate(1 day)`): Secrets Manager's events reach EventBridge
//!   through CloudTrail "on a best effort basis", so a lost one is caught the
//!   next day at the latest.
//!
//! One rule, not two: EventBridge allows 300 rules per bus and region (100 in
//! some), and each stack has this one.
//!
//! The target is the deployment's state machine, started with the role
//! `mbstack deploy` made for EventBridge (`<prefix>-events`: StartExecution on
//! that state machine only), with the input `{"stack": …, "action":
//! "password-check"}`: Prepare applies the stack only when its tasks started
//! before the last rotation, and waits for a stack another run holds
//! (`mbstack_control`).

use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use aws_sdk_eventbridge::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, TierError, Verb, Work};
use serde_json::{json, Value};

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
    json!({"stack": stack, "action": "password-check"}).to_string()
}

/// How often the rule fires without an event.
const DAILY: &str = "rate(1 day)";

/// The stack's rotation rule, for the database password `secret_arn` (None:
/// not known yet, in a plan), sending `repair`.
pub(crate) struct PasswordRules {
    pub events: Client,
    pub secret_arn: Option<String>,
    pub repair: Option<Repair>,
}

/// A rule: its ARN, pattern, state, tags, and whether its one target is the
/// repair wanted (read only when a repair is wanted).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    name: String,
    arn: String,
    pattern: Option<Value>,
    schedule: Option<String>,
    enabled: bool,
    tags: Vec<(String, String)>,
    target_ok: bool,
}

/// One change in place; either is made by putting the rule and its target.
pub(crate) enum Step {
    Pattern,
    Target,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Pattern => {
                "event pattern → this database's password, schedule → rate(1 day), enabled"
            }
            Step::Target => "target → this deployment's state machine",
        })
    }
}

impl PasswordRules {
    /// Whether the rule's one target is the repair wanted.
    async fn target_is(&self, rule: &str, repair: &Repair, stack: &str) -> Result<bool, TierError> {
        let out = self
            .events
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

    /// Puts the rule (with its tags when it is new) and its target.
    async fn put(&self, w: &Work<'_>, new: bool) -> Result<String, TierError> {
        let (Some(secret_arn), Some(repair)) = (&self.secret_arn, &self.repair) else {
            return Err(TierError::Terminal(
                "the rotation rule needs the database's secret and the deployment's state machine"
                    .into(),
            ));
        };
        let rule = name(&w.spec.stack);
        let mut put = self
            .events
            .put_rule()
            .name(&rule)
            .event_pattern(pattern(secret_arn).to_string())
            .schedule_expression(DAILY)
            .state(RuleState::Enabled)
            .description(format!(
                "mbstack {}: new Metabase tasks when RDS rotates the database password (checked daily too)",
                w.spec.stack
            ));
        if new {
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
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(&repair.state_machine_arn)
            .role_arn(&repair.role_arn)
            .input(input(&w.spec.stack))
            .build()
            .map_err(|e| TierError::Terminal(format!("building the rule's target: {e}")))?;
        let put = self
            .events
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
        Ok(out.rule_arn().unwrap_or(&rule).to_string())
    }
}

impl Resource for PasswordRules {
    const KIND: &'static str = "event-rule";
    const LABEL: &'static str = "EventBridge rule";
    type Live = Live;
    type Want = ();
    type Step = Step;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        name(&w.spec.stack)
    }
    mbstack_core::resource_key!(name: name, id: arn, tags: tags);

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let rule = name(&w.spec.stack);
        let call = self.events.describe_rule().name(&rule).send().await;
        let codes = ["ResourceNotFoundException"];
        let Some(out) = found("events:DescribeRule", call, &codes)? else {
            return Ok(Vec::new());
        };
        let arn = out.arn().unwrap_or_default().to_string();
        let tags = self
            .events
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
        let target_ok = match (&self.repair, &self.secret_arn, w.verb) {
            (Some(repair), Some(_), Verb::Plan | Verb::Apply | Verb::Check) => {
                // Not ours: refused by the converge, so no need to read further.
                !w.is_ours(&tags) || self.target_is(&rule, repair, &w.spec.stack).await?
            }
            _ => true,
        };
        Ok(vec![Live {
            name: rule,
            arn,
            pattern: out
                .event_pattern()
                .and_then(|p| serde_json::from_str(p).ok()),
            schedule: out.schedule_expression().map(str::to_string),
            enabled: out.state() == Some(&RuleState::Enabled),
            tags,
            target_ok,
        }])
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Step>, TierError> {
        let Some(secret_arn) = &self.secret_arn else {
            return Ok(vec![]);
        };
        Ok(
            if live.pattern.as_ref() != Some(&pattern(secret_arn))
                || live.schedule.as_deref() != Some(DAILY)
                || !live.enabled
            {
                vec![Step::Pattern]
            } else if !live.target_ok {
                vec![Step::Target]
            } else {
                vec![]
            },
        )
    }

    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        "new tasks when the database password rotates (checked daily too)".into()
    }
    fn summary(&self, _w: &Work<'_>, _live: &Live) -> String {
        "new tasks when the database password rotates (checked daily too)".into()
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let arn = self.put(w, true).await?;
        Ok(Live {
            name: name(&w.spec.stack),
            arn,
            pattern: self.secret_arn.as_deref().map(pattern),
            schedule: Some(DAILY.to_string()),
            enabled: true,
            tags: w.tags("password-rule"),
            target_ok: true,
        })
    }

    async fn update(
        &self,
        w: &Work<'_>,
        _live: &Live,
        _want: &(),
        _steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        self.put(w, false).await?;
        Ok(None)
    }

    /// Its target first, as EventBridge requires.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.events
            .remove_targets()
            .rule(&live.name)
            .ids(TARGET_ID)
            .send()
            .await
            .map_err(|e| aws_error("events:RemoveTargets", e))?;
        self.events
            .delete_rule()
            .name(&live.name)
            .send()
            .await
            .map_err(|e| aws_error("events:DeleteRule", e))?;
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, _w: &Work<'_>, _live: &Live) -> String {
        "rotation repair rule".into()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use mbstack_core::{StackSpec, Tier};

    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-1-AbCdEf";

    fn events() -> Client {
        Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
                .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn rules(secret_arn: Option<&str>) -> PasswordRules {
        PasswordRules {
            events: events(),
            secret_arn: secret_arn.map(str::to_string),
            repair: Some(Repair {
                state_machine_arn: "arn:aws:states:us-east-1:111122223333:stateMachine:mbstack"
                    .into(),
                role_arn: "arn:aws:iam::111122223333:role/mbstack-events".into(),
            }),
        }
    }

    /// A rule on `secret`'s rotation, daily, enabled, with the repair target.
    fn rule(secret: &str) -> Live {
        Live {
            name: name("s"),
            arn: "arn:aws:events:us-east-1:111122223333:rule/s-db-password-rotated".into(),
            pattern: Some(pattern(secret)),
            schedule: Some("rate(1 day)".into()),
            enabled: true,
            tags: Vec::new(),
            target_ok: true,
        }
    }

    #[test]
    fn a_daily_enabled_rule_on_this_password_with_its_repair_needs_nothing() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = rules(Some(SECRET)).diff(&w, &rule(SECRET), &()).unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_rule_on_another_password_or_disabled_or_not_daily_is_put_again() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let kind = rules(Some(SECRET));
        let other = rule("arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-0-ZyXwVu");
        let mut disabled = rule(SECRET);
        disabled.enabled = false;
        let mut hourly = rule(SECRET);
        hourly.schedule = Some("rate(1 hour)".into());
        for live in [other, disabled, hourly] {
            let steps = kind.diff(&w, &live, &()).unwrap();
            assert!(matches!(steps.as_slice(), [Step::Pattern]));
        }
    }

    #[test]
    fn a_rule_whose_target_is_not_the_repair_gets_it_back() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let mut live = rule(SECRET);
        live.target_ok = false;
        let steps = rules(Some(SECRET)).diff(&w, &live, &()).unwrap();
        assert!(matches!(steps.as_slice(), [Step::Target]));
    }

    #[test]
    fn a_plan_that_does_not_know_the_secret_yet_changes_nothing() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Plan);
        let mut live = rule(SECRET);
        live.enabled = false;
        assert!(rules(None).diff(&w, &live, &()).unwrap().is_empty());
    }
}
