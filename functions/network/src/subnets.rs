//! One public and one private subnet per AZ, at fixed places in the VPC's CIDR
//! (see `mbstack_core::cidr`), so adding an AZ never renumbers a subnet. No subnet
//! maps public IPs on launch: the ALB and NAT gateways get theirs explicitly.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};
use mbstack_core::cidr::{self, Cidr};
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError};

use crate::ctx::{name_of, tag, Ctx};
use mbstack_core::naming::NAME_TAG;

pub(crate) const KIND: &str = "subnet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Public,
    Private,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Public => "public",
            Side::Private => "private",
        }
    }
}

/// `public-us-east-1a`.
pub(crate) fn role(side: Side, az: &str) -> String {
    format!("{}-{az}", side.as_str())
}

/// A subnet of the stack, existing or planned.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub az: String,
    pub side: Side,
    /// None when planning its creation.
    pub id: Option<String>,
}

pub(crate) async fn list(ctx: &Ctx<'_>) -> Result<Vec<Subnet>, TierError> {
    let out = ctx
        .ec2
        .describe_subnets()
        .filters(ctx.stack_filter())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSubnets", e))?;
    Ok(ctx.only_ours(out.subnets(), |s| s.tags()))
}

/// Finds or creates every subnet the spec asks for, in AZ order (public, private).
pub(crate) async fn ensure(
    ctx: &mut Ctx<'_>,
    vpc_id: Option<&str>,
    vpc_cidr: &Cidr,
    azs: &[String],
) -> Result<Vec<Placed>, TierError> {
    let existing = match vpc_id {
        Some(_) => list(ctx).await?,
        None => Vec::new(),
    };
    let mut placed = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        for side in [Side::Public, Side::Private] {
            let cidr = match side {
                Side::Public => cidr::public_subnet(vpc_cidr, i),
                Side::Private => cidr::private_subnet(vpc_cidr, i),
            }
            .ok_or_else(|| TierError::Terminal(format!("no room for subnet {i} in {vpc_cidr}")))?;
            let role = role(side, az);
            let name = ctx.name(&role);
            let found = existing
                .iter()
                .find(|s| tag(s.tags(), NAME_TAG) == Some(name.as_str()));
            let id = match found {
                Some(s) => Some(converge(ctx, s, &cidr, az).await?),
                None => create(ctx, vpc_id, &role, &cidr, az).await?,
            };
            placed.push(Placed {
                az: az.clone(),
                side,
                id,
            });
        }
    }
    Ok(placed)
}

async fn converge(
    ctx: &mut Ctx<'_>,
    s: &Subnet,
    cidr: &Cidr,
    az: &str,
) -> Result<String, TierError> {
    let id = s.subnet_id().unwrap_or_default().to_string();
    let want = cidr.to_string();
    if s.cidr_block() != Some(want.as_str()) || s.availability_zone() != Some(az) {
        return Err(TierError::Terminal(format!(
            "subnet {id} ({}) is {} in {} but the layout puts it at {want} in {az}: \
             it was changed outside mbstack; delete it and apply again",
            name_of(s.tags()),
            s.cidr_block().unwrap_or("?"),
            s.availability_zone().unwrap_or("?")
        )));
    }
    if s.map_public_ip_on_launch() == Some(true) {
        if !ctx.dry_run {
            ctx.ec2
                .modify_subnet_attribute()
                .subnet_id(&id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(false).build())
                .send()
                .await
                .map_err(|e| aws_error("ec2:ModifySubnetAttribute", e))?;
        }
        ctx.record(
            KIND,
            &id,
            Action::Update,
            "stop mapping public IPs on launch",
        );
    } else {
        ctx.record(KIND, &id, Action::None, format!("{want} in {az}"));
    }
    Ok(id)
}

async fn create(
    ctx: &mut Ctx<'_>,
    vpc_id: Option<&str>,
    role: &str,
    cidr: &Cidr,
    az: &str,
) -> Result<Option<String>, TierError> {
    let detail = format!("{cidr} in {az}");
    let Some(vpc_id) = vpc_id.filter(|_| !ctx.dry_run) else {
        ctx.record_named(KIND, role, Action::Create, detail);
        return Ok(None);
    };
    let out = ctx
        .ec2
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block(cidr.to_string())
        .availability_zone(az)
        .tag_specifications(ctx.tag_spec(ResourceType::Subnet, role))
        .send()
        .await
        .map_err(|e| aws_error("ec2:CreateSubnet", e))?;
    let id = out
        .subnet()
        .and_then(|s| s.subnet_id())
        .ok_or_else(|| TierError::Terminal("ec2:CreateSubnet returned no id".into()))?
        .to_string();
    ctx.record(KIND, &id, Action::Create, detail);
    Ok(Some(id))
}

/// Deletes the stack's subnets that the spec no longer asks for (fewer AZs).
pub(crate) async fn prune(ctx: &mut Ctx<'_>, keep: &[Placed]) -> Result<(), TierError> {
    let keep_ids: Vec<&str> = keep.iter().filter_map(|p| p.id.as_deref()).collect();
    for s in list(ctx).await? {
        let id = s.subnet_id().unwrap_or_default();
        if keep_ids.contains(&id) {
            continue;
        }
        if !ctx.dry_run {
            delete_one(ctx, id).await?;
        }
        ctx.record(
            KIND,
            id,
            Action::Delete,
            format!("{} is no longer in the spec", name_of(s.tags())),
        );
    }
    Ok(())
}

async fn delete_one(ctx: &Ctx<'_>, id: &str) -> Result<(), TierError> {
    ctx.ec2
        .delete_subnet()
        .subnet_id(id)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DeleteSubnet", e))?;
    Ok(())
}

/// Deletes the subnets destroy owns. Lingering ENIs (ALB, Fargate) make AWS answer
/// DependencyViolation: retryable, the next destroy call tries again.
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<(), TierError> {
    for s in list(ctx).await? {
        if !ctx.owns(s.tags()) {
            continue;
        }
        let id = s.subnet_id().unwrap_or_default();
        delete_one(ctx, id).await?;
        ctx.record(KIND, id, Action::Delete, name_of(s.tags()).to_string());
    }
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeSubnets"]),
    Permission::create_tagged("CreateTagged", &["ec2:CreateSubnet"]),
    // CreateSubnet is also authorized on the VPC it goes into (ours).
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:CreateSubnet",
            "ec2:ModifySubnetAttribute",
            "ec2:DeleteSubnet",
        ],
    ),
];
