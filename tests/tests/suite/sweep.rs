//! The reliability sweep (issues 10 and 33): the k-th AWS call of a run (or
//! its k-th Lambda invocation) fails with each class of fault, in every path
//! the stack has:
//! - **apply**, **domain apply** (a stack with `loadBalancer.domain`: ACM,
//!   Route 53, the HTTPS listener, the ledger) and **restore** (a create from
//!   the final snapshot): throttling, 5xx, a dropped connection, a crash of the
//!   function after its call succeeded (outcome lost), an ID the run just
//!   created that AWS does not know yet, and the Lambda service's own errors
//!   end SUCCEEDED with exactly the resources of a clean run (no duplicate); a
//!   terminal error ends FAILED, names the call, and everything the run made is
//!   rolled back;
//! - **destroy** and **domain destroy** of a healthy stack: whatever the
//!   fault, after it (and, for a terminal one, one more destroy without fault)
//!   nothing of the stack is left and exactly one final snapshot is kept;
//! - **update** of a healthy stack: the transient faults end with the update
//!   done; a terminal one ends FAILED with every pre-existing resource still
//!   there, nothing new left, and the service back on its previous task
//!   definition (a run that rolled the new version out returns the database,
//!   and the service runs the version before on a revision of its own: that
//!   revision alone is new);
//! - **pause** and **resume**: the transient faults end as a clean run does;
//!   after a terminal one, the same command without fault finishes it;
//! - **return**: an upgrade whose new version fails its migration, so the run
//!   returns the database and the version before (issue 31): it ends FAILED
//!   naming the upgrade's failure (or the faulted call), with the service on
//!   the version before and nothing of the run left.
//!
//! Every case also must: release the lock; touch nothing that existed before
//! (the zone's records, the final snapshot, Metabase's encryption key); leak
//! no secret (the suite's checks, with a clean audit after success); and send
//! exactly one notification for a failed run, none for a successful one.
//!
//! Each case starts from an account saved once per emulator (empty, a stack
//! applied, a domain stack applied, a stack destroyed, a stack paused:
//! [`mbstack_emulator::Emulator::save`]) on warm emulators, instead of a new
//! moto and a fresh apply before each fault.
//!
//! By default (CI) the phases apply, destroy and update, one call per fault
//! class and phase, the tiers rotated so each tier and each class is hit (two
//! per class for apply). `MBSTACK_SWEEP=full` sweeps every call of the three
//! base phases, and of each other phase the calls its base phase does not make
//! (a domain apply's beyond an apply's, a restore's beyond an apply's, a
//! return's beyond an update's, a domain destroy's beyond a destroy's), a call
//! per tier of the shared ones, and every call of pause and resume.
//! `MBSTACK_SWEEP_PHASES=apply,domain-apply` limits the phases,
//! `MBSTACK_SWEEP_CLASSES=NotYetVisible,Crash` the fault classes (by name),
//! `MBSTACK_SWEEP_JOBS` sets how many emulators run at once (default 4),
//! `MBSTACK_SWEEP_SCALE` how much faster than AWS the emulator is (default 60),
//! `MBSTACK_SWEEP_CALLS=RegisterTaskDefinition` only the cases of those calls,
//! `MBSTACK_SWEEP_RESUME=<log>` skips the cases an earlier sweep's output
//! already reports as `ok` (a long sweep that was stopped goes on where it
//! was), `MBSTACK_SWEEP_TABLE=<file>` writes the table as markdown.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbstack_emulator::FaultClass;
use mbstack_local::{Deployed, Execution};
use mbstack_tests::checks::{self, SecretWitness};
use mbstack_tests::stack_leftovers;
use serde_json::{json, Value};

const STACK: &str = "sw";
const ZONE: &str = "example.com";
const DOMAIN: &str = "metabase.example.com";
/// The version an update and a return move to.
const NEWER: &str = "metabase/metabase:v0.58.7";

/// The reads whose refusal a run tolerates by design: Prepare's read of RDS's
/// manual snapshot quota before an upgrade is a courtesy (the pre-upgrade
/// snapshot's own refusal, before anything changes, says the same;
/// `pre_upgrade::snapshot_room_problem`).
const TOLERATED: &[&str] = &["rds:DescribeAccountAttributes"];

/// Every class, in the table's order.
const CLASSES: [FaultClass; 8] = [
    FaultClass::Terminal,
    FaultClass::Throttle,
    FaultClass::ServerError,
    FaultClass::Drop,
    FaultClass::Crash,
    FaultClass::NotYetVisible,
    FaultClass::LambdaServiceException,
    FaultClass::LambdaTimeout,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Phase {
    Apply,
    Destroy,
    Update,
    DomainApply,
    DomainDestroy,
    Restore,
    Pause,
    Resume,
    Return,
}

const PHASES: [Phase; 9] = [
    Phase::Apply,
    Phase::Destroy,
    Phase::Update,
    Phase::DomainApply,
    Phase::DomainDestroy,
    Phase::Restore,
    Phase::Pause,
    Phase::Resume,
    Phase::Return,
];

/// How a phase's run must end (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Create,
    Remove,
    Change,
    Toggle,
    Return,
}

/// The saved account a case starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Start {
    /// The deployment, the zone `example.com` and a record of someone else's.
    Empty,
    Applied,
    DomainApplied,
    /// A stack destroyed: its final snapshot.
    Destroyed,
    Paused,
}

