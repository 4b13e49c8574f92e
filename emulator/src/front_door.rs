//! The emulator's front door: an HTTP endpoint of ours in front of moto. Every
//! request is forwarded to moto; a few answers are completed where moto stops
//! short of AWS (see [`crate::ecs`]). Clients (the tiers, the tests, the CLI) talk
//! to the front door, never to moto directly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::protocol::json_error_with;
use crate::protocol::query;
use crate::rules::{Answer, Call, Rule};
use crate::state::ecs::{EcsActor, EcsFault};
use crate::state::{HttpClient, InvocationFault, LambdaFn, Saved, Shared};
use crate::EmulatorError;

/// A listening socket for the front door, bound before moto starts (moto must
/// know the front door's port to send its Lambda invocations there).
pub struct Bound {
    listener: std::net::TcpListener,
    port: u16,
}

impl Bound {
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A running front door; stopped when dropped.
pub struct FrontDoor {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FrontDoor {
    /// Binds a loopback port (`port`, or a free one).
    pub fn bind(port: Option<u16>) -> Result<Bound, EmulatorError> {
        let listener =
            std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0))))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        Ok(Bound { listener, port })
    }

    /// Listens on a free loopback port (or `port`) and forwards to moto on `moto_port`.
    pub fn start(moto_port: u16, port: Option<u16>) -> Result<Self, EmulatorError> {
        Self::serve(Self::bind(port)?, moto_port)
    }

    /// Serves on `bound`, forwarding to moto on `moto_port`.
    pub fn serve(bound: Bound, moto_port: u16) -> Result<Self, EmulatorError> {
        let Bound {
            listener: std_listener,
            port,
        } = bound;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let shared = Arc::new(Shared {
            moto_port,
            client,
            ecs: Mutex::new(EcsActor::default()),
            lambdas: Mutex::new(std::collections::HashMap::new()),
            invocations: Mutex::new(Vec::new()),
            deploying: Mutex::new(Default::default()),
            journal: Default::default(),
            ssm_writes: Default::default(),
            acm: Default::default(),
            wait_divisor: std::sync::atomic::AtomicU32::new(1),
            realism: Mutex::new(crate::state::realism::Realism::default()),
            faults: crate::faults::Faults::default(),
            invocation_faults: Default::default(),
            lost_events: std::sync::atomic::AtomicU32::new(0),
            saved: Default::default(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let for_thread = shared.clone();
        // Its own thread and runtime: independent of whatever the caller runs on.
        let thread = std::thread::Builder::new().name("mbstack-front-door".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                let mut stopped = stopped;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let shared = for_thread.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| handle(shared.clone(), req));
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            });
                        }
                    }
                }
            });
        })?;
        Ok(Self {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How ECS tasks behave from now on (the failure knob).
    pub fn set_ecs_fault(&self, fault: Option<EcsFault>) {
        if let Ok(mut ecs) = self.shared.ecs.lock() {
            ecs.fault = fault;
        }
    }

    /// From now on, tasks of `image` fail their database migration and exit
    /// with 1 (`EcsFault::MigrationFailed`); every other image runs (None:
    /// no image fails so).
    pub fn fail_migrations_of(&self, image: Option<&str>) {
        if let Ok(mut ecs) = self.shared.ecs.lock() {
            ecs.failing_image = image.map(str::to_string);
        }
    }

    /// Why a task placed in `subnets` (without a public IP) could not reach the
    /// internet now, as the egress rule sees it (None: it could).
    pub async fn no_way_out(&self, subnets: &[String]) -> Option<String> {
        crate::realism::egress::no_way_out(&self.shared, subnets, false).await
    }

    /// Serves Lambda function `name` in-process (Invoke by name or ARN).
    pub fn register_lambda(&self, name: &str, f: LambdaFn) {
        if let Ok(mut l) = self.shared.lambdas.lock() {
            l.insert(name.to_string(), f);
        }
    }

    /// Turns AWS's rules and timings on (with real durations divided by `scale`)
    /// or off.
    /// Plays an account on AWS's Free plan: RunInstances of a type that is not
    /// free-tier eligible is refused.
    pub fn set_free_plan(&self, on: bool) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.free_plan = on;
        }
    }

    pub fn set_realism(&self, enabled: bool, scale: u32) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.enabled = enabled;
            r.scale = scale.max(1);
        }
        if enabled {
            self.set_ecs_start_delay(crate::state::realism::ECS_START / scale.max(1));
        }
    }

    /// Closes the connection of the next `times` invocations of `function`
    /// without an answer (Step Functions' call to Lambda that gets none).
    pub fn drop_invocations(&self, function: &str, times: u32) {
        self.invocation_faults(function, InvocationFault::Drop, times);
    }

    /// Answers the next `times` invocations of `function` with the Lambda
    /// service's own error `code` (`ServiceException`, HTTP 500;
    /// `TooManyRequestsException`, HTTP 429; others 500), as Lambda answers
    /// Step Functions' invoke when the service fails it.
    pub fn fail_invocations(&self, function: &str, code: &str, times: u32) {
        self.invocation_faults(function, InvocationFault::Error(code.to_string()), times);
    }

    fn invocation_faults(&self, function: &str, fault: InvocationFault, times: u32) {
        if let Ok(mut f) = self.shared.invocation_faults.lock() {
            let queue = f.entry(function.to_string()).or_default();
            queue.extend(std::iter::repeat_n(fault, times as usize));
        }
    }

    /// Loses the next `times` service events before any rule sees them (AWS
    /// delivers the events that come through CloudTrail, a rotation's among
    /// them, "on a best effort basis").
    pub fn lose_events(&self, times: u32) {
        self.shared
            .lost_events
            .store(times, std::sync::atomic::Ordering::SeqCst);
    }

    /// What EventBridge does when the schedule of each enabled scheduled rule
    /// comes due: starts its targets with the rule's input (or the "Scheduled
    /// Event"). Returns the rules fired.
    pub async fn fire_scheduled_rules(&self) -> Vec<String> {
        crate::events::fire_schedules(&self.shared).await
    }

    /// Fails the `k`-th AWS call from now on with `class` (None: no fault), and
    /// restarts the count.
    pub fn set_fault(&self, plan: Option<(u64, crate::faults::FaultClass)>) {
        if let Ok(mut p) = self.shared.faults.plan.lock() {
            *p = plan;
        }
        self.shared
            .faults
            .calls
            .store(0, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut n) = self.shared.faults.names.lock() {
            n.clear();
        }
        self.shared
            .faults
            .crash
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared
            .faults
            .fired
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut c) = self.shared.faults.created.lock() {
            c.clear();
        }
        if let Ok(mut i) = self.shared.faults.invoked.lock() {
            i.clear();
        }
        if let Ok(mut n) = self.shared.faults.named.lock() {
            *n = None;
        }
    }

    /// Fails the `nth` call named `name` from now on (as [`FrontDoor::call_names`]
    /// names it: `ec2:CreateVpc`, `AmazonSSM.PutParameter`) with `class`:
    /// a fault at a call a test names, wherever it falls in the run. Cleared
    /// by [`FrontDoor::set_fault`].
    pub fn fail_call(&self, name: &str, nth: u64, class: crate::faults::FaultClass) {
        self.fail_calls(name, nth, 1, class);
    }

    /// Fails `times` calls named `name` in a row, from the `nth` on (an SDK
    /// gives up on a throttled call after its attempts: five in mbstack's).
    pub fn fail_calls(&self, name: &str, nth: u64, times: u64, class: crate::faults::FaultClass) {
        if let Ok(mut n) = self.shared.faults.named.lock() {
            *n = Some((name.to_string(), nth.max(1) - 1, times.max(1), class));
        }
    }

    /// The functions invoked since [`FrontDoor::set_fault`], in order (what
    /// an invocation fault's k counts).
    pub fn invoked(&self) -> Vec<String> {
        self.shared
            .faults
            .invoked
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default()
    }

    /// Whether the eventual-consistency fault set by [`FrontDoor::set_fault`] has
    /// been answered (a run may make no call it applies to).
    pub fn not_yet_visible_fired(&self) -> bool {
        self.shared
            .faults
            .fired
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The calls counted since the last [`FrontDoor::set_fault`], in order, each as
    /// `service:Action` (query protocols) or its `X-Amz-Target` (JSON protocols).
    pub fn call_names(&self) -> Vec<String> {
        self.shared
            .faults
            .names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// Every function invocation served so far, with how long it took; the list
    /// is emptied (for cost figures per run).
    pub fn take_invocations(&self) -> Vec<(String, std::time::Duration)> {
        self.shared
            .invocations
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default()
    }

    /// AWS calls counted since the last [`FrontDoor::set_fault`].
    pub fn aws_calls(&self) -> u64 {
        self.shared
            .faults
            .calls
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag a Crash fault raises once its call returned: the layer serving
    /// the functions takes it and fails the invocation.
    pub fn crash_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.shared.faults.crash.clone()
    }

    /// How long a new IAM role takes to become assumable by services (Lambda,
    /// Step Functions, ECS tasks), instead of the realism scale's share of AWS's.
    pub fn set_role_propagation(&self, delay: std::time::Duration) {
        if let Ok(mut d) = self.shared.deploying.lock() {
            d.role_propagation = Some(delay);
        }
    }

    /// Records every call served from now on (see [`crate::journal`]).
    pub fn start_journal(&self) {
        if let Ok(mut j) = self.shared.journal.0.lock() {
            *j = Some(Vec::new());
        }
    }

    /// The calls recorded since [`FrontDoor::start_journal`]; recording goes on.
    pub fn take_journal(&self) -> Vec<crate::journal::Entry> {
        self.shared
            .journal
            .0
            .lock()
            .ok()
            .and_then(|mut j| j.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    /// How many "not yet" answers the deploy rules gave (young roles, busy functions).
    pub fn deploy_not_yet_answers(&self) -> u64 {
        self.shared
            .deploying
            .lock()
            .map(|d| d.answered)
            .unwrap_or(0)
    }

    /// How many "not yet" answers (lingering ENIs) the realism layer gave.
    pub fn not_yet_answers(&self) -> u64 {
        self.shared
            .realism
            .lock()
            .map(|r| r.not_yet.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Answers this fraction of calls (0.0–1.0) with the service's throttling error.
    pub fn set_throttle(&self, fraction: f64) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.throttle = fraction.clamp(0.0, 1.0);
        }
    }

    /// The account's Elastic IP quota (default 5, AWS's): AllocateAddress is
    /// refused beyond it and DescribeAccountAttributes reports it, as after a
    /// Service Quotas increase.
    /// Sets the region's VPC and internet gateway quota (5 by default, the
    /// default VPC counted), as an account owner can through Service Quotas.
    pub fn set_vpc_quota(&self, quota: usize) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.vpc_quota = quota;
        }
    }

    /// The region's manual DB snapshot quota (100 by default, AWS's):
    /// CreateDBSnapshot and a DeleteDBInstance with a final snapshot are
    /// refused at it, and RDS's DescribeAccountAttributes reports it.
    pub fn set_manual_snapshot_quota(&self, quota: usize) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.manual_snapshot_quota = quota;
        }
    }

    pub fn set_eip_quota(&self, quota: usize) {
        if let Ok(mut r) = self.shared.realism.lock() {
            r.eip_quota = quota;
        }
    }

    /// How many calls the realism layer refused (as AWS would have).
    pub fn refused_calls(&self) -> u64 {
        self.shared
            .realism
            .lock()
            .map(|r| r.refused.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Divides every tier outcome's `retryAfterSeconds` by `divisor` (1: as is;
    /// a nonzero wait stays at least 1 s).
    pub fn set_wait_divisor(&self, divisor: u32) {
        self.shared
            .wait_divisor
            .store(divisor.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ECS tasks take to start and pass health checks.
    pub fn set_ecs_start_delay(&self, delay: std::time::Duration) {
        if let Ok(mut ecs) = self.shared.ecs.lock() {
            ecs.start_delay = delay;
        }
    }

    /// Keeps what the front door knows of the account (ECS's rollouts, the
    /// realism's clocks, IAM's propagation, ACM's issuance) under `name`; the
    /// emulator's [`crate::Emulator::save`] keeps moto's half.
    pub(crate) fn save_state(&self, name: &str) {
        let saved = (|| {
            Some(Saved {
                ecs: self.shared.ecs.lock().ok()?.clone(),
                realism: self.shared.realism.lock().ok()?.clone(),
                deploying: self.shared.deploying.lock().ok()?.clone(),
                acm: self.shared.acm.lock().ok()?.clone(),
            })
        })();
        if let (Some(saved), Ok(mut all)) = (saved, self.shared.saved.lock()) {
            all.insert(name.to_string(), saved);
        }
    }

    /// Puts back what [`FrontDoor::save_state`] kept under `name`, and forgets
    /// every knob a test set since (faults, invocation faults, lost events). False when nothing was saved under `name`.
    pub(crate) fn restore_state(&self, name: &str) -> bool {
        let Some(saved) = self
            .shared
            .saved
            .lock()
            .ok()
            .and_then(|all| all.get(name).cloned())
        else {
            return false;
        };
        if let Ok(mut g) = self.shared.ecs.lock() {
            *g = saved.ecs;
        }
        if let Ok(mut g) = self.shared.realism.lock() {
            *g = saved.realism;
        }
        if let Ok(mut g) = self.shared.deploying.lock() {
            *g = saved.deploying;
        }
        if let Ok(mut g) = self.shared.acm.lock() {
            *g = saved.acm;
        }
        self.set_fault(None);
        if let Ok(mut f) = self.shared.invocation_faults.lock() {
            f.clear();
        }
        if let Ok(mut i) = self.shared.invocations.lock() {
            i.clear();
        }
        self.shared
            .lost_events
            .store(0, std::sync::atomic::Ordering::SeqCst);
        true
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every AWS answer carries a request ID (`x-amzn-RequestId`); the answers the
/// front door makes itself (Lambda's Invoke, the refusals) get one too. moto's
/// Step Functions reads it from a Lambda error to name the failure: without it
/// the engine itself fails the execution (`KeyError('RequestId')`), once seen
/// under load in place of the run's real error.
fn with_request_id(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let h = r.headers_mut();
    if !h.contains_key("x-amzn-requestid") && !h.contains_key("x-amz-request-id") {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012x}");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
            h.insert("x-amzn-requestid", v);
        }
    }
    r
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("reading the request: {e}"),
            ))
        }
    };
    if !shared.journal.on() {
        return serve(&shared, &parts, body).await.map(with_request_id);
    }
    let resp = with_request_id(serve(&shared, &parts, body.clone()).await?);
    let (rparts, rbody) = resp.into_parts();
    let rbytes = rbody
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let entry = match invoked_function(&parts) {
        Some(function) => crate::journal::Entry {
            caller: crate::journal::signer(&parts.headers).0,
            service: "lambda".into(),
            action: "Invoke".into(),
            params: serde_json::json!({ "FunctionName": function }),
            status: rparts.status.as_u16(),
            response: String::new(),
        },
        None => {
            let target = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let json = serde_json::from_slice(&body).ok();
            crate::journal::entry(
                &parts,
                &body,
                query(&parts.headers, &body).as_ref(),
                target,
                json.as_ref(),
                rparts.status.as_u16(),
                &rbytes,
            )
        }
    };
    shared.journal.push(entry);
    Ok(Response::from_parts(rparts, Full::new(rbytes)))
}

