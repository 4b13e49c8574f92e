//! Fault injection at the front door (the reliability sweep): the k-th AWS call
//! of a run fails with a chosen class of fault. Calls are counted in arrival
//! order; Step Functions' own API and Lambda invocations are not AWS calls of a
//! tier and are not counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// What happens to the k-th call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultClass {
    /// AccessDenied: terminal, the run must fail and roll back.
    Terminal,
    /// The service's throttling error: the SDK retries.
    Throttle,
    /// HTTP 500: the SDK retries.
    ServerError,
    /// The connection is dropped without an answer: the SDK retries.
    Drop,
    /// The call succeeds, then the function that made it crashes before it
    /// returns its outcome (what it created exists, the outcome is lost).
    Crash,
    /// Eventual consistency: the first mutating call from the k-th on that uses
    /// an ID this run created is answered as if the ID did not exist yet
    /// (`InvalidVpcID.NotFound`, `InvalidSubnetID.NotFound`, …; for ECS, "Unable
    /// to assume the service linked role" on a cluster just created).
    NotYetVisible,
    /// The k-th Lambda invocation of the run (counted apart from the AWS
    /// calls) is answered by the Lambda service with `ServiceException` (HTTP
    /// 500): Step Functions sees `Lambda.ServiceException`.
    LambdaServiceException,
    /// The k-th Lambda invocation runs, and its answer is lost to a
    /// client-side time-out: Step Functions sees
    /// `Lambda.ClientExecutionTimeoutException` and retries a function that
    /// did its work.
    LambdaTimeout,
}

impl FaultClass {
    /// Whether its k counts Lambda invocations rather than AWS calls.
    pub fn of_invocations(self) -> bool {
        matches!(self, Self::LambdaServiceException | Self::LambdaTimeout)
    }

    /// The Lambda service's error code it answers an invocation with.
    pub(crate) fn lambda_code(self) -> Option<&'static str> {
        match self {
            Self::LambdaServiceException => Some("ServiceException"),
            Self::LambdaTimeout => Some("ClientExecutionTimeoutException"),
            _ => None,
        }
    }
}

/// EC2 ID prefixes and the NotFound code AWS answers for each.
const NOT_FOUND: &[(&str, &str)] = &[
    ("vpc-", "InvalidVpcID.NotFound"),
    ("igw-", "InvalidInternetGatewayID.NotFound"),
    ("subnet-", "InvalidSubnetID.NotFound"),
    ("sg-", "InvalidGroup.NotFound"),
    ("nat-", "InvalidNatGatewayID.NotFound"),
    ("eipalloc-", "InvalidAllocationID.NotFound"),
    ("rtb-", "InvalidRouteTableID.NotFound"),
    ("eni-", "InvalidNetworkInterfaceID.NotFound"),
    ("i-", "InvalidInstanceID.NotFound"),
];

/// The tags of EC2 create answers that carry a new ID.
const CREATED_ID_TAGS: &[&str] = &[
    "vpcId",
    "internetGatewayId",
    "subnetId",
    "groupId",
    "natGatewayId",
    "allocationId",
    "routeTableId",
    "networkInterfaceId",
    "instanceId",
];

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub calls: AtomicU64,
    pub plan: Mutex<Option<(u64, FaultClass)>>,
    /// What each counted call was, in order.
    pub names: Mutex<Vec<String>>,
    /// Set when a Crash fault's call has returned; the function serving layer
    /// takes it and fails the invocation.
    pub crash: Arc<AtomicBool>,
    /// IDs (and ECS cluster names) created since the plan was set.
    pub created: Mutex<Vec<String>>,
    /// Whether a NotYetVisible fault has been answered.
    pub fired: AtomicBool,
    /// The functions invoked since the plan was set, in order.
    pub invoked: Mutex<Vec<String>>,
    /// A fault at calls named (`service:Action` or target) rather than
    /// counted: the name, how many calls of it pass first, how many are then
    /// faulted.
    pub named: Mutex<Option<(String, u64, u64, FaultClass)>>,
}

/// A call as the eventual-consistency fault sees it.
pub(crate) struct CallRefs<'a> {
    /// `ec2:CreateSubnet`, or the JSON target.
    pub name: &'a str,
    /// Every parameter value (query) or the ECS `cluster` (JSON).
    pub values: Vec<&'a str>,
}

/// What the front door does with this call.
pub(crate) enum Verdict {
    Pass,
    Answer(Response<Full<Bytes>>),
    Drop,
    CrashAfter,
}

