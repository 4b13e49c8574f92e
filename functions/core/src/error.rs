//! Error kinds, AWS error classification, and the stable names Step Functions matches.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::spec::InvalidSpec;

/// How often the state machine runs an apply that answered
/// [`TierError::Waiting`] again, and how many times: 10 minutes in all (AWS
/// deletes a NAT gateway in about one, and frees its address moments later).
pub const WAITING_RETRY_SECONDS: u64 = 10;
pub const WAITING_RETRIES: u64 = 60;

/// A tier failure. Its [`name`](TierError::name) crosses the Lambda boundary as the
/// error type, so the state machine's Retry and Catch can match it.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The input is wrong; nothing was created. Not retried.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    /// Worth retrying as is: throttling, 5xx, a dropped connection, or AWS saying
    /// "not yet" (DependencyViolation, InvalidDBInstanceState, IAM propagation).
    #[error("{0}")]
    Retryable(String),
    /// An apply that must let AWS finish something before its next change (a
    /// NAT instance to run before the route moves to it, a NAT gateway to free
    /// the Elastic IP it held): run again as is, every
    /// [`WAITING_RETRY_SECONDS`], for longer than a [`TierError::Retryable`].
    #[error("{0}")]
    Waiting(String),
    /// AWS refused the call for good (permissions, a bad parameter, a quota).
    #[error("{0}")]
    Terminal(String),
    /// A resource reached a failed state (a NAT gateway `failed`, a DB `incompatible-*`).
    #[error("{0}")]
    ResourceFailed(String),
    /// The service's deployment failed before any task of it started its
    /// container (the image could not be pulled, a role not assumed): the
    /// new version never ran, so it changed nothing it runs on.
    #[error("{0}")]
    NeverStarted(String),
    /// mbstack will not do it (e.g. delete a DB with deletion protection on).
    #[error("{0}")]
    Refused(String),
    /// This tier or verb is not built yet.
    #[error("{0}")]
    NotImplemented(String),
    /// Another run holds the stack's lock; nothing was touched.
    #[error("{0}")]
    Locked(String),
    /// Another run holds the stack's lock, and this run waits for it (a run
    /// nobody would start again: the state machine retries it); nothing was
    /// touched.
    #[error("{0}")]
    Busy(String),
}

impl TierError {
    /// The stable error name Step Functions sees.
    pub fn name(&self) -> &'static str {
        match self {
            TierError::InvalidSpec(_) => "Mbstack.InvalidSpec",
            TierError::Retryable(_) => "Mbstack.Retryable",
            TierError::Waiting(_) => "Mbstack.Waiting",
            TierError::Terminal(_) => "Mbstack.AwsError",
            TierError::ResourceFailed(_) => "Mbstack.ResourceFailed",
            TierError::NeverStarted(_) => "Mbstack.TasksNeverStarted",
            TierError::Refused(_) => "Mbstack.Refused",
            TierError::NotImplemented(_) => "Mbstack.NotImplemented",
            TierError::Locked(_) => "Mbstack.Locked",
            TierError::Busy(_) => "Mbstack.Busy",
        }
    }

    /// The same error, its message saying which tier it comes from.
    pub fn in_tier(self, tier: crate::naming::Tier) -> TierError {
        let p = |m: String| format!("{tier} tier: {m}");
        match self {
            TierError::InvalidSpec(e) => TierError::InvalidSpec(e),
            TierError::Retryable(m) => TierError::Retryable(p(m)),
            TierError::Waiting(m) => TierError::Waiting(p(m)),
            TierError::Terminal(m) => TierError::Terminal(p(m)),
            TierError::ResourceFailed(m) => TierError::ResourceFailed(p(m)),
            TierError::NeverStarted(m) => TierError::NeverStarted(p(m)),
            TierError::Refused(m) => TierError::Refused(p(m)),
            TierError::NotImplemented(m) => TierError::NotImplemented(p(m)),
            TierError::Locked(m) => TierError::Locked(p(m)),
            TierError::Busy(m) => TierError::Busy(p(m)),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, TierError::Retryable(_))
    }
}

