//! Elastic IPs and NAT gateways: one (single), one per AZ (per-az) or none.
//!
//! Real AWS: a NAT takes 1.5–2 min to become `available`; its delete is
//! asynchronous (~1 min), and its EIP can be released (and the IGW detached) only
//! once it is `deleted`.

use mbstack_core::iam::Permission;
use std::hash::{Hash, Hasher};

use aws_sdk_ec2::types::{Address, DomainType, NatGateway, NatGatewayState, ResourceType};
use mbstack_core::naming::NAME_TAG;
use mbstack_core::{aws_error, error_code, Action, Readiness, TierError};

use crate::ctx::{name_of, tag, Ctx};

pub(crate) const KIND: &str = "nat-gateway";
pub(crate) const EIP_KIND: &str = "elastic-ip";

pub(crate) fn role(az: &str) -> String {
    format!("nat-{az}")
}

fn eip_role(az: &str) -> String {
    format!("nat-eip-{az}")
}

/// A NAT gateway the spec asks for: its AZ and the public subnet it sits in.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub az: String,
    pub subnet_id: Option<String>,
}

/// The stack's NAT gateways in the given states.
/// The stack's NAT gateways in one of `states`. The states are checked here, not
/// by a server-side filter: found by the benchmark's slower emulator timings, a
/// gateway the emulator shows `deleting` was dropped by its `state` filter, and
/// the EIP release that followed was refused as in use.
async fn list(ctx: &Ctx<'_>, states: &[&str]) -> Result<Vec<NatGateway>, TierError> {
    let out = ctx
        .ec2
        .describe_nat_gateways()
        .filter(ctx.stack_filter())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeNatGateways", e))?;
    let mut ours = ctx.only_ours(out.nat_gateways(), |n| n.tags());
    ours.retain(|n| n.state().is_some_and(|s| states.contains(&s.as_str())));
    Ok(ours)
}

async fn list_addresses(ctx: &Ctx<'_>) -> Result<Vec<Address>, TierError> {
    let out = ctx
        .ec2
        .describe_addresses()
        .filters(ctx.stack_filter())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeAddresses", e))?;
    Ok(ctx.only_ours(out.addresses(), |a| a.tags()))
}

fn live(n: &NatGateway) -> bool {
    matches!(
        n.state(),
        Some(NatGatewayState::Pending) | Some(NatGatewayState::Available)
    )
}

