//! The reliability sweep (issue 10): the k-th AWS call of a run fails with each
//! class of fault, in three phases:
//! - **apply** on an empty account: throttling, 5xx, a dropped connection, a
//!   crash of the function after its call succeeded (outcome lost) and an ID the
//!   run just created that AWS does not know yet (NotFound on the first call
//!   that uses it, from the k-th call on) end SUCCEEDED
//!   with exactly the resources of a clean run (no duplicate); a terminal error
//!   ends FAILED, names the call, and everything is rolled back;
//! - **destroy** of a healthy stack: whatever the fault, after it (and, for a
//!   terminal one, one more destroy without fault) nothing of the stack is left
//!   and exactly one final snapshot is kept;
//! - **update** of a healthy stack: the transient faults end with the update
//!   done; a terminal one ends FAILED with every pre-existing resource still
//!   there, nothing new left, and the service back on its previous task definition
//!   (a run that rolled the new version out returns the database, and the
//!   service runs the version before on a revision of its own: that revision
//!   alone is new).
//!
//! Every run also gets the suite's checks (no secret in history, logs, task
//! definitions; a clean audit after success) and the lock is released each time.
//!
//! By default (CI) one call per fault class and phase, the tiers rotated so each
//! tier and each class is hit (two per class for apply); `MBSTACK_SWEEP=full`
//! sweeps every call. `MBSTACK_SWEEP_PHASES=apply,destroy` limits the phases,
//! `MBSTACK_SWEEP_CLASSES=NotYetVisible,Crash` the fault classes (by name),
//! `MBSTACK_SWEEP_JOBS` sets how many emulators run at once (default 4),
//! `MBSTACK_SWEEP_SCALE` how much faster than AWS the emulator is (default 60),
//! `MBSTACK_SWEEP_CALLS=RegisterTaskDefinition` only the cases of those calls,
//! `MBSTACK_SWEEP_RESUME=<log>` skips the cases an earlier sweep's output
//! already reports as `ok` (a long sweep that was stopped goes on where it was).

use std::collections::BTreeMap;
use std::sync::Arc;

use mbstack_emulator::FaultClass;
use mbstack_local::{Deployed, Execution};
use mbstack_tests::checks::{self, SecretWitness};
use mbstack_tests::stack_leftovers;
use serde_json::{json, Value};

const STACK: &str = "sw";
const CLASSES: [FaultClass; 6] = [
    FaultClass::Terminal,
    FaultClass::Throttle,
    FaultClass::ServerError,
    FaultClass::Drop,
    FaultClass::Crash,
    FaultClass::NotYetVisible,
];

/// Whether `class` can happen in `phase`: an ID not visible yet needs a create
/// of the run (apply; destroy and update create no network ID or cluster).
fn applies(class: FaultClass, phase: Phase) -> bool {
    class != FaultClass::NotYetVisible || phase == Phase::Apply
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Apply,
    Destroy,
    Update,
}

fn apply_input() -> Value {
    json!({"stack": STACK})
}

fn destroy_input() -> Value {
    json!({"stack": STACK, "action": "destroy"})
}

/// A change in three tiers at once.
fn update_input() -> Value {
    json!({
        "stack": STACK,
        "app": {"image": "metabase/metabase:v0.58.7", "desiredCount": 2},
        "database": {"storageGib": 30},
        "loadBalancer": {"idleTimeoutSeconds": 120}
    })
}

