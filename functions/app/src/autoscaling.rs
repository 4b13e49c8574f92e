//! Optional Application Auto Scaling of the service's desired count: min/max from
//! the spec and a target-tracking policy on average CPU. Paused: min = max = 0 and
//! scaling suspended, so nothing scales a paused stack back up.

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    SuspendedState, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_applicationautoscaling::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Verb, Work};

use crate::names;

fn policy_name(stack: &str) -> String {
    format!("{stack}-metabase-cpu")
}

/// The service's scalable target (and its CPU policy). It has no tags: it is
/// the service's, so it is ours when the service is (`owner`: the service's
/// tags; a destroy that finds no service any more: the stack's tag for a
/// stack's destroy, nothing for a rollback). It exists only once the service
/// does (`service_exists`).
pub(crate) struct ScalableTargets {
    pub aas: Client,
    pub service_exists: bool,
    pub owner: Vec<(String, String)>,
}

/// What the spec asks of the target.
pub(crate) struct Want {
    min: i32,
    max: i32,
    suspended: bool,
    target_cpu: f64,
}

/// What the spec asks (None: no autoscaling). Paused: min = max = 0 and
/// scaling suspended.
pub(crate) fn wanted(w: &Work<'_>) -> Option<Want> {
    let a = w.spec.app.autoscaling.as_ref()?;
    let paused = w.spec.paused;
    Some(Want {
        min: if paused { 0 } else { i32::from(a.min) },
        max: if paused { 0 } else { i32::from(a.max) },
        suspended: paused,
        target_cpu: f64::from(a.target_cpu_percent),
    })
}

/// A target as registered, with its policy's CPU target (None: no policy).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    resource: String,
    min: i32,
    max: i32,
    suspended: bool,
    target_cpu: Option<f64>,
}

/// One change in place.
pub(crate) enum Step {
    Capacity(i32, i32, bool),
    Policy(f64),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Capacity(_, _, true) => f.write_str("paused: min 0, max 0, scaling suspended"),
            Step::Capacity(min, max, false) => write!(f, "{min}..{max} tasks"),
            Step::Policy(cpu) => write!(f, "target {cpu} % CPU"),
        }
    }
}

impl ScalableTargets {
    async fn register(&self, resource: &str, want: &Want) -> Result<(), TierError> {
        let suspended = SuspendedState::builder()
            .dynamic_scaling_in_suspended(want.suspended)
            .dynamic_scaling_out_suspended(want.suspended)
            .scheduled_scaling_suspended(want.suspended)
            .build();
        self.aas
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .min_capacity(want.min)
            .max_capacity(want.max)
            .suspended_state(suspended)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:RegisterScalableTarget", e))?;
        Ok(())
    }

    async fn put_policy(&self, w: &Work<'_>, resource: &str, cpu: f64) -> Result<(), TierError> {
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(cpu)
            .predefined_metric_specification(
                PredefinedMetricSpecification::builder()
                    .predefined_metric_type(MetricType::EcsServiceAverageCpuUtilization)
                    .build()
                    .map_err(|e| {
                        TierError::Terminal(format!("building the scaling metric: {e}"))
                    })?,
            )
            .scale_in_cooldown(300)
            .scale_out_cooldown(60)
            .build()
            .map_err(|e| TierError::Terminal(format!("building the scaling policy: {e}")))?;
        self.aas
            .put_scaling_policy()
            .policy_name(policy_name(&w.spec.stack))
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:PutScalingPolicy", e))?;
        Ok(())
    }
}

impl Resource for ScalableTargets {
    const KIND: &'static str = "scalable-target";
    const LABEL: &'static str = "scalable target";
    type Live = Live;
    type Want = Want;
    type Step = Step;

    fn name(&self, w: &Work<'_>, _want: &Want) -> String {
        names::scalable_resource(&w.spec.stack)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        Some(live.resource.clone())
    }
    fn id(&self, live: &Live) -> String {
        live.resource.clone()
    }
    fn tags(&self, _live: &Live) -> Vec<(String, String)> {
        self.owner.clone()
    }

