//! The manual DB snapshot taken before another Metabase version runs on the
//! stack's database (`mbstack-<stack>-pre-<version>-<time>`). Metabase
//! migrates its application database when it starts, and a database migrated
//! by a newer version cannot be run by an older one: this snapshot is the way
//! back. The image that last went out is on record in the instance's tags
//! (`mbstack_core::metabase`); when the spec's image is another one (or none
//! is on record), the tier snapshots the instance and waits until the
//! snapshot is `available` before it records the new image, so the app tier
//! (the next stage) rolls it out only then.
//!
//! mbstack never deletes these snapshots (a destroy and a rollback list
//! none): they are named in the run's output and kept until the user deletes
//! them (`aws rds delete-db-snapshot`).

use aws_sdk_rds::types::{DbInstance, DbSnapshot, Tag};
use mbstack_core::iam::Permission;
use mbstack_core::metabase::{version_of, BEFORE_IMAGE_TAG, IMAGE_TAG, VERSION_TAG};
use mbstack_core::naming::{idempotency_key, rds_name, tag_value, STACK_TAG};
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{aws_error, Readiness, TierError, Verb, Work};

use crate::instance::recorded_image;
use crate::tags::{pairs, rds_tags};

const ROLE: &str = "pre-upgrade";

/// The snapshot before `image` of the stack's instance `instance` (as read
/// before this pass; None: there is none yet).
pub(crate) struct PreUpgrade {
    pub rds: aws_sdk_rds::Client,
    pub instance: Option<DbInstance>,
    pub image: String,
    /// Names a snapshot taken now.
    pub stamp: String,
}

impl PreUpgrade {
    /// Whether the database must be snapshotted before `image` goes out: it
    /// was made by an earlier run (a new one holds nothing), and the image on
    /// record is another one, or none is.
    pub(crate) fn wanted(&self, w: &Work<'_>) -> bool {
        let Some(db) = &self.instance else {
            return false;
        };
        !w.created_by_this_run(&pairs(db.tag_list()))
            && recorded_image(db).as_deref() != Some(self.image.as_str())
    }

    /// Whether RDS snapshots the instance now: "The source DB instance must be
    /// in the available or storage-optimization state" (CreateDBSnapshot).
    pub(crate) fn can_snapshot(&self) -> bool {
        self.instance.as_ref().is_some_and(|db| {
            matches!(
                db.db_instance_status(),
                Some("available" | "storage-optimization")
            )
        })
    }

    /// The wants of a converge: one snapshot when wanted and the instance can
    /// be snapshotted now; none otherwise.
    pub(crate) fn wants(&self, w: &Work<'_>) -> Vec<()> {
        if self.wanted(w) && self.can_snapshot() {
            vec![()]
        } else {
            Vec::new()
        }
    }

    fn label(&self) -> String {
        match version_of(&self.image) {
            Some(v) => v.label(),
            None => idempotency_key(&[&self.image])[..8].to_string(),
        }
    }

    fn key(&self) -> String {
        format!("before {}", self.image)
    }
}

impl Resource for PreUpgrade {
    const KIND: &'static str = "db-snapshot";
    const LABEL: &'static str = "DB snapshot";
    type Live = DbSnapshot;
    type Want = ();
    type Step = NoStep;

    fn name(&self, _w: &Work<'_>, _want: &()) -> String {
        self.key()
    }
    fn live_name(&self, live: &DbSnapshot) -> Option<String> {
        tag_value(&pairs(live.tag_list()), BEFORE_IMAGE_TAG).map(|i| format!("before {i}"))
    }
    fn id(&self, live: &DbSnapshot) -> String {
        live.db_snapshot_identifier()
            .unwrap_or_default()
            .to_string()
    }
    fn tags(&self, live: &DbSnapshot) -> Vec<(String, String)> {
        pairs(live.tag_list())
    }