/// Error codes AWS uses for throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean "not yet": the same call succeeds once something else
/// finishes (an ENI detaches, a DB leaves `modifying`, an IAM role propagates).
const NOT_YET: &[&str] = &[
    "DependencyViolation",
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "InvalidDBSubnetGroupStateFault",
    "ResourceInUse",
    "ResourceInUseException",
    "IncorrectState",
    // A deleted service's tasks still stopping hold their cluster.
    "ClusterContainsTasksException",
    "InvalidNatGatewayState",
    "InvalidAddress.Locked",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// The AWS error code of a failed call, if the service sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Turns a failed SDK call into a [`TierError`], classifying it as retryable or
/// terminal. `op` names the call for people: `ec2:CreateVpc`.
pub fn aws_error<E>(op: &str, err: SdkError<E, Response>) -> TierError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            TierError::Retryable(format!("{op}: {}", describe_transport(&err)))
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let message = se.err().message().unwrap_or("");
            let status = se.raw().status().as_u16();
            let text = format!("{op} failed: {code}: {message}");
            if status >= 500
                || THROTTLING.contains(&code)
                || NOT_YET.contains(&code)
                || is_iam_propagation(message)
                || not_visible_yet(op, code, message)
            {
                TierError::Retryable(text)
            } else {
                TierError::Terminal(text)
            }
        }
        _ => TierError::Terminal(format!("{op} failed: {}", describe_transport(&err))),
    }
}

/// A read of one resource by name: its answer, None when AWS says there is no
/// such resource (`not_found`: the service's codes for that), the error
/// otherwise. Every finder's not-found handling, in one place.
pub fn found<T, E>(
    op: &str,
    result: Result<T, SdkError<E, Response>>,
    not_found: &[&str],
) -> Result<Option<T>, TierError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if error_code(&e).is_some_and(|c| not_found.contains(&c)) => Ok(None),
        Err(e) => Err(aws_error(op, e)),
    }
}

/// EC2's answers for an ID it does not know. Right after a create, AWS may not
/// know the new ID yet (eventual consistency: "an ID just created can be unknown
/// to the next call for a moment").
const NOT_FOUND: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidNatGatewayID.NotFound",
    "InvalidAllocationID.NotFound",
    "InvalidRouteTableID.NotFound",
    // A NAT instance's interface, created then used at once (launched onto,
    // routed to): terraform-provider-aws#35568 met it on exactly that.
    "InvalidNetworkInterfaceID.NotFound",
    "InvalidInstanceID.NotFound",
];

/// Whether a failed call met an ID (or a service-linked role) not visible yet.
/// A call that changes something uses IDs the run has just read or created, so
/// its NotFound is "not yet"; a read or a delete that finds nothing means the
/// resource is gone (their callers handle that). ECS's first cluster of an
/// account answers "Unable to assume the service linked role" until the role it
/// has just created propagates.
fn not_visible_yet(op: &str, code: &str, message: &str) -> bool {
    let action = op.split(':').nth(1).unwrap_or(op);
    let changes = !["Describe", "List", "Get", "Delete"]
        .iter()
        .any(|r| action.starts_with(r));
    (changes && NOT_FOUND.contains(&code))
        || message.contains("Unable to assume the service linked role")
}

fn is_iam_propagation(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unable to assume role")
        || m.contains("cannot be assumed")
        || m.contains("role defined for the function cannot be assumed")
}

fn describe_transport<E: std::error::Error + 'static>(err: &SdkError<E, Response>) -> String {
    // The SDK's Display is terse ("dispatch failure"); its source chain says why.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ServiceError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct E(ErrorMetadata);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0.code())
        }
    }
    impl std::error::Error for E {}
    impl ProvideErrorMetadata for E {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service_error(code: &str, status: u16) -> SdkError<E, Response> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::ServiceError(ServiceError::builder().source(E(meta)).raw(raw).build())
    }

    #[test]
    fn classifies() {
        assert!(aws_error("ec2:X", service_error("RequestLimitExceeded", 503)).is_retryable());
        assert!(aws_error("ec2:X", service_error("DependencyViolation", 400)).is_retryable());
        assert!(aws_error("ec2:X", service_error("Whatever", 500)).is_retryable());
        let e = aws_error("ec2:CreateVpc", service_error("UnauthorizedOperation", 403));
        assert!(!e.is_retryable());
        assert_eq!(e.name(), "Mbstack.AwsError");
        assert_eq!(
            e.to_string(),
            "ec2:CreateVpc failed: UnauthorizedOperation: m"
        );
        assert_eq!(
            error_code(&service_error("X.NotFound", 400)),
            Some("X.NotFound")
        );
        // An ID just created: not yet, for a call that uses it; gone, for a read.
        assert!(aws_error(
            "ec2:CreateSubnet",
            service_error("InvalidVpcID.NotFound", 400)
        )
        .is_retryable());
        assert!(!aws_error(
            "ec2:DescribeVpcs",
            service_error("InvalidVpcID.NotFound", 400)
        )
        .is_retryable());
        assert!(!aws_error(
            "ec2:DeleteSubnet",
            service_error("InvalidSubnetID.NotFound", 400)
        )
        .is_retryable());
    }
}
