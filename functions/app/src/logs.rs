//! The CloudWatch log group the Metabase container logs to.

use aws_sdk_cloudwatchlogs::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError, Work};

use crate::names;

pub(crate) const KIND: &str = "log-group";

/// The group's ARN (without `:*`) and retention, if it exists and is ours.
async fn find(
    logs: &Client,
    w: &Work<'_>,
) -> Result<Option<(String, Option<i32>, Vec<(String, String)>)>, TierError> {
    let name = names::log_group(&w.spec.stack);
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .map_err(|e| aws_error("logs:DescribeLogGroups", e))?;
    let Some(g) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    let arn = g
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .unwrap_or_default();
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("logs:ListTagsForResource", e))?;
    let pairs: Vec<(String, String)> = tags
        .tags()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if !w.is_ours(&pairs) {
        return Err(w.not_ours("log group", &name));
    }
    Ok(Some((arn, g.retention_in_days(), pairs)))
}

pub(crate) async fn ensure(logs: &Client, w: &mut Work<'_>) -> Result<String, TierError> {
    let name = names::log_group(&w.spec.stack);
    let want = i32::from(w.spec.app.log_retention_days);
    match find(logs, w).await? {
        Some((_, retention, _)) if retention == Some(want) => {
            w.record(KIND, &name, Action::None, format!("retention {want} days"))
        }
        Some((_, retention, _)) => {
            if !w.dry_run {
                set_retention(logs, &name, want).await?;
            }
            w.record(
                KIND,
                &name,
                Action::Update,
                format!(
                    "retention {} → {want} days",
                    retention
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "never expire".into())
                ),
            );
        }
        None => {
            if !w.dry_run {
                logs.create_log_group()
                    .log_group_name(&name)
                    .set_tags(Some(w.tags("logs").into_iter().collect()))
                    .send()
                    .await
                    .map_err(|e| aws_error("logs:CreateLogGroup", e))?;
                set_retention(logs, &name, want).await?;
            }
            w.record(
                KIND,
                &name,
                Action::Create,
                format!("retention {want} days"),
            );
        }
    }
    Ok(name)
}

async fn set_retention(logs: &Client, name: &str, days: i32) -> Result<(), TierError> {
    logs.put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(|e| aws_error("logs:PutRetentionPolicy", e))?;
    Ok(())
}

pub(crate) async fn delete(logs: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some((_, _, tags)) = find(logs, w).await? else {
        return Ok(());
    };
    if !w.owns(&tags) {
        return Ok(());
    }
    let name = names::log_group(&w.spec.stack);
    logs.delete_log_group()
        .log_group_name(&name)
        .send()
        .await
        .map_err(|e| aws_error("logs:DeleteLogGroup", e))?;
    w.record(KIND, name, Action::Delete, "");
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["logs:DescribeLogGroups"]),
    Permission::on(
        "LogGroup",
        &[
            "logs:CreateLogGroup",
            "logs:PutRetentionPolicy",
            "logs:DeleteLogGroup",
            "logs:ListTagsForResource",
            "logs:TagResource",
        ],
        &["arn:${Partition}:logs:*:*:log-group:/mbstack/*"],
    ),
];
