//! Elastic IPs and NAT gateways: one (single), one per AZ (per-az) or none.
//!
//! Real AWS: a NAT takes 1.5–2 min to become `available`; its delete is
//! asynchronous (~1 min), and its EIP can be released (and the IGW detached) only
//! once it is `deleted`.

use mbstack_core::iam::Permission;

use aws_sdk_ec2::types::{Address, DomainType, NatGateway, NatGatewayState, ResourceType};
use mbstack_core::naming::NAME_TAG;
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{aws_error, error_code, Readiness, TierError, Verb, Work};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

use crate::tags::{pairs, stack_filter, tag, tag_spec};

pub(crate) fn role(az: &str) -> String {
    format!("nat-{az}")
}

fn eip_role(az: &str) -> String {
    format!("nat-eip-{az}")
}

/// A NAT gateway the spec asks for: its AZ, the public subnet it sits in and
/// its Elastic IP (None: planned), and the NAT gateway being deleted that still
/// holds that address, if one does.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub az: String,
    pub subnet_id: Option<String>,
    pub allocation_id: Option<String>,
    pub held_by: Option<String>,
    /// The address's association with the NAT instance's interface (a switch
    /// from `instance`): taken off first, since a NAT gateway needs a free one.
    pub associated: Option<String>,
}

/// What the NAT kinds read, once per invocation: the stack's NAT gateways in
/// every state, and the account's Elastic IPs (the quota check counts them all;
/// the stack's are among them). The quota check, both kinds' lists, their
/// readiness and "is this address free" share the two reads.
pub(crate) struct Reads {
    ec2: aws_sdk_ec2::Client,
    nats: OnceCell<Vec<NatGateway>>,
    addresses: OnceCell<Vec<Address>>,
}

impl Reads {
    pub fn new(ec2: aws_sdk_ec2::Client) -> Arc<Self> {
        Arc::new(Self {
            ec2,
            nats: OnceCell::new(),
            addresses: OnceCell::new(),
        })
    }

    /// The stack's NAT gateways in one of `states`. The states are checked
    /// here, not by a server-side filter: found by the benchmark's slower
    /// emulator timings, a gateway the emulator shows `deleting` was dropped by
    /// its `state` filter, and the EIP release that followed was refused as in use.
    async fn nats(&self, w: &Work<'_>, states: &[&str]) -> Result<Vec<NatGateway>, TierError> {
        let all = self
            .nats
            .get_or_try_init(|| async {
                let out = self
                    .ec2
                    .describe_nat_gateways()
                    .filter(stack_filter(w))
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DescribeNatGateways", e))?;
                Ok::<_, TierError>(
                    out.nat_gateways()
                        .iter()
                        .filter(|n| w.is_ours(&pairs(n.tags())))
                        .cloned()
                        .collect(),
                )
            })
            .await?;
        Ok(all
            .iter()
            .filter(|n| n.state().is_some_and(|s| states.contains(&s.as_str())))
            .cloned()
            .collect())
    }

    /// Every Elastic IP of the account (unfiltered: the quota counts them all).
    async fn addresses(&self) -> Result<&[Address], TierError> {
        let all = self
            .addresses
            .get_or_try_init(|| async {
                let out = self
                    .ec2
                    .describe_addresses()
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DescribeAddresses", e))?;
                Ok::<_, TierError>(out.addresses().to_vec())
            })
            .await?;
        Ok(all)
    }
}

fn live(n: &NatGateway) -> bool {
    matches!(
        n.state(),
        Some(NatGatewayState::Pending) | Some(NatGatewayState::Available)
    )
}

/// The stack's Elastic IPs, one per NAT gateway. Whether an address is free
/// depends on the NAT gateways: `list` reads them too (`nats`).
pub(crate) struct ElasticIps {
    reads: Arc<Reads>,
    nats: Mutex<Vec<NatGateway>>,
}

/// The AZ of a wanted Elastic IP.
pub(crate) struct EipWant {
    pub az: String,
}

impl ElasticIps {
    pub fn new(reads: Arc<Reads>) -> Self {
        Self {
            reads,
            nats: Mutex::new(Vec::new()),
        }
    }

    /// The NAT gateway being deleted that still holds the address
    /// `allocation_id` (a new NAT gateway cannot take it before AWS frees it:
    /// Resource.AlreadyAssociated).
    pub fn held_by(&self, allocation_id: &str) -> Option<String> {
        let nats = self.nats.lock().ok()?;
        let address = Address::builder().allocation_id(allocation_id).build();
        mapped_by(&address, &nats)
            .filter(|n| n.state() == Some(&NatGatewayState::Deleting))
            .and_then(|n| n.nat_gateway_id().map(str::to_string))
    }

