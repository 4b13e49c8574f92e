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
