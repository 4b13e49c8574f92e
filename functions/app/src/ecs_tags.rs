//! ECS tags as (key, value) pairs and back.

use aws_sdk_ecs::types::Tag;
use mbstack_core::Work;

pub(crate) fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or("").to_string(),
                t.value().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn ecs_tags(w: &Work<'_>, role: &str) -> Vec<Tag> {
    w.tags(role)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}
