//! ELBv2 tags: (key, value) pairs of any resource by ARN, and ours for creation.

use mbstack_core::iam::Permission;
use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::Tag;
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::{aws_error, TierError, Work};

pub(crate) type Pairs = Vec<(String, String)>;

pub(crate) fn elb_tags(w: &Work<'_>, role: &str) -> Vec<Tag> {
    w.tags(role)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags of up to 20 resources per call, by ARN.
pub(crate) async fn of(elb: &Client, arns: &[String]) -> Result<HashMap<String, Pairs>, TierError> {
    let mut out = HashMap::new();
    for chunk in arns.chunks(20) {
        let r = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeTags", e))?;
        for d in r.tag_descriptions() {
            let tags = pairs(d.tags().iter().map(|t| (t.key(), t.value())));
            out.insert(d.resource_arn().unwrap_or("").to_string(), tags);
        }
    }
    Ok(out)
}

pub(crate) use mbstack_core::naming::pairs;

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["elasticloadbalancing:DescribeTags"]),
    // Tags only in the creating call.
    Permission::create_tagged("TagOnCreate", &["elasticloadbalancing:AddTags"]).when(
        r#"{"StringEquals": {"elasticloadbalancing:CreateAction": ["CreateLoadBalancer", "CreateTargetGroup", "CreateListener"], "aws:RequestTag/mbstack:tier": "${Tier}"}}"#,
    ),
];
