//! The RDS PostgreSQL instance: encrypted gp3 storage, private, `DBName=metabase`,
//! its master password kept by RDS in Secrets Manager (ManageMasterUserPassword),
//! so no password ever exists outside Secrets Manager.

use aws_sdk_rds::types::DbInstance;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{final_snapshot_name, legacy_rds_name, rds_name};
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, error_code, found, Readiness, TierError, Work};

use crate::tags::{pairs, rds_tags};

const ROLE: &str = "db";
/// On a database restored from a snapshot: the snapshot's identifier.
pub const RESTORED_FROM_TAG: &str = "mbstack:restored-from";

/// The snapshot a new database is restored from, as `database.restoreFrom`
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSnapshot {
    pub id: String,
    pub engine_version: String,
    pub storage_gib: i32,
    /// When RDS took it (`2026-12-01T03:00:00Z`).
    pub taken: String,
    /// The Metabase image and highest version on record when it was taken
    /// (its tags, from the instance's), if any.
    pub metabase_image: Option<String>,
    pub metabase_version: Option<String>,
    /// The stack whose database it was (its `mbstack:stack` tag), if any.
    pub stack: Option<String>,
}

/// Resolves `database.restoreFrom` (an identifier, or `latest-final`: the
/// stack's newest available final snapshot, carrying the stack's tag) and
/// checks the snapshot can become this stack's database: available,
/// PostgreSQL, encrypted, not newer than `database.engineVersion`. Prepare
/// calls it too, before anything is created.
pub async fn restore_snapshot(
    rds: &aws_sdk_rds::Client,
    spec: &mbstack_core::StackSpec,
) -> Result<Option<RestoreSnapshot>, TierError> {
    let Some(from) = spec.database.restore_from.as_deref() else {
        return Ok(None);
    };
    let field = "database.restoreFrom";
    let stack = &spec.stack;
    let snapshot = if from == mbstack_core::spec::LATEST_FINAL {
        // Named `mbstack-<stack>-final-…`, or `<stack>-final-…` by older mbstack.
        let prefixes = [
            format!("{}-final-", mbstack_core::naming::rds_name(stack)),
            format!("{stack}-final-"),
        ];
        let prefix = &prefixes[0];
        let mut newest: Option<aws_sdk_rds::types::DbSnapshot> = None;
        let mut marker: Option<String> = None;
        loop {
            let out = rds
                .describe_db_snapshots()
                .snapshot_type("manual")
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_error("rds:DescribeDBSnapshots", e))?;
            for s in out.db_snapshots() {
                let ours = s
                    .db_snapshot_identifier()
                    .is_some_and(|i| prefixes.iter().any(|p| i.starts_with(p.as_str())))
                    && s.tag_list().iter().any(|t| {
                        t.key() == Some(mbstack_core::naming::STACK_TAG)
                            && t.value() == Some(stack.as_str())
                    })
                    && s.status() == Some("available");
                let newer = newest
                    .as_ref()
                    .is_none_or(|n| s.snapshot_create_time() > n.snapshot_create_time());
                if ours && newer {
                    newest = Some(s.clone());
                }
            }
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        newest.ok_or_else(|| TierError::Refused(format!(
            "{field}: stack {stack} has no final snapshot (a destroy with database.finalSnapshot takes one, named {prefix}<time>): name a snapshot, or leave {field} out for an empty database"
        )))?
    } else {
        let call = rds
            .describe_db_snapshots()
            .db_snapshot_identifier(from)
            .send()
            .await;
        found("rds:DescribeDBSnapshots", call, &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"])?
            .and_then(|o| o.db_snapshots().first().cloned())
            .ok_or_else(|| TierError::Refused(format!(
                "{field}: there is no DB snapshot {from} in this account and region: check the name (aws rds describe-db-snapshots), or use \"latest-final\" for the stack's newest final snapshot"
            )))?
    };
    let id = snapshot
        .db_snapshot_identifier()
        .unwrap_or(from)
        .to_string();
    if snapshot.engine() != Some("postgres") {
        return Err(TierError::Refused(format!(
            "{field}: snapshot {id} is of {}, not PostgreSQL: Metabase's database here is PostgreSQL",
            snapshot.engine().unwrap_or("an unknown engine")
        )));
    }
    if snapshot.status() != Some("available") {
        return Err(TierError::Refused(format!(
            "{field}: snapshot {id} is {}: RDS restores an available snapshot only; wait for it, then apply",
            snapshot.status().unwrap_or("not available")
        )));
    }
    if snapshot.encrypted() != Some(true) {
        return Err(TierError::Refused(format!(
            "{field}: snapshot {id} is not encrypted, and this stack's database is: copy it encrypted (aws rds copy-db-snapshot --kms-key-id alias/aws/rds) and restore the copy"
        )));
    }
    let version = snapshot.engine_version().unwrap_or("").to_string();
    if let (Some(have), Some(want)) = (major(&version), major(&spec.database.engine_version)) {
        if have > want {
            return Err(TierError::Refused(format!(
                "{field}: snapshot {id} is of PostgreSQL {version}, newer than database.engineVersion {}: set database.engineVersion to \"{have}\" (an engine is never downgraded)",
                spec.database.engine_version
            )));
        }
    }
    let snapshot_tags = pairs(snapshot.tag_list());
    let recorded = |key: &str| {
        mbstack_core::naming::tag_value(&snapshot_tags, key)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Ok(Some(RestoreSnapshot {
        id,
        engine_version: version,
        metabase_image: recorded(mbstack_core::metabase::IMAGE_TAG),
        metabase_version: recorded(mbstack_core::metabase::VERSION_TAG),
        stack: recorded(mbstack_core::naming::STACK_TAG),
        storage_gib: snapshot.allocated_storage().unwrap_or(0),
        taken: snapshot
            .snapshot_create_time()
            .and_then(|t| {
                t.fmt(aws_sdk_rds::primitives::DateTimeFormat::DateTime)
                    .ok()
            })
            .unwrap_or_default(),
    }))
}
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
        // Paused during a storage optimization: RDS cannot stop it yet (the
        // change says so); waiting for hours would time the run out.
        ("available" | "storage-optimization", false)
        | ("stopped", true)
        | ("storage-optimization", true) => Readiness::Ready,
        ("available", true) => Readiness::Pending(format!("DB {id} to stop: {status}")),
        ("stopped", false) => Readiness::Pending(format!("DB {id} to start: stopped")),
        ("deleting", _) => Readiness::Failed(format!("DB {id} is being deleted")),
        (s, _) if FAILED.contains(&s) => Readiness::Failed(format!(
            "DB {id} is {s}: RDS will not recover it by itself (see the RDS console's events for the instance)"
        )),
        (s, _) => Readiness::Pending(format!("DB {id}: {s}")),
    }
}