/// Finds or creates each wanted NAT gateway (and its EIP); returns their ids in
/// the order of `wanted` (None when planning a create).
pub(crate) async fn ensure(
    ctx: &mut Ctx<'_>,
    wanted: &[Wanted],
) -> Result<Vec<Option<String>>, TierError> {
    let nats = list(ctx, &["pending", "available"]).await?;
    let deleting = list(ctx, &["deleting"]).await?;
    let addresses = list_addresses(ctx).await?;
    let mut ids = Vec::new();
    for w in wanted {
        let name = ctx.name(&role(&w.az));
        if let Some(n) = nats
            .iter()
            .find(|n| tag(n.tags(), NAME_TAG) == Some(name.as_str()))
        {
            let id = n.nat_gateway_id().unwrap_or_default().to_string();
            for address in n.nat_gateway_addresses() {
                if let Some(allocation) = address.allocation_id() {
                    let ip = address.public_ip().unwrap_or("").to_string();
                    ctx.record(EIP_KIND, allocation, Action::None, ip);
                }
            }
            let detail = format!("in {}", n.subnet_id().unwrap_or("?"));
            ctx.record(KIND, &id, Action::None, detail);
            ids.push(Some(id));
            continue;
        }
        let eip_name = ctx.name(&eip_role(&w.az));
        // Free: no live NAT gateway maps it (a deleted NAT's EIP is reused). One
        // still `deleting` holds it (CreateNatGateway would answer
        // Resource.AlreadyAssociated): wait for it rather than allocate another.
        let named: Vec<&Address> = addresses
            .iter()
            .filter(|a| tag(a.tags(), NAME_TAG) == Some(eip_name.as_str()))
            .collect();
        let eip = named
            .iter()
            .copied()
            .find(|a| mapped_by(a, &nats).is_none() && mapped_by(a, &deleting).is_none());
        if let (None, Some(held)) = (eip, named.iter().find_map(|a| mapped_by(a, &deleting))) {
            if ctx.dry_run {
                ctx.record(
                    KIND,
                    name,
                    Action::Create,
                    format!(
                        "in the public subnet of {}, once {held} (deleting) frees its Elastic IP",
                        w.az
                    ),
                );
                ids.push(None);
                continue;
            }
            return Err(TierError::Retryable(format!(
                "the Elastic IP {eip_name} is still held by NAT gateway {held}, which is deleting: the new NAT gateway in {} takes it once AWS frees it",
                w.az
            )));
        }
        let allocation = match eip {
            Some(a) => {
                let id = a.allocation_id().unwrap_or_default().to_string();
                ctx.record(
                    EIP_KIND,
                    &id,
                    Action::None,
                    a.public_ip().unwrap_or("").to_string(),
                );
                Some(id)
            }
            None if ctx.dry_run => {
                ctx.record(
                    EIP_KIND,
                    eip_name,
                    Action::Create,
                    format!("for the NAT gateway in {}", w.az),
                );
                None
            }
            None => {
                let out = ctx
                    .ec2
                    .allocate_address()
                    .domain(DomainType::Vpc)
                    .tag_specifications(ctx.tag_spec(ResourceType::ElasticIp, &eip_role(&w.az)))
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:AllocateAddress", e))?;
                let id = out
                    .allocation_id()
                    .ok_or_else(|| {
                        TierError::Terminal("ec2:AllocateAddress returned no allocation id".into())
                    })?
                    .to_string();
                ctx.record(
                    EIP_KIND,
                    &id,
                    Action::Create,
                    out.public_ip().unwrap_or("").to_string(),
                );
                Some(id)
            }
        };
        let (Some(subnet), Some(allocation), false) =
            (w.subnet_id.as_deref(), allocation, ctx.dry_run)
        else {
            ctx.record(
                KIND,
                name,
                Action::Create,
                format!("in the public subnet of {}", w.az),
            );
            ids.push(None);
            continue;
        };
        let out = ctx
            .ec2
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(&allocation)
            .client_token(client_token(&ctx.spec.stack, &ctx.run.id, &w.az))
            .tag_specifications(ctx.tag_spec(ResourceType::Natgateway, &role(&w.az)))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateNatGateway", e))?;
        let id = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .ok_or_else(|| TierError::Terminal("ec2:CreateNatGateway returned no id".into()))?
            .to_string();
        ctx.record(
            KIND,
            &id,
            Action::Create,
            format!("in {subnet} with {allocation}"),
        );
        ids.push(Some(id));
    }
    Ok(ids)
}

/// Refuses, before anything is created, a spec whose NAT gateways need more new
/// Elastic IPs than the region's quota leaves (5 by default: `per-az` on 6 AZs
/// cannot be created). `azs`: the AZs that get a NAT gateway.
pub(crate) async fn check_address_quota(ctx: &Ctx<'_>, azs: &[&String]) -> Result<(), TierError> {
    if azs.is_empty() {
        return Ok(());
    }
    let all = ctx
        .ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeAddresses", e))?;
    let names: Vec<String> = azs.iter().map(|az| ctx.name(&eip_role(az))).collect();
    let have = all
        .addresses()
        .iter()
        .filter(|a| tag(a.tags(), NAME_TAG).is_some_and(|n| names.iter().any(|w| w == n)))
        .count();
    let new = names.len().saturating_sub(have);
    if new == 0 {
        return Ok(());
    }
    let attrs = ctx
        .ec2
        .describe_account_attributes()
        .attribute_names(aws_sdk_ec2::types::AccountAttributeName::from(
            "vpc-max-elastic-ips",
        ))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeAccountAttributes", e))?;
    let quota = attrs
        .account_attributes()
        .iter()
        .find(|a| a.attribute_name() == Some("vpc-max-elastic-ips"))
        .and_then(|a| a.attribute_values().first())
        .and_then(|v| v.attribute_value())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(quota) = quota else {
        return Ok(());
    };
    let in_use = all.addresses().len();
    if in_use + new > quota {
        return Err(TierError::Refused(format!(
            "network.nat: {} NAT gateway(s) need {new} new Elastic IP(s), but this region allows {quota} and {in_use} are allocated: use network.nat \"single\" (one address), release addresses you no longer use, or ask AWS for more (Service Quotas: \"EC2-VPC Elastic IPs\", L-0263D0A3)",
            names.len()
        )));
    }
    Ok(())
}

