//! What the ECS player remembers: each service's rollout, the targets it
//! registered, the fields moto forgets, the roles and secrets of task
//! definitions, the fault to play.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the next deployments' tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsFault {
    /// The image cannot be pulled.
    CannotPullContainer,
    /// The container is killed for memory (exit 137).
    OutOfMemory,
    /// Docker Hub refuses the pull: its anonymous rate limit (`toomanyrequests`).
    PullRateLimited,
    /// Metabase's database migration fails as it starts: the container logs
    /// the failed migration and exits with 1 (the task is stopped, "Essential
    /// container in task exited"). Played for one image only
    /// (`FrontDoor::fail_migrations_of`).
    MigrationFailed,
    /// The task's subnet has no way out to the internet when it starts (see
    /// `crate::realism::egress`): its image pull times out.
    NoWayOut,
    /// The image has no variant for the task's CPU architecture (an ARM64
    /// task of an image published for x86-64 only).
    NoManifest,
}

#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    pub(crate) task_definition: String,
    pub(crate) desired: i64,
    pub(crate) since: Instant,
    pub(crate) id: String,
    pub(crate) fault: Option<EcsFault>,
    /// A role of the task definition that ECS could not assume yet when the
    /// rollout began (IAM propagation): its tasks fail to start.
    pub(crate) young_role: Option<String>,
    /// When its tasks started (wall clock, seconds): the deployment's `createdAt`.
    pub(crate) started_at: f64,
    /// The circuit breaker's rollback of a failed deployment: the failed
    /// deployment's ID and task definition (shown beside it, FAILED).
    pub(crate) rolling_back_from: Option<(String, String)>,
    /// Whether its tasks' way out was looked at when they started.
    pub(crate) egress_checked: bool,
}

impl Rollout {
    pub(crate) fn fails(&self) -> bool {
        self.fault.is_some() || self.young_role.is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EcsActor {
    pub start_delay: Duration,
    pub fault: Option<EcsFault>,
    pub(crate) rollouts: HashMap<String, Rollout>,
    /// Target group ARN → the ip targets we registered.
    pub(crate) targets: HashMap<String, BTreeSet<String>>,
    /// `<cluster>/<service>` → the fields it was given that moto forgets and AWS
    /// returns (capacity provider strategy, grace period, deployment configuration…).
    pub(crate) remembered: HashMap<String, serde_json::Map<String, Value>>,
    /// Task definition ARN → its execution and task roles.
    pub(crate) task_roles: HashMap<String, Vec<String>>,
    /// Task definition ARN → the secrets ECS injects into its container (`valueFrom`).
    pub(crate) task_secrets: HashMap<String, Vec<String>>,
    /// Secret ARN → when its value last rotated (wall clock, seconds).
    pub rotated: HashMap<String, f64>,
    /// Task definition ARN → the image of its container.
    pub(crate) task_images: HashMap<String, String>,
    /// Task definition ARNs whose tasks run on ARM64 (`runtimePlatform`).
    pub(crate) task_arm64: std::collections::HashSet<String>,
    /// The image whose tasks fail their migration (`EcsFault::MigrationFailed`).
    pub(crate) failing_image: Option<String>,
    /// Service ARN → the task definition of its last COMPLETED deployment
    /// (what the circuit breaker rolls a failed deployment back to).
    pub(crate) completed: HashMap<String, String>,
    /// Failed rollouts the circuit breaker rolled back (service ARN, rollout):
    /// their stopped tasks are still listed (ECS keeps stopped tasks about an
    /// hour).
    pub(crate) rolled_back: Vec<(String, Rollout)>,
    pub(crate) next_id: u64,
}

impl Default for EcsActor {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(0),
            fault: None,
            rollouts: HashMap::new(),
            targets: HashMap::new(),
            remembered: HashMap::new(),
            task_roles: HashMap::new(),
            task_secrets: HashMap::new(),
            rotated: HashMap::new(),
            task_images: HashMap::new(),
            task_arm64: std::collections::HashSet::new(),
            failing_image: None,
            completed: HashMap::new(),
            rolled_back: Vec::new(),
            next_id: 1,
        }
    }
}

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether `image` is published with a linux/arm64 variant, as far as the
/// emulator knows: Metabase's images are x86-64 only before v0.53 (v1.53
/// for the enterprise image): `docker pull metabase/metabase:v0.51.3` on
/// ARM answers "no matching manifest for linux/arm64/v8 in the manifest list
/// entries" (metabase/metabase#49976); other images are taken as
/// multi-architecture.
pub(crate) fn has_arm64(image: &str) -> bool {
    let Some((repo, tag)) = image.rsplit_once(':') else {
        return true;
    };
    let repo = repo.trim_start_matches("docker.io/");
    if !matches!(repo, "metabase/metabase" | "metabase/metabase-enterprise") {
        return true;
    }
    let mut parts = tag.trim_start_matches('v').split('.');
    match (
        parts.next(),
        parts.next().and_then(|m| m.parse::<u32>().ok()),
    ) {
        (Some("0" | "1"), Some(minor)) => minor >= 53,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::has_arm64;

    #[test]
    fn metabase_publishes_arm64_from_v0_53() {
        assert!(!has_arm64("metabase/metabase:v0.51.3"));
        assert!(!has_arm64("metabase/metabase-enterprise:v1.52.9"));
        assert!(has_arm64("metabase/metabase:v0.53.5.5"));
        assert!(has_arm64("metabase/metabase:v0.58.7"));
        assert!(has_arm64("docker.io/metabase/metabase:v0.59.1"));
        assert!(has_arm64("public.ecr.aws/nginx/nginx:1.27"));
    }
}
