//! Following a run to its end: the tiers' progress live (a spinner per tier
//! on a terminal, lines elsewhere), then what the run changed or why it
//! failed; `watch` finds the run in progress.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use mbstack_control::store;
use mbstack_core::naming::tier_label;
use mbstack_core::{Action, Change};
use serde_json::{json, Value};

use super::args::{Output, Target};
use super::aws::config;
use super::find::{execution_of, require_stack, running_execution, unlocked_execution};
use super::text::{fit, short_id, shorten_arns, terminal_width, when};

/// Ctrl-C while following a run: the run goes on (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("stopped following; the run goes on: {execution}")]
pub struct StoppedFollowing {
    pub execution: String,
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
        let undone: Vec<&TierChange> = changes
            .iter()
            .filter(|(_, c)| c.action == Action::Delete)
            .collect();
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

/// One change of a run, with the tier that made it (its label in the
/// history: `network`, `loadBalancer`).
type TierChange = (String, Change);

/// Every change the run's tier outcomes report, in order, each once (the
/// execution output's own list when the history has none).
fn run_changes(outcomes: &[Value], output: &Value) -> Vec<TierChange> {
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
    let mut out: Vec<TierChange> = Vec::new();
    for (tier, c) in all {
        let Ok(change) = serde_json::from_value::<Change>(c) else {
            continue;
        };
        if change.action == Action::None {
            continue;
        }
        let seen = out.iter().any(|(t, o)| {
            *t == tier && o.kind == change.kind && o.id == change.id && o.action == change.action
        });
        if !seen {
            out.push((tier, change));
        }
    }
    out
}

/// A change as a person reads it: what, where, and what changes; fitted to
/// `width` when on a terminal.
fn change_lines((tier, c): &TierChange, width: Option<usize>) -> Vec<String> {
    let head = format!(
        "    {:<7} {:<13} {:<15} {}",
        c.action.as_str(),
        tier_label(tier),
        c.kind,
        short_id(&c.id)
    );
    if c.detail.is_empty() {
        return vec![head];
    }
    fit(format!("{head}:"), &shorten_arns(&c.detail), width)
}

/// The final snapshot a destroy kept, from its DB change.
fn final_snapshot(changes: &[TierChange]) -> Option<String> {
    changes.iter().find_map(|(_, c)| {
        (c.kind == "db-instance" && c.action == Action::Delete)
            .then(|| c.detail.strip_prefix("final snapshot "))
            .flatten()
            .map(|s| s.split_whitespace().next().unwrap_or(s).to_string())
    })
}
