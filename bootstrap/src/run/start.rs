//! Starting a run: `up` (and its restore question), `plan`, `down` (and its
//! confirmation), `pause`, `resume`; the spec checked with Prepare's own code
//! before any execution starts.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context};
use mbstack_core::spec::merge_patch;
use serde_json::{json, Value};

use super::args::{build_input, execution_name, Input, Output};
use super::aws::{config, state_machine_arn};
use super::find::stack_exists;
use super::follow::follow;

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
