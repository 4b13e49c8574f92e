//! The return from a failed upgrade: the rollback of a run that put another
//! Metabase image on record (after snapshotting the database) and then failed
//! brings the database back as it was before that image ran on it. Metabase
//! migrates its database when it starts, and the version before cannot run on
//! a database a newer one migrated, even half-way: putting the image back is
//! not enough.
//!
//! Each pass does what is due and says what it waits for (the rollback loop
//! calls again), the RDS user guide's way of replacing an instance by a
//! restore ("Renaming to replace an existing DB instance"):
//! 1. the migrated instance is set aside: renamed `mbstack-<stack>-migrated-<run>`
//!    (an RDS rename keeps the data, the tags and the backups, and frees the
//!    stack's name; the renamed instance is `renaming` about 10 minutes);
//! 2. the snapshot taken before the upgrade is restored under the stack's
//!    name, with the settings of the instance it replaces (subnet group,
//!    security groups, class, storage, Multi-AZ, backups, protection) and its
//!    tags, the image and version before on record;
//! 3. once the restored instance is available (a restore can fail: until
//!    then nothing is deleted), the set-aside instance is deleted with a final
//!    snapshot `mbstack-<stack>-migrated-<time>`, the database as the new
//!    version left it, its automated backups kept (kept stopped instead when
//!    the manual snapshot quota has no room: never deleted without one);
//! 4. the restored instance gets the password RDS manages (a restored
//!    PostgreSQL instance has the snapshot's until a ModifyDBInstance).
//!
//! Done when the restored instance is available with its secret active and
//! the set-aside one is gone. The app tier then puts Metabase's tasks on it
//! (`Part::Return`): new secret, same endpoint name.

use aws_sdk_rds::types::{DbInstance, Tag};
use mbstack_core::iam::Permission;
use mbstack_core::metabase::{record_by, IMAGE_TAG, RECORD_BEFORE_TAG, RECORD_BY_TAG, VERSION_TAG};
use mbstack_core::naming::{idempotency_key, rds_name, tag_value};
use mbstack_core::{aws_error, error_code, found, Action, Readiness, TierError, Verb, Work};

use crate::instance::RESTORED_FROM_TAG;
use crate::tags::pairs;

/// The name the migrated instance is set aside under (the same in every pass
/// of the run: 63 characters at most for the longest stack name).
pub(crate) fn aside_name(stack: &str, run: &str) -> String {
    format!(
        "{}{}",
        crate::instance::migrated_prefix(stack),
        &idempotency_key(&[run])[..8]
    )
}

/// The final snapshot of the set-aside instance: the database as the failed
/// version left it.
pub(crate) fn migrated_snapshot_name(stack: &str, stamp: &str) -> String {
    format!("{}{stamp}", crate::instance::migrated_prefix(stack))
}

/// The IAM permissions of the calls in this file: the rename, restore and
/// deletion are the instance's (instance.rs); the final snapshot of the
/// set-aside instance has no tags until it exists: named.
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "ReturnRead",
        &["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
    ),
    // The restore under the request's tags (the replaced instance's).
    Permission::create_tagged("ReturnRestore", &["rds:RestoreDBInstanceFromDBSnapshot"]),
    // The rename, password and deletion of the stack's own instances.
    Permission::own_tagged(
        "ReturnChange",
        &[
            "rds:ModifyDBInstance",
            "rds:DeleteDBInstance",
            "rds:CreateDBSnapshot",
            "rds:StopDBInstance",
        ],
    ),
    Permission::on(
        "MigratedSnapshot",
        &["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
        &["arn:${Partition}:rds:*:*:snapshot:mbstack-*-migrated-*"],
    ),
];

/// RDS renames, snapshots and deletes an instance that is available or
/// optimizing its storage.
fn at_rest(status: &str) -> bool {
    matches!(status, "available" | "storage-optimization")
}

