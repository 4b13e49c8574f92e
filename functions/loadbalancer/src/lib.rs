//! mbstack-loadbalancer: the internet-facing ALB, its target group and listeners.
//! The target group is attached to a listener in the same apply, before the app
//! tier's service references it.

mod certificate;
mod dns;
mod domain;
mod ledger;
mod listeners;
mod load_balancer;
mod reads;
mod tags;
mod target_group;
#[cfg(test)]
mod test_support;
mod validation;

pub use dns::{domain_zone_problems, new_domain_problems};
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
use mbstack_core::{client, Aws, Event, Outcome, Scope, State, Tier, TierError, Verb, Work};
use serde_json::{Map, Value};

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let elb = client!(aws_sdk_elasticloadbalancingv2, aws);
    let d = domain::Domain {
        elb: elb.clone(),
        acm: client!(aws_sdk_acm, aws),
        dns: dns::Dns {
            r53: client!(aws_sdk_route53, aws),
        },
    };
    let w = Work::new(Tier::LoadBalancer, &event.spec, &event.run, event.verb);
    match event.verb {
        Verb::Plan | Verb::Apply | Verb::Check => Box::pin(converge(&elb, &d, w, &event)).await,
        Verb::Destroy => Box::pin(destroy(&elb, &d, w)).await,
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
    let https = listeners.iter().any(|(p, a)| *p == 443 && a.is_some());
    let scheme = if https { "https" } else { "http" };
    // Metabase's own address once the domain's record is written.
    let host = w.spec.load_balancer.domain.as_deref().or(lb.dns_name());
    let listener = |port: i32| {
        listeners
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, a)| a.clone())
    };
    let own = |v: Option<&str>| v.map(str::to_string);
    outputs::to_map(&LoadBalancerOutputs {
        url: host.map(|d| format!("{scheme}://{d}")),
        load_balancer_arn: own(lb.load_balancer_arn()),
        dns_name: own(lb.dns_name()),
        canonical_hosted_zone_id: own(lb.canonical_hosted_zone_id()),
        target_group_arn: own(tg),
        http_listener_arn: listener(80),
        https_listener_arn: listener(443),
        listener_arns: listeners.iter().filter_map(|(_, a)| a.clone()).collect(),
    })
}

/// Plan, apply, and (read-only) check: target group → ALB → (the domain's
/// certificate and validation record) → listeners → (the domain's alias).
async fn converge(
    elb: &Client,
    d: &domain::Domain,
    mut w: Work<'_>,
    event: &Event,
) -> Result<Outcome, TierError> {
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
    let alb_arn = lb_live.as_ref().map(|l| lbs.id(l));
    let ledger = lb_live
        .as_ref()
        .and_then(|l| ledger::Ledger::read(&lbs.tags(l)));
    let target = lb_live.as_ref().and_then(|l| {
        let lb = l.load_balancer();
        Some((
            lb.dns_name()?.to_string(),
            lb.canonical_hosted_zone_id()?.to_string(),
        ))
    });
    let before = d
        .before(
            &mut w,
            alb_arn.as_deref().map(|arn| (arn, ledger.as_ref())),
            target.clone(),
        )
        .await?;
    let ls = listeners::Listeners {
        elb: elb.clone(),
        stack: w.spec.stack.clone(),
        lb_arn: alb_arn.clone(),
        tg_arn: tg_arn.clone(),
    };
    let wants = listeners::wanted(
        tg_arn.as_deref().unwrap_or("(planned target group)"),
        before.https.as_deref(),
    );
    let made = resource::converge(&ls, &mut w, &wants).await?;
    // :443 without a certificate: the layout switched back to HTTP.
    resource::prune(&ls, &mut w, &made.unwanted).await?;
    let ports: Vec<(i32, Option<String>)> =
        wants.iter().map(|l| l.port).zip(made.ids(&ls)).collect();
    let mut waiting = before.waiting;
    d.alias(&mut w, before.zone, target.clone(), ledger.clone())
        .await?;
    // The domain left the spec: what the ledger names goes, after the
    // listeners stopped serving its certificate.
    if let (None, Some(l), Some(arn)) = (&w.spec.load_balancer.domain, &ledger, &alb_arn) {
        let how = domain::Removal::Pruned;
        waiting.extend(d.remove(&mut w, arn, target, l, how).await?);
    }
    let out = outputs(
        &w,
        lb_live.as_ref().map(|l| l.load_balancer()),
        tg_arn.as_deref(),
        &ports,
    );
    let ready = match resource::readiness(&lbs, &w, &[()], &lb.found) {
        Readiness::Ready => resource::all_ready(waiting),
        Readiness::Pending(why) if !waiting.is_empty() => {
            Readiness::Pending(format!("{why}; {}", waiting.join(", ")))
        }
        other => other,
    };
    match w.verb {
        Verb::Check => w.checked(ready, out),
        _ => w.converged(ready, out),
    }
}

