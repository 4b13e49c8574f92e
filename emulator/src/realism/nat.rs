//! NAT gateways and their Elastic IPs: ≈2 min to become available, ≈1 min to
//! go, an address still in use moments after its gateway is `deleted`; the
//! Elastic IP quota; an address one gateway holds refused to another; an
//! internet gateway that public addresses still need.

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::moto_query;
use crate::protocol::{ec2_error, Query};
use crate::state::realism::{Realism, EIP_QUOTA};
use crate::state::Shared;
use crate::xml;

/// NAT gateways as (id, effective state, subnet, vpc, allocation ids).
pub(super) async fn nat_gateways(
    shared: &Arc<Shared>,
) -> Vec<(String, String, String, String, Vec<String>)> {
    let Ok(xml) = moto_query(
        shared,
        "ec2",
        "Action=DescribeNatGateways&Version=2016-11-15",
    )
    .await
    else {
        return Vec::new();
    };
    let xml = String::from_utf8_lossy(&xml).to_string();
    let Ok(realism) = shared.realism.lock() else {
        return Vec::new();
    };
    // Each NAT is the element around its id: its own state, subnet and VPC
    // are children of it, its addresses inside it.
    xml::each(&xml, "natGatewayId", |id| {
        let nat = id.parent()?;
        let id = id.text();
        let state = nat.child("state").unwrap_or_default();
        let subnet = nat.child("subnetId").unwrap_or_default();
        let vpc = nat.child("vpcId").unwrap_or_default();
        let effective = realism.nat_state(&id, &state);
        Some((id, effective, subnet, vpc, nat.all("allocationId")))
    })
}

pub(super) fn live(state: &str) -> bool {
    matches!(state, "pending" | "available" | "deleting")
}

/// The refusal AWS would give to this call, if any.
pub(super) async fn refuse(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    match (q.service.as_str(), q.action()) {
        ("ec2", "ReleaseAddress") => {
            let allocation = q.get("AllocationId")?;
            let nats = nat_gateways(shared).await;
            let user = nats
                .iter()
                .find(|n| live(&n.1) && n.4.iter().any(|a| a == allocation))?;
            Some(ec2_error(
                "InvalidIPAddress.InUse",
                &format!(
                    "The address with allocation id [{allocation}] is in use by {} ({}).",
                    user.0, user.1
                ),
            ))
        }
        // "VPCs per Region" (5, the default VPC included) and "Internet
        // gateways per Region" (5): AWS refuses the next create.
        ("ec2", "CreateVpc" | "CreateInternetGateway") => {
            let (list, id, code, what) = match q.action() {
                "CreateVpc" => ("DescribeVpcs", "vpcId", "VpcLimitExceeded", "VPCs"),
                _ => (
                    "DescribeInternetGateways",
                    "internetGatewayId",
                    "InternetGatewayLimitExceeded",
                    "internet gateways",
                ),
            };
            let xml = moto_query(shared, "ec2", &format!("Action={list}&Version=2016-11-15"))
                .await
                .ok()?;
            let mut ids = xml::values(&String::from_utf8_lossy(&xml), id);
            ids.sort();
            ids.dedup();
            let quota = shared
                .realism
                .lock()
                .map_or(crate::state::realism::VPC_QUOTA, |r| r.vpc_quota);
            (ids.len() >= quota).then(|| {
                ec2_error(
                    code,
                    &format!("The maximum number of {what} has been reached."),
                )
            })
        }
        ("ec2", "AllocateAddress") => {
            let xml = moto_query(shared, "ec2", "Action=DescribeAddresses&Version=2016-11-15")
                .await
                .ok()?;
            let in_use = xml::values(&String::from_utf8_lossy(&xml), "allocationId").len();
            let quota = shared.realism.lock().map_or(EIP_QUOTA, |r| r.eip_quota);
            (in_use >= quota).then(|| {
                ec2_error(
                    "AddressLimitExceeded",
                    "The maximum number of addresses has been reached.",
                )
            })
        }
        ("ec2", "CreateNatGateway") => {
            let allocation = q.get("AllocationId")?;
            let nats = nat_gateways(shared).await;
            let holder = nats
                .iter()
                .find(|n| live(&n.1) && n.4.iter().any(|a| a == allocation))?;
            // The same ClientToken again is a retry: AWS answers with that gateway.
            let retry = q.get("ClientToken").is_some_and(|t| {
                shared
                    .realism
                    .lock()
                    .is_ok_and(|r| r.nat_tokens.get(t) == Some(&holder.0))
            });
            if retry {
                return None;
            }
            Some(ec2_error(
                "Resource.AlreadyAssociated",
                &format!(
                    "Elastic IP address [{allocation}] is already associated (with {}, {}).",
                    holder.0, holder.1
                ),
            ))
        }
        ("ec2", "DetachInternetGateway") => {
            let vpc = q.get("VpcId")?;
            let nats = nat_gateways(shared).await;
            nats.iter().find(|n| live(&n.1) && n.3 == vpc).map(|_| {
                ec2_error(
                    "DependencyViolation",
                    &format!("Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."),
                )
            })
        }
        _ => None,
    }
}

