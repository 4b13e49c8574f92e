//! `mbstack up | plan | down | pause | resume | status`: start an execution of the
//! deployed state machine and follow it live, or read the stacks' last runs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_config::BehaviorVersion;
use mbstack_control::store;
use mbstack_core::contract::inputs_from;
use mbstack_core::naming::tier_label;
use mbstack_core::spec::merge_patch;
use serde_json::{json, Value};

/// Where to find AWS and the state machine.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// AWS region (else the profile's or AWS_REGION)
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile (SSO and credential_process profiles work)
    #[arg(long)]
    pub profile: Option<String>,
    /// Another endpoint, e.g. the local emulator of `mbstack local up` (also AWS_ENDPOINT_URL)
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The state machine: a name or an ARN
    #[arg(long, default_value = "mbstack-provision")]
    pub state_machine: String,
}

/// What to run it on.
#[derive(clap::Args, Debug, Clone)]
pub struct Input {
    /// A spec file (JSON), merged over the stack's stored spec
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub named: Named,
    /// A field to set, as a JSON value or a plain string: --set app.desiredCount=2
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Start the execution, print its ARN and return (`mbstack watch` follows it)
    #[arg(long)]
    pub detach: bool,
}

/// How a command prints what it has to say.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Ctrl-C while following a run: the run goes on (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("stopped following; the run goes on: {execution}")]
pub struct StoppedFollowing {
    pub execution: String,
}

impl Target {
    /// The endpoint given by `--endpoint-url` or `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
    }

    /// Whether it is the emulator on this machine (answers in milliseconds:
    /// poll it often).
    pub fn is_local(&self) -> bool {
        self.endpoint().as_deref().is_some_and(is_loopback)
    }
}

/// Whether `endpoint` is this machine (the emulator of `mbstack local up`).
pub fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split('/')
        .next()
        .unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// The SDK configuration, checked: credentials that load and a region. Against
/// a loopback endpoint (the emulator), its test credentials and `us-east-1`
/// unless given. Elsewhere a missing credential, profile or region is one line
/// saying what was looked for and what to do.
pub async fn config(t: &Target) -> anyhow::Result<aws_types::SdkConfig> {
    use aws_credential_types::provider::ProvideCredentials;
    let endpoint = t.endpoint();
    let local = t.is_local();
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &t.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    } else if local {
        loader = loader.region(aws_config::Region::new(mbstack_emulator::REGION));
    }
    if let Some(p) = &t.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &endpoint {
        loader = loader.endpoint_url(e);
    }
    if local && t.profile.is_none() {
        // The emulator checks no signature: its test credentials, whatever the
        // environment holds.
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "mbstack-emulator",
        ));
    }
    let cfg = loader.load().await;
    let profile = t
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok());
    let named = profile
        .as_deref()
        .map(|p| format!("profile {p}"))
        .unwrap_or_else(|| "the environment, ~/.aws and the instance role".into());
    if cfg.region().is_none() {
        bail!(
            "no AWS region: pass --region (e.g. --region eu-west-1), set AWS_REGION, or give {} a region",
            profile.as_deref().map(|p| format!("profile {p}")).unwrap_or_else(|| "your profile".into())
        );
    }
    let Some(provider) = cfg.credentials_provider() else {
        bail!("no AWS credentials provider could be built from {named}");
    };
    if let Err(e) = provider.provide_credentials().await {
        let sso = profile
            .as_deref()
            .map(|p| format!("`aws sso login --profile {p}`"))
            .unwrap_or_else(|| "`aws sso login`".into());
        bail!(
            "no AWS credentials found in {named} ({}): run {sso}, pass --profile NAME, export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or try mbstack on the local emulator (`mbstack local up`, then --endpoint-url http://127.0.0.1:4566)",
            first_line(&e.to_string())
        );
    }
    Ok(cfg)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A unique execution name: the stack, the action, the UTC time to the
/// millisecond and a random part (two runs in one second must not collide:
/// Step Functions refuses, or with the same input returns the other run).
pub fn execution_name(stack: &str, action: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = now.subsec_millis();
    let random = (u64::from(now.subsec_nanos()) ^ u64::from(std::process::id()).rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 48;
    format!(
        "{stack}-{action}-{}{millis:03}-{random:04x}",
        mbstack_core::work::utc_stamp_now()
    )
}

/// A stack named by `--stack` or as the first argument, and where it is.
#[derive(clap::Args, Debug, Clone)]
pub struct Named {
    /// The stack name (over a spec file's)
    #[arg(long)]
    pub stack: Option<String>,
    /// The stack name, as the first argument: `mbstack up analytics`
    #[arg(value_name = "STACK", conflicts_with = "stack")]
    pub stack_arg: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

impl Named {
    /// The stack named by `--stack` or the first argument.
    pub fn given(&self) -> Option<String> {
        self.stack.clone().or_else(|| self.stack_arg.clone())
    }

    /// The stack, or an error saying how to give it.
    pub fn name(&self, command: &str) -> anyhow::Result<String> {
        match self.given() {
            Some(s) => Ok(s),
            None => bail!("which stack? `mbstack {command} NAME` (or --stack NAME)"),
        }
    }
}

/// The execution input: file, then --stack, then each --set, then the action.
pub fn build_input(i: &Input, action: &str) -> anyhow::Result<Value> {
    let mut input = match &i.file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?
        }
        None => json!({}),
    };
    if let Some(s) = i.named.given() {
        input["stack"] = json!(s);
    }
    for set in &i.set {
        let Some((path, raw)) = set.split_once('=') else {
            bail!("--set {set:?}: write PATH=VALUE, e.g. --set app.desiredCount=2");
        };
        let value: Value = serde_json::from_str(raw).unwrap_or_else(|_| json!(raw));
        // Set in the input itself, not merged into it: the input is a merge
        // patch, and its `null` (take the field away) must reach Prepare.
        set_path(&mut input, path, value).with_context(|| {
            format!("--set {set:?}: {path} goes through a value that is not an object")
        })?;
    }
    if input.get("stack").and_then(Value::as_str).is_none() {
        bail!("which stack? give --stack NAME or a file with \"stack\"");
    }
    input["action"] = json!(action);
    Ok(input)
}

