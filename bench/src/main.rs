//! `benches/run`: every figure of docs/benchmarks.md in one run, printed as
//! Markdown tables.
//!
//! 1. Side by side on the same emulator (front door with AWS's timings at scale 60):
//!    create, no-op re-run, destroy — mbstack's state machine vs `terraform` on the
//!    equivalent plain configuration in benches/terraform — wall time (median of
//!    the rounds) and AWS API calls counted at the front door.
//! 2. Lambda zip sizes (arm64, x86_64) from cargo-lambda's release builds.
//! 3. Local cold start of each function against a minimal Runtime API.
//! 4. Cost per run (Step Functions transitions, Lambda GB-seconds) and the monthly
//!    cost of the default stack, from list prices.

mod coldstart;
mod cost;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mbstack_core::{Event, Scope, StackSpec, Verb};
use mbstack_emulator::Emulator;
use mbstack_local::{Deployed, REALISM_SCALE};
use serde_json::{json, Value};

const STACK: &str = "bench";
/// AWS's durations and mbstack's waits divided by this for the cost round.
const COST_SCALE: u32 = 10;

struct Options {
    rounds: usize,
    cold: usize,
    release: PathBuf,
    terraform: bool,
    workspace: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        rounds: 3,
        cold: 10,
        release: mbstack_emulator::cache_dir().join("release"),
        terraform: true,
        workspace: std::env::current_dir()?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow!("{name} needs a value (see benches/run --help)"))
        };
        match a.as_str() {
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .context("--rounds: a number, e.g. 3")?
            }
            "--cold" => {
                o.cold = value("--cold")?
                    .parse()
                    .context("--cold: a number, e.g. 10")?
            }
            "--release" => o.release = PathBuf::from(value("--release")?),
            "--no-terraform" => o.terraform = false,
            "--workspace" => o.workspace = PathBuf::from(value("--workspace")?),
            "--costs" => {
                cost::print_configurations();
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!(
                    "mbstack-bench [--rounds N] [--cold N] [--release DIR] [--no-terraform] [--workspace DIR] [--costs]\n\
                     --costs    only the monthly cost of each configuration, from list prices\n\
                     --rounds   side-by-side rounds, medians reported (default 3; 0 skips it)\n\
                     --cold     cold starts per function (default 10)\n\
                     --release  cargo-lambda release builds: DIR/zips-<arch>/<fn>/bootstrap.zip and\n\
                     \u{20}          DIR/x86_64-unknown-linux-gnu/dist/<fn> (default ~/.cache/mbstack/release)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if o.cold == 0 {
        bail!("--cold must be at least 1");
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One measured step: wall time and AWS calls at the front door.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    secs: f64,
    calls: u64,
}

/// One mbstack run, with what its cost is computed from.
struct Run {
    step: Step,
    transitions: usize,
    invocations: Vec<(String, Duration)>,
}

async fn mbstack_run(d: &Deployed, name: &str, input: Value) -> Result<Run> {
    d.emulator.front.set_fault(None);
    let _ = d.emulator.front.take_invocations();
    let t = Instant::now();
    let run = d
        .run(name, input)
        .await
        .map_err(|e| anyhow!("mbstack {name}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if run.status != "SUCCEEDED" {
        bail!(
            "mbstack {name}: {} {:?} {:?}",
            run.status,
            run.error,
            run.cause
        );
    }
    Ok(Run {
        step: Step {
            secs,
            calls: d.emulator.front.aws_calls(),
        },
        transitions: run.state_names.len(),
        invocations: d.emulator.front.take_invocations(),
    })
}

const MB_STEPS: [&str; 6] = [
    "create",
    "no-op apply",
    "plan",
    "pause",
    "resume",
    "destroy",
];

/// All of [`MB_STEPS`] on a fresh emulator whose AWS timings are divided by
/// `scale` and mbstack's waits by `divisor` (1: its real polling intervals).
async fn mbstack_round(round: usize, scale: u32, divisor: u32) -> Result<Vec<Run>> {
    let d = Deployed::start()
        .await
        .map_err(|e| anyhow!("deploying locally: {e}"))?;
    d.emulator.front.set_realism(true, scale);
    d.emulator.front.set_wait_divisor(divisor);
    let mut out = Vec::new();
    for step in MB_STEPS {
        let input = match step {
            "create" | "no-op apply" => json!({"stack": STACK}),
            "plan" => json!({"stack": STACK, "action": "plan"}),
            "pause" => json!({"stack": STACK, "action": "pause"}),
            "resume" => json!({"stack": STACK, "action": "resume"}),
            _ => json!({"stack": STACK, "action": "destroy"}),
        };
        let name = format!("{}-{round}", step.replace([' ', '-'], ""));
        out.push(mbstack_run(&d, &name, input).await?);
    }
    Ok(out)
}

/// Creates of the default stack with AWS's timings and mbstack's waits both
/// divided by one scale, each against the emulator's critical path: how much the
/// scheduling and the polls add to what AWS makes anyone wait. Step Functions
/// waits whole seconds (moto as AWS): at ÷60 every poll becomes 1 s, i.e. 60 s
/// of real time where mbstack polls every 15–30 s, so the figure is also given
/// at ÷15, where the scaled polls keep their real proportion.
async fn critical_path(rounds: usize) -> Result<()> {
    println!("\n## A create against its critical path (median of {rounds})\n");
    println!("| AWS and mbstack's waits | create wall time | critical path | wall ÷ path |");
    println!("|---|---:|---:|---:|");
    let scales: Vec<u32> = match std::env::var("MBSTACK_BENCH_SCALES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![REALISM_SCALE, 15],
    };
    for scale in scales {
        let path = mbstack_emulator::create_critical_path(scale).as_secs_f64();
        let iam = mbstack_core::aws::ROLE_PROPAGATION / scale;
        let mut walls = Vec::new();
        for round in 0..rounds {
            let emulator = Emulator::start().map_err(|e| anyhow!("the emulator: {e}"))?;
            let d = Deployed::start_with(emulator, iam, iam)
                .await
                .map_err(|e| anyhow!("deploying locally: {e}"))?;
            d.emulator.front.set_realism(true, scale);
            d.emulator.front.set_wait_divisor(scale);
            let name = format!("critical-{scale}-{round}");
            let run = mbstack_run(&d, &name, json!({"stack": STACK})).await?;
            walls.push(run.step.secs);
            if std::env::var_os("MBSTACK_BENCH_TRACE").is_some() {
                for (function, took) in &run.invocations {
                    eprintln!("  {function} {:.3} s", took.as_secs_f64());
                }
            }
        }
        let wall = median(walls);
        println!(
            "| ÷{scale} | {wall:.2} s | {path:.2} s | {:.2} |",
            wall / path
        );
    }
    Ok(())
}

/// `n` creates at once against one create alone, on one emulator (AWS ÷60,
/// mbstack's waits ÷60): the total wall time and the AWS calls per stack.
async fn many_stacks(n: usize) -> Result<()> {
    let one = Deployed::start()
        .await
        .map_err(|e| anyhow!("deploying locally: {e}"))?;
    let alone = mbstack_run(&one, "alone", json!({"stack": STACK})).await?;
    drop(one);
    let d = std::sync::Arc::new(
        Deployed::start()
            .await
            .map_err(|e| anyhow!("deploying locally: {e}"))?,
    );
    // n NAT gateways need n Elastic IPs (AWS's default quota is 5).
    d.emulator.front.set_eip_quota(2 * n);
    d.emulator.front.set_vpc_quota(2 * n);
    d.emulator.front.set_fault(None); // counts calls from here
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let d = d.clone();
        set.spawn(async move {
            d.run(&format!("many-{i}"), json!({"stack": format!("many{i}")}))
                .await
        });
    }
    let mut ok = 0;
    while let Some(done) = set.join_next().await {
        if matches!(done, Ok(Ok(ref run)) if run.status == "SUCCEEDED") {
            ok += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let calls = d.emulator.front.aws_calls() as f64 / n as f64;
    println!("\n## {n} stacks created at once (one emulator; AWS and mbstack's waits ÷{REALISM_SCALE})\n");
    println!("| | wall time | AWS calls per stack | succeeded |");
    println!("|---|---:|---:|---:|");
    println!(
        "| one stack alone | {:.2} s | {} | 1/1 |",
        alone.step.secs, alone.step.calls
    );
    println!(
        "| {n} at once | {wall:.2} s ({:.2}×) | {calls:.0} | {ok}/{n} |",
        wall / alone.step.secs
    );
    Ok(())
}

const TF_STEPS: [&str; 3] = ["apply", "plan", "destroy"];

struct Terraform {
    dir: PathBuf,
    data: PathBuf,
    rc: PathBuf,
}

impl Terraform {
    fn find(workspace: &Path) -> Result<Self, String> {
        let dir = workspace.join("benches").join("terraform");
        if !dir.join("main.tf").exists() {
            return Err(format!("{} has no main.tf", dir.display()));
        }
        let ok = std::process::Command::new("terraform")
            .arg("version")
            .env("TF_CLI_CONFIG_FILE", dir.join("terraformrc"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(
                "terraform is not installed (https://developer.hashicorp.com/terraform/install)"
                    .into(),
            );
        }
        let rc = dir.join("terraformrc");
        let mirror = std::fs::read_to_string(&rc)
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.trim().strip_prefix("path").map(|p| {
                        p.trim_start_matches([' ', '='])
                            .trim()
                            .trim_matches('"')
                            .to_string()
                    })
                })
            })
            .unwrap_or_default();
        if !Path::new(&mirror)
            .join("registry.terraform.io/hashicorp/aws")
            .exists()
        {
            return Err(format!(
                "the AWS provider's filesystem mirror {mirror:?} (named in {}) is not on this machine",
                rc.display()
            ));
        }
        let data = std::env::temp_dir().join("mbstack-bench-tf");
        Ok(Self { dir, data, rc })
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("terraform");
        c.arg(format!("-chdir={}", self.dir.display()))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.rc)
            .env("TF_DATA_DIR", &self.data)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(std::process::Stdio::null());
        c
    }

    async fn init(&self) -> Result<()> {
        let out = self
            .command(&["init", "-input=false", "-no-color"])
            .output()
            .await
            .context("running terraform init")?;
        if !out.status.success() {
            bail!("terraform init: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// apply, plan (no-op), destroy on a fresh emulator.
    async fn round(&self, round: usize) -> Result<Vec<Step>> {
        let emulator = Emulator::start().map_err(|e| anyhow!("the emulator: {e}"))?;
        emulator
            .front
            .set_realism(true, mbstack_local::REALISM_SCALE);
        let endpoint = format!("endpoint={}", emulator.endpoint());
        let state = std::env::temp_dir().join(format!("mbstack-bench-{round}.tfstate"));
        let _ = std::fs::remove_file(&state);
        let state_arg = format!("-state={}", state.display());
        let mut out = Vec::new();
        for step in TF_STEPS {
            let mut args = vec![
                step,
                "-input=false",
                "-no-color",
                "-lock=false",
                "-var",
                &endpoint,
                &state_arg,
            ];
            if step == "plan" {
                args.push("-detailed-exitcode");
            } else {
                args.push("-auto-approve");
            }
            emulator.front.set_fault(None);
            let t = Instant::now();
            let o = self
                .command(&args)
                .output()
                .await
                .with_context(|| format!("running terraform {step}"))?;
            let secs = t.elapsed().as_secs_f64();
            let code = o.status.code().unwrap_or(-1);
            // plan: 0 no changes, 2 changes (a no-op must be 0: anything else
            // means the configuration and the emulator disagree).
            if code != 0 {
                let tail: String = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&o.stderr).lines())
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                    .take(80)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!("terraform {step} exited {code}:\n{tail}");
            }
            out.push(Step {
                secs,
                calls: emulator.front.aws_calls(),
            });
        }
        Ok(out)
    }
}

