//! `mbstack local`: the embedded emulator, with mbstack deployed into it.

use std::time::Instant;

use anyhow::{bail, Context};
use mbstack_core::{Action, Aws, StackSpec, Tier};
use mbstack_emulator::Emulator;
use mbstack_local::{Deployed, Execution};
use serde_json::{json, Map, Value};

/// Deploys into the emulator with the same code as `mbstack deploy` (roles,
/// functions, state machine). The functions' code is a placeholder: the emulator's
/// front door runs the tier handlers in-process when Step Functions invokes them.
async fn deploy_into(d: &Deployed) -> anyhow::Result<crate::deploy::Report> {
    let dir = std::env::temp_dir().join(format!("mbstack-local-zips-{}", std::process::id()));
    crate::deploy::placeholder_zips(&dir, "")?;
    let aws = Aws::new(d.config.clone());
    let opts = crate::deploy::Options {
        first_wait: std::time::Duration::from_millis(100),
        ..crate::deploy::Options::new("mbstack", dir.clone())
    };
    let report = crate::deploy::deploy(&aws, &opts)
        .await
        .context("deploying into the emulator")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// Prints each state a person cares about, with the time since the run started.
fn follower() -> impl FnMut(&str) {
    let start = Instant::now();
    move |name: &str| {
        let noise = name.starts_with("Count ")
            || name.starts_with("Waited too long")
            || name.starts_with("Is the ");
        if !noise {
            println!("  {:>6.1} s  {name}", start.elapsed().as_secs_f64());
        }
    }
}

fn ended(what: &str, run: &Execution) -> anyhow::Result<()> {
    if run.status != "SUCCEEDED" {
        bail!(
            "{what} ended {}: {}: {}",
            run.status,
            run.error.as_deref().unwrap_or("?"),
            run.cause.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn demo(spec: StackSpec) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "Starting the emulator (moto {}) and deploying mbstack into it…",
        mbstack_emulator::MOTO_VERSION
    );
    let d = Deployed::start()
        .await
        .map_err(anyhow::Error::msg)
        .context("deploying into the emulator")?;
    let report = deploy_into(&d).await?;
    println!(
        "  emulator at {}; {} resources deployed with mbstack deploy's code; state machine {}",
        d.emulator.endpoint(),
        report.changes.len(),
        report.state_machine_arn
    );
    let stack = spec.stack.clone();
    let input = serde_json::to_value(&spec).context("the spec")?;

    println!("\nApplying stack {stack:?} (a Step Functions execution)…");
    let run = d
        .run_following("demo-apply", input.clone(), follower())
        .await
        .map_err(anyhow::Error::msg)?;
    ended("apply", &run)?;
    let out = run.output.unwrap_or(Value::Null);
    let changes = out["changes"].as_array().cloned().unwrap_or_default();
    println!(
        "\nCreated ({} resources, {} AWS calls):",
        changes.len(),
        d.log.calls().len()
    );
    for c in &changes {
        println!(
            "  {:<13} {:<17} {:<46} {}",
            mbstack_core::naming::tier_label(c["tier"].as_str().unwrap_or("")),
            c["kind"].as_str().unwrap_or(""),
            crate::run::short_id(c["id"].as_str().unwrap_or("")),
            c["detail"].as_str().unwrap_or("")
        );
    }
    println!("\nMetabase: {}", out["url"].as_str().unwrap_or("(no URL)"));
    println!(
        "Outputs:\n{}",
        serde_json::to_string_pretty(&out["outputs"]).unwrap_or_default()
    );

    println!("\nPlanning every tier again (expect no change)…");
    d.log.clear();
    let aws = Aws::new(d.config.clone()).with_interceptor(d.log.clone());
    let outputs: Map<String, Value> = out["outputs"].as_object().cloned().unwrap_or_default();
    let plans = mbstack_local::plan_stack(&aws, &spec, "local-plan", &outputs)
        .await
        .context("planning")?;
    let planned: Vec<_> = plans
        .iter()
        .flat_map(|p| &p.changes)
        .filter(|c| c.action != Action::None)
        .collect();
    if !planned.is_empty() {
        bail!("the plan after apply is not empty: {planned:?}");
    }
    if !d.log.mutating().is_empty() {
        bail!("planning made mutating calls: {:?}", d.log.mutating());
    }
    println!("  no change ({} read-only calls)", d.log.calls().len());

    println!("\nDestroying stack {stack:?}…");
    let destroy = d
        .run_following(
            "demo-destroy",
            json!({"stack": stack, "action": "destroy"}),
            follower(),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    ended("destroy", &destroy)?;
    let after = mbstack_local::plan_stack(&aws, &spec, "local-plan", &Map::new())
        .await
        .context("checking what is left")?;
    // The encryption key is in its recovery window (the plan would restore it): gone.
    let in_recovery =
        |c: &mbstack_core::Change| c.kind == "secret" && c.detail.starts_with("restore");
    let left: Vec<_> = after
        .iter()
        .flat_map(|p| &p.changes)
        .filter(|c| c.action != Action::Create && !in_recovery(c))
        .collect();
    if after.iter().flat_map(|p| &p.changes).any(in_recovery) {
        println!("  encryption key: scheduled for deletion, recoverable for 7 days");
    }
    if !left.is_empty() {
        bail!("resources left after destroy: {left:?}");
    }
    let snapshot = destroy
        .output
        .as_ref()
        .and_then(|o| o["changes"].as_array().cloned())
        .unwrap_or_default();
    if let Some(db) = snapshot.iter().find(|c| c["kind"] == "db-instance") {
        println!("  database: {}", db["detail"].as_str().unwrap_or(""));
    }
    let tiers = Tier::PROVISIONED.map(|t| t.label()).join(", ");
    println!(
        "\nNothing left in {tiers}. Demo passed in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn up(port: u16) -> anyhow::Result<()> {
    let emulator = Emulator::start_on(Some(port))
        .with_context(|| format!("starting the emulator on port {port}"))?;
    let endpoint = emulator.endpoint();
    let d = Deployed::start_in(emulator)
        .await
        .map_err(anyhow::Error::msg)
        .context("deploying into the emulator")?;
    deploy_into(&d).await?;
    println!(
        "Emulator (moto {}) at {endpoint}, mbstack deployed:",
        mbstack_emulator::MOTO_VERSION
    );
    println!("  state machine {}", d.arn);
    println!("  AWS_ENDPOINT_URL={endpoint} AWS_REGION={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing", mbstack_emulator::REGION);
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
