//! Route tables: public (0.0.0.0/0 → IGW) for the public subnets; private
//! (0.0.0.0/0 → NAT gateway, or the NAT instance's network interface) for the
//! private subnets, one per AZ with `per-az` NATs, or one with no default route
//! when nat is `none`.

use aws_sdk_ec2::types::{ResourceType, RouteState, RouteTable};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Verb, Work};
use std::sync::Mutex;

use crate::tags::{filter, pairs, stack_filter, tag, tag_spec};

const ANYWHERE: &str = "0.0.0.0/0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// No default route at all.
    Nothing,
    InternetGateway(Option<String>),
    NatGateway(Option<String>),
    /// The NAT instance's network interface.
    Interface(Option<String>),
}

impl Target {
    fn via(&self) -> Via {
        match self {
            Target::InternetGateway(_) => Via::Gateway,
            Target::Interface(_) => Via::Interface,
            Target::Nothing | Target::NatGateway(_) => Via::NatGateway,
        }
    }
}

/// Which field of CreateRoute names the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Gateway,
    NatGateway,
    Interface,
}

/// One route table the spec asks for.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub role: String,
    pub target: Target,
    /// Subnets to associate (None: planned, not created yet).
    pub subnets: Vec<Option<String>>,
}

/// The stack's route tables in the VPC `vpc_id` (None: planned, or a destroy).
/// Every table of the VPC (ours and the main one) is kept in `all`: a subnet
/// may be associated with any of them.
pub(crate) struct RouteTables {
    pub ec2: aws_sdk_ec2::Client,
    pub vpc_id: Option<String>,
    all: Mutex<Vec<RouteTable>>,
}

/// One change of a table.
pub(crate) enum Step {
    RemoveDefault(String),
    SetDefault {
        /// None: the gateway is planned, not created yet.
        target: Option<String>,
        via: Via,
        /// The route exists (replace it), and what it pointed at.
        was: Option<(String, bool)>,
    },
    /// Move a subnet here from another table: (subnet, association, table).
    Move(String, String, String),
    Associate(String),
    /// A subnet that is planned, not created yet.
    AssociateNew,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::RemoveDefault(cur) => write!(f, "remove route {ANYWHERE} → {cur}"),
            Step::SetDefault { target, was, via } => {
                let shown = target.as_deref().unwrap_or(match via {
                    Via::Interface => "the NAT instance's new interface",
                    Via::Gateway | Via::NatGateway => "the new gateway",
                });
                match was {
                    Some((c, blackhole)) => write!(
                        f,
                        "route {ANYWHERE} → {shown} (was {c}{})",
                        if *blackhole { ", a blackhole" } else { "" }
                    ),
                    None => write!(f, "route {ANYWHERE} → {shown}"),
                }
            }
            Step::Move(subnet, _, other) => write!(f, "move {subnet} here from {other}"),
            Step::Associate(subnet) => write!(f, "associate {subnet}"),
            Step::AssociateNew => f.write_str("associate a new subnet"),
        }
    }
}

fn default_route_target(rt: &RouteTable) -> Option<(String, bool)> {
    rt.routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(ANYWHERE))
        .map(|r| {
            // A route to an instance names its interface too (AWS fills both).
            let target = r
                .gateway_id()
                .or(r.nat_gateway_id())
                .or(r.network_interface_id())
                .or(r.instance_id())
                .unwrap_or("(other)")
                .to_string();
            (target, r.state() == Some(&RouteState::Blackhole))
        })
}

impl RouteTables {
    pub fn new(ec2: aws_sdk_ec2::Client, vpc_id: Option<String>) -> Self {
        Self {
            ec2,
            vpc_id,
            all: Mutex::new(Vec::new()),
        }
    }