/// Statuses in which RDS takes no final snapshot (DeleteDBInstance answers
/// `InvalidDBInstanceState`: "is currently creating - a final snapshot cannot be
/// taken"): a destroy waits them out.
const BUSY: &[&str] = &[
    "creating",
    "backing-up",
    "modifying",
    "starting",
    "stopping",
    "rebooting",
    "upgrading",
];

/// The stack's DB instance: by its name, else by the legacy name when the
/// instance carries the stack's tag (a foreign `<stack>-db` is not the
/// stack's: the new name is free for it).
pub async fn find(rds: &aws_sdk_rds::Client, stack: &str) -> Result<Option<DbInstance>, TierError> {
    for id in [rds_name(stack), legacy_rds_name(stack)] {
        let legacy = id != rds_name(stack);
        if let Some(db) = described(rds, &id)
            .await?
            .filter(|db| !legacy || is_stacks(&pairs(db.tag_list()), stack))
        {
            return Ok(Some(db));
        }
    }
    Ok(None)
}

/// The DB instance named `id` (None: there is none).
pub(crate) async fn described(
    rds: &aws_sdk_rds::Client,
    id: &str,
) -> Result<Option<DbInstance>, TierError> {
    let call = rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await;
    let codes = ["DBInstanceNotFound", "DBInstanceNotFoundFault"];
    Ok(found("rds:DescribeDBInstances", call, &codes)?
        .and_then(|out| out.db_instances().first().cloned()))
}

/// How a set-aside instance of `stack` (a failed upgrade's migrated
/// database) and its final snapshot are named: `mbstack-<stack>-migrated-…`.
pub(crate) fn migrated_prefix(stack: &str) -> String {
    format!("{}-migrated-", rds_name(stack))
}

/// A set-aside instance of `stack` that is still there, of any run (None:
/// none). Every instance of the region is listed (a new stack's create reads
/// them once).
pub(crate) async fn set_aside_of(
    rds: &aws_sdk_rds::Client,
    stack: &str,
) -> Result<Option<String>, TierError> {
    let prefix = migrated_prefix(stack);
    let mut marker: Option<String> = None;
    loop {
        let out = rds
            .describe_db_instances()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| aws_error("rds:DescribeDBInstances", e))?;
        if let Some(db) = out.db_instances().iter().find(|db| {
            db.db_instance_identifier()
                .is_some_and(|i| i.starts_with(&prefix))
                && is_stacks(&pairs(db.tag_list()), stack)
                && db.db_instance_status() != Some("deleting")
        }) {
            return Ok(db.db_instance_identifier().map(str::to_string));
        }
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(None),
        }
    }
}

/// Whether `tags` name `stack`.
pub(crate) fn is_stacks(tags: &[(String, String)], stack: &str) -> bool {
    mbstack_core::naming::tag_value(tags, mbstack_core::naming::STACK_TAG) == Some(stack)
}

/// The ARN of the secret RDS keeps the stack's database password in (None: no
/// instance, or no managed password yet).
pub async fn managed_secret_arn(
    rds: &aws_sdk_rds::Client,
    stack: &str,
) -> Result<Option<String>, TierError> {
    Ok(find(rds, stack).await?.and_then(|db| {
        db.master_user_secret()
            .and_then(|s| s.secret_arn())
            .map(str::to_string)
    }))
}

/// The stack's DB instance, in the subnet group and security group given
/// (None: planned). `stamp` names a final snapshot taken now.
pub(crate) struct DbInstances {
    pub rds: aws_sdk_rds::Client,
    /// The stack's name (its instance is `rds_name`, or the legacy name of an
    /// older stack).
    pub stack: String,
    pub subnet_group: Option<String>,
    pub security_group: Option<String>,
    pub stamp: String,
    /// The instance as read before this converge (None: read it).
    pub known: Option<Option<DbInstance>>,
    /// The Metabase image to put on record now: the spec's, once nothing
    /// needs to be snapshotted before it (None: not yet).
    pub record: Option<String>,
    /// The snapshot a new instance is restored from, read before (None: an
    /// empty database, or not read: the create reads it).
    pub restore: Option<RestoreSnapshot>,
}