    /// The NAT gateway (pending, available or deleting) that still maps the
    /// address `allocation_id`.
    pub fn gateway_of(&self, allocation_id: &str) -> Option<String> {
        let address = Address::builder().allocation_id(allocation_id).build();
        self.mapped_by(&address).map(|(id, _)| id)
    }

    /// The NAT gateway (not yet `deleted`) that maps `address`, and whether it
    /// is being deleted.
    fn mapped_by(&self, address: &Address) -> Option<(String, bool)> {
        let nats = self.nats.lock().ok()?;
        mapped_by(address, &nats).map(|n| {
            (
                n.nat_gateway_id().unwrap_or_default().to_string(),
                n.state() == Some(&NatGatewayState::Deleting),
            )
        })
    }
}

impl Resource for ElasticIps {
    const KIND: &'static str = "elastic-ip";
    const LABEL: &'static str = "Elastic IP";
    type Live = Address;
    type Want = EipWant;
    type Step = NoStep;

    fn name(&self, w: &Work<'_>, want: &EipWant) -> String {
        w.name(&eip_role(&want.az))
    }
    fn live_name(&self, live: &Address) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &Address) -> String {
        live.allocation_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Address) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    /// The stack's addresses, those a live NAT gateway uses first, then free
    /// ones, then those a deleting one still holds: of two with one name, the
    /// first is the NAT's (a deleted NAT's free address is reused).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Address>, TierError> {
        let nats = self
            .reads
            .nats(w, &["pending", "available", "deleting"])
            .await?;
        if let Ok(mut n) = self.nats.lock() {
            *n = nats;
        }
        let mut ours: Vec<Address> = self
            .reads
            .addresses()
            .await?
            .iter()
            .filter(|a| w.is_ours(&pairs(a.tags())))
            .cloned()
            .collect();
        ours.sort_by_key(|a| match self.mapped_by(a) {
            Some((_, false)) => 0,
            None => 1,
            Some((_, true)) => 2,
        });
        Ok(ours)
    }

    fn diff(&self, _w: &Work<'_>, _a: &Address, _want: &EipWant) -> Result<Vec<NoStep>, TierError> {
        Ok(vec![])
    }

    fn describe(&self, _w: &Work<'_>, want: &EipWant) -> String {
        format!("for the NAT in {}", want.az)
    }
    fn summary(&self, _w: &Work<'_>, a: &Address) -> String {
        a.public_ip().unwrap_or_default().to_string()
    }

    async fn create(&self, w: &Work<'_>, want: &EipWant) -> Result<Address, TierError> {
        let role = eip_role(&want.az);
        let out = self
            .reads
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(w, ResourceType::ElasticIp, &role))
            .send()
            .await
            .map_err(|e| aws_error("ec2:AllocateAddress", e))?;
        let id = out.allocation_id().ok_or_else(|| {
            TierError::Terminal("ec2:AllocateAddress returned no allocation id".into())
        })?;
        Ok(Address::builder()
            .allocation_id(id)
            .set_public_ip(out.public_ip().map(str::to_string))
            .set_tags(Some(
                tag_spec(w, ResourceType::ElasticIp, &role).tags().to_vec(),
            ))
            .build())
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _a: &Address,
        _want: &EipWant,
        _steps: &[NoStep],
    ) -> Result<Option<Address>, TierError> {
        Ok(None)
    }

    /// Released once no NAT gateway maps it.
    async fn delete(&self, _w: &Work<'_>, a: &Address) -> Result<Deleted, TierError> {
        let id = self.id(a);
        if let Some((nat, _)) = self.mapped_by(a) {
            return Ok(Deleted::Waiting(format!(
                "Elastic IP {id} to be unmapped from {nat} (released once its NAT gateway is deleted)"
            )));
        }
        match self
            .reads
            .ec2
            .release_address()
            .allocation_id(&id)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Now),
            // Its NAT gateway is `deleted`, but AWS frees the address moments
            // later (until then: InvalidIPAddress.InUse, or AuthFailure): not yet.
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("InvalidIPAddress.InUse" | "AuthFailure")
                ) =>
            {
                Ok(Deleted::Waiting(format!(
                    "Elastic IP {id}: AWS has not freed it from its deleted NAT gateway yet ({})",
                    error_code(&e).unwrap_or("")
                )))
            }
            Err(e) => Err(aws_error("ec2:ReleaseAddress", e)),
        }
    }
}

/// The stack's NAT gateways. A destroy also sees those being deleted (it waits
/// for them); a converge does not (a new one replaces a deleting one).
pub(crate) struct NatGateways {
    pub ec2: aws_sdk_ec2::Client,
    pub reads: Arc<Reads>,
}

