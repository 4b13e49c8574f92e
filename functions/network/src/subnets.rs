//! One public and one private subnet per AZ, at fixed places in the VPC's CIDR
//! (see `mbstack_core::cidr`), so adding an AZ never renumbers a subnet. No subnet
//! maps public IPs on launch: the ALB and NAT gateways get theirs explicitly.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};
use mbstack_core::cidr::{self, Cidr};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Work};
use std::sync::Arc;
use tokio::sync::OnceCell;

use crate::tags::{name_of, pairs, stack_filter, tag, tag_spec};

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

/// A subnet the spec asks for.
#[derive(Debug, Clone)]
pub(crate) struct Want {
    pub az: String,
    pub side: Side,
    pub cidr: Cidr,
}

/// Every subnet the spec asks for, in AZ order (public, private).
pub(crate) fn wants(vpc_cidr: &Cidr, azs: &[String]) -> Result<Vec<Want>, TierError> {
    let mut wants = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        for side in [Side::Public, Side::Private] {
            let cidr = match side {
                Side::Public => cidr::public_subnet(vpc_cidr, i),
                Side::Private => cidr::private_subnet(vpc_cidr, i),
            }
            .ok_or_else(|| TierError::Terminal(format!("no room for subnet {i} in {vpc_cidr}")))?;
            wants.push(Want {
                az: az.clone(),
                side,
                cidr,
            });
        }
    }
    Ok(wants)
}

/// The stack's subnets, in the VPC `vpc_id` (None: planned).
pub(crate) struct Subnets {
    pub ec2: aws_sdk_ec2::Client,
    pub vpc_id: Option<String>,
    /// The stack's subnets, read once per invocation: the AZ choice and the
    /// converge share the read (see [`of_stack`]).
    pub seen: Arc<OnceCell<Vec<Subnet>>>,
}

/// The stack's subnets (by its tag, any VPC), read once into `seen`.
pub(crate) async fn of_stack<'a>(
    ec2: &aws_sdk_ec2::Client,
    w: &Work<'_>,
    seen: &'a OnceCell<Vec<Subnet>>,
) -> Result<&'a [Subnet], TierError> {
    let all = seen
        .get_or_try_init(|| async {
            let out = ec2
                .describe_subnets()
                .filters(stack_filter(w))
                .send()
                .await
                .map_err(|e| aws_error("ec2:DescribeSubnets", e))?;
            Ok::<_, TierError>(
                out.subnets()
                    .iter()
                    .filter(|s| w.is_ours(&pairs(s.tags())))
                    .cloned()
                    .collect(),
            )
        })
        .await?;
    Ok(all)
}

/// The one in-place change: stop mapping public IPs on launch.
pub(crate) struct NoPublicIps;

impl std::fmt::Display for NoPublicIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop mapping public IPs on launch")
    }
}

impl Resource for Subnets {
    const KIND: &'static str = "subnet";
    const LABEL: &'static str = "subnet";
    type Live = Subnet;
    type Want = Want;
    type Step = NoPublicIps;

