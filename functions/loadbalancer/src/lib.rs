//! mbstack-loadbalancer: the internet-facing ALB, its target group and listeners.
//! The target group is attached to a listener in the same apply, before the app
//! tier's service references it.

mod listeners;
mod load_balancer;
mod reads;
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
use mbstack_core::resource::{self, Resource};
use mbstack_core::{client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::{Map, Value};

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let elb = client!(aws_sdk_elasticloadbalancingv2, aws);
    let w = Work::new(Tier::LoadBalancer, &event.spec, &event.run, event.verb);
    match event.verb {
        Verb::Plan | Verb::Apply | Verb::Check => Box::pin(converge(&elb, w, &event)).await,
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
async fn converge(elb: &Client, mut w: Work<'_>, event: &Event) -> Result<Outcome, TierError> {
    let net: NetworkOutputs = event.upstream()?;
    let subnets = net.public_subnets();
    let (vpc, sg) = (net.vpc_id, net.lb_security_group_id);
    if w.verb == Verb::Apply && (vpc.is_none() || subnets.is_none() || sg.is_none()) {
        return Err(TierError::Terminal(
            "the load balancer tier needs the network tier's outputs (inputs.network.vpcId, publicSubnetIds, lbSecurityGroupId): apply the network first".into(),
        ));
    }
    let reads = reads::Reads::new(elb.clone(), &w.spec.stack);
    let tgs = target_group::TargetGroups {
        elb: elb.clone(),
        reads: reads.clone(),
        vpc_id: vpc,
    };
    let tg_arn = first(resource::converge(&tgs, &mut w, &[()]).await?.ids(&tgs));
    let lbs = load_balancer::LoadBalancers {
        elb: elb.clone(),
        reads,
        subnets,
        sg,
    };
    let lb = resource::converge(&lbs, &mut w, &[()]).await?;
    let lb_live = lb.found.first().cloned().flatten();
    let ls = listeners::Listeners {
        elb: elb.clone(),
        stack: w.spec.stack.clone(),
        lb_arn: first(lb.ids(&lbs)),
        tg_arn: tg_arn.clone(),
    };
    let wants = listeners::wanted(&w, tg_arn.as_deref().unwrap_or("(planned target group)"));
    let made = resource::converge(&ls, &mut w, &wants).await?;
    // :443 without a certificate in the spec: the layout switched back to HTTP.
    resource::prune(&ls, &mut w, &made.unwanted).await?;
    let ports: Vec<(i32, Option<String>)> =
        wants.iter().map(|l| l.port).zip(made.ids(&ls)).collect();
    let out = outputs(
        &w,
        lb_live.as_ref().map(|l| l.load_balancer()),
        tg_arn.as_deref(),
        &ports,
    );
    let ready = resource::readiness(&lbs, &w, &[()], &lb.found);
    match w.verb {
        Verb::Check => w.checked(ready, out),
        _ => w.converged(ready, out),
    }
}

fn first(ids: Vec<Option<String>>) -> Option<String> {
    ids.into_iter().next().flatten()
}

/// Listeners → ALB (wait until gone) → target group (pending while in use).
async fn destroy(elb: &Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let reads = reads::Reads::new(elb.clone(), &w.spec.stack);
    let lbs = load_balancer::LoadBalancers {
        elb: elb.clone(),
        reads: reads.clone(),
        subnets: None,
        sg: None,
    };
    for lb in lbs.list(&w).await? {
        if !w.owns(&lbs.tags(&lb)) {
            continue;
        }
        // Refuse before deleting anything, not halfway through.
        if lb.protected() {
            return Err(TierError::Refused(format!(
                "load balancer {} has deletion protection on, so nothing was deleted: set loadBalancer.deletionProtection to false, apply, then destroy",
                lb.load_balancer().load_balancer_name().unwrap_or("")
            )));
        }
        let ls = listeners::Listeners {
            elb: elb.clone(),
            stack: w.spec.stack.clone(),
            lb_arn: Some(lbs.id(&lb)),
            tg_arn: None,
        };
        resource::destroy(&ls, &mut w).await?;
    }
    let waiting = resource::destroy(&lbs, &mut w).await?;
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let tgs = target_group::TargetGroups {
        elb: elb.clone(),
        reads,
        vpc_id: None,
    };
    let result = resource::destroy(&tgs, &mut w).await.map(|_| ());
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

mbstack_core::tier_permissions!(listeners, load_balancer, reads, tags, target_group);
