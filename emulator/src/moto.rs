//! moto as the emulator's own code calls it: one request, signed for a service
//! (moto checks the credential scope, not the signature), in each protocol.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use crate::state::Shared;
use crate::xml;

/// Sends one call to moto as the front door itself (signed for `service`; moto
/// does not check signatures, only the credential scope). The body of a 2xx
/// answer, or the error.
pub(crate) async fn send_to_moto(
    shared: &Shared,
    service: &str,
    content_type: &str,
    target: Option<&str>,
    body: String,
) -> Result<Bytes, String> {
    let body = Bytes::from(body);
    moto_request(
        shared,
        service,
        "POST",
        "/",
        Some(content_type),
        target,
        body,
    )
    .await
}

/// One request to moto as the front door itself: the body of a 2xx answer, or
/// the error.
async fn moto_request(
    shared: &Shared,
    service: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    target: Option<&str>,
    body: Bytes,
) -> Result<Bytes, String> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        crate::REGION
    );
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{}{path}", shared.moto_port))
        .header("authorization", auth);
    if let Some(c) = content_type {
        req = req.header("content-type", c);
    }
    if let Some(t) = target {
        req = req.header("x-amz-target", t);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = shared
        .client
        .request(req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_success() {
        Ok(bytes)
    } else {
        Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ))
    }
}

/// Sends a JSON-protocol (ECS) call to moto.
pub(crate) async fn moto_json(
    shared: &Shared,
    target: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    moto_json_for(shared, "ecs", target, body).await
}

/// Sends a JSON-protocol call of `service` to moto.
pub(crate) async fn moto_json_for(
    shared: &Shared,
    service: &str,
    target: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let bytes = send_to_moto(
        shared,
        service,
        "application/x-amz-json-1.1",
        Some(target),
        body.to_string(),
    )
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// A REST GET of `path` to moto, signed for `service`: the body of a 2xx answer.
pub(crate) async fn moto_get(shared: &Shared, service: &str, path: &str) -> Result<Bytes, String> {
    moto_request(shared, service, "GET", path, None, None, Bytes::new()).await
}

/// Sends a form-encoded query-protocol call to moto.
pub(crate) async fn moto_query(
    shared: &Shared,
    service: &str,
    form: &str,
) -> Result<Bytes, String> {
    send_to_moto(
        shared,
        service,
        "application/x-www-form-urlencoded",
        None,
        form.to_string(),
    )
    .await
}

/// The first `<tag>` value of moto's answer to a query call (None: no answer or
/// no such value).
pub(crate) async fn moto_value(
    shared: &Shared,
    service: &str,
    form: &str,
    tag: &str,
) -> Option<String> {
    let xml = moto_query(shared, service, form).await.ok()?;
    xml::first(&String::from_utf8_lossy(&xml), tag)
}