/// The image on record in the instance's tags (None: none, or cleared).
pub(crate) fn recorded_image(db: &DbInstance) -> Option<String> {
    mbstack_core::naming::tag_value(&pairs(db.tag_list()), mbstack_core::metabase::IMAGE_TAG)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The Metabase image and version tags for `image` over what `had` records:
/// the version is the highest that has run.
fn record_tags(image: &str, had: &[(String, String)]) -> Vec<(String, String)> {
    use mbstack_core::metabase::{version_of, Version, IMAGE_TAG, VERSION_TAG};
    let before = mbstack_core::naming::tag_value(had, VERSION_TAG).and_then(Version::parse);
    let highest = match (before, version_of(image)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut out = vec![(IMAGE_TAG.to_string(), image.to_string())];
    if let Some(v) = highest {
        out.push((VERSION_TAG.to_string(), v.to_string()));
    }
    out
}

fn rds_tag(k: &str, v: &str) -> aws_sdk_rds::types::Tag {
    aws_sdk_rds::types::Tag::builder().key(k).value(v).build()
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

fn minor(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

/// One change of the instance in place (ModifyDBInstance with
/// ApplyImmediately, or a stop or start). A stop or start carries the notes of
/// what waits (shown with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Class(String, String),
    Storage(i32, i32),
    BackupRetention(i32, i32),
    DeletionProtection(bool),
    MultiAz(bool),
    Engine {
        from: String,
        to: String,
        major: bool,
    },
    /// Turn on the password RDS manages in Secrets Manager: an instance
    /// restored from a snapshot keeps the snapshot's password and has no
    /// managed secret (RestoreDBInstanceFromDBSnapshot's
    /// `ManageMasterUserPassword` "applies to RDS for Oracle only").
    ManagedPassword,
    Stop(String),
    Start(String),
    /// Put the Metabase image about to go out on record (its snapshot, if
    /// one was needed, is available): from, to.
    RecordImage(Option<String>, String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Class(a, b) => write!(f, "class {a} → {b}"),
            Step::Storage(a, b) => write!(f, "storage {a} → {b} GiB"),
            Step::BackupRetention(a, b) => write!(f, "backup retention {a} → {b} days"),
            Step::DeletionProtection(on) => {
                write!(
                    f,
                    "deletion protection → {}",
                    if *on { "on" } else { "off" }
                )
            }
            Step::MultiAz(on) => write!(f, "Multi-AZ → {on}"),
            Step::Engine { from, to, major } => write!(
                f,
                "engine {from} → {to}{}",
                if *major { " (major upgrade)" } else { "" }
            ),
            Step::ManagedPassword => write!(
                f,
                "password → managed by RDS in Secrets Manager (a restored instance keeps the snapshot's)"
            ),
            Step::Stop(also) => write!(f, "stop (paused){also}"),
            Step::Start(also) => write!(f, "start (resumed){also}"),
            Step::RecordImage(from, to) => write!(
                f,
                "Metabase image on record {} → {to}",
                from.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// The database as the spec wants it; `from`: what it is restored from.
fn describe_from(w: &Work<'_>, from: &str) -> String {
    let d = &w.spec.database;
    format!(
        "{from}PostgreSQL {} on {}, {} GiB gp3 encrypted, {}, backups {} days",
        d.engine_version,
        d.instance_class,
        d.storage_gib,
        if d.multi_az { "Multi-AZ" } else { "single-AZ" },
        d.backup_retention_days
    )
}

/// A database to create: empty, or restored as `database.restoreFrom` says
/// (`snapshot`: that snapshot, when read: its engine and storage, which the
/// restore keeps; RDS restores at least the snapshot's storage).
fn describe(w: &Work<'_>, snapshot: Option<&RestoreSnapshot>) -> String {
    let d = &w.spec.database;
    if let Some(s) = snapshot {
        let storage = (d.storage_gib as i32).max(s.storage_gib);
        let engine = if s.engine_version == d.engine_version {
            s.engine_version.clone()
        } else {
            format!("{} (then {})", s.engine_version, d.engine_version)
        };
        return format!(
            "restored from snapshot {} ({} GiB, taken {}): PostgreSQL {engine} on {}, {storage} GiB gp3 encrypted, {}, backups {} days",
            s.id,
            s.storage_gib,
            s.taken,
            d.instance_class,
            if d.multi_az { "Multi-AZ" } else { "single-AZ" },
            d.backup_retention_days
        );
    }
    let from = match d.restore_from.as_deref() {
        Some(mbstack_core::spec::LATEST_FINAL) => {
            "restored from the stack's newest final snapshot: ".to_string()
        }
        Some(s) => format!("restored from snapshot {s}: "),
        None => String::new(),
    };
    describe_from(w, &from)
}

/// Pure: what differs from the spec and can change in place (the steps), and
/// what cannot change now (the notes, with why); an error for what can never
/// change in place.
fn changes(w: &Work<'_>, db: &DbInstance) -> Result<(Vec<Step>, Vec<String>), TierError> {
    let id = db.db_instance_identifier().unwrap_or_default();
    let d = &w.spec.database;
    if db.storage_encrypted() == Some(false) {
        return Err(TierError::Refused(format!(
            "DB {id} is not encrypted and encryption cannot be turned on in place: restore a snapshot into an encrypted copy"
        )));
    }
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    if db.db_instance_class() != Some(d.instance_class.as_str()) {
        steps.push(Step::Class(
            db.db_instance_class().unwrap_or("?").to_string(),
            d.instance_class.clone(),
        ));
    }
    let status = db.db_instance_status().unwrap_or("");
    let storage = db.allocated_storage().unwrap_or(0);
    let want_storage = d.storage_gib as i32;
    match storage_step(
        storage,
        want_storage,
        status,
        storage_changed_at(db),
        mbstack_core::work::unix_now(),
    ) {
        StorageStep::Same => {}
        StorageStep::Larger => notes.push(format!(
            "storage stays {storage} GiB (database.storageGib is {want_storage}; RDS storage never shrinks)"
        )),
        StorageStep::TooSmall(least) => {
            return Err(TierError::Refused(format!(
                "database.storageGib: RDS grows storage by at least 10 %: DB {id} has {storage} GiB, so set {least} or more (or keep {storage})"
            )))
        }
        StorageStep::Wait(why) => notes.push(format!(
            "storage {storage} → {want_storage} GiB not yet: {why}; apply again then"
        )),
        StorageStep::Grow => steps.push(Step::Storage(storage, want_storage)),
    }
    let retention = i32::from(d.backup_retention_days);
    if db.backup_retention_period() != Some(retention) {
        steps.push(Step::BackupRetention(
            db.backup_retention_period().unwrap_or(0),
            retention,
        ));
    }
    if db.deletion_protection() != Some(d.deletion_protection) {
        steps.push(Step::DeletionProtection(d.deletion_protection));
    }
    if db.multi_az() != Some(d.multi_az) {
        steps.push(Step::MultiAz(d.multi_az));
    }
    let current = db.engine_version().unwrap_or("");
    let engine = |major| Step::Engine {
        from: current.to_string(),
        to: d.engine_version.clone(),
        major,
    };
    match (major(current), major(&d.engine_version)) {
        (Some(have), Some(want)) if want < have => {
            return Err(TierError::Refused(format!(
                "DB {id} runs PostgreSQL {current}; an engine cannot be downgraded: set database.engineVersion to \"{have}\" or later"
            )))
        }
        (Some(have), Some(want)) if want > have => steps.push(engine(true)),
        _ => {
            if let (Some(want), Some(have)) = (minor(&d.engine_version), minor(current)) {
                if want > have {
                    steps.push(engine(false));
                }
            }
        }
    }
    // A restored instance's password, once RDS modifies it (the run that
    // restored it applies again until then).
    if db.master_user_secret().is_none() {
        if status == "available" {
            steps.push(Step::ManagedPassword);
        } else if status != "stopped" {
            notes.push(format!(
                "the password RDS manages is turned on once the instance is available ({status})"
            ));
        }
    }
    // A change RDS is applying already (ApplyImmediately is asynchronous: the
    // new value is pending until the instance has it) is not asked again.
    if let Some(p) = db.pending_modified_values() {
        steps.retain(|s| match s {
            Step::Class(_, c) => p.db_instance_class() != Some(c.as_str()),
            Step::Storage(_, g) => p.allocated_storage() != Some(*g),
            Step::BackupRetention(_, d) => p.backup_retention_period() != Some(*d),
            Step::MultiAz(on) => p.multi_az() != Some(*on),
            Step::Engine { to, .. } => p.engine_version() != Some(to.as_str()),
            _ => true,
        });
    }
    // RDS modifies an instance only when it is available (or optimizing its
    // storage): creating, modifying, upgrading or backing up, it answers
    // InvalidDBInstanceState. The changes wait; the run applies again.
    if !steps.is_empty() && !matches!(status, "available" | "storage-optimization" | "stopped") {
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        notes.push(format!(
            "{} once the instance is available ({status}): RDS modifies it only then",
            shown.join("; ")
        ));
        steps.clear();
    }
    // RDS modifies no stopped instance: the changes wait for the run that finds
    // it started (resume starts it; the apply after that changes it).
    if !steps.is_empty() && status == "stopped" {
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        notes.push(format!(
            "{} not yet: RDS does not modify a stopped instance; {}",
            shown.join("; "),
            if w.spec.paused {
                "resume, then apply again"
            } else {
                "it starts now, and this run makes them once it is available"
            }
        ));
        steps.clear();
    }
    // Pause and resume. RDS restarts a stopped instance after 7 days; a
    // scheduled re-pause (apply with paused) stops it again.
    // RDS stops no instance while it optimizes its storage (hours, sometimes
    // more than a day, after any storage change): said at once, not waited for.
    if w.spec.paused && status == "storage-optimization" {
        let since = storage_changed_at(db)
            .map(|t| {
                format!(
                    " (the storage change of {} UTC)",
                    mbstack_core::work::utc_stamp(t)
                )
            })
            .unwrap_or_default();
        notes.push(format!(
            "not stopped yet: RDS is optimizing its storage after a storage change{since}, which takes hours (sometimes more than a day) and no instance can be stopped during it; the service is at 0 tasks, the database runs (and bills) until a pause after the optimization stops it"
        ));
    }
    let also: String = notes.iter().map(|n| format!("; {n}")).collect();
    if w.spec.paused && status == "available" {
        steps.push(Step::Stop(also));
    } else if !w.spec.paused && status == "stopped" {
        steps.push(Step::Start(also));
    }
    Ok((steps, notes))
}

impl DbInstances {
    /// Puts `image` on record (and the highest version that has run), with
    /// what it replaces and this run, so that a rollback of the run puts it
    /// back ([`DbInstances::put_back_record`]).
    async fn record_image(
        &self,
        w: &Work<'_>,
        db: &DbInstance,
        image: &str,
    ) -> Result<(), TierError> {
        use mbstack_core::metabase::{RECORD_BEFORE_TAG, RECORD_BY_TAG, VERSION_TAG};
        let had = pairs(db.tag_list());
        let version_before = mbstack_core::naming::tag_value(&had, VERSION_TAG)
            .filter(|v| !v.is_empty())
            .unwrap_or("-")
            .to_string();
        let image_before = recorded_image(db).unwrap_or_else(|| "-".into());
        let mut tags: Vec<aws_sdk_rds::types::Tag> = record_tags(image, &had)
            .iter()
            .map(|(k, v)| rds_tag(k, v))
            .collect();
        tags.push(rds_tag(RECORD_BEFORE_TAG, &image_before));
        let by = format!(
            "{} {} {version_before}",
            w.run.id,
            mbstack_core::work::unix_now()
        );
        tags.push(rds_tag(RECORD_BY_TAG, &by));
        self.tag(db, tags).await
    }

    /// In a rollback: the Metabase image this run put on record is taken back,
    /// the one before it put back (the service returns to it). Returns it.
    pub(crate) async fn put_back_record(
        &self,
        w: &Work<'_>,
        db: &DbInstance,
    ) -> Result<Option<String>, TierError> {
        use mbstack_core::metabase::{IMAGE_TAG, RECORD_BEFORE_TAG, RECORD_BY_TAG, VERSION_TAG};
        let had = pairs(db.tag_list());
        let Some((run, _, version)) = mbstack_core::naming::tag_value(&had, RECORD_BY_TAG)
            .and_then(mbstack_core::metabase::record_by)
        else {
            return Ok(None);
        };
        if run != w.run.id {
            return Ok(None);
        }
        let image = mbstack_core::naming::tag_value(&had, RECORD_BEFORE_TAG).unwrap_or("-");
        let none = |v: &str| {
            if v == "-" {
                String::new()
            } else {
                v.to_string()
            }
        };
        let tags = vec![
            rds_tag(IMAGE_TAG, &none(image)),
            rds_tag(VERSION_TAG, &none(version)),
            rds_tag(RECORD_BY_TAG, ""),
        ];
        self.tag(db, tags).await?;
        Ok(Some(if image == "-" {
            "none".into()
        } else {
            image.to_string()
        }))
    }

    async fn tag(
        &self,
        db: &DbInstance,
        tags: Vec<aws_sdk_rds::types::Tag>,
    ) -> Result<(), TierError> {
        let arn = db.db_instance_arn().unwrap_or_default();
        self.rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("rds:AddTagsToResource", e))?;
        Ok(())
    }

    async fn modify(&self, db: &DbInstance, steps: &[Step]) -> Result<(), TierError> {
        let id = db.db_instance_identifier().unwrap_or_default();
        let mut call = self
            .rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(true);
        let mut any = false;
        let mut storage_changes = false;
        for step in steps {
            any |= !matches!(step, Step::Stop(_) | Step::Start(_) | Step::RecordImage(..));
            call = match step {
                Step::Class(_, class) => call.db_instance_class(class),
                Step::Storage(_, gib) => {
                    storage_changes = true;
                    call.allocated_storage(*gib)
                }
                Step::BackupRetention(_, days) => call.backup_retention_period(*days),
                Step::DeletionProtection(on) => call.deletion_protection(*on),
                Step::MultiAz(on) => call.multi_az(*on),
                Step::ManagedPassword => call.manage_master_user_password(true),
                Step::Engine { to, major, .. } => {
                    let call = call.engine_version(to);
                    if *major {
                        call.allow_major_version_upgrade(true)
                    } else {
                        call
                    }
                }
                Step::Stop(_) | Step::Start(_) | Step::RecordImage(..) => call,
            };
        }
        if !any {
            return Ok(());
        }
        call.send()
            .await
            .map_err(|e| aws_error("rds:ModifyDBInstance", e))?;
        if storage_changes {
            // When the storage may change again (RDS allows one change in 6 hours).
            let arn = db.db_instance_arn().unwrap_or_default();
            self.rds
                .add_tags_to_resource()
                .resource_name(arn)
                .tags(
                    aws_sdk_rds::types::Tag::builder()
                        .key(STORAGE_CHANGED_TAG)
                        .value(mbstack_core::work::unix_now().to_string())
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error("rds:AddTagsToResource", e))?;
        }
        Ok(())
    }
}

impl Resource for DbInstances {
    const KIND: &'static str = "db-instance";
    const LABEL: &'static str = "DB instance";
    type Live = DbInstance;
    type Want = ();
    type Step = Step;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        rds_name(&w.spec.stack)
    }
    /// A legacy-named instance is the stack's instance all the same.
    fn live_name(&self, live: &DbInstance) -> Option<String> {
        let id = live.db_instance_identifier()?;
        Some(if id == legacy_rds_name(&self.stack) {
            rds_name(&self.stack)
        } else {
            id.to_string()
        })
    }
    fn id(&self, live: &DbInstance) -> String {
        live.db_instance_identifier()
            .unwrap_or_default()
            .to_string()
    }
    fn tags(&self, live: &DbInstance) -> Vec<(String, String)> {
        pairs(live.tag_list())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<DbInstance>, TierError> {
        Ok(match &self.known {
            Some(known) => known.clone().into_iter().collect(),
            None => find(&self.rds, &w.spec.stack).await?.into_iter().collect(),
        })
    }

    fn diff(&self, w: &Work<'_>, db: &DbInstance, _want: &()) -> Result<Vec<Step>, TierError> {
        let mut steps = changes(w, db).map(|(steps, _)| steps)?;
        let had = recorded_image(db);
        if let Some(to) = self.record.as_ref().filter(|to| had.as_ref() != Some(*to)) {
            steps.push(Step::RecordImage(had, to.clone()));
        }
        Ok(steps)
    }

    fn describe(&self, w: &Work<'_>, _want: &()) -> String {
        describe(w, self.restore.as_ref())
    }
    fn summary(&self, w: &Work<'_>, db: &DbInstance) -> String {
        let notes = changes(w, db).map(|(_, n)| n).unwrap_or_default();
        let also: String = notes.iter().map(|n| format!("; {n}")).collect();
        // What it was restored from, as its tag says (not the spec's wish).
        let from = db
            .tag_list()
            .iter()
            .find(|t| t.key() == Some(RESTORED_FROM_TAG))
            .and_then(|t| t.value())
            .map(|s| format!("restored from {s}: "))
            .unwrap_or_default();
        format!(
            "{}, {}{also}",
            db.db_instance_status().unwrap_or(""),
            describe_from(w, &from)
        )
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<DbInstance, TierError> {
        let (Some(group), Some(sg)) = (&self.subnet_group, &self.security_group) else {
            return Err(TierError::Terminal(
                "the DB instance needs its subnet group and the network's DB security group".into(),
            ));
        };
        let id = rds_name(&w.spec.stack);
        let d = &w.spec.database;
        // A failed upgrade's return that did not finish left the stack's
        // database set aside: a new, empty one would open Metabase's setup
        // page to whoever comes first. Refused, with the way back.
        if let Some(aside) = set_aside_of(&self.rds, &w.spec.stack).await? {
            return Err(TierError::Refused(format!(
                "stack {}'s database is set aside as DB {aside} (by a failed upgrade's return), so no new, empty one is created: start it if it is stopped (aws rds start-db-instance --db-instance-identifier {aside}), rename it back (aws rds modify-db-instance --db-instance-identifier {aside} --new-db-instance-identifier {id} --apply-immediately) and apply with the image that migrated it; or delete it with a final snapshot and restore the snapshot you want with `mbstack up {} --restore …`",
                w.spec.stack, w.spec.stack
            )));
        }
        let snapshot = match &self.restore {
            Some(s) => Some(s.clone()),
            None => restore_snapshot(&self.rds, w.spec).await?,
        };
        if let Some(snapshot) = snapshot {
            let mut tags = rds_tags(w, ROLE);
            tags.push(
                aws_sdk_rds::types::Tag::builder()
                    .key(RESTORED_FROM_TAG)
                    .value(&snapshot.id)
                    .build(),
            );
            // What ran on the snapshot's database stays on record: the next
            // pass snapshots it again before another image, and Prepare
            // refuses an older one.
            if let Some(image) = &snapshot.metabase_image {
                tags.push(rds_tag(mbstack_core::metabase::IMAGE_TAG, image));
            }
            if let Some(v) = &snapshot.metabase_version {
                tags.push(rds_tag(mbstack_core::metabase::VERSION_TAG, v));
            }
            // The spec's settings; the engine version is the snapshot's (this
            // run's later passes upgrade it to the spec's once the restored
            // instance is available), its storage at least the snapshot's.
            let out = self
                .rds
                .restore_db_instance_from_db_snapshot()
                .db_instance_identifier(&id)
                .db_snapshot_identifier(&snapshot.id)
                .db_instance_class(&d.instance_class)
                .allocated_storage((d.storage_gib as i32).max(snapshot.storage_gib))
                .storage_type("gp3")
                .publicly_accessible(false)
                // No ManageMasterUserPassword: it "applies to RDS for Oracle
                // only"; the password is turned over to RDS by a
                // ModifyDBInstance once the instance is available.
                .db_subnet_group_name(group)
                .vpc_security_group_ids(sg)
                .backup_retention_period(i32::from(d.backup_retention_days))
                .preferred_backup_window(BACKUP_WINDOW)
                .auto_minor_version_upgrade(true)
                .deletion_protection(d.deletion_protection)
                .multi_az(d.multi_az)
                .copy_tags_to_snapshot(true)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| aws_error("rds:RestoreDBInstanceFromDBSnapshot", e))?;
            return Ok(out.db_instance().cloned().unwrap_or_else(|| {
                DbInstance::builder()
                    .db_instance_identifier(&id)
                    .db_instance_status("creating")
                    .build()
            }));
        }
        let out = self
            .rds
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
            .set_tags(Some({
                // A new database: the spec's image is the first to run on it.
                let mut tags = rds_tags(w, ROLE);
                for (k, v) in record_tags(&w.spec.app.image, &[]) {
                    tags.push(rds_tag(&k, &v));
                }
                tags
            }))
            .send()
            .await
            .map_err(|e| aws_error("rds:CreateDBInstance", e))?;
        Ok(out.db_instance().cloned().unwrap_or_else(|| {
            DbInstance::builder()
                .db_instance_identifier(&id)
                .db_instance_status("creating")
                .build()
        }))
    }

    async fn update(
        &self,
        w: &Work<'_>,
        db: &DbInstance,
        _want: &(),
        steps: &[Step],
    ) -> Result<Option<DbInstance>, TierError> {
        self.modify(db, steps).await?;
        let id = db.db_instance_identifier().unwrap_or_default();
        for step in steps {
            match step {
                Step::RecordImage(_, to) => self.record_image(w, db, to).await?,
                Step::Stop(_) => {
                    self.rds
                        .stop_db_instance()
                        .db_instance_identifier(id)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:StopDBInstance", e))?;
                }
                Step::Start(_) => {
                    self.rds
                        .start_db_instance()
                        .db_instance_identifier(id)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:StartDBInstance", e))?;
                }
                _ => {}
            }
        }
        Ok(None)
    }

    fn readiness(&self, w: &Work<'_>, db: &DbInstance) -> Readiness {
        let id = self.id(db);
        let status = db.db_instance_status().unwrap_or("unknown");
        match readiness(&id, status, w.spec.paused) {
            // Metabase reads the password from the secret RDS manages: none
            // yet (a restore), or one still being made, is not ready.
            Readiness::Ready if status != "stopped" => match db.master_user_secret() {
                None => Readiness::Pending(format!(
                    "DB {id}: turning on the password RDS manages (a restored instance keeps the snapshot's until then)"
                )),
                Some(s) if s.secret_status().is_some_and(|st| st != "active") => {
                    Readiness::Pending(format!(
                        "DB {id}: its password's secret is {}",
                        s.secret_status().unwrap_or("")
                    ))
                }
                Some(_) => Readiness::Ready,
            },
            other => other,
        }
    }

    /// Refuses while deletion protection is on (nothing deleted); takes a final
    /// snapshot unless the spec opts out, or the run that created the DB is
    /// being rolled back (the data is new).
    async fn delete(&self, w: &Work<'_>, db: &DbInstance) -> Result<Deleted, TierError> {
        let id = self.id(db);
        let tags = self.tags(db);
        let status = db.db_instance_status().unwrap_or("");
        if status == "deleting" {
            return Ok(Deleted::Waiting(format!("DB {id} to be deleted: deleting")));
        }
        let rollback = w.created_by_this_run(&tags) && w.run.scope == mbstack_core::Scope::Run;
        if db.deletion_protection() == Some(true) {
            if !rollback {
                return Err(TierError::Refused(format!(
                    "DB {id} has deletion protection on, so nothing was deleted: set database.deletionProtection to false, apply, then destroy"
                )));
            }
            // A rollback may take protection off what its own run created.
            // RDS modifies an instance only once it is available: until then,
            // and while the change applies, the rollback waits.
            let off = self
                .rds
                .modify_db_instance()
                .db_instance_identifier(&id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await;
            return match off {
                Ok(_) => Ok(Deleted::Waiting(format!(
                    "DB {id}: deletion protection → off (this run created it; its rollback deletes it)"
                ))),
                Err(e) if error_code(&e) == Some("InvalidDBInstanceState") => Ok(Deleted::Waiting(
                    format!("DB {id} to accept turning its deletion protection off ({status})"),
                )),
                Err(e) => Err(aws_error("rds:ModifyDBInstance", e)),
            };
        }
        let call = self.rds.delete_db_instance().db_instance_identifier(&id);
        let skip = rollback || !w.spec.database.final_snapshot;
        if !skip && BUSY.contains(&status) {
            return Ok(Deleted::Waiting(format!(
                "DB {id} to finish {status}: RDS takes no final snapshot before"
            )));
        }
        let (call, detail) = if rollback {
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
            let snapshot = final_snapshot_name(&w.spec.stack, &self.stamp);
            (
                call.final_db_snapshot_identifier(&snapshot)
                    .skip_final_snapshot(false),
                format!("final snapshot {snapshot}"),
            )
        };
        match call.send().await {
            Ok(_) => Ok(Deleted::Started {
                detail,
                waiting: format!("DB {id} to be deleted"),
            }),
            // Not yet (a status RDS refuses deletion in): wait, as for a busy instance.
            Err(e) if error_code(&e) == Some("InvalidDBInstanceState") => Ok(Deleted::Waiting(
                format!("DB {id} to accept its deletion ({status})"),
            )),
            Err(e) => Err(aws_error("rds:DeleteDBInstance", e)),
        }
    }
}

/// The tag that records when mbstack last changed the storage (Unix seconds).
pub(crate) const STORAGE_CHANGED_TAG: &str = "mbstack:storage-changed-at";
/// RDS allows the next storage change 6 hours after the last (or when its
/// optimization ends, if later).
const STORAGE_COOLDOWN_SECS: u64 = 6 * 3600;

fn storage_changed_at(db: &DbInstance) -> Option<u64> {
    db.tag_list()
        .iter()
        .find(|t| t.key() == Some(STORAGE_CHANGED_TAG))
        .and_then(|t| t.value())
        .and_then(|v| v.parse().ok())
}

/// What to do about the storage.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StorageStep {
    Same,
    /// The instance has more than the spec: converged (storage never shrinks).
    Larger,
    /// An increase under 10 % (RDS's minimum): the least size it takes.
    TooSmall(i32),
    /// RDS refuses a storage change now: why, and until when.
    Wait(String),
    Grow,
}

/// The storage decision: `have` and `want` GiB, the instance's status, when
/// mbstack last changed the storage and the time now (Unix seconds).
pub(crate) fn storage_step(
    have: i32,
    want: i32,
    status: &str,
    changed_at: Option<u64>,
    now: u64,
) -> StorageStep {
    if want == have {
        return StorageStep::Same;
    }
    if want < have {
        return StorageStep::Larger;
    }
    let least = (i64::from(have) * 11 + 9) / 10;
    if i64::from(want) < least {
        return StorageStep::TooSmall(i32::try_from(least).unwrap_or(i32::MAX));
    }
    if let Some(at) = changed_at.filter(|at| now < at + STORAGE_COOLDOWN_SECS) {
        let until = aws_sdk_rds::primitives::DateTime::from_secs(
            i64::try_from(at + STORAGE_COOLDOWN_SECS).unwrap_or(i64::MAX),
        )
        .fmt(aws_sdk_rds::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
        return StorageStep::Wait(format!(
            "RDS allows the next storage change 6 hours after the last, at {until}"
        ));
    }
    if status == "storage-optimization" {
        return StorageStep::Wait(
            "RDS is still optimizing the last storage change (the next may start when it ends)"
                .into(),
        );
    }
    StorageStep::Grow
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
    ),
    // A restore is authorized on the new instance, its source snapshot and its
    // subnet group: all under the request's tags.
    Permission::create_tagged(
        "CreateTagged",
        &[
            "rds:CreateDBInstance",
            "rds:RestoreDBInstanceFromDBSnapshot",
        ],
    ),
    // CreateDBInstance is also authorized on its subnet group (ours); the final
    // snapshot of DeleteDBInstance on the instance (ours) and on the new snapshot.
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "rds:CreateDBInstance",
            "rds:RestoreDBInstanceFromDBSnapshot",
            "rds:ModifyDBInstance",
            "rds:StopDBInstance",
            "rds:StartDBInstance",
            "rds:DeleteDBInstance",
            "rds:CreateDBSnapshot",
            "rds:AddTagsToResource",
        ],
    ),
    // The final snapshot has no tags until it exists: a ResourceTag condition
    // could never match it. Named as DeleteDBInstance names it.
    Permission::on(
        "FinalSnapshot",
        &["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
        &["arn:${Partition}:rds:*:*:snapshot:mbstack-*-final-*"],
    ),
    // Tags in the creating call, on the names this tier gives (RDS has no
    // CreateAction condition key): only `mbstack-*`, so that no foreign
    // database or subnet group (`billing-db`) can be tagged into the tier and
    // then deleted. Stacks named `<stack>-db` by older mbstack carry the tag
    // already (ChangeTagged).
    Permission::on(
        "TagOnCreate",
        &["rds:AddTagsToResource"],
        &[
            "arn:${Partition}:rds:*:*:db:mbstack-*",
            "arn:${Partition}:rds:*:*:subgrp:mbstack-*",
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
    use crate::test_support::{rds, run};
    use mbstack_core::metabase::IMAGE_TAG;
    use mbstack_core::{StackSpec, Tier, Verb};

    /// The kind as a converge builds it; `record`: the image to put on record.
    fn kind(spec: &StackSpec, record: Option<String>) -> DbInstances {
        DbInstances {
            rds: rds(),
            stack: spec.stack.clone(),
            subnet_group: Some(rds_name(&spec.stack)),
            security_group: Some("sg-db".into()),
            stamp: "20260101-000000".into(),
            known: None,
            record,
            restore: None,
        }
    }

    /// An available instance as `spec` asks for it (a minor version of its
    /// engine, its password managed by RDS, its image on record).
    fn instance_as(spec: &StackSpec) -> DbInstance {
        let d = &spec.database;
        DbInstance::builder()
            .db_instance_identifier(rds_name(&spec.stack))
            .db_instance_status("available")
            .db_instance_class(&d.instance_class)
            .allocated_storage(d.storage_gib as i32)
            .backup_retention_period(i32::from(d.backup_retention_days))
            .deletion_protection(d.deletion_protection)
            .multi_az(d.multi_az)
            .engine_version(format!("{}.4", d.engine_version))
            .storage_encrypted(true)
            .master_user_secret(
                aws_sdk_rds::types::MasterUserSecret::builder()
                    .secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1")
                    .build(),
            )
            .tag_list(rds_tag(IMAGE_TAG, &spec.app.image))
            .build()
    }

    #[test]
    fn an_instance_as_the_spec_asks_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let dbs = kind(&spec, Some(spec.app.image.clone()));
        let steps = dbs.diff(&w, &instance_as(&spec), &()).unwrap();
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_larger_class_and_storage_in_the_spec_modify_the_instance_in_place() {
        let live = instance_as(&StackSpec::new("s"));
        let mut spec = StackSpec::new("s");
        spec.database.instance_class = "db.t4g.small".into();
        spec.database.storage_gib = 30;
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let steps = kind(&spec, None).diff(&w, &live, &()).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Class("db.t4g.micro".into(), "db.t4g.small".into()),
                Step::Storage(20, 30),
            ]
        );
        assert_eq!(steps[0].to_string(), "class db.t4g.micro → db.t4g.small");
    }

    #[test]
    fn an_older_engine_in_the_spec_cannot_downgrade_the_instance() {
        let live = instance_as(&StackSpec::new("s"));
        let mut spec = StackSpec::new("s");
        spec.database.engine_version = "16".into();
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let Err(TierError::Refused(why)) = kind(&spec, None).diff(&w, &live, &()) else {
            panic!("a downgrade was not refused");
        };
        assert!(why.contains("cannot be downgraded"), "{why}");
        assert!(why.contains("database.engineVersion to \"17\""), "{why}");
    }

    #[test]
    fn a_paused_spec_stops_an_available_instance() {
        let mut spec = StackSpec::new("s");
        spec.paused = true;
        let live = instance_as(&spec);
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let steps = kind(&spec, None).diff(&w, &live, &()).unwrap();
        assert_eq!(steps, vec![Step::Stop(String::new())]);
        assert_eq!(steps[0].to_string(), "stop (paused)");
    }

    #[test]
    fn another_image_in_the_spec_is_put_on_record_once_it_may_go_out() {
        let before = StackSpec::new("s");
        let live = instance_as(&before);
        let mut spec = before.clone();
        spec.app.image = "metabase/metabase:v0.59.0".into();
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let steps = kind(&spec, Some(spec.app.image.clone()))
            .diff(&w, &live, &())
            .unwrap();
        assert_eq!(
            steps,
            vec![Step::RecordImage(
                Some(before.app.image.clone()),
                spec.app.image.clone()
            )]
        );
    }

    #[test]
    fn versions() {
        assert_eq!(major("16.4"), Some(16));
        assert_eq!(minor("16.4"), Some(4));
        assert_eq!(minor("17"), None);
    }

    #[test]
    fn storage_grows_by_ten_percent_once_in_six_hours_and_never_shrinks() {
        let now = 1_800_000_000;
        assert_eq!(
            storage_step(20, 20, "available", None, now),
            StorageStep::Same
        );
        assert_eq!(
            storage_step(22, 20, "available", None, now),
            StorageStep::Larger
        );
        assert_eq!(
            storage_step(20, 21, "available", None, now),
            StorageStep::TooSmall(22)
        );
        assert_eq!(
            storage_step(25, 27, "available", None, now),
            StorageStep::TooSmall(28)
        );
        assert_eq!(
            storage_step(20, 22, "available", None, now),
            StorageStep::Grow
        );
        let recent = storage_step(20, 30, "available", Some(now - 3600), now);
        match recent {
            StorageStep::Wait(why) => assert!(why.contains("2027-01-15T13:00:00Z"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            storage_step(20, 30, "available", Some(now - 6 * 3600), now),
            StorageStep::Grow
        );
        assert!(matches!(
            storage_step(20, 30, "storage-optimization", None, now),
            StorageStep::Wait(_)
        ));
    }
}