impl Start {
    fn name(self) -> &'static str {
        match self {
            Start::Empty => "empty",
            Start::Applied => "applied",
            Start::DomainApplied => "domain-applied",
            Start::Destroyed => "destroyed",
            Start::Paused => "paused",
        }
    }

    /// The start it is built from, and the clean run that builds it.
    fn built_from(self) -> Option<(Start, Phase)> {
        match self {
            Start::Empty => None,
            Start::Applied => Some((Start::Empty, Phase::Apply)),
            Start::DomainApplied => Some((Start::Empty, Phase::DomainApply)),
            Start::Destroyed => Some((Start::Applied, Phase::Destroy)),
            Start::Paused => Some((Start::Applied, Phase::Pause)),
        }
    }
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Apply => "apply",
            Phase::Destroy => "destroy",
            Phase::Update => "update",
            Phase::DomainApply => "domain-apply",
            Phase::DomainDestroy => "domain-destroy",
            Phase::Restore => "restore",
            Phase::Pause => "pause",
            Phase::Resume => "resume",
            Phase::Return => "return",
        }
    }

    fn start(self) -> Start {
        match self {
            Phase::Apply | Phase::DomainApply => Start::Empty,
            Phase::Destroy | Phase::Update | Phase::Pause | Phase::Return => Start::Applied,
            Phase::DomainDestroy => Start::DomainApplied,
            Phase::Restore => Start::Destroyed,
            Phase::Resume => Start::Paused,
        }
    }

    fn shape(self) -> Shape {
        match self {
            Phase::Apply | Phase::DomainApply | Phase::Restore => Shape::Create,
            Phase::Destroy | Phase::DomainDestroy => Shape::Remove,
            Phase::Update => Shape::Change,
            Phase::Pause | Phase::Resume => Shape::Toggle,
            Phase::Return => Shape::Return,
        }
    }

    /// The phase whose calls this one repeats (a full sweep faults the calls
    /// beyond them, and a sample of the shared ones).
    fn base(self) -> Option<Phase> {
        match self {
            Phase::DomainApply | Phase::Restore | Phase::Pause | Phase::Resume => {
                Some(Phase::Apply)
            }
            Phase::DomainDestroy => Some(Phase::Destroy),
            Phase::Return => Some(Phase::Update),
            _ => None,
        }
    }

    fn input(self) -> Value {
        match self {
            Phase::Apply => json!({"stack": STACK}),
            Phase::Destroy | Phase::DomainDestroy => json!({"stack": STACK, "action": "destroy"}),
            // A change in three tiers at once.
            Phase::Update => json!({
                "stack": STACK,
                "app": {"image": NEWER, "desiredCount": 2},
                "database": {"storageGib": 30},
                "loadBalancer": {"idleTimeoutSeconds": 120}
            }),
            Phase::DomainApply => json!({"stack": STACK, "loadBalancer": {"domain": DOMAIN}}),
            Phase::Restore => json!({"stack": STACK, "database": {"restoreFrom": "latest-final"}}),
            Phase::Pause => json!({"stack": STACK, "action": "pause"}),
            Phase::Resume => json!({"stack": STACK, "action": "resume"}),
            Phase::Return => json!({"stack": STACK, "app": {"image": NEWER}}),
        }
    }

    /// What its clean run ends as (a return's upgrade fails by design).
    fn clean_status(self) -> &'static str {
        match self {
            Phase::Return => "FAILED",
            _ => "SUCCEEDED",
        }
    }

    /// Whether `class` can happen in it: an ID not visible yet needs a create
    /// of the run's (a network ID or a cluster).
    fn applies(self, class: FaultClass) -> bool {
        class != FaultClass::NotYetVisible || self.shape() == Shape::Create
    }

    fn parse(name: &str) -> Option<Phase> {
        PHASES.into_iter().find(|p| p.name() == name.trim())
    }
}

/// A clean run of each phase, from its start.
#[derive(Debug, Default)]
struct Clean {
    /// Its AWS calls (`service:Action` or target), in order.
    calls: Vec<String>,
    /// The functions it invoked, in order.
    invoked: Vec<String>,
    /// The stack's resources after it.
    after: Vec<String>,
}

type Baseline = BTreeMap<Phase, Clean>;

fn kinds(list: &[String]) -> Vec<String> {
    let mut k: Vec<String> = list
        .iter()
        .map(|r| r.split(' ').next().unwrap_or("").to_string())
        .collect();
    k.sort();
    k
}

/// The tier that makes a call, from its service.
fn tier_of(call: &str) -> &'static str {
    if call.starts_with("ec2:") {
        "network"
    } else if call.starts_with("rds:") {
        "data"
    } else if call.starts_with("elasticloadbalancing:")
        || call.starts_with("acm")
        || call.starts_with("CertificateManager.")
        || call.starts_with("route53")
    {
        "loadbalancer"
    } else if call.starts_with("AmazonSSM.") || call.starts_with("sns:") {
        "control"
    } else {
        "app"
    }
}

/// `ec2:CreateVpc` → `CreateVpc`; `AmazonSSM.PutParameter` → `PutParameter`.
fn action_of(call: &str) -> &str {
    call.rsplit([':', '.']).next().unwrap_or(call)
}

fn mutating(call: &str) -> bool {
    let a = action_of(call);
    !(a.starts_with("Describe") || a.starts_with("List") || a.starts_with("Get"))
}

/// The CI subset's calls: one mutating call per class (two for apply),
/// rotating the tiers (unchanged since issue 10).
fn sampled(calls: &[String], phase: Phase, classes: &[FaultClass]) -> Vec<(FaultClass, u64)> {
    // The number of polls varies from run to run, so a late call of the clean
    // run may never come: keep clear of the last few, so every cell is hit
    // (the control function is still hit, in Prepare).
    let calls = &calls[..calls.len().saturating_sub(8)];
    let mut tiers: Vec<&str> = calls.iter().map(|c| tier_of(c)).collect();
    tiers.sort();
    tiers.dedup();
    if tiers.is_empty() {
        return Vec::new();
    }
    let per_class = if phase == Phase::Apply { 2 } else { 1 };
    let mut out = Vec::new();
    for (i, &class) in classes.iter().enumerate() {
        if !phase.applies(class) || class.of_invocations() {
            continue;
        }
        for j in 0..per_class {
            let tier = tiers[(i * per_class + j) % tiers.len()];
            let of_tier: Vec<usize> = (0..calls.len())
                .filter(|&x| tier_of(&calls[x]) == tier)
                .collect();
            let preferred: Vec<usize> = of_tier
                .iter()
                .copied()
                .filter(|&x| mutating(&calls[x]))
                .collect();
            let pool = if preferred.is_empty() {
                of_tier
            } else {
                preferred
            };
            let x = pool[(i * 3 + j) % pool.len()];
            out.push((class, x as u64 + 1));
        }
    }
    out
}

/// The positions (1-based) of `mine` beyond what `base` makes: the n-th call
/// of an action is its own when `base` makes that action fewer than n times.
fn beyond(mine: &[String], base: &[String]) -> Vec<u64> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, c) in mine.iter().enumerate() {
        let n = seen.entry(c.as_str()).or_default();
        *n += 1;
        if base.iter().filter(|b| *b == c).count() < *n {
            out.push(i as u64 + 1);
        }
    }
    out
}

