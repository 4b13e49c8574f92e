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

/// JSON logs, one object per line, filtered by `RUST_LOG` (`info` when unset or not
/// understood): a level, or `target=level` pairs as in `info,aws_smithy_runtime=debug`.
/// Target filters only (no span-field regexes): env-filter's regex engine would add a
/// third of a MiB to every zip.
/// Lambda's own log-level setting (`AWS_LAMBDA_LOG_LEVEL`, set with JSON log format)
/// is the fallback when `RUST_LOG` is unset.
pub fn init_json_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let setting = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .ok();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish()
        .with(log_filter(setting.as_deref()))
        .try_init();
}

/// The filter a `RUST_LOG`-style setting names; `info` for everything when it is
/// unset or not understood (a log setting never stops a tier).
pub fn log_filter(setting: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    setting
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
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
    let outcome = dispatch(payload, |event| async move {
        match event.part.tier() {
            Some(owner) if owner != tier => Err(TierError::Terminal(format!(
                "part \"{}\" is the {owner} tier's work, not the {tier} tier's: leave part out",
                event.part.as_str()
            ))),
            _ => {
                let part = event.part;
                let mut before = event.changes_before.clone();
                let mut outcome = handler(event).await?;
                outcome.part = part;
                // A pass again keeps what the passes before it changed; its
                // own unchanged resources add nothing.
                // A create a pass before it made is not made again.
                if !before.is_empty() {
                    // Nor a deletion a pass before it started (a destroy
                    // loop's passes until the resource is gone).
                    use crate::contract::Action;
                    let once = |a: Action| matches!(a, Action::Create | Action::Delete);
                    let made: std::collections::HashSet<(String, String, Action)> = before
                        .iter()
                        .filter(|c| once(c.action))
                        .map(|c| (c.kind.clone(), c.id.clone(), c.action))
                        .collect();
                    before.extend(outcome.changes.into_iter().filter(|c| {
                        c.action != Action::None
                            && !(once(c.action)
                                && made.contains(&(c.kind.clone(), c.id.clone(), c.action)))
                    }));
                    outcome.changes = before;
                }
                Ok(outcome)
            }
        }
    })
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
    let aws = Arc::new(Aws::from_lambda_env());
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

#[cfg(test)]
mod tests {
    use super::{invoke_tier, log_filter};
    use crate::contract::{Event, Outcome, Part, Scope, State, Verb};
    use crate::naming::Tier;
    use crate::spec::StackSpec;
    use crate::TierError;
    use tracing::Level;

    /// A part is its tier's work: asked of another tier it is refused before the
    /// handler runs (nothing could be created by a misrouted event).
    #[tokio::test]
    async fn a_part_asked_of_another_tier_is_refused_before_the_handler_runs() {
        let mut event = Event::new(Verb::Check, StackSpec::new("s"), "run-1", Scope::Stack);
        event.part = Part::NatGateways;
        let payload = serde_json::to_value(&event).unwrap();
        assert_eq!(payload["part"], "nat-gateways");
        let reached = std::sync::atomic::AtomicBool::new(false);
        let handler = |e: Event| {
            reached.store(true, std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok::<_, TierError>(Outcome {
                    tier: Tier::Network,
                    state: State::Ready,
                    message: format!("{:?}", e.part),
                    retry_after_seconds: 0,
                    outputs: Default::default(),
                    changes: vec![],
                    part: Part::All,
                })
            }
        };
        let refused = invoke_tier(Tier::Data, &payload, handler).await;
        match refused {
            Err(TierError::Terminal(why)) => assert!(why.contains("network"), "{why}"),
            other => panic!("not refused: {other:?}"),
        }
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
        let done = invoke_tier(Tier::Network, &payload, handler).await.unwrap();
        assert_eq!(done["message"], "NatGateways");
        // The outcome says which part it answers for (people see it as its own row).
        assert_eq!(Part::of(&done), Part::NatGateways);
        // All of it (the default) is not written into events.
        let all = Event::new(Verb::Check, StackSpec::new("s"), "run-1", Scope::Stack);
        assert!(serde_json::to_value(&all).unwrap().get("part").is_none());
    }

    #[test]
    fn the_log_filter_reads_levels_and_targets_and_falls_back_to_info() {
        let unset = log_filter(None);
        assert!(unset.would_enable("mbstack_app", &Level::INFO));
        assert!(!unset.would_enable("mbstack_app", &Level::DEBUG));

        // AWS_LAMBDA_LOG_LEVEL is upper case.
        let debug = log_filter(Some("DEBUG"));
        assert!(debug.would_enable("aws_smithy_runtime", &Level::DEBUG));
        assert!(!debug.would_enable("aws_smithy_runtime", &Level::TRACE));

        let pairs = log_filter(Some("warn,aws_smithy_runtime=debug"));
        assert!(pairs.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!pairs.would_enable("mbstack_core", &Level::INFO));
        assert!(pairs.would_enable("mbstack_core", &Level::WARN));

        let garbage = log_filter(Some("=[nonsense"));
        assert!(garbage.would_enable("mbstack_core", &Level::INFO));
        assert!(!garbage.would_enable("mbstack_core", &Level::DEBUG));
    }
}
