//! AWS's timing while mbstack deploys itself, which moto skips (on with the
//! realism rules, at their scale):
//! - IAM is eventually consistent: a role created less than [`ROLE_PROPAGATION`]
//!   ago cannot be assumed yet. ECS tasks whose execution or task role is that
//!   young fail to start (see [`crate::ecs`]). Lambda's CreateFunction / UpdateFunctionConfiguration
//!   with it → `InvalidParameterValueException` "The role defined for the
//!   function cannot be assumed by Lambda."; Step Functions' CreateStateMachine /
//!   UpdateStateMachine → `AccessDeniedException` "Neither the global service
//!   principal states.amazonaws.com, nor the regional one is authorized to
//!   assume the provided role.".
//! - A new function is `Pending` for [`FUNCTION_PENDING`]; after an update its
//!   `LastUpdateStatus` is `InProgress` for [`FUNCTION_UPDATE`], and another
//!   update meanwhile → `ResourceConflictException` (409) "The operation cannot
//!   be performed at this time. An update is in progress for resource: …".
//!
//! And always (AWS validates every definition): CreateStateMachine and
//! UpdateStateMachine refuse an invalid definition with `InvalidDefinition`
//! (see [`crate::asl`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::protocol::{json_error_with, Query};
use crate::state::deploying::{Deploying, FUNCTION_PENDING, FUNCTION_UPDATE};
use crate::state::Shared;

/// The first of `roles` that services cannot assume yet (realism on).
pub(crate) fn young_role(shared: &Shared, roles: &[String]) -> Option<String> {
    let scale = realism(shared)?;
    let d = shared.deploying.lock().ok()?;
    let now = Instant::now();
    roles.iter().find(|r| d.is_young(r, scale, now)).cloned()
}

/// A Lambda control-plane request: (operation, function name), from its path.
fn lambda_op(method: &hyper::Method, path: &str) -> Option<(&'static str, String)> {
    let rest = path.strip_prefix("/2015-03-31/functions")?;
    let rest = rest.trim_start_matches('/');
    let mut parts = rest.splitn(2, '/');
    let name = parts.next().unwrap_or("").to_string();
    let tail = parts.next().unwrap_or("");
    let op = match (method.as_str(), name.is_empty(), tail) {
        ("POST", true, _) => "CreateFunction",
        ("PUT", false, "code") => "UpdateFunctionCode",
        ("PUT", false, "configuration") => "UpdateFunctionConfiguration",
        ("GET", false, "") => "GetFunction",
        ("GET", false, "configuration") => "GetFunctionConfiguration",
        _ => return None,
    };
    let name = name.rsplit(':').next().unwrap_or(name.as_str()).to_string();
    Some((op, name))
}

/// Realism on, and its scale.
fn realism(shared: &Shared) -> Option<u32> {
    shared
        .realism
        .lock()
        .ok()
        .filter(|r| r.enabled)
        .map(|r| r.scale.max(1))
}