    /// The table a subnet is associated with now: (table, association).
    fn association_of(&self, subnet: &str) -> Option<(String, String)> {
        let all = self.all.lock().ok()?;
        all.iter().find_map(|rt| {
            rt.associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet))
                .map(|a| {
                    (
                        rt.route_table_id().unwrap_or_default().to_string(),
                        a.route_table_association_id()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
        })
    }

    /// Points 0.0.0.0/0 of table `id` at `target` (replacing the current route).
    async fn set_default_route(
        &self,
        id: &str,
        target: &str,
        via: Via,
        replace: bool,
    ) -> Result<(), TierError> {
        // CreateRoute and ReplaceRoute take the same fields.
        macro_rules! to_target {
            ($call:expr) => {{
                let call = $call.route_table_id(id).destination_cidr_block(ANYWHERE);
                match via {
                    Via::Gateway => call.gateway_id(target),
                    Via::NatGateway => call.nat_gateway_id(target),
                    Via::Interface => call.network_interface_id(target),
                }
            }};
        }
        if replace {
            to_target!(self.ec2.replace_route())
                .send()
                .await
                .map_err(|e| aws_error("ec2:ReplaceRoute", e))?;
        } else {
            to_target!(self.ec2.create_route())
                .send()
                .await
                .map_err(|e| aws_error("ec2:CreateRoute", e))?;
        }
        Ok(())
    }
}

impl Resource for RouteTables {
    const KIND: &'static str = "route-table";
    const LABEL: &'static str = "route table";
    type Live = RouteTable;
    type Want = Wanted;
    type Step = Step;

    fn name(&self, w: &Work<'_>, want: &Wanted) -> String {
        w.name(&want.role)
    }
    fn live_name(&self, live: &RouteTable) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &RouteTable) -> String {
        live.route_table_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &RouteTable) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<RouteTable>, TierError> {
        let call = self.ec2.describe_route_tables();
        let call = match &self.vpc_id {
            Some(vpc) => call.filters(filter("vpc-id", &[vpc])),
            None => call.filters(stack_filter(w)),
        };
        let out = call
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
        if let Ok(mut all) = self.all.lock() {
            *all = out.route_tables().to_vec();
        }
        Ok(out
            .route_tables()
            .iter()
            .filter(|rt| w.is_ours(&pairs(rt.tags())))
            .cloned()
            .collect())
    }

    /// The default route, then the subnets' associations (a subnet may be
    /// associated with another of our tables when the nat mode changed: moved).
    fn diff(&self, _w: &Work<'_>, rt: &RouteTable, want: &Wanted) -> Result<Vec<Step>, TierError> {
        let id = self.id(rt);
        let mut steps = Vec::new();
        let current = default_route_target(rt);
        let want_target = match &want.target {
            Target::Nothing => None,
            Target::InternetGateway(t) | Target::NatGateway(t) | Target::Interface(t) => {
                Some(t.clone())
            }
        };
        match (current, want_target) {
            (None, None) => {}
            (Some((cur, _)), None) => steps.push(Step::RemoveDefault(cur)),
            (Some((cur, false)), Some(Some(t))) if cur == t => {}
            // A route to the NAT instance's interface is a blackhole while the
            // instance is stopped (paused) or replaced; it carries again once
            // an instance runs on the interface: nothing to change.
            (Some((cur, true)), Some(Some(t)))
                if cur == t && matches!(want.target, Target::Interface(_)) => {}
            (was, Some(target)) => steps.push(Step::SetDefault {
                target,
                via: want.target.via(),
                was,
            }),
        }
        for subnet in &want.subnets {
            let Some(subnet) = subnet else {
                steps.push(Step::AssociateNew);
                continue;
            };
            match self.association_of(subnet) {
                Some((table, _)) if table == id => {}
                Some((other, assoc)) => steps.push(Step::Move(subnet.clone(), assoc, other)),
                None => steps.push(Step::Associate(subnet.clone())),
            }
        }
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, want: &Wanted) -> String {
        describe(want)
    }
    fn summary(&self, _w: &Work<'_>, rt: &RouteTable) -> String {
        let route = match default_route_target(rt) {
            None => "no default route".to_string(),
            Some((target, _)) => format!("{ANYWHERE} → {target}"),
        };
        format!("{route}, {} subnet(s)", rt.associations().len())
    }

