//! The RDS PostgreSQL instance: encrypted gp3 storage, private, `DBName=metabase`,
//! its master password kept by RDS in Secrets Manager (ManageMasterUserPassword),
//! so no password ever exists outside Secrets Manager.

use aws_sdk_rds::types::DbInstance;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, Action, Readiness, TierError, Work};

use crate::tags::{pairs, rds_tags};

pub(crate) const KIND: &str = "db-instance";
const ROLE: &str = "db";
pub(crate) const DB_NAME: &str = "metabase";
pub(crate) const MASTER_USER: &str = "metabase";
const BACKUP_WINDOW: &str = "03:00-03:30";
const MAINTENANCE_WINDOW: &str = "sun:04:00-sun:04:30";

/// What a DB status means for a run.
/// Statuses from which RDS will not come back by itself.
const FAILED: &[&str] = &[
    "failed",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "storage-full",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "restore-error",
];

/// The readiness of an instance in `status` for a spec that is (not) paused.
/// `storage-optimization` is usable (it lasts hours after a storage change), so
/// it counts as available.
pub fn readiness(id: &str, status: &str, paused: bool) -> Readiness {
    match (status, paused) {
        ("available" | "storage-optimization", false) | ("stopped", true) => Readiness::Ready,
        ("available" | "storage-optimization", true) => Readiness::Pending(format!("waiting for DB {id} to stop: {status}")),
        ("stopped", false) => Readiness::Pending(format!("waiting for DB {id} to start: stopped")),
        ("deleting", _) => Readiness::Failed(format!("DB {id} is being deleted")),
        (s, _) if FAILED.contains(&s) => Readiness::Failed(format!(
            "DB {id} is {s}: RDS will not recover it by itself (see the RDS console's events for the instance)"
        )),
        (s, _) => Readiness::Pending(format!("waiting for DB {id}: {s}")),
    }
}

/// The instance and its tags, if it exists.
pub(crate) async fn find(
    rds: &aws_sdk_rds::Client,
    w: &Work<'_>,
) -> Result<Option<(DbInstance, Vec<(String, String)>)>, TierError> {
    let id = w.name(ROLE);
    let out = match rds
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e)
            if matches!(
                error_code(&e),
                Some("DBInstanceNotFound" | "DBInstanceNotFoundFault")
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(aws_error("rds:DescribeDBInstances", e)),
    };
    let Some(db) = out.db_instances().first().cloned() else {
        return Ok(None);
    };
    let tags = pairs(db.tag_list());
    if !w.is_ours(&tags) {
        return Err(w.not_ours("DB instance", &id));
    }
    Ok(Some((db, tags)))
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