/// The refusal AWS would give, if any.
pub(crate) fn refuse(
    shared: &Arc<Shared>,
    parts: &hyper::http::request::Parts,
    target: &str,
    json: Option<&serde_json::Value>,
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let sfn_write = matches!(
        target,
        "AWSStepFunctions.CreateStateMachine" | "AWSStepFunctions.UpdateStateMachine"
    );
    if sfn_write {
        if let Some(def) = json
            .and_then(|j| j.get("definition"))
            .and_then(|d| d.as_str())
        {
            let problems = crate::asl::problems(def);
            if !problems.is_empty() {
                return Some(json_error_with(
                    StatusCode::BAD_REQUEST,
                    "InvalidDefinition",
                    &crate::asl::message(&problems),
                ));
            }
        }
    }
    let scale = realism(shared)?;
    let now = Instant::now();
    let mut d = shared.deploying.lock().ok()?;
    let young = |d: &Deploying, arn: &str| d.is_young(arn, scale, now);
    if sfn_write {
        let role = json.and_then(|j| j.get("roleArn")).and_then(|r| r.as_str());
        if role.is_some_and(|r| young(&d, r)) {
            d.answered += 1;
            return Some(json_error_with(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                "Neither the global service principal states.amazonaws.com, nor the regional one is authorized to assume the provided role.",
            ));
        }
        return None;
    }
    let (op, name) = lambda_op(&parts.method, parts.uri.path())?;
    let request: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let role = request
        .as_ref()
        .and_then(|r| r.get("Role"))
        .and_then(|r| r.as_str());
    if matches!(op, "CreateFunction" | "UpdateFunctionConfiguration")
        && role.is_some_and(|r| young(&d, r))
    {
        d.answered += 1;
        return Some(json_error_with(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "The role defined for the function cannot be assumed by Lambda.",
        ));
    }
    if matches!(op, "UpdateFunctionCode" | "UpdateFunctionConfiguration") {
        let busy = d
            .updated
            .get(&name)
            .is_some_and(|t| now.duration_since(*t) < FUNCTION_UPDATE / scale)
            || d.created
                .get(&name)
                .is_some_and(|t| now.duration_since(*t) < FUNCTION_PENDING / scale);
        if busy {
            d.answered += 1;
            return Some(json_error_with(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                &format!("The operation cannot be performed at this time. An update is in progress for resource: {name}"),
            ));
        }
    }
    None
}

/// After moto answered: remember new roles and function changes; show a
/// function `Pending` / `InProgress` while AWS would.
pub(crate) fn after(
    shared: &Arc<Shared>,
    parts: &hyper::http::request::Parts,
    query: Option<&Query>,
    body: Bytes,
) -> Bytes {
    let Some(scale) = realism(shared) else {
        return body;
    };
    let now = Instant::now();
    let Ok(mut d) = shared.deploying.lock() else {
        return body;
    };
    if let Some(q) = query.filter(|q| q.service == "iam" && q.action() == "CreateRole") {
        if let Some(name) = q.params.get("RoleName") {
            d.roles.insert(name.clone(), now);
        }
        return body;
    }
    let Some((op, name)) = lambda_op(&parts.method, parts.uri.path()) else {
        return body;
    };
    match op {
        "CreateFunction" => {
            let created = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("FunctionName")
                        .and_then(|n| n.as_str())
                        .map(str::to_string)
                });
            if let Some(n) = created {
                d.created.insert(n, now);
            }
            body
        }
        "UpdateFunctionCode" | "UpdateFunctionConfiguration" => {
            d.updated.insert(name, now);
            body
        }
        _ => {
            let pending = d
                .created
                .get(&name)
                .is_some_and(|t| now.duration_since(*t) < FUNCTION_PENDING / scale);
            let updating = d
                .updated
                .get(&name)
                .is_some_and(|t| now.duration_since(*t) < FUNCTION_UPDATE / scale);
            if !pending && !updating {
                return body;
            }
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return body;
            };
            let c = if op == "GetFunction" {
                v.get_mut("Configuration")
            } else {
                Some(&mut v)
            };
            if let Some(c) = c.and_then(|c| c.as_object_mut()) {
                if pending {
                    c.insert("State".into(), "Pending".into());
                }
                if updating {
                    c.insert("LastUpdateStatus".into(), "InProgress".into());
                }
            }
            Bytes::from(v.to_string())
        }
    }
}

/// AWS's refusals and states while mbstack deploys itself (see the module's doc).
pub(crate) struct WhileDeploying;

impl crate::rules::Rule for WhileDeploying {
    fn refuse<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<crate::rules::Answer>> {
        Box::pin(std::future::ready(refuse(
            s,
            c.parts,
            &c.target,
            c.json.as_ref(),
            &c.body,
        )))
    }
    fn after<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        let body = match status.is_success() {
            true => after(s, c.parts, c.query.as_ref(), body),
            false => body,
        };
        Box::pin(std::future::ready(body))
    }
}