    /// The table, its default route and its subnets.
    async fn create(&self, w: &Work<'_>, want: &Wanted) -> Result<RouteTable, TierError> {
        let vpc = self.vpc_id.as_deref().ok_or_else(|| {
            TierError::Terminal("a route table needs the VPC, which does not exist".into())
        })?;
        let out = self
            .ec2
            .create_route_table()
            .vpc_id(vpc)
            .tag_specifications(tag_spec(w, ResourceType::RouteTable, &want.role))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateRouteTable", e))?;
        let rt = out
            .route_table()
            .filter(|r| r.route_table_id().is_some())
            .cloned()
            .ok_or_else(|| TierError::Terminal("ec2:CreateRouteTable returned no id".into()))?;
        let steps = self.diff(w, &rt, want)?;
        self.update(w, &rt, want, &steps).await?;
        Ok(rt)
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        rt: &RouteTable,
        _want: &Wanted,
        steps: &[Step],
    ) -> Result<Option<RouteTable>, TierError> {
        let id = self.id(rt);
        for step in steps {
            match step {
                Step::RemoveDefault(_) => {
                    self.ec2
                        .delete_route()
                        .route_table_id(&id)
                        .destination_cidr_block(ANYWHERE)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:DeleteRoute", e))?;
                }
                Step::SetDefault {
                    target: Some(target),
                    via,
                    was,
                } => {
                    self.set_default_route(&id, target, *via, was.is_some())
                        .await?
                }
                Step::SetDefault { target: None, .. } | Step::AssociateNew => {}
                Step::Move(_, assoc, _) => {
                    self.ec2
                        .replace_route_table_association()
                        .association_id(assoc)
                        .route_table_id(&id)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:ReplaceRouteTableAssociation", e))?;
                }
                Step::Associate(subnet) => {
                    self.ec2
                        .associate_route_table()
                        .route_table_id(&id)
                        .subnet_id(subnet)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:AssociateRouteTable", e))?;
                }
            }
        }
        Ok(None)
    }