/// One call of each tier among `calls`, for a variant phase's shared calls:
/// its last write (a fault there must undo all the tier did before it, what
/// the variant changed too: a restore's key brought back), else its first read.
fn one_per_tier(calls: &[String]) -> Vec<u64> {
    let mut tiers: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in calls.iter().enumerate() {
        let t = tier_of(c);
        match tiers.get(t) {
            Some(_) if !mutating(c) => {}
            _ => {
                tiers.insert(t, i);
            }
        }
    }
    tiers.values().map(|&i| i as u64 + 1).collect()
}

/// Of the positions `ks` (1-based) in `calls`, those where `class` can end
/// differently from an earlier one:
/// - a terminal error: the first call of each action between the same two
///   writes (the account is the same, so is the rollback);
/// - a crash after the call: every write, and the first of each read (a
///   crash after a read loses nothing a retry does not read again);
/// - an ID not visible yet: every write (it fires at the first write from k
///   on);
/// - throttling, a 5xx, a dropped connection: the first of each call (the SDK
///   retries them below the tier's code, the same wherever the call stands).
fn distinct(class: FaultClass, calls: &[String], ks: &[u64]) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    let mut writes = 0;
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let k = i as u64 + 1;
        let write = mutating(c);
        let key = match class {
            FaultClass::Terminal => (c.as_str(), writes),
            FaultClass::Crash if write => (c.as_str(), i),
            FaultClass::Crash => (c.as_str(), 0),
            FaultClass::NotYetVisible if write => (c.as_str(), i),
            FaultClass::NotYetVisible => {
                writes += usize::from(write);
                continue;
            }
            _ => (c.as_str(), 0),
        };
        if write {
            writes += 1;
        }
        if seen.insert(key) && ks.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// The cases of `phase` (class, k) for a full sweep.
fn full(phase: Phase, base: &Baseline) -> Vec<(FaultClass, u64)> {
    let clean = &base[&phase];
    let (calls, invocations): (Vec<u64>, Vec<u64>) = match phase.base().and_then(|b| base.get(&b)) {
        None => (
            (1..=clean.calls.len() as u64).collect(),
            (1..=clean.invoked.len() as u64).collect(),
        ),
        Some(b) => {
            let mut calls = beyond(&clean.calls, &b.calls);
            let shared: Vec<String> = clean
                .calls
                .iter()
                .enumerate()
                .filter(|(i, _)| !calls.contains(&(*i as u64 + 1)))
                .map(|(_, c)| c.clone())
                .collect();
            // Positions of the sample among the shared calls → in the run.
            let positions: Vec<u64> = clean
                .calls
                .iter()
                .enumerate()
                .filter(|(i, _)| !calls.contains(&(*i as u64 + 1)))
                .map(|(i, _)| i as u64 + 1)
                .collect();
            calls.extend(
                one_per_tier(&shared)
                    .into_iter()
                    .map(|j| positions[j as usize - 1]),
            );
            calls.sort();
            (calls, beyond(&clean.invoked, &b.invoked))
        }
    };
    let mut out = Vec::new();
    for class in CLASSES {
        if !phase.applies(class) {
            continue;
        }
        let ks = if class.of_invocations() {
            invocations.clone()
        } else {
            distinct(class, &clean.calls, &calls)
        };
        out.extend(ks.iter().map(|&k| (class, k)));
    }
    out
}

