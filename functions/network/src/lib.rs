//! mbstack-network: the VPC over 2–6 AZs, a public and a private subnet per AZ,
//! the internet gateway, NAT gateway(s) with their Elastic IPs, route tables and
//! the three security groups.
//!
//! Each resource kind lives in its own module with the same small set of
//! functions (find / ensure / readiness / delete); this file only composes them in
//! dependency order.

mod igw;
mod nat;
mod routes;
mod security_groups;
mod subnets;
mod tags;
#[cfg(test)]
mod test_support;
mod vpc;

use mbstack_core::iam::Permission;
use mbstack_core::outputs::{self, NetworkOutputs};
use mbstack_core::resource::{self, Resource};
use mbstack_core::spec::NatMode;
use mbstack_core::{
    aws_error, client, Aws, Event, Outcome, Part, Readiness, State, Tier, TierError, Verb, Work,
};
use serde_json::{Map, Value};

use subnets::Side;

/// The tier's whole handler: plan | apply | check | destroy.
pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let ec2 = client!(aws_sdk_ec2, aws);
    // Boxed: the composed futures are deep enough to trip the compiler's layout limit.
    let w = Work::new(Tier::Network, &event.spec, &event.run, event.verb);
    match (event.verb, event.part) {
        (Verb::Check, Part::NatGateways) => Box::pin(nat_gateways(&ec2, w)).await,
        (_, Part::NatGateways) => Err(TierError::Terminal(
            "part \"nat-gateways\" is a check: apply the network (all of it, or its foundation) first".into(),
        )),
        (Verb::Plan | Verb::Apply | Verb::Check, part) => Box::pin(converge(&ec2, w, part)).await,
        (Verb::Destroy, _) => Box::pin(destroy(&ec2, w)).await,
    }
}

/// How many NAT gateways the spec asks for: none (`nat: none`, or paused with
/// `pauseNat`), one (`single`) or one per AZ.
fn nat_count(w: &Work<'_>) -> usize {
    let net = &w.spec.network;
    match net.nat {
        _ if w.spec.paused && net.pause_nat => 0,
        NatMode::None => 0,
        NatMode::Single => 1,
        NatMode::PerAz => usize::from(net.az_count),
    }
}

/// The NAT gateways alone (part `nat-gateways`, beside the database and the
/// load balancer): one read; ready when as many as the spec asks for are
/// available. A failed one fails the run, as in a full check.
async fn nat_gateways(ec2: &aws_sdk_ec2::Client, w: Work<'_>) -> Result<Outcome, TierError> {
    let kind = nat::NatGateways {
        ec2: ec2.clone(),
        reads: nat::Reads::new(ec2.clone()),
    };
    let found = kind.list(&w).await?;
    let wanted = nat_count(&w);
    let mut ready = Readiness::Ready;
    for n in &found {
        match kind.readiness(&w, n) {
            Readiness::Ready => {}
            Readiness::Failed(why) => {
                ready = Readiness::Failed(why);
                break;
            }
            Readiness::Pending(why) => ready = Readiness::Pending(why),
        }
    }
    if ready == Readiness::Ready && found.len() < wanted {
        ready = Readiness::Pending(format!(
            "{} of {wanted} NAT gateway(s) exist: the network's apply creates them",
            found.len()
        ));
    }
    w.checked(ready, Map::new())
}

/// What the network looks like after a converge pass: ids (None where planned).
struct Shape {
    vpc_id: Option<String>,
    azs: Vec<String>,
    subnets: Vec<(subnets::Want, Option<String>)>,
    igw_id: Option<String>,
    /// Every resource of the tier at its wanted state and ready: the NAT
    /// gateways are the ones that take time.
    readiness: Readiness,
    nat_ids: Vec<Option<String>>,
    route_table_ids: Vec<Option<String>>,
    groups: security_groups::Groups,
}

/// The AZs the stack uses: those of its subnets when it has a public and a
/// private one in each of `network.azCount` AZs (a repair reads no AZ list),
/// else the region's first `azCount` available AZs by name.
async fn availability_zones(
    ec2: &aws_sdk_ec2::Client,
    w: &Work<'_>,
    stack_subnets: &[aws_sdk_ec2::types::Subnet],
) -> Result<Vec<String>, TierError> {
    let want = usize::from(w.spec.network.az_count);
    let used: std::collections::BTreeSet<&str> = stack_subnets
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    if used.len() == want && stack_subnets.len() == 2 * want {
        return Ok(used.into_iter().map(str::to_string).collect());
    }
    let out = ec2
        .describe_availability_zones()
        .filters(tags::filter("state", &["available"]))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeAvailabilityZones", e))?;
    let mut azs: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    azs.sort();
    if azs.len() < want {
        return Err(TierError::Terminal(format!(
            "network.azCount is {want} but this region offers {} available AZs ({}): lower network.azCount",
            azs.len(),
            azs.join(", ")
        )));
    }
    azs.truncate(want);
    Ok(azs)
}

