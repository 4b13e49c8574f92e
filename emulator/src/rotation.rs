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
//! Matching is moto's own `TestEventPattern`; a target's `Input` (or, without
//! one, the event) becomes the execution's input.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::front_door::{moto_json_for, Shared};

/// Records the rotation and delivers its event. `arn` is the rotated secret's.
pub(crate) async fn rotated(shared: &Arc<Shared>, arn: &str) {
    if let Ok(mut ecs) = shared.ecs.lock() {
        ecs.rotated
            .insert(arn.to_string(), crate::ecs::now_secs());
    }
    let mut parts = arn.split(':');
    let (region, account) = (parts.nth(3).unwrap_or(""), parts.next().unwrap_or(""));
    let event = json!({
        "version": "0",
        "id": format!("mbstack-rotation-{}", crate::ecs::now_secs()),
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
        let matched = moto_json_for(
            shared,
            "events",
            "AWSEvents.TestEventPattern",
            &json!({"EventPattern": pattern, "Event": event.to_string()}),
        )
        .await
        .ok()
        .and_then(|r| r.get("Result").and_then(Value::as_bool))
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
            let started = moto_json_for(
                shared,
                "states",
                "AWSStepFunctions.StartExecution",
                &json!({"stateMachineArn": target, "input": input}),
            )
            .await;
            match started {
                Ok(_) => tracing::info!(rule, target, "a rotation event started an execution"),
                Err(e) => tracing::warn!(rule, target, error = %e, "a rotation event's target failed"),
            }
        }
    }
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
