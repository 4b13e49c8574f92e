//! EC2 instances and the Elastic IPs they take: an instance is `pending` for a
//! while after its launch or start (EC2 user guide, "Instance state changes");
//! an address is associated with one resource at a time.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::moto_query;
use crate::protocol::{ec2_error, Query};
use crate::state::realism::Realism;
use crate::state::Shared;
use crate::xml;

/// The refusal AWS would give to this call, if any:
/// - AssociateAddress of an address a NAT gateway maps (a NAT gateway's
///   address is never moved by AssociateAddress), or one associated with
///   another resource while AllowReassociation is false ("you can specify
///   false to ensure the operation fails if the Elastic IP address is already
///   associated with another resource": AssociateAddress);
/// - CreateNatGateway with an address associated with an interface or an
///   instance (a NAT gateway needs a free one).
pub(super) async fn refuse(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    if q.service != "ec2" || !matches!(q.action(), "AssociateAddress" | "CreateNatGateway") {
        return None;
    }
    let allocation = q.get("AllocationId")?;
    let already = |with: &str| {
        ec2_error(
            "Resource.AlreadyAssociated",
            &format!("Elastic IP address [{allocation}] is already associated with {with}."),
        )
    };
    if q.action() == "AssociateAddress" {
        let nats = super::nat::nat_gateways(shared).await;
        if let Some(n) = nats
            .iter()
            .find(|n| super::nat::live(&n.1) && n.4.iter().any(|a| a == allocation))
        {
            return Some(already(&format!("NAT gateway {} ({})", n.0, n.1)));
        }
        if q.get("AllowReassociation") != Some("false") {
            return None;
        }
    }
    let xml = moto_query(
        shared,
        "ec2",
        &format!("Action=DescribeAddresses&Version=2016-11-15&AllocationId.1={allocation}"),
    )
    .await
    .ok()?;
    let xml = String::from_utf8_lossy(&xml).to_string();
    let with = ["networkInterfaceId", "instanceId"]
        .iter()
        .find_map(|k| xml::first(&xml, k).filter(|v| !v.is_empty()))?;
    Some(already(&with))
}

/// What an instance call did, and the state AWS would show (`pending` after a
/// launch or a start).
pub(super) fn after(realism: &mut Realism, q: &Query, text: &str) -> Option<String> {
    match q.action() {
        "RunInstances" | "StartInstances" => {
            for id in xml::values(text, "instanceId") {
                realism.instance_started.insert(id, Instant::now());
            }
        }
        "DescribeInstances" => {}
        _ => return None,
    }
    let named = xml::rewrite_state(
        text,
        "instanceId",
        &["instanceState", "name"],
        |id, moto| realism.instance_state(id, moto),
    );
    Some(xml::rewrite_state(
        &named,
        "instanceId",
        &["instanceState", "code"],
        |id, moto| match realism.instance_state(id, "running").as_str() {
            "pending" if moto == "16" => "0".into(),
            _ => moto.into(),
        },
    ))
}
