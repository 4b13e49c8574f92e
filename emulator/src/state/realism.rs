//! What the realism rules remember (creations, deletions, the ENIs that
//! linger) and AWS's timings, at the emulator's scale.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Real AWS: a NAT gateway takes about 2 minutes to become available and 1 to go.
pub(crate) const NAT_CREATE: Duration = Duration::from_secs(120);
pub(crate) const NAT_DELETE: Duration = Duration::from_secs(60);
/// The default quota of Elastic IPs per region (EC2-VPC Elastic IPs, L-0263D0A3),
/// as DescribeAccountAttributes' `vpc-max-elastic-ips` reports it.
pub(crate) const EIP_QUOTA: usize = 5;
/// The default VPC quota of a region ("VPCs per Region", the default VPC
/// included), and its internet gateways' (which follow it).
pub(crate) const VPC_QUOTA: usize = 5;
/// A deleted NAT gateway's Elastic IP stays "in use" for a short while after
/// the gateway reports `deleted`.
pub(crate) const NAT_EIP_SETTLE: Duration = Duration::from_secs(60);
/// A small single-AZ RDS instance: ~6 min to create (the last part backing up),
/// ~5 min to delete.
pub(crate) const DB_CREATE: Duration = Duration::from_secs(360);
pub(crate) const DB_DELETE: Duration = Duration::from_secs(300);
/// After a storage change RDS refuses another for 6 hours (or until the storage
/// optimization ends, if later).
pub(crate) const STORAGE_COOLDOWN: Duration = Duration::from_secs(6 * 3600);
/// How long an instance stays `storage-optimization` after a storage change
/// ("several hours", "sometimes more than 24": AWS's knowledge center; the
/// emulator plays two).
pub(crate) const STORAGE_OPTIMIZATION: Duration = Duration::from_secs(2 * 3600);
/// How long a ModifyDBInstance applied at once shows `modifying` (or an
/// engine upgrade `upgrading`): minutes on AWS.
pub(crate) const DB_MODIFY: Duration = Duration::from_secs(120);
/// Manual DB snapshots per region: 100 by default (RDS quotas), final
/// snapshots included.
pub(crate) const MANUAL_SNAPSHOT_QUOTA: usize = 100;
/// A renamed instance: "The new DNS name for the renamed DB instance becomes
/// effective in about 10 minutes. The renamed DB instance is not available
/// until the new name becomes effective" (RDS user guide, Renaming a DB
/// instance).
pub(crate) const DB_RENAME: Duration = Duration::from_secs(600);

