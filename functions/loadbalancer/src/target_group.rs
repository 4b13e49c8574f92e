//! The target group Metabase's tasks register in: ip targets, HTTP :3000.
//!
//! Health check, chosen for Metabase: `GET /api/health` answers 503 while Metabase
//! starts (first boot runs migrations for minutes) and 200 when ready. ECS's
//! health-check grace period covers the start; here a check every 30 s with a
//! 10 s timeout (a busy JVM answers slowly), healthy after 2 passes (~1 min), and
//! unhealthy only after 5 failures (2.5 min), so a long GC pause or a heavy query
//! does not get a working task replaced. Deregistration delay 30 s (not 300):
//! Metabase requests are short and a deploy or destroy should not wait 5 minutes.

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroup, TargetGroupAttribute, TargetTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::target_group_name;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Verb, Work};

use crate::tags::{elb_tags, pairs, Pairs};

const ROLE: &str = "tg";
pub const PORT: i32 = 3000;
pub const HEALTH_PATH: &str = "/api/health";
pub const HEALTH_INTERVAL: i32 = 30;
pub const HEALTH_TIMEOUT: i32 = 10;
pub const HEALTHY_THRESHOLD: i32 = 2;
pub const UNHEALTHY_THRESHOLD: i32 = 5;
pub const DEREGISTRATION_DELAY: &str = "30";

fn health_differs(tg: &TargetGroup) -> Vec<String> {
    let number = |v: Option<i32>| v.map(|v| v.to_string());
    [
        (
            "health path",
            tg.health_check_path().map(str::to_string),
            HEALTH_PATH.to_string(),
        ),
        (
            "health protocol",
            tg.health_check_protocol().map(|p| p.as_str().to_string()),
            "HTTP".into(),
        ),
        (
            "interval",
            number(tg.health_check_interval_seconds()),
            HEALTH_INTERVAL.to_string(),
        ),
        (
            "timeout",
            number(tg.health_check_timeout_seconds()),
            HEALTH_TIMEOUT.to_string(),
        ),
        (
            "healthy threshold",
            number(tg.healthy_threshold_count()),
            HEALTHY_THRESHOLD.to_string(),
        ),
        (
            "unhealthy threshold",
            number(tg.unhealthy_threshold_count()),
            UNHEALTHY_THRESHOLD.to_string(),
        ),
        (
            "matcher",
            tg.matcher().and_then(|m| m.http_code()).map(str::to_string),
            "200".into(),
        ),
    ]
    .into_iter()
    .filter(|(_, have, want)| have.as_deref() != Some(want.as_str()))
    .map(|(what, have, want)| format!("{what} {} → {want}", have.unwrap_or_else(|| "unset".into())))
    .collect()
}

const ATTRIBUTES: &[(&str, &str)] = &[
    ("deregistration_delay.timeout_seconds", DEREGISTRATION_DELAY),
    ("stickiness.enabled", "false"),
];

/// The stack's target group, in the VPC `vpc_id` (None: planned).
pub(crate) struct TargetGroups {
    pub elb: Client,
    pub reads: std::sync::Arc<crate::reads::Reads>,
    pub vpc_id: Option<String>,
}

/// A target group with its tags and attributes (read apart).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    tg: TargetGroup,
    tags: Pairs,
    attributes: Pairs,
}

/// One change in place.
pub(crate) enum Step {
    /// The health check differs (what, shown): one ModifyTargetGroup sets it all.
    Health(String),
    Attribute(&'static str, &'static str),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Health(what) => f.write_str(what),
            Step::Attribute(k, v) => write!(f, "{k} → {v}"),
        }
    }
}