/// How to get the migrated database back under the stack's name by hand.
fn rename_back(stack: &str, aside: &str, name: &str) -> String {
    format!(
        "to run on it again, delete DB {name} if it exists, start DB {aside} if it is stopped (aws rds start-db-instance --db-instance-identifier {aside}), rename it back (aws rds modify-db-instance --db-instance-identifier {aside} --new-db-instance-identifier {name} --apply-immediately) and apply stack {stack} with the image that migrated it; or restore the snapshot you want (`mbstack up {stack} --restore …`) once DB {aside} is deleted"
    )
}

/// Where a return stands after one pass.
pub(crate) enum Progress {
    /// Not yet: what it waits for.
    Waiting(String),
    /// The database is back: the restored instance, ready.
    Done(Box<DbInstance>),
    /// Nothing to return: the stack's instance is not the one this run
    /// migrated (a return done already and finished, or none started).
    Nothing,
}

/// Tags kept from the migrated instance on the restored one: all but the
/// record of what ran (the snapshot's is put back) and of the restore.
fn kept_tags(db: &DbInstance) -> Vec<(String, String)> {
    pairs(db.tag_list())
        .into_iter()
        .filter(|(k, _)| {
            ![
                IMAGE_TAG,
                VERSION_TAG,
                RECORD_BEFORE_TAG,
                RECORD_BY_TAG,
                RESTORED_FROM_TAG,
                crate::instance::STORAGE_CHANGED_TAG,
            ]
            .contains(&k.as_str())
        })
        .collect()
}

/// One pass of the return to `snapshot` (the one taken before the image this
/// run put on record). `stamp` names a final snapshot taken now.
pub(crate) async fn pass(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    snapshot: &str,
    stamp: &str,
) -> Result<Progress, TierError> {
    let stack = w.spec.stack.clone();
    let aside = aside_name(&stack, &w.run.id);
    let current = crate::instance::find(rds, &stack).await?;
    let set_aside = crate::instance::described(rds, &aside).await?;
    let restored = |db: &DbInstance| {
        tag_value(&pairs(db.tag_list()), RESTORED_FROM_TAG) == Some(snapshot)
            && db.db_instance_identifier() == Some(rds_name(&stack).as_str())
    };
    // 1. The instance this run migrated, still under the stack's name.
    if let Some(db) = current.as_ref().filter(|db| !restored(db)) {
        let tags = pairs(db.tag_list());
        let by_this_run = tag_value(&tags, RECORD_BY_TAG)
            .and_then(record_by)
            .is_some_and(|(run, _, _)| run == w.run.id);
        if !by_this_run {
            return Ok(Progress::Nothing);
        }
        let id = db.db_instance_identifier().unwrap_or_default().to_string();
        let status = db.db_instance_status().unwrap_or("unknown");
        // A rename asked for and not applied yet: asked once.
        if db
            .pending_modified_values()
            .and_then(|p| p.db_instance_identifier())
            == Some(aside.as_str())
        {
            return Ok(Progress::Waiting(format!(
                "DB {id} to be renamed {aside} (pending)"
            )));
        }
        // RDS modifies an instance at rest: available, or optimizing its
        // storage (which can last hours, the instance usable meanwhile).
        if !at_rest(status) {
            return Ok(Progress::Waiting(format!(
                "DB {id} to be available before it is set aside ({status})"
            )));
        }
        let renamed = rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .new_db_instance_identifier(&aside)
            .apply_immediately(true)
            .send()
            .await;
        match renamed {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("InvalidDBInstanceState") => {
                return Ok(Progress::Waiting(format!(
                    "DB {id} to accept being renamed ({status})"
                )))
            }
            Err(e) => return Err(aws_error("rds:ModifyDBInstance", e)),
        }
        let image = crate::instance::recorded_image(db).unwrap_or_default();
        w.record(
            "db-instance",
            &id,
            Action::Update,
            format!(
                "set aside as {aside}: {image} migrated it and failed; it is deleted with a final snapshot once the database before is restored"
            ),
        );
        return Ok(Progress::Waiting(format!(
            "DB {id} to be renamed {aside}, freeing the stack's name for the database before the upgrade"
        )));
    }
    // 2. No instance under the stack's name: the snapshot restored there,
    // with the settings of the instance it replaces.
    let Some(db) = current else {
        let Some(source) = set_aside.as_ref() else {
            // Neither name answers: a rename between the two (RDS can show
            // neither for a moment). Waited for, never taken for "nothing
            // to return" (the rollback would go on without the database).
            return Ok(Progress::Waiting(format!(
                "DB {} or DB {aside} to answer (a rename in progress)",
                rds_name(&stack)
            )));
        };
        return restore(rds, w, snapshot, source).await;
    };
    // 3. The restored instance, once available (a restore can fail: the
    // migrated instance is kept until it is not needed). Its managed password
    // is turned on as soon as it is available; it has been available once it
    // has that password.
    let id = db.db_instance_identifier().unwrap_or_default().to_string();
    let status = db.db_instance_status().unwrap_or("unknown");
    if let Readiness::Failed(why) = crate::instance::readiness(&id, status, false) {
        return Err(TierError::ResourceFailed(format!(
            "{why}. The database was not returned to {snapshot}: the migrated database is kept as DB {aside}; {}",
            rename_back(&w.spec.stack, &aside, &id)
        )));
    }
    let mut waits = Vec::new();
    match db.master_user_secret() {
        None if status == "available" => {
            rds.modify_db_instance()
                .db_instance_identifier(&id)
                .manage_master_user_password(true)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error("rds:ModifyDBInstance", e))?;
            w.record(
                "db-instance",
                &id,
                Action::Update,
                "password → managed by RDS in Secrets Manager (a restored instance has the snapshot's until then)",
            );
            waits.push(format!("DB {id}: turning on the password RDS manages"));
        }
        None => {
            return Ok(Progress::Waiting(format!(
                "DB {id}, restored from {snapshot}, to become available ({status})"
            )))
        }
        Some(s) if s.secret_status().is_some_and(|st| st != "active") => waits.push(format!(
            "DB {id}: its password's secret is {}",
            s.secret_status().unwrap_or("")
        )),
        Some(_) => {}
    }
    // 4. The set-aside instance: deleted with a final snapshot, now that the
    // database before is back.
    if let Some(old) = &set_aside {
        if let Some(wait) = delete_aside(rds, w, old, stamp).await? {
            waits.push(wait);
        }
    }
    if waits.is_empty() {
        return Ok(Progress::Done(Box::new(db)));
    }
    Ok(Progress::Waiting(waits.join("; ")))
}

