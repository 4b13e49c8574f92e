//! What every resource kind of the tier shares: the EC2 client and the core
//! [`Work`] (spec, run, plan mode, change list), plus EC2's tag filters.

use mbstack_core::iam::Permission;
use std::ops::{Deref, DerefMut};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use mbstack_core::naming::{NAME_TAG, STACK_TAG};
use mbstack_core::{Run, StackSpec, Tier, Verb, Work};

pub(crate) struct Ctx<'a> {
    pub ec2: aws_sdk_ec2::Client,
    work: Work<'a>,
}

impl<'a> Deref for Ctx<'a> {
    type Target = Work<'a>;
    fn deref(&self) -> &Work<'a> {
        &self.work
    }
}

impl DerefMut for Ctx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.work
    }
}

impl<'a> Ctx<'a> {
    pub fn new(ec2: aws_sdk_ec2::Client, spec: &'a StackSpec, run: &'a Run, verb: Verb) -> Self {
        Self {
            ec2,
            work: Work::new(Tier::Network, spec, run, verb),
        }
    }

    pub fn into_work(self) -> Work<'a> {
        self.work
    }

    /// The run's [`Work`], for core's generic converge.
    pub fn work(&mut self) -> &mut Work<'a> {
        &mut self.work
    }
}

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
        r#"{"StringEquals": {"ec2:CreateAction": ["CreateVpc", "CreateSubnet", "CreateInternetGateway", "AllocateAddress", "CreateNatGateway", "CreateRouteTable", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress"], "aws:RequestTag/mbstack:tier": "${Tier}"}}"#,
    ),
];
