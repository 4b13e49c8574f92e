//! What every resource kind of the tier shares: the client, the spec, the run, plan
//! mode, tag filters and the change list.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use mbstack_core::naming::{self, CREATED_BY_TAG, NAME_TAG, STACK_TAG};
use mbstack_core::{Action, Change, Run, Scope, StackSpec, Tier};

pub(crate) struct Ctx<'a> {
    pub ec2: aws_sdk_ec2::Client,
    pub spec: &'a StackSpec,
    pub run: &'a Run,
    /// Plan: read, never write; record what apply would do.
    pub dry_run: bool,
    pub changes: Vec<Change>,
}

impl<'a> Ctx<'a> {
    pub fn new(ec2: aws_sdk_ec2::Client, spec: &'a StackSpec, run: &'a Run, dry_run: bool) -> Self {
        Self {
            ec2,
            spec,
            run,
            dry_run,
            changes: Vec::new(),
        }
    }

    /// `<stack>-<role>`.
    pub fn name(&self, role: &str) -> String {
        naming::resource_name(&self.spec.stack, role)
    }

    /// Tags for a resource created now, in the creating call itself.
    pub fn tag_spec(&self, kind: ResourceType, role: &str) -> TagSpecification {
        let tags = naming::tags(self.spec, Tier::Network, &self.run.id, role)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags))
            .build()
    }

    /// Every resource of this stack.
    pub fn stack_filter(&self) -> Filter {
        tag_filter(STACK_TAG, &self.spec.stack)
    }

    /// The one resource of this stack named `<stack>-<role>`.
    pub fn name_filter(&self, role: &str) -> Filter {
        tag_filter(NAME_TAG, &self.name(role))
    }

    pub fn record(
        &mut self,
        kind: &str,
        id: impl Into<String>,
        action: Action,
        detail: impl Into<String>,
    ) {
        self.changes.push(Change::new(kind, id, action, detail));
    }

    /// Whether destroy may delete a resource with these tags: every resource of
    /// the stack (scope stack), or only those this run created (scope run).
    pub fn owns(&self, tags: &[Tag]) -> bool {
        tag(tags, STACK_TAG) == Some(self.spec.stack.as_str())
            && match self.run.scope {
                Scope::Stack => true,
                Scope::Run => tag(tags, CREATED_BY_TAG) == Some(self.run.id.as_str()),
            }
    }
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

impl Ctx<'_> {
    /// The resources of this stack among `items`. Server-side tag filters are not
    /// enough to stand on (moto ignores them for NAT gateways, for one): nothing
    /// is touched that does not carry our stack tag.
    pub fn only_ours<T: Clone>(&self, items: &[T], tags: impl Fn(&T) -> &[Tag]) -> Vec<T> {
        items
            .iter()
            .filter(|i| self.owns_any(tags(i)))
            .cloned()
            .collect()
    }

    /// Whether a resource belongs to this stack, whoever created it.
    pub fn owns_any(&self, tags: &[Tag]) -> bool {
        tag(tags, STACK_TAG) == Some(self.spec.stack.as_str())
    }
}
