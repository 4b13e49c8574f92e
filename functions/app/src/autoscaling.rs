//! Optional Application Auto Scaling of the service's desired count: min/max from
//! the spec and a target-tracking policy on average CPU. Paused: min = max = 0 and
//! scaling suspended, so nothing scales a paused stack back up.

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    SuspendedState, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_applicationautoscaling::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError, Work};

use crate::names;

pub(crate) const KIND: &str = "scalable-target";

fn policy_name(stack: &str) -> String {
    format!("{stack}-metabase-cpu")
}

async fn find(aas: &Client, w: &Work<'_>) -> Result<Option<(i32, i32, bool)>, TierError> {
    let out = aas
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(names::scalable_resource(&w.spec.stack))
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| aws_error("application-autoscaling:DescribeScalableTargets", e))?;
    Ok(out.scalable_targets().first().map(|t| {
        let suspended = t
            .suspended_state()
            .and_then(|s| s.dynamic_scaling_in_suspended())
            .unwrap_or(false);
        (t.min_capacity(), t.max_capacity(), suspended)
    }))
}

/// Converges the scalable target and its policy (after the service exists).
pub(crate) async fn ensure(
    aas: &Client,
    w: &mut Work<'_>,
    service_exists: bool,
) -> Result<(), TierError> {
    let resource = names::scalable_resource(&w.spec.stack);
    let existing = if service_exists {
        find(aas, w).await?
    } else {
        None
    };
    let Some(a) = w.spec.app.autoscaling.clone() else {
        if existing.is_some() {
            if !w.dry_run {
                deregister(aas, &resource).await?;
            }
            w.record(
                KIND,
                &resource,
                Action::Delete,
                "autoscaling is no longer in the spec",
            );
        }
        return Ok(());
    };
    let paused = w.spec.paused;
    let want = if paused {
        (0, 0, true)
    } else {
        (i32::from(a.min), i32::from(a.max), false)
    };
    let detail = if paused {
        "paused: min 0, max 0, scaling suspended".to_string()
    } else {
        format!(
            "{}..{} tasks, target {} % CPU",
            a.min, a.max, a.target_cpu_percent
        )
    };
    let action = match existing {
        None => Action::Create,
        Some(have) if have == want => Action::None,
        Some(_) => Action::Update,
    };
    if action != Action::None && !w.dry_run && service_exists {
        let suspended = SuspendedState::builder()
            .dynamic_scaling_in_suspended(want.2)
            .dynamic_scaling_out_suspended(want.2)
            .scheduled_scaling_suspended(want.2)
            .build();
        aas.register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .min_capacity(want.0)
            .max_capacity(want.1)
            .suspended_state(suspended)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:RegisterScalableTarget", e))?;
    }
    // The policy: read it only when the target existed before.
    let policy_ok = match existing {
        Some(_) => {
            let out = aas
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .policy_names(policy_name(&w.spec.stack))
                .send()
                .await
                .map_err(|e| aws_error("application-autoscaling:DescribeScalingPolicies", e))?;
            out.scaling_policies()
                .first()
                .and_then(|p| p.target_tracking_scaling_policy_configuration())
                .map(|c| c.target_value())
                == Some(f64::from(a.target_cpu_percent))
        }
        None => false,
    };
    if !policy_ok && !w.dry_run && service_exists {
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(f64::from(a.target_cpu_percent))
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
        aas.put_scaling_policy()
            .policy_name(policy_name(&w.spec.stack))
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .send()
            .await
            .map_err(|e| aws_error("application-autoscaling:PutScalingPolicy", e))?;
    }
    let action = if action == Action::None && !policy_ok {
        Action::Update
    } else {
        action
    };
    w.record(KIND, &resource, action, detail);
    Ok(())
}

async fn deregister(aas: &Client, resource: &str) -> Result<(), TierError> {
    aas.deregister_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(resource)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| aws_error("application-autoscaling:DeregisterScalableTarget", e))?;
    Ok(())
}

/// Deregisters the scalable target (its policies go with it) when destroy deletes
/// the service.
pub(crate) async fn delete(
    aas: &Client,
    w: &mut Work<'_>,
    service_owned: bool,
) -> Result<(), TierError> {
    if !service_owned || find(aas, w).await?.is_none() {
        return Ok(());
    }
    let resource = names::scalable_resource(&w.spec.stack);
    deregister(aas, &resource).await?;
    w.record(KIND, resource, Action::Delete, "with its scaling policy");
    Ok(())
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
