//! RDS tags as (key, value) pairs and back.

use aws_sdk_rds::types::Tag;
use mbstack_core::Work;

pub(crate) fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    mbstack_core::naming::pairs(tags.iter().map(|t| (t.key(), t.value())))
}

pub(crate) fn rds_tags(w: &Work<'_>, role: &str) -> Vec<Tag> {
    w.tags(role)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}
