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
//! The event reaches the rules as EventBridge delivers it (`crate::events`).

use std::sync::Arc;

use serde_json::json;

use crate::state::Shared;

/// Records the rotation and delivers its event. `arn` is the rotated secret's.
async fn rotated_secret(shared: &Arc<Shared>, arn: &str) {
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
    crate::events::deliver_best_effort(shared, &event).await;
}

/// Secrets Manager's rotation: the event AWS sends after a rotation.
pub(crate) struct Rotation;

impl crate::rules::Rule for Rotation {
    fn after<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: bytes::Bytes,
    ) -> crate::rules::Step<'a, bytes::Bytes> {
        Box::pin(async move {
            if status.is_success() && c.target == "secretsmanager.RotateSecret" {
                let rotated = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("ARN").and_then(|a| a.as_str()).map(str::to_string));
                if let Some(arn) = rotated {
                    rotated_secret(s, &arn).await;
                }
            }
            body
        })
    }
}