/// Sets `value` at the dotted `path` of `input`, making the objects on the
/// way; None when a part of the path is a value that is not an object.
fn set_path(input: &mut Value, path: &str, value: Value) -> Option<()> {
    let mut at = input;
    let keys: Vec<&str> = path.split('.').collect();
    let (last, before) = keys.split_last()?;
    for key in before {
        let obj = at.as_object_mut()?;
        at = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    }
    at.as_object_mut()?.insert(last.to_string(), value);
    Some(())
}

async fn state_machine_arn(sfn: &aws_sdk_sfn::Client, name: &str) -> anyhow::Result<String> {
    if name.starts_with("arn:") {
        return Ok(name.to_string());
    }
    crate::deploy::find_state_machine(sfn, name)
        .await
        .context("listing state machines")?
        .ok_or_else(|| anyhow::anyhow!("no state machine named {name} here: deploy mbstack first (or pass --state-machine, --region, --endpoint-url)"))
}

/// A person's line for a tier outcome seen in the history: ✓ done, … waiting.
fn outcome_line(elapsed: f64, payload: &Value) -> Option<String> {
    let tier = payload.get("tier")?.as_str()?;
    let state = payload.get("state")?.as_str()?;
    let message = shorten_arns(payload.get("message").and_then(Value::as_str).unwrap_or(""));
    let mark = if state == "pending" { "…" } else { "✓" };
    let tier = row_label(tier, payload);
    Some(format!("{elapsed:>7.1}s  {mark} {tier:<14} {message}"))
}

/// The row an outcome belongs to where people follow a run: its tier's, or
/// its part's own (the NAT gateways, waited for beside the database).
fn row_label<'a>(tier: &'a str, outcome: &Value) -> &'a str {
    mbstack_core::Part::of(outcome)
        .label()
        .unwrap_or_else(|| tier_label(tier))
}

/// A spinner row's message, cut to end a column short of the terminal's edge
/// (spinner, 14-column label and spaces take 17): a row that fills the last
/// column makes the terminal wrap the cursor, and the redraw breaks.
fn row_message(message: String) -> String {
    match terminal_width() {
        Some(width) if message.chars().count() + 18 > width => {
            let keep = width.saturating_sub(19);
            let mut cut: String = message.chars().take(keep).collect();
            cut.push('…');
            cut
        }
        _ => message,
    }
}

/// One spinner per tier (and per wait apart), each showing the tier's latest message; ✓ when ready or
/// gone, ✗ for the tiers still running when the run failed.
struct Spinners {
    multi: indicatif::MultiProgress,
    bars: Vec<(String, indicatif::ProgressBar, bool)>,
}

impl Spinners {
    fn new() -> Self {
        Self {
            multi: indicatif::MultiProgress::new(),
            bars: Vec::new(),
        }
    }

    fn show(&mut self, payload: &Value, elapsed: f64) {
        let (Some(tier), Some(state)) = (
            payload.get("tier").and_then(Value::as_str),
            payload.get("state").and_then(Value::as_str),
        ) else {
            return;
        };
        let message = shorten_arns(payload.get("message").and_then(Value::as_str).unwrap_or(""));
        let row = row_label(tier, payload);
        let idx = match self.bars.iter().position(|(t, _, _)| t == row) {
            Some(i) => i,
            None => {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                // The message is cut short of the terminal's width (see
                // `row_message`): a line that wraps, or fills the last column,
                // breaks the redraw (and an ARN in two).
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("{spinner} {prefix:<14} {msg}")
                {
                    bar.set_style(style);
                }
                bar.set_prefix(row.to_string());
                self.bars.push((row.to_string(), bar, false));
                self.bars.len() - 1
            }
        };
        let (_, bar, done) = &mut self.bars[idx];
        if state == "pending" {
            bar.set_message(row_message(format!("{message}, {elapsed:.0}s")));
            *done = false;
        } else {
            bar.finish_with_message(row_message(format!("✓ {message} ({elapsed:.0}s)")));
            *done = true;
        }
    }

    fn tick(&self) {
        for (_, bar, done) in &self.bars {
            if !done {
                bar.tick();
            }
        }
    }

    fn finish(self, ok: bool) {
        self.end(if ok { None } else { Some("✗ stopped") });
    }

    /// Each tier not done ends with `message` (or as it is).
    fn end(self, message: Option<&'static str>) {
        for (_, bar, done) in self.bars {
            if !done {
                match message {
                    None => bar.finish(),
                    Some(m) => bar.abandon_with_message(m),
                }
            }
        }
    }
}

/// Starts `action` and follows it; the exit code says how it ended.
pub async fn run(i: &Input, action: &str, output: Output) -> anyhow::Result<bool> {
    let input = build_input(i, action)?;
    let cfg = config(&i.named.target).await?;
    start(i, &cfg, input, action, output).await
}