/// Idempotency token of a create: the same run retrying the same NAT gets the same
/// gateway back instead of a second one (at most 64 ASCII characters).
fn client_token(stack: &str, run: &str, az: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (stack, run, az).hash(&mut h);
    format!("mbstack-{stack:.20}-{:016x}", h.finish())
}

/// Deletes NAT gateways and releases EIPs the spec no longer asks for (nat mode
/// or AZ count changed). An EIP still mapped to a deleting NAT is released by a
/// later apply or destroy.
pub(crate) async fn prune(ctx: &mut Ctx<'_>, wanted: &[Wanted]) -> Result<(), TierError> {
    let keep: Vec<String> = wanted.iter().map(|w| ctx.name(&role(&w.az))).collect();
    let keep_eips: Vec<String> = wanted.iter().map(|w| ctx.name(&eip_role(&w.az))).collect();
    for n in list(ctx, &["pending", "available", "failed"]).await? {
        if keep
            .iter()
            .any(|k| Some(k.as_str()) == tag(n.tags(), NAME_TAG))
            && live(&n)
        {
            continue;
        }
        let id = n.nat_gateway_id().unwrap_or_default().to_string();
        if !ctx.dry_run {
            delete_nat(ctx, &id).await?;
        }
        ctx.record(
            KIND,
            id,
            Action::Delete,
            format!("{} is no longer in the spec", name_of(n.tags())),
        );
    }
    let live = list(ctx, &["pending", "available", "deleting"]).await?;
    for a in list_addresses(ctx).await? {
        if keep_eips
            .iter()
            .any(|k| Some(k.as_str()) == tag(a.tags(), NAME_TAG))
        {
            continue;
        }
        let id = a.allocation_id().unwrap_or_default().to_string();
        if mapped_by(&a, &live).is_some() {
            ctx.record(
                EIP_KIND,
                id,
                Action::Delete,
                "released once its NAT gateway is deleted (next apply or destroy)",
            );
            continue;
        }
        if !ctx.dry_run {
            release(ctx, &id).await?;
        }
        ctx.record(
            EIP_KIND,
            id,
            Action::Delete,
            "no longer used by a NAT gateway",
        );
    }
    Ok(())
}

/// Whether every wanted NAT gateway is available.
pub(crate) async fn readiness(ctx: &Ctx<'_>, wanted: &[Wanted]) -> Result<Readiness, TierError> {
    if wanted.is_empty() {
        return Ok(Readiness::Ready);
    }
    let nats = list(ctx, &["pending", "available", "failed"]).await?;
    let mut waiting = Vec::new();
    for w in wanted {
        let name = ctx.name(&role(&w.az));
        let mine: Vec<&NatGateway> = nats
            .iter()
            .filter(|n| tag(n.tags(), NAME_TAG) == Some(name.as_str()))
            .collect();
        match mine.iter().find(|n| live(n)) {
            Some(n) if n.state() == Some(&NatGatewayState::Available) => {}
            Some(n) => waiting.push(format!(
                "NAT gateway {} in {}: {}",
                n.nat_gateway_id().unwrap_or("?"),
                w.az,
                n.state().map(|s| s.as_str()).unwrap_or("?")
            )),
            None => match mine.first() {
                Some(failed) => {
                    return Ok(Readiness::Failed(format!(
                        "NAT gateway {} in {} failed: {} ({})",
                        failed.nat_gateway_id().unwrap_or("?"),
                        w.az,
                        failed.failure_message().unwrap_or("no reason given"),
                        failed.failure_code().unwrap_or("")
                    )))
                }
                None => waiting.push(format!("NAT gateway {name}: not created yet")),
            },
        }
    }
    Ok(if waiting.is_empty() {
        Readiness::Ready
    } else {
        Readiness::Pending(format!("waiting for {}", waiting.join(", ")))
    })
}

