//! The tiers in one process: which crate handles which tier (the one table of
//! it), and a whole stack's plan in the state machine's order.

use mbstack_core::contract::inputs_from;
use mbstack_core::{Aws, Event, Outcome, Scope, StackSpec, Tier, TierError, Verb};
use serde_json::{Map, Value};

/// Runs `tier`'s handler on `event`, as its Lambda function would.
pub async fn handle(tier: Tier, event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    match tier {
        Tier::Network => mbstack_network::handle(event, aws).await,
        Tier::Data => mbstack_data::handle(event, aws).await,
        Tier::LoadBalancer => mbstack_loadbalancer::handle(event, aws).await,
        Tier::App => mbstack_app::handle(event, aws).await,
        Tier::Control => Err(TierError::Terminal("control is not a tier".into())),
    }
}

/// Every tier's plan of `spec` (read-only), stage by stage as the state
/// machine applies them ([`mbstack_statemachine::STAGES`]), each tier given
/// the outputs of the tiers before it: `known` (a run's outputs, by tier),
/// overlaid with what the plans before it found.
pub async fn plan_stack(
    aws: &Aws,
    spec: &StackSpec,
    run: &str,
    known: &Map<String, Value>,
) -> Result<Vec<Outcome>, TierError> {
    let mut inputs = known.clone();
    let mut plans = Vec::new();
    for stage in mbstack_statemachine::STAGES {
        let mut event = Event::new(Verb::Plan, spec.clone(), run, Scope::Stack);
        event.inputs = inputs.clone();
        let mut found = Vec::new();
        for &tier in *stage {
            found.push(handle(tier, event.clone(), aws).await?);
        }
        // A plan that found nothing does not hide what the run knows.
        let fresh = found
            .iter()
            .filter(|o| !o.outputs.is_empty() || !inputs.contains_key(o.tier.as_str()));
        inputs.extend(inputs_from(fresh.collect::<Vec<_>>()));
        plans.extend(found);
    }
    Ok(plans)
}