/// The one change of a NAT gateway in place: none. A failed one is replaced.
pub(crate) struct Replace(String);

impl std::fmt::Display for Replace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replace: it failed ({})", self.0)
    }
}

impl NatGateways {
    async fn delete_nat(&self, id: &str) -> Result<(), TierError> {
        self.ec2
            .delete_nat_gateway()
            .nat_gateway_id(id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteNatGateway", e))?;
        Ok(())
    }
}

impl Resource for NatGateways {
    const KIND: &'static str = "nat-gateway";
    const LABEL: &'static str = "NAT gateway";
    type Live = NatGateway;
    type Want = Wanted;
    type Step = Replace;

    fn name(&self, w: &Work<'_>, want: &Wanted) -> String {
        w.name(&role(&want.az))
    }
    fn live_name(&self, live: &NatGateway) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &NatGateway) -> String {
        live.nat_gateway_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &NatGateway) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    /// Live ones (pending, available) before failed ones: a live gateway is
    /// the one a name means.
    async fn list(&self, w: &Work<'_>) -> Result<Vec<NatGateway>, TierError> {
        let states: &[&str] = match w.verb {
            Verb::Destroy => &["pending", "available", "failed", "deleting"],
            _ => &["pending", "available", "failed"],
        };
        let mut nats = self.reads.nats(w, states).await?;
        nats.sort_by_key(|n| !live(n));
        Ok(nats)
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        n: &NatGateway,
        _want: &Wanted,
    ) -> Result<Vec<Replace>, TierError> {
        Ok(match n.state() {
            Some(NatGatewayState::Failed) => vec![Replace(failure(n))],
            _ => vec![],
        })
    }

    fn describe(&self, _w: &Work<'_>, want: &Wanted) -> String {
        match (&want.subnet_id, &want.allocation_id, &want.held_by) {
            (_, _, Some(held)) => format!(
                "in the public subnet of {}, once {held} (deleting) frees its Elastic IP",
                want.az
            ),
            (Some(subnet), Some(allocation), None) => format!("in {subnet} with {allocation}"),
            _ => format!("in the public subnet of {}", want.az),
        }
    }
    fn summary(&self, _w: &Work<'_>, n: &NatGateway) -> String {
        format!("in {}", n.subnet_id().unwrap_or("?"))
    }

    async fn create(&self, w: &Work<'_>, want: &Wanted) -> Result<NatGateway, TierError> {
        if let (Some(held), Some(allocation)) = (&want.held_by, &want.allocation_id) {
            return Err(TierError::Retryable(format!(
                "the Elastic IP {allocation} is still held by NAT gateway {held}, which is deleting: the new NAT gateway in {} takes it once AWS frees it",
                want.az
            )));
        }
        let (Some(subnet), Some(allocation)) = (&want.subnet_id, &want.allocation_id) else {
            return Err(TierError::Terminal(format!(
                "the NAT gateway in {} needs its public subnet and Elastic IP, which do not exist",
                want.az
            )));
        };
        if let Some(association) = &want.associated {
            // The NAT instance being replaced had it: from here the private
            // subnets have no way out until this gateway is available.
            self.ec2
                .disassociate_address()
                .association_id(association)
                .send()
                .await
                .map_err(|e| aws_error("ec2:DisassociateAddress", e))?;
        }
        let out = self
            .ec2
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(allocation)
            .client_token(client_token(&w.spec.stack, &w.run.id, &want.az))
            .tag_specifications(tag_spec(w, ResourceType::Natgateway, &role(&want.az)))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateNatGateway", e))?;
        out.nat_gateway()
            .filter(|n| n.nat_gateway_id().is_some())
            .cloned()
            .ok_or_else(|| TierError::Terminal("ec2:CreateNatGateway returned no id".into()))
    }

    /// A failed gateway: a new one, then the failed one deleted.
    async fn update(
        &self,
        w: &Work<'_>,
        n: &NatGateway,
        want: &Wanted,
        _steps: &[Replace],
    ) -> Result<Option<NatGateway>, TierError> {
        let new = self.create(w, want).await?;
        self.delete_nat(&self.id(n)).await?;
        Ok(Some(new))
    }

    fn readiness(&self, _w: &Work<'_>, n: &NatGateway) -> Readiness {
        let id = self.id(n);
        let az = tag(n.tags(), NAME_TAG).unwrap_or("?");
        match n.state() {
            Some(NatGatewayState::Available) => Readiness::Ready,
            Some(NatGatewayState::Failed) => {
                Readiness::Failed(format!("NAT gateway {id} ({az}) failed: {}", failure(n)))
            }
            state => Readiness::Pending(format!(
                "NAT gateway {id} ({az}): {}",
                state.map(|s| s.as_str()).unwrap_or("?")
            )),
        }
    }

