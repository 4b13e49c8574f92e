//! RDS: ≈6 min to create (the last part backing up), ≈5 min to delete (still
//! described, `deleting`); no final snapshot of a busy instance; no change to a
//! stopped one; one storage change in 6 hours, rounded up to 10 %; a subnet
//! group over two AZs, not deleted while an instance uses it; a manual snapshot
//! `creating` for minutes, and not restored before it is `available`; a
//! renamed instance `renaming` for a while under its new name.

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::{moto_query, moto_value};
use crate::protocol::{query_error, Query};
use crate::state::realism::{Realism, BUSY, STORAGE_COOLDOWN};
use crate::state::Shared;
use crate::xml;

use super::eni::subnet_azs;

/// The refusal AWS would give to this call, if any.
pub(super) async fn refuse(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    match (q.service.as_str(), q.action()) {
        ("rds", "CreateDBSubnetGroup") => {
            let subnets: Vec<&String> = q
                .params
                .iter()
                .filter(|(k, _)| k.starts_with("SubnetIds."))
                .map(|(_, v)| v)
                .collect();
            let azs = subnet_azs(shared, &subnets).await;
            (azs.len() < 2).then(|| {
                query_error(
                    "DBSubnetGroupDoesNotCoverEnoughAZs",
                    &format!(
                        "The DB subnet group doesn't meet Availability Zone (AZ) coverage requirement. Current AZ coverage: {}. Add subnets to cover at least 2 AZs.",
                        azs.join(", ")
                    ),
                )
            })
        }
        ("rds", "CreateDBInstance") => {
            let storage: i64 = q
                .get("AllocatedStorage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let class = q.get("DBInstanceClass").unwrap_or("");
            let version = q.get("EngineVersion").unwrap_or("");
            let major: u32 = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if q.get("StorageType") == Some("gp3") && !(20..=65536).contains(&storage) {
                Some(query_error("InvalidParameterValue", &format!("Invalid storage size for engine name postgres and storage type gp3: {storage}")))
            } else if !class.starts_with("db.") || class.split('.').count() != 3 {
                Some(query_error(
                    "InvalidParameterValue",
                    &format!("Invalid DB Instance class: {class}"),
                ))
            } else if q.get("Engine") == Some("postgres")
                && !version.is_empty()
                && !(11..=17).contains(&major)
            {
                Some(query_error(
                    "InvalidParameterCombination",
                    &format!("Cannot find version {version} for postgres"),
                ))
            } else {
                None
            }
        }
        ("rds", "DeleteDBInstance") => {
            let skip = q.get("SkipFinalSnapshot") == Some("true");
            let snapshot = q
                .get("FinalDBSnapshotIdentifier")
                .is_some_and(|s| !s.is_empty());
            if !skip && !snapshot {
                return Some(query_error(
                    "InvalidParameterCombination",
                    "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
                ));
            }
            // A final snapshot needs an instance at rest.
            let id = q.get("DBInstanceIdentifier")?;
            let status = db_status_now(shared, id).await?;
            (snapshot && !skip && BUSY.contains(&status.as_str())).then(|| {
                query_error(
                    "InvalidDBInstanceState",
                    &format!(
                        "Instance {id} is currently {status} - a final snapshot cannot be taken."
                    ),
                )
            })
        }
        ("rds", "ModifyDBInstance") => {
            let id = q.get("DBInstanceIdentifier")?;
            let status = db_status_now(shared, id).await?;
            if status == "stopped" {
                return Some(query_error(
                    "InvalidDBInstanceState",
                    &format!(
                        "Instance {id} is not in available state: it is stopped (start it first)."
                    ),
                ));
            }
            // RDS modifies an instance that is available (or optimizing its
            // storage), not one creating, modifying or upgrading:
            // "Database instance is not in available state."
            if !matches!(status.as_str(), "available" | "storage-optimization") {
                return Some(query_error(
                    "InvalidDBInstanceState",
                    "Database instance is not in available state.",
                ));
            }
            let recent = q.get("AllocatedStorage").is_some()
                && shared.realism.lock().is_ok_and(|r| {
                    r.storage_changed
                        .get(id)
                        .is_some_and(|t| t.elapsed() < r.scaled(STORAGE_COOLDOWN))
                });
            recent.then(|| {
                query_error(
                    "InvalidParameterCombination",
                    "You can't currently modify the storage of this DB instance because the previous storage change is being optimized: storage can change again 6 hours after the last change, once its optimization has completed.",
                )
            })
        }
        // RDS snapshots an instance only when it is available (or optimizing
        // its storage: "The source DB instance must be in the available or
        // storage-optimization state"): "Cannot
        // create a snapshot because the database instance … is not currently
        // in the available state."
        ("rds", "CreateDBSnapshot") => {
            let id = q.get("DBInstanceIdentifier")?;
            let status = db_status_now(shared, id).await?;
            (!matches!(status.as_str(), "available" | "storage-optimization")).then(|| {
                query_error(
                    "InvalidDBInstanceState",
                    &format!("Cannot create a snapshot because the database instance {id} is not currently in the available state."),
                )
            })
        }
        // A snapshot still being made cannot be restored ("DB snapshot must
        // have status available": RestoreDBInstanceFromDBSnapshot's
        // InvalidDBSnapshotState).
        ("rds", "RestoreDBInstanceFromDBSnapshot") => {
            let id = q.get("DBSnapshotIdentifier")?;
            let moto = moto_value(
                shared,
                "rds",
                &format!("Action=DescribeDBSnapshots&Version=2014-10-31&DBSnapshotIdentifier={id}"),
                "Status",
            )
            .await?;
            let status = shared.realism.lock().ok()?.snapshot_status(id, &moto);
            (status != "available").then(|| {
                query_error(
                    "InvalidDBSnapshotState",
                    &format!("DB snapshot {id} is {status}: it must have status available to be restored."),
                )
            })
        }
        ("rds", "DeleteDBSubnetGroup") => {
            let group = q.get("DBSubnetGroupName")?;
            let deleting = shared.realism.lock().ok().and_then(|r| {
                r.db_deleted
                    .iter()
                    .find(|(id, (_, xml))| {
                        r.deleting_db(id).is_some()
                            && xml::values(xml, "DBSubnetGroupName")
                                .iter()
                                .any(|g| g == group)
                    })
                    .map(|(id, _)| id.clone())
            });
            if let Some(db) = deleting {
                return Some(query_error(
                    "InvalidDBSubnetGroupStateFault",
                    &format!("Cannot delete the subnet group '{group}' because at least one database instance: {db} is still using it."),
                ));
            }
            let xml = moto_query(
                shared,
                "rds",
                "Action=DescribeDBInstances&Version=2014-10-31",
            )
            .await
            .ok()?;
            let xml = String::from_utf8_lossy(&xml).to_string();
            let users: Vec<String> = xml::each(&xml, "DBInstance", |db| {
                db.all("DBSubnetGroupName")
                    .iter()
                    .any(|g| g == group)
                    .then(|| db.child("DBInstanceIdentifier"))
                    .flatten()
            });
            users.first().map(|db| {
                query_error(
                    "InvalidDBSubnetGroupStateFault",
                    &format!("Cannot delete the subnet group '{group}' because at least one database instance: {db} is still using it."),
                )
            })
        }
        _ => None,
    }
}

/// Always on, before a create or a restore: moto names the automated backup
/// it takes of every new instance `rds:<id>-<yyyy-mm-dd-hh-mm>`, and fails the
/// call (leaving the instance made) when an instance of the same name made one
/// in the same minute — one renamed aside, or deleted, a moment ago. AWS takes
/// a new instance's first backup minutes later, under its own name: the stale
/// moto backup of that minute is dropped first so that the call is answered
/// as AWS answers it.
pub(super) async fn clear_minute_backup(shared: &Arc<Shared>, q: &Query) {
    if q.service != "rds"
        || !matches!(
            q.action(),
            "CreateDBInstance" | "RestoreDBInstanceFromDBSnapshot"
        )
    {
        return;
    }
    let Some(id) = q.get("DBInstanceIdentifier") else {
        return;
    };
    // `20261206-140343` → `2026-12-06-14-03`, as moto stamps it (UTC).
    let s = mbstack_core::work::utc_stamp_now();
    if s.len() < 13 {
        return;
    }
    let minute = format!(
        "{}-{}-{}-{}-{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13]
    );
    let snapshot = format!("rds:{}-{minute}", id.to_ascii_lowercase());
    let _ = moto_query(
        shared,
        "rds",
        &format!(
            "Action=DeleteDBSnapshot&Version=2014-10-31&DBSnapshotIdentifier={}",
            crate::protocol::urlencode(&snapshot)
        ),
    )
    .await;
}

/// Always on: RDS's manual snapshot quota (100 per region by default, final
/// snapshots included; moto has none). CreateDBSnapshot and a
/// DeleteDBInstance that takes a final snapshot are refused at it with
/// `SnapshotQuotaExceeded`; DescribeAccountAttributes answers the quota and
/// its use (`ManualSnapshots`), as AWS does.
pub(super) async fn snapshot_quota(
    shared: &Arc<Shared>,
    q: &Query,
) -> Option<Response<Full<Bytes>>> {
    if q.service != "rds" {
        return None;
    }
    let takes_one = match q.action() {
        "CreateDBSnapshot" => true,
        "DeleteDBInstance"
            if q.get("SkipFinalSnapshot") != Some("true")
                && q.get("FinalDBSnapshotIdentifier")
                    .is_some_and(|s| !s.is_empty()) =>
        {
            true
        }
        "DescribeAccountAttributes" => false,
        _ => return None,
    };
    let max = shared.realism.lock().ok()?.manual_snapshot_quota;
    let listed = moto_query(
        shared,
        "rds",
        "Action=DescribeDBSnapshots&Version=2014-10-31&SnapshotType=manual",
    )
    .await
    .ok()?;
    let used = xml::each(
        &String::from_utf8_lossy(&listed),
        "DBSnapshot",
        |_| Some(()),
    )
    .len();
    if takes_one {
        return (used >= max).then(|| {
            query_error(
                "SnapshotQuotaExceeded",
                &format!("The request would result in the user exceeding the allowed number of DB snapshots ({max})."),
            )
        });
    }
    let body = format!(
        "<DescribeAccountAttributesResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><DescribeAccountAttributesResult><AccountQuotas><AccountQuota><AccountQuotaName>ManualSnapshots</AccountQuotaName><Used>{used}</Used><Max>{max}</Max></AccountQuota></AccountQuotas></DescribeAccountAttributesResult><ResponseMetadata><RequestId>mbstack-realism</RequestId></ResponseMetadata></DescribeAccountAttributesResponse>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    Some(r)
}

fn describe_db(id: &str) -> String {
    format!("Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier={id}")
}

/// A DB instance's status as AWS would report it now (None: no such instance).
async fn db_status_now(shared: &Arc<Shared>, id: &str) -> Option<String> {
    let moto = moto_value(shared, "rds", &describe_db(id), "DBInstanceStatus").await?;
    let r = shared.realism.lock().ok()?;
    Some(r.db_status(id, &moto))
}

/// The request as AWS would carry it out: an RDS storage increase under 10 % is
/// rounded up to 10 % (ModifyDBInstance API reference, AllocatedStorage). Other
/// requests are unchanged.
pub(crate) async fn rewrite_request(shared: &Arc<Shared>, q: Option<&Query>, body: Bytes) -> Bytes {
    let Some(q) = q.filter(|q| q.service == "rds" && q.action() == "ModifyDBInstance") else {
        return body;
    };
    if !shared.realism.lock().is_ok_and(|r| r.enabled) {
        return body;
    }
    let (Some(id), Some(want)) = (
        q.get("DBInstanceIdentifier"),
        q.get("AllocatedStorage")
            .and_then(|v| v.parse::<u64>().ok()),
    ) else {
        return body;
    };
    let Some(have) = moto_value(shared, "rds", &describe_db(id), "AllocatedStorage")
        .await
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return body;
    };
    let least = (have * 11).div_ceil(10);
    if want <= have || want >= least {
        return body;
    }
    let form: Vec<String> = q
        .params
        .iter()
        .map(|(k, v)| {
            let v = if k == "AllocatedStorage" {
                least.to_string()
            } else {
                v.clone()
            };
            format!(
                "{}={}",
                crate::protocol::urlencode(k),
                crate::protocol::urlencode(&v)
            )
        })
        .collect();
    Bytes::from(form.join("&"))
}

/// Answers the front door gives in moto's stead: a DB instance that AWS would
/// still be deleting (moto removes it at once).
pub(crate) fn answer(shared: &Arc<Shared>, q: Option<&Query>) -> Option<Response<Full<Bytes>>> {
    let q = q?;
    if q.service != "rds" || q.action() != "DescribeDBInstances" {
        return None;
    }
    let id = q.get("DBInstanceIdentifier")?;
    let realism = shared.realism.lock().ok()?;
    if !realism.enabled {
        return None;
    }
    let block = realism.deleting_db(id)?;
    let body = format!(
        "<DescribeDBInstancesResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><DescribeDBInstancesResult><DBInstances>{block}</DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>mbstack-realism</RequestId></ResponseMetadata></DescribeDBInstancesResponse>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    Some(r)
}

/// What a DB instance call did, and the status AWS would show (`creating`,
/// then `backing-up`, after its creation; a create answers with it too).
pub(super) fn after(realism: &mut Realism, q: &Query, text: &str) -> Option<String> {
    match q.action() {
        "CreateDBInstance" | "RestoreDBInstanceFromDBSnapshot" => {
            if let Some(id) = q.get("DBInstanceIdentifier") {
                realism.db_created.insert(id.to_string(), Instant::now());
            }
        }
        "CreateDBSnapshot" => {
            if let (Some(id), Some(db)) =
                (q.get("DBSnapshotIdentifier"), q.get("DBInstanceIdentifier"))
            {
                realism
                    .snapshot_created
                    .insert(id.to_string(), (Instant::now(), db.to_string()));
            }
        }
        "DeleteDBInstance" => {
            if let (Some(id), Some(block)) = (
                q.get("DBInstanceIdentifier"),
                xml::each(text, "DBInstance", |d| Some(d.source().to_string()))
                    .into_iter()
                    .next(),
            ) {
                realism
                    .db_deleted
                    .insert(id.to_string(), (Instant::now(), block));
            }
        }
        "ModifyDBInstance" => {
            if let (Some(id), Some(_)) = (q.get("DBInstanceIdentifier"), q.get("AllocatedStorage"))
            {
                realism
                    .storage_changed
                    .insert(id.to_string(), Instant::now());
            }
            // Applied asynchronously: `modifying` (`upgrading` for an engine)
            // for a while, before which the new values are pending.
            let applies = [
                "DBInstanceClass",
                "EngineVersion",
                "MultiAZ",
                "AllocatedStorage",
            ]
            .iter()
            .find(|k| q.get(k).is_some());
            // A rename: the instance answers to its new name at once, and is
            // `renaming` a while (an RDS rename reboots it).
            if let Some(new) = q.get("NewDBInstanceIdentifier") {
                realism
                    .db_modified
                    .insert(new.to_ascii_lowercase(), (Instant::now(), "renaming"));
            }
            if let (Some(id), Some(k)) = (q.get("DBInstanceIdentifier"), applies) {
                let status = if *k == "EngineVersion" {
                    "upgrading"
                } else {
                    "modifying"
                };
                realism
                    .db_modified
                    .insert(id.to_string(), (Instant::now(), status));
            }
        }
        _ => {}
    }
    if matches!(q.action(), "CreateDBSnapshot" | "DescribeDBSnapshots") {
        return Some(xml::rewrite_state(
            text,
            "DBSnapshotIdentifier",
            &["Status"],
            |id, moto| realism.snapshot_status(id, moto),
        ));
    }
    matches!(
        q.action(),
        "CreateDBInstance" | "RestoreDBInstanceFromDBSnapshot" | "DescribeDBInstances"
    )
    .then(|| {
        xml::rewrite_state(
            text,
            "DBInstanceIdentifier",
            &["DBInstanceStatus"],
            |id, moto| realism.db_status(id, moto),
        )
    })
}

/// Always on: `ManageMasterUserPassword` of RestoreDBInstanceFromDBSnapshot
/// "Applies to RDS for Oracle only" (the API reference's constraint). A
/// PostgreSQL instance restored from a snapshot comes back with the
/// snapshot's master password and no `MasterUserSecret`, whatever the call
/// asked (terraform-provider-aws #31509); RDS manages its password only after
/// a ModifyDBInstance with `ManageMasterUserPassword=true`. moto copies the
/// source instance's secret into the restored one: its answers lose it here
/// until that ModifyDBInstance, after which moto mints a new secret.
pub(crate) fn password_rule(shared: &Arc<Shared>, q: &Query, ok: bool, body: Bytes) -> Bytes {
    if q.service != "rds" || !ok {
        return body;
    }
    let Ok(mut realism) = shared.realism.lock() else {
        return body;
    };
    let id = q.get("DBInstanceIdentifier").map(str::to_string);
    match (q.action(), id) {
        ("RestoreDBInstanceFromDBSnapshot", Some(id)) => {
            let engine = xml::first(&String::from_utf8_lossy(&body), "Engine").unwrap_or_default();
            if !engine.starts_with("oracle") {
                realism.password_unmanaged.insert(id);
            }
        }
        ("ModifyDBInstance", Some(id)) if q.get("ManageMasterUserPassword") == Some("true") => {
            realism.password_unmanaged.remove(&id);
        }
        _ => {}
    }
    if realism.password_unmanaged.is_empty()
        || !matches!(
            q.action(),
            "RestoreDBInstanceFromDBSnapshot" | "DescribeDBInstances" | "ModifyDBInstance"
        )
    {
        return body;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let mut out = text.clone();
    for block in xml::each(&text, "DBInstance", |d| {
        let id = d.child("DBInstanceIdentifier")?;
        realism
            .password_unmanaged
            .contains(&id)
            .then(|| d.source().to_string())
    }) {
        let Some(start) = block.find("<MasterUserSecret>") else {
            continue;
        };
        let Some(end) = block.find("</MasterUserSecret>") else {
            continue;
        };
        let stripped = format!(
            "{}{}",
            &block[..start],
            &block[end + "</MasterUserSecret>".len()..]
        );
        out = out.replacen(&block, &stripped, 1);
    }
    Bytes::from(out)
}
