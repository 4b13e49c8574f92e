//! The internet-facing Application Load Balancer over the public subnets, with
//! invalid header fields dropped, the idle timeout and deletion protection from
//! the spec. Real AWS: ~2–3 min to `active`.

use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::alb_name;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, error_code, Readiness, TierError, Work};

use crate::tags::{elb_tags, pairs, Pairs};

const ROLE: &str = "alb";

/// The attributes the spec sets.
fn wanted_attributes(w: &Work<'_>) -> Vec<(&'static str, String)> {
    let lb = &w.spec.load_balancer;
    vec![
        (
            "routing.http.drop_invalid_header_fields.enabled",
            "true".into(),
        ),
        (
            "idle_timeout.timeout_seconds",
            lb.idle_timeout_seconds.to_string(),
        ),
        (
            "deletion_protection.enabled",
            lb.deletion_protection.to_string(),
        ),
    ]
}

fn attribute(key: &str, value: &str) -> LoadBalancerAttribute {
    LoadBalancerAttribute::builder()
        .key(key)
        .value(value)
        .build()
}

/// The stack's ALB over `subnets` with the security group `sg` (None:
/// planned).
pub(crate) struct LoadBalancers {
    pub elb: Client,
    pub reads: std::sync::Arc<crate::reads::Reads>,
    pub subnets: Option<Vec<String>>,
    pub sg: Option<String>,
}

/// An ALB with its tags and attributes (read apart).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    lb: LoadBalancer,
    tags: Pairs,
    attributes: Pairs,
}

impl Live {
    pub fn load_balancer(&self) -> &LoadBalancer {
        &self.lb
    }

    /// Whether deletion protection is on: destroy refuses before it deletes
    /// anything (its listeners included).
    pub fn protected(&self) -> bool {
        self.attributes
            .iter()
            .any(|(k, v)| k == "deletion_protection.enabled" && v == "true")
    }
}

/// One change in place.
pub(crate) enum Step {
    SecurityGroup(String),
    Subnets(Vec<String>),
    Attribute(&'static str, String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::SecurityGroup(sg) => write!(f, "security group → {sg}"),
            Step::Subnets(s) => write!(f, "subnets → {}", s.join(", ")),
            Step::Attribute(k, v) => write!(f, "{k} → {v}"),
        }
    }
}

impl LoadBalancers {
    /// Turns deletion protection off (a rollback deleting what its run made).
    pub async fn unprotect(&self, arn: &str) -> Result<(), TierError> {
        self.set_attributes(arn, &[("deletion_protection.enabled", "false".into())])
            .await
    }

    async fn set_attributes(&self, arn: &str, attrs: &[(&str, String)]) -> Result<(), TierError> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.elb
            .modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .set_attributes(Some(attrs.iter().map(|(k, v)| attribute(k, v)).collect()))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:ModifyLoadBalancerAttributes", e))?;
        Ok(())
    }
}

