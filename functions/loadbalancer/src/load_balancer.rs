//! The internet-facing Application Load Balancer over the public subnets, with
//! invalid header fields dropped, the idle timeout and deletion protection from
//! the spec. Real AWS: ~2–3 min to `active`.

use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::alb_name;
use mbstack_core::{aws_error, error_code, Action, Readiness, TierError, Work};

use crate::tags::{self, elb_tags, ensure_ours, Pairs};

pub(crate) const KIND: &str = "load-balancer";
const ROLE: &str = "alb";

pub(crate) async fn find(
    elb: &Client,
    w: &Work<'_>,
) -> Result<Option<(LoadBalancer, Pairs)>, TierError> {
    let name = alb_name(&w.spec.stack);
    let out = match elb.describe_load_balancers().names(&name).send().await {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("LoadBalancerNotFound") => return Ok(None),
        Err(e) => return Err(aws_error("elasticloadbalancing:DescribeLoadBalancers", e)),
    };
    let Some(lb) = out.load_balancers().first().cloned() else {
        return Ok(None);
    };
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let t = tags::of(elb, std::slice::from_ref(&arn))
        .await?
        .remove(&arn)
        .unwrap_or_default();
    ensure_ours(w, "load balancer", &name, &t)?;
    Ok(Some((lb, t)))
}

/// The attributes the spec sets.
fn wanted_attributes(w: &Work<'_>) -> Vec<(&'static str, String)> {
    let lb = &w.spec.load_balancer;
    vec![
        (
            "routing.http.drop_invalid_header_fields.enabled",
            "true".into(),
        ),
        (
            "idle_timeout.timeout_seconds",
            lb.idle_timeout_seconds.to_string(),
        ),
        (
            "deletion_protection.enabled",
            lb.deletion_protection.to_string(),
        ),
    ]
}

fn attribute(key: &str, value: &str) -> LoadBalancerAttribute {
    LoadBalancerAttribute::builder()
        .key(key)
        .value(value)
        .build()
}

