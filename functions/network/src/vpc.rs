//! The VPC: DNS support and hostnames on (RDS endpoints and ECS need them).

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Vpc, VpcAttributeName};
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError};

use crate::ctx::{name_of, Ctx};

pub(crate) const KIND: &str = "vpc";
const ROLE: &str = "vpc";

pub(crate) async fn find(ctx: &Ctx<'_>) -> Result<Option<Vpc>, TierError> {
    let out = ctx
        .ec2
        .describe_vpcs()
        .filters(ctx.stack_filter())
        .filters(ctx.name_filter(ROLE))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeVpcs", e))?;
    Ok(out.vpcs().iter().find(|v| ctx.owns_any(v.tags())).cloned())
}

/// Finds or creates the VPC; its id (None only when planning a create).
pub(crate) async fn ensure(ctx: &mut Ctx<'_>, cidr: &str) -> Result<Option<String>, TierError> {
    if let Some(vpc) = find(ctx).await? {
        let id = vpc.vpc_id().unwrap_or_default().to_string();
        if vpc.cidr_block() != Some(cidr) {
            return Err(TierError::Refused(format!(
                "VPC {id} has CIDR {} but the spec asks for {cidr}: a VPC's CIDR cannot change in place; \
                 set network.cidr back to {}, or destroy the stack and create it again",
                vpc.cidr_block().unwrap_or("?"),
                vpc.cidr_block().unwrap_or("?")
            )));
        }
        let mut fixed = Vec::new();
        for attr in [
            VpcAttributeName::EnableDnsSupport,
            VpcAttributeName::EnableDnsHostnames,
        ] {
            if !dns_attribute(ctx, &id, attr.clone()).await? {
                fixed.push(attr.as_str().to_string());
                if !ctx.dry_run {
                    set_dns_attribute(ctx, &id, attr).await?;
                }
            }
        }
        if fixed.is_empty() {
            ctx.record(KIND, &id, Action::None, cidr);
        } else {
            ctx.record(
                KIND,
                &id,
                Action::Update,
                format!("turn on {}", fixed.join(", ")),
            );
        }
        return Ok(Some(id));
    }
    if ctx.dry_run {
        ctx.record_named(KIND, ROLE, Action::Create, cidr);
        return Ok(None);
    }
    let out = ctx
        .ec2
        .create_vpc()
        .cidr_block(cidr)
        .tag_specifications(ctx.tag_spec(ResourceType::Vpc, ROLE))
        .send()
        .await
        .map_err(|e| aws_error("ec2:CreateVpc", e))?;
    let id = out
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| TierError::Terminal("ec2:CreateVpc returned no VPC id".into()))?
        .to_string();
    for attr in [
        VpcAttributeName::EnableDnsSupport,
        VpcAttributeName::EnableDnsHostnames,
    ] {
        set_dns_attribute(ctx, &id, attr).await?;
    }
    ctx.record(KIND, &id, Action::Create, cidr);
    Ok(Some(id))
}

async fn dns_attribute(ctx: &Ctx<'_>, id: &str, attr: VpcAttributeName) -> Result<bool, TierError> {
    let out = ctx
        .ec2
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(attr.clone())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeVpcAttribute", e))?;
    let value = match attr {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(value.and_then(|v| v.value()).unwrap_or(false))
}

async fn set_dns_attribute(
    ctx: &Ctx<'_>,
    id: &str,
    attr: VpcAttributeName,
) -> Result<(), TierError> {
    let on = AttributeBooleanValue::builder().value(true).build();
    let call = ctx.ec2.modify_vpc_attribute().vpc_id(id);
    let call = match attr {
        VpcAttributeName::EnableDnsHostnames => call.enable_dns_hostnames(on),
        _ => call.enable_dns_support(on),
    };
    call.send()
        .await
        .map_err(|e| aws_error("ec2:ModifyVpcAttribute", e))?;
    Ok(())
}

/// Deletes the VPC if destroy owns it (its contents must be gone first).
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<(), TierError> {
    let Some(vpc) = find(ctx).await? else {
        return Ok(());
    };
    if !ctx.owns(vpc.tags()) {
        return Ok(());
    }
    let id = vpc.vpc_id().unwrap_or_default().to_string();
    ctx.ec2
        .delete_vpc()
        .vpc_id(&id)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DeleteVpc", e))?;
    ctx.record(KIND, id, Action::Delete, name_of(vpc.tags()).to_string());
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"]),
    Permission::create_tagged("CreateTagged", &["ec2:CreateVpc"]),
    Permission::own_tagged("ChangeTagged", &["ec2:ModifyVpcAttribute", "ec2:DeleteVpc"]),
];
