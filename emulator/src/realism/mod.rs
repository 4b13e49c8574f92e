//! The AWS rules moto forgives, enforced at the front door, and AWS's timings,
//! one file per AWS resource: `nat`, `eni`, `rds`, `alb`, `ssm`, ECS's in
//! `crate::ecs::refusals` (and,
//! while mbstack deploys itself, `crate::deploying`). Before a call reaches moto
//! the front door checks it against moto's current state and, where AWS would
//! refuse it, answers with AWS's error (same code, same HTTP status, in that
//! service's protocol) — and counts the refusal, so a test can assert that
//! mbstack never provokes one. "Not yet" answers (a lingering ENI, a NAT's
//! address not freed, tasks still stopping) are counted apart: they are AWS's
//! timing, which mbstack waits out. After moto answers, each resource shows
//! the state AWS would report (NAT `pending`, DB `creating`, ALB
//! `provisioning` for a while), divided by the scale factor.
//!
//! Rules (the AWS error each mirrors):
//! - ec2 ReleaseAddress of an address a NAT gateway still maps → `InvalidIPAddress.InUse`
//! - ec2 DetachInternetGateway while a NAT gateway maps a public address in the
//!   VPC → `DependencyViolation`
//! - ec2 DeleteSubnet holding a NAT gateway → `DependencyViolation`
//! - rds DeleteDBInstance with neither a final snapshot nor SkipFinalSnapshot →
//!   `InvalidParameterCombination`
//! - rds DeleteDBSubnetGroup still used by an instance → `InvalidDBSubnetGroupStateFault`
//! - ecs DeleteCluster with an ACTIVE service → `ClusterContainsServicesException`
//! - ecs CreateService on a target group no load balancer uses → `InvalidParameterException`
//! - elasticloadbalancing: a tag key over 128 characters or value over 256 → `ValidationError`
//! - ecs: a task whose subnet has no way out when it starts (see [`egress`])
//!   is stopped with Fargate's `CannotPullContainerError … i/o timeout`; an
//!   ARM64 task of an image without an arm64 variant, with "image Manifest does
//!   not contain descriptor matching platform 'linux/arm64'"
//! - secretsmanager TagResource of a secret scheduled for deletion → `InvalidRequestException`
//! - ec2 AssociateAddress of an address a NAT gateway maps, or (with
//!   AllowReassociation false) one associated elsewhere, and CreateNatGateway
//!   with an address associated with an interface → `Resource.AlreadyAssociated`
//! - ec2: an instance is `pending` for a while after RunInstances or
//!   StartInstances ([`instances`])

mod alb;
pub(crate) mod egress;
mod eni;
mod instances;
mod nat;
pub(crate) mod rds;
mod secrets;
mod ssm;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use crate::protocol::{ec2_error, json_error, query_error, Query};
use crate::state::Shared;

