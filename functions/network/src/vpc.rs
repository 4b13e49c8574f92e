//! The VPC: DNS support and hostnames on (RDS endpoints and ECS need them).

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Vpc, VpcAttributeName};
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, error_code, TierError, Verb, Work};

use crate::tags::{name_filter, pairs, stack_filter, tag, tag_spec};
use mbstack_core::naming::NAME_TAG;

const ROLE: &str = "vpc";
const DNS: [VpcAttributeName; 2] = [
    VpcAttributeName::EnableDnsSupport,
    VpcAttributeName::EnableDnsHostnames,
];

/// The stack's VPC (one).
pub(crate) struct Vpcs {
    pub ec2: aws_sdk_ec2::Client,
}

/// A VPC as AWS shows it, with its two DNS attributes (read apart).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    vpc: Vpc,
    /// The DNS attributes that are off.
    dns_off: Vec<VpcAttributeName>,
}

/// The VPC the spec asks for: its CIDR.
pub(crate) struct Want {
    pub cidr: String,
}

/// A DNS attribute to turn on.
pub(crate) struct TurnOn(VpcAttributeName);

impl std::fmt::Display for TurnOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "turn on {}", self.0.as_str())
    }
}

impl Vpcs {
    async fn dns_attribute(&self, id: &str, attr: &VpcAttributeName) -> Result<bool, TierError> {
        let out = self
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

    async fn turn_on(&self, id: &str, attr: &VpcAttributeName) -> Result<(), TierError> {
        let on = AttributeBooleanValue::builder().value(true).build();
        let call = self.ec2.modify_vpc_attribute().vpc_id(id);
        let call = match attr {
            VpcAttributeName::EnableDnsHostnames => call.enable_dns_hostnames(on),
            _ => call.enable_dns_support(on),
        };
        call.send()
            .await
            .map_err(|e| aws_error("ec2:ModifyVpcAttribute", e))?;
        Ok(())
    }
}

impl Resource for Vpcs {
    const KIND: &'static str = "vpc";
    const LABEL: &'static str = "VPC";
    type Live = Live;
    type Want = Want;
    type Step = TurnOn;

    fn name(&self, w: &Work<'_>, _want: &Want) -> String {
        w.name(ROLE)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        tag(live.vpc.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.vpc.vpc_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        pairs(live.vpc.tags())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let out = self
            .ec2
            .describe_vpcs()
            .filters(stack_filter(w))
            .filters(name_filter(w, ROLE))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeVpcs", e))?;
        let mut found = Vec::new();
        for vpc in out.vpcs().iter().filter(|v| w.is_ours(&pairs(v.tags()))) {
            let id = vpc.vpc_id().unwrap_or_default();
            let mut dns_off = Vec::new();
            // A destroy deletes it whatever its attributes: no need to read them.
            let attrs = if w.verb == Verb::Destroy {
                &[][..]
            } else {
                &DNS[..]
            };
            for attr in attrs {
                if !self.dns_attribute(id, attr).await? {
                    dns_off.push(attr.clone());
                }
            }
            found.push(Live {
                vpc: vpc.clone(),
                dns_off,
            });
        }
        Ok(found)
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, want: &Want) -> Result<Vec<TurnOn>, TierError> {
        let have = live.vpc.cidr_block().unwrap_or("?");
        if have != want.cidr {
            return Err(TierError::Refused(format!(
                "VPC {} has CIDR {have} but the spec asks for {}: a VPC's CIDR cannot change in place; \
                 set network.cidr back to {have}, or destroy the stack and create it again",
                self.id(live),
                want.cidr
            )));
        }
        Ok(live.dns_off.iter().cloned().map(TurnOn).collect())
    }

    fn describe(&self, _w: &Work<'_>, want: &Want) -> String {
        want.cidr.clone()
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        live.vpc.cidr_block().unwrap_or_default().to_string()
    }

    async fn create(&self, w: &Work<'_>, want: &Want) -> Result<Live, TierError> {
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(&want.cidr)
            .tag_specifications(tag_spec(w, ResourceType::Vpc, ROLE))
            .send()
            .await
            .map_err(|e| match error_code(&e) {
                // The first create of a run: refused, nothing exists yet.
                Some("VpcLimitExceeded") => TierError::Refused(
                    "network: this region has as many VPCs as its quota allows (\"VPCs per Region\": 5 by default, the default VPC included), so nothing was created: delete a VPC you no longer use, use another region, or ask AWS for more (Service Quotas: L-F678F1CE; the internet gateways' quota follows it)".into(),
                ),
                _ => aws_error("ec2:CreateVpc", e),
            })?;
        let vpc = out
            .vpc()
            .filter(|v| v.vpc_id().is_some())
            .ok_or_else(|| TierError::Terminal("ec2:CreateVpc returned no VPC id".into()))?;
        let id = vpc.vpc_id().unwrap_or_default();
        for attr in DNS {
            self.turn_on(id, &attr).await?;
        }
        Ok(Live {
            vpc: vpc.clone(),
            dns_off: Vec::new(),
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        _want: &Want,
        steps: &[TurnOn],
    ) -> Result<Option<Live>, TierError> {
        for TurnOn(attr) in steps {
            self.turn_on(&self.id(live), attr).await?;
        }
        Ok(None)
    }

    /// Its contents must be gone first.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.ec2
            .delete_vpc()
            .vpc_id(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteVpc", e))?;
        Ok(Deleted::Now)
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"]),
    Permission::create_tagged("CreateTagged", &["ec2:CreateVpc"]),
    Permission::own_tagged("ChangeTagged", &["ec2:ModifyVpcAttribute", "ec2:DeleteVpc"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use mbstack_core::{StackSpec, Tier};

    /// The VPC the spec asks for, as the tier builds it: `network.cidr`.
    fn want(spec: &StackSpec) -> Want {
        Want {
            cidr: spec.vpc_cidr().unwrap().to_string(),
        }
    }

    fn live(cidr: &str, dns_off: Vec<VpcAttributeName>) -> Live {
        Live {
            vpc: Vpc::builder().vpc_id("vpc-1").cidr_block(cidr).build(),
            dns_off,
        }
    }

    #[test]
    fn a_vpc_with_the_spec_cidr_and_dns_on_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let vpcs = Vpcs { ec2: ec2() };
        let steps = vpcs
            .diff(&w, &live("10.0.0.0/16", vec![]), &want(&spec))
            .unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_vpc_with_dns_hostnames_off_turns_them_on() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let vpcs = Vpcs { ec2: ec2() };
        let drifted = live("10.0.0.0/16", vec![VpcAttributeName::EnableDnsHostnames]);
        let steps = vpcs.diff(&w, &drifted, &want(&spec)).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(shown, vec!["turn on enableDnsHostnames"]);
    }

    #[test]
    fn a_vpc_with_another_cidr_cannot_change_in_place() {
        let mut spec = StackSpec::new("s");
        spec.network.cidr = "10.1.0.0/16".into();
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let vpcs = Vpcs { ec2: ec2() };
        let Err(TierError::Refused(why)) =
            vpcs.diff(&w, &live("10.0.0.0/16", vec![]), &want(&spec))
        else {
            panic!("a VPC with another CIDR was not refused");
        };
        assert!(
            why.contains("CIDR 10.0.0.0/16 but the spec asks for 10.1.0.0/16"),
            "{why}"
        );
        assert!(why.contains("network.cidr"), "{why}");
    }
}
