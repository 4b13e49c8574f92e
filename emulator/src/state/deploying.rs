//! What the deploy-time rules remember: when each role, function and update
//! began, and AWS's propagation and update times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A new IAM role becomes assumable by services within seconds: the same figure
/// the tiers wait for (one place: `mbstack_core::aws`).
pub(crate) const ROLE_PROPAGATION: Duration = mbstack_core::aws::ROLE_PROPAGATION;
/// A new function is `Pending` for a few seconds.
pub(crate) const FUNCTION_PENDING: Duration = Duration::from_secs(5);
/// A code or configuration update is `InProgress` for a few seconds.
pub(crate) const FUNCTION_UPDATE: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
pub(crate) struct Deploying {
    pub(crate) roles: HashMap<String, Instant>,
    pub(crate) created: HashMap<String, Instant>,
    pub(crate) updated: HashMap<String, Instant>,
    /// How many "not yet" answers these rules gave.
    pub answered: u64,
    /// How long a new role takes to become assumable, when a test sets it
    /// (else [`ROLE_PROPAGATION`] at the realism scale).
    pub role_propagation: Option<Duration>,
}

impl Deploying {
    pub(crate) fn propagation(&self, scale: u32) -> Duration {
        self.role_propagation
            .unwrap_or(ROLE_PROPAGATION / scale.max(1))
    }

    pub(crate) fn is_young(&self, arn: &str, scale: u32, now: Instant) -> bool {
        self.roles
            .get(role_name(arn))
            .is_some_and(|t| now.duration_since(*t) < self.propagation(scale))
    }
}

/// A role's name from its ARN (or a name as it is).
pub(crate) fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}
