//! The Lambda edge shared by every tier binary: JSON logs for CloudWatch, the event
//! parsed strictly, and errors turned into a Diagnostic whose type is our stable
//! error name (so Step Functions' Retry and Catch can match it).

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::aws::Aws;
use crate::contract::{Event, Outcome};
use crate::error::TierError;
use crate::naming::Tier;

impl From<TierError> for Diagnostic {
    fn from(err: TierError) -> Self {
        Diagnostic {
            error_type: err.name().to_string(),
            error_message: err.to_string(),
        }
    }
}

/// JSON logs, one object per line, level from `RUST_LOG` (default `info`).
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .try_init();
}

/// Parses a raw event strictly and hands it to `handler`: the path every
/// invocation takes, in Lambda, in the local endpoint and in tests. An invalid
/// event never reaches the handler, so it cannot create anything.
pub async fn dispatch<F, Fut>(payload: &Value, handler: F) -> Result<Outcome, TierError>
where
    F: FnOnce(Event) -> Fut,
    Fut: Future<Output = Result<Outcome, TierError>>,
{
    let event = Event::parse(payload)?;
    tracing::info!(verb = ?event.verb, stack = %event.spec.stack, run = %event.run.id, "tier event");
    handler(event).await
}

/// One invocation of a tier: the strict event path, the outcome as JSON, errors
/// naming the tier. Lambda and the local endpoint both call this.
pub async fn invoke_tier<F, Fut>(
    tier: Tier,
    payload: &Value,
    handler: F,
) -> Result<Value, TierError>
where
    F: FnOnce(Event) -> Fut,
    Fut: Future<Output = Result<Outcome, TierError>>,
{
    let outcome = dispatch(payload, handler)
        .await
        .map_err(|e| e.in_tier(tier))?;
    tracing::info!(tier = %tier, state = ?outcome.state, message = %outcome.message, "tier outcome");
    serde_json::to_value(outcome)
        .map_err(|e| TierError::Terminal(format!("serializing the outcome: {e}")).in_tier(tier))
}

/// Runs a tier handler as a Lambda function.
pub async fn run_tier<F, Fut>(tier: Tier, handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Event, Arc<Aws>) -> Fut,
    Fut: Future<Output = Result<Outcome, TierError>>,
{
    let handler = &handler;
    run_json(move |payload, aws| async move {
        invoke_tier(tier, &payload, |event| handler(event, aws)).await
    })
    .await
}

/// Runs a JSON-in, JSON-out handler as a Lambda function (the control function's
/// contract is not a tier's). Never returns unless the runtime fails.
pub async fn run_json<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Value, Arc<Aws>) -> Fut,
    Fut: Future<Output = Result<Value, TierError>>,
{
    init_json_logs();
    let aws = Arc::new(Aws::from_env().await);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let aws = aws.clone();
        async move {
            handler(ev.payload, aws).await.map_err(|err| {
                tracing::warn!(error = err.name(), message = %err, "error");
                Diagnostic::from(err)
            })
        }
    }))
    .await
}
