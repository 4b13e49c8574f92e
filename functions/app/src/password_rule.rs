//! The stack's two EventBridge rules that replace Metabase's tasks after RDS
//! rotates the database password (every 7 days by default). ECS injects
//! `MB_DB_PASS` only when a task starts, so the tasks running at the rotation
//! hold a password that no longer opens a connection.
//!
//! - `<stack>-db-password-rotated`: on CloudTrail's `RotationSucceeded` for the
//!   stack's secret (detail-type `AWS Service Event via CloudTrail`, the
//!   secret's ARN in `additionalEventData.SecretId`), at once.
//! - `<stack>-db-password-check`: once a day (`rate(1 day)`). Secrets Manager's
//!   events reach EventBridge through CloudTrail "on a best effort basis": a
//!   lost one is caught the next day at the latest.
//!
//! Both start the deployment's state machine with `{"stack": …, "action":
//! "password-check"}` (with the role `mbstack deploy` made for EventBridge,
//! `<prefix>-events`: StartExecution on that state machine only). Prepare
//! compares the rotation with the start of the service's tasks and applies
//! the stack only when they hold an older password; it waits for a stack
//! another run holds instead of failing (see `mbstack_control`).

use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use aws_sdk_eventbridge::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, TierError, Verb, Work};
use serde_json::{json, Value};

const TARGET_ID: &str = "mbstack-repair";

/// The two rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// On the rotation's event.
    Rotated,
    /// Once a day.
    Daily,
}

impl Rule {
    pub(crate) const BOTH: [Rule; 2] = [Rule::Rotated, Rule::Daily];

    pub(crate) fn name(self, stack: &str) -> String {
        match self {
            Rule::Rotated => format!("{stack}-db-password-rotated"),
            Rule::Daily => format!("{stack}-db-password-check"),
        }
    }

    fn of(name: &str, stack: &str) -> Option<Rule> {
        Rule::BOTH.into_iter().find(|r| r.name(stack) == name)
    }
}

/// How often the daily rule runs.
const DAILY: &str = "rate(1 day)";

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

/// The stack's rotation rules, for the database password `secret_arn` (None:
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
    Schedule,
    Target,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Pattern => "event pattern → this database's password, enabled",
            Step::Schedule => "schedule → rate(1 day), enabled",
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

    /// One rule as it is, if it exists.
    async fn read(&self, w: &Work<'_>, which: Rule) -> Result<Option<Live>, TierError> {
        let rule = which.name(&w.spec.stack);
        let call = self.events.describe_rule().name(&rule).send().await;
        let codes = ["ResourceNotFoundException"];
        let Some(out) = found("events:DescribeRule", call, &codes)? else {
            return Ok(None);
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
        Ok(Some(Live {
            name: rule,
            arn,
            pattern: out
                .event_pattern()
                .and_then(|p| serde_json::from_str(p).ok()),
            schedule: out.schedule_expression().map(str::to_string),
            enabled: out.state() == Some(&RuleState::Enabled),
            tags,
            target_ok,
        }))
    }

    /// Puts the rule (with its tags when it is new) and its target.
    async fn put(&self, w: &Work<'_>, which: Rule, new: bool) -> Result<String, TierError> {
        let (Some(secret_arn), Some(repair)) = (&self.secret_arn, &self.repair) else {
            return Err(TierError::Terminal(
                "the rotation rule needs the database's secret and the deployment's state machine"
                    .into(),
            ));
        };
        let rule = which.name(&w.spec.stack);
        let mut put = self.events.put_rule().name(&rule).state(RuleState::Enabled);
        put = match which {
            Rule::Rotated => put
                .event_pattern(pattern(secret_arn).to_string())
                .description(format!(
                    "mbstack {}: new Metabase tasks when RDS rotates the database password",
                    w.spec.stack
                )),
            Rule::Daily => put.schedule_expression(DAILY).description(format!(
                "mbstack {}: new Metabase tasks if they hold a password rotated since they started (a rotation's event may be lost)",
                w.spec.stack
            )),
        };
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
    type Want = Rule;
    type Step = Step;

    fn name(&self, w: &Work<'_>, want: &Rule) -> String {
        want.name(&w.spec.stack)
    }
    mbstack_core::resource_key!(name: name, id: arn, tags: tags);

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let mut out = Vec::new();
        for which in Rule::BOTH {
            if let Some(live) = self.read(w, which).await? {
                out.push(live);
            }
        }
        Ok(out)
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, want: &Rule) -> Result<Vec<Step>, TierError> {
        let Some(secret_arn) = &self.secret_arn else {
            return Ok(vec![]);
        };
        let trigger = match want {
            Rule::Rotated => (live.pattern.as_ref() != Some(&pattern(secret_arn))
                || live.schedule.is_some())
            .then_some(Step::Pattern),
            Rule::Daily => (live.schedule.as_deref() != Some(DAILY) || live.pattern.is_some())
                .then_some(Step::Schedule),
        };
        Ok(match trigger {
            Some(step) => vec![step],
            None if !live.enabled => vec![match want {
                Rule::Rotated => Step::Pattern,
                Rule::Daily => Step::Schedule,
            }],
            None if !live.target_ok => vec![Step::Target],
            None => vec![],
        })
    }

    fn describe(&self, _w: &Work<'_>, want: &Rule) -> String {
        match want {
            Rule::Rotated => "new tasks when the database password rotates".into(),
            Rule::Daily => "a daily check that the tasks hold the current database password".into(),
        }
    }
    fn summary(&self, w: &Work<'_>, live: &Live) -> String {
        match Rule::of(&live.name, &w.spec.stack) {
            Some(Rule::Daily) => "daily password check".into(),
            _ => "new tasks when the database password rotates".into(),
        }
    }

    async fn create(&self, w: &Work<'_>, want: &Rule) -> Result<Live, TierError> {
        let arn = self.put(w, *want, true).await?;
        Ok(Live {
            name: want.name(&w.spec.stack),
            arn,
            pattern: match want {
                Rule::Rotated => self.secret_arn.as_deref().map(pattern),
                Rule::Daily => None,
            },
            schedule: (*want == Rule::Daily).then(|| DAILY.to_string()),
            enabled: true,
            tags: w.tags("password-rule"),
            target_ok: true,
        })
    }

    async fn update(
        &self,
        w: &Work<'_>,
        _live: &Live,
        want: &Rule,
        _steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        self.put(w, *want, false).await?;
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

    fn deleted_detail(&self, w: &Work<'_>, live: &Live) -> String {
        match Rule::of(&live.name, &w.spec.stack) {
            Some(Rule::Daily) => "daily password check".into(),
            _ => "rotation repair rule".into(),
        }
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
        &[
            "arn:${Partition}:events:*:*:rule/*-db-password-rotated",
            "arn:${Partition}:events:*:*:rule/*-db-password-check",
        ],
    ),
    // EventBridge starts the repair with the deployment's own role, and only it.
    Permission::on(
        "PassEventsRole",
        &["iam:PassRole"],
        &["arn:${Partition}:iam::*:role/${Prefix}-events"],
    )
    .when(r#"{"StringEquals": {"iam:PassedToService": "events.amazonaws.com"}}"#),
];