/// Plan (dry run) or apply: every kind in dependency order.
async fn shape(ec2: &aws_sdk_ec2::Client, w: &mut Work<'_>) -> Result<Shape, TierError> {
    let cidr = w.spec.vpc_cidr()?;
    let seen = std::sync::Arc::new(tokio::sync::OnceCell::new());
    let stack_subnets = subnets::of_stack(ec2, w, &seen).await?;
    let azs = availability_zones(ec2, w, stack_subnets).await?;
    let nat_azs: Vec<&String> = azs.iter().take(nat_count(w)).collect();
    let reads = nat::Reads::new(ec2.clone());
    nat::check_address_quota(&reads, w, &nat_azs).await?;
    let vpcs = vpc::Vpcs { ec2: ec2.clone() };
    let want = vpc::Want {
        cidr: cidr.to_string(),
    };
    let vpc_id = first_id(&vpcs, resource::converge(&vpcs, w, &[want]).await?);
    let gateways = igw::Gateways {
        ec2: ec2.clone(),
        vpc_id: vpc_id.clone(),
    };
    let igw_id = first_id(&gateways, resource::converge(&gateways, w, &[()]).await?);
    let subnet_kind = subnets::Subnets {
        ec2: ec2.clone(),
        vpc_id: vpc_id.clone(),
        seen,
    };
    let wants = subnets::wants(&cidr, &azs)?;
    let made = resource::converge(&subnet_kind, w, &wants).await?;
    let placed: Vec<(subnets::Want, Option<String>)> =
        wants.into_iter().zip(made.ids(&subnet_kind)).collect();
    let subnet_of = |side: Side, az: &str| {
        placed
            .iter()
            .find(|(w, _)| w.side == side && w.az == az)
            .and_then(|(_, id)| id.clone())
    };

    let net = &w.spec.network;
    let eips = nat::ElasticIps::new(reads.clone());
    let eip_wants: Vec<nat::EipWant> = nat_azs
        .iter()
        .map(|az| nat::EipWant { az: az.to_string() })
        .collect();
    let eips_made = resource::converge(&eips, w, &eip_wants).await?;
    let nats: Vec<nat::Wanted> = nat_azs
        .iter()
        .zip(eips_made.ids(&eips))
        .map(|(az, allocation_id)| nat::Wanted {
            az: az.to_string(),
            subnet_id: subnet_of(Side::Public, az),
            held_by: allocation_id.as_deref().and_then(|a| eips.held_by(a)),
            allocation_id,
        })
        .collect();
    let nat_kind = nat::NatGateways {
        ec2: ec2.clone(),
        reads,
    };
    let nats_made = resource::converge(&nat_kind, w, &nats).await?;
    let nat_ids = nats_made.ids(&nat_kind);

    let mut tables = vec![routes::Wanted {
        role: "public".into(),
        target: routes::Target::InternetGateway(igw_id.clone()),
        subnets: azs.iter().map(|az| subnet_of(Side::Public, az)).collect(),
    }];
    let private_subnets: Vec<Option<String>> =
        azs.iter().map(|az| subnet_of(Side::Private, az)).collect();
    if net.nat == NatMode::PerAz && !nats.is_empty() {
        for (i, az) in azs.iter().enumerate() {
            tables.push(routes::Wanted {
                role: format!("private-{az}"),
                target: routes::Target::NatGateway(nat_ids.get(i).cloned().flatten()),
                subnets: vec![private_subnets[i].clone()],
            });
        }
    } else {
        tables.push(routes::Wanted {
            role: "private".into(),
            target: match nat_ids.first() {
                Some(id) => routes::Target::NatGateway(id.clone()),
                None => routes::Target::Nothing,
            },
            subnets: private_subnets,
        });
    }
    let route_kind = routes::RouteTables::new(ec2.clone(), vpc_id.clone());
    let made_tables = resource::converge(&route_kind, w, &tables).await?;
    // Tables of the stack that the spec no longer asks for (nat mode changed).
    resource::prune(&route_kind, w, &made_tables.unwanted).await?;
    let route_table_ids = made_tables.ids(&route_kind);
    let sg = security_groups::SecurityGroups::new(ec2.clone(), vpc_id.clone());
    resource::converge(&sg, w, &security_groups::Role::ALL).await?;
    let groups = sg.groups();
    // Only now that no route points at them: what the spec no longer asks for.
    if vpc_id.is_some() {
        resource::prune(&nat_kind, w, &nats_made.unwanted).await?;
        resource::prune(&eips, w, &eips_made.unwanted).await?;
        resource::prune(&subnet_kind, w, &made.unwanted).await?;
    }
    Ok(Shape {
        vpc_id,
        azs,
        subnets: placed,
        igw_id,
        readiness: resource::readiness(&nat_kind, w, &nats, &nats_made.found),
        nat_ids,
        route_table_ids,
        groups,
    })
}