/// `up`: an apply. A stack that is down (nothing of it here) but left a final
/// snapshot comes back with its data or empty as the person says: `--restore`,
/// `--fresh`, the spec's `database.restoreFrom`, or the answer to a question
/// (never a guess: without a terminal to ask on, the command says which flag).
pub async fn up(
    i: &Input,
    restore: Option<&str>,
    fresh: bool,
    output: Output,
) -> anyhow::Result<bool> {
    let mut input = build_input(i, "apply")?;
    let cfg = config(&i.named.target).await?;
    let stack = input["stack"].as_str().unwrap_or("").to_string();
    let given = input.pointer("/database/restoreFrom").is_some();
    match restore {
        Some(r) => {
            let from = if r == "latest" {
                mbstack_core::spec::LATEST_FINAL
            } else {
                r
            };
            merge_patch(&mut input, &json!({"database": {"restoreFrom": from}}));
        }
        None if fresh || given => {}
        None if !stack_exists(&cfg, &stack).await? => {
            if let Some(snapshot) = final_snapshot_of(&cfg, &stack).await {
                let restore = if std::io::stdin().is_terminal() && output == Output::Text {
                    print!("Stack {stack} is down; its database was kept as the final snapshot {} (taken {}). Restore it? [Y/n] ", snapshot.id, snapshot.taken);
                    let _ = std::io::stdout().flush();
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    !matches!(answer.trim().to_ascii_lowercase().as_str(), "n" | "no")
                } else {
                    bail!(
                        "stack {stack} is down, and its database was kept as the final snapshot {} (taken {}): pass --restore latest to bring it back with that data, or --fresh for an empty Metabase; nothing was started",
                        snapshot.id,
                        snapshot.taken
                    );
                };
                if restore {
                    merge_patch(
                        &mut input,
                        &json!({"database": {"restoreFrom": mbstack_core::spec::LATEST_FINAL}}),
                    );
                }
            }
        }
        None => {}
    }
    start(i, &cfg, input, "apply", output).await
}

/// The stack's newest final snapshot a restore can use, if any.
async fn final_snapshot_of(
    cfg: &aws_types::SdkConfig,
    stack: &str,
) -> Option<mbstack_data::RestoreSnapshot> {
    let mut spec = mbstack_core::StackSpec::new(stack);
    spec.database.restore_from = Some(mbstack_core::spec::LATEST_FINAL.into());
    let rds = aws_sdk_rds::Client::new(cfg);
    mbstack_data::restore_snapshot(&rds, &spec)
        .await
        .ok()
        .flatten()
}

/// Starts the execution of `input` and follows it (or returns at once with `--detach`).
async fn start(
    i: &Input,
    cfg: &aws_types::SdkConfig,
    input: Value,
    action: &str,
    output: Output,
) -> anyhow::Result<bool> {
    let stack = input["stack"].as_str().unwrap_or("").to_string();
    let t = &i.named.target;
    let cfg = cfg.clone();
    let name = execution_name(&stack, action);
    check_spec(&cfg, &input, &stack, &name).await?;
    let sfn = aws_sdk_sfn::Client::new(&cfg);
    let arn = state_machine_arn(&sfn, &t.state_machine).await?;
    let started = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
        .context("starting the execution")?;
    let exec = started.execution_arn().to_string();
    if i.detach {
        if output == Output::Json {
            println!("{}", json!({"executionArn": exec}));
        } else {
            println!("{exec}");
        }
        return Ok(true);
    }
    follow(&sfn, &exec, action, &stack, output, t.is_local()).await
}