/// The refusal AWS would give to this call, if any.
pub(crate) async fn refuse(
    shared: &Arc<Shared>,
    q: Option<&Query>,
    target: &str,
    json_req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    // Step Functions' own API (the caller following its executions) is not throttled.
    let sfn = target.starts_with("AWSStepFunctions.");
    let (enabled, throttled) = shared
        .realism
        .lock()
        .map(|mut r| (r.enabled, !sfn && r.throttled()))
        .unwrap_or((false, false));
    if throttled {
        // Counted apart: a throttled call is AWS's load, not a call AWS refuses.
        return Some(match (q, target.is_empty()) {
            (Some(q), _) if q.service == "ec2" => {
                ec2_error("RequestLimitExceeded", "Request limit exceeded.")
            }
            (Some(_), _) => query_error("Throttling", "Rate exceeded"),
            (None, _) => json_error("ThrottlingException", "Rate exceeded"),
        });
    }
    // AWS's answers, always (not its timings).
    if let Some(q) = q {
        rds::clear_minute_backup(shared, q).await;
        if let Some(r) = rds::snapshot_quota(shared, q).await {
            return Some(r);
        }
    }
    if let Some(r) = match q {
        Some(q) => match alb::tag_limits(q) {
            Some(r) => Some(r),
            None => alb::protected(shared, q).await,
        },
        None => match target.strip_prefix("secretsmanager.") {
            Some(op) => secrets::refuse(shared, op, json_req).await,
            None => None,
        },
    } {
        return Some(r);
    }
    if !enabled {
        return None;
    }
    let not_yet = match (q, target) {
        (Some(q), _) => match eni::not_yet(shared, q) {
            Some(r) => Some(r),
            None => nat::not_yet(shared, q).await,
        },
        (None, t) => crate::ecs::refusals::not_yet(shared, t, json_req),
    };
    if let Some(r) = not_yet {
        if let Ok(realism) = shared.realism.lock() {
            realism.not_yet.fetch_add(1, Ordering::Relaxed);
        }
        return Some(r);
    }
    let refusal = match (q, target) {
        (Some(q), _) => refuse_query(shared, q).await,
        (None, t) => match (
            t.strip_prefix("AmazonEC2ContainerServiceV20141113."),
            t.strip_prefix("AmazonSSM."),
        ) {
            (Some(op), _) => crate::ecs::refusals::refuse(shared, op, json_req).await,
            (_, Some(op)) => ssm::refuse(op, json_req),
            _ => None,
        },
    };
    if let Some(r) = &refusal {
        if let Ok(realism) = shared.realism.lock() {
            realism.refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(status = %r.status(), "the emulator refused a call as AWS would");
    }
    refusal
}

/// A query-protocol call's refusal: the rules of the resource it is about.
async fn refuse_query(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    if let Some(r) = nat::refuse(shared, q).await {
        return Some(r);
    }
    if let Some(r) = eni::refuse(shared, q).await {
        return Some(r);
    }
    if let Some(r) = instances::refuse(shared, q).await {
        return Some(r);
    }
    if let Some(r) = rds::refuse(shared, q).await {
        return Some(r);
    }
    alb::refuse(shared, q).await
}

/// After moto answered a query call: each resource remembers what the call
/// did and shows the state AWS would report.
pub(crate) fn after(shared: &Arc<Shared>, q: &Query, body: Bytes) -> Bytes {
    let Ok(mut realism) = shared.realism.lock() else {
        return body;
    };
    if !realism.enabled {
        return body;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let shown = match q.service.as_str() {
        "ec2" => {
            nat::after(&mut realism, q, &text).or_else(|| instances::after(&mut realism, q, &text))
        }
        "rds" => rds::after(&mut realism, q, &text),
        "elasticloadbalancing" => alb::after(&mut realism, q, &text),
        _ => None,
    };
    shown.map(Bytes::from).unwrap_or(body)
}

/// AWS's rules and timings per resource (see the module's doc): throttling,
/// refusals, "not yet", RDS's own answers and request rewrites, ENIs a delete
/// frees later, and the states AWS reports.
pub(crate) struct Realism;

impl crate::rules::Rule for Realism {
    fn refuse<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<crate::rules::Answer>> {
        Box::pin(refuse(s, c.query.as_ref(), &c.target, c.json.as_ref()))
    }
    fn answer<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<crate::rules::Answer>> {
        Box::pin(std::future::ready(rds::answer(s, c.query.as_ref())))
    }
    fn before<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, ()> {
        Box::pin(eni::before_delete(
            s,
            c.query.as_ref(),
            &c.target,
            c.json.as_ref(),
        ))
    }
    fn rewrite<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        Box::pin(rds::rewrite_request(s, c.query.as_ref(), body))
    }
    fn after<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        let body = match (&c.query, status.is_success()) {
            (Some(q), true) => after(s, q, body),
            _ => body,
        };
        let body = match &c.query {
            Some(q) => rds::password_rule(s, q, status.is_success(), body),
            None => body,
        };
        Box::pin(std::future::ready(body))
    }
}
