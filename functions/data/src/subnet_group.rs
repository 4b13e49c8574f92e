//! The DB subnet group over the network tier's private subnets.

use aws_sdk_rds::types::DbSubnetGroup;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, Action, TierError, Work};

use crate::tags::{pairs, rds_tags};

pub(crate) const KIND: &str = "db-subnet-group";
pub const ROLE: &str = "db";

async fn tags_of(rds: &aws_sdk_rds::Client, arn: &str) -> Result<Vec<(String, String)>, TierError> {
    let out = rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| aws_error("rds:ListTagsForResource", e))?;
    Ok(pairs(out.tag_list()))
}

/// The group and its tags, if it exists.
pub(crate) async fn find(
    rds: &aws_sdk_rds::Client,
    w: &Work<'_>,
) -> Result<Option<(DbSubnetGroup, Vec<(String, String)>)>, TierError> {
    let name = w.name(ROLE);
    let out = match rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e)
            if matches!(
                error_code(&e),
                Some("DBSubnetGroupNotFoundFault" | "DBSubnetGroupNotFound")
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(aws_error("rds:DescribeDBSubnetGroups", e)),
    };
    let Some(group) = out.db_subnet_groups().first().cloned() else {
        return Ok(None);
    };
    let tags = match group.db_subnet_group_arn() {
        Some(arn) => tags_of(rds, arn).await?,
        None => Vec::new(),
    };
    if !w.is_ours(&tags) {
        return Err(w.not_ours("DB subnet group", &name));
    }
    Ok(Some((group, tags)))
}

/// Finds or creates the group; converges its subnets. Its name (None: planned).
pub(crate) async fn ensure(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    subnets: Option<&[String]>,
) -> Result<Option<String>, TierError> {
    let name = w.name(ROLE);
    match find(rds, w).await? {
        Some((group, _)) => {
            let mut have: Vec<&str> = group
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier())
                .collect();
            have.sort();
            let mut want: Vec<&str> = subnets
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect();
            want.sort();
            if subnets.is_none() || have == want {
                w.record(
                    KIND,
                    &name,
                    Action::None,
                    format!("subnets {}", have.join(", ")),
                );
            } else {
                if !w.dry_run {
                    rds.modify_db_subnet_group()
                        .db_subnet_group_name(&name)
                        .set_subnet_ids(Some(want.iter().map(|s| s.to_string()).collect()))
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:ModifyDBSubnetGroup", e))?;
                }
                w.record(
                    KIND,
                    &name,
                    Action::Update,
                    format!("subnets {} → {}", have.join(", "), want.join(", ")),
                );
            }
            Ok(Some(name))
        }
        None => {
            let Some(subnets) = subnets.filter(|_| !w.dry_run) else {
                w.record(KIND, &name, Action::Create, "over the private subnets");
                return Ok(None);
            };
            rds.create_db_subnet_group()
                .db_subnet_group_name(&name)
                .db_subnet_group_description(format!(
                    "mbstack {}: Metabase's database, private subnets",
                    w.spec.stack
                ))
                .set_subnet_ids(Some(subnets.to_vec()))
                .set_tags(Some(rds_tags(w, ROLE)))
                .send()
                .await
                .map_err(|e| aws_error("rds:CreateDBSubnetGroup", e))?;
            w.record(
                KIND,
                &name,
                Action::Create,
                format!("subnets {}", subnets.join(", ")),
            );
            Ok(Some(name))
        }
    }
}

/// Deletes the group if destroy owns it (the instance must be gone first).
pub(crate) async fn delete(rds: &aws_sdk_rds::Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some((_, tags)) = find(rds, w).await? else {
        return Ok(());
    };
    if !w.owns(&tags) {
        return Ok(());
    }
    let name = w.name(ROLE);
    rds.delete_db_subnet_group()
        .db_subnet_group_name(&name)
        .send()
        .await
        .map_err(|e| aws_error("rds:DeleteDBSubnetGroup", e))?;
    w.record(KIND, name, Action::Delete, "");
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"],
    ),
    Permission::create_tagged("CreateTagged", &["rds:CreateDBSubnetGroup"]),
    Permission::own_tagged(
        "ChangeTagged",
        &["rds:ModifyDBSubnetGroup", "rds:DeleteDBSubnetGroup"],
    ),
];