impl TargetGroups {
    async fn set_attributes(&self, arn: &str, attrs: &[(&str, &str)]) -> Result<(), TierError> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .set_attributes(Some(
                attrs
                    .iter()
                    .map(|(k, v)| TargetGroupAttribute::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:ModifyTargetGroupAttributes", e))?;
        Ok(())
    }
}

const SHAPE: &str = "ip targets, HTTP :3000, health /api/health";

impl Resource for TargetGroups {
    const KIND: &'static str = "target-group";
    const LABEL: &'static str = "target group";
    type Live = Live;
    type Want = ();
    type Step = Step;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        target_group_name(&w.spec.stack)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        live.tg.target_group_name().map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.tg.target_group_arn().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let mut groups = Vec::new();
        for tg in self.reads.target_groups().await? {
            let arn = tg.target_group_arn().unwrap_or_default().to_string();
            let t = self.reads.tags_of(&arn).await?;
            // A destroy deletes it whatever its attributes.
            let attributes = match w.verb {
                Verb::Destroy => Vec::new(),
                _ => pairs(
                    self.elb
                        .describe_target_group_attributes()
                        .target_group_arn(&arn)
                        .send()
                        .await
                        .map_err(|e| {
                            aws_error("elasticloadbalancing:DescribeTargetGroupAttributes", e)
                        })?
                        .attributes()
                        .iter()
                        .map(|a| (a.key(), a.value())),
                ),
            };
            groups.push(Live {
                tg: tg.clone(),
                tags: t,
                attributes,
            });
        }
        Ok(groups)
    }

    fn diff(&self, w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Step>, TierError> {
        let tg = &live.tg;
        let fixed = tg.port() == Some(PORT)
            && tg.target_type() == Some(&TargetTypeEnum::Ip)
            && (self.vpc_id.is_none() || tg.vpc_id() == self.vpc_id.as_deref());
        if !fixed {
            return Err(TierError::Terminal(format!(
                "target group {} is not ip targets on :{PORT} in the stack's VPC (changed outside mbstack?): delete it and apply again",
                self.name(w, &())
            )));
        }
        let mut steps: Vec<Step> = health_differs(tg).into_iter().map(Step::Health).collect();
        steps.extend(
            ATTRIBUTES
                .iter()
                .filter(|(k, v)| !live.attributes.iter().any(|(hk, hv)| hk == k && hv == v))
                .map(|(k, v)| Step::Attribute(k, v)),
        );
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        SHAPE.into()
    }
    fn summary(&self, _w: &Work<'_>, _live: &Live) -> String {
        SHAPE.into()
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let vpc = self.vpc_id.as_deref().ok_or_else(|| {
            TierError::Terminal("the target group needs the network's VPC".into())
        })?;
        let out = self
            .elb
            .create_target_group()
            .name(target_group_name(&w.spec.stack))
            .protocol(ProtocolEnum::Http)
            .port(PORT)
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Ip)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(HEALTH_PATH)
            .health_check_interval_seconds(HEALTH_INTERVAL)
            .health_check_timeout_seconds(HEALTH_TIMEOUT)
            .healthy_threshold_count(HEALTHY_THRESHOLD)
            .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
            .matcher(Matcher::builder().http_code("200").build())
            .set_tags(Some(elb_tags(w, ROLE)))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:CreateTargetGroup", e))?;
        let tg = out.target_groups().first().cloned().ok_or_else(|| {
            TierError::Terminal(
                "elasticloadbalancing:CreateTargetGroup returned no target group".into(),
            )
        })?;
        self.set_attributes(tg.target_group_arn().unwrap_or_default(), ATTRIBUTES)
            .await?;
        Ok(Live {
            tg,
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
        if steps.iter().any(|s| matches!(s, Step::Health(_))) {
            self.elb
                .modify_target_group()
                .target_group_arn(&arn)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path(HEALTH_PATH)
                .health_check_interval_seconds(HEALTH_INTERVAL)
                .health_check_timeout_seconds(HEALTH_TIMEOUT)
                .healthy_threshold_count(HEALTHY_THRESHOLD)
                .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
                .matcher(Matcher::builder().http_code("200").build())
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:ModifyTargetGroup", e))?;
        }
        let attrs: Vec<(&str, &str)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Attribute(k, v) => Some((*k, *v)),
                Step::Health(_) => None,
            })
            .collect();
        self.set_attributes(&arn, &attrs).await?;
        Ok(None)
    }

    /// `ResourceInUse` (a listener or an ECS service still uses it) is
    /// retryable: destroy reports pending.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.elb
            .delete_target_group()
            .target_group_arn(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DeleteTargetGroup", e))?;
        Ok(Deleted::Now)
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["elasticloadbalancing:DescribeTargetGroupAttributes"],
    ),
    Permission::create_tagged("CreateTagged", &["elasticloadbalancing:CreateTargetGroup"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:DeleteTargetGroup",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{elb, run};
    use aws_sdk_elasticloadbalancingv2::types::builders::TargetGroupBuilder;
    use mbstack_core::{StackSpec, Tier};

    fn tgs() -> TargetGroups {
        let elb = elb();
        TargetGroups {
            reads: crate::reads::Reads::new(elb.clone(), "s"),
            elb,
            vpc_id: Some("vpc-1".into()),
        }
    }

    /// The target group as made for Metabase: ip targets on :3000 in vpc-1,
    /// checked on GET /api/health every 30 s (10 s timeout), healthy after
    /// 2 passes, unhealthy after 5 failures, 200 only.
    fn as_created() -> TargetGroupBuilder {
        TargetGroup::builder()
            .target_group_name("s-tg")
            .target_group_arn(
                "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/s-tg/0123456789abcdef",
            )
            .protocol(ProtocolEnum::Http)
            .port(3000)
            .vpc_id("vpc-1")
            .target_type(TargetTypeEnum::Ip)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path("/api/health")
            .health_check_interval_seconds(30)
            .health_check_timeout_seconds(10)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(5)
            .matcher(Matcher::builder().http_code("200").build())
    }

    /// A deregistration delay of `delay` s, no stickiness.
    fn live(tg: TargetGroupBuilder, delay: &str) -> Live {
        Live {
            tg: tg.build(),
            tags: Vec::new(),
            attributes: vec![
                ("deregistration_delay.timeout_seconds".into(), delay.into()),
                ("stickiness.enabled".into(), "false".into()),
                ("load_balancing.algorithm.type".into(), "round_robin".into()),
            ],
        }
    }

    #[test]
    fn a_target_group_as_made_for_metabase_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let steps = tgs().diff(&w, &live(as_created(), "30"), &()).unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_drifted_health_check_and_deregistration_delay_are_set_back() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let drifted = as_created()
            .health_check_path("/")
            .unhealthy_threshold_count(2);
        let steps = tgs().diff(&w, &live(drifted, "300"), &()).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "health path / → /api/health",
                "unhealthy threshold 2 → 5",
                "deregistration_delay.timeout_seconds → 30",
            ]
        );
    }

    #[test]
    fn a_target_group_on_another_port_or_vpc_cannot_be_changed_in_place() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        for tg in [as_created().port(80), as_created().vpc_id("vpc-other")] {
            let err = tgs()
                .diff(&w, &live(tg, "30"), &())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("target group s-tg"), "{err}");
            assert!(err.contains("delete it and apply again"), "{err}");
        }
    }
}
