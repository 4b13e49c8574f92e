//! The one loader of the shared AWS configuration, and the interceptors tests and
//! benchmarks add to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::SdkConfig;

/// What a tier needs to build its service clients: the shared `SdkConfig` plus the
/// interceptors to install on every client (tests count and fault calls with them).
#[derive(Clone, Debug)]
pub struct Aws {
    pub config: SdkConfig,
    interceptors: Vec<SharedInterceptor>,
    role_propagation: Duration,
}

/// How long IAM takes, at most in practice, before a service can assume a role
/// just created (AWS: "usually within seconds"; changes are eventually consistent).
pub const ROLE_PROPAGATION: Duration = Duration::from_secs(10);

impl Aws {
    /// aws-config's default chain: environment, profiles, region, `AWS_ENDPOINT_URL`,
    /// container and instance credentials. SDK retries: standard mode, 5 attempts.
    /// HTTPS through [`https_client`].
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .load()
            .await;
        Self::new(config)
    }

    pub fn new(config: SdkConfig) -> Self {
        Self {
            config,
            interceptors: Vec::new(),
            role_propagation: ROLE_PROPAGATION,
        }
    }

    /// How long to give IAM before a service uses a role created this run
    /// ([`ROLE_PROPAGATION`] on AWS; the emulator's own figure locally).
    pub fn with_role_propagation(mut self, delay: Duration) -> Self {
        self.role_propagation = delay;
        self
    }

    pub fn role_propagation(&self) -> Duration {
        self.role_propagation
    }

    /// Adds an interceptor to every client built from this configuration.
    pub fn with_interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.interceptors.push(SharedInterceptor::new(interceptor));
        self
    }

    pub fn interceptors(&self) -> &[SharedInterceptor] {
        &self.interceptors
    }
}

/// The HTTPS client every tier uses: hyper and rustls on ring, the system's root
/// certificates (the SDK's default client is the same on aws-lc, ~1 MiB more per zip).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Builds a service client from an [`Aws`], with its interceptors:
/// `let ec2 = mbstack_core::client!(aws_sdk_ec2, aws);`
#[macro_export]
macro_rules! client {
    ($sdk:ident, $aws:expr) => {{
        let aws: &$crate::aws::Aws = $aws;
        let mut builder = $sdk::config::Builder::from(&aws.config);
        for interceptor in aws.interceptors() {
            builder.push_interceptor(interceptor.clone());
        }
        $sdk::Client::from_conf(builder.build())
    }};
}

/// One AWS call as the SDK made it (once per operation, retries not counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    pub operation: String,
}

impl Call {
    /// Whether the call can change anything: every operation but the read-only
    /// Describe*, Get*, List* and Lookup* families.
    pub fn is_mutating(&self) -> bool {
        !["Describe", "Get", "List", "Lookup"]
            .iter()
            .any(|p| self.operation.starts_with(p))
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.operation)
    }
}

/// Records every AWS call made through the clients it is installed on.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl CallLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn mutating(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutating).collect()
    }

    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "mbstack-call-log"
    }

    // Not read_before_execution: for client-level interceptors it runs before the
    // operation's config (which holds its Metadata) is applied.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(Call {
                    service: meta.service().to_string(),
                    operation: meta.name().to_string(),
                });
            }
        }
        Ok(())
    }
}