impl Faults {
    /// Remembers the IDs a successful create answered with.
    pub fn note_created(&self, name: &str, body: &[u8]) {
        let action = name.rsplit([':', '.']).next().unwrap_or("");
        if !(action.starts_with("Create")
            || action.starts_with("Allocate")
            || action == "RunInstances")
        {
            return;
        }
        let text = String::from_utf8_lossy(body);
        let mut ids: Vec<String> = if name.starts_with("ec2:") {
            CREATED_ID_TAGS
                .iter()
                .flat_map(|t| crate::xml::values(&text, t))
                .collect()
        } else if name.ends_with(".CreateCluster") {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .map(|v| {
                    ["/cluster/clusterName", "/cluster/clusterArn"]
                        .iter()
                        .filter_map(|p| v.pointer(p).and_then(|n| n.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if let Ok(mut c) = self.created.lock() {
            c.append(&mut ids);
        }
    }

    /// The answer of the eventual-consistency fault to this call, if it is the
    /// one: from the k-th call on, the first mutating call that uses an ID this
    /// run created (once per run).
    fn not_yet_visible(&self, n: u64, k: u64, call: &CallRefs<'_>) -> Option<Verdict> {
        let action = call.name.rsplit([':', '.']).next().unwrap_or("");
        let reads = ["Describe", "List", "Get", "Delete"];
        if n < k || self.fired.load(Ordering::SeqCst) || reads.iter().any(|r| action.starts_with(r))
        {
            return None;
        }
        let created = self.created.lock().ok()?;
        let used = call
            .values
            .iter()
            .find(|v| created.iter().any(|c| c == *v))?;
        let answer = if call.name.starts_with("ec2:") {
            let code = NOT_FOUND.iter().find(|(p, _)| used.starts_with(p))?.1;
            error(
                false,
                true,
                StatusCode::BAD_REQUEST,
                code,
                &format!("The ID '{used}' does not exist (injected: not yet visible)"),
            )
        } else if call.name.ends_with(".CreateService") {
            error(
                true,
                false,
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                "Unable to assume the service linked role. Please verify that the ECS service linked role exists. (injected: not yet visible)",
            )
        } else {
            return None;
        };
        self.fired.store(true, Ordering::SeqCst);
        Some(Verdict::Answer(answer))
    }

    /// Counts a Lambda invocation of `function` and says which error of the
    /// Lambda service answers it, if it is the planned one.
    pub fn invocation_verdict(&self, function: &str) -> Option<&'static str> {
        let n = match self.invoked.lock() {
            Ok(mut invoked) => {
                invoked.push(function.to_string());
                invoked.len() as u64
            }
            Err(_) => return None,
        };
        match self.plan.lock().ok().and_then(|p| *p) {
            Some((k, class)) if k == n => class.lambda_code(),
            _ => None,
        }
    }

    /// Counts a tier's AWS call and says what to do with it.
    pub fn verdict(&self, protocol_json: bool, ec2: bool, call: CallRefs<'_>) -> Verdict {
        let name = call.name.to_string();
        // Counted and named under one lock, so the k-th name is the k-th call.
        let n = match self.names.lock() {
            Ok(mut names) => {
                names.push(name);
                self.calls.fetch_add(1, Ordering::SeqCst) + 1
            }
            Err(_) => self.calls.fetch_add(1, Ordering::SeqCst) + 1,
        };
        let named = self.named.lock().ok().and_then(|mut p| match p.as_mut() {
            Some((want, pass, times, class)) if want.as_str() == call.name => {
                if *pass > 0 {
                    *pass -= 1;
                    return None;
                }
                let class = *class;
                *times = times.saturating_sub(1);
                if *times == 0 {
                    *p = None;
                }
                Some(class)
            }
            _ => None,
        });
        let plan = self.plan.lock().ok().and_then(|p| *p);
        if let (None, Some((k, FaultClass::NotYetVisible))) = (named, plan) {
            return self.not_yet_visible(n, k, &call).unwrap_or(Verdict::Pass);
        }
        let hit = named.or_else(|| plan.filter(|(k, _)| *k == n).map(|(_, c)| c));
        match hit {
            Some(class) => match class {
                FaultClass::Terminal => Verdict::Answer(error(
                    protocol_json,
                    ec2,
                    StatusCode::FORBIDDEN,
                    if ec2 {
                        "UnauthorizedOperation"
                    } else if protocol_json {
                        "AccessDeniedException"
                    } else {
                        "AccessDenied"
                    },
                    "injected: not authorized",
                )),
                FaultClass::Throttle => Verdict::Answer(error(
                    protocol_json,
                    ec2,
                    StatusCode::BAD_REQUEST,
                    if ec2 {
                        "RequestLimitExceeded"
                    } else if protocol_json {
                        "ThrottlingException"
                    } else {
                        "Throttling"
                    },
                    "injected: rate exceeded",
                )),
                FaultClass::ServerError => Verdict::Answer(error(
                    protocol_json,
                    ec2,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    if protocol_json {
                        "InternalServerException"
                    } else {
                        "InternalError"
                    },
                    "injected: internal error",
                )),
                FaultClass::Drop => Verdict::Drop,
                FaultClass::Crash => Verdict::CrashAfter,
                FaultClass::NotYetVisible
                | FaultClass::LambdaServiceException
                | FaultClass::LambdaTimeout => Verdict::Pass,
            },
            None => Verdict::Pass,
        }
    }
}

fn error(
    json: bool,
    ec2: bool,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let body = if json {
        serde_json::json!({"__type": code, "message": message}).to_string()
    } else if ec2 {
        format!("<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>mbstack-fault</RequestID></Response>")
    } else {
        format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>mbstack-fault</RequestId></ErrorResponse>")
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = if json {
        "application/x-amz-json-1.1"
    } else {
        "text/xml"
    };
    r.headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static(ct));
    if json {
        if let Ok(v) = hyper::header::HeaderValue::from_str(code) {
            r.headers_mut().insert("x-amzn-errortype", v);
        }
    }
    r
}