/// AWS's durations are divided by this (`MBSTACK_SWEEP_SCALE`, default the
/// suite's 60): the full sweep runs faster at 600, where every wait is one poll.
fn scale() -> u32 {
    std::env::var("MBSTACK_SWEEP_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mbstack_local::REALISM_SCALE)
}

/// Why a case did not end as it must, and how many resources it left that it
/// should not have.
#[derive(Debug)]
struct Fail {
    why: String,
    left: usize,
}

fn fail(why: impl Into<String>) -> Fail {
    Fail {
        why: why.into(),
        left: 0,
    }
}

/// How a case ended: as it must (`Ok(true)`), or never reached its k-th call
/// (`Ok(false)`: fewer polls this time; not counted).
type Verdict = Result<bool, Fail>;

/// Where the time of the cases went (ms, summed over cases).
#[derive(Debug, Default)]
struct Spent {
    restore: u64,
    before: u64,
    run: u64,
    judge: u64,
    quiet: u64,
}

/// One warm emulator, deployed once, that each case puts back to a saved
/// account.
struct Worker {
    d: Deployed,
    built: BTreeSet<Start>,
    runs: u64,
}

impl Worker {
    async fn new() -> Result<Self, String> {
        let d = Deployed::start_notifying().await?;
        d.emulator.front.set_realism(true, scale());
        d.emulator.front.set_wait_divisor(scale());
        let zone = mbstack_tests::public_zone(&d.config, ZONE).await;
        // Someone else's record in the zone: it must outlive every run.
        mbstack_tests::foreign_record(
            &d.config,
            &zone,
            ("www.example.com", "A", "192.0.2.10"),
            None,
        )
        .await;
        let w = Self {
            d,
            built: BTreeSet::new(),
            runs: 0,
        };
        w.save(Start::Empty)?;
        let mut w = w;
        w.built.insert(Start::Empty);
        Ok(w)
    }

    fn save(&self, start: Start) -> Result<(), String> {
        tokio::task::block_in_place(|| self.d.emulator.save(start.name()))
            .map_err(|e| e.to_string())
    }

    fn name(&mut self, what: &str) -> String {
        self.runs += 1;
        format!("{what}-{}", self.runs)
    }

    /// Waits until no execution runs (a recovery the last case's end started
    /// must not act on the next case's account); stops any still running
    /// after two minutes.
    async fn quiet(&self) {
        let t0 = Instant::now();
        let mut idle = 0;
        while idle < 2 {
            let running = self
                .d
                .sfn
                .list_executions()
                .state_machine_arn(&self.d.arn)
                .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
                .send()
                .await
                .map(|l| {
                    l.executions()
                        .iter()
                        .map(|e| e.execution_arn().to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if running.is_empty() {
                idle += 1;
            } else {
                idle = 0;
                if t0.elapsed() > Duration::from_secs(120) {
                    for arn in running {
                        let _ = self.d.sfn.stop_execution().execution_arn(arn).send().await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts the account back to `start`, building it first if this emulator
    /// has not yet.
    async fn at(&mut self, start: Start) -> Result<(), Fail> {
        if !self.built.contains(&start) {
            let (from, phase) = start
                .built_from()
                .ok_or_else(|| fail("no way to build the start"))?;
            Box::pin(self.at(from)).await?;
            let name = self.name(&format!("build-{}", start.name()));
            let run = checked(&self.d, &name, phase.input()).await?;
            if run.status != "SUCCEEDED" {
                return Err(fail(format!(
                    "building {}: {:?} {:?}",
                    start.name(),
                    run.error,
                    run.cause
                )));
            }
            self.quiet().await;
            self.save(start).map_err(fail)?;
            self.built.insert(start);
            return Ok(());
        }
        self.quiet().await;
        tokio::task::block_in_place(|| self.d.emulator.restore(start.name()))
            .map_err(|e| fail(e.to_string()))
    }

    /// A clean run of `phase` from its start.
    async fn clean(&mut self, phase: Phase) -> Result<Clean, Fail> {
        self.at(phase.start()).await?;
        self.prepare(phase);
        self.d.emulator.front.set_fault(None);
        let name = self.name(&format!("clean-{}", phase.name()));
        let input = phase.input();
        let witness = SecretWitness::start(&self.d.emulator).await;
        let run = self.d.run(&name, input.clone()).await.map_err(fail)?;
        // The run's own calls (the checks after it call AWS too).
        let (calls, invoked) = (
            self.d.emulator.front.call_names(),
            self.d.emulator.front.invoked(),
        );
        self.d.emulator.front.fail_migrations_of(None);
        checks::check_after_run(&self.d, &input, &run, witness).await;
        if run.status != phase.clean_status() {
            return Err(fail(format!(
                "the clean {} ended {}: {:?} {:?}",
                phase.name(),
                run.status,
                run.error,
                run.cause
            )));
        }
        let mut after = stack_leftovers(&self.d.config, STACK).await;
        after.sort();
        Ok(Clean {
            calls,
            invoked,
            after,
        })
    }

    /// What a phase's run needs of the emulator beyond its start.
    fn prepare(&self, phase: Phase) {
        let failing = (phase == Phase::Return).then_some(NEWER);
        self.d.emulator.front.fail_migrations_of(failing);
    }
}

/// A run with the suite's checks, the witness started before it.
async fn checked(d: &Deployed, name: &str, input: Value) -> Result<Execution, Fail> {
    let witness = SecretWitness::start(&d.emulator).await;
    let run = d.run(name, input.clone()).await.map_err(fail)?;
    checks::check_after_run(d, &input, &run, witness).await;
    Ok(run)
}

async fn lock_released(d: &Deployed) -> bool {
    let ssm = aws_sdk_ssm::Client::new(&d.config);
    ssm.get_parameter()
        .name(format!("/mbstack/{STACK}/lock"))
        .send()
        .await
        .is_err()
}

/// The stack's DB snapshots (manual and final), by identifier.
async fn snapshots(d: &Deployed) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(&d.config);
    let mut out: Vec<String> = match rds.describe_db_snapshots().send().await {
        Ok(s) => s
            .db_snapshots()
            .iter()
            .filter(|s| {
                s.db_instance_identifier()
                    .is_some_and(|i| mbstack_core::naming::is_rds_name(STACK, i))
            })
            .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
            .collect(),
        Err(e) => vec![format!("DescribeDBSnapshots failed: {e:?}")],
    };
    out.sort();
    out
}

/// The final snapshots among `snaps`.
fn finals(snaps: &[String]) -> usize {
    snaps.iter().filter(|s| s.contains("-final-")).count()
}

/// The value of Metabase's encryption key (None: there is none).
async fn encryption_key(d: &Deployed) -> Option<String> {
    aws_sdk_secretsmanager::Client::new(&d.config)
        .get_secret_value()
        .secret_id(mbstack_core::naming::encryption_key_secret(STACK))
        .send()
        .await
        .ok()
        .and_then(|s| s.secret_string().map(str::to_string))
}

async fn service_task_definition(d: &Deployed) -> Option<String> {
    let ecs = aws_sdk_ecs::Client::new(&d.config);
    let s = ecs
        .describe_services()
        .cluster(mbstack_app::names::cluster(STACK))
        .services(mbstack_app::names::SERVICE)
        .send()
        .await
        .ok()?;
    s.services()
        .first()
        .and_then(|s| s.task_definition())
        .map(str::to_string)
}

/// The image of task definition `td`'s container.
async fn image_of(d: &Deployed, td: Option<&str>) -> Option<String> {
    let out = aws_sdk_ecs::Client::new(&d.config)
        .describe_task_definition()
        .task_definition(td?)
        .send()
        .await
        .ok()?;
    let def = out.task_definition()?;
    def.container_definitions()
        .first()
        .and_then(|c| c.image())
        .map(str::to_string)
}

/// Whether the k-th call of a run (`names`: its calls in order, `states`:
/// the states it entered) was one of Finish's own records: an SSM call after
/// the last call of any tier, in a run that reached its Finish (one refused
/// in Prepare made tier reads and no Finish).
fn in_finish(names: &[String], states: &[String], k: u64) -> bool {
    if !states.iter().any(|s| s.starts_with("Record ")) {
        return false;
    }
    let ssm = |c: &String| c.starts_with("AmazonSSM.") || c.starts_with("sns:");
    let idx = k as usize - 1;
    let Some(last_tier) = names.iter().rposition(|c| !ssm(c)) else {
        return false;
    };
    idx > last_tier
}

/// What a failed case's run did: its end, error and cause, its last states,
/// and the calls around its k-th (the tiers' AWS calls, in order).
fn run_context(run: &Execution, names: &[String], k: u64) -> String {
    let states = run
        .state_names
        .iter()
        .rev()
        .take(20)
        .rev()
        .cloned()
        .collect::<Vec<_>>();
    let at = k as usize - 1;
    let around: Vec<String> = names
        .iter()
        .enumerate()
        .skip(at.saturating_sub(4))
        .take(9)
        .map(|(i, c)| format!("{}{}: {c}", if i == at { "→" } else { " " }, i + 1))
        .collect();
    format!(
        "\n      run {}: {:?} {:?}\n      last states: {}\n      calls: {}",
        run.status,
        run.error,
        run.cause,
        states.join(" → "),
        around.join(", ")
    )
}

/// What existed before a case's run.
struct Before {
    resources: Vec<String>,
    records: Vec<String>,
    snapshots: Vec<String>,
    key: Option<String>,
    td: Option<String>,
}

impl Before {
    async fn of(d: &Deployed) -> Self {
        let mut resources = stack_leftovers(&d.config, STACK).await;
        resources.sort();
        Self {
            resources,
            records: mbstack_tests::dns_records(&d.config).await,
            snapshots: snapshots(d).await,
            key: encryption_key(d).await,
            td: service_task_definition(d).await,
        }
    }
}

/// One faulted run.
async fn case(
    w: &mut Worker,
    phase: Phase,
    class: FaultClass,
    k: u64,
    base: &Baseline,
    spent: &Mutex<Spent>,
) -> Verdict {
    let t0 = Instant::now();
    w.at(phase.start()).await?;
    w.prepare(phase);
    let t_restore = t0.elapsed();
    let d = &w.d;
    let before = Before::of(d).await;
    let name = format!("sweep-{}", w.runs + 1);
    w.runs += 1;
    let d = &w.d;
    let input = phase.input();
    let t1 = Instant::now();
    let witness = SecretWitness::start(&d.emulator).await;
    d.emulator.front.start_journal();
    d.emulator.front.set_fault(Some((k, class)));
    let run = d.run(&name, input.clone()).await.map_err(fail)?;
    // The calls of this run (data and load balancer run in parallel, and the
    // number of polls varies: the k-th call need not be the clean run's k-th).
    let names = d.emulator.front.call_names();
    let invoked = d.emulator.front.invoked();
    let fired = d.emulator.front.not_yet_visible_fired();
    d.emulator.front.set_fault(None);
    d.emulator.front.fail_migrations_of(None);
    // A run that ended where no Catch saw it is the recovery's to finish (the
    // deployment's rule starts it): judged once it has.
    w.quiet().await;
    let d = &w.d;
    let t_run = t1.elapsed();
    let t2 = Instant::now();
    let judged = judge(
        d, phase, class, k, base, &before, &input, &run, witness, &names, &invoked, fired,
    )
    .await;
    let t_judge = t2.elapsed();
    if let Ok(mut s) = spent.lock() {
        s.restore += t_restore.as_millis() as u64;
        s.before += (t1 - t0 - t_restore).as_millis() as u64;
        s.run += t_run.as_millis() as u64;
        s.judge += t_judge.as_millis() as u64;
    }
    // A case that does not end as it must says how its run went.
    judged.map_err(|mut f| {
        f.why = format!("{}{}", f.why, run_context(&run, &names, k));
        f
    })
}

#[allow(clippy::too_many_arguments)]
async fn judge(
    d: &Deployed,
    phase: Phase,
    class: FaultClass,
    k: u64,
    base: &Baseline,
    before: &Before,
    input: &Value,
    run: &Execution,
    witness: SecretWitness,
    names: &[String],
    invoked: &[String],
    fired: bool,
) -> Verdict {
    checks::check_after_run(d, input, run, witness).await;
    let on_invocation = class.of_invocations();
    let call = if on_invocation {
        invoked.get(k as usize - 1).cloned()
    } else {
        names.get(k as usize - 1).cloned()
    };
    let Some(call) = call else {
        return Ok(false);
    };
    // From the k-th call on, no call used an ID the run had created: not reached.
    if class == FaultClass::NotYetVisible && !fired {
        return Ok(false);
    }
    let finish = !on_invocation && in_finish(names, &run.state_names, k);
    // A refused read that mbstack tolerates by design ends as a clean run.
    let terminal = class == FaultClass::Terminal && !TOLERATED.contains(&call.as_str());
    let clean = &base[&phase];
    let status_ok = |want: &str| -> Result<(), Fail> {
        if run.status == want {
            Ok(())
        } else {
            Err(fail(format!(
                "{} instead of {want}: {:?} {:?}",
                run.status, run.error, run.cause
            )))
        }
    };
    if terminal && run.status == "FAILED" && phase != Phase::Return {
        let cause = run.cause.clone().unwrap_or_default();
        if !cause.contains(action_of(&call)) {
            return Err(fail(format!("the error does not name {call}: {cause}")));
        }
    }
    // (A refused read or delete of the lock in Finish leaves it held: the
    // recovery, which the failure starts, takes it over and releases it.)
    if !lock_released(d).await {
        return Err(fail("the lock is still held"));
    }
    // A failed run says so once; a successful one sends nothing. A terminal
    // fault at the Publish itself sends none.
    let sent = mbstack_tests::published(d).len();
    let at_publish = action_of(&call) == "Publish";
    let want_sent: &[usize] = match run.status.as_str() {
        "SUCCEEDED" => &[0],
        _ if at_publish && terminal => &[0],
        // (The emulator's crash loses the answer of a function that ran to
        // its end: the retried Finish finds the `told` record. A crash on AWS
        // between the Publish and that record would tell twice.)
        _ => &[1],
    };
    if !want_sent.contains(&sent) {
        return Err(fail(format!(
            "{sent} notifications for a {} run, not {want_sent:?}",
            run.status
        )));
    }
    // Nothing that existed before is touched.
    let records = mbstack_tests::dns_records(&d.config).await;
    let foreign: Vec<&String> = before
        .records
        .iter()
        .filter(|r| r.contains("www.example.com"))
        .collect();
    if let Some(lost) = foreign.iter().find(|r| !records.contains(r)) {
        return Err(fail(format!("someone else's record is gone: {lost}")));
    }
    // (RDS deletes an instance's automated snapshots with it: the final and
    // the pre-upgrade snapshots are what must stay.)
    let snaps = snapshots(d).await;
    if let Some(lost) = before
        .snapshots
        .iter()
        .find(|s| !s.starts_with("rds:") && !snaps.contains(s))
    {
        return Err(fail(format!(
            "a snapshot that existed before is gone: {lost}"
        )));
    }
    let key = encryption_key(d).await;
    if phase.shape() != Shape::Remove && before.key.is_some() && key != before.key {
        return Err(fail("Metabase's encryption key changed or is gone"));
    }
    let mut after = stack_leftovers(&d.config, STACK).await;
    after.sort();
    let zone_records = |recs: &[String]| {
        recs.iter()
            .filter(|r| !r.contains("www.example.com"))
            .count()
    };
    match phase.shape() {
        Shape::Create => {
            if terminal && !finish {
                status_ok("FAILED")?;
                if !after.is_empty() {
                    return Err(Fail {
                        why: format!("not rolled back: {after:?}"),
                        left: after.len(),
                    });
                }
                if zone_records(&records) != zone_records(&before.records) {
                    return Err(Fail {
                        why: format!("DNS records not rolled back: {records:?}"),
                        left: zone_records(&records).abs_diff(zone_records(&before.records)),
                    });
                }
                return Ok(true);
            }
            // A terminal fault in Finish fails the run after the stack is
            // complete: nothing is rolled back, nothing is lost.
            status_ok(if terminal { "FAILED" } else { "SUCCEEDED" })?;
            if kinds(&after) != kinds(&clean.after) {
                return Err(Fail {
                    why: format!("not the clean run's resources: {after:?}"),
                    left: after.len().abs_diff(clean.after.len()).max(1),
                });
            }
            Ok(true)
        }
        Shape::Remove => {
            if !terminal {
                status_ok("SUCCEEDED")?;
            } else if run.status != "SUCCEEDED" {
                // The next destroy must remove whatever the failed one left.
                d.emulator.front.start_journal();
                let again = checked(d, &again_name(run), phase.input()).await?;
                if again.status != "SUCCEEDED" {
                    return Err(fail(format!(
                        "the next destroy could not finish: {:?} {:?}",
                        again.error, again.cause
                    )));
                }
                if !lock_released(d).await {
                    return Err(fail("the lock is still held after the next destroy"));
                }
            }
            let left = stack_leftovers(&d.config, STACK).await;
            let snaps = snapshots(d).await;
            if finals(&snaps) != 1 {
                return Err(fail(format!(
                    "{} final snapshots instead of 1: {snaps:?}",
                    finals(&snaps)
                )));
            }
            if !left.is_empty() {
                return Err(Fail {
                    why: format!("left behind: {left:?}"),
                    left: left.len(),
                });
            }
            let records = mbstack_tests::dns_records(&d.config).await;
            if zone_records(&records) != 0 {
                return Err(Fail {
                    why: format!("DNS records left behind: {records:?}"),
                    left: zone_records(&records),
                });
            }
            Ok(true)
        }
        Shape::Change => {
            let missing: Vec<&String> = before
                .resources
                .iter()
                .filter(|r| !after.contains(r))
                .collect();
            if terminal && !finish {
                status_ok("FAILED")?;
                if !missing.is_empty() {
                    return Err(fail(format!("pre-existing resources lost: {missing:?}")));
                }
                return on_the_version_before(d, run, before, &after).await;
            }
            status_ok(if terminal { "FAILED" } else { "SUCCEEDED" })?;
            if kinds(&after) != kinds(&clean.after) {
                return Err(Fail {
                    why: format!(
                        "not the clean update's resources: {after:?} vs {:?}",
                        clean.after
                    ),
                    left: after.len().abs_diff(clean.after.len()).max(1),
                });
            }
            let lost = missing
                .iter()
                .filter(|r| !r.starts_with("task-definition"))
                .count();
            if lost > 0 {
                return Err(fail(format!(
                    "pre-existing resources replaced: {missing:?}"
                )));
            }
            Ok(true)
        }
        Shape::Toggle => {
            if terminal && !finish && run.status != "SUCCEEDED" {
                // The same command without fault finishes what it began.
                d.emulator.front.start_journal();
                let again = checked(d, &again_name(run), phase.input()).await?;
                if again.status != "SUCCEEDED" {
                    return Err(fail(format!(
                        "the same {} again could not finish: {:?} {:?}",
                        phase.name(),
                        again.error,
                        again.cause
                    )));
                }
            } else {
                status_ok(if terminal { "FAILED" } else { "SUCCEEDED" })?;
            }
            let mut now = stack_leftovers(&d.config, STACK).await;
            now.sort();
            if kinds(&now) != kinds(&clean.after) {
                return Err(Fail {
                    why: format!(
                        "not the clean {}'s resources: {now:?} vs {:?}",
                        phase.name(),
                        clean.after
                    ),
                    left: now.len().abs_diff(clean.after.len()).max(1),
                });
            }
            Ok(true)
        }
        Shape::Return => {
            // The upgrade fails by design: the run ends FAILED, whatever the fault.
            status_ok("FAILED")?;
            let cause = run.cause.clone().unwrap_or_default();
            if terminal && !cause.contains(action_of(&call)) && !cause.contains("migration") {
                return Err(fail(format!(
                    "the error names neither {call} nor the failed upgrade: {cause}"
                )));
            }
            // AWS refused the return itself: judged by the next run.
            if terminal && run.error.as_deref() == Some("RollbackFailed") {
                return after_a_refused_return(d, run, before).await;
            }
            on_the_version_before(d, run, before, &after).await
        }
    }
}

/// A return AWS refused half-way (a call of the rollback itself refused for
/// good: nothing can delete what it cannot call) must lose nothing and say
/// so: the stack's database is under its name or set aside, never deleted;
/// and the next run of the version before either brings the stack back
/// whole on it, or refuses before it changes anything, naming each database
/// set aside and how to get it back.
async fn after_a_refused_return(d: &Deployed, run: &Execution, before: &Before) -> Verdict {
    let dbs: Vec<String> = stack_leftovers(&d.config, STACK)
        .await
        .into_iter()
        .filter(|r| r.starts_with("db-instance "))
        .collect();
    let name = format!("db-instance {}", mbstack_core::naming::rds_name(STACK));
    let aside: Vec<&String> = dbs.iter().filter(|r| **r != name).collect();
    if dbs.is_empty() {
        return Err(fail("the stack's database is gone"));
    }
    d.emulator.front.start_journal();
    let again = checked(d, &again_name(run), Phase::Apply.input()).await?;
    let cause = again.cause.clone().unwrap_or_default();
    match again.status.as_str() {
        "SUCCEEDED" => {
            let mut after = stack_leftovers(&d.config, STACK).await;
            after.sort();
            // The revision the service runs now is the next run's; a
            // revision the refused run registered and could not deregister
            // is what its error said may be left (tagged with its run: free,
            // and the stack's destroy removes it).
            let td = service_task_definition(d).await;
            let run_id = run.arn.rsplit(':').next().unwrap_or("");
            let mut extra = Vec::new();
            for r in after.iter().filter(|r| !before.resources.contains(r)) {
                let said = match r.strip_prefix("task-definition ") {
                    Some(arn) => {
                        td.as_deref() == Some(arn)
                            || created_by(d, arn).await.as_deref() == Some(run_id)
                    }
                    None => false,
                };
                if !said {
                    extra.push(r);
                }
            }
            if !extra.is_empty() {
                return Err(Fail {
                    why: format!("the next run left what the refused return left: {extra:?}"),
                    left: extra.len(),
                });
            }
            Ok(true)
        }
        _ => {
            let unnamed: Vec<&&String> = aside
                .iter()
                .filter(|r| !cause.contains(r.trim_start_matches("db-instance ")))
                .collect();
            if aside.is_empty() || !unnamed.is_empty() {
                return Err(fail(format!(
                    "after a refused return, the next run {} without naming the database set aside ({aside:?}): {:?} {cause}",
                    again.status, again.error
                )));
            }
            Ok(true)
        }
    }
}

/// The name of the clean run after a failed case's `run`.
fn again_name(run: &Execution) -> String {
    format!("{}-again", run.arn.rsplit(':').next().unwrap_or("run"))
}

/// The run that created the task definition `arn` (its created-by tag).
async fn created_by(d: &Deployed, arn: &str) -> Option<String> {
    aws_sdk_ecs::Client::new(&d.config)
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .ok()?
        .tags()
        .iter()
        .find(|t| t.key() == Some(mbstack_core::naming::CREATED_BY_TAG))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// After a failed change: nothing of the run is left but (after a return of
/// the database) the revision the service runs, and the service runs the
/// version before (its task definition, or its image after a return).
async fn on_the_version_before(
    d: &Deployed,
    run: &Execution,
    before: &Before,
    after: &[String],
) -> Verdict {
    // A run that rolled the new version out and then failed returns the
    // database to the snapshot before it (issue 31): the service then runs
    // the version before on a new revision that reads the restored
    // database's new secret. That revision, and only it, is new; so is the
    // returned database.
    let returned = run.state_names.iter().any(|n| n.starts_with("Put back"));
    let td = service_task_definition(d).await;
    let allowed = |r: &String| {
        returned
            && (td.as_ref().is_some_and(|t| r.ends_with(t.as_str()))
                || r.starts_with("db-instance")
                || r.starts_with("secret "))
    };
    let extra: Vec<&String> = after
        .iter()
        .filter(|r| !before.resources.contains(r) && !allowed(r))
        .collect();
    if !extra.is_empty() {
        return Err(Fail {
            why: format!("not rolled back: {extra:?}"),
            left: extra.len(),
        });
    }
    // Nothing that was there before is gone (a returned database keeps its
    // identifier; its RDS-managed secret is a new one).
    let lost: Vec<&String> = before
        .resources
        .iter()
        .filter(|r| !(after.contains(r) || returned && r.starts_with("secret ")))
        .collect();
    if !lost.is_empty() {
        return Err(fail(format!(
            "resources that were there before are gone: {lost:?}"
        )));
    }
    let back = match returned {
        false => td == before.td,
        true => {
            td.is_some()
                && image_of(d, td.as_deref()).await == image_of(d, before.td.as_deref()).await
        }
    };
    if !back {
        return Err(fail(format!(
            "the service runs {td:?}, not {:?} (or its image)",
            before.td
        )));
    }
    Ok(true)
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name).ok().map(|v| {
        v.split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_class_in_every_path_ends_safely() {
    let full_sweep = std::env::var("MBSTACK_SWEEP").is_ok_and(|v| v == "full");
    let phases: Vec<Phase> = match env_list("MBSTACK_SWEEP_PHASES") {
        Some(v) => v.iter().filter_map(|p| Phase::parse(p)).collect(),
        None if full_sweep => PHASES.to_vec(),
        None => vec![Phase::Apply, Phase::Destroy, Phase::Update],
    };
    let classes: Vec<FaultClass> = match env_list("MBSTACK_SWEEP_CLASSES") {
        Some(c) => CLASSES
            .into_iter()
            .filter(|k| c.contains(&format!("{k:?}")))
            .collect(),
        // The CI subset's classes are issue 10's six.
        None if full_sweep => CLASSES.to_vec(),
        None => CLASSES[..6].to_vec(),
    };
    let jobs: usize = std::env::var("MBSTACK_SWEEP_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    let started = Instant::now();
    // The clean runs: each phase once, from its start (their bases too).
    let mut first = Worker::new().await.expect("an emulator");
    let mut base = Baseline::new();
    let mut wanted: Vec<Phase> = phases.clone();
    wanted.extend(phases.iter().filter_map(|p| p.base()));
    wanted.sort();
    wanted.dedup();
    for &phase in &wanted {
        let clean = first
            .clean(phase)
            .await
            .unwrap_or_else(|f| panic!("the clean {}: {}", phase.name(), f.why));
        base.insert(phase, clean);
    }
    let baseline_secs = started.elapsed().as_secs();
    let only = env_list("MBSTACK_SWEEP_CALLS").unwrap_or_default();
    let mut cases = Vec::new();
    for &phase in &phases {
        let clean = &base[&phase];
        let all = match full_sweep {
            true => full(phase, &base),
            false => sampled(&clean.calls, phase, &classes),
        };
        for (class, k) in all {
            if !classes.contains(&class) {
                continue;
            }
            let list = if class.of_invocations() {
                &clean.invoked
            } else {
                &clean.calls
            };
            let call = list.get(k as usize - 1).map(String::as_str).unwrap_or("");
            if !only.is_empty() && !only.iter().any(|o| action_of(call) == o || call == o) {
                continue;
            }
            cases.push((phase, class, k));
        }
    }
    let resumed = match std::env::var("MBSTACK_SWEEP_RESUME") {
        Ok(path) => {
            let log = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("MBSTACK_SWEEP_RESUME={path}: {e}"));
            let before = cases.len();
            cases.retain(|&(phase, class, k)| {
                !log.lines().any(|l| {
                    l.starts_with(&format!("case {} {class:?} k={k} ", phase.name()))
                        && l.ends_with(": ok")
                })
            });
            before - cases.len()
        }
        Err(_) => 0,
    };
    if resumed > 0 {
        println!("{resumed} cases skipped: reported ok by MBSTACK_SWEEP_RESUME's log");
    }
    if std::env::var("MBSTACK_SWEEP_COUNT").is_ok() {
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for (p, _, _) in &cases {
            *per.entry(p.name()).or_default() += 1;
        }
        println!(
            "{} cases ({baseline_secs} s for the clean runs): {per:?}",
            cases.len()
        );
        return;
    }
    // Interleaved (call by call, every class), so a full sweep stopped early has
    // covered the first calls of every class rather than one class entirely.
    cases.sort_by_key(|&(phase, class, k)| (phase, k, class));
    let total = cases.len();
    let base = Arc::new(base);
    let queue = Arc::new(Mutex::new(VecDeque::from(cases)));
    let spent = Arc::new(Mutex::new(Spent::default()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = tokio::task::JoinSet::new();
    let mut first = Some(first);
    for _ in 0..jobs.min(total.max(1)) {
        let (base, queue, spent, tx) = (base.clone(), queue.clone(), spent.clone(), tx.clone());
        let given = first.take();
        workers.spawn(async move {
            let mut w = match given {
                Some(w) => w,
                None => match Worker::new().await {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = tx.send(Err(format!("an emulator did not start: {e}")));
                        return;
                    }
                },
            };
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((phase, class, k)) = next else { break };
                // A panic in a case (a leaked secret's assert) is its failure,
                // and the emulator is started again after it.
                let (b, s) = (base.clone(), spent.clone());
                let ran = tokio::spawn(async move {
                    let r = case(&mut w, phase, class, k, &b, &s).await;
                    (w, r)
                })
                .await;
                let result = match ran {
                    Ok((back, r)) => {
                        w = back;
                        r
                    }
                    Err(p) => {
                        let why = p.to_string();
                        match Worker::new().await {
                            Ok(fresh) => w = fresh,
                            Err(e) => {
                                let _ = tx.send(Err(format!("an emulator did not start: {e}")));
                                return;
                            }
                        }
                        Err(fail(format!("the case panicked: {why}")))
                    }
                };
                let _ = tx.send(Ok((phase, class, k, result)));
            }
            let t0 = Instant::now();
            w.quiet().await;
            if let Ok(mut s) = spent.lock() {
                s.quiet += t0.elapsed().as_millis() as u64;
            }
        });
    }
    drop(tx);
    // phase, class → runs, survived, leftovers
    let mut table: BTreeMap<(Phase, FaultClass), (u32, u32, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut not_reached = 0;
    while let Some(done) = rx.recv().await {
        let (phase, class, k, result) = match done {
            Ok(d) => d,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let clean = &base[&phase];
        let list = if class.of_invocations() {
            &clean.invoked
        } else {
            &clean.calls
        };
        let call = list.get(k as usize - 1).cloned().unwrap_or_default();
        // One line per case as it ends (a long sweep can be followed, and read
        // even if stopped).
        let p = phase.name();
        match &result {
            Ok(true) => println!("case {p} {class:?} k={k} {call}: ok"),
            Ok(false) => println!("case {p} {class:?} k={k} {call}: not reached"),
            Err(f) => println!("case {p} {class:?} k={k} {call}: FAILED {}", f.why),
        }
        if matches!(result, Ok(false)) {
            not_reached += 1;
            continue;
        }
        let cell = table.entry((phase, class)).or_default();
        cell.0 += 1;
        match result {
            Ok(_) => cell.1 += 1,
            Err(Fail { why, left }) => {
                cell.2 += left;
                failures.push(format!("{p} {class:?} at call {k} ({call}): {why}"));
            }
        }
    }
    while workers.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs();
    println!(
        "reliability sweep ({}; {total} runs, {jobs} emulators, AWS timings ÷ {}, {secs} s, of which {baseline_secs} s the clean runs): calls per clean run: {}",
        if full_sweep { "full" } else { "CI subset" },
        scale(),
        base.iter()
            .map(|(p, c)| format!("{} {} (+{} invocations)", p.name(), c.calls.len(), c.invoked.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Ok(s) = spent.lock() {
        println!(
            "  time of the cases, summed: restore {} s, reading the account before {} s, the runs {} s, judging {} s, waiting for quiet at the end {} s",
            s.restore / 1000,
            s.before / 1000,
            s.run / 1000,
            s.judge / 1000,
            s.quiet / 1000
        );
    }
    let markdown = render_table(&table, &base, secs, total, jobs);
    println!("{markdown}");
    let (runs, survived): (u32, u32) = table.values().fold((0, 0), |(r, s), c| (r + c.0, s + c.1));
    println!(
        "  total: {runs} runs, {survived} survived; {not_reached} more never reached their k-th call (fewer polls that time), not counted"
    );
    if let Ok(path) = std::env::var("MBSTACK_SWEEP_TABLE") {
        std::fs::write(&path, &markdown)
            .unwrap_or_else(|e| panic!("MBSTACK_SWEEP_TABLE={path}: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The table (phase × class → survived/runs, leftovers), as markdown.
fn render_table(
    table: &BTreeMap<(Phase, FaultClass), (u32, u32, usize)>,
    base: &Baseline,
    secs: u64,
    total: usize,
    jobs: usize,
) -> String {
    let phases: BTreeSet<Phase> = table.keys().map(|(p, _)| *p).collect();
    let short = |c: FaultClass| match c {
        FaultClass::LambdaServiceException => "Lambda.ServiceException".to_string(),
        FaultClass::LambdaTimeout => "Lambda.ClientExecutionTimeout".to_string(),
        c => format!("{c:?}"),
    };
    let mut out = format!(
        "| phase (calls, invocations per clean run) | {} | leftovers |\n| --- |{} ---: |\n",
        CLASSES
            .iter()
            .map(|&c| short(c))
            .collect::<Vec<_>>()
            .join(" | "),
        " ---: |".repeat(CLASSES.len())
    );
    for p in phases {
        let clean = &base[&p];
        let cells: Vec<String> = CLASSES
            .iter()
            .map(|&c| match table.get(&(p, c)) {
                Some((runs, survived, _)) => format!("{survived}/{runs}"),
                None => "—".into(),
            })
            .collect();
        let left: usize = table
            .iter()
            .filter(|((q, _), _)| *q == p)
            .map(|(_, v)| v.2)
            .sum();
        out.push_str(&format!(
            "| {} ({}, {}) | {} | {left} |\n",
            p.name(),
            clean.calls.len(),
            clean.invoked.len(),
            cells.join(" | ")
        ));
    }
    out.push_str(&format!(
        "\n{total} cases, {jobs} emulators, AWS timings ÷ {}, {} min {} s wall.\n",
        scale(),
        secs / 60,
        secs % 60
    ));
    out
}