/// A return AWS stopped after the database before was back under the
/// stack's name (a call of its refused for good; the run ended
/// RollbackFailed) leaves the migrated instance set aside. The next apply
/// finishes what the return would have: the set-aside instance deleted with
/// a final snapshot, never without one (a plan says it will). `current` is
/// the stack's instance as this apply found it.
pub(crate) async fn finish_left_return(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    current: Option<&DbInstance>,
    stamp: &str,
) -> Result<(), TierError> {
    let Some(db) = current else {
        return Ok(());
    };
    let restored = tag_value(&pairs(db.tag_list()), RESTORED_FROM_TAG).is_some();
    if w.verb == Verb::Check || !restored || db.db_instance_status() != Some("available") {
        return Ok(());
    }
    let Some(aside) = crate::instance::set_aside_of(rds, &w.spec.stack).await? else {
        return Ok(());
    };
    let Some(old) = crate::instance::described(rds, &aside).await? else {
        return Ok(());
    };
    // Kept stopped by a return whose final snapshot had no room: the
    // user's to delete or keep, as that return's record said. Not at rest
    // (failed, being modified): left for an apply when RDS can snapshot it.
    let status = old.db_instance_status().unwrap_or("unknown");
    if !at_rest(status) {
        tracing::info!(db = %aside, status, "a set-aside instance not at rest: left for a later apply");
        return Ok(());
    }
    if w.verb == Verb::Plan {
        let (action, what) = match old.deletion_protection() {
            Some(true) => (
                Action::Update,
                "deletion protection → off; the next apply deletes it with a final snapshot",
            ),
            _ => (Action::Delete, "deleted with a final snapshot"),
        };
        w.record(
            "db-instance",
            &aside,
            action,
            format!("set aside by a failed upgrade's return that did not finish: {what}, as the return would have"),
        );
        return Ok(());
    }
    delete_aside(rds, w, &old, stamp).await?;
    Ok(())
}