/// The last segment of an execution ARN: its name (an ARN does not fit a line).
fn execution_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// Follows the execution `exec` to its end: the tiers' progress live, then a
/// summary. Ctrl-C stops following (the run goes on) with
/// [`StoppedFollowing`].
pub async fn follow(
    sfn: &aws_sdk_sfn::Client,
    exec: &str,
    action: &str,
    stack: &str,
    output: Output,
    local: bool,
) -> anyhow::Result<bool> {
    let json_out = output == Output::Json;
    if !json_out {
        println!("{action} {stack}: execution {}", execution_of(exec));
    }
    let t0 = Instant::now();
    // On a terminal: a spinner per tier with its current state; else plain lines.
    let mut spinners = (!json_out && std::io::stdout().is_terminal()).then(Spinners::new);
    let ended = tokio::select! {
        r = follow_history(sfn, exec, json_out, t0, &mut spinners, local) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(ended) = ended else {
        if let Some(s) = spinners {
            s.end(Some("… still running"));
        }
        if json_out {
            println!(
                "{}",
                json!({"status": "RUNNING", "executionArn": exec, "following": false})
            );
        } else {
            println!("stopped following; the run goes on: {}", execution_of(exec));
            println!("  `mbstack watch {stack}` follows it again");
        }
        return Err(StoppedFollowing {
            execution: exec.to_string(),
        }
        .into());
    };
    let (desc, all_outcomes) = ended?;
    let ok = desc.status().as_str() == "SUCCEEDED";
    if let Some(s) = spinners {
        s.finish(ok);
    }
    let output: Value = desc
        .output()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(Value::Null);
    if json_out {
        println!(
            "{}",
            json!({"status": desc.status().as_str(), "executionArn": exec, "output": output, "error": desc.error(), "cause": desc.cause()})
        );
        return Ok(ok);
    }
    if ok {
        println!(
            "✓ {action} of {stack} succeeded in {:.0} s",
            t0.elapsed().as_secs_f64()
        );
        // Every change of the run: a destroy deletes over several polls, and the
        // output keeps only each tier's last one.
        let changes = run_changes(&all_outcomes, &output);
        println!("  {} change(s)", changes.len());
        let width = terminal_width();
        for c in &changes {
            for l in change_lines(c, width) {
                println!("{l}");
            }
        }
        if let Some(snapshot) = final_snapshot(&changes) {
            println!(
                "  The database is kept as the final snapshot {snapshot}. To bring the stack back with its data:"
            );
            println!("    mbstack up {stack} --restore latest");
        }
        if let Some(url) = output["url"].as_str() {
            println!("  Metabase: {url}");
        }
    } else {
        println!("✗ {action} of {stack} ended {}", desc.status().as_str());
        println!("  error: {}", desc.error().unwrap_or("?"));
        let cause = desc.cause().unwrap_or("");
        let message = serde_json::from_str::<Value>(cause)
            .ok()
            .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
            .unwrap_or_else(|| cause.to_string());
        println!("  cause: {message}");
        // What the run changed before it failed, and what its rollback undid.
        let changes = run_changes(&all_outcomes, &output);
        let undone: Vec<&Change> = changes.iter().filter(|c| c.3 == "delete").collect();
        if action != "destroy" {
            if undone.is_empty() {
                println!(
                    "  rolled back: nothing this run created (what existed before is untouched)"
                );
            } else {
                println!(
                    "  rolled back: {} resource(s) this run created",
                    undone.len()
                );
                let width = terminal_width();
                for c in undone {
                    for l in change_lines(c, width) {
                        println!("{l}");
                    }
                }
            }
        }
    }
    Ok(ok)
}

/// Polls the execution until it ends, showing each tier outcome as it comes;
/// its description and every outcome, in order.
async fn follow_history(
    sfn: &aws_sdk_sfn::Client,
    exec: &str,
    json_out: bool,
    t0: Instant,
    spinners: &mut Option<Spinners>,
    local: bool,
) -> anyhow::Result<(
    aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
    Vec<Value>,
)> {
    let mut seen = 0usize;
    loop {
        let d = sfn
            .describe_execution()
            .execution_arn(exec)
            .send()
            .await
            .context("following the execution")?;
        // The tiers' outcomes, in order, from the execution history.
        let mut outcomes = Vec::new();
        let mut token = None;
        loop {
            let h = sfn
                .get_execution_history()
                .execution_arn(exec)
                .set_next_token(token)
                .max_results(1000)
                .send()
                .await?;
            outcomes.extend(h.events().iter().filter_map(|e| {
                let out: Value =
                    serde_json::from_str(e.task_succeeded_event_details()?.output()?).ok()?;
                out.get("Payload").cloned()
            }));
            token = h.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        if !json_out {
            for p in outcomes.iter().skip(seen) {
                match spinners {
                    Some(s) => s.show(p, t0.elapsed().as_secs_f64()),
                    None => {
                        if let Some(line) = outcome_line(t0.elapsed().as_secs_f64(), p) {
                            println!("{line}");
                            let _ = std::io::stdout().flush();
                        }
                    }
                }
            }
            if let Some(s) = spinners {
                s.tick();
            }
        }
        seen = outcomes.len();
        if d.status().as_str() != "RUNNING" {
            return Ok((d, outcomes));
        }
        tokio::time::sleep(Duration::from_millis(if local { 200 } else { 3000 })).await;
    }
}

/// The execution holding `stack`'s lock, when it is still running: its ARN,
/// its input and when it started (Unix seconds).
async fn running_execution(
    cfg: &aws_types::SdkConfig,
    stack: &str,
) -> anyhow::Result<Option<(String, Value, i64)>> {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    let holder = store::get(&ssm, &store::path(stack, "lock")).await?;
    let Some(holder) = holder.filter(|h| h.starts_with("arn:")) else {
        return Ok(None);
    };
    let sfn = aws_sdk_sfn::Client::new(cfg);
    let Ok(d) = sfn.describe_execution().execution_arn(&holder).send().await else {
        // Gone or unreadable: the next run takes the lock over.
        return Ok(None);
    };
    if d.status().as_str() != "RUNNING" {
        return Ok(None);
    }
    let input = d
        .input()
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(Value::Null);
    Ok(Some((holder, input, d.start_date().secs())))
}

/// The newest running execution of the state machine whose input names
/// `stack`: a run that has not taken the lock yet (it was started a moment ago).
async fn unlocked_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    stack: &str,
) -> anyhow::Result<Option<(String, Value, i64)>> {
    let arn = state_machine_arn(sfn, state_machine).await?;
    let running = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
        .send()
        .await
        .context("listing the running executions")?;
    for e in running.executions() {
        let Ok(d) = sfn
            .describe_execution()
            .execution_arn(e.execution_arn())
            .send()
            .await
        else {
            continue;
        };
        let input: Value = d
            .input()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        if input["stack"].as_str() == Some(stack) {
            return Ok(Some((
                e.execution_arn().to_string(),
                input,
                d.start_date().secs(),
            )));
        }
    }
    Ok(None)
}

/// `mbstack watch STACK`: follows the run in progress on the stack (started
/// here, elsewhere, by a schedule or by the console); when there is none, says
/// how the last one ended.
pub async fn watch(t: &Target, stack: &str, output: Output) -> anyhow::Result<bool> {
    let cfg = config(t).await?;
    let sfn = aws_sdk_sfn::Client::new(&cfg);
    let running = match running_execution(&cfg, stack).await? {
        Some((exec, input, _)) => Some((exec, input)),
        None => unlocked_execution(&sfn, &t.state_machine, stack)
            .await?
            .map(|(exec, input, _)| (exec, input)),
    };
    if let Some((exec, input)) = running {
        let action = input["action"].as_str().unwrap_or("apply").to_string();
        return follow(&sfn, &exec, &action, stack, output, t.is_local()).await;
    }
    require_stack(&cfg, stack).await?;
    let ssm = aws_sdk_ssm::Client::new(&cfg);
    let last: Value = store::get(&ssm, &store::path(stack, "last-run"))
        .await?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or(Value::Null);
    if output == Output::Json {
        println!(
            "{}",
            json!({"stack": stack, "running": false, "lastRun": last})
        );
    } else if last.is_null() {
        println!("no run of {stack} in progress");
    } else {
        let ended = last["ended"]
            .as_i64()
            .map(|t| format!(", ended {}", when(t)))
            .unwrap_or_default();
        println!(
            "no run of {stack} in progress; the last: {} {}{ended}",
            last["action"].as_str().unwrap_or(""),
            last["status"].as_str().unwrap_or("")
        );
    }
    Ok(true)
}

/// A moment as people read it: `2026-11-30 20:56 UTC`.
pub fn when(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// One stack as `status` shows it: its last run and the run in progress.
struct StackRow {
    stack: String,
    last: Value,
    /// The run holding the lock: execution ARN, action, start (Unix seconds).
    running: Option<(String, String, i64)>,
}

impl StackRow {
    fn to_json(&self) -> Value {
        json!({
            "stack": self.stack,
            "lastRun": self.last,
            "running": self.running.as_ref().map(|(e, a, s)| json!({"executionArn": e, "action": a, "started": when(*s)})),
        })
    }
}

/// Every stack's last run (from `/mbstack/*/last-run`) and the run in progress
/// (the lock's holder, while it runs); `stack`: one stack, with its resources
/// read live.
pub async fn status(t: &Target, stack: Option<&str>, output: Output) -> anyhow::Result<()> {
    let cfg = config(t).await?;
    let records = crate::deploy::records(&mbstack_core::Aws::new(cfg.clone()))
        .await
        .context("reading /mbstack/ in Parameter Store")?;
    let mut names: Vec<String> = records
        .iter()
        .filter(|(s, leaf, _)| {
            (leaf == "last-run" || leaf == "lock") && stack.is_none_or(|want| want == s)
        })
        .map(|(s, _, _)| s.clone())
        .collect();
    names.dedup();
    let mut rows = Vec::new();
    for name in names {
        let last = records
            .iter()
            .find(|(s, leaf, _)| *s == name && leaf == "last-run")
            .map(|(_, _, v)| serde_json::from_str(v).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let running = running_execution(&cfg, &name).await?.map(|(e, input, at)| {
            let action = input["action"].as_str().unwrap_or("apply").to_string();
            (e, action, at)
        });
        rows.push(StackRow {
            stack: name,
            last,
            running,
        });
    }
    if let Some(stack) = stack {
        // A run started a moment ago (`up --detach`) has not taken the lock
        // yet: it is in progress all the same.
        if rows.first().is_none_or(|r| r.running.is_none()) {
            let sfn = aws_sdk_sfn::Client::new(&cfg);
            // ListExecutions "is eventually consistent": a stack nothing else
            // knows yet is asked again for a few seconds.
            let mut found = unlocked_execution(&sfn, &t.state_machine, stack).await?;
            for _ in 0..3 {
                if found.is_some() || !rows.is_empty() || stack_exists(&cfg, stack).await? {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                found = unlocked_execution(&sfn, &t.state_machine, stack).await?;
            }
            if let Some((exec, input, at)) = found {
                let action = input["action"].as_str().unwrap_or("apply").to_string();
                match rows.first_mut() {
                    Some(r) => r.running = Some((exec, action, at)),
                    None => rows.push(StackRow {
                        stack: stack.to_string(),
                        last: Value::Null,
                        running: Some((exec, action, at)),
                    }),
                }
            }
        }
        if rows.first().is_none_or(|r| r.running.is_none()) {
            require_stack(&cfg, stack).await?;
        }
        return stack_resources(&cfg, stack, rows.first(), output).await;
    }
    if output == Output::Json {
        let all: Vec<Value> = rows.iter().map(StackRow::to_json).collect();
        println!("{}", Value::Array(all));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no stacks yet (`mbstack up NAME` creates one)");
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<10} {:<21} URL",
        "STACK", "ACTION", "STATUS", "WHEN"
    );
    for r in rows {
        let (action, status, at) = match &r.running {
            Some((_, action, started)) => (
                action.clone(),
                "running".to_string(),
                format!("since {}", when(*started)),
            ),
            None => (
                r.last["action"].as_str().unwrap_or("").to_string(),
                r.last["status"].as_str().unwrap_or("").to_string(),
                r.last["ended"].as_i64().map(when).unwrap_or_default(),
            ),
        };
        println!(
            "{:<20} {action:<8} {status:<10} {at:<21} {}",
            r.stack,
            r.last["url"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// One stack as `status STACK --output json` prints it.
fn with_resources(stack: &str, row: Option<&StackRow>, resources: Vec<Value>) -> Value {
    let mut v = row
        .map(StackRow::to_json)
        .unwrap_or_else(|| json!({"stack": stack, "lastRun": null, "running": null}));
    v["resources"] = Value::Array(resources);
    v
}

/// One stack: its last run, the run in progress, and its resources read live
/// (every tier's plan: what exists is `ok`, what is missing would be created by
/// the next apply).
async fn stack_resources(
    cfg: &aws_types::SdkConfig,
    stack: &str,
    row: Option<&StackRow>,
    output: Output,
) -> anyhow::Result<()> {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    let stored = mbstack_control::stored_spec(&ssm, stack)
        .await
        .map_err(|e| anyhow::anyhow!("reading the stored spec of {stack}: {e}"))?
        .map(|v| mbstack_core::StackSpec::from_json(&v))
        .transpose()
        .map_err(|e| anyhow::anyhow!("the stored spec of {stack}: {e}"))?;
    let text_out = output == Output::Text;
    if text_out {
        println!("stack {stack}");
        if let Some(r) = row {
            if !r.last.is_null() {
                let ended = r.last["ended"]
                    .as_i64()
                    .map(|t| format!(", ended {}", when(t)))
                    .unwrap_or_default();
                println!(
                    "  last run:  {} {}{ended} (execution {})",
                    r.last["action"].as_str().unwrap_or(""),
                    r.last["status"].as_str().unwrap_or(""),
                    execution_of(r.last["execution"].as_str().unwrap_or(""))
                );
            }
            if let Some((exec, action, started)) = &r.running {
                println!(
                    "  running:   {action} since {} (execution {}): `mbstack watch {stack}` follows it",
                    when(*started),
                    execution_of(exec)
                );
            }
            if let Some(url) = r.last["url"].as_str() {
                println!("  Metabase:  {url}");
            }
        }
    }
    let Some(spec) = stored else {
        if text_out {
            println!("  no stored spec: the stack was never applied to the end (or was destroyed)");
        } else {
            println!("{}", with_resources(stack, row, Vec::new()));
        }
        return Ok(());
    };
    let health = mbstack_app::service_health(&aws_sdk_ecs::Client::new(cfg), stack).await?;
    if let (true, Some(h)) = (text_out, &health) {
        println!(
            "  service:   {}/{} task(s) running{}",
            h.running,
            h.desired,
            h.rollout
                .as_deref()
                .filter(|r| *r != "COMPLETED")
                .map(|r| format!(", deployment {r}"))
                .unwrap_or_default()
        );
        if let Some(why) = &h.last_stopped {
            println!("  last stop: {why}");
        }
    }
    let aws = mbstack_core::Aws::new(cfg.clone());
    let mut event = mbstack_core::Event::new(
        mbstack_core::Verb::Plan,
        spec,
        "status",
        mbstack_core::Scope::Stack,
    );
    let network = mbstack_network::handle(event.clone(), &aws).await?;
    event.inputs = inputs_from([&network]);
    let data = mbstack_data::handle(event.clone(), &aws).await?;
    let lb = mbstack_loadbalancer::handle(event.clone(), &aws).await?;
    event.inputs = inputs_from([&network, &data, &lb]);
    let app = mbstack_app::handle(event, &aws).await?;
    let mut resources = Vec::new();
    for o in [&network, &data, &lb, &app] {
        for c in &o.changes {
            let state = match c.action {
                mbstack_core::Action::None => "ok",
                mbstack_core::Action::Create => "missing",
                _ => "drifted",
            };
            resources.push(json!({"tier": o.tier.label(), "state": state, "kind": c.kind, "id": c.id, "detail": c.detail}));
        }
    }
    let kept = mbstack_data::pre_upgrade_snapshots(&aws_sdk_rds::Client::new(cfg), stack).await?;
    if !text_out {
        let mut v = with_resources(stack, row, resources);
        v["preUpgradeSnapshots"] = kept
            .iter()
            .map(|(id, before, status)| json!({"id": id, "before": before, "status": status}))
            .collect();
        v["service"] = match &health {
            Some(h) => {
                json!({"running": h.running, "desired": h.desired, "rollout": h.rollout, "lastStopped": h.last_stopped})
            }
            None => Value::Null,
        };
        println!("{v}");
        return Ok(());
    }
    println!(
        "  {:<13} {:<8} {:<17} {:<28} DETAIL",
        "TIER", "STATE", "KIND", "NAME"
    );
    let width = terminal_width();
    for r in &resources {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let head = format!(
            "  {:<13} {:<8} {:<17} {:<28}",
            s("tier"),
            s("state"),
            s("kind"),
            short_id(&s("id")),
        );
        for l in fit(head, &shorten_arns(&s("detail")), width) {
            println!("{l}");
        }
    }
    if !kept.is_empty() {
        println!("  snapshots taken before a Metabase version change (kept; the way back):");
        for (id, before, status) in &kept {
            println!("    {id}  before {before}  ({status})");
        }
    }
    Ok(())
}

/// Whether `stack` exists here: a stored spec, a run holding its lock, or a VPC
/// tagged as the stack's (a create that never finished). A command naming a
/// stack that does not exist refuses instead of "succeeding" on nothing.
pub async fn stack_exists(cfg: &aws_types::SdkConfig, stack: &str) -> anyhow::Result<bool> {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    for p in ["spec", "lock"] {
        if store::get(&ssm, &store::path(stack, p)).await?.is_some() {
            return Ok(true);
        }
    }
    let ec2 = aws_sdk_ec2::Client::new(cfg);
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{}", mbstack_core::naming::STACK_TAG))
                .values(stack)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "looking for stack {stack}'s VPC: {}",
                e.into_service_error()
            )
        })?;
    Ok(!vpcs.vpcs().is_empty())
}

/// Fails with one line when `stack` does not exist here.
pub async fn require_stack(cfg: &aws_types::SdkConfig, stack: &str) -> anyhow::Result<()> {
    if stack_exists(cfg, stack).await? {
        return Ok(());
    }
    bail!(
        "no stack {stack} here (no stored spec, no run in progress, no resource tagged mbstack:stack={stack}): check the name (`mbstack status` lists the stacks), --region and --endpoint-url"
    )
}

/// The merged spec, checked here with Prepare's own code before any execution
/// starts: every problem, one per line.
async fn check_spec(
    cfg: &aws_types::SdkConfig,
    input: &Value,
    stack: &str,
    execution: &str,
) -> anyhow::Result<()> {
    let lines = |e: mbstack_core::InvalidSpec| {
        let mut text = format!(
            "the spec has {} problem(s); nothing was started:",
            e.0.len()
        );
        for p in &e.0 {
            let path = if p.path.is_empty() {
                "(input)"
            } else {
                p.path.as_str()
            };
            text.push_str(&format!("\n  {path}: {}", p.message));
        }
        text
    };
    if let Err(e) = mbstack_control::requested_stack(input, execution) {
        bail!("{}", lines(e));
    }
    let ssm = aws_sdk_ssm::Client::new(cfg);
    let stored = mbstack_control::store::base_spec(&ssm, stack, input)
        .await
        .map_err(|e| anyhow::anyhow!("reading the stored spec of {stack}: {e}"))?;
    if let Err(e) = mbstack_control::merged_spec(input, stored.as_ref(), execution) {
        bail!("{}", lines(e));
    }
    Ok(())
}

/// One change of a run: (tier, kind, id, action, detail).
type Change = (String, String, String, String, String);

/// Every change the run's tier outcomes report, in order, each once (the
/// execution output's own list when the history has none).
fn run_changes(outcomes: &[Value], output: &Value) -> Vec<Change> {
    let field = |c: &Value, k: &str| c[k].as_str().unwrap_or("").to_string();
    let mut out: Vec<Change> = Vec::new();
    let from_history = outcomes.iter().flat_map(|o| {
        let tier = o["tier"].as_str().unwrap_or("").to_string();
        o["changes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            // Finish's output names each change's tier in the change.
            .map(move |c| (c["tier"].as_str().unwrap_or(&tier).to_string(), c))
    });
    let from_output = output["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c["tier"].as_str().unwrap_or("").to_string(), c));
    let all: Vec<(String, Value)> = if outcomes.is_empty() {
        from_output.collect()
    } else {
        from_history.collect()
    };
    for (tier, c) in all {
        let action = field(&c, "action");
        if action == "none" || action.is_empty() {
            continue;
        }
        let key = (
            tier,
            field(&c, "kind"),
            field(&c, "id"),
            action,
            field(&c, "detail"),
        );
        if !out
            .iter()
            .any(|o| o.0 == key.0 && o.1 == key.1 && o.2 == key.2 && o.3 == key.3)
        {
            out.push(key);
        }
    }
    out
}

/// A resource's name rather than its whole ARN, where the ARN ends with one
/// (`…:service/cluster/metabase` → `metabase`; `…:loadbalancer/app/name/0123abcd…` → `name`;
/// a listener `…:listener/app/name/<lb id>/<its id>` → `name/<its id>`, so that
/// two listeners of one load balancer are told apart).
pub fn short_id(id: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !id.starts_with("arn:") {
        return Cow::Borrowed(id);
    }
    let parts: Vec<&str> = id.split('/').collect();
    let last = parts.last().copied().unwrap_or(id);
    let hex = |s: &str| s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit());
    let n = parts.len();
    if hex(last) && n >= 4 && hex(parts[n - 2]) {
        Cow::Owned(format!("{}/{last}", parts[n - 3]))
    } else if hex(last) && n >= 3 {
        Cow::Borrowed(parts[n - 2])
    } else if n >= 2 {
        Cow::Borrowed(last)
    } else {
        Cow::Borrowed(id.rsplit(':').next().unwrap_or(id))
    }
}

/// `text` with each ARN in it replaced by the name it ends with (an ARN is
/// wider than half a terminal).
pub fn shorten_arns(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let Some(at) = word.find("arn:") else {
                return word.to_string();
            };
            let (before, arn) = word.split_at(at);
            let end = arn.trim_end_matches([',', ';', ')', '.']);
            let after = &arn[end.len()..];
            let name = match short_id(end) {
                // An ARN without a path: its last `:` part.
                n if n == end => std::borrow::Cow::Borrowed(end.rsplit(':').next().unwrap_or(end)),
                n => n,
            };
            format!("{before}{name}{after}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A change as a person reads it: what, where, and what changes; fitted to
/// `width` when on a terminal.
fn change_lines(c: &Change, width: Option<usize>) -> Vec<String> {
    let (tier, kind, id, action, detail) = c;
    let head = format!(
        "    {action:<7} {:<13} {kind:<15} {}",
        tier_label(tier),
        short_id(id)
    );
    if detail.is_empty() {
        return vec![head];
    }
    fit(format!("{head}:"), &shorten_arns(detail), width)
}

/// The width to fit lines to: the terminal's, when standard output is one.
pub fn terminal_width() -> Option<usize> {
    let term = console::Term::stdout();
    term.is_term().then(|| usize::from(term.size().1))
}

/// `head` and `tail` on one line when it fits in `width`; else `tail` on the
/// lines below, indented and broken between words (a terminal breaks a long
/// line anywhere, even in a name).
pub fn fit(head: String, tail: &str, width: Option<usize>) -> Vec<String> {
    let one = format!("{head} {tail}");
    let Some(width) = width.filter(|&w| one.chars().count() > w) else {
        return vec![one];
    };
    let indent = "          ";
    let mut out = vec![head];
    let mut line = String::new();
    for word in tail.split(' ') {
        if !line.is_empty()
            && indent.len() + line.chars().count() + 1 + word.chars().count() > width
        {
            out.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(format!("{indent}{line}"));
    }
    out
}

/// The final snapshot a destroy kept, from its DB change.
fn final_snapshot(changes: &[Change]) -> Option<String> {
    changes.iter().find_map(|(_, kind, _, action, detail)| {
        (kind == "db-instance" && action == "delete")
            .then(|| detail.strip_prefix("final snapshot "))
            .flatten()
            .map(|s| s.split_whitespace().next().unwrap_or(s).to_string())
    })
}

/// `down` asks first, unless `--yes`: a person must see what a destroy does.
pub fn confirm_down(stack: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "down destroys stack {stack}: pass --yes to confirm (standard input is not a terminal)"
        );
    }
    println!(
        "This destroys stack {stack}: every resource is deleted; the database is kept as a final snapshot unless its spec says database.finalSnapshot: false."
    );
    print!("Type the stack name to confirm: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--set X=null` takes the field away: the merge patch's `null` reaches
    /// Prepare (merged into the input, it vanished, and a plan said
    /// "0 change(s)").
    #[test]
    fn set_null_reaches_the_input_and_values_nest() {
        let mut input = json!({"stack": "s", "app": {"cpu": 512}});
        set_path(&mut input, "loadBalancer.domain", Value::Null).unwrap();
        set_path(&mut input, "app.desiredCount", json!(2)).unwrap();
        assert_eq!(
            input,
            json!({"stack": "s", "app": {"cpu": 512, "desiredCount": 2}, "loadBalancer": {"domain": null}})
        );
        assert!(set_path(&mut input, "stack.name", json!(1)).is_none());
    }

    #[test]
    fn names_instead_of_arns() {
        assert_eq!(
            short_id("arn:aws:ecs:us-east-1:1:service/cli-cluster/metabase"),
            "metabase"
        );
        assert_eq!(
            short_id("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/cli-alb/50dc6c495c0c9188"),
            "cli-alb"
        );
        // Two listeners of one load balancer: its name and their own IDs.
        assert_eq!(
            short_id("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/cli-alb/50dc6c495c0c9188/f2f7dc8efc522ab2"),
            "cli-alb/f2f7dc8efc522ab2"
        );
        assert_eq!(
            short_id(
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/cli-tg/73e2d6bc24d8a067"
            ),
            "cli-tg"
        );
        assert_eq!(short_id("arn:aws:rds:us-east-1:1:db:cli-db"), "cli-db");
        assert_eq!(short_id("vpc-0123"), "vpc-0123");
        assert_eq!(
            shorten_arns("1 task(s) of arn:aws:ecs:us-east-1:1:task-definition/s-metabase:3, on arn:aws:secretsmanager:us-east-1:1:secret:rds!db-1-ab."),
            "1 task(s) of s-metabase:3, on rds!db-1-ab."
        );
    }

    #[test]
    fn long_lines_break_between_words_under_their_head() {
        let head = "    create  network       subnet          subnet-0123:".to_string();
        assert_eq!(fit(head.clone(), "10.0.0.0/20 in a", Some(80)).len(), 1);
        let lines = fit(
            head.clone(),
            "10.0.128.0/20 in us-east-1a and more words here",
            Some(60),
        );
        assert_eq!(lines[0], head);
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        assert_eq!(
            lines[1..]
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" "),
            "10.0.128.0/20 in us-east-1a and more words here"
        );
        // Not on a terminal: one line, whatever its length.
        assert_eq!(fit(head, &"x ".repeat(80), None).len(), 1);
    }

    #[test]
    fn sets_merge_into_the_input() {
        let i = Input {
            file: None,
            named: Named {
                stack: Some("s".into()),
                stack_arg: None,
                target: Target {
                    region: None,
                    profile: None,
                    endpoint_url: None,
                    state_machine: "mbstack-provision".into(),
                },
            },
            set: vec![
                "app.desiredCount=2".into(),
                "app.image=metabase/metabase:v0.58.7".into(),
                "tags.team=bi".into(),
            ],
            detach: false,
        };
        let v = build_input(&i, "apply").unwrap();
        assert_eq!(
            v,
            json!({"stack": "s", "app": {"desiredCount": 2, "image": "metabase/metabase:v0.58.7"}, "tags": {"team": "bi"}, "action": "apply"})
        );
        let mut positional = i.clone();
        positional.named.stack = None;
        positional.named.stack_arg = Some("s".into());
        assert_eq!(build_input(&positional, "apply").unwrap(), v);
        let mut bad = i;
        bad.named.stack = None;
        assert!(build_input(&bad, "apply").is_err());
    }
}
