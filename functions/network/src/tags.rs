//! EC2's tags and filters as every resource kind of the tier uses them: tags in
//! the creating call, the stack's tag filter, tags as (key, value) pairs.

use mbstack_core::iam::Permission;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use mbstack_core::naming::{NAME_TAG, STACK_TAG};
use mbstack_core::Work;

/// Tags for a resource created now, in the creating call itself.
pub(crate) fn tag_spec(w: &Work<'_>, kind: ResourceType, role: &str) -> TagSpecification {
    let tags = w
        .tags(role)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

/// Every resource of this stack.
pub(crate) fn stack_filter(w: &Work<'_>) -> Filter {
    tag_filter(STACK_TAG, &w.spec.stack)
}

/// The one resource of this stack named `<stack>-<role>`.
pub(crate) fn name_filter(w: &Work<'_>, role: &str) -> Filter {
    tag_filter(NAME_TAG, &w.name(role))
}

/// EC2's tags as (key, value) pairs, as core compares them.
pub(crate) fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    mbstack_core::naming::pairs(tags.iter().map(|t| (t.key(), t.value())))
}

pub(crate) fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

pub(crate) fn tag<'t>(tags: &'t [Tag], key: &str) -> Option<&'t str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The Name tag, for messages.
pub(crate) fn name_of(tags: &[Tag]) -> &str {
    tag(tags, NAME_TAG).unwrap_or("(unnamed)")
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    // Tags only in the creating call: CreateTags can never stamp the tier's
    // tag on a resource that exists (and so bring it under the tier's rights).
    Permission::create_tagged("TagOnCreate", &["ec2:CreateTags"]).when(
        r#"{"StringEquals": {"ec2:CreateAction": ["CreateVpc", "CreateSubnet", "CreateInternetGateway", "AllocateAddress", "CreateNatGateway", "CreateRouteTable", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "CreateNetworkInterface", "RunInstances"], "aws:RequestTag/mbstack:tier": "${Tier}"}}"#,
    ),
];
