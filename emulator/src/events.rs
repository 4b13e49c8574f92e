//! EventBridge as it delivers an event to the rules of the default bus whose
//! pattern matches, for the targets mbstack uses (a Step Functions state
//! machine): moto neither sends AWS's service events nor starts an execution
//! from a rule's target, so the front door does both.
//!
//! Events delivered:
//! - Secrets Manager's rotation (`crate::rotation`), best effort: a test may
//!   lose it (`FrontDoor::lose_events`), as AWS may;
//! - a scheduled rule's "Scheduled Event" when a test says it is due
//!   (`FrontDoor::fire_scheduled_rules`);
//! - Step Functions' "Execution Status Change" when an execution ends, whatever
//!   ended it (moto's process posts each end to the front door:
//!   `moto_hooks.py`). AWS sends it for every end, those no Catch sees included
//!   (a `States.Runtime` error, a StopExecution, a time-out): AWS's Step
//!   Functions user guide, "Automating Step Functions event delivery with
//!   EventBridge".
//!
//! moto's `TestEventPattern` is not implemented, so matching is done here, with
//! EventBridge's content-filter rules for what a pattern may hold: a field's
//! array lists the values it matches (an array in the event matches when any
//! element does), objects nest, `$or` takes any of its patterns, and `prefix`
//! and `exists` filters (any other filter matches nothing). A target's input is its `Input`, its `InputPath`'s
//! part of the event, its `InputTransformer`'s template filled from the event,
//! or else the event itself.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::moto::moto_json_for;
use crate::state::Shared;

/// Delivers `event` to every enabled rule that matches it.
pub(crate) async fn deliver(shared: &Arc<Shared>, event: &Value) {
    for (rule, pattern) in rules(shared).await {
        let Some(pattern) = pattern.event_pattern else {
            continue;
        };
        let matched = serde_json::from_str::<Value>(&pattern)
            .map(|p| matches(&p, event))
            .unwrap_or(false);
        if matched {
            start_targets(shared, &rule, event).await;
        }
    }
}

/// A service event that comes through CloudTrail (a rotation's): lost when a
/// test asked for it, else delivered.
pub(crate) async fn deliver_best_effort(shared: &Arc<Shared>, event: &Value) {
    let lost = shared
        .lost_events
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    if lost {
        tracing::info!("a service event was lost before delivery, as AWS may");
        return;
    }
    deliver(shared, event).await;
}

