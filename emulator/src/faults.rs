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
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub calls: AtomicU64,
    pub plan: Mutex<Option<(u64, FaultClass)>>,
    /// What each counted call was, in order.
    pub names: Mutex<Vec<String>>,
    /// Set when a Crash fault's call has returned; the function serving layer
    /// takes it and fails the invocation.
    pub crash: Arc<AtomicBool>,
}

/// What the front door does with this call.
pub(crate) enum Verdict {
    Pass,
    Answer(Response<Full<Bytes>>),
    Drop,
    CrashAfter,
}

impl Faults {
    /// Counts a tier's AWS call and says what to do with it.
    pub fn verdict(&self, protocol_json: bool, ec2: bool, name: String) -> Verdict {
        // Counted and named under one lock, so the k-th name is the k-th call.
        let n = match self.names.lock() {
            Ok(mut names) => {
                names.push(name);
                self.calls.fetch_add(1, Ordering::SeqCst) + 1
            }
            Err(_) => self.calls.fetch_add(1, Ordering::SeqCst) + 1,
        };
        let plan = self.plan.lock().ok().and_then(|p| *p);
        match plan {
            Some((k, class)) if k == n => match class {
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
            },
            _ => Verdict::Pass,
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