fn zip_sizes(release: &Path) -> Vec<(String, Option<u64>, Option<u64>)> {
    mbstack_core::naming::TIERS
        .iter()
        .map(|t| t.binary)
        .map(|bin| {
            let size = |arch: &str| {
                std::fs::metadata(
                    release
                        .join(format!("zips-{arch}"))
                        .join(bin)
                        .join("bootstrap.zip"),
                )
                .ok()
                .map(|m| m.len())
            };
            (bin.to_string(), size("arm64"), size("x86_64"))
        })
        .collect()
}

/// A first event each function can answer on an empty account.
fn cold_event(bin: &str) -> Value {
    if bin == "mbstack-control" {
        return json!({
            "command": "prepare",
            "input": {"stack": "cold", "action": "plan"},
            "execution": "cold-1",
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:mbstack-provision:cold-1"
        });
    }
    let ev = Event::new(Verb::Plan, StackSpec::new("cold"), "cold-1", Scope::Stack);
    serde_json::to_value(ev).unwrap_or(Value::Null)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// Section 1: both tools, `o.rounds` rounds each, medians.
async fn side_by_side(o: &Options) -> Result<()> {
    // Both tools poll at their own, real intervals; AWS's durations are 60×
    // shorter for both (mbstack's waits are not shortened here, unlike the tests).
    let mut mb_rounds = Vec::new();
    for r in 0..o.rounds {
        eprintln!("mbstack round {}/{}…", r + 1, o.rounds);
        mb_rounds.push(mbstack_round(r, mbstack_local::REALISM_SCALE, 1).await?);
    }
    let mut tf_rounds: Vec<Vec<Step>> = Vec::new();
    let mut tf_note = String::new();
    if o.terraform {
        match Terraform::find(&o.workspace) {
            Ok(tf) => {
                tf.init().await?;
                for r in 0..o.rounds {
                    eprintln!("terraform round {}/{}…", r + 1, o.rounds);
                    tf_rounds.push(tf.round(r).await?);
                }
            }
            Err(why) => tf_note = format!("Terraform skipped: {why}."),
        }
    } else {
        tf_note = "Terraform skipped (--no-terraform).".into();
    }
    let mb = |i: usize| -> Step {
        Step {
            secs: median(mb_rounds.iter().map(|r| r[i].step.secs).collect()),
            calls: median(mb_rounds.iter().map(|r| r[i].step.calls as f64).collect()) as u64,
        }
    };
    let tf = |i: usize| -> Option<Step> {
        (!tf_rounds.is_empty()).then(|| Step {
            secs: median(tf_rounds.iter().map(|r| r[i].secs).collect()),
            calls: median(tf_rounds.iter().map(|r| r[i].calls as f64).collect()) as u64,
        })
    };
    println!(
        "## Side by side on the emulator (medians of {} rounds)\n",
        o.rounds
    );
    println!("| step | mbstack | s | calls | terraform | s | calls | time ratio | calls ratio |");
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|");
    let rows: [(&str, usize, &str, Option<usize>); 4] = [
        ("create", 0, "apply", Some(0)),
        ("no-op re-run", 1, "plan", Some(1)),
        ("no-op re-run", 2, "plan", Some(1)),
        ("destroy", 5, "destroy", Some(2)),
    ];
    for (label, mi, tlabel, ti) in rows {
        let m = mb(mi);
        let t = ti.and_then(tf);
        let (ts, tc, rs, rc) = match t {
            Some(t) => (
                format!("{:.1}", t.secs),
                t.calls.to_string(),
                format!("{:.2}", m.secs / t.secs),
                format!("{:.2}", m.calls as f64 / t.calls.max(1) as f64),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {label} | {} | {:.1} | {} | {tlabel} | {ts} | {tc} | {rs} | {rc} |",
            MB_STEPS[mi], m.secs, m.calls
        );
    }
    if !tf_note.is_empty() {
        println!("\n{tf_note}");
    }
    println!(
        "\nAlso measured for mbstack: pause {:.1} s / {} calls, resume {:.1} s / {} calls.",
        mb(3).secs,
        mb(3).calls,
        mb(4).secs,
        mb(4).calls
    );

    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let started = Instant::now();
    println!("# mbstack benchmarks\n");
    println!(
        "Run {} on {} ({} cores), {} round(s) side by side, {} cold start(s) per function.\n",
        cost::today(),
        std::env::consts::ARCH,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        o.rounds,
        o.cold
    );

    // 1. Side by side.
    if o.rounds > 0 {
        side_by_side(&o).await?;
    } else {
        println!("Side by side skipped (--rounds 0).");
    }

    // 2. A create against its critical path: AWS's timings and mbstack's waits
    // both ÷60, so the polls are as fine as the waits they poll.
    critical_path(o.rounds.max(1)).await?;

    // 3. Ten stacks at once on one emulator (one account and region).
    many_stacks(10).await?;

    // 3b. Zip sizes.
    println!("\n## Lambda zips (release, cargo-lambda)\n");
    println!("| function | arm64 | x86_64 |");
    println!("|---|---:|---:|");
    let zips = zip_sizes(&o.release);
    for (bin, arm, x86) in &zips {
        let show = |s: &Option<u64>| s.map(mib).unwrap_or_else(|| "not built".into());
        println!("| {bin} | {} | {} |", show(arm), show(x86));
    }
    let largest = zips.iter().flat_map(|(_, a, x)| [*a, *x]).flatten().max();
    if let Some(l) = largest {
        println!("\nLargest: {} (target: under 8 MiB).", mib(l));
    }

    // 4. Cold start.
    println!(
        "\n## Local cold start (x86_64 release binary, minimal Runtime API, median of {})\n",
        o.cold
    );
    let bin_dir = o.release.join("x86_64-unknown-linux-gnu").join("dist");
    let emulator = Emulator::start().map_err(|e| anyhow!("the emulator: {e}"))?;
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cold"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "cold"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("AWS_ENDPOINT_URL".to_string(), emulator.endpoint())])
    .collect();
    println!("| function | to first `next` | to first response | first outcome |");
    println!("|---|---:|---:|---|");
    let mut all_next = Vec::new();
    for bin in mbstack_core::naming::TIERS.iter().map(|t| t.binary) {
        let path = bin_dir.join(bin);
        if !path.exists() {
            println!("| {bin} | not built | | |");
            continue;
        }
        let mut env = env.clone();
        env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), bin.to_string()));
        let (mut next, mut resp, mut outcome) = (Vec::new(), Vec::new(), String::new());
        for _ in 0..o.cold {
            let c = coldstart::once(&path, &env, &cold_event(bin))
                .await
                .map_err(|e| anyhow!(e))?;
            next.push(c.to_next.as_secs_f64() * 1000.0);
            resp.push(c.to_response.as_secs_f64() * 1000.0);
            outcome = c.outcome.chars().take(80).collect();
        }
        all_next.extend(next.iter().copied());
        println!(
            "| {bin} | {:.1} ms | {:.1} ms | {outcome} |",
            median(next),
            median(resp)
        );
    }
    if !all_next.is_empty() {
        println!(
            "\nMedian over all functions, spawn to first `next`: {:.1} ms (target: under 50 ms).",
            median(all_next)
        );
    }
    drop(emulator);

    // 4. Cost: one more round where AWS's durations and mbstack's waits are both
    // divided by 10, so the number of polls (and state transitions) is close to
    // a real account's (at 60 the 1 s floor of a wait undercounts them).
    eprintln!("mbstack cost round (AWS timings ÷ {COST_SCALE})…");
    let cost_round = mbstack_round(99, COST_SCALE, COST_SCALE).await?;
    let measured: Vec<cost::Measured> = cost_round
        .iter()
        .map(|x| (x.transitions, x.invocations.clone(), x.step.calls))
        .collect();
    cost::print(&[measured], &MB_STEPS);
    cost::print_configurations();
    println!(
        "\nCost round wall times (AWS ÷ {COST_SCALE}): {}.",
        MB_STEPS
            .iter()
            .zip(&cost_round)
            .map(|(s, r)| format!("{s} {:.0} s", r.step.secs))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
