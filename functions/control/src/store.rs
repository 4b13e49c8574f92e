//! What mbstack keeps per stack, in SSM Parameter Store under `/mbstack/<stack>/`:
//! `spec` (the last successfully applied spec), `last-run` (action, status,
//! execution, URL — never a secret), `lock` (the ARN of the execution holding
//! the stack), `told` (the last failed run told of: its execution ARN) and,
//! once the stack is destroyed, `spec-at-destroy` (its spec then: a restore
//! of its final snapshot brings the stack back as it was).

use aws_sdk_ssm::types::ParameterType;
use aws_sdk_ssm::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, TierError};
use serde_json::Value;

pub fn path(stack: &str, leaf: &str) -> String {
    format!("/mbstack/{stack}/{leaf}")
}

/// A parameter's value, None when it does not exist.
pub async fn get(ssm: &Client, name: &str) -> Result<Option<String>, TierError> {
    match ssm.get_parameter().name(name).send().await {
        Ok(o) => Ok(o.parameter().and_then(|p| p.value()).map(str::to_string)),
        Err(e) if error_code(&e) == Some("ParameterNotFound") => Ok(None),
        Err(e) => Err(aws_error("ssm:GetParameter", e)),
    }
}

/// The stored spec as JSON, if any.
pub async fn stored_spec(ssm: &Client, stack: &str) -> Result<Option<Value>, TierError> {
    match get(ssm, &path(stack, "spec")).await? {
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            TierError::Terminal(format!(
                "the stored spec of {stack} ({}) is not JSON: {e}",
                path(stack, "spec")
            ))
        }),
        None => Ok(None),
    }
}

/// The last failed run told of (its execution ARN): a retried Finish or a
/// recovery does not tell of it again.
pub const TOLD: &str = "told";

/// Where a destroyed stack's spec is kept.
pub const KEPT_SPEC: &str = "spec-at-destroy";

/// The spec a run's input is merged over: the stored spec; for a stack that
/// has none (destroyed) whose input restores a snapshot, the spec it had when
/// it was destroyed (its domain, image and settings: the stack comes back as
/// it was; the input overrides any field).
pub async fn base_spec(
    ssm: &Client,
    stack: &str,
    input: &Value,
) -> Result<Option<Value>, TierError> {
    if let Some(stored) = stored_spec(ssm, stack).await? {
        return Ok(Some(stored));
    }
    let restores = input
        .pointer("/database/restoreFrom")
        .is_some_and(Value::is_string);
    if !restores {
        return Ok(None);
    }
    let Some(text) = get(ssm, &path(stack, KEPT_SPEC)).await? else {
        return Ok(None);
    };
    let Ok(mut kept) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    if let Some(db) = kept.get_mut("database").and_then(Value::as_object_mut) {
        db.remove("restoreFrom");
    }
    Ok(Some(kept))
}

/// Writes a parameter; `overwrite: false` fails if it exists (the lock).
pub async fn put(
    ssm: &Client,
    name: &str,
    value: &str,
    overwrite: bool,
) -> Result<bool, TierError> {
    match ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::String)
        .overwrite(overwrite)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if !overwrite && error_code(&e) == Some("ParameterAlreadyExists") => Ok(false),
        Err(e) => Err(aws_error("ssm:PutParameter", e)),
    }
}

pub async fn delete(ssm: &Client, name: &str) -> Result<(), TierError> {
    match ssm.delete_parameter().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ParameterNotFound") => Ok(()),
        Err(e) => Err(aws_error("ssm:DeleteParameter", e)),
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[Permission::on(
    "StackRecords",
    &[
        "ssm:GetParameter",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:GetParametersByPath",
    ],
    &["arn:${Partition}:ssm:*:*:parameter/mbstack/*"],
)];