/// Finds or creates the ALB; converges its subnets, security group and attributes.
pub(crate) async fn ensure(
    elb: &Client,
    w: &mut Work<'_>,
    subnets: Option<&[String]>,
    sg: Option<&str>,
) -> Result<Option<LoadBalancer>, TierError> {
    let name = alb_name(&w.spec.stack);
    let found = find(elb, w).await?;
    let (lb, created) = match found {
        Some((lb, _)) => (lb, false),
        None => {
            let (Some(subnets), Some(sg), false) = (subnets, sg, w.dry_run) else {
                w.record(
                    KIND,
                    &name,
                    Action::Create,
                    "internet-facing, over the public subnets",
                );
                return Ok(None);
            };
            let out = elb
                .create_load_balancer()
                .name(&name)
                .r#type(LoadBalancerTypeEnum::Application)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .ip_address_type(IpAddressType::Ipv4)
                .set_subnets(Some(subnets.to_vec()))
                .security_groups(sg)
                .set_tags(Some(elb_tags(w, ROLE)))
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:CreateLoadBalancer", e))?;
            let lb = out.load_balancers().first().cloned().ok_or_else(|| {
                TierError::Terminal(
                    "elasticloadbalancing:CreateLoadBalancer returned no load balancer".into(),
                )
            })?;
            (lb, true)
        }
    };
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let mut steps = Vec::new();

    if !created {
        let sg_ok = |want: &str| lb.security_groups() == [want.to_string()];
        if let Some(want) = sg.filter(|want| !sg_ok(want)) {
            if !w.dry_run {
                elb.set_security_groups()
                    .load_balancer_arn(&arn)
                    .security_groups(want)
                    .send()
                    .await
                    .map_err(|e| aws_error("elasticloadbalancing:SetSecurityGroups", e))?;
            }
            steps.push(format!("security group → {want}"));
        }
        if let Some(want) = subnets {
            let mut have: Vec<&str> = lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id())
                .collect();
            have.sort();
            let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
            want_sorted.sort();
            if have != want_sorted {
                if !w.dry_run {
                    elb.set_subnets()
                        .load_balancer_arn(&arn)
                        .set_subnets(Some(want.to_vec()))
                        .send()
                        .await
                        .map_err(|e| aws_error("elasticloadbalancing:SetSubnets", e))?;
                }
                steps.push(format!("subnets → {}", want_sorted.join(", ")));
            }
        }
    }

    // Attributes: read (not on a brand-new ALB: set them all).
    let have: Vec<(String, String)> = if created {
        Vec::new()
    } else {
        elb.describe_load_balancer_attributes()
            .load_balancer_arn(&arn)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeLoadBalancerAttributes", e))?
            .attributes()
            .iter()
            .map(|a| {
                (
                    a.key().unwrap_or("").to_string(),
                    a.value().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let differ: Vec<(&str, String)> = wanted_attributes(w)
        .into_iter()
        .filter(|(k, v)| !have.iter().any(|(hk, hv)| hk == k && hv == v))
        .collect();
    if !differ.is_empty() {
        if !w.dry_run {
            elb.modify_load_balancer_attributes()
                .load_balancer_arn(&arn)
                .set_attributes(Some(differ.iter().map(|(k, v)| attribute(k, v)).collect()))
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:ModifyLoadBalancerAttributes", e))?;
        }
        if !created {
            steps.extend(differ.iter().map(|(k, v)| format!("{k} → {v}")));
        }
    }

    let action = match (created, steps.is_empty()) {
        (true, _) => Action::Create,
        (false, true) => Action::None,
        (false, false) => Action::Update,
    };
    let detail = if steps.is_empty() {
        lb.dns_name().unwrap_or("").to_string()
    } else {
        steps.join("; ")
    };
    w.record(KIND, &arn, action, detail);
    Ok(Some(lb))
}

pub fn readiness(
    name: &str,
    state: Option<&LoadBalancerStateEnum>,
    reason: Option<&str>,
) -> Readiness {
    match state {
        Some(LoadBalancerStateEnum::Active) => Readiness::Ready,
        Some(LoadBalancerStateEnum::Failed) => Readiness::Failed(format!(
            "load balancer {name} failed: {}",
            reason.unwrap_or("no reason given")
        )),
        Some(s) => Readiness::Pending(format!("waiting for load balancer {name}: {}", s.as_str())),
        None => Readiness::Pending(format!("waiting for load balancer {name}")),
    }
}

/// Deletes the ALB if destroy owns it; returns what it still waits for.
pub(crate) async fn delete(elb: &Client, w: &mut Work<'_>) -> Result<Option<String>, TierError> {
    let Some((lb, t)) = find(elb, w).await? else {
        return Ok(None);
    };
    if !w.owns(&t) {
        return Ok(None);
    }
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let name = lb.load_balancer_name().unwrap_or_default().to_string();
    match elb.delete_load_balancer().load_balancer_arn(&arn).send().await {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("OperationNotPermitted") => {
            return Err(TierError::Refused(format!(
                "load balancer {name} has deletion protection on: set loadBalancer.deletionProtection to false, apply, then destroy"
            )))
        }
        Err(e) => return Err(aws_error("elasticloadbalancing:DeleteLoadBalancer", e)),
    }
    w.record(KIND, &arn, Action::Delete, name.clone());
    // Deleting is asynchronous in AWS: the next destroy call finds it gone.
    Ok(Some(format!(
        "waiting for load balancer {name} to be deleted"
    )))
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes"]),
    Permission::create_tagged("CreateTagged", &["elasticloadbalancing:CreateLoadBalancer"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer",
        ],
    ),
    // The first load balancer of an account creates ELB's service-linked role.
    Permission::on(
        "ServiceLinkedRole",
        &["iam:CreateServiceLinkedRole"],
        &["arn:${Partition}:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing"],
    )
    .when(r#"{"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}"#),
];