/// The ID of a kind that has one resource (None: planned).
fn first_id<R: Resource>(r: &R, c: resource::Converged<R>) -> Option<String> {
    c.ids(r).into_iter().next().flatten()
}

fn outputs(w: &Work<'_>, s: &Shape) -> Map<String, Value> {
    let ids = |side: Side| -> Vec<Option<String>> {
        s.subnets
            .iter()
            .filter(|(w, _)| w.side == side)
            .map(|(_, id)| id.clone())
            .collect()
    };
    outputs::to_map(&NetworkOutputs {
        vpc_id: s.vpc_id.clone(),
        vpc_cidr: Some(w.spec.network.cidr.clone()),
        availability_zones: s.azs.clone(),
        public_subnet_ids: ids(Side::Public),
        private_subnet_ids: ids(Side::Private),
        internet_gateway_id: s.igw_id.clone(),
        nat_gateway_ids: s.nat_ids.clone(),
        route_table_ids: s.route_table_ids.clone(),
        lb_security_group_id: s.groups.lb.clone(),
        app_security_group_id: s.groups.app.clone(),
        db_security_group_id: s.groups.db.clone(),
        nat_gateways_available: s.readiness == Readiness::Ready,
    })
}

/// The readiness a pass reports for `part`: the foundation does not wait for
/// the NAT gateways (their own check does, beside the tiers that do not need
/// them); a failed one still fails it.
fn readiness_of(part: Part, s: &Shape) -> Readiness {
    match (&s.readiness, part) {
        (Readiness::Pending(_), Part::Foundation) => Readiness::Ready,
        (r, _) => r.clone(),
    }
}

/// Apply and plan converge; a check is read-only: everything the spec asks
/// for exists as asked, and (unless the part is the foundation) the NAT
/// gateways are available.
async fn converge(
    ec2: &aws_sdk_ec2::Client,
    mut w: Work<'_>,
    part: Part,
) -> Result<Outcome, TierError> {
    let s = shape(ec2, &mut w).await?;
    let outputs = outputs(&w, &s);
    match w.verb {
        Verb::Check => w.checked(readiness_of(part, &s), outputs),
        _ => w.converged(readiness_of(part, &s), outputs),
    }
}

/// Deletes in the order real AWS requires: NAT gateways (wait until deleted) →
/// EIPs → IGW → route tables → security groups → subnets → VPC. `pending` while
/// waiting (a NAT deleting, an ENI lingering); `gone` when nothing is left.
async fn destroy(ec2: &aws_sdk_ec2::Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let reads = nat::Reads::new(ec2.clone());
    let nat_kind = nat::NatGateways {
        ec2: ec2.clone(),
        reads: reads.clone(),
    };
    let waiting = resource::destroy(&nat_kind, &mut w).await?;
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let eips = nat::ElasticIps::new(reads);
    let waiting = resource::destroy(&eips, &mut w).await?;
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let steps = async {
        let gateways = igw::Gateways {
            ec2: ec2.clone(),
            vpc_id: None,
        };
        resource::destroy(&gateways, &mut w).await?;
        resource::destroy(&routes::RouteTables::new(ec2.clone(), None), &mut w).await?;
        let sg = security_groups::SecurityGroups::new(ec2.clone(), None);
        resource::destroy(&sg, &mut w).await?;
        let subnet_kind = subnets::Subnets {
            ec2: ec2.clone(),
            vpc_id: None,
            seen: Default::default(),
        };
        resource::destroy(&subnet_kind, &mut w).await?;
        resource::destroy(&vpc::Vpcs { ec2: ec2.clone() }, &mut w).await?;
        Ok(())
    };
    let result = steps.await;
    // DependencyViolation while ENIs of the ALB or Fargate tasks linger: pending.
    w.destroyed(result, "network")
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub const OWN_PERMISSIONS: &[Permission] =
    &[Permission::read("Read", &["ec2:DescribeAvailabilityZones"])];

mbstack_core::tier_permissions!(igw, nat, routes, security_groups, subnets, tags, vpc);
