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
    /// The configuration a Lambda function is given, from its environment:
    /// `AWS_REGION` (else `AWS_DEFAULT_REGION`), the execution role's credentials
    /// in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
    /// and `AWS_ENDPOINT_URL` when set (an emulator). SDK retries: standard
    /// mode, 5 attempts; HTTPS through [`https_client`].
    ///
    /// Not aws-config's default chain: its profile files, web identity (an STS
    /// client), container and instance-metadata providers never serve a Lambda
    /// function, and linked in they made every zip larger and every cold start
    /// read files that are not there.
    pub fn from_lambda_env() -> Self {
        Self::new(lambda_config(|name| std::env::var(name).ok()))
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

/// The credentials of a function whose environment has none: every call fails
/// naming the variables Lambda sets.
#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials in the function's environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are unset (Lambda sets them from the function's execution role)",
            ),
        ))
    }
}

/// [`Aws::from_lambda_env`]'s configuration, from the variables `var` reads.
pub fn lambda_config(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    use aws_config::identity::IdentityCache;
    use aws_config::timeout::TimeoutConfig;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    use aws_smithy_async::rt::sleep::TokioSleep;
    use aws_smithy_async::time::SystemTimeSource;
    use aws_types::region::Region;

    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
        .map(Region::new);
    // Lambda's environment holds the execution role's credentials for the
    // environment's whole life; none set (not in Lambda): every call says so.
    let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(key), Some(secret)) => SharedCredentialsProvider::new(Credentials::new(
            key,
            secret,
            var("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
            None,
            "lambda-environment",
        )),
        _ => SharedCredentialsProvider::new(NoCredentials),
    };
    let mut config = SdkConfig::builder()
        .credentials_provider(credentials)
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .identity_cache(IdentityCache::lazy().build())
        .http_client(https_client())
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new())
        // aws-config's default: connections that do not open in 3.1 s are retried.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200)),
        );
    if let Some(url) = var("AWS_ENDPOINT_URL").filter(|u| !u.is_empty()) {
        config = config.endpoint_url(url);
    }
    config.build()
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

/// A client of SDK crate `$sdk` that is never to be called (a kind's pure
/// `diff` in a unit test needs one to exist): `us-east-1`, no credentials.
#[macro_export]
macro_rules! offline_client {
    ($sdk:ident) => {{
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .build(),
        )
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
