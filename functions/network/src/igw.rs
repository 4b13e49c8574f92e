//! The internet gateway, attached to the VPC.

use aws_sdk_ec2::types::{InternetGateway, ResourceType};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, error_code, TierError, Work};

use crate::tags::{name_filter, pairs, stack_filter, tag, tag_spec};

const ROLE: &str = "igw";

/// The stack's internet gateway, in the VPC `vpc_id` (None: planned).
pub(crate) struct Gateways {
    pub ec2: aws_sdk_ec2::Client,
    pub vpc_id: Option<String>,
}

/// Attach it to the stack's VPC.
pub(crate) struct Attach(Option<String>);

impl std::fmt::Display for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(vpc) => write!(f, "attached to {vpc}"),
            None => write!(f, "attach to the VPC"),
        }
    }
}

fn attached_to(igw: &InternetGateway) -> Option<&str> {
    igw.attachments().iter().find_map(|a| a.vpc_id())
}

impl Gateways {
    async fn attach(&self, id: &str) -> Result<(), TierError> {
        let vpc = self.vpc_id.as_deref().ok_or_else(|| {
            TierError::Terminal("the internet gateway needs the VPC, which does not exist".into())
        })?;
        self.ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| aws_error("ec2:AttachInternetGateway", e))?;
        Ok(())
    }
}

impl Resource for Gateways {
    const KIND: &'static str = "internet-gateway";
    const LABEL: &'static str = "internet gateway";
    type Live = InternetGateway;
    type Want = ();
    type Step = Attach;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        w.name(ROLE)
    }
    fn live_name(&self, live: &InternetGateway) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &InternetGateway) -> String {
        live.internet_gateway_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &InternetGateway) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<InternetGateway>, TierError> {
        let out = self
            .ec2
            .describe_internet_gateways()
            .filters(stack_filter(w))
            .filters(name_filter(w, ROLE))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeInternetGateways", e))?;
        Ok(out
            .internet_gateways()
            .iter()
            .filter(|g| w.is_ours(&pairs(g.tags())))
            .cloned()
            .collect())
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        live: &InternetGateway,
        _want: &(),
    ) -> Result<Vec<Attach>, TierError> {
        match (attached_to(live), self.vpc_id.as_deref()) {
            (Some(v), Some(want)) if v == want => Ok(vec![]),
            (Some(v), _) => Err(TierError::Terminal(format!(
                "internet gateway {} is attached to {v}, not to the stack's VPC: detach it by hand",
                self.id(live)
            ))),
            (None, _) => Ok(vec![Attach(self.vpc_id.clone())]),
        }
    }

    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        Attach(self.vpc_id.clone()).to_string()
    }
    fn summary(&self, _w: &Work<'_>, live: &InternetGateway) -> String {
        format!("attached to {}", attached_to(live).unwrap_or("?"))
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<InternetGateway, TierError> {
        let out = self
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_spec(w, ResourceType::InternetGateway, ROLE))
            .send()
            .await
            .map_err(|e| match error_code(&e) {
                Some("InternetGatewayLimitExceeded") => TierError::Refused(
                    "network: this region has as many internet gateways as its quota allows (\"Internet gateways per Region\": 5 by default; it follows \"VPCs per Region\", L-F678F1CE, so raise that one): delete one you no longer use, or ask AWS for more VPCs; this run's VPC is rolled back".into(),
                ),
                _ => aws_error("ec2:CreateInternetGateway", e),
            })?;
        let igw = out
            .internet_gateway()
            .filter(|g| g.internet_gateway_id().is_some())
            .ok_or_else(|| {
                TierError::Terminal("ec2:CreateInternetGateway returned no id".into())
            })?;
        self.attach(&self.id(igw)).await?;
        Ok(igw.clone())
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &InternetGateway,
        _want: &(),
        _steps: &[Attach],
    ) -> Result<Option<InternetGateway>, TierError> {
        self.attach(&self.id(live)).await?;
        Ok(None)
    }

    /// Detaches and deletes the gateway. Fails with a retryable
    /// DependencyViolation while a NAT gateway's public address is still mapped
    /// in the VPC.
    async fn delete(&self, _w: &Work<'_>, live: &InternetGateway) -> Result<Deleted, TierError> {
        let id = self.id(live);
        for vpc in live.attachments().iter().filter_map(|a| a.vpc_id()) {
            self.ec2
                .detach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| aws_error("ec2:DetachInternetGateway", e))?;
        }
        self.ec2
            .delete_internet_gateway()
            .internet_gateway_id(&id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteInternetGateway", e))?;
        Ok(Deleted::Now)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use aws_sdk_ec2::types::InternetGatewayAttachment;
    use mbstack_core::{StackSpec, Tier, Verb};

    /// The stack's gateway kind, its VPC being `vpc-1`.
    fn gateways() -> Gateways {
        Gateways {
            ec2: ec2(),
            vpc_id: Some("vpc-1".into()),
        }
    }

    fn gateway(attached_to: Option<&str>) -> InternetGateway {
        let attachments =
            attached_to.map(|vpc| vec![InternetGatewayAttachment::builder().vpc_id(vpc).build()]);
        InternetGateway::builder()
            .internet_gateway_id("igw-1")
            .set_attachments(attachments)
            .build()
    }

    #[test]
    fn a_gateway_attached_to_the_stack_vpc_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let steps = gateways().diff(&w, &gateway(Some("vpc-1")), &()).unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_detached_gateway_is_attached_to_the_stack_vpc() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let steps = gateways().diff(&w, &gateway(None), &()).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(shown, vec!["attached to vpc-1"]);
    }

    #[test]
    fn a_gateway_attached_to_another_vpc_is_left_for_a_person() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let Err(TierError::Terminal(why)) = gateways().diff(&w, &gateway(Some("vpc-other")), &())
        else {
            panic!("a gateway attached to another VPC was not refused");
        };
        assert!(
            why.contains("igw-1 is attached to vpc-other, not to the stack's VPC"),
            "{why}"
        );
    }
}