    /// The policy is read only in a converge (a destroy deregisters the target
    /// and its policies go with it).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        if !self.service_exists && w.verb != Verb::Destroy {
            return Ok(Vec::new());
        }
        let resource = names::scalable_resource(&w.spec.stack);
        let out = self
            .aas
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(&resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:DescribeScalableTargets", e))?;
        let Some(t) = out.scalable_targets().first() else {
            return Ok(Vec::new());
        };
        let target_cpu = match w.verb {
            Verb::Destroy => None,
            _ => self
                .aas
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .policy_names(policy_name(&w.spec.stack))
                .send()
                .await
                .map_err(|e| aws_error("application-autoscaling:DescribeScalingPolicies", e))?
                .scaling_policies()
                .first()
                .and_then(|p| p.target_tracking_scaling_policy_configuration())
                .map(|c| c.target_value()),
        };
        Ok(vec![Live {
            resource,
            min: t.min_capacity(),
            max: t.max_capacity(),
            suspended: t
                .suspended_state()
                .and_then(|s| s.dynamic_scaling_in_suspended())
                .unwrap_or(false),
            target_cpu,
        }])
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, want: &Want) -> Result<Vec<Step>, TierError> {
        let mut steps = Vec::new();
        if (live.min, live.max, live.suspended) != (want.min, want.max, want.suspended) {
            steps.push(Step::Capacity(want.min, want.max, want.suspended));
        }
        if live.target_cpu != Some(want.target_cpu) {
            steps.push(Step::Policy(want.target_cpu));
        }
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, want: &Want) -> String {
        if want.suspended {
            "paused: min 0, max 0, scaling suspended".into()
        } else {
            format!(
                "{}..{} tasks, target {} % CPU",
                want.min, want.max, want.target_cpu
            )
        }
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        format!(
            "{}..{} tasks, target {} % CPU",
            live.min,
            live.max,
            live.target_cpu.unwrap_or_default()
        )
    }

    /// After the service exists.
    async fn create(&self, w: &Work<'_>, want: &Want) -> Result<Live, TierError> {
        if !self.service_exists {
            return Err(TierError::Terminal(
                "autoscaling needs the ECS service, which does not exist".into(),
            ));
        }
        let resource = names::scalable_resource(&w.spec.stack);
        self.register(&resource, want).await?;
        self.put_policy(w, &resource, want.target_cpu).await?;
        Ok(Live {
            resource,
            min: want.min,
            max: want.max,
            suspended: want.suspended,
            target_cpu: Some(want.target_cpu),
        })
    }

    async fn update(
        &self,
        w: &Work<'_>,
        live: &Live,
        want: &Want,
        steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        for step in steps {
            match step {
                Step::Capacity(..) => self.register(&live.resource, want).await?,
                Step::Policy(cpu) => self.put_policy(w, &live.resource, *cpu).await?,
            }
        }
        Ok(None)
    }

    /// Its scaling policy goes with it.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.aas
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&live.resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:DeregisterScalableTarget", e))?;
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, _w: &Work<'_>, _live: &Live) -> String {
        "with its scaling policy".into()
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies"],
    ),
    // A scalable target's ARN carries a random ID: it cannot be named in advance.
    Permission {
        sid: "Autoscaling",
        actions: &[
            "application-autoscaling:RegisterScalableTarget",
            "application-autoscaling:DeregisterScalableTarget",
            "application-autoscaling:PutScalingPolicy",
        ],
        resources: mbstack_core::iam::Resources::Any,
        condition: mbstack_core::iam::Condition::Json(
            r#"{"StringEquals": {"application-autoscaling:service-namespace": "ecs"}}"#,
        ),
    },
    // Target tracking creates and deletes its alarms with the caller's rights.
    Permission::on(
        "TargetTrackingAlarms",
        &["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
        &["arn:${Partition}:cloudwatch:*:*:alarm:TargetTracking-service/*"],
    ),
    Permission::on(
        "AutoscalingServiceLinkedRole",
        &["iam:CreateServiceLinkedRole"],
        &["arn:${Partition}:iam::*:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"],
    )
    .when(r#"{"StringEquals": {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"}}"#),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use mbstack_core::spec::AutoscalingSpec;
    use mbstack_core::{StackSpec, Tier};

    fn aas() -> Client {
        Client::from_conf(
            aws_sdk_applicationautoscaling::Config::builder()
                .behavior_version(aws_sdk_applicationautoscaling::config::BehaviorVersion::latest())
                .region(aws_sdk_applicationautoscaling::config::Region::new(
                    "us-east-1",
                ))
                .build(),
        )
    }

    fn targets() -> ScalableTargets {
        ScalableTargets {
            aas: aas(),
            service_exists: true,
            owner: Vec::new(),
        }
    }

    /// A stack scaling 1..3 tasks on 60 % CPU.
    fn spec() -> StackSpec {
        let mut spec = StackSpec::new("s");
        spec.app.autoscaling = Some(AutoscalingSpec {
            min: 1,
            max: 3,
            target_cpu_percent: 60,
        });
        spec
    }

    /// The target registered as 1..3, not suspended, with a 60 % CPU policy.
    fn registered() -> Live {
        Live {
            resource: names::scalable_resource("s"),
            min: 1,
            max: 3,
            suspended: false,
            target_cpu: Some(60.0),
        }
    }

    fn shown(w: &Work<'_>, live: &Live) -> Vec<String> {
        let want = wanted(w).unwrap();
        let steps = targets().diff(w, live, &want).unwrap();
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_target_registered_as_the_spec_asks_needs_nothing() {
        let spec = spec();
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        assert!(shown(&w, &registered()).is_empty());
    }

    #[test]
    fn a_new_max_and_cpu_target_update_the_target_and_its_policy() {
        let mut spec = spec();
        spec.app.autoscaling = Some(AutoscalingSpec {
            min: 1,
            max: 5,
            target_cpu_percent: 70,
        });
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        assert_eq!(
            shown(&w, &registered()),
            vec!["1..5 tasks", "target 70 % CPU"]
        );
    }

    #[test]
    fn a_paused_stack_pins_the_target_at_zero_and_suspends_scaling() {
        let mut spec = spec();
        spec.paused = true;
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        assert_eq!(
            shown(&w, &registered()),
            vec!["paused: min 0, max 0, scaling suspended"]
        );
    }
}
