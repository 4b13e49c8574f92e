//! EC2 instances and the Elastic IPs they take: an instance is `pending` for a
//! while after its launch or start, and `stopping` after a stop, when it cannot
//! be started (EC2 user guide, "Instance state changes"); an address is
//! associated with one resource at a time, and a NAT gateway's for a moment
//! after the gateway is deleted.

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
    if q.service == "ec2" && q.action() == "StartInstances" {
        return refuse_start(shared, q);
    }
    if q.service == "ec2" && q.action() == "RunInstances" {
        return refuse_launch(shared, q);
    }
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
        // A gateway `deleted` moments ago still holds its address.
        let settling = shared.realism.lock().ok().and_then(|r| {
            nats.iter()
                .filter(|n| n.4.iter().any(|a| a == allocation))
                .find(|n| r.nat_eip_settling(&n.0))
                .map(|n| n.0.clone())
        });
        if let Some(nat) = settling {
            return Some(ec2_error(
                "InvalidIPAddress.InUse",
                &format!("The address with allocation id [{allocation}] is in use by {nat} (deleted moments ago)."),
            ));
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

/// The types an account on AWS's Free plan may launch (DescribeInstanceTypes
/// with `free-tier-eligible=true`, as reported by users of such accounts in
/// 2025: RhinoSecurityLabs/cloudgoat#375, aws-samples/eks-workshop-v2#1644).
const FREE_PLAN_TYPES: &[&str] = &[
    "t3.micro",
    "t3.small",
    "t4g.micro",
    "t4g.small",
    "c7i-flex.large",
    "m7i-flex.large",
];

/// RunInstances of a type a Free-plan account may not launch →
/// `InvalidParameterCombination`, with AWS's text.
fn refuse_launch(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    let free_plan = shared.realism.lock().ok()?.free_plan;
    let t = q.get("InstanceType").unwrap_or("m1.small");
    (free_plan && !FREE_PLAN_TYPES.contains(&t)).then(|| {
        ec2_error(
            "InvalidParameterCombination",
            "The specified instance type is not eligible for Free Tier. For a list of Free Tier instance types, run 'describe-instance-types' with the filter 'free-tier-eligible=true'.",
        )
    })
}

/// StartInstances of an instance still `stopping` → `IncorrectInstanceState`.
fn refuse_start(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    let realism = shared.realism.lock().ok()?;
    let stopping = q
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("InstanceId."))
        .map(|(_, v)| v.as_str())
        .find(|id| realism.instance_state(id, "stopped") == "stopping")?;
    Some(ec2_error(
        "IncorrectInstanceState",
        &format!("The instance '{stopping}' is not in a state from which it can be started."),
    ))
}

/// What an instance call did, and the state AWS would show (`pending` after a
/// launch or a start, `stopping` after a stop).
pub(super) fn after(realism: &mut Realism, q: &Query, text: &str) -> Option<String> {
    match q.action() {
        "RunInstances" | "StartInstances" => {
            for id in xml::values(text, "instanceId") {
                realism.instance_stopped.remove(&id);
                realism.instance_started.insert(id, Instant::now());
            }
        }
        "StopInstances" => {
            for id in xml::values(text, "instanceId") {
                realism.instance_started.remove(&id);
                realism.instance_stopped.insert(id, Instant::now());
            }
            return Some(xml::rewrite_state(
                text,
                "instanceId",
                &["currentState", "name"],
                |_, moto| match moto {
                    "stopped" => "stopping".into(),
                    m => m.into(),
                },
            ));
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
        |id, moto| match moto {
            "16" if realism.instance_state(id, "running") == "pending" => "0".into(),
            "80" if realism.instance_state(id, "stopped") == "stopping" => "64".into(),
            _ => moto.into(),
        },
    ))
}
