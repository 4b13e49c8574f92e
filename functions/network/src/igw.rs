//! The internet gateway, attached to the VPC.

use aws_sdk_ec2::types::{InternetGateway, ResourceType};
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError};

use crate::ctx::{name_of, Ctx};

pub(crate) const KIND: &str = "internet-gateway";
const ROLE: &str = "igw";

pub(crate) async fn find(ctx: &Ctx<'_>) -> Result<Option<InternetGateway>, TierError> {
    let out = ctx
        .ec2
        .describe_internet_gateways()
        .filters(ctx.stack_filter())
        .filters(ctx.name_filter(ROLE))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeInternetGateways", e))?;
    Ok(out
        .internet_gateways()
        .iter()
        .find(|g| ctx.owns_any(g.tags()))
        .cloned())
}

fn attached_to(igw: &InternetGateway) -> Option<&str> {
    igw.attachments().iter().find_map(|a| a.vpc_id())
}

/// Finds or creates the gateway and attaches it to `vpc_id`.
pub(crate) async fn ensure(
    ctx: &mut Ctx<'_>,
    vpc_id: Option<&str>,
) -> Result<Option<String>, TierError> {
    let found = find(ctx).await?;
    let (id, created) = match found {
        Some(igw) => {
            let id = igw.internet_gateway_id().unwrap_or_default().to_string();
            match (attached_to(&igw), vpc_id) {
                (Some(v), Some(want)) if v == want => {
                    ctx.record(KIND, &id, Action::None, format!("attached to {want}"));
                    return Ok(Some(id));
                }
                (Some(v), _) => {
                    return Err(TierError::Terminal(format!(
                        "internet gateway {id} is attached to {v}, not to the stack's VPC: detach it by hand"
                    )))
                }
                (None, _) => (id, false),
            }
        }
        None if ctx.dry_run => {
            ctx.record_named(KIND, ROLE, Action::Create, "attached to the VPC");
            return Ok(None);
        }
        None => {
            let out = ctx
                .ec2
                .create_internet_gateway()
                .tag_specifications(ctx.tag_spec(ResourceType::InternetGateway, ROLE))
                .send()
                .await
                .map_err(|e| aws_error("ec2:CreateInternetGateway", e))?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .ok_or_else(|| {
                    TierError::Terminal("ec2:CreateInternetGateway returned no id".into())
                })?
                .to_string();
            (id, true)
        }
    };
    let action = if created {
        Action::Create
    } else {
        Action::Update
    };
    match vpc_id {
        Some(vpc) if !ctx.dry_run => {
            ctx.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| aws_error("ec2:AttachInternetGateway", e))?;
            ctx.record(KIND, &id, action, format!("attached to {vpc}"));
        }
        _ => ctx.record(KIND, &id, action, "attach to the VPC"),
    }
    Ok(Some(id))
}

/// Detaches and deletes the gateway. Fails with a retryable DependencyViolation
/// while a NAT gateway's public address is still mapped in the VPC.
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<(), TierError> {
    let Some(igw) = find(ctx).await? else {
        return Ok(());
    };
    if !ctx.owns(igw.tags()) {
        return Ok(());
    }
    let id = igw.internet_gateway_id().unwrap_or_default().to_string();
    for vpc in igw.attachments().iter().filter_map(|a| a.vpc_id()) {
        ctx.ec2
            .detach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DetachInternetGateway", e))?;
    }
    ctx.ec2
        .delete_internet_gateway()
        .internet_gateway_id(&id)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DeleteInternetGateway", e))?;
    ctx.record(KIND, id, Action::Delete, name_of(igw.tags()).to_string());
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeInternetGateways"]),
    Permission::create_tagged("CreateTagged", &["ec2:CreateInternetGateway"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:AttachInternetGateway",
            "ec2:DetachInternetGateway",
            "ec2:DeleteInternetGateway",
        ],
    ),
];
