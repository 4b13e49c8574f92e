//! Route tables: public (0.0.0.0/0 → IGW) for the public subnets; private
//! (0.0.0.0/0 → NAT) for the private subnets, one per AZ with `per-az` NATs, or
//! one with no default route when nat is `none`.

use aws_sdk_ec2::types::{ResourceType, RouteState, RouteTable};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::{aws_error, Action, TierError};

use crate::ctx::{filter, name_of, tag, Ctx};

pub(crate) const KIND: &str = "route-table";
const ANYWHERE: &str = "0.0.0.0/0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// No default route at all.
    Nothing,
    InternetGateway(Option<String>),
    NatGateway(Option<String>),
}

/// One route table the spec asks for.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub role: String,
    pub target: Target,
    /// Subnets to associate (None: planned, not created yet).
    pub subnets: Vec<Option<String>>,
}

/// Every route table in the VPC (ours and the main one), for tags and associations.
async fn list_in_vpc(ctx: &Ctx<'_>, vpc_id: &str) -> Result<Vec<RouteTable>, TierError> {
    let out = ctx
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", &[vpc_id]))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
    Ok(out.route_tables().to_vec())
}

async fn list_stack(ctx: &Ctx<'_>) -> Result<Vec<RouteTable>, TierError> {
    let out = ctx
        .ec2
        .describe_route_tables()
        .filters(ctx.stack_filter())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
    Ok(ctx.only_ours(out.route_tables(), |r| r.tags()))
}

fn default_route_target(rt: &RouteTable) -> Option<(String, bool)> {
    rt.routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(ANYWHERE))
        .map(|r| {
            let target = r
                .gateway_id()
                .or(r.nat_gateway_id())
                .unwrap_or("(other)")
                .to_string();
            (target, r.state() == Some(&RouteState::Blackhole))
        })
}

/// Converges every wanted table; deletes the stack's tables no longer wanted.
pub(crate) async fn ensure(
    ctx: &mut Ctx<'_>,
    vpc_id: Option<&str>,
    wanted: &[Wanted],
) -> Result<Vec<Option<String>>, TierError> {
    let tables = match vpc_id {
        Some(v) => list_in_vpc(ctx, v).await?,
        None => Vec::new(),
    };
    let mut ids = Vec::new();
    for w in wanted {
        ids.push(ensure_one(ctx, vpc_id, &tables, w).await?);
    }
    // Tables of the stack that the spec no longer asks for (nat mode changed).
    let keep: Vec<String> = wanted.iter().map(|w| ctx.name(&w.role)).collect();
    for rt in &tables {
        if !ctx.owns_any(rt.tags())
            || keep
                .iter()
                .any(|k| Some(k.as_str()) == tag(rt.tags(), NAME_TAG))
        {
            continue;
        }
        let id = rt.route_table_id().unwrap_or_default().to_string();
        if !ctx.dry_run {
            // Fresh: ensure_one may just have moved its subnets away.
            let out = ctx
                .ec2
                .describe_route_tables()
                .route_table_ids(&id)
                .send()
                .await
                .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
            if let Some(fresh) = out.route_tables().first() {
                delete_table(ctx, fresh).await?;
            }
        }
        ctx.record(
            KIND,
            id,
            Action::Delete,
            format!("{} is no longer in the spec", name_of(rt.tags())),
        );
    }
    Ok(ids)
}