    /// The instance's manual snapshots taken before the spec's image, of the
    /// database as it is on record now (the image on record then is the one on
    /// record now) and taken since the instance was made: an older one of the
    /// same name (a restore reuses the name) or of another record (A→B→A→B)
    /// holds less than the database now. None in a destroy or a rollback:
    /// mbstack keeps them.
    async fn list(&self, w: &Work<'_>) -> Result<Vec<DbSnapshot>, TierError> {
        let Some(id) = self
            .instance
            .as_ref()
            .and_then(|db| db.db_instance_identifier())
            .filter(|_| w.verb != Verb::Destroy && self.wanted(w))
        else {
            return Ok(Vec::new());
        };
        let out = manual_snapshots(&self.rds, id).await?;
        let on_record = self.instance.as_ref().and_then(recorded_image);
        // Since the instance was made, and since the image now on record was
        // put there (what ran before it is not in an older snapshot).
        let made = self
            .instance
            .as_ref()
            .and_then(|db| db.instance_create_time())
            .map(|t| t.secs());
        let recorded_at = self.instance.as_ref().and_then(|db| {
            tag_value(&pairs(db.tag_list()), mbstack_core::metabase::RECORD_BY_TAG)
                .and_then(mbstack_core::metabase::record_by)
                .map(|(_, at, _)| at)
        });
        let made = made.max(recorded_at);
        Ok(out
            .iter()
            .filter(|s| {
                let tags = pairs(s.tag_list());
                let held = tag_value(&tags, IMAGE_TAG).filter(|v| !v.is_empty());
                tag_value(&tags, STACK_TAG) == Some(w.spec.stack.as_str())
                    && tag_value(&tags, BEFORE_IMAGE_TAG) == Some(self.image.as_str())
                    && held == on_record.as_deref()
                    && s.snapshot_create_time().map(|t| t.secs()) >= made
            })
            .cloned()
            .collect())
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        _live: &DbSnapshot,
        _want: &(),
    ) -> Result<Vec<NoStep>, TierError> {
        Ok(Vec::new())
    }

    fn describe(&self, w: &Work<'_>, _want: &()) -> String {
        format!(
            "snapshot the database first: {}-pre-{}-<time>, before {} runs on it (kept; the way back)",
            rds_name(&w.spec.stack),
            self.label(),
            self.image
        )
    }
    fn summary(&self, _w: &Work<'_>, live: &DbSnapshot) -> String {
        format!(
            "before {} ({})",
            self.image,
            live.status().unwrap_or("unknown")
        )
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<DbSnapshot, TierError> {
        let Some(db) = &self.instance else {
            return Err(TierError::Terminal(
                "a pre-upgrade snapshot needs the stack's DB instance".into(),
            ));
        };
        let instance = db.db_instance_identifier().unwrap_or_default();
        let name = format!(
            "{}-pre-{}-{}",
            rds_name(&w.spec.stack),
            self.label(),
            self.stamp
        );
        // What ran on the database until now goes with its snapshot (a
        // restore of it reads it back).
        let mut tags = rds_tags(w, ROLE);
        tags.push(
            Tag::builder()
                .key(BEFORE_IMAGE_TAG)
                .value(&self.image)
                .build(),
        );
        let had = pairs(db.tag_list());
        for key in [IMAGE_TAG, VERSION_TAG] {
            if let Some(v) = tag_value(&had, key) {
                tags.push(Tag::builder().key(key).value(v).build());
            }
        }
        let out = self
            .rds
            .create_db_snapshot()
            .db_instance_identifier(instance)
            .db_snapshot_identifier(&name)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| match mbstack_core::error_code(&e) {
                // 100 manual snapshots per region by default, final ones included.
                Some("SnapshotQuotaExceeded") => TierError::Refused(format!(
                    "the database was not snapshotted before {}, so it was not rolled out: RDS's manual snapshot quota of this region is used up (100 by default; final and pre-upgrade snapshots of every database count). Delete pre-upgrade snapshots no longer needed (aws rds describe-db-snapshots --snapshot-type manual; aws rds delete-db-snapshot --db-snapshot-identifier …), or raise the quota in Service Quotas, and apply again",
                    self.image
                )),
                _ => aws_error("rds:CreateDBSnapshot", e),
            })?;
        Ok(out.db_snapshot().cloned().unwrap_or_else(|| {
            DbSnapshot::builder()
                .db_snapshot_identifier(&name)
                .status("creating")
                .build()
        }))
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &DbSnapshot,
        _want: &(),
        _steps: &[NoStep],
    ) -> Result<Option<DbSnapshot>, TierError> {
        Ok(None)
    }

