//! mbstack-network: the VPC over 2–6 AZs, a public and a private subnet per AZ,
//! the internet gateway, NAT gateway(s) with their Elastic IPs (or one NAT
//! instance with its interface and Elastic IP), route tables and the security
//! groups.
//!
//! Each resource kind lives in its own module with the same small set of
//! functions (find / ensure / readiness / delete); this file only composes them in
//! dependency order.

mod igw;
mod nat;
mod nat_instance;
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
    let ssm = client!(aws_sdk_ssm, aws);
    let clients = Clients { ec2, ssm };
    // Boxed: the composed futures are deep enough to trip the compiler's layout limit.
    let w = Work::new(Tier::Network, &event.spec, &event.run, event.verb);
    match (event.verb, event.part) {
        (Verb::Check, Part::NatGateways) => Box::pin(nat_gateways(&clients, w)).await,
        (_, Part::NatGateways) => Err(TierError::Terminal(
            "part \"nat-gateways\" is a check: apply the network (all of it, or its foundation) first".into(),
        )),
        (Verb::Plan | Verb::Apply | Verb::Check, part) => {
            Box::pin(converge(&clients, w, part)).await
        }
        (Verb::Destroy, _) => Box::pin(destroy(&clients, w)).await,
    }
}

/// The tier's SDK clients.
struct Clients {
    ec2: aws_sdk_ec2::Client,
    /// AWS's public AMI parameter (the NAT instance's image).
    ssm: aws_sdk_ssm::Client,
}

impl Clients {
    fn instances(&self) -> nat_instance::Instances {
        nat_instance::Instances {
            ec2: self.ec2.clone(),
            ssm: self.ssm.clone(),
        }
    }
}

/// How many NAT gateways the spec asks for: none (`nat: none` or `instance`,
/// or paused with `pauseNat`), one (`single`) or one per AZ.
fn nat_count(w: &Work<'_>) -> usize {
    let net = &w.spec.network;
    match net.nat {
        _ if w.spec.paused && net.pause_nat => 0,
        NatMode::None | NatMode::Instance => 0,
        NatMode::Single => 1,
        NatMode::PerAz => usize::from(net.az_count),
    }
}

/// Whether the spec asks for a NAT instance (stopped while paused).
fn nat_instance(w: &Work<'_>) -> bool {
    w.spec.network.nat == NatMode::Instance
}

/// The NAT instance alone (part `nat-gateways` of a `nat: instance` stack):
/// ready when it runs (is stopped, paused) and its interface has its address
/// with the source/destination check off.
async fn nat_instance_ready(c: &Clients, w: Work<'_>) -> Result<Outcome, TierError> {
    let enis = nat_instance::Interfaces { ec2: c.ec2.clone() };
    let instances = c.instances();
    let mut waiting = Vec::new();
    let found = instances.list(&w).await?;
    if found.is_empty() {
        waiting
            .push("the NAT instance: it does not exist (the network's apply launches it)".into());
    }
    for i in &found {
        if let Readiness::Pending(why) = instances.readiness(&w, i) {
            waiting.push(why);
        }
    }
    for e in enis.list(&w).await? {
        if let Readiness::Pending(why) = enis.readiness(&w, &e) {
            waiting.push(why);
        }
    }
    w.checked(resource::all_ready(waiting), Map::new())
}