/// Restores `snapshot` under the stack's name as `source` was made.
async fn restore(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    snapshot: &str,
    source: &DbInstance,
) -> Result<Progress, TierError> {
    let id = rds_name(&w.spec.stack);
    let call = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(snapshot)
        .send()
        .await;
    let codes = ["DBSnapshotNotFound", "DBSnapshotNotFoundFault"];
    let Some(snap) = found("rds:DescribeDBSnapshots", call, &codes)?
        .and_then(|o| o.db_snapshots().first().cloned())
    else {
        return Err(TierError::Terminal(format!(
            "the snapshot {snapshot} taken before the upgrade is gone, so the database was not returned: the migrated database is kept as DB {}; restore another snapshot with `mbstack up {} --restore …`",
            source.db_instance_identifier().unwrap_or_default(),
            w.spec.stack
        )));
    };
    let snap_tags = pairs(snap.tag_list());
    let mut tags: Vec<Tag> = kept_tags(source)
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    tags.push(
        Tag::builder()
            .key(RESTORED_FROM_TAG)
            .value(snapshot)
            .build(),
    );
    // What ran on the database in the snapshot is on record again.
    for key in [IMAGE_TAG, VERSION_TAG] {
        if let Some(v) = tag_value(&snap_tags, key) {
            tags.push(Tag::builder().key(key).value(v).build());
        }
    }
    let d = &w.spec.database;
    let storage = source
        .allocated_storage()
        .unwrap_or(0)
        .max(snap.allocated_storage().unwrap_or(0))
        .max(d.storage_gib as i32);
    let groups: Vec<String> = source
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
        .collect();
    let out = rds
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&id)
        .db_snapshot_identifier(snapshot)
        .db_instance_class(
            source
                .db_instance_class()
                .unwrap_or(d.instance_class.as_str()),
        )
        .allocated_storage(storage)
        .storage_type("gp3")
        .publicly_accessible(false)
        // No ManageMasterUserPassword: it "applies to RDS for Oracle only";
        // a later pass turns it on.
        .set_db_subnet_group_name(
            source
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .map(str::to_string),
        )
        .set_vpc_security_group_ids(Some(groups))
        .backup_retention_period(
            source
                .backup_retention_period()
                .unwrap_or(i32::from(d.backup_retention_days)),
        )
        .set_preferred_backup_window(source.preferred_backup_window().map(str::to_string))
        .auto_minor_version_upgrade(true)
        .deletion_protection(
            source
                .deletion_protection()
                .unwrap_or(d.deletion_protection),
        )
        .multi_az(source.multi_az().unwrap_or(d.multi_az))
        .copy_tags_to_snapshot(true)
        .set_tags(Some(tags))
        .send()
        .await;
    match out {
        Ok(_) => {}
        // The rename has not freed the name yet.
        Err(e) if error_code(&e) == Some("DBInstanceAlreadyExists") => {
            return Ok(Progress::Waiting(format!(
                "the name {id} to be free (the migrated instance is being renamed)"
            )))
        }
        Err(e) => {
            return Err(match aws_error("rds:RestoreDBInstanceFromDBSnapshot", e) {
                TierError::Terminal(m) | TierError::Refused(m) => TierError::Terminal(format!(
                    "{m}. The database was not returned to {snapshot}: the migrated database is kept as DB {} (not deleted); {}",
                    source.db_instance_identifier().unwrap_or_default(),
                    rename_back(
                        &w.spec.stack,
                        source.db_instance_identifier().unwrap_or_default(),
                        &id
                    )
                )),
                other => other,
            })
        }
    }
    let image = tag_value(&snap_tags, IMAGE_TAG).unwrap_or("the image before");
    w.record(
        "db-instance",
        &id,
        Action::Create,
        format!("restored from {snapshot}, the database before the upgrade ({image} on record)"),
    );
    Ok(Progress::Waiting(format!(
        "DB {id} to be restored from {snapshot}"
    )))
}