async fn serve(
    shared: &Arc<Shared>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let shared = shared.clone();
    if let Some(function) = invoked_function(parts) {
        let fault = shared
            .invocation_faults
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&function).and_then(|q| q.pop_front()))
            .or_else(|| {
                shared
                    .faults
                    .invocation_verdict(&function)
                    .map(|code| InvocationFault::Error(code.to_string()))
            });
        match fault {
            Some(InvocationFault::Drop) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: the invocation's connection closed without an answer",
                ))
            }
            Some(InvocationFault::Error(code)) => {
                // A client-side time-out (Step Functions' own SDK client):
                // the invocation was sent and the function ran; its answer
                // is what is lost ("your function may be invoked multiple
                // times", Lambda's Invoke reference).
                if code == "ClientExecutionTimeoutException" {
                    let _lost = invoke(&shared, &function, &body).await;
                }
                let status = match code.as_str() {
                    "TooManyRequestsException" => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let message =
                    format!("injected: Lambda answered the invoke of {function} with {code}");
                return Ok(json_error_with(status, &code, &message));
            }
            None => {}
        }
        return Ok(invoke(&shared, &function, &body).await);
    }
    // moto's process tells of an execution that ended (`moto_hooks.py`);
    // EventBridge delivers Step Functions' event for it a moment later.
    if parts.method == hyper::Method::POST
        && parts.uri.path() == "/mbstack-emulator/execution-status"
    {
        let for_task = shared.clone();
        tokio::spawn(async move { crate::events::execution_ended(&for_task, &body).await });
        return Ok(text(StatusCode::OK, "{}".into()));
    }
    let call = Call::parse(parts, body);

    // The sweep's fault, for a tier's AWS call (not Step Functions' own API,
    // not moto's internal API).
    let mut crash_after = false;
    if !call.is_sfn() && !call.is_internal() && (call.query.is_some() || !call.target.is_empty()) {
        let ec2 = call.query.as_ref().is_some_and(|q| q.service == "ec2");
        let name = call.name();
        let values: Vec<&str> = match (&call.query, &call.json) {
            (Some(q), _) => q.params.values().map(String::as_str).collect(),
            (None, Some(j)) => j
                .get("cluster")
                .and_then(|c| c.as_str())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let refs = crate::faults::CallRefs {
            name: &name,
            values,
        };
        match shared.faults.verdict(!call.target.is_empty(), ec2, refs) {
            crate::faults::Verdict::Pass => {}
            crate::faults::Verdict::Answer(r) => return Ok(r),
            crate::faults::Verdict::Drop => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: connection dropped",
                ))
            }
            crate::faults::Verdict::CrashAfter => crash_after = true,
        }
    }

    // The rules (`crate::rules`): AWS's refusals, then the front door's own
    // answers, then the request as moto should take it.
    if let Some(refusal) = refusal(&shared, &call).await {
        return Ok(refusal);
    }
    if let Some(answer) = answer(&shared, &call).await {
        return Ok(answer);
    }
    let body = rewritten(&shared, &call).await;
    // SSM's writes one at a time, as atomic as AWS's (see `Shared::ssm_writes`).
    let _ssm_write = match call.target.as_str() {
        "AmazonSSM.PutParameter" | "AmazonSSM.DeleteParameter" | "AmazonSSM.DeleteParameters" => {
            Some(shared.ssm_writes.lock().await)
        }
        _ => None,
    };
    let (status, headers, bytes) = match forward(&shared, parts, body).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                format!("the emulator (moto) did not answer: {e}"),
            ))
        }
    };
    if status.is_success() && !call.is_sfn() && !call.is_internal() {
        shared.faults.note_created(&call.name(), &bytes);
    }
    let bytes = shown(&shared, &call, status, bytes).await;
    if crash_after {
        shared
            .faults
            .crash
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let mut resp = Response::new(Full::new(bytes.clone()));
    *resp.status_mut() = status;
    for (k, v) in headers.iter() {
        if k != hyper::header::CONTENT_LENGTH && k != hyper::header::TRANSFER_ENCODING {
            resp.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(resp)
}

/// The function name of a Lambda Invoke request (`POST
/// /2015-03-31/functions/{name or ARN}/invocations`).
fn invoked_function(parts: &hyper::http::request::Parts) -> Option<String> {
    if parts.method != hyper::Method::POST {
        return None;
    }
    let rest = parts.uri.path().strip_prefix("/2015-03-31/functions/")?;
    let raw = rest.strip_suffix("/invocations")?;
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    // An ARN (arn:aws:lambda:region:account:function:name[:qualifier]) or a name.
    let name = match decoded.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name.to_string(),
        _ => decoded.clone(),
    };
    Some(name)
}

/// Runs a registered function and answers exactly as Lambda's Invoke does.
async fn invoke(shared: &Shared, function: &str, body: &Bytes) -> Response<Full<Bytes>> {
    let f = shared
        .lambdas
        .lock()
        .ok()
        .and_then(|l| l.get(function).cloned());
    let Some(f) = f else {
        let mut r = text(
            StatusCode::NOT_FOUND,
            json_string(
                &serde_json::json!({"Type": "User", "message": format!("Function not found: {function}")}),
            ),
        );
        r.headers_mut().insert(
            "x-amzn-errortype",
            hyper::header::HeaderValue::from_static("ResourceNotFoundException"),
        );
        return r;
    };
    let event: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let mut r = text(
                    StatusCode::BAD_REQUEST,
                    json_string(
                        &serde_json::json!({"Type": "User", "message": format!("Could not parse request body into json: {e}")}),
                    ),
                );
                r.headers_mut().insert(
                    "x-amzn-errortype",
                    hyper::header::HeaderValue::from_static("InvalidRequestContentException"),
                );
                return r;
            }
        }
    };
    let started = std::time::Instant::now();
    // A handler that panics is reported as lambda_runtime reports it (with
    // unwinding, which the functions keep): a function error, never a closed
    // connection.
    let result = match tokio::spawn(f(event)).await {
        Ok(r) => r,
        Err(e) => {
            let why = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_else(|| "the handler's task was cancelled".into());
            Err(crate::LambdaError {
                error_type: "alloc::boxed::Box<dyn core::any::Any + core::marker::Send>".into(),
                message: format!("Lambda panicked: {why}"),
            })
        }
    };
    if let Ok(mut i) = shared.invocations.lock() {
        i.push((function.to_string(), started.elapsed()));
    }
    let (body, function_error) = match result {
        Ok(mut v) => {
            let divisor = shared
                .wait_divisor
                .load(std::sync::atomic::Ordering::Relaxed);
            if divisor > 1 {
                if let Some(n) = v
                    .get("retryAfterSeconds")
                    .and_then(serde_json::Value::as_u64)
                {
                    let scaled = if n == 0 {
                        0
                    } else {
                        (n / u64::from(divisor)).max(1)
                    };
                    v["retryAfterSeconds"] = serde_json::json!(scaled);
                }
            }
            (json_string(&v), false)
        }
        Err(e) => (
            json_string(&serde_json::json!({"errorType": e.error_type, "errorMessage": e.message})),
            true,
        ),
    };
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-amz-executed-version",
        hyper::header::HeaderValue::from_static("$LATEST"),
    );
    if function_error {
        r.headers_mut().insert(
            "x-amz-function-error",
            hyper::header::HeaderValue::from_static("Unhandled"),
        );
    }
    r
}