/// The NAT gateways alone (part `nat-gateways`, beside the database and the
/// load balancer): one read; ready when as many as the spec asks for are
/// available. A failed one fails the run, as in a full check.
async fn nat_gateways(c: &Clients, w: Work<'_>) -> Result<Outcome, TierError> {
    if nat_instance(&w) {
        return nat_instance_ready(c, w).await;
    }
    let ec2 = &c.ec2;
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
async fn shape(c: &Clients, w: &mut Work<'_>) -> Result<Shape, TierError> {
    let ec2 = &c.ec2;
    let cidr = w.spec.vpc_cidr()?;
    let seen = std::sync::Arc::new(tokio::sync::OnceCell::new());
    let stack_subnets = subnets::of_stack(ec2, w, &seen).await?;
    let azs = availability_zones(ec2, w, stack_subnets).await?;
    let nat_azs: Vec<&String> = azs.iter().take(nat_count(w)).collect();
    // The NAT instance sits in the first AZ, with the address the first NAT
    // gateway has (a switch keeps the stack's Elastic IP).
    let instance_azs: Vec<&String> = azs.iter().take(usize::from(nat_instance(w))).collect();
    let eip_azs: Vec<&String> = nat_azs.iter().chain(&instance_azs).copied().collect();
    let reads = nat::Reads::new(ec2.clone());
    nat::check_address_quota(&reads, w, &eip_azs).await?;
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
    let private_cidrs: Vec<String> = wants
        .iter()
        .filter(|w| w.side == Side::Private)
        .map(|w| w.cidr.to_string())
        .collect();
    let made = resource::converge(&subnet_kind, w, &wants).await?;
    let placed: Vec<(subnets::Want, Option<String>)> =
        wants.into_iter().zip(made.ids(&subnet_kind)).collect();
    let subnet_of = |side: Side, az: &str| {
        placed
            .iter()
            .find(|(w, _)| w.side == side && w.az == az)
            .and_then(|(_, id)| id.clone())
    };

    // The groups before the NAT instance's interface, which needs its own.
    let sg =
        security_groups::SecurityGroups::new(ec2.clone(), vpc_id.clone()).admitting(private_cidrs);
    let mut roles = security_groups::Role::ALL.to_vec();
    if nat_instance(w) {
        roles.push(security_groups::Role::Nat);
    }
    let groups_made = resource::converge(&sg, w, &roles).await?;
    let groups = sg.groups();

    let net = &w.spec.network;
    let eips = nat::ElasticIps::new(reads.clone());
    let eip_wants: Vec<nat::EipWant> = eip_azs
        .iter()
        .map(|az| nat::EipWant { az: az.to_string() })
        .collect();
    let eips_made = resource::converge(&eips, w, &eip_wants).await?;
    // The NAT instance's interfaces, where an address sits on one (a switch
    // to a NAT gateway takes it off first; an address a gateway maps is not
    // the tier's to take off).
    let enis = nat_instance::Interfaces { ec2: ec2.clone() };
    let on_interface = eips_made.found.iter().flatten().any(|a| {
        a.network_interface_id().is_some()
            && a.allocation_id()
                .is_some_and(|id| eips.gateway_of(id).is_none())
    });
    let nat_enis: Vec<String> = if !nat_instance(w) && on_interface {
        enis.list(w).await?.iter().map(|e| enis.id(e)).collect()
    } else {
        Vec::new()
    };
    let nats: Vec<nat::Wanted> = nat_azs
        .iter()
        .zip(&eips_made.found)
        .map(|(az, address)| {
            let allocation_id = address.as_ref().and_then(|a| a.allocation_id());
            nat::Wanted {
                az: az.to_string(),
                subnet_id: subnet_of(Side::Public, az),
                held_by: allocation_id.and_then(|a| eips.held_by(a)),
                associated: address
                    .as_ref()
                    .filter(|a| {
                        a.network_interface_id()
                            .is_some_and(|e| nat_enis.iter().any(|n| n == e))
                    })
                    .and_then(|a| a.association_id())
                    .map(str::to_string),
                allocation_id: allocation_id.map(str::to_string),
            }
        })
        .collect();
    let nat_kind = nat::NatGateways {
        ec2: ec2.clone(),
        reads,
    };
    let nats_made = resource::converge(&nat_kind, w, &nats).await?;
    let nat_ids = nats_made.ids(&nat_kind);
    let mut readiness = resource::readiness(&nat_kind, w, &nats, &nats_made.found);

    // The NAT instance: its interface (with the stack's address), then itself.
    let instances = c.instances();
    let mut eni_id = None;
    // Why the private route still goes to the NAT gateway being replaced.
    let mut switch_waits: Option<String> = None;
    let mut old_gateway: Option<String> = None;
    if let Some(az) = instance_azs.first() {
        let allocation_id = eips_made.ids(&eips).into_iter().next().flatten();
        let eni_want = nat_instance::EniWant {
            az: az.to_string(),
            subnet_id: subnet_of(Side::Public, az),
            group_id: groups.nat.clone(),
            held_by: allocation_id.as_deref().and_then(|a| eips.gateway_of(a)),
            allocation_id,
        };
        let enis_made = resource::converge(&enis, w, std::slice::from_ref(&eni_want)).await?;
        let eni = enis_made.found.first().cloned().flatten();
        eni_id = eni.as_ref().map(|e| enis.id(e));
        let want = nat_instance::InstanceWant {
            az: az.to_string(),
            eni_id: eni_id.clone(),
            eni_held_by: eni.as_ref().and_then(nat_instance::attached_to),
            instance_type: net.nat_instance_type.clone(),
            running: !w.spec.paused,
        };
        let made = resource::converge(&instances, w, std::slice::from_ref(&want)).await?;
        let instance_ready = resource::readiness(&instances, w, &[want], &made.found);
        let eni_ready = match &eni {
            Some(e) => enis.readiness(w, e),
            None => Readiness::Pending("the NAT instance's interface: not created yet".into()),
        };
        // The gateway a switch from `single` replaces keeps the private
        // subnets' way out until the instance runs.
        old_gateway = nats_made
            .unwanted
            .iter()
            .find(|n| n.state() == Some(&aws_sdk_ec2::types::NatGatewayState::Available))
            .map(|n| nat_kind.id(n));
        // (A plan shows where the switch ends: the route moved, the gateway
        // deleted.)
        if let (Some(old), Readiness::Pending(why)) = (&old_gateway, &instance_ready) {
            if !w.spec.paused && w.verb == Verb::Apply {
                switch_waits = Some(format!(
                    "the private subnets keep NAT gateway {old} until the NAT instance runs ({why})"
                ));
            }
        }
        readiness = merge(&[readiness, instance_ready, eni_ready]);
    }

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
            target: match (nat_ids.first(), &switch_waits, nat_instance(w)) {
                (_, Some(_), _) => routes::Target::NatGateway(old_gateway.clone()),
                (_, None, true) => routes::Target::Interface(eni_id.clone()),
                (Some(id), None, false) => routes::Target::NatGateway(id.clone()),
                (None, None, false) => routes::Target::Nothing,
            },
            subnets: private_subnets,
        });
    }
    let route_kind = routes::RouteTables::new(ec2.clone(), vpc_id.clone());
    let made_tables = resource::converge(&route_kind, w, &tables).await?;
    // Tables of the stack that the spec no longer asks for (nat mode changed).
    resource::prune(&route_kind, w, &made_tables.unwanted).await?;
    let route_table_ids = made_tables.ids(&route_kind);
    // Only now that no route points at them: what the spec no longer asks for.
    let mut unfinished = Vec::new();
    if vpc_id.is_some() && switch_waits.is_none() {
        resource::prune(&nat_kind, w, &nats_made.unwanted).await?;
        // A NAT instance the spec no longer asks for (a switch to a NAT
        // gateway): it, then its interface, then its group.
        if !nat_instance(w) && !groups_made.unwanted.is_empty() {
            let mut waiting = resource::prune_owned(&instances, w).await?;
            if waiting.is_empty() {
                waiting = resource::prune_owned(&enis, w).await?;
            }
            if waiting.is_empty() {
                waiting = resource::prune(&sg, w, &groups_made.unwanted).await?;
            }
            unfinished.extend(waiting);
        }
        resource::prune(&eips, w, &eips_made.unwanted).await?;
        resource::prune(&subnet_kind, w, &made.unwanted).await?;
    }
    // A switch is finished within the run: the apply is run again (the state
    // machine's `Mbstack.Waiting` retrier) until the new way out carries and
    // the old one is gone.
    if w.verb == Verb::Apply {
        let address_held = nat_instance(w)
            && eni_id.is_some()
            && matches!(&readiness, Readiness::Pending(why) if why.contains("Elastic IP is not associated"));
        let why = switch_waits
            .or_else(|| {
                address_held.then(|| {
                    "the NAT instance's interface takes the stack's Elastic IP once the NAT gateway that held it is deleted and AWS frees it".to_string()
                })
            })
            .or_else(|| {
                (!unfinished.is_empty()).then(|| {
                    format!("the NAT instance being replaced: waiting for {}", unfinished.join(", "))
                })
            });
        if let Some(why) = why {
            return Err(TierError::Waiting(why));
        }
    }
    Ok(Shape {
        vpc_id,
        azs,
        subnets: placed,
        igw_id,
        readiness,
        nat_ids,
        route_table_ids,
        groups,
    })
}