    fn readiness(&self, _w: &Work<'_>, live: &DbSnapshot) -> Readiness {
        match live.status() {
            Some("available") => Readiness::Ready,
            Some("failed") => Readiness::Failed(format!(
                "DB snapshot {} before {} failed: the new version was not rolled out",
                self.id(live),
                self.image
            )),
            other => Readiness::Pending(format!(
                "DB snapshot {} before {} runs on the database: {}",
                self.id(live),
                self.image,
                other.unwrap_or("creating")
            )),
        }
    }

    /// Never reached: a destroy and a rollback list none (kept).
    async fn delete(&self, _w: &Work<'_>, live: &DbSnapshot) -> Result<Deleted, TierError> {
        Err(TierError::Refused(format!(
            "mbstack keeps pre-upgrade snapshot {} (the way back to what ran before): delete it with `aws rds delete-db-snapshot` when it is no longer needed",
            self.id(live)
        )))
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["rds:DescribeDBSnapshots", "rds:DescribeAccountAttributes"],
    ),
    // CreateDBSnapshot is authorized on the instance (ours: ChangeTagged in
    // instance.rs) and on the new snapshot, which has no tags yet: named.
    Permission::on(
        "PreUpgradeSnapshot",
        &["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
        &["arn:${Partition}:rds:*:*:snapshot:mbstack-*-pre-*"],
    )
    .when(r#"{"StringEquals": {"aws:RequestTag/mbstack:tier": "${Tier}"}}"#),
];

/// The manual snapshots of instance `id`.
async fn manual_snapshots(
    rds: &aws_sdk_rds::Client,
    id: &str,
) -> Result<Vec<DbSnapshot>, TierError> {
    let out = rds
        .describe_db_snapshots()
        .db_instance_identifier(id)
        .snapshot_type("manual")
        .send()
        .await
        .map_err(|e| aws_error("rds:DescribeDBSnapshots", e))?;
    Ok(out.db_snapshots().to_vec())
}

/// Why `image` may not run on the stack's database: a Metabase version older
/// than the highest that has run on it (and migrated it), which Metabase
/// cannot run on. None when it may (no database, no version on record, or an
/// image whose version its tag does not say). Prepare asks this before
/// anything is touched; the answer names the way back.
pub async fn downgrade_problem(
    rds: &aws_sdk_rds::Client,
    stack: &str,
    image: &str,
) -> Result<Option<String>, TierError> {
    use mbstack_core::metabase::Version;
    let Some(want) = version_of(image) else {
        return Ok(None);
    };
    let Some(db) = crate::instance::find(rds, stack).await? else {
        return Ok(None);
    };
    let Some(ran) = tag_value(&pairs(db.tag_list()), VERSION_TAG).and_then(Version::parse) else {
        return Ok(None);
    };
    if want >= ran {
        return Ok(None);
    }
    // The snapshot taken before the newest version that ran.
    let id = db.db_instance_identifier().unwrap_or_default();
    let before = manual_snapshots(rds, id)
        .await?
        .iter()
        .filter(|s| {
            tag_value(&pairs(s.tag_list()), BEFORE_IMAGE_TAG).and_then(version_of) == Some(ran)
        })
        .max_by_key(|s| s.snapshot_create_time().map(|t| t.secs()))
        .and_then(|s| s.db_snapshot_identifier().map(str::to_string));
    let way_back = match before {
        Some(s) => format!(
            "to run {want} again, restore the snapshot taken before {ran}: `mbstack down {stack}`, then `mbstack up {stack} --restore {s} --set app.image={image}` (the data written since is not in it)"
        ),
        None => format!(
            "no snapshot taken before {ran} is left to go back to; keep app.image at {ran} or later"
        ),
    };
    Ok(Some(format!(
        "Metabase {ran} has run on stack {stack}'s database and migrated it, and Metabase {want} cannot run on a database a newer version migrated (it does not downgrade): nothing was changed; {way_back}"
    )))
}

/// The snapshot taken before the image `db` has on record, of the database as
/// it was under the image before it, when run `run` put it there (None: the
/// record is not that run's, or no such snapshot is available). A failed run
/// returns the database to it.
pub(crate) async fn before_record_of(
    rds: &aws_sdk_rds::Client,
    db: &DbInstance,
    run: &str,
) -> Result<Option<String>, TierError> {
    let had = pairs(db.tag_list());
    let Some((by, at, _)) = tag_value(&had, mbstack_core::metabase::RECORD_BY_TAG)
        .and_then(mbstack_core::metabase::record_by)
    else {
        return Ok(None);
    };
    let Some(image) = recorded_image(db).filter(|_| by == run) else {
        return Ok(None);
    };
    let before = tag_value(&had, mbstack_core::metabase::RECORD_BEFORE_TAG)
        .filter(|v| *v != "-" && !v.is_empty());
    let id = db.db_instance_identifier().unwrap_or_default();
    Ok(manual_snapshots(rds, id)
        .await?
        .iter()
        .filter(|s| {
            let tags = pairs(s.tag_list());
            tag_value(&tags, BEFORE_IMAGE_TAG) == Some(image.as_str())
                && tag_value(&tags, IMAGE_TAG).filter(|v| !v.is_empty()) == before
                && s.status() == Some("available")
                && s.snapshot_create_time().map(|t| t.secs()) <= Some(at)
        })
        .max_by_key(|s| s.snapshot_create_time().map(|t| t.secs()))
        .and_then(|s| s.db_snapshot_identifier().map(str::to_string)))
}

/// Manual snapshots an upgrade may need: the one before it, and the final
/// snapshot of the migrated database should the upgrade fail and be returned.
pub const UPGRADE_SNAPSHOTS: i64 = 2;

/// Why `image` cannot be rolled out safely now for want of room for its
/// snapshots: RDS's manual snapshot quota of the region (100 by default,
/// final snapshots of every database included) has fewer than
/// [`UPGRADE_SNAPSHOTS`] left. None when there is room, when `image` is the
/// one on record (no snapshot is taken), or when the quota cannot be read
/// (the snapshot's own refusal then says it). Prepare asks this before
/// anything is touched.
pub async fn snapshot_room_problem(
    rds: &aws_sdk_rds::Client,
    stack: &str,
    image: &str,
) -> Result<Option<String>, TierError> {
    let Some(db) = crate::instance::find(rds, stack).await? else {
        return Ok(None);
    };
    if recorded_image(&db).as_deref() == Some(image) {
        return Ok(None);
    }
    let attributes = match rds.describe_account_attributes().send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %mbstack_core::error_code(&e).unwrap_or("unknown"), "the manual snapshot quota could not be read");
            return Ok(None);
        }
    };
    let Some(q) = attributes
        .account_quotas()
        .iter()
        .find(|q| q.account_quota_name() == Some("ManualSnapshots"))
    else {
        return Ok(None);
    };
    let (used, max) = (q.used().unwrap_or(0), q.max().unwrap_or(i64::MAX));
    if max - used >= UPGRADE_SNAPSHOTS {
        return Ok(None);
    }
    Ok(Some(format!(
        "RDS's manual snapshot quota of this region is {max} and {used} are kept, and the change to {image} needs room for {UPGRADE_SNAPSHOTS} (the snapshot taken before it, and the migrated database's final snapshot should it fail): nothing was changed; delete pre-upgrade or final snapshots no longer needed (aws rds describe-db-snapshots --snapshot-type manual; aws rds delete-db-snapshot --db-snapshot-identifier …), or raise the quota in Service Quotas"
    )))
}

/// The stack's pre-upgrade snapshots, newest first: (identifier, the image it
/// was taken before, status). `mbstack status STACK` lists them.
pub async fn pre_upgrade_snapshots(
    rds: &aws_sdk_rds::Client,
    stack: &str,
) -> Result<Vec<(String, String, String)>, TierError> {
    let Some(db) = crate::instance::find(rds, stack).await? else {
        return Ok(Vec::new());
    };
    let id = db.db_instance_identifier().unwrap_or_default();
    let mut all = manual_snapshots(rds, id).await?;
    all.sort_by_key(|s| std::cmp::Reverse(s.snapshot_create_time().map(|t| t.secs())));
    Ok(all
        .iter()
        .filter_map(|s| {
            let tags = pairs(s.tag_list());
            let before = tag_value(&tags, BEFORE_IMAGE_TAG)?;
            Some((
                s.db_snapshot_identifier().unwrap_or_default().to_string(),
                before.to_string(),
                s.status().unwrap_or("unknown").to_string(),
            ))
        })
        .collect())
}