fn first(ids: Vec<Option<String>>) -> Option<String> {
    ids.into_iter().next().flatten()
}

/// Listeners → the domain's alias record, certificate and validation record
/// (wait until ELB lets the certificate go) → ALB (wait until gone) → target
/// group (pending while in use).
async fn destroy(elb: &Client, d: &domain::Domain, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let reads = reads::Reads::new(elb.clone(), &w.spec.stack);
    let lbs = load_balancer::LoadBalancers {
        elb: elb.clone(),
        reads: reads.clone(),
        subnets: None,
        sg: None,
    };
    let mut waiting = Vec::new();
    for lb in lbs.list(&w).await? {
        if !w.is_ours(&lbs.tags(&lb)) {
            continue;
        }
        let owned = w.owns(&lbs.tags(&lb));
        if owned && lb.protected() {
            let name = lb.load_balancer().load_balancer_name().unwrap_or("");
            // A rollback may take protection off what its own run created
            // (owned in scope `run`); a destroy refuses before deleting
            // anything, not halfway through.
            if w.run.scope != Scope::Run {
                return Err(TierError::Refused(format!(
                    "load balancer {name} has deletion protection on, so nothing was deleted: set loadBalancer.deletionProtection to false, apply, then destroy"
                )));
            }
            lbs.unprotect(&lbs.id(&lb)).await?;
            w.record(
                load_balancer::LoadBalancers::KIND,
                name,
                mbstack_core::Action::Update,
                "deletion protection → off (this run created it; its rollback deletes it)",
            );
        }
        let ls = listeners::Listeners {
            elb: elb.clone(),
            stack: w.spec.stack.clone(),
            lb_arn: Some(lbs.id(&lb)),
            tg_arn: None,
        };
        if owned {
            resource::destroy(&ls, &mut w).await?;
        }
        // The domain of a load balancer this scope keeps may still be this
        // run's to take away (a rollback of the run that added the domain).
        if let Some(ledger) = ledger::Ledger::read(&lbs.tags(&lb)) {
            let target = lb
                .load_balancer()
                .dns_name()
                .zip(lb.load_balancer().canonical_hosted_zone_id());
            let target = target.map(|(a, b)| (a.to_string(), b.to_string()));
            // A rollback of the run that gave a kept load balancer its
            // domain: once its HTTPS listener serves the certificate, it is
            // the site (:80 redirects to it, and what :80 was before is not
            // known here). The domain stays, said so, rather than a
            // certificate ELB never lets go and a site that breaks.
            let ours = owned || ledger.run == w.run.id;
            let kept = match (owned, ours) {
                (false, true) => d.served(&w, &lbs.id(&lb), &ledger).await?,
                _ => None,
            };
            if let Some(cert) = kept {
                let detail = format!("kept: the HTTPS listener serves it; apply with loadBalancer.domain null to take {} away", ledger.domain);
                w.record("certificate", cert, mbstack_core::Action::None, detail);
            } else if ours {
                let how = domain::Removal::Destroyed;
                waiting.extend(d.remove(&mut w, &lbs.id(&lb), target, &ledger, how).await?);
            }
        }
    }
    if waiting.is_empty() {
        waiting = resource::destroy(&lbs, &mut w).await?;
    }
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

mbstack_core::tier_permissions!(
    certificate,
    dns,
    domain,
    ledger,
    listeners,
    load_balancer,
    reads,
    tags,
    target_group,
    validation
);