impl Resource for LoadBalancers {
    const KIND: &'static str = "load-balancer";
    const LABEL: &'static str = "load balancer";
    type Live = Live;
    type Want = ();
    type Step = Step;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        alb_name(&w.spec.stack)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        live.lb.load_balancer_name().map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.lb.load_balancer_arn().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    async fn list(&self, _w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let mut lbs = Vec::new();
        for lb in self.reads.load_balancers().await? {
            let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
            let t = self.reads.tags_of(&arn).await?;
            let attributes = pairs(
                self.elb
                    .describe_load_balancer_attributes()
                    .load_balancer_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| {
                        aws_error("elasticloadbalancing:DescribeLoadBalancerAttributes", e)
                    })?
                    .attributes()
                    .iter()
                    .map(|a| (a.key(), a.value())),
            );
            lbs.push(Live {
                lb: lb.clone(),
                tags: t,
                attributes,
            });
        }
        Ok(lbs)
    }

    fn diff(&self, w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Step>, TierError> {
        let lb = &live.lb;
        let mut steps = Vec::new();
        if let Some(want) = self
            .sg
            .as_ref()
            .filter(|want| lb.security_groups() != [want.to_string()])
        {
            steps.push(Step::SecurityGroup(want.clone()));
        }
        if let Some(want) = &self.subnets {
            let mut have: Vec<&str> = lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id())
                .collect();
            have.sort();
            let mut want = want.clone();
            want.sort();
            if have != want {
                steps.push(Step::Subnets(want));
            }
        }
        steps.extend(
            wanted_attributes(w)
                .into_iter()
                .filter(|(k, v)| !live.attributes.iter().any(|(hk, hv)| hk == k && hv == v))
                .map(|(k, v)| Step::Attribute(k, v)),
        );
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        "internet-facing, over the public subnets".into()
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        live.lb.dns_name().unwrap_or("").to_string()
    }

    /// The ALB, then every attribute the spec sets.
    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let (Some(subnets), Some(sg)) = (&self.subnets, &self.sg) else {
            return Err(TierError::Terminal(
                "the load balancer needs the network's public subnets and its security group"
                    .into(),
            ));
        };
        let out = self
            .elb
            .create_load_balancer()
            .name(alb_name(&w.spec.stack))
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(subnets.clone()))
            .security_groups(sg)
            .set_tags(Some(elb_tags(w, ROLE)))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:CreateLoadBalancer", e))?;
        let lb = out.load_balancers().first().cloned().ok_or_else(|| {
            TierError::Terminal(
                "elasticloadbalancing:CreateLoadBalancer returned no load balancer".into(),
            )
        })?;
        self.set_attributes(
            lb.load_balancer_arn().unwrap_or_default(),
            &wanted_attributes(w),
        )
        .await?;
        Ok(Live {
            lb,
            tags: w.tags(ROLE),
            attributes: Vec::new(),
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        _want: &(),
        steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        let arn = self.id(live);
        let mut attrs = Vec::new();
        for step in steps {
            match step {
                Step::SecurityGroup(sg) => {
                    self.elb
                        .set_security_groups()
                        .load_balancer_arn(&arn)
                        .security_groups(sg)
                        .send()
                        .await
                        .map_err(|e| aws_error("elasticloadbalancing:SetSecurityGroups", e))?;
                }
                Step::Subnets(subnets) => {
                    self.elb
                        .set_subnets()
                        .load_balancer_arn(&arn)
                        .set_subnets(Some(subnets.clone()))
                        .send()
                        .await
                        .map_err(|e| aws_error("elasticloadbalancing:SetSubnets", e))?;
                }
                Step::Attribute(k, v) => attrs.push((*k, v.clone())),
            }
        }
        self.set_attributes(&arn, &attrs).await?;
        Ok(None)
    }

    fn readiness(&self, _w: &Work<'_>, live: &Live) -> Readiness {
        let state = live.lb.state();
        readiness(
            live.lb.load_balancer_name().unwrap_or(""),
            state.and_then(|s| s.code()),
            state.and_then(|s| s.reason()),
        )
    }

    /// Deleting is asynchronous in AWS: the next destroy call finds it gone.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        let name = self.live_name(live).unwrap_or_default();
        match self
            .elb
            .delete_load_balancer()
            .load_balancer_arn(self.id(live))
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Started {
                waiting: format!("load balancer {name} to be deleted"),
                detail: name,
            }),
            Err(e) if error_code(&e) == Some("OperationNotPermitted") => Err(TierError::Refused(format!(
                "load balancer {name} has deletion protection on: set loadBalancer.deletionProtection to false, apply, then destroy"
            ))),
            Err(e) => Err(aws_error("elasticloadbalancing:DeleteLoadBalancer", e)),
        }
    }
}