/// Deletes the set-aside instance with a final snapshot; Some(what it waits
/// for) until it is gone.
async fn delete_aside(
    rds: &aws_sdk_rds::Client,
    w: &mut Work<'_>,
    old: &DbInstance,
    stamp: &str,
) -> Result<Option<String>, TierError> {
    let id = old.db_instance_identifier().unwrap_or_default().to_string();
    let status = old.db_instance_status().unwrap_or("unknown");
    if status == "deleting" {
        return Ok(Some(format!("DB {id} to be deleted: deleting")));
    }
    // Kept stopped (no room for its final snapshot): nothing more to do.
    if matches!(status, "stopped" | "stopping") {
        return Ok(None);
    }
    // RDS takes a final snapshot of an instance at rest only.
    if !at_rest(status) {
        return Ok(Some(format!(
            "DB {id} to be available before its final snapshot ({status})"
        )));
    }
    if old.deletion_protection() == Some(true) {
        rds.modify_db_instance()
            .db_instance_identifier(&id)
            .deletion_protection(false)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| aws_error("rds:ModifyDBInstance", e))?;
        w.record(
            "db-instance",
            &id,
            Action::Update,
            "deletion protection → off: set aside by a failed upgrade's return, it is deleted with a final snapshot next",
        );
        return Ok(Some(format!(
            "DB {id}: deletion protection → off (set aside by this run's return; deleted with a final snapshot)"
        )));
    }
    let snapshot = migrated_snapshot_name(&w.spec.stack, stamp);
    // Its automated backups are kept too (DeleteDBInstance removes them by
    // default): a point-in-time restore to before the upgrade stays
    // possible for their retention period. Without room for them (their own
    // quota), the final snapshot alone keeps the data.
    let delete = |keep_backups: bool| {
        rds.delete_db_instance()
            .db_instance_identifier(&id)
            .final_db_snapshot_identifier(&snapshot)
            .skip_final_snapshot(false)
            .delete_automated_backups(!keep_backups)
            .send()
    };
    let mut kept_backups = true;
    let mut deleted = delete(true).await;
    if let Err(e) = &deleted {
        if error_code(e) == Some("DBInstanceAutomatedBackupQuotaExceeded") {
            kept_backups = false;
            deleted = delete(false).await;
        }
    }
    match deleted {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("InvalidDBInstanceState") => {
            return Ok(Some(format!("DB {id} to accept its deletion ({status})")))
        }
        // No room for its final snapshot: never deleted without one; kept
        // stopped instead.
        Err(e) if error_code(&e) == Some("SnapshotQuotaExceeded") => {
            let stopped = rds
                .stop_db_instance()
                .db_instance_identifier(&id)
                .send()
                .await;
            match stopped {
                Ok(_) => {}
                // RDS stops an available instance only (not one optimizing
                // its storage): waited for.
                Err(e) if error_code(&e) == Some("InvalidDBInstanceState") => {
                    return Ok(Some(format!(
                        "DB {id} to be available to be stopped (no room for its final snapshot; {status})"
                    )))
                }
                Err(e) => return Err(aws_error("rds:StopDBInstance", e)),
            }
            w.record(
                "db-instance",
                &id,
                Action::Update,
                format!(
                    "kept, stopped: the database as {} left it; RDS's manual snapshot quota has no room for its final snapshot. RDS starts a stopped instance again after 7 days: delete it (aws rds delete-db-instance --db-instance-identifier {id} --final-db-snapshot-identifier {snapshot}) once old snapshots are deleted, or keep it",
                    crate::instance::recorded_image(old).unwrap_or_default()
                ),
            );
            return Ok(None);
        }
        Err(e) => return Err(aws_error("rds:DeleteDBInstance", e)),
    }
    let image = crate::instance::recorded_image(old).unwrap_or_default();
    w.record(
        "db-instance",
        &id,
        Action::Delete,
        format!(
            "final snapshot {snapshot}: the database as {image} left it{} (to try that version on it again: `mbstack down {stack}`, `mbstack up {stack} --restore {snapshot} --set app.image={image}`)",
            if kept_backups {
                ", its automated backups kept for their retention period"
            } else {
                " (its automated backups not kept: their quota is full)"
            },
            stack = w.spec.stack
        ),
    );
    Ok(Some(format!("DB {id} to be deleted")))
}