/// What a clean run of each phase looks like.
#[derive(Debug, Default)]
struct Baseline {
    /// The calls of a clean run of each phase (`service:Action` or target).
    calls: BTreeMap<Phase, Vec<String>>,
    /// The resources after a clean apply, and after a clean update.
    applied: Vec<String>,
    updated: Vec<String>,
}

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
    } else if call.starts_with("elasticloadbalancing:") {
        "loadbalancer"
    } else if call.starts_with("AmazonSSM.") {
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

/// The calls to fault: all of them in full mode; otherwise one mutating call per
/// class (two for apply), rotating the tiers.
fn chosen(calls: &[String], phase: Phase, full: bool) -> Vec<(FaultClass, u64)> {
    if full {
        return CLASSES
            .iter()
            .filter(|&&c| applies(c, phase))
            .flat_map(|&c| (1..=calls.len() as u64).map(move |k| (c, k)))
            .collect();
    }
    // The number of polls varies from run to run, so a late call of the clean
    // run may never come: CI keeps clear of the last few, so every cell is hit
    // (the control function is still hit, in Prepare).
    let calls = &calls[..calls.len().saturating_sub(8)];
    let mut tiers: Vec<&str> = calls.iter().map(|c| tier_of(c)).collect();
    tiers.sort();
    tiers.dedup();
    let per_class = if phase == Phase::Apply { 2 } else { 1 };
    let mut out = Vec::new();
    for (i, &class) in CLASSES.iter().enumerate() {
        if !applies(class, phase) {
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

async fn lock_released(d: &Deployed) -> bool {
    let ssm = aws_sdk_ssm::Client::new(&d.config);
    ssm.get_parameter()
        .name(format!("/mbstack/{STACK}/lock"))
        .send()
        .await
        .is_err()
}

async fn snapshots(d: &Deployed) -> usize {
    let rds = aws_sdk_rds::Client::new(&d.config);
    match rds.describe_db_snapshots().send().await {
        Ok(s) => s
            .db_snapshots()
            .iter()
            .filter(|s| {
                s.db_instance_identifier()
                    .is_some_and(|i| mbstack_core::naming::is_rds_name(STACK, i))
            })
            .count(),
        Err(_) => usize::MAX,
    }
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

/// AWS's durations are divided by this (`MBSTACK_SWEEP_SCALE`, default the
/// suite's 60): the full sweep runs faster at 600, where every wait is one poll.
fn scale() -> u32 {
    std::env::var("MBSTACK_SWEEP_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mbstack_local::REALISM_SCALE)
}

async fn deployed() -> Result<Deployed, String> {
    let d = Deployed::start().await?;
    d.emulator.front.set_realism(true, scale());
    Ok(d)
}

/// A run with the suite's checks, the witness started before it.
async fn checked(d: &Deployed, name: &str, input: Value) -> Result<Execution, Fail> {
    let witness = SecretWitness::start(&d.emulator).await;
    let run = d.run(name, input.clone()).await.map_err(fail)?;
    checks::check_after_run(d, &input, &run, witness).await;
    Ok(run)
}

async fn healthy(d: &Deployed) -> Result<(), Fail> {
    let run = checked(d, "setup", apply_input()).await?;
    if run.status == "SUCCEEDED" {
        Ok(())
    } else {
        Err(fail(format!(
            "the setup apply: {:?} {:?}",
            run.error, run.cause
        )))
    }
}

/// Why a case did not end as it must, and how many resources it left that it
/// should not have.
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

/// Whether the k-th call of a run (`names`: its calls in order) was one of
/// Finish's own records: an SSM call after the last call of any tier.
fn in_finish(names: &[String], k: u64) -> bool {
    let ssm = |c: &String| c.starts_with("AmazonSSM.");
    let idx = k as usize - 1;
    let Some(last_tier) = names.iter().rposition(|c| !ssm(c)) else {
        return false;
    };
    idx > last_tier
}

/// Finish reading or deleting the lock: refused, the lock stays (the error names
/// the call, and the next run takes the stale lock over).
fn lock_call(call: &str) -> bool {
    matches!(action_of(call), "GetParameter" | "DeleteParameter")
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

/// How a case ended: as it must (`Ok(true)`), or never reached its k-th call
/// (`Ok(false)`: fewer polls this time; not counted).
type Verdict = Result<bool, Fail>;

/// One faulted run.
async fn case(phase: Phase, class: FaultClass, k: u64, base: Arc<Baseline>) -> Verdict {
    let d = deployed().await.map_err(fail)?;
    if phase != Phase::Apply {
        healthy(&d).await?;
    }
    let input = match phase {
        Phase::Apply => apply_input(),
        Phase::Destroy => destroy_input(),
        Phase::Update => update_input(),
    };
    let before = {
        let mut b = stack_leftovers(&d.config, STACK).await;
        b.sort();
        b
    };
    let td_before = service_task_definition(&d).await;
    let witness = SecretWitness::start(&d.emulator).await;
    d.emulator.front.set_fault(Some((k, class)));
    let run = d.run("sweep", input.clone()).await.map_err(fail)?;
    // The calls of this run (data and load balancer run in parallel, and the
    // number of polls varies: the k-th call need not be the clean run's k-th).
    let names = d.emulator.front.call_names();
    let fired = d.emulator.front.not_yet_visible_fired();
    let judged = async {
        d.emulator.front.set_fault(None);
        checks::check_after_run(&d, &input, &run, witness).await;
        let Some(call) = names.get(k as usize - 1).cloned() else {
            return Ok(false);
        };
        // From the k-th call on, no call used an ID the run had created: not reached.
        if class == FaultClass::NotYetVisible && !fired {
            return Ok(false);
        }
        let finish = in_finish(&names, k);
        let terminal = class == FaultClass::Terminal;
        let lock_may_stay = terminal && finish && lock_call(&call);
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
        if terminal && run.status == "FAILED" {
            let cause = run.cause.clone().unwrap_or_default();
            if !cause.contains(action_of(&call)) {
                return Err(fail(format!("the error does not name {call}: {cause}")));
            }
        }
        if !lock_may_stay && !lock_released(&d).await {
            return Err(fail("the lock is still held"));
        }
        let mut after = stack_leftovers(&d.config, STACK).await;
        after.sort();
        match phase {
            Phase::Apply => {
                if terminal && !finish {
                    status_ok("FAILED")?;
                    if !after.is_empty() {
                        return Err(Fail {
                            why: format!("not rolled back: {after:?}"),
                            left: after.len(),
                        });
                    }
                    return Ok(true);
                }
                // A terminal fault in Finish fails the run after the stack is
                // complete: nothing is rolled back, nothing is lost.
                status_ok(if terminal { "FAILED" } else { "SUCCEEDED" })?;
                if kinds(&after) != kinds(&base.applied) {
                    return Err(Fail {
                        why: format!("not the clean run's resources: {after:?}"),
                        left: after.len().abs_diff(base.applied.len()).max(1),
                    });
                }
                Ok(true)
            }
            Phase::Destroy => {
                if !terminal {
                    status_ok("SUCCEEDED")?;
                } else if run.status != "SUCCEEDED" {
                    // The next destroy must remove whatever the failed one left.
                    let again = checked(&d, "again", destroy_input()).await?;
                    if again.status != "SUCCEEDED" {
                        return Err(fail(format!(
                            "the next destroy could not finish: {:?} {:?}",
                            again.error, again.cause
                        )));
                    }
                    if !lock_released(&d).await {
                        return Err(fail("the lock is still held after the next destroy"));
                    }
                }
                let left = stack_leftovers(&d.config, STACK).await;
                let snaps = snapshots(&d).await;
                if snaps != 1 {
                    return Err(fail(format!("{snaps} final snapshots instead of 1")));
                }
                if !left.is_empty() {
                    return Err(Fail {
                        why: format!("left behind: {left:?}"),
                        left: left.len(),
                    });
                }
                Ok(true)
            }
            Phase::Update => {
                let missing: Vec<&String> = before.iter().filter(|r| !after.contains(r)).collect();
                if terminal && !finish {
                    status_ok("FAILED")?;
                    if !missing.is_empty() {
                        return Err(fail(format!("pre-existing resources lost: {missing:?}")));
                    }
                    // A run that rolled the new version out and then failed
                    // returns the database to the snapshot before it (issue
                    // 31): the service then runs the version before on a new
                    // revision that reads the restored database's new secret.
                    // That revision, and only it, is new.
                    let returned = run.state_names.iter().any(|n| n.starts_with("Put back"));
                    let td = service_task_definition(&d).await;
                    let runs = |r: &String| {
                        returned && td.as_ref().is_some_and(|t| r.ends_with(t.as_str()))
                    };
                    let extra: Vec<&String> = after
                        .iter()
                        .filter(|r| !before.contains(r) && !runs(r))
                        .collect();
                    if !extra.is_empty() {
                        return Err(Fail {
                            why: format!("not rolled back: {extra:?}"),
                            left: extra.len(),
                        });
                    }
                    let back = match returned {
                        false => td == td_before,
                        true => {
                            td.is_some()
                                && image_of(&d, td.as_deref()).await
                                    == image_of(&d, td_before.as_deref()).await
                        }
                    };
                    if !back {
                        return Err(fail(format!(
                            "the service runs {td:?}, not {td_before:?} (or its image)"
                        )));
                    }
                    return Ok(true);
                }
                status_ok(if terminal { "FAILED" } else { "SUCCEEDED" })?;
                if kinds(&after) != kinds(&base.updated) {
                    return Err(Fail {
                        why: format!(
                            "not the clean update's resources: {after:?} vs {:?}",
                            base.updated
                        ),
                        left: after.len().abs_diff(base.updated.len()).max(1),
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
        }
    }
    .await;
    // A case that does not end as it must says how its run went.
    judged.map_err(|mut f| {
        f.why = format!("{}{}", f.why, run_context(&run, &names, k));
        f
    })
}

async fn baseline(phases: &[Phase]) -> Baseline {
    let d = deployed().await.expect("deployed");
    let mut base = Baseline::default();
    d.emulator.front.set_fault(None);
    let run = d.run("clean-apply", apply_input()).await.expect("ran");
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
    base.calls
        .insert(Phase::Apply, d.emulator.front.call_names());
    base.applied = stack_leftovers(&d.config, STACK).await;
    if phases.contains(&Phase::Update) {
        d.emulator.front.set_fault(None);
        let run = d.run("clean-update", update_input()).await.expect("ran");
        assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
        base.calls
            .insert(Phase::Update, d.emulator.front.call_names());
        base.updated = stack_leftovers(&d.config, STACK).await;
    }
    d.emulator.front.set_fault(None);
    let run = d.run("clean-destroy", destroy_input()).await.expect("ran");
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
    base.calls
        .insert(Phase::Destroy, d.emulator.front.call_names());
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_class_in_apply_destroy_and_update_ends_safely() {
    let full = std::env::var("MBSTACK_SWEEP").is_ok_and(|v| v == "full");
    let phases: Vec<Phase> = match std::env::var("MBSTACK_SWEEP_PHASES") {
        Ok(v) => v
            .split(',')
            .filter_map(|p| match p.trim() {
                "apply" => Some(Phase::Apply),
                "destroy" => Some(Phase::Destroy),
                "update" => Some(Phase::Update),
                _ => None,
            })
            .collect(),
        Err(_) => vec![Phase::Apply, Phase::Destroy, Phase::Update],
    };
    let classes: Option<Vec<String>> = std::env::var("MBSTACK_SWEEP_CLASSES")
        .ok()
        .map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    let jobs: usize = std::env::var("MBSTACK_SWEEP_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    let base = Arc::new(baseline(&phases).await);
    let mut cases = Vec::new();
    for &phase in &phases {
        // `MBSTACK_SWEEP_CALLS=RegisterTaskDefinition,…`: only the cases whose
        // call (in the clean run) is one of these (reproducing one case).
        let only: Vec<String> = std::env::var("MBSTACK_SWEEP_CALLS")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let calls = &base.calls[&phase];
        let wanted = chosen(calls, phase, full).into_iter().filter(|(_, k)| {
            only.is_empty()
                || calls
                    .get(*k as usize - 1)
                    .is_some_and(|c| only.iter().any(|o| action_of(c) == o))
        });
        for (class, k) in wanted {
            if classes
                .as_ref()
                .is_some_and(|c| !c.contains(&format!("{class:?}")))
            {
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
                !log.lines()
                    .any(|l| l == format!("case {phase:?} {class:?} k={k}: ok"))
            });
            before - cases.len()
        }
        Err(_) => 0,
    };
    if resumed > 0 {
        println!("{resumed} cases skipped: reported ok by MBSTACK_SWEEP_RESUME's log");
    }
    // Interleaved (call by call, every class), so a full sweep stopped early has
    // covered the first calls of every class rather than one class entirely.
    cases.sort_by_key(|&(phase, class, k)| (phase, k, class));
    let total = cases.len();
    let started = std::time::Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    for (phase, class, k) in cases {
        let (base, sem) = (base.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let result = tokio::spawn(case(phase, class, k, base)).await;
            let result = match result {
                Ok(r) => r,
                Err(e) => Err(fail(format!("the case panicked: {e}"))),
            };
            (phase, class, k, result)
        });
    }
    // phase, class → runs, survived, leftovers
    let mut table: BTreeMap<(Phase, String), (u32, u32, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut not_reached = 0;
    while let Some(done) = set.join_next().await {
        let Ok((phase, class, k, result)) = done else {
            failures.push("a case task was lost".to_string());
            continue;
        };
        let call = base.calls[&phase]
            .get(k as usize - 1)
            .cloned()
            .unwrap_or_default();
        // One line per case as it ends (a long sweep can be followed, and read
        // even if stopped).
        match &result {
            Ok(true) => println!("case {phase:?} {class:?} k={k}: ok"),
            Ok(false) => println!("case {phase:?} {class:?} k={k}: not reached"),
            Err(f) => println!("case {phase:?} {class:?} k={k} {call}: FAILED {}", f.why),
        }
        if matches!(result, Ok(false)) {
            not_reached += 1;
            continue;
        }
        let cell = table.entry((phase, format!("{class:?}"))).or_default();
        cell.0 += 1;
        match result {
            Ok(_) => cell.1 += 1,
            Err(Fail { why, left }) => {
                cell.2 += left;
                failures.push(format!("{phase:?} {class:?} at call {k} ({call}): {why}"));
            }
        }
    }
    println!(
        "reliability sweep ({}; {total} runs, {jobs} at once, AWS timings ÷ {}, {} s): calls per clean run: {}",
        if full { "full" } else { "CI subset" },
        scale(),
        started.elapsed().as_secs(),
        base.calls
            .iter()
            .map(|(p, c)| format!("{p:?} {}", c.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {:<8} {:<12} {:>5} {:>8} {:>9}",
        "phase", "fault", "runs", "survived", "leftovers"
    );
    for ((phase, class), (runs, survived, leftovers)) in &table {
        println!(
            "  {:<8} {class:<12} {runs:>5} {survived:>8} {leftovers:>9}",
            format!("{phase:?}")
        );
    }
    let (runs, survived): (u32, u32) = table.values().fold((0, 0), |(r, s), c| (r + c.0, s + c.1));
    println!(
        "  total: {runs} runs, {survived} survived; {not_reached} more never reached their k-th call (fewer polls that time), not counted"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
