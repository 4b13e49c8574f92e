//! EC2 where moto stops short of AWS: deleting a NAT gateway in AWS releases its
//! Elastic IP's association; moto keeps the association, so the address could
//! never be mapped to a new NAT gateway (`Resource.AlreadyAssociated`). The front
//! door drops the association after moto deletes the gateway.

use std::sync::Arc;

use bytes::Bytes;

use crate::moto::moto_query;
use crate::protocol::form_value;
use crate::state::Shared;
use crate::xml;

/// Called with the request body of a successful EC2 call.
pub(crate) async fn after(shared: &Arc<Shared>, request: &Bytes) {
    if form_value(request, "Action").as_deref() != Some("DeleteNatGateway") {
        return;
    }
    let Some(nat) = form_value(request, "NatGatewayId") else {
        return;
    };
    let Ok(described) = moto_query(
        shared,
        "ec2",
        &format!("Action=DescribeNatGateways&Version=2016-11-15&NatGatewayId.1={nat}"),
    )
    .await
    else {
        return;
    };
    for allocation in xml::values(&String::from_utf8_lossy(&described), "allocationId") {
        let Ok(addresses) = moto_query(
            shared,
            "ec2",
            &format!("Action=DescribeAddresses&Version=2016-11-15&AllocationId.1={allocation}"),
        )
        .await
        else {
            continue;
        };
        for association in xml::values(&String::from_utf8_lossy(&addresses), "associationId") {
            let form = format!(
                "Action=DisassociateAddress&Version=2016-11-15&AssociationId={association}"
            );
            if let Err(e) = moto_query(shared, "ec2", &form).await {
                tracing::warn!(%nat, %allocation, error = %e, "the emulator could not drop a deleted NAT gateway's address association");
            }
        }
    }
}

/// EC2's answers moto leaves out (see the module's doc).
pub(crate) struct Ec2;

impl crate::rules::Rule for Ec2 {
    fn after<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        Box::pin(async move {
            if status.is_success() && c.target.is_empty() {
                after(s, &c.body).await;
            }
            body
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forms_and_xml() {
        let body = b"Action=DeleteNatGateway&NatGatewayId=nat-0ab&Version=2016-11-15";
        assert_eq!(form_value(body, "NatGatewayId").as_deref(), Some("nat-0ab"));
        assert_eq!(form_value(body, "Nope"), None);
        let xml = "<a><allocationId>eipalloc-1</allocationId><x/><allocationId> eipalloc-2 </allocationId></a>";
        assert_eq!(
            xml::values(xml, "allocationId"),
            vec!["eipalloc-1", "eipalloc-2"]
        );
    }
}