/// The first failure, else every reason to wait, else ready.
fn merge(all: &[Readiness]) -> Readiness {
    let mut waiting = Vec::new();
    for r in all {
        match r {
            Readiness::Ready => {}
            Readiness::Failed(_) => return r.clone(),
            Readiness::Pending(why) => {
                waiting.push(why.trim_start_matches("waiting for ").to_string())
            }
        }
    }
    resource::all_ready(waiting)
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
async fn converge(c: &Clients, mut w: Work<'_>, part: Part) -> Result<Outcome, TierError> {
    let s = shape(c, &mut w).await?;
    let outputs = outputs(&w, &s);
    match w.verb {
        Verb::Check => w.checked(readiness_of(part, &s), outputs),
        _ => w.converged(readiness_of(part, &s), outputs),
    }
}

/// Deletes in the order real AWS requires: NAT gateways (wait until deleted)
/// and the NAT instance (wait until terminated) → its interface → EIPs → IGW →
/// route tables → security groups → subnets → VPC. `pending` while waiting (a
/// NAT deleting, an instance shutting down, an ENI lingering); `gone` when
/// nothing is left.
async fn destroy(c: &Clients, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let ec2 = &c.ec2;
    let reads = nat::Reads::new(ec2.clone());
    let nat_kind = nat::NatGateways {
        ec2: ec2.clone(),
        reads: reads.clone(),
    };
    let mut waiting = resource::destroy(&nat_kind, &mut w).await?;
    waiting.extend(resource::destroy(&c.instances(), &mut w).await?);
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let enis = nat_instance::Interfaces { ec2: ec2.clone() };
    let waiting = resource::destroy(&enis, &mut w).await?;
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

mbstack_core::tier_permissions!(
    igw,
    nat,
    nat_instance,
    routes,
    security_groups,
    subnets,
    tags,
    vpc
);