async fn ensure_one(
    ctx: &mut Ctx<'_>,
    vpc_id: Option<&str>,
    tables: &[RouteTable],
    w: &Wanted,
) -> Result<Option<String>, TierError> {
    let name = ctx.name(&w.role);
    let found = tables
        .iter()
        .find(|rt| ctx.owns_any(rt.tags()) && tag(rt.tags(), NAME_TAG) == Some(name.as_str()));
    let mut steps = Vec::new();
    let (id, created) = match (found, vpc_id) {
        (Some(rt), _) => (rt.route_table_id().unwrap_or_default().to_string(), false),
        (None, Some(vpc)) if !ctx.dry_run => {
            let out = ctx
                .ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(ctx.tag_spec(ResourceType::RouteTable, &w.role))
                .send()
                .await
                .map_err(|e| aws_error("ec2:CreateRouteTable", e))?;
            let id = out
                .route_table()
                .and_then(|r| r.route_table_id())
                .ok_or_else(|| TierError::Terminal("ec2:CreateRouteTable returned no id".into()))?
                .to_string();
            (id, true)
        }
        (None, _) => {
            ctx.record(KIND, name, Action::Create, describe(w));
            return Ok(None);
        }
    };

    // The default route.
    let current = found.and_then(default_route_target);
    let want_target = match &w.target {
        Target::Nothing => None,
        Target::InternetGateway(t) | Target::NatGateway(t) => Some(t.clone()),
    };
    match (current, want_target) {
        (None, None) => {}
        (Some((cur, _)), None) => {
            if !ctx.dry_run {
                ctx.ec2
                    .delete_route()
                    .route_table_id(&id)
                    .destination_cidr_block(ANYWHERE)
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DeleteRoute", e))?;
            }
            steps.push(format!("remove route {ANYWHERE} → {cur}"));
        }
        (Some((cur, false)), Some(Some(want))) if cur == want => {}
        (cur, Some(want)) => {
            let shown = want.clone().unwrap_or_else(|| "the new gateway".into());
            if let (Some(target), false) = (want, ctx.dry_run) {
                let via_igw = matches!(w.target, Target::InternetGateway(_));
                set_default_route(ctx, &id, &target, via_igw, cur.is_some()).await?;
            }
            steps.push(match cur {
                Some((c, blackhole)) => format!(
                    "route {ANYWHERE} → {shown} (was {c}{})",
                    if blackhole { ", a blackhole" } else { "" }
                ),
                None => format!("route {ANYWHERE} → {shown}"),
            });
        }
    }

    // Subnet associations: a subnet may be associated with another of our
    // tables (nat mode changed) — move it.
    for subnet in &w.subnets {
        let Some(subnet) = subnet else {
            steps.push("associate a new subnet".into());
            continue;
        };
        let assoc = tables.iter().find_map(|rt| {
            rt.associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .map(|a| {
                    (
                        rt.route_table_id().unwrap_or_default(),
                        a.route_table_association_id().unwrap_or_default(),
                    )
                })
        });
        match assoc {
            Some((rt, _)) if rt == id => {}
            Some((other, assoc_id)) => {
                if !ctx.dry_run {
                    ctx.ec2
                        .replace_route_table_association()
                        .association_id(assoc_id)
                        .route_table_id(&id)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:ReplaceRouteTableAssociation", e))?;
                }
                steps.push(format!("move {subnet} here from {other}"));
            }
            None => {
                if !ctx.dry_run {
                    ctx.ec2
                        .associate_route_table()
                        .route_table_id(&id)
                        .subnet_id(subnet)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:AssociateRouteTable", e))?;
                }
                steps.push(format!("associate {subnet}"));
            }
        }
    }

    let action = match (created, steps.is_empty()) {
        (true, _) => Action::Create,
        (false, true) => Action::None,
        (false, false) => Action::Update,
    };
    let detail = if steps.is_empty() || created {
        describe(w)
    } else {
        steps.join("; ")
    };
    ctx.record(KIND, &id, action, detail);
    Ok(Some(id))
}

/// Points 0.0.0.0/0 of table `id` at `target` (replacing the current route).
async fn set_default_route(
    ctx: &Ctx<'_>,
    id: &str,
    target: &str,
    via_igw: bool,
    replace: bool,
) -> Result<(), TierError> {
    if replace {
        let call = ctx
            .ec2
            .replace_route()
            .route_table_id(id)
            .destination_cidr_block(ANYWHERE);
        let call = if via_igw {
            call.gateway_id(target)
        } else {
            call.nat_gateway_id(target)
        };
        call.send()
            .await
            .map_err(|e| aws_error("ec2:ReplaceRoute", e))?;
    } else {
        let call = ctx
            .ec2
            .create_route()
            .route_table_id(id)
            .destination_cidr_block(ANYWHERE);
        let call = if via_igw {
            call.gateway_id(target)
        } else {
            call.nat_gateway_id(target)
        };
        call.send()
            .await
            .map_err(|e| aws_error("ec2:CreateRoute", e))?;
    }
    Ok(())
}

fn describe(w: &Wanted) -> String {
    let route = match &w.target {
        Target::Nothing => "no default route".to_string(),
        Target::InternetGateway(_) => format!("{ANYWHERE} → internet gateway"),
        Target::NatGateway(_) => format!("{ANYWHERE} → NAT gateway"),
    };
    format!("{}, {} subnet(s)", route, w.subnets.len())
}

async fn delete_table(ctx: &Ctx<'_>, rt: &RouteTable) -> Result<(), TierError> {
    let id = rt.route_table_id().unwrap_or_default();
    for a in rt.associations().iter().filter(|a| a.main() != Some(true)) {
        if let Some(assoc) = a.route_table_association_id() {
            ctx.ec2
                .disassociate_route_table()
                .association_id(assoc)
                .send()
                .await
                .map_err(|e| aws_error("ec2:DisassociateRouteTable", e))?;
        }
    }
    ctx.ec2
        .delete_route_table()
        .route_table_id(id)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DeleteRouteTable", e))?;
    Ok(())
}

/// Destroy: the route tables destroy owns, with their associations.
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<(), TierError> {
    for rt in list_stack(ctx).await? {
        if !ctx.owns(rt.tags()) {
            continue;
        }
        delete_table(ctx, &rt).await?;
        ctx.record(
            KIND,
            rt.route_table_id().unwrap_or_default(),
            Action::Delete,
            name_of(rt.tags()).to_string(),
        );
    }
    Ok(())
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
