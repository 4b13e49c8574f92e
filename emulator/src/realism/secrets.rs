//! Secrets Manager: a secret scheduled for deletion takes no tag
//! (`InvalidRequestException`; moto tags it; localstack/localstack#13648
//! found the same against AWS). Restored, it does.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

use crate::protocol::json_error;
use crate::state::Shared;

pub(super) async fn refuse(
    shared: &Arc<Shared>,
    op: &str,
    req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    if op != "TagResource" {
        return None;
    }
    let id = req?.get("SecretId")?.as_str()?;
    let out = crate::moto::send_to_moto(
        shared,
        "secretsmanager",
        "application/x-amz-json-1.1",
        Some("secretsmanager.DescribeSecret"),
        json!({"SecretId": id}).to_string(),
    )
    .await
    .ok()?;
    let secret: Value = serde_json::from_slice(&out).ok()?;
    secret.get("DeletedDate").filter(|d| !d.is_null())?;
    Some(json_error(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    ))
}
