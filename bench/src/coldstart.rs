//! Local cold start of a Lambda binary: spawned against a minimal Runtime API
//! (the three calls a custom runtime makes), timed from spawn to its first
//! `GET /runtime/invocation/next` and to its first response.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, Default)]
struct Seen {
    next: Option<Instant>,
    answered: Option<Instant>,
    /// `response` or `error` (what the function posted), with its body.
    outcome: Option<(String, String)>,
    served: bool,
}

/// One cold start: (spawn → first `next`, spawn → first response, the outcome kind).
pub struct ColdStart {
    pub to_next: Duration,
    pub to_response: Duration,
    pub outcome: String,
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
    event: Arc<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let now = Instant::now();
    if path.ends_with("/runtime/invocation/next") {
        let first = seen
            .lock()
            .map(|mut s| {
                s.next.get_or_insert(now);
                !std::mem::replace(&mut s.served, true)
            })
            .unwrap_or(false);
        if !first {
            // One invocation per process: the next one never comes.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 60_000)
            .unwrap_or(0);
        let r = Response::builder()
            .header("lambda-runtime-aws-request-id", "cold-1")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:cold",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(event.as_str().to_owned())));
        return Ok(r.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))));
    }
    let kind = if path.ends_with("/response") {
        "response"
    } else {
        "error"
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    if let Ok(mut s) = seen.lock() {
        s.answered.get_or_insert(now);
        s.outcome.get_or_insert((kind.to_string(), body));
    }
    let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
    *r.status_mut() = hyper::StatusCode::ACCEPTED;
    Ok(r)
}

/// Spawns `binary` once with `env`, serves it `event`, and times it.
pub async fn once(
    binary: &Path,
    env: &[(String, String)],
    event: &Value,
) -> Result<ColdStart, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the Runtime API: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let event = Arc::new(event.to_string());
    let server = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, event) = (seen.clone(), event.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, seen.clone(), event.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
    let limit = Duration::from_secs(30);
    let result = loop {
        let state = seen
            .lock()
            .map(|s| (s.next, s.answered, s.outcome.clone()))
            .unwrap_or_default();
        if let (Some(next), Some(answered), Some((kind, body))) = state {
            let outcome = if kind == "response" {
                kind
            } else {
                format!("error: {body}")
            };
            break Ok(ColdStart {
                to_next: next - started,
                to_response: answered - started,
                outcome,
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!(
                "{} exited ({status}) before answering",
                binary.display()
            ));
        }
        if started.elapsed() > limit {
            break Err(format!("{} did not answer in 30 s", binary.display()));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let _ = child.kill().await;
    server.abort();
    result
}
