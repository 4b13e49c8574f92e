//! What the load balancer's kinds read, once per invocation: the stack's target
//! group and load balancer (by their names) and the tags of both in one
//! DescribeTags. Found, diffed and judged ready from the same answers.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, TargetGroup};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{alb_name, target_group_name};
use mbstack_core::{found, TierError};
use tokio::sync::OnceCell;

use crate::tags::{self, Pairs};

pub(crate) struct Reads {
    pub elb: Client,
    stack: String,
    target_groups: OnceCell<Vec<TargetGroup>>,
    load_balancers: OnceCell<Vec<LoadBalancer>>,
    tags: OnceCell<HashMap<String, Pairs>>,
}

impl Reads {
    pub fn new(elb: Client, stack: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            elb,
            stack: stack.to_string(),
            target_groups: OnceCell::new(),
            load_balancers: OnceCell::new(),
            tags: OnceCell::new(),
        })
    }

    /// The target group named for the stack (none: not found).
    pub async fn target_groups(&self) -> Result<&[TargetGroup], TierError> {
        let tgs = self
            .target_groups
            .get_or_try_init(|| async {
                let call = self
                    .elb
                    .describe_target_groups()
                    .names(target_group_name(&self.stack))
                    .send()
                    .await;
                let codes = ["TargetGroupNotFound"];
                Ok::<_, TierError>(
                    found("elasticloadbalancing:DescribeTargetGroups", call, &codes)?
                        .map(|o| o.target_groups().to_vec())
                        .unwrap_or_default(),
                )
            })
            .await?;
        Ok(tgs)
    }

    /// The load balancer named for the stack (none: not found).
    pub async fn load_balancers(&self) -> Result<&[LoadBalancer], TierError> {
        let lbs = self
            .load_balancers
            .get_or_try_init(|| async {
                let call = self
                    .elb
                    .describe_load_balancers()
                    .names(alb_name(&self.stack))
                    .send()
                    .await;
                let codes = ["LoadBalancerNotFound"];
                Ok::<_, TierError>(
                    found("elasticloadbalancing:DescribeLoadBalancers", call, &codes)?
                        .map(|o| o.load_balancers().to_vec())
                        .unwrap_or_default(),
                )
            })
            .await?;
        Ok(lbs)
    }

    /// The tags of a target group or load balancer found above (both read in
    /// one call the first time either is asked for).
    pub async fn tags_of(&self, arn: &str) -> Result<Pairs, TierError> {
        let all = self
            .tags
            .get_or_try_init(|| async {
                let mut arns: Vec<String> = self
                    .target_groups()
                    .await?
                    .iter()
                    .filter_map(|t| t.target_group_arn().map(str::to_string))
                    .collect();
                arns.extend(
                    self.load_balancers()
                        .await?
                        .iter()
                        .filter_map(|l| l.load_balancer_arn().map(str::to_string)),
                );
                if arns.is_empty() {
                    return Ok(HashMap::new());
                }
                tags::of(&self.elb, &arns).await
            })
            .await?;
        Ok(all.get(arn).cloned().unwrap_or_default())
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[Permission::read(
    "Read",
    &[
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeLoadBalancers",
    ],
)];