fn minor(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

/// Finds or creates the instance and converges what can change in place.
pub(crate) async fn ensure(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    subnet_group: Option<&str>,
    security_group: Option<&str>,
) -> Result<Option<DbInstance>, TierError> {
    let id = w.name(ROLE);
    if let Some((db, _)) = find(rds, w).await? {
        converge(rds, w, &db).await?;
        return Ok(Some(db));
    }
    let (Some(group), Some(sg), false) = (subnet_group, security_group, w.dry_run) else {
        w.record(KIND, &id, Action::Create, describe(w));
        return Ok(None);
    };
    let d = &w.spec.database;
    let out = rds
        .create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .engine_version(&d.engine_version)
        .db_instance_class(&d.instance_class)
        .allocated_storage(d.storage_gib as i32)
        .storage_type("gp3")
        .storage_encrypted(true)
        .publicly_accessible(false)
        .db_name(DB_NAME)
        .master_username(MASTER_USER)
        .manage_master_user_password(true)
        .db_subnet_group_name(group)
        .vpc_security_group_ids(sg)
        .backup_retention_period(i32::from(d.backup_retention_days))
        .preferred_backup_window(BACKUP_WINDOW)
        .preferred_maintenance_window(MAINTENANCE_WINDOW)
        .auto_minor_version_upgrade(true)
        .deletion_protection(d.deletion_protection)
        .multi_az(d.multi_az)
        .copy_tags_to_snapshot(true)
        .enable_performance_insights(false)
        .set_tags(Some(rds_tags(w, ROLE)))
        .send()
        .await
        .map_err(|e| aws_error("rds:CreateDBInstance", e))?;
    w.record(KIND, &id, Action::Create, describe(w));
    Ok(out.db_instance().cloned())
}

fn describe(w: &Work<'_>) -> String {
    let d = &w.spec.database;
    format!(
        "PostgreSQL {} on {}, {} GiB gp3 encrypted, {}, backups {} days",
        d.engine_version,
        d.instance_class,
        d.storage_gib,
        if d.multi_az { "Multi-AZ" } else { "single-AZ" },
        d.backup_retention_days
    )
}

/// Modifies what differs from the spec (ApplyImmediately), stops or starts it for
/// `paused`; refuses what cannot change in place.
async fn converge(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    db: &DbInstance,
) -> Result<(), TierError> {
    let id = db.db_instance_identifier().unwrap_or_default().to_string();
    let d = &w.spec.database;
    if db.storage_encrypted() == Some(false) {
        return Err(TierError::Refused(format!(
            "DB {id} is not encrypted and encryption cannot be turned on in place: restore a snapshot into an encrypted copy"
        )));
    }
    let mut call = rds
        .modify_db_instance()
        .db_instance_identifier(&id)
        .apply_immediately(true);
    let mut steps = Vec::new();
    if db.db_instance_class() != Some(d.instance_class.as_str()) {
        steps.push(format!(
            "class {} → {}",
            db.db_instance_class().unwrap_or("?"),
            d.instance_class
        ));
        call = call.db_instance_class(&d.instance_class);
    }
    let storage = db.allocated_storage().unwrap_or(0);
    let want_storage = d.storage_gib as i32;
    if want_storage < storage {
        return Err(TierError::Refused(format!(
            "DB {id} has {storage} GiB and RDS storage cannot shrink: set database.storageGib to {storage} or more"
        )));
    } else if want_storage > storage {
        steps.push(format!("storage {storage} → {want_storage} GiB"));
        call = call.allocated_storage(want_storage);
    }
    if db.backup_retention_period() != Some(i32::from(d.backup_retention_days)) {
        steps.push(format!(
            "backup retention {} → {} days",
            db.backup_retention_period().unwrap_or(0),
            d.backup_retention_days
        ));
        call = call.backup_retention_period(i32::from(d.backup_retention_days));
    }
    if db.deletion_protection() != Some(d.deletion_protection) {
        steps.push(format!(
            "deletion protection → {}",
            if d.deletion_protection { "on" } else { "off" }
        ));
        call = call.deletion_protection(d.deletion_protection);
    }
    if db.multi_az() != Some(d.multi_az) {
        steps.push(format!("Multi-AZ → {}", d.multi_az));
        call = call.multi_az(d.multi_az);
    }
    let current = db.engine_version().unwrap_or("");
    match (major(current), major(&d.engine_version)) {
        (Some(have), Some(want)) if want < have => {
            return Err(TierError::Refused(format!(
                "DB {id} runs PostgreSQL {current}; an engine cannot be downgraded: set database.engineVersion to \"{have}\" or later"
            )))
        }
        (Some(have), Some(want)) if want > have => {
            steps.push(format!("engine {current} → {} (major upgrade)", d.engine_version));
            call = call.engine_version(&d.engine_version).allow_major_version_upgrade(true);
        }
        _ => {
            if let (Some(want), Some(have)) = (minor(&d.engine_version), minor(current)) {
                if want > have {
                    steps.push(format!("engine {current} → {}", d.engine_version));
                    call = call.engine_version(&d.engine_version);
                }
            }
        }
    }
    if !steps.is_empty() {
        if !w.dry_run {
            call.send()
                .await
                .map_err(|e| aws_error("rds:ModifyDBInstance", e))?;
        }
        w.record(KIND, &id, Action::Update, steps.join("; "));
    }

    // Pause and resume. RDS restarts a stopped instance after 7 days; a scheduled
    // re-pause (apply with paused) stops it again.
    let status = db.db_instance_status().unwrap_or("");
    if w.spec.paused && status == "available" {
        if !w.dry_run {
            rds.stop_db_instance()
                .db_instance_identifier(&id)
                .send()
                .await
                .map_err(|e| aws_error("rds:StopDBInstance", e))?;
        }
        w.record(KIND, &id, Action::Update, "stop (paused)");
    } else if !w.spec.paused && status == "stopped" {
        if !w.dry_run {
            rds.start_db_instance()
                .db_instance_identifier(&id)
                .send()
                .await
                .map_err(|e| aws_error("rds:StartDBInstance", e))?;
        }
        w.record(KIND, &id, Action::Update, "start (resumed)");
    } else if steps.is_empty() {
        w.record(
            KIND,
            &id,
            Action::None,
            format!("{status}, {}", describe(w)),
        );
    }
    Ok(())
}

/// Destroy: refuses while deletion protection is on (nothing deleted); takes a
/// final snapshot unless the spec opts out, or the run that created the DB is
/// being rolled back (the data is new). Returns what it still waits for.
pub(crate) async fn delete(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    stamp: &str,
) -> Result<Option<String>, TierError> {
    let Some((db, tags)) = find(rds, w).await? else {
        return Ok(None);
    };
    let id = db.db_instance_identifier().unwrap_or_default().to_string();
    if !w.owns(&tags) {
        return Ok(None);
    }
    let status = db.db_instance_status().unwrap_or("");
    if status == "deleting" {
        return Ok(Some(format!("waiting for DB {id} to be deleted: deleting")));
    }
    if db.deletion_protection() == Some(true) {
        return Err(TierError::Refused(format!(
            "DB {id} has deletion protection on, so nothing was deleted: set database.deletionProtection to false, apply, then destroy"
        )));
    }
    let call = rds.delete_db_instance().db_instance_identifier(&id);
    let (call, detail) = if w.created_by_this_run(&tags) && w.run.scope == mbstack_core::Scope::Run
    {
        (
            call.skip_final_snapshot(true),
            "no final snapshot: the run that created it is being rolled back, so its data is new"
                .to_string(),
        )
    } else if !w.spec.database.final_snapshot {
        (
            call.skip_final_snapshot(true),
            "no final snapshot (database.finalSnapshot is false)".to_string(),
        )
    } else {
        let snapshot = format!("{}-final-{stamp}", w.spec.stack);
        (
            call.final_db_snapshot_identifier(&snapshot)
                .skip_final_snapshot(false),
            format!("final snapshot {snapshot}"),
        )
    };
    call.send()
        .await
        .map_err(|e| aws_error("rds:DeleteDBInstance", e))?;
    w.record(KIND, &id, Action::Delete, detail);
    Ok(Some(format!("waiting for DB {id} to be deleted")))
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["rds:DescribeDBInstances"]),
    Permission::create_tagged("CreateTagged", &["rds:CreateDBInstance"]),
    // CreateDBInstance is also authorized on its subnet group (ours); the final
    // snapshot of DeleteDBInstance on the instance (ours) and on the new snapshot.
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "rds:CreateDBInstance",
            "rds:ModifyDBInstance",
            "rds:StopDBInstance",
            "rds:StartDBInstance",
            "rds:DeleteDBInstance",
            "rds:CreateDBSnapshot",
        ],
    ),
    // The final snapshot has no tags until it exists: a ResourceTag condition
    // could never match it. Named as DeleteDBInstance names it.
    Permission::on(
        "FinalSnapshot",
        &["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
        &["arn:${Partition}:rds:*:*:snapshot:*-final-*"],
    ),
    // Tags in the creating call, on the names this tier gives (RDS has no
    // CreateAction condition key).
    Permission::on(
        "TagOnCreate",
        &["rds:AddTagsToResource"],
        &[
            "arn:${Partition}:rds:*:*:db:*-db",
            "arn:${Partition}:rds:*:*:subgrp:*-db",
        ],
    )
    .when(r#"{"StringEquals": {"aws:RequestTag/mbstack:tier": "${Tier}"}}"#),
    // ManageMasterUserPassword: RDS creates the secret with the caller's rights.
    Permission::on(
        "ManagedPassword",
        &[
            "secretsmanager:CreateSecret",
            "secretsmanager:TagResource",
            "secretsmanager:RotateSecret",
            "secretsmanager:DeleteSecret",
        ],
        &["arn:${Partition}:secretsmanager:*:*:secret:rds!*"],
    ),
    // The first DB instance of an account creates RDS's service-linked role.
    Permission::on(
        "ServiceLinkedRole",
        &["iam:CreateServiceLinkedRole"],
        &["arn:${Partition}:iam::*:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS"],
    )
    .when(r#"{"StringEquals": {"iam:AWSServiceName": "rds.amazonaws.com"}}"#),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major("16.4"), Some(16));
        assert_eq!(minor("16.4"), Some(4));
        assert_eq!(minor("17"), None);
    }
}
