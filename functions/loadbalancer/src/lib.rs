//! mbstack-loadbalancer: the internet-facing ALB, its target group and listeners.
//! The target group is attached to a listener in the same apply, before the app
//! tier's service references it.

mod listeners;
mod load_balancer;
mod tags;
mod target_group;

pub use listeners::SSL_POLICY;
pub use load_balancer::readiness;
pub use mbstack_core::Readiness;
pub use target_group::{
    DEREGISTRATION_DELAY, HEALTHY_THRESHOLD, HEALTH_INTERVAL, HEALTH_PATH, HEALTH_TIMEOUT, PORT,
    UNHEALTHY_THRESHOLD,
};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancer;
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::outputs::{self, LoadBalancerOutputs, NetworkOutputs};
use mbstack_core::{aws_error, client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::{Map, Value};

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let elb = client!(aws_sdk_elasticloadbalancingv2, aws);
    let w = Work::new(Tier::LoadBalancer, &event.spec, &event.run, event.verb);
    match event.verb {
        Verb::Plan | Verb::Apply => Box::pin(converge(&elb, w, &event, false)).await,
        Verb::Check => Box::pin(converge(&elb, w, &event, true)).await,
        Verb::Destroy => Box::pin(destroy(&elb, w)).await,
    }
}

fn outputs(
    w: &Work<'_>,
    lb: Option<&LoadBalancer>,
    tg: Option<&str>,
    listeners: &[(i32, Option<String>)],
) -> Map<String, Value> {
    let Some(lb) = lb else {
        return Map::new();
    };
    let scheme = if w.spec.load_balancer.certificate_arn.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = |port: i32| {
        listeners
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, a)| a.clone())
    };
    let own = |v: Option<&str>| v.map(str::to_string);
    outputs::to_map(&LoadBalancerOutputs {
        url: lb.dns_name().map(|d| format!("{scheme}://{d}")),
        load_balancer_arn: own(lb.load_balancer_arn()),
        dns_name: own(lb.dns_name()),
        canonical_hosted_zone_id: own(lb.canonical_hosted_zone_id()),
        target_group_arn: own(tg),
        http_listener_arn: listener(80),
        https_listener_arn: listener(443),
        listener_arns: listeners.iter().filter_map(|(_, a)| a.clone()).collect(),
    })
}

/// Plan, apply, and (read-only) check: target group → ALB → listeners.
async fn converge(
    elb: &Client,
    mut w: Work<'_>,
    event: &Event,
    checking: bool,
) -> Result<Outcome, TierError> {
    let net: NetworkOutputs = event.upstream()?;
    let subnets = net.public_subnets();
    let (vpc, sg) = (net.vpc_id, net.lb_security_group_id);
    if !w.dry_run && (vpc.is_none() || subnets.is_none() || sg.is_none()) {
        return Err(TierError::Terminal(
            "the load balancer tier needs the network tier's outputs (inputs.network.vpcId, publicSubnetIds, lbSecurityGroupId): apply the network first".into(),
        ));
    }
    let tg = target_group::ensure(elb, &mut w, vpc.as_deref()).await?;
    let tg_arn = tg
        .as_ref()
        .and_then(|t| t.target_group_arn())
        .map(str::to_string);
    let lb = load_balancer::ensure(elb, &mut w, subnets.as_deref(), sg.as_deref()).await?;
    let lb_arn = lb
        .as_ref()
        .and_then(|l| l.load_balancer_arn())
        .map(str::to_string);
    let listeners = listeners::ensure(elb, &mut w, lb_arn.as_deref(), tg_arn.as_deref()).await?;
    let out = outputs(&w, lb.as_ref(), tg_arn.as_deref(), &listeners);
    let n = w.changed();
    if w.dry_run && !checking {
        return Ok(w.outcome(
            State::Ready,
            format!("plan: {n} change(s) to the load balancer"),
            out,
        ));
    }
    if checking && n > 0 {
        let what: Vec<String> = w
            .changes
            .iter()
            .filter(|c| c.action != mbstack_core::Action::None)
            .map(|c| format!("{} {}", c.kind, c.id))
            .collect();
        w.changes.clear();
        return Ok(w.outcome(
            State::Pending,
            format!("waiting for {}", what.join(", ")),
            out,
        ));
    }
    if checking {
        w.changes.clear();
    }
    // A freshly created ALB is `provisioning`: re-read its state.
    let state = match (&lb_arn, &lb) {
        (Some(arn), Some(l))
            if l.state().and_then(|s| s.code())
                != Some(&aws_sdk_elasticloadbalancingv2::types::LoadBalancerStateEnum::Active) =>
        {
            let fresh = elb
                .describe_load_balancers()
                .load_balancer_arns(arn)
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:DescribeLoadBalancers", e))?;
            fresh
                .load_balancers()
                .first()
                .and_then(|l| l.state())
                .cloned()
        }
        (_, Some(l)) => l.state().cloned(),
        _ => None,
    };
    let name = mbstack_core::naming::alb_name(&w.spec.stack);
    match readiness(
        &name,
        state.as_ref().and_then(|s| s.code()),
        state.as_ref().and_then(|s| s.reason()),
    ) {
        Readiness::Ready => Ok(w.outcome(
            State::Ready,
            format!("load balancer ready ({n} change(s))"),
            out,
        )),
        Readiness::Pending(why) => Ok(w.outcome(State::Pending, why, out)),
        Readiness::Failed(why) => Err(TierError::ResourceFailed(why)),
    }
}

/// Listeners → ALB (wait until gone) → target group (pending while in use).
async fn destroy(elb: &Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    if let Some((lb, t)) = load_balancer::find(elb, &w).await? {
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        // Refuse before deleting anything, not halfway through.
        if w.owns(&t) && !w.dry_run {
            let attrs = elb
                .describe_load_balancer_attributes()
                .load_balancer_arn(&arn)
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:DescribeLoadBalancerAttributes", e))?;
            if attrs.attributes().iter().any(|a| {
                a.key() == Some("deletion_protection.enabled") && a.value() == Some("true")
            }) {
                return Err(TierError::Refused(format!(
                    "load balancer {} has deletion protection on, so nothing was deleted: set loadBalancer.deletionProtection to false, apply, then destroy",
                    lb.load_balancer_name().unwrap_or("")
                )));
            }
        }
        listeners::delete(elb, &mut w, &arn).await?;
        if let Some(waiting) = load_balancer::delete(elb, &mut w).await? {
            return Ok(w.outcome(State::Pending, waiting, Map::new()));
        }
    }
    let result = target_group::delete(elb, &mut w).await;
    w.destroyed(result, "load balancer")
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub const OWN_PERMISSIONS: &[mbstack_core::iam::Permission] =
    &[mbstack_core::iam::Permission::read(
        "Read",
        &[
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
        ],
    )];

mbstack_core::tier_permissions!(listeners, load_balancer, tags, target_group);
