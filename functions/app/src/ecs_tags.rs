//! ECS tags as (key, value) pairs and back.

use aws_sdk_ecs::types::Tag;
use mbstack_core::iam::Permission;
use mbstack_core::Work;

pub(crate) fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    mbstack_core::naming::pairs(tags.iter().map(|t| (t.key(), t.value())))
}

pub(crate) fn ecs_tags(w: &Work<'_>, role: &str) -> Vec<Tag> {
    w.tags(role)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    // Tags only in the creating call.
    Permission::create_tagged("TagOnCreate", &["ecs:TagResource"]).when(
        r#"{"StringEquals": {"ecs:CreateAction": ["CreateCluster", "CreateService", "RegisterTaskDefinition"], "aws:RequestTag/mbstack:tier": "${Tier}"}}"#,
    ),
];