    /// Its Elastic IP is released (and the IGW detached) only once it is
    /// `deleted`: destroy waits.
    async fn delete(&self, _w: &Work<'_>, n: &NatGateway) -> Result<Deleted, TierError> {
        let id = self.id(n);
        let why = format!("NAT gateway {id} to be deleted");
        if n.state() == Some(&NatGatewayState::Deleting) {
            return Ok(Deleted::Waiting(why));
        }
        self.delete_nat(&id).await?;
        Ok(Deleted::Started {
            detail: self.live_name(n).unwrap_or_default(),
            waiting: why,
        })
    }
}

fn failure(n: &NatGateway) -> String {
    format!(
        "{} ({})",
        n.failure_message().unwrap_or("no reason given"),
        n.failure_code().unwrap_or("")
    )
}

/// Refuses, before anything is created, a spec whose NAT gateways need more new
/// Elastic IPs than the region's quota leaves (5 by default: `per-az` on 6 AZs
/// cannot be created). `azs`: the AZs that get a NAT gateway.
pub(crate) async fn check_address_quota(
    reads: &Reads,
    w: &Work<'_>,
    azs: &[&String],
) -> Result<(), TierError> {
    if azs.is_empty() {
        return Ok(());
    }
    let ec2 = &reads.ec2;
    let all = reads.addresses().await?;
    let names: Vec<String> = azs.iter().map(|az| w.name(&eip_role(az))).collect();
    let have = all
        .iter()
        .filter(|a| tag(a.tags(), NAME_TAG).is_some_and(|n| names.iter().any(|w| w == n)))
        .count();
    let new = names.len().saturating_sub(have);
    if new == 0 {
        return Ok(());
    }
    let attrs = ec2
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
    let in_use = all.len();
    if in_use + new > quota {
        return Err(TierError::Refused(format!(
            "network.nat: {} NAT gateway(s) need {new} new Elastic IP(s), but this region allows {quota} and {in_use} are allocated: use network.nat \"single\" (one address), release addresses you no longer use, or ask AWS for more (Service Quotas: \"EC2-VPC Elastic IPs\", L-0263D0A3)",
            names.len()
        )));
    }
    Ok(())
}

/// Idempotency token of a create (a NAT gateway, the NAT instance and its
/// interface): the same run retrying the same create gets the same resource
/// back instead of a second one (at most 64 ASCII characters, the limit of
/// each of those calls). `part`: which one (an AZ, a role).
pub(crate) fn client_token(stack: &str, run: &str, part: &str) -> String {
    let key = mbstack_core::naming::idempotency_key(&[stack, run, part]);
    format!("mbstack-{stack:.20}-{key}")
}

/// The NAT gateway (not yet `deleted`) that still maps this address. An address
/// whose NAT is gone is free to release, whatever its association field says.
fn mapped_by<'n>(address: &Address, live: &'n [NatGateway]) -> Option<&'n NatGateway> {
    let allocation = address.allocation_id()?;
    live.iter().find(|n| {
        n.nat_gateway_addresses()
            .iter()
            .any(|a| a.allocation_id() == Some(allocation))
    })
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
            "ec2:DisassociateAddress",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use mbstack_core::{StackSpec, Tier};

    fn kind() -> NatGateways {
        NatGateways {
            ec2: ec2(),
            reads: Reads::new(ec2()),
        }
    }

    /// The one NAT gateway of `nat: single`, as the tier asks for it.
    fn wanted() -> Wanted {
        Wanted {
            az: "us-east-1a".into(),
            subnet_id: Some("subnet-pub-a".into()),
            allocation_id: Some("eipalloc-1".into()),
            held_by: None,
            associated: None,
        }
    }

    fn nat(state: NatGatewayState) -> NatGateway {
        NatGateway::builder()
            .nat_gateway_id("nat-1")
            .subnet_id("subnet-pub-a")
            .state(state)
            .build()
    }

    #[test]
    fn an_available_nat_gateway_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let live = nat(NatGatewayState::Available);
        assert!(kind().diff(&w, &live, &wanted()).unwrap().is_empty());
    }

    #[test]
    fn a_failed_nat_gateway_is_replaced() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let failed = NatGateway::builder()
            .nat_gateway_id("nat-1")
            .subnet_id("subnet-pub-a")
            .state(NatGatewayState::Failed)
            .failure_code("Gateway.NotAttached")
            .failure_message("Network vpc-1 has no Internet gateway attached")
            .build();
        let steps = kind().diff(&w, &failed, &wanted()).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec!["replace: it failed (Network vpc-1 has no Internet gateway attached (Gateway.NotAttached))"]
        );
    }
}