    /// Disassociates its subnets, then deletes it. In an apply (pruning) the
    /// table is read again first: this run may just have moved its subnets.
    async fn delete(&self, w: &Work<'_>, rt: &RouteTable) -> Result<Deleted, TierError> {
        let id = self.id(rt);
        let fresh = if w.verb == Verb::Apply {
            let out = self
                .ec2
                .describe_route_tables()
                .route_table_ids(&id)
                .send()
                .await
                .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
            match out.route_tables().first() {
                Some(fresh) => fresh.clone(),
                None => return Ok(Deleted::Now),
            }
        } else {
            rt.clone()
        };
        for a in fresh
            .associations()
            .iter()
            .filter(|a| a.main() != Some(true))
        {
            if let Some(assoc) = a.route_table_association_id() {
                self.ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DisassociateRouteTable", e))?;
            }
        }
        self.ec2
            .delete_route_table()
            .route_table_id(&id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteRouteTable", e))?;
        Ok(Deleted::Now)
    }
}

fn describe(w: &Wanted) -> String {
    let route = match &w.target {
        Target::Nothing => "no default route".to_string(),
        Target::InternetGateway(_) => format!("{ANYWHERE} → internet gateway"),
        Target::NatGateway(_) => format!("{ANYWHERE} → NAT gateway"),
        Target::Interface(_) => format!("{ANYWHERE} → NAT instance"),
    };
    format!("{}, {} subnet(s)", route, w.subnets.len())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeRouteTables"]),
    Permission::create_tagged("CreateTagged", &["ec2:CreateRouteTable"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:CreateRouteTable",
            "ec2:CreateRoute",
            "ec2:ReplaceRoute",
            "ec2:DeleteRoute",
            "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable",
            "ec2:ReplaceRouteTableAssociation",
            "ec2:DeleteRouteTable",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use aws_sdk_ec2::types::{Route, RouteTableAssociation};
    use mbstack_core::{StackSpec, Tier};

    /// The kind with every table of the VPC known, as `list` leaves it.
    fn kind(all: &[RouteTable]) -> RouteTables {
        let rts = RouteTables::new(ec2(), Some("vpc-1".into()));
        *rts.all.lock().unwrap() = all.to_vec();
        rts
    }

    fn default_route(via_igw: bool, target: &str, state: RouteState) -> Route {
        let r = Route::builder()
            .destination_cidr_block(ANYWHERE)
            .state(state);
        if via_igw {
            r.gateway_id(target).build()
        } else {
            r.nat_gateway_id(target).build()
        }
    }

    fn table(id: &str, route: Option<Route>, subnets: &[&str]) -> RouteTable {
        let associations: Vec<RouteTableAssociation> = subnets
            .iter()
            .map(|s| {
                RouteTableAssociation::builder()
                    .route_table_association_id(format!("rtbassoc-{s}"))
                    .route_table_id(id)
                    .subnet_id(*s)
                    .build()
            })
            .collect();
        RouteTable::builder()
            .route_table_id(id)
            .set_routes(route.map(|r| vec![r]))
            .set_associations(Some(associations))
            .build()
    }

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_public_table_routing_to_the_gateway_with_its_subnets_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let public = table(
            "rtb-pub",
            Some(default_route(true, "igw-1", RouteState::Active)),
            &["subnet-pub-a", "subnet-pub-b"],
        );
        let want = Wanted {
            role: "public".into(),
            target: Target::InternetGateway(Some("igw-1".into())),
            subnets: vec![Some("subnet-pub-a".into()), Some("subnet-pub-b".into())],
        };
        let steps = kind(std::slice::from_ref(&public))
            .diff(&w, &public, &want)
            .unwrap();
        assert!(steps.is_empty(), "{:?}", shown(&steps));
    }

    #[test]
    fn a_private_table_is_pointed_at_the_new_nat_and_takes_its_subnets() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        // Its NAT gateway was replaced (the old route a blackhole), one of its
        // subnets sits in the public table, the other in none.
        let private = table(
            "rtb-priv",
            Some(default_route(false, "nat-old", RouteState::Blackhole)),
            &[],
        );
        let public = table("rtb-pub", None, &["subnet-priv-a"]);
        let want = Wanted {
            role: "private".into(),
            target: Target::NatGateway(Some("nat-new".into())),
            subnets: vec![Some("subnet-priv-a".into()), Some("subnet-priv-b".into())],
        };
        let steps = kind(&[private.clone(), public])
            .diff(&w, &private, &want)
            .unwrap();
        assert_eq!(
            shown(&steps),
            vec![
                "route 0.0.0.0/0 → nat-new (was nat-old, a blackhole)",
                "move subnet-priv-a here from rtb-pub",
                "associate subnet-priv-b",
            ]
        );
        assert!(matches!(
            &steps[1],
            Step::Move(s, a, t) if s == "subnet-priv-a" && a == "rtbassoc-subnet-priv-a" && t == "rtb-pub"
        ));
    }

    /// AWS shows a route to a stopped or terminated NAT instance's interface
    /// as a blackhole: the route itself is right, and stays.
    #[test]
    fn a_blackhole_route_to_the_nat_instances_interface_is_left_alone() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let route = Route::builder()
            .destination_cidr_block(ANYWHERE)
            .network_interface_id("eni-1")
            .state(RouteState::Blackhole)
            .build();
        let private = table("rtb-priv", Some(route), &["subnet-priv-a"]);
        let want = |eni: &str| Wanted {
            role: "private".into(),
            target: Target::Interface(Some(eni.into())),
            subnets: vec![Some("subnet-priv-a".into())],
        };
        let k = kind(std::slice::from_ref(&private));
        assert!(k.diff(&w, &private, &want("eni-1")).unwrap().is_empty());
        assert_eq!(
            shown(&k.diff(&w, &private, &want("eni-2")).unwrap()),
            vec!["route 0.0.0.0/0 → eni-2 (was eni-1, a blackhole)"]
        );
    }

    #[test]
    fn a_private_table_without_nat_loses_its_default_route() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let private = table(
            "rtb-priv",
            Some(default_route(false, "nat-1", RouteState::Active)),
            &["subnet-priv-a"],
        );
        let want = Wanted {
            role: "private".into(),
            target: Target::Nothing,
            subnets: vec![Some("subnet-priv-a".into())],
        };
        let steps = kind(std::slice::from_ref(&private))
            .diff(&w, &private, &want)
            .unwrap();
        assert_eq!(shown(&steps), vec!["remove route 0.0.0.0/0 → nat-1"]);
    }
}