/// Fires every enabled rule with a schedule expression, as EventBridge does
/// when it comes due: its event is the "Scheduled Event" of `aws.events`.
pub(crate) async fn fire_schedules(shared: &Arc<Shared>) -> Vec<String> {
    let mut fired = Vec::new();
    for (rule, what) in rules(shared).await {
        if what.schedule.is_none() {
            continue;
        }
        let event = json!({
            "version": "0",
            "id": uuid_like(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [what.arn],
            "detail": {}
        });
        start_targets(shared, &rule, &event).await;
        fired.push(rule);
    }
    fired
}

/// Starts each Step Functions target of `rule` with its input for `event`.
async fn start_targets(shared: &Arc<Shared>, rule: &str, event: &Value) {
    let Ok(targets) = moto_json_for(
        shared,
        "events",
        "AWSEvents.ListTargetsByRule",
        &json!({"Rule": rule}),
    )
    .await
    else {
        return;
    };
    for t in targets
        .get("Targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(target) = t
            .get("Arn")
            .and_then(Value::as_str)
            .filter(|a| a.contains(":states:"))
        else {
            continue;
        };
        let input = target_input(t, event);
        // EventBridge names the execution with a UUID (moto, left to itself,
        // shows the execution an empty `$$.Execution.Name`).
        let started = moto_json_for(
            shared,
            "states",
            "AWSStepFunctions.StartExecution",
            &json!({"stateMachineArn": target, "input": input, "name": uuid_like()}),
        )
        .await;
        match started {
            Ok(_) => tracing::info!(rule, target, "an event started an execution"),
            Err(e) => tracing::warn!(rule, target, error = %e, "an event's target failed"),
        }
    }
}

/// Step Functions' event for an execution that ended, from what moto's process
/// posts (`moto_hooks.py`): delivered to the rules.
pub(crate) async fn execution_ended(shared: &Arc<Shared>, body: &[u8]) {
    let Ok(ended) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let s = |k: &str| ended.get(k).cloned().unwrap_or(Value::Null);
    let event = json!({
        "version": "0",
        "id": uuid_like(),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": s("account"),
        "time": "2026-01-01T00:00:00Z",
        "region": s("region"),
        "resources": [s("executionArn")],
        "detail": {
            "executionArn": s("executionArn"),
            "stateMachineArn": s("stateMachineArn"),
            "name": s("name"),
            "status": s("status"),
            "startDate": s("startDate"),
            "stopDate": s("stopDate"),
            "input": s("input"),
            "output": null,
            "inputDetails": {"included": true},
            "error": s("error"),
            "cause": s("cause"),
        }
    });
    deliver(shared, &event).await;
}

/// What a target starts its state machine with.
fn target_input(target: &Value, event: &Value) -> String {
    if let Some(input) = target.get("Input").and_then(Value::as_str) {
        return input.to_string();
    }
    if let Some(path) = target.get("InputPath").and_then(Value::as_str) {
        return select(event, path).unwrap_or(&Value::Null).to_string();
    }
    if let Some(tr) = target.get("InputTransformer") {
        let template = tr
            .get("InputTemplate")
            .and_then(Value::as_str)
            .unwrap_or("");
        let paths = tr
            .get("InputPathsMap")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        return transform(template, &paths, event);
    }
    event.to_string()
}

/// A JSONPath of the plain dotted form EventBridge's input paths take
/// (`$.detail.executionArn`; `$` is the whole event).
fn select<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path.strip_prefix('$')?;
    rest.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(event, |v, key| v.get(key))
}

