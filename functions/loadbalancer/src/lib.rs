//! mbstack-loadbalancer: not built yet. Every verb answers with a clear
//! `Mbstack.NotImplemented` error instead of pretending to work.

use mbstack_core::{not_implemented, Aws, Event, Outcome, Tier, TierError};

pub async fn handle(event: Event, _aws: &Aws) -> Result<Outcome, TierError> {
    Err(not_implemented(
        Tier::LoadBalancer,
        &format!("{:?}", event.verb).to_lowercase(),
    ))
}
