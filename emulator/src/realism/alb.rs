//! Application Load Balancers: ≈2.5 min to become active; two subnets in two
//! AZs, a VPC with an internet gateway for an internet-facing one, no name
//! starting `internal-`.

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::moto_query;
use crate::protocol::{query_error, Query};
use crate::state::realism::Realism;
use crate::state::Shared;
use crate::xml;

use super::eni::{subnet_azs, subnet_vpc};

/// The refusal AWS would give to this call, if any.
pub(super) async fn refuse(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    match (q.service.as_str(), q.action()) {
        ("elasticloadbalancing", "CreateLoadBalancer")
            if q.get("Name").is_some_and(|n| n.starts_with("internal-")) =>
        {
            Some(query_error(
                "ValidationError",
                &format!(
                    "The load balancer name '{}' is invalid: it must not begin with 'internal-'",
                    q.get("Name").unwrap_or("")
                ),
            ))
        }
        ("elasticloadbalancing", "CreateLoadBalancer") => {
            let subnets: Vec<&String> = q
                .params
                .iter()
                .filter(|(k, _)| k.starts_with("Subnets.member."))
                .map(|(_, v)| v)
                .collect();
            let azs = subnet_azs(shared, &subnets).await;
            if azs.len() < 2 {
                return Some(query_error(
                    "ValidationError",
                    "At least two subnets in two different Availability Zones must be specified",
                ));
            }
            let internal = q.get("Scheme") == Some("internal");
            let vpc = subnet_vpc(shared, subnets.first()?).await?;
            let form = format!("Action=DescribeInternetGateways&Version=2016-11-15&Filter.1.Name=attachment.vpc-id&Filter.1.Value.1={vpc}");
            let igws = moto_query(shared, "ec2", &form).await.ok()?;
            let has_igw = String::from_utf8_lossy(&igws).contains("<internetGatewayId>");
            (!internal && !has_igw).then(|| {
                query_error(
                    "InvalidSubnet",
                    &format!("VPC {vpc} has no internet gateway"),
                )
            })
        }
        _ => None,
    }
}

/// Always (AWS's answer, not its timing): a tag of an ELB call (AddTags, or
/// the tags of a create) whose key is over 128 characters or whose value is
/// over 256 → `ValidationError` (the `Tag` type's length constraints; moto
/// takes any length).
pub(super) fn tag_limits(q: &Query) -> Option<Response<Full<Bytes>>> {
    if q.service != "elasticloadbalancing" {
        return None;
    }
    let mut keys: Vec<&String> = q
        .params
        .keys()
        .filter(|k| k.starts_with("Tags.member."))
        .collect();
    keys.sort();
    for k in keys {
        let v = q.params.get(k)?;
        let (field, max) = match k.rsplit('.').next() {
            Some("Key") => ("key", 128),
            Some("Value") => ("value", 256),
            _ => continue,
        };
        if v.chars().count() > max {
            let n = k.split('.').nth(2).unwrap_or("1");
            return Some(query_error(
                "ValidationError",
                &format!("1 validation error detected: Value '{v}' at 'tags.{n}.member.{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"),
            ));
        }
    }
    None
}

/// Always (AWS's answer, not its timing): DeleteLoadBalancer of a load
/// balancer whose `deletion_protection.enabled` is true →
/// `OperationNotPermitted` (moto deletes it).
pub(super) async fn protected(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    if (q.service.as_str(), q.action()) != ("elasticloadbalancing", "DeleteLoadBalancer") {
        return None;
    }
    let arn = q.get("LoadBalancerArn")?;
    let form = format!(
        "Action=DescribeLoadBalancerAttributes&Version=2015-12-01&LoadBalancerArn={}",
        crate::protocol::urlencode(arn)
    );
    let attrs = moto_query(shared, "elasticloadbalancing", &form)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&attrs).to_string();
    let on = xml::each(&text, "member", |m| {
        (m.child("Key").as_deref() == Some("deletion_protection.enabled"))
            .then(|| m.child("Value"))
            .flatten()
    })
    .into_iter()
    .any(|v| v == "true");
    on.then(|| {
        query_error(
            "OperationNotPermitted",
            &format!(
                "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
            ),
        )
    })
}

/// A load balancer is `provisioning` for ≈2.5 min after its creation (a create
/// answers with it too).
pub(super) fn after(realism: &mut Realism, q: &Query, text: &str) -> Option<String> {
    if q.action() == "CreateLoadBalancer" {
        for arn in xml::values(text, "LoadBalancerArn") {
            realism.alb_created.entry(arn).or_insert_with(Instant::now);
        }
    }
    matches!(q.action(), "CreateLoadBalancer" | "DescribeLoadBalancers").then(|| {
        xml::rewrite_state(text, "LoadBalancerArn", &["State", "Code"], |arn, moto| {
            realism.alb_state(arn, moto)
        })
    })
}