/// EventBridge's input transformer: each `<name>` of the template is replaced
/// by the value its input path selects from the event. Inside a JSON string the
/// value's text goes in (escaped); elsewhere its JSON (a string quoted). A path
/// that selects nothing gives `null` (an empty string inside quotes).
fn transform(template: &str, paths: &Map<String, Value>, event: &Value) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest.find('>') {
                let name = &rest[1..end];
                if let Some(path) = paths.get(name).and_then(Value::as_str) {
                    let value = select(event, path).cloned().unwrap_or(Value::Null);
                    if in_string {
                        let text = match &value {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        let quoted = Value::String(text).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&value.to_string());
                    }
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        if c == '"' && !escaped {
            in_string = !in_string;
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A name shaped like the UUID EventBridge gives an execution it starts.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ u128::from(SEQ.fetch_add(1, Ordering::Relaxed)) << 64;
    let h = format!(
        "{:032x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A rule of the default bus: what fires it.
struct RuleInfo {
    arn: String,
    event_pattern: Option<String>,
    schedule: Option<String>,
}

/// The enabled rules of the default bus.
async fn rules(shared: &Arc<Shared>) -> Vec<(String, RuleInfo)> {
    let Ok(listed) = moto_json_for(shared, "events", "AWSEvents.ListRules", &json!({})).await
    else {
        return Vec::new();
    };
    let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    listed
        .get("Rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("State").and_then(Value::as_str) != Some("DISABLED"))
        .filter_map(|r| {
            Some((
                text(r, "Name")?,
                RuleInfo {
                    arn: text(r, "Arn").unwrap_or_default(),
                    event_pattern: text(r, "EventPattern"),
                    schedule: text(r, "ScheduleExpression"),
                },
            ))
        })
        .collect()
}

/// Whether `event` matches the EventBridge `pattern` (the subset described above).
fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(k, want)| {
        if k == "$or" {
            // Any one of the listed patterns, each over this same level.
            return want
                .as_array()
                .is_some_and(|alts| alts.iter().any(|alt| matches(alt, event)));
        }
        let got = event.get(k);
        match want {
            Value::Object(_) => got.is_some_and(|g| matches(want, g)),
            Value::Array(filters) => filters.iter().any(|f| filter_matches(f, got)),
            _ => false,
        }
    })
}

fn filter_matches(filter: &Value, got: Option<&Value>) -> bool {
    match (filter, got) {
        (Value::Object(op), _) if op.contains_key("exists") => {
            op.get("exists").and_then(Value::as_bool) == Some(got.is_some())
        }
        (Value::Object(op), Some(g)) => match op.get("prefix").and_then(Value::as_str) {
            Some(prefix) => each(g, |v| v.as_str().is_some_and(|s| s.starts_with(prefix))),
            None => false,
        },
        (literal, Some(g)) => each(g, |v| v == literal),
        (_, None) => false,
    }
}

/// `test` on the value, or on any element of an array value.
fn each(v: &Value, test: impl Fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(test),
        other => test(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_eventbridge_documents() {
        let event = json!({"source": "aws.secretsmanager", "resources": ["a", "b"],
            "detail": {"eventName": "RotationSucceeded", "n": 5, "id": {"SecretId": "arn:x:rds!db-1"}}});
        let yes = [
            json!({"source": ["aws.secretsmanager"]}),
            json!({"source": ["other", "aws.secretsmanager"], "detail": {"n": [5]}}),
            json!({"resources": ["b"]}),
            json!({"detail": {"id": {"SecretId": [{"prefix": "arn:x:rds!"}]}}}),
            json!({"detail": {"missing": [{"exists": false}], "eventName": [{"exists": true}]}}),
            json!({"detail": {"$or": [{"n": [6]}, {"eventName": ["RotationSucceeded"], "n": [5]}]}}),
        ];
        let no = [
            json!({"source": ["aws.ec2"]}),
            json!({"detail": {"eventName": ["RotationFailed"]}}),
            json!({"detail": {"id": {"SecretId": ["arn:x:other"]}}}),
            json!({"detail": {"missing": ["x"]}}),
            json!({"detail": {"n": ["5"]}}),
            json!({"source": [{"anything-but": "x"}]}),
            json!({"source": "aws.secretsmanager"}),
            json!({"detail": {"$or": [{"n": [6]}, {"eventName": ["RotationSucceeded"], "n": [4]}]}}),
        ];
        for p in yes {
            assert!(matches(&p, &event), "{p}");
        }
        for p in no {
            assert!(!matches(&p, &event), "{p}");
        }
    }

    /// The EventBridge user guide's own example ("Amazon EventBridge input
    /// transformation"): a JSON template takes the values as JSON, a string
    /// template (and a placeholder inside quotes) their text.
    #[test]
    fn the_input_transformer_fills_templates_as_the_user_guide_shows() {
        let event = json!({"detail": {"instance-id": "i-0123456789", "state": "RUNNING", "n": 3}});
        let paths: Map<String, Value> = serde_json::from_value(
            json!({"instance": "$.detail.instance-id", "state": "$.detail.state", "n": "$.detail.n", "none": "$.detail.absent"}),
        )
        .unwrap();
        assert_eq!(
            transform(
                r#"{"instance" : <instance>, "state": [9, <state>, true], "Transformed" : "Yes"}"#,
                &paths,
                &event
            ),
            r#"{"instance" : "i-0123456789", "state": [9, "RUNNING", true], "Transformed" : "Yes"}"#
        );
        assert_eq!(
            transform(r#""<instance> is in state <state>""#, &paths, &event),
            r#""i-0123456789 is in state RUNNING""#
        );
        assert_eq!(
            transform(
                r#"{"n": <n>, "s": "n=<n>", "x": <none>, "lt": "a<b"}"#,
                &paths,
                &event
            ),
            r#"{"n": 3, "s": "n=3", "x": null, "lt": "a<b"}"#
        );
        let input = target_input(
            &json!({"Arn": "arn:aws:states:us-east-1:1:stateMachine:m", "InputTransformer": {
                "InputPathsMap": {"execution": "$.detail.executionArn"},
                "InputTemplate": "{\"action\": \"recover\", \"execution\": <execution>}"}}),
            &json!({"detail": {"executionArn": "arn:aws:states:us-east-1:1:execution:m:run-1"}}),
        );
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({"action": "recover", "execution": "arn:aws:states:us-east-1:1:execution:m:run-1"})
        );
    }
}
