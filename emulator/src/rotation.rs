//! Secret rotation as AWS plays it after moto has rotated the value: the tasks
//! that ECS started before it hold the old value (see `ecs.rs`), and Secrets
//! Manager's `RotationSucceeded` event reaches the EventBridge rules that match
//! it. moto neither delivers an event on rotation nor starts a Step Functions
//! execution from a rule's target; the front door does both.
//!
//! The event is the one CloudTrail delivers for a rotation (AWS Secrets Manager
//! user guide, "Match events when a secret value rotates"): source
//! `aws.secretsmanager`, detail-type `AWS Service Event via CloudTrail`, detail
//! `eventName: RotationSucceeded` and `additionalEventData.SecretId: <ARN>`.
//! moto's `TestEventPattern` is not implemented, so matching is done here, with
//! EventBridge's content-filter rules for what a pattern may hold: a field's
//! array lists the values it matches (an array in the event matches when any
//! element does), objects nest, and `prefix` and `exists` filters (any other
//! filter matches nothing). A target's `Input` (or, without one, the event)
//! becomes the execution's input.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::moto::moto_json_for;
use crate::state::Shared;

/// Records the rotation and delivers its event. `arn` is the rotated secret's.
pub(crate) async fn rotated(shared: &Arc<Shared>, arn: &str) {
    if let Ok(mut ecs) = shared.ecs.lock() {
        ecs.rotated
            .insert(arn.to_string(), crate::state::ecs::now_secs());
    }
    let mut parts = arn.split(':');
    let (region, account) = (parts.nth(3).unwrap_or(""), parts.next().unwrap_or(""));
    let event = json!({
        "version": "0",
        "id": format!("mbstack-rotation-{}", crate::state::ecs::now_secs()),
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.secretsmanager",
        "account": account,
        "time": "2026-01-01T00:00:00Z",
        "region": region,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationSucceeded",
            "awsRegion": region,
            "eventType": "AwsServiceEvent",
            "additionalEventData": {"SecretId": arn},
        }
    });
    for (rule, pattern) in rules(shared).await {
        let matched = serde_json::from_str::<Value>(&pattern)
            .map(|p| matches(&p, &event))
            .unwrap_or(false);
        if !matched {
            continue;
        }
        let Ok(targets) = moto_json_for(
            shared,
            "events",
            "AWSEvents.ListTargetsByRule",
            &json!({"Rule": rule}),
        )
        .await
        else {
            continue;
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
            let input = t
                .get("Input")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| event.to_string());
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
                Ok(_) => tracing::info!(rule, target, "a rotation event started an execution"),
                Err(e) => {
                    tracing::warn!(rule, target, error = %e, "a rotation event's target failed")
                }
            }
        }
    }
}

/// A name shaped like the UUID EventBridge gives an execution it starts.
fn uuid_like() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
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

/// The enabled rules of the default bus that have an event pattern.
async fn rules(shared: &Arc<Shared>) -> Vec<(String, String)> {
    let Ok(listed) = moto_json_for(shared, "events", "AWSEvents.ListRules", &json!({})).await
    else {
        return Vec::new();
    };
    listed
        .get("Rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("State").and_then(Value::as_str) != Some("DISABLED"))
        .filter_map(|r| {
            Some((
                r.get("Name")?.as_str()?.to_string(),
                r.get("EventPattern")?.as_str()?.to_string(),
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
        ];
        let no = [
            json!({"source": ["aws.ec2"]}),
            json!({"detail": {"eventName": ["RotationFailed"]}}),
            json!({"detail": {"id": {"SecretId": ["arn:x:other"]}}}),
            json!({"detail": {"missing": ["x"]}}),
            json!({"detail": {"n": ["5"]}}),
            json!({"source": [{"anything-but": "x"}]}),
            json!({"source": "aws.secretsmanager"}),
        ];
        for p in yes {
            assert!(matches(&p, &event), "{p}");
        }
        for p in no {
            assert!(!matches(&p, &event), "{p}");
        }
    }
}