fn json_string(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// Sends a request to moto as is; returns its status, headers and body.
pub(crate) async fn forward(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("http://127.0.0.1:{}{path}", shared.moto_port);
    let mut req = Request::builder().method(parts.method.clone()).uri(uri);
    // Content-Length is hyper's to set: the front door may have rewritten the body.
    for (k, v) in parts.headers.iter() {
        if k != hyper::header::HOST && k != hyper::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let req = req
        .header(
            hyper::header::HOST,
            format!("127.0.0.1:{}", shared.moto_port),
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = shared
        .client
        .request(req)
        .await
        .map_err(|e| e.to_string())?;
    let (rp, rb) = resp.into_parts();
    let bytes = rb.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((rp.status, rp.headers, bytes))
}

/// Every rule, in the order each step asks them.
const RULES: &[&dyn Rule] = &[
    &crate::scheduler::Scheduler,
    &crate::deploying::WhileDeploying,
    &crate::sns::Sns,
    &crate::acm::Acm,
    &crate::ec2::Ec2,
    &crate::realism::Realism,
    &crate::ecs::Ecs,
    &crate::sfn_history::History,
    &crate::rotation::Rotation,
];

/// The first refusal of any rule.
async fn refusal(s: &Arc<Shared>, c: &Call<'_>) -> Option<Answer> {
    for r in RULES {
        if let Some(a) = r.refuse(s, c).await {
            return Some(a);
        }
    }
    None
}

/// The first answer of any rule (each rule's `before` runs when none answers).
async fn answer(s: &Arc<Shared>, c: &Call<'_>) -> Option<Answer> {
    for r in RULES {
        if let Some(a) = r.answer(s, c).await {
            return Some(a);
        }
    }
    for r in RULES {
        r.before(s, c).await;
    }
    None
}

/// The request after every rule's rewrite.
async fn rewritten(s: &Arc<Shared>, c: &Call<'_>) -> Bytes {
    let mut body = c.body.clone();
    for r in RULES {
        body = r.rewrite(s, c, body).await;
    }
    body
}

/// moto's answer after every rule's `after`.
async fn shown(s: &Arc<Shared>, c: &Call<'_>, status: StatusCode, mut body: Bytes) -> Bytes {
    for r in RULES {
        body = r.after(s, c, status, body).await;
    }
    body
}