    fn name(&self, w: &Work<'_>, want: &Want) -> String {
        w.name(&role(want.side, &want.az))
    }
    fn live_name(&self, live: &Subnet) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &Subnet) -> String {
        live.subnet_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Subnet) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Subnet>, TierError> {
        Ok(of_stack(&self.ec2, w, &self.seen).await?.to_vec())
    }

    fn diff(&self, _w: &Work<'_>, s: &Subnet, want: &Want) -> Result<Vec<NoPublicIps>, TierError> {
        let cidr = want.cidr.to_string();
        if s.cidr_block() != Some(cidr.as_str()) || s.availability_zone() != Some(&want.az) {
            return Err(TierError::Terminal(format!(
                "subnet {} ({}) is {} in {} but the layout puts it at {cidr} in {}: \
                 it was changed outside mbstack; delete it and apply again",
                self.id(s),
                name_of(s.tags()),
                s.cidr_block().unwrap_or("?"),
                s.availability_zone().unwrap_or("?"),
                want.az
            )));
        }
        Ok(if s.map_public_ip_on_launch() == Some(true) {
            vec![NoPublicIps]
        } else {
            vec![]
        })
    }

    fn describe(&self, _w: &Work<'_>, want: &Want) -> String {
        format!("{} in {}", want.cidr, want.az)
    }
    fn summary(&self, _w: &Work<'_>, s: &Subnet) -> String {
        format!(
            "{} in {}",
            s.cidr_block().unwrap_or("?"),
            s.availability_zone().unwrap_or("?")
        )
    }

    async fn create(&self, w: &Work<'_>, want: &Want) -> Result<Subnet, TierError> {
        let vpc_id = self.vpc_id.as_deref().ok_or_else(|| {
            TierError::Terminal("a subnet needs the VPC, which does not exist".into())
        })?;
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(want.cidr.to_string())
            .availability_zone(&want.az)
            .tag_specifications(tag_spec(
                w,
                ResourceType::Subnet,
                &role(want.side, &want.az),
            ))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateSubnet", e))?;
        out.subnet()
            .filter(|s| s.subnet_id().is_some())
            .cloned()
            .ok_or_else(|| TierError::Terminal("ec2:CreateSubnet returned no id".into()))
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        s: &Subnet,
        _want: &Want,
        _steps: &[NoPublicIps],
    ) -> Result<Option<Subnet>, TierError> {
        self.ec2
            .modify_subnet_attribute()
            .subnet_id(self.id(s))
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(false).build())
            .send()
            .await
            .map_err(|e| aws_error("ec2:ModifySubnetAttribute", e))?;
        Ok(None)
    }

    /// Lingering ENIs (ALB, Fargate) make AWS answer DependencyViolation:
    /// retryable, the next destroy call tries again.
    async fn delete(&self, _w: &Work<'_>, s: &Subnet) -> Result<Deleted, TierError> {
        self.ec2
            .delete_subnet()
            .subnet_id(self.id(s))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteSubnet", e))?;
        Ok(Deleted::Now)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use mbstack_core::{StackSpec, Tier, Verb};

    fn kind() -> Subnets {
        Subnets {
            ec2: ec2(),
            vpc_id: Some("vpc-1".into()),
            seen: Default::default(),
        }
    }

    /// The subnets the spec asks for over two AZs, as the tier lays them out:
    /// the default 10.0.0.0/16 cut in 16 /20 blocks, public `i` in block `i`,
    /// private `i` in block `8 + i`.
    fn wanted(spec: &StackSpec) -> Vec<Want> {
        let azs = ["us-east-1a".to_string(), "us-east-1b".to_string()];
        wants(&spec.vpc_cidr().unwrap(), &azs).unwrap()
    }

    fn subnet(cidr: &str, az: &str, maps_public_ips: bool) -> Subnet {
        Subnet::builder()
            .subnet_id("subnet-1")
            .cidr_block(cidr)
            .availability_zone(az)
            .map_public_ip_on_launch(maps_public_ips)
            .build()
    }

    #[test]
    fn a_subnet_where_the_layout_puts_it_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let layout = wanted(&spec);
        let want = &layout[1];
        assert_eq!((want.side, want.az.as_str()), (Side::Private, "us-east-1a"));
        let live = subnet("10.0.128.0/20", "us-east-1a", false);
        assert!(kind().diff(&w, &live, want).unwrap().is_empty());
    }

    #[test]
    fn a_subnet_that_maps_public_ips_on_launch_stops_doing_so() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let layout = wanted(&spec);
        let want = &layout[0];
        let live = subnet("10.0.0.0/20", "us-east-1a", true);
        let steps = kind().diff(&w, &live, want).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(shown, vec!["stop mapping public IPs on launch"]);
    }

    #[test]
    fn a_subnet_in_another_block_than_the_layout_cannot_change_in_place() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let layout = wanted(&spec);
        let want = &layout[0];
        // Block 1 (the second AZ's public subnet), not block 0.
        let live = subnet("10.0.16.0/20", "us-east-1a", false);
        let Err(TierError::Terminal(why)) = kind().diff(&w, &live, want) else {
            panic!("a subnet in another block was not refused");
        };
        assert!(
            why.contains(
                "is 10.0.16.0/20 in us-east-1a but the layout puts it at 10.0.0.0/20 in us-east-1a"
            ),
            "{why}"
        );
    }
}
