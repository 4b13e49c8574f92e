//! The ECS cluster, with the FARGATE and FARGATE_SPOT capacity providers.

use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, ClusterField, ClusterSetting, ClusterSettingName,
};
use aws_sdk_ecs::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError, Work};

use crate::ecs_tags::{ecs_tags, pairs};
use crate::names;

pub(crate) const KIND: &str = "ecs-cluster";

/// FARGATE, or FARGATE_SPOT when the spec asks for cheap interruptible capacity.
pub(crate) fn strategy(w: &Work<'_>) -> Result<CapacityProviderStrategyItem, TierError> {
    CapacityProviderStrategyItem::builder()
        .capacity_provider(provider(w))
        .weight(1)
        .build()
        .map_err(|e| TierError::Terminal(format!("building the capacity provider strategy: {e}")))
}

pub(crate) fn provider(w: &Work<'_>) -> &'static str {
    if w.spec.app.spot {
        "FARGATE_SPOT"
    } else {
        "FARGATE"
    }
}

async fn find(
    ecs: &Client,
    w: &Work<'_>,
) -> Result<Option<(String, Vec<(String, String)>)>, TierError> {
    let name = names::cluster(&w.spec.stack);
    let out = ecs
        .describe_clusters()
        .clusters(&name)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| aws_error("ecs:DescribeClusters", e))?;
    let Some(c) = out.clusters().iter().find(|c| c.status() == Some("ACTIVE")) else {
        return Ok(None);
    };
    let tags = pairs(c.tags());
    if !w.is_ours(&tags) {
        return Err(w.not_ours("ECS cluster", &name));
    }
    Ok(Some((
        c.cluster_arn().unwrap_or_default().to_string(),
        tags,
    )))
}

pub(crate) async fn ensure(ecs: &Client, w: &mut Work<'_>) -> Result<Option<String>, TierError> {
    let name = names::cluster(&w.spec.stack);
    if let Some((arn, _)) = find(ecs, w).await? {
        w.record(KIND, &arn, Action::None, "FARGATE, FARGATE_SPOT");
        return Ok(Some(arn));
    }
    if w.dry_run {
        w.record(KIND, &name, Action::Create, "FARGATE, FARGATE_SPOT");
        return Ok(None);
    }
    let out = ecs
        .create_cluster()
        .cluster_name(&name)
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .default_capacity_provider_strategy(strategy(w)?)
        .settings(
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value("disabled")
                .build(),
        )
        .set_tags(Some(ecs_tags(w, "cluster")))
        .send()
        .await
        .map_err(|e| aws_error("ecs:CreateCluster", e))?;
    let arn = out
        .cluster()
        .and_then(|c| c.cluster_arn())
        .unwrap_or_default()
        .to_string();
    w.record(KIND, &arn, Action::Create, "FARGATE, FARGATE_SPOT");
    Ok(Some(arn))
}

/// Deletes the cluster if destroy owns it; retryable while a service remains.
pub(crate) async fn delete(ecs: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some((arn, tags)) = find(ecs, w).await? else {
        return Ok(());
    };
    if !w.owns(&tags) {
        return Ok(());
    }
    ecs.delete_cluster()
        .cluster(&arn)
        .send()
        .await
        .map_err(|e| aws_error("ecs:DeleteCluster", e))?;
    w.record(KIND, arn, Action::Delete, "");
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ecs:DescribeClusters"]),
    Permission::create_tagged("CreateTagged", &["ecs:CreateCluster"]),
    Permission::own_tagged("ChangeTagged", &["ecs:DeleteCluster"]),
    // The first cluster of an account creates ECS's service-linked role.
    Permission::on(
        "EcsServiceLinkedRole",
        &["iam:CreateServiceLinkedRole"],
        &["arn:${Partition}:iam::*:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"],
    )
    .when(r#"{"StringEquals": {"iam:AWSServiceName": "ecs.amazonaws.com"}}"#),
];