/// "Not yet": the Elastic IP of a NAT gateway `deleted` moments ago is still in
/// use (InvalidIPAddress.InUse; AuthFailure for some), which mbstack waits out.
pub(super) async fn not_yet(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    let allocation = (q.service == "ec2" && q.action() == "ReleaseAddress")
        .then(|| q.get("AllocationId"))
        .flatten()?;
    let nats = nat_gateways(shared).await;
    let nat = shared.realism.lock().ok().and_then(|r| {
        nats.iter()
            .filter(|n| n.4.iter().any(|a| a == allocation))
            .find(|n| r.nat_eip_settling(&n.0))
            .map(|n| n.0.clone())
    })?;
    Some(ec2_error(
        "InvalidIPAddress.InUse",
        &format!("The address with allocation id [{allocation}] is in use by {nat} (deleted moments ago)."),
    ))
}

/// What a NAT gateway call did, and the state AWS would show (`pending` after
/// its creation, `deleting` after its deletion; a create answers with it too).
pub(super) fn after(realism: &mut Realism, q: &Query, text: &str) -> Option<String> {
    match q.action() {
        "CreateNatGateway" => {
            for id in xml::values(text, "natGatewayId") {
                if let Some(token) = q.get("ClientToken") {
                    realism.nat_tokens.insert(token.to_string(), id.clone());
                }
                realism.nat_created.entry(id).or_insert_with(Instant::now);
            }
        }
        "DeleteNatGateway" => {
            if let Some(id) = q.get("NatGatewayId") {
                realism
                    .nat_deleted
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
        }
        _ => {}
    }
    if q.action() == "DescribeAccountAttributes" && realism.eip_quota != EIP_QUOTA {
        return Some(with_eip_quota(text, realism.eip_quota));
    }
    matches!(q.action(), "CreateNatGateway" | "DescribeNatGateways").then(|| {
        xml::rewrite_state(text, "natGatewayId", &["state"], |id, moto| {
            realism.nat_state(id, moto)
        })
    })
}

/// DescribeAccountAttributes' answer with `vpc-max-elastic-ips` set to `quota`.
fn with_eip_quota(text: &str, quota: usize) -> String {
    let name = "<attributeName>vpc-max-elastic-ips</attributeName>";
    let Some(at) = text.find(name) else {
        return text.to_string();
    };
    let (open, close) = ("<attributeValue>", "</attributeValue>");
    let rest = &text[at..];
    match (rest.find(open), rest.find(close)) {
        (Some(o), Some(c)) if o < c => {
            format!("{}{open}{quota}{}", &text[..at + o], &text[at + c..])
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::with_eip_quota;

    #[test]
    fn a_raised_quota_is_what_describe_account_attributes_reports() {
        let moto = "<accountAttributeSet><item><attributeName>vpc-max-security-groups-per-interface</attributeName><attributeValueSet><item><attributeValue>5</attributeValue></item></attributeValueSet></item><item><attributeName>vpc-max-elastic-ips</attributeName><attributeValueSet><item><attributeValue>5</attributeValue></item></attributeValueSet></item></accountAttributeSet>";
        let shown = with_eip_quota(moto, 12);
        assert!(shown.contains("<attributeName>vpc-max-elastic-ips</attributeName><attributeValueSet><item><attributeValue>12</attributeValue>"), "{shown}");
        // Another attribute keeps its value.
        assert!(shown.contains("per-interface</attributeName><attributeValueSet><item><attributeValue>5</attributeValue>"), "{shown}");
        assert_eq!(
            with_eip_quota("<accountAttributeSet/>", 12),
            "<accountAttributeSet/>"
        );
    }
}