/// A manual DB snapshot (CreateDBSnapshot) of a small instance: `creating` for
/// minutes before `available` (RDS user guide, "Creating a DB snapshot": the
/// time depends on the size; the first snapshot copies all of it).
pub(crate) const DB_SNAPSHOT: Duration = Duration::from_secs(180);
/// Statuses in which RDS cannot take a final snapshot. Kept apart from the data
/// tier's own list on purpose: the emulator models AWS, and a list shared with
/// the code under test could not catch that code's mistake.
pub(crate) const BUSY: &[&str] = &[
    "creating",
    "backing-up",
    "modifying",
    "starting",
    "stopping",
    "rebooting",
    "upgrading",
];
/// An EC2 instance: `pending` for ~30 s after RunInstances or StartInstances
/// before `running` (EC2 user guide, "Instance state changes").
pub(crate) const INSTANCE_START: Duration = Duration::from_secs(30);
/// An EC2 instance: `stopping` for ~30 s after StopInstances before `stopped`;
/// StartInstances refuses it meanwhile (IncorrectInstanceState).
pub(crate) const INSTANCE_STOP: Duration = Duration::from_secs(30);
/// An ALB: ~2.5 min from provisioning to active.
pub(crate) const ALB_CREATE: Duration = Duration::from_secs(150);
/// The ENIs of a deleted ALB or Fargate service linger ~1.5 min and block the
/// deletion of their subnets and security groups.
pub(crate) const ENI_LINGER: Duration = Duration::from_secs(90);
/// A deleted service's Fargate tasks take ~1 min to stop and deprovision; until
/// then their cluster cannot be deleted.
pub(crate) const TASKS_STOP: Duration = Duration::from_secs(60);
/// Metabase's start plus the target group's health checks: ~3 min.
pub(crate) const ECS_START: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub(crate) struct Realism {
    pub enabled: bool,
    /// Real durations are divided by this (60: a 2-minute create takes 2 s).
    pub scale: u32,
    pub refused: Arc<AtomicU64>,
    /// "Not yet" answers (lingering ENIs): AWS's timing, waited out by mbstack.
    pub not_yet: Arc<AtomicU64>,
    pub(crate) nat_created: HashMap<String, Instant>,
    /// CreateNatGateway's ClientToken → the gateway it created.
    pub(crate) nat_tokens: HashMap<String, String>,
    pub(crate) nat_deleted: HashMap<String, Instant>,
    pub(crate) db_created: HashMap<String, Instant>,
    /// DB instances whose last ModifyDBInstance is still being applied: since
    /// when, and the status it shows (`modifying`, `upgrading`).
    pub(crate) db_modified: HashMap<String, (Instant, &'static str)>,
    /// DB instances restored from a snapshot whose password RDS does not
    /// manage yet (no `MasterUserSecret` until a ModifyDBInstance turns it on).
    pub(crate) password_unmanaged: std::collections::HashSet<String>,
    /// DB instances whose storage last changed: when.
    pub(crate) storage_changed: HashMap<String, Instant>,
    /// Manual DB snapshots: when each was requested (`creating` until
    /// [`DB_SNAPSHOT`] has passed, its instance `backing-up` meanwhile), and
    /// of which instance.
    pub(crate) snapshot_created: HashMap<String, (Instant, String)>,
    /// Deleted DB instances: when, and their description (status `deleting`).
    pub(crate) db_deleted: HashMap<String, (Instant, String)>,
    pub(crate) alb_created: HashMap<String, Instant>,
    /// EC2 instances launched or started: when (`pending` for a while).
    pub(crate) instance_started: HashMap<String, Instant>,
    /// EC2 instances stopped: when (`stopping` for a while).
    pub(crate) instance_stopped: HashMap<String, Instant>,
    /// Subnets and security groups of ENIs that outlive their ALB or service.
    pub(crate) lingering: Vec<(Instant, Vec<String>)>,
    /// Clusters whose deleted service's tasks are still stopping: since when.
    pub(crate) tasks_stopping: HashMap<String, Instant>,
    /// The fraction of calls answered with throttling (the reliability knob).
    pub throttle: f64,
    /// The account's Elastic IP quota ([`EIP_QUOTA`] unless a test raised it,
    /// as an account owner can through Service Quotas).
    pub eip_quota: usize,
    /// The region's VPC and internet gateway quota ([`VPC_QUOTA`] unless a
    /// test raised it).
    pub vpc_quota: usize,
    /// The region's manual DB snapshot quota ([`MANUAL_SNAPSHOT_QUOTA`]
    /// unless a test changed it).
    pub manual_snapshot_quota: usize,
    /// The account is on AWS's Free plan (accounts created from 15 July 2025):
    /// EC2 launches only free-tier-eligible types.
    pub free_plan: bool,
    pub(crate) rng: u64,
}

impl Default for Realism {
    fn default() -> Self {
        Self {
            enabled: false,
            scale: 60,
            refused: Arc::new(AtomicU64::new(0)),
            not_yet: Arc::new(AtomicU64::new(0)),
            nat_created: HashMap::new(),
            nat_tokens: HashMap::new(),
            nat_deleted: HashMap::new(),
            db_created: HashMap::new(),
            db_modified: HashMap::new(),
            password_unmanaged: Default::default(),
            storage_changed: HashMap::new(),
            snapshot_created: HashMap::new(),
            db_deleted: HashMap::new(),
            alb_created: HashMap::new(),
            instance_started: HashMap::new(),
            instance_stopped: HashMap::new(),
            lingering: Vec::new(),
            tasks_stopping: HashMap::new(),
            throttle: 0.0,
            eip_quota: EIP_QUOTA,
            vpc_quota: VPC_QUOTA,
            manual_snapshot_quota: MANUAL_SNAPSHOT_QUOTA,
            free_plan: false,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Realism {
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d / self.scale.max(1)
    }

    /// A manual snapshot's status as AWS would show it.
    pub(crate) fn snapshot_status(&self, id: &str, moto_status: &str) -> String {
        match self.snapshot_created.get(id) {
            Some((t, _))
                if moto_status == "available" && t.elapsed() < self.scaled(DB_SNAPSHOT) =>
            {
                "creating".into()
            }
            _ => moto_status.into(),
        }
    }

    pub(crate) fn db_status(&self, id: &str, moto_status: &str) -> String {
        if moto_status != "available" {
            return moto_status.into();
        }
        if let Some(t) = self.db_created.get(id) {
            let full = self.scaled(DB_CREATE);
            let e = t.elapsed();
            if e < full * 4 / 5 {
                return "creating".into();
            } else if e < full {
                return "backing-up".into();
            }
        }
        if let Some((t, status)) = self.db_modified.get(id) {
            let lasts = match *status {
                "renaming" => DB_RENAME,
                _ => DB_MODIFY,
            };
            if t.elapsed() < self.scaled(lasts) {
                return (*status).into();
            }
        }
        // While a manual snapshot of it is made.
        let snapshotting = self
            .snapshot_created
            .values()
            .any(|(t, db)| db == id && t.elapsed() < self.scaled(DB_SNAPSHOT));
        if snapshotting {
            return "backing-up".into();
        }
        let optimizing = self
            .storage_changed
            .get(id)
            .is_some_and(|t| t.elapsed() < self.scaled(STORAGE_OPTIMIZATION));
        match optimizing {
            true => "storage-optimization".into(),
            false => moto_status.into(),
        }
    }

    pub(crate) fn deleting_db(&self, id: &str) -> Option<&String> {
        self.db_deleted
            .get(id)
            .filter(|(t, _)| t.elapsed() < self.scaled(DB_DELETE))
            .map(|(_, xml)| xml)
    }

    pub(crate) fn lingers(&self, resource: &str) -> bool {
        let limit = self.scaled(ENI_LINGER);
        self.lingering
            .iter()
            .any(|(t, used)| t.elapsed() < limit && used.iter().any(|u| u == resource))
    }

    /// Whether this call is throttled (pseudo-random, reproducible).
    pub(crate) fn throttled(&mut self) -> bool {
        if self.throttle <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 10_000) as f64 / 10_000.0 < self.throttle
    }

    /// Whether this NAT gateway is `deleted` but its address not yet free.
    pub(crate) fn nat_eip_settling(&self, id: &str) -> bool {
        self.nat_deleted.get(id).is_some_and(|t| {
            let e = t.elapsed();
            e >= self.scaled(NAT_DELETE) && e < self.scaled(NAT_DELETE + NAT_EIP_SETTLE)
        })
    }

    /// A load balancer is `provisioning` for a while after its creation.
    pub(crate) fn alb_state(&self, arn: &str, moto_state: &str) -> String {
        match self.alb_created.get(arn) {
            Some(t) if moto_state == "active" && t.elapsed() < self.scaled(ALB_CREATE) => {
                "provisioning".into()
            }
            _ => moto_state.into(),
        }
    }

    /// An instance moto reports `running` is `pending` for a while after its
    /// launch or start.
    pub(crate) fn instance_state(&self, id: &str, moto_state: &str) -> String {
        match (
            moto_state,
            self.instance_started.get(id),
            self.instance_stopped.get(id),
        ) {
            ("running", Some(t), _) if t.elapsed() < self.scaled(INSTANCE_START) => {
                "pending".into()
            }
            ("stopped", _, Some(t)) if t.elapsed() < self.scaled(INSTANCE_STOP) => {
                "stopping".into()
            }
            _ => moto_state.into(),
        }
    }

    /// The state AWS would report for a NAT gateway moto reports as `moto_state`.
    pub(crate) fn nat_state(&self, id: &str, moto_state: &str) -> String {
        if let Some(t) = self.nat_deleted.get(id) {
            if t.elapsed() < self.scaled(NAT_DELETE) {
                return "deleting".into();
            }
        }
        if let Some(t) = self.nat_created.get(id) {
            if moto_state == "available" && t.elapsed() < self.scaled(NAT_CREATE) {
                return "pending".into();
            }
        }
        moto_state.to_string()
    }
}

/// The shortest a default stack's create can take against these timings at
/// `scale`: the longest chain of AWS waits that must follow one another. The
/// database (the longest of the three the app needs: database, ALB, NAT
/// gateway, which can all run at once), then IAM's propagation of the roles the
/// app creates, then Metabase's start behind the target group's health checks.
/// API calls and polls are not in it: the benchmark's wall time ÷ this path is
/// what the scheduling and the polls add.
pub fn create_critical_path(scale: u32) -> Duration {
    let upstream = DB_CREATE.max(ALB_CREATE).max(NAT_CREATE);
    (upstream + crate::state::deploying::ROLE_PROPAGATION + ECS_START) / scale.max(1)
}
