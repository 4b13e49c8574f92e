//! The ECS cluster, with the FARGATE and FARGATE_SPOT capacity providers.

use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, Cluster, ClusterField, ClusterSetting, ClusterSettingName,
};
use aws_sdk_ecs::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{aws_error, TierError, Work};

use crate::ecs_tags::{ecs_tags, pairs};
use crate::names;

const SHAPE: &str = "FARGATE, FARGATE_SPOT";

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

/// The stack's cluster (an inactive one is gone).
pub(crate) struct Clusters {
    pub ecs: Client,
}

impl Resource for Clusters {
    const KIND: &'static str = "ecs-cluster";
    const LABEL: &'static str = "ECS cluster";
    type Live = Cluster;
    type Want = ();
    type Step = NoStep;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        names::cluster(&w.spec.stack)
    }
    fn live_name(&self, live: &Cluster) -> Option<String> {
        live.cluster_name().map(str::to_string)
    }
    fn id(&self, live: &Cluster) -> String {
        live.cluster_arn().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Cluster) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Cluster>, TierError> {
        let out = self
            .ecs
            .describe_clusters()
            .clusters(names::cluster(&w.spec.stack))
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DescribeClusters", e))?;
        Ok(out
            .clusters()
            .iter()
            .filter(|c| c.status() == Some("ACTIVE"))
            .cloned()
            .collect())
    }

    fn diff(&self, _w: &Work<'_>, _live: &Cluster, _want: &()) -> Result<Vec<NoStep>, TierError> {
        Ok(vec![])
    }
    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        SHAPE.into()
    }
    fn summary(&self, _w: &Work<'_>, _live: &Cluster) -> String {
        SHAPE.into()
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Cluster, TierError> {
        let out = self
            .ecs
            .create_cluster()
            .cluster_name(names::cluster(&w.spec.stack))
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
        out.cluster()
            .cloned()
            .ok_or_else(|| TierError::Terminal("ecs:CreateCluster returned no cluster".into()))
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &Cluster,
        _want: &(),
        _steps: &[NoStep],
    ) -> Result<Option<Cluster>, TierError> {
        Ok(None)
    }

    /// Retryable while a service remains.
    async fn delete(&self, _w: &Work<'_>, live: &Cluster) -> Result<Deleted, TierError> {
        self.ecs
            .delete_cluster()
            .cluster(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("ecs:DeleteCluster", e))?;
        Ok(Deleted::Now)
    }
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