pub fn readiness(
    name: &str,
    state: Option<&LoadBalancerStateEnum>,
    reason: Option<&str>,
) -> Readiness {
    match state {
        Some(LoadBalancerStateEnum::Active) => Readiness::Ready,
        Some(LoadBalancerStateEnum::Failed) => Readiness::Failed(format!(
            "load balancer {name} failed: {}",
            reason.unwrap_or("no reason given")
        )),
        Some(s) => Readiness::Pending(format!("load balancer {name}: {}", s.as_str())),
        None => Readiness::Pending(format!("load balancer {name}: state unknown")),
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["elasticloadbalancing:DescribeLoadBalancerAttributes"]),
    Permission::create_tagged("CreateTagged", &["elasticloadbalancing:CreateLoadBalancer"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer",
        ],
    ),
    // The first load balancer of an account creates ELB's service-linked role.
    Permission::on(
        "ServiceLinkedRole",
        &["iam:CreateServiceLinkedRole"],
        &["arn:${Partition}:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing"],
    )
    .when(r#"{"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}"#),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{elb, run};
    use aws_sdk_elasticloadbalancingv2::types::AvailabilityZone;
    use mbstack_core::{StackSpec, Tier, Verb};

    /// The ALB of a converge over two public subnets and the LB security
    /// group (None: planned).
    fn lbs(planned: bool) -> LoadBalancers {
        let elb = elb();
        LoadBalancers {
            reads: crate::reads::Reads::new(elb.clone(), "s"),
            elb,
            subnets: (!planned).then(|| vec!["subnet-a".to_string(), "subnet-b".to_string()]),
            sg: (!planned).then(|| "sg-lb".to_string()),
        }
    }

    /// An ALB as ELB describes it: its security group, the subnets of its
    /// zones, and its attributes.
    fn alb(sg: &str, subnets: &[&str], attributes: &[(&str, &str)]) -> Live {
        let mut lb = LoadBalancer::builder()
            .load_balancer_name("s-alb")
            .load_balancer_arn(
                "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/s-alb/0123456789abcdef",
            )
            .security_groups(sg);
        for (i, s) in subnets.iter().enumerate() {
            lb = lb.availability_zones(
                AvailabilityZone::builder()
                    .zone_name(format!("us-east-1{}", ['a', 'b', 'c'][i % 3]))
                    .subnet_id(*s)
                    .build(),
            );
        }
        Live {
            lb: lb.build(),
            tags: Vec::new(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The attributes of the default spec (idle timeout 60 s, no deletion
    /// protection), among others ELB reports.
    const DEFAULT_ATTRIBUTES: &[(&str, &str)] = &[
        ("access_logs.s3.enabled", "false"),
        ("deletion_protection.enabled", "false"),
        ("idle_timeout.timeout_seconds", "60"),
        ("routing.http.drop_invalid_header_fields.enabled", "true"),
    ];

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_alb_as_the_spec_wants_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let live = alb("sg-lb", &["subnet-b", "subnet-a"], DEFAULT_ATTRIBUTES);
        assert!(lbs(false).diff(&w, &live, &()).unwrap().is_empty());
    }

    #[test]
    fn a_new_idle_timeout_and_deletion_protection_are_set() {
        let mut spec = StackSpec::new("s");
        spec.load_balancer.idle_timeout_seconds = 300;
        spec.load_balancer.deletion_protection = true;
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let live = alb("sg-lb", &["subnet-a", "subnet-b"], DEFAULT_ATTRIBUTES);
        let steps = lbs(false).diff(&w, &live, &()).unwrap();
        assert_eq!(
            shown(&steps),
            vec![
                "idle_timeout.timeout_seconds → 300",
                "deletion_protection.enabled → true"
            ]
        );
    }

    #[test]
    fn an_alb_on_another_security_group_and_subnets_is_moved_back() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let live = alb("sg-other", &["subnet-a", "subnet-x"], DEFAULT_ATTRIBUTES);
        let steps = lbs(false).diff(&w, &live, &()).unwrap();
        assert_eq!(
            shown(&steps),
            vec!["security group → sg-lb", "subnets → subnet-a, subnet-b"]
        );
        // A plan whose network is not known yet compares only the attributes.
        assert!(lbs(true).diff(&w, &live, &()).unwrap().is_empty());
    }
}