/// The NAT gateway (not yet `deleted`) that still maps this address. An address
/// whose NAT is gone is free to release, whatever its association field says.
fn mapped_by<'n>(address: &Address, live: &'n [NatGateway]) -> Option<&'n str> {
    let allocation = address.allocation_id()?;
    live.iter()
        .find(|n| {
            n.nat_gateway_addresses()
                .iter()
                .any(|a| a.allocation_id() == Some(allocation))
        })
        .and_then(|n| n.nat_gateway_id())
}

async fn delete_nat(ctx: &Ctx<'_>, id: &str) -> Result<(), TierError> {
    ctx.ec2
        .delete_nat_gateway()
        .nat_gateway_id(id)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DeleteNatGateway", e))?;
    Ok(())
}

async fn release(ctx: &Ctx<'_>, allocation_id: &str) -> Result<(), TierError> {
    match ctx
        .ec2
        .release_address()
        .allocation_id(allocation_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Its NAT gateway is `deleted`, but AWS frees the address moments later
        // (until then: InvalidIPAddress.InUse, or AuthFailure): not yet.
        Err(e) if matches!(error_code(&e), Some("InvalidIPAddress.InUse" | "AuthFailure")) => {
            Err(TierError::Retryable(format!(
                "Elastic IP {allocation_id}: AWS has not freed it from its deleted NAT gateway yet ({})",
                error_code(&e).unwrap_or("")
            )))
        }
        Err(e) => Err(aws_error("ec2:ReleaseAddress", e)),
    }
}

/// Destroy, step 1: delete the NAT gateways destroy owns. Returns what is still
/// being deleted (destroy reports `pending` until that is empty).
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<Vec<String>, TierError> {
    let mut waiting = Vec::new();
    for n in list(ctx, &["pending", "available", "failed", "deleting"]).await? {
        if !ctx.owns(n.tags()) {
            continue;
        }
        let id = n.nat_gateway_id().unwrap_or_default().to_string();
        if n.state() != Some(&NatGatewayState::Deleting) {
            delete_nat(ctx, &id).await?;
            ctx.record(KIND, &id, Action::Delete, name_of(n.tags()).to_string());
        }
        waiting.push(format!("NAT gateway {id} to be deleted"));
    }
    Ok(waiting)
}

/// Destroy, step 2 (after every NAT is `deleted`): release the EIPs destroy owns.
pub(crate) async fn release_all(ctx: &mut Ctx<'_>) -> Result<Vec<String>, TierError> {
    let mut waiting = Vec::new();
    let live = list(ctx, &["pending", "available", "deleting"]).await?;
    for a in list_addresses(ctx).await? {
        if !ctx.owns(a.tags()) {
            continue;
        }
        let id = a.allocation_id().unwrap_or_default().to_string();
        if let Some(nat) = mapped_by(&a, &live) {
            waiting.push(format!("Elastic IP {id} to be unmapped from {nat}"));
            continue;
        }
        match release(ctx, &id).await {
            Ok(()) => ctx.record(EIP_KIND, id, Action::Delete, name_of(a.tags()).to_string()),
            // Not freed yet: destroy reports pending and tries again.
            Err(TierError::Retryable(why)) => waiting.push(why),
            Err(e) => return Err(e),
        }
    }
    Ok(waiting)
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &[
            "ec2:DescribeNatGateways",
            "ec2:DescribeAddresses",
            "ec2:DescribeAccountAttributes",
        ],
    ),
    Permission::create_tagged(
        "CreateTagged",
        &["ec2:AllocateAddress", "ec2:CreateNatGateway"],
    ),
    // CreateNatGateway is also authorized on its subnet and Elastic IP (ours).
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:CreateNatGateway",
            "ec2:DeleteNatGateway",
            "ec2:ReleaseAddress",
        ],
    ),
];
