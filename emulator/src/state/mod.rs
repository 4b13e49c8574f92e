//! The emulator's state: what the front door keeps between calls. Only data and
//! the pure questions asked of it live here; the behaviour that reads and
//! changes it (the front door, the realism rules, the ECS player) imports this
//! module, and this module imports none of them.

pub(crate) mod acm;
pub(crate) mod deploying;
pub(crate) mod ecs;
pub(crate) mod realism;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use ecs::EcsActor;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A Lambda function served in-process: the event in, the result or
/// (errorType, errorMessage) out.
pub type LambdaFn = Arc<dyn Fn(serde_json::Value) -> LambdaFuture + Send + Sync>;
pub type LambdaFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<serde_json::Value, LambdaError>> + Send>,
>;

/// A function error, as Lambda reports it (`X-Amz-Function-Error`).
#[derive(Debug, Clone)]
pub struct LambdaError {
    pub error_type: String,
    pub message: String,
}

/// What the next invocation of a function gets instead of running it (a
/// test's knob): a closed connection (Step Functions' call that gets no
/// answer), or one of the Lambda service's own errors (its code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvocationFault {
    Drop,
    Error(String),
}

/// Shared state of the front door.
pub(crate) struct Shared {
    pub moto_port: u16,
    pub client: HttpClient,
    pub ecs: Mutex<EcsActor>,
    /// Function name → handler (the local Lambda endpoint).
    pub lambdas: Mutex<std::collections::HashMap<String, LambdaFn>>,
    /// Tier outcomes' `retryAfterSeconds` are divided by this (the state
    /// machine's waits shrink; the state machine itself is unchanged).
    pub wait_divisor: std::sync::atomic::AtomicU32,
    /// AWS's rules and timings (see [`crate::realism`]).
    pub realism: Mutex<realism::Realism>,
    /// The reliability sweep's fault at the k-th call.
    pub faults: crate::faults::Faults,
    /// Every function invocation served: (function, duration).
    pub invocations: Mutex<Vec<(String, std::time::Duration)>>,
    /// IAM propagation and Lambda function states while deploying.
    pub deploying: Mutex<deploying::Deploying>,
    /// Every call served, while a test records them.
    pub journal: crate::journal::Journal,
    /// Held while moto serves an SSM write: moto checks "exists?" and then
    /// writes without a lock, so two concurrent `PutParameter` without
    /// `Overwrite` could both create the parameter (under load, seen: two runs
    /// both took one stack's lock). AWS's conditional create is atomic.
    pub ssm_writes: tokio::sync::Mutex<()>,
    /// ACM's certificates as the front door issues them.
    pub acm: Mutex<acm::AcmState>,
    /// Function name → what its next invocations get instead of running
    /// (a test's knob), in order.
    pub invocation_faults:
        Mutex<std::collections::HashMap<String, std::collections::VecDeque<InvocationFault>>>,
    /// Service events (a rotation's) to lose before delivery: how many more (a
    /// test's knob; AWS delivers CloudTrail-based events "on a best effort
    /// basis").
    pub lost_events: std::sync::atomic::AtomicU32,
    /// The front door's half of the states a test saved (moto keeps the
    /// other half), by name.
    pub saved: Mutex<std::collections::HashMap<String, Saved>>,
}

/// What the front door remembers of an account at a moment a test saved.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub ecs: EcsActor,
    pub realism: realism::Realism,
    pub deploying: deploying::Deploying,
    pub acm: acm::AcmState,
}
