//! Network interfaces: a subnet or security group in use (by a NAT gateway,
//! a load balancer, a DB instance, another group's rule) cannot be deleted, and
//! the ENIs of a deleted ALB or ECS service linger ≈1.5 min after it.

use std::time::Instant;

use serde_json::{json, Value};

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::{moto_query, moto_value};
use crate::protocol::{ec2_error, Query};
use crate::state::Shared;
use crate::xml;

use super::nat::{live, nat_gateways};

/// The refusal AWS would give to this call, if any.
pub(super) async fn refuse(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    match (q.service.as_str(), q.action()) {
        ("ec2", "DeleteSubnet") => {
            let subnet = q.get("SubnetId")?;
            let nats = nat_gateways(shared).await;
            let nat = nats.iter().any(|n| live(&n.1) && n.2 == subnet);
            let eni = shared
                .realism
                .lock()
                .map(|r| r.lingers(subnet))
                .unwrap_or(false);
            let used = nat || eni || used_by_lb_or_db(shared, subnet).await;
            used.then(|| {
                ec2_error(
                    "DependencyViolation",
                    &format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
                )
            })
        }
        ("ec2", "DeleteSecurityGroup") => {
            let group = q.get("GroupId")?;
            let rules = moto_query(
                shared,
                "ec2",
                "Action=DescribeSecurityGroupRules&Version=2016-11-15",
            )
            .await
            .ok()?;
            let rules = String::from_utf8_lossy(&rules).to_string();
            // A rule of another group whose source is this one.
            let referenced = xml::each(&rules, "referencedGroupInfo", |r| {
                let owner = r.parent()?.child("groupId")?;
                Some(owner != group && r.child("groupId").as_deref() == Some(group))
            })
            .into_iter()
            .any(|b| b);
            (referenced || used_by_lb_or_db(shared, group).await).then(|| {
                ec2_error(
                    "DependencyViolation",
                    &format!("resource {group} has a dependent object"),
                )
            })
        }
        ("ec2", "CreateSecurityGroup")
            if q.get("GroupName").is_some_and(|n| n.starts_with("sg-")) =>
        {
            Some(ec2_error(
                "InvalidParameterValue",
                &format!(
                    "Value ({}) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
                    q.get("GroupName").unwrap_or("")
                ),
            ))
        }
        _ => None,
    }
}

/// "Not yet": ENIs of a deleted ALB or service still hold their subnets and
/// security groups (DependencyViolation), which mbstack waits out.
pub(super) fn not_yet(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    if q.service != "ec2" || !matches!(q.action(), "DeleteSubnet" | "DeleteSecurityGroup") {
        return None;
    }
    let id = q.get("SubnetId").or(q.get("GroupId")).unwrap_or("");
    let lingers = shared
        .realism
        .lock()
        .map(|r| r.lingers(id))
        .unwrap_or(false);
    lingers.then(|| {
        ec2_error(
            "DependencyViolation",
            &format!("resource {id} has a dependent object (a network interface still in use)"),
        )
    })
}

/// The availability zones of these subnets (distinct).
pub(super) async fn subnet_azs(shared: &Arc<Shared>, subnets: &[&String]) -> Vec<String> {
    let mut form = "Action=DescribeSubnets&Version=2016-11-15".to_string();
    for (i, s) in subnets.iter().enumerate() {
        form.push_str(&format!("&SubnetId.{}={s}", i + 1));
    }
    let Ok(xml) = moto_query(shared, "ec2", &form).await else {
        return Vec::new();
    };
    let mut azs = xml::values(&String::from_utf8_lossy(&xml), "availabilityZone");
    azs.sort();
    azs.dedup();
    azs
}

pub(super) async fn subnet_vpc(shared: &Arc<Shared>, subnet: &str) -> Option<String> {
    let form = format!("Action=DescribeSubnets&Version=2016-11-15&SubnetId.1={subnet}");
    moto_value(shared, "ec2", &form, "vpcId").await
}

/// Whether a load balancer or a DB instance uses this subnet or security group.
async fn used_by_lb_or_db(shared: &Arc<Shared>, resource: &str) -> bool {
    let lbs = moto_query(
        shared,
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers&Version=2015-12-01",
    )
    .await
    .unwrap_or_default();
    let dbs = moto_query(
        shared,
        "rds",
        "Action=DescribeDBInstances&Version=2014-10-31",
    )
    .await
    .unwrap_or_default();
    let needle = format!(">{resource}<");
    String::from_utf8_lossy(&lbs).contains(&needle)
        || String::from_utf8_lossy(&dbs).contains(&needle)
}

/// Before a delete reaches moto: remember the subnets and security groups whose
/// ENIs will linger after it (an ALB, or an ECS service's tasks).
pub(crate) async fn before_delete(
    shared: &Arc<Shared>,
    q: Option<&Query>,
    target: &str,
    req: Option<&Value>,
) {
    if !shared.realism.lock().map(|r| r.enabled).unwrap_or(false) {
        return;
    }
    let used: Vec<String> = match (q, target) {
        (Some(q), _)
            if q.service == "elasticloadbalancing" && q.action() == "DeleteLoadBalancer" =>
        {
            let Some(arn) = q.get("LoadBalancerArn") else {
                return;
            };
            let form = format!(
                "Action=DescribeLoadBalancers&Version=2015-12-01&LoadBalancerArns.member.1={}",
                crate::protocol::urlencode(arn)
            );
            let Ok(xml) = moto_query(shared, "elasticloadbalancing", &form).await else {
                return;
            };
            let xml = String::from_utf8_lossy(&xml).to_string();
            let mut v = xml::values(&xml, "SubnetId");
            v.extend(
                xml::each(&xml, "SecurityGroups", |g| Some(g.all("member")))
                    .into_iter()
                    .flatten(),
            );
            v
        }
        (None, "AmazonEC2ContainerServiceV20141113.DeleteService") => {
            let Some(req) = req else { return };
            if let (Some(cluster), Ok(mut r)) = (
                req.get("cluster").and_then(Value::as_str),
                shared.realism.lock(),
            ) {
                r.tasks_stopping.insert(
                    crate::ecs::last_segment(cluster).to_string(),
                    Instant::now(),
                );
            }
            let body = json!({"cluster": req.get("cluster"), "services": [req.get("service")]});
            let Ok(d) = crate::moto::moto_json(
                shared,
                "AmazonEC2ContainerServiceV20141113.DescribeServices",
                &body,
            )
            .await
            else {
                return;
            };
            let vpc = d
                .pointer("/services/0/networkConfiguration/awsvpcConfiguration")
                .cloned()
                .unwrap_or(Value::Null);
            ["subnets", "securityGroups"]
                .iter()
                .flat_map(|k| {
                    vpc.get(*k)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        }
        _ => return,
    };
    if let Ok(mut r) = shared.realism.lock() {
        r.lingering.push((Instant::now(), used));
    }
}
