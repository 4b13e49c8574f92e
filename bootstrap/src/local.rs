//! `mbstack local`: the embedded emulator.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mbstack_core::{Action, Aws, CallLog, Event, Outcome, Scope, StackSpec, State, Verb};
use mbstack_emulator::Emulator;

/// In the emulator nothing takes real time: cap the tiers' suggested waits.
const EMULATOR_WAIT_CAP: Duration = Duration::from_secs(1);
const MAX_POLLS: usize = 120;

async fn tier(
    aws: &Aws,
    verb: Verb,
    spec: &StackSpec,
    run: &str,
    scope: Scope,
) -> anyhow::Result<Outcome> {
    let event = Event::new(verb, spec.clone(), run, scope);
    mbstack_network::handle(event, aws)
        .await
        .with_context(|| format!("network {verb:?}").to_lowercase())
}

/// Runs `first` then `then` until the outcome is not pending, as the state machine does.
async fn until_settled(
    aws: &Aws,
    first: Verb,
    then: Verb,
    spec: &StackSpec,
    run: &str,
    scope: Scope,
) -> anyhow::Result<Vec<Outcome>> {
    let mut all = vec![tier(aws, first, spec, run, scope).await?];
    for _ in 0..MAX_POLLS {
        let last = &all[all.len() - 1];
        if last.state != State::Pending {
            return Ok(all);
        }
        println!("  … {}", last.message);
        tokio::time::sleep(
            Duration::from_secs(u64::from(last.retry_after_seconds)).min(EMULATOR_WAIT_CAP),
        )
        .await;
        all.push(tier(aws, then, spec, run, scope).await?);
    }
    bail!("still pending after {MAX_POLLS} polls")
}

fn print_changes(outcomes: &[Outcome], only: Option<Action>) -> usize {
    let mut n = 0;
    for c in outcomes.iter().flat_map(|o| &o.changes) {
        if only.is_some_and(|a| a != c.action) {
            continue;
        }
        n += 1;
        println!(
            "  {:<8} {:<16} {:<28} {}",
            format!("{:?}", c.action).to_lowercase(),
            c.kind,
            c.id,
            c.detail
        );
    }
    n
}

pub async fn demo(spec: StackSpec) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "Starting the emulator (moto {})…",
        mbstack_emulator::MOTO_VERSION
    );
    let emulator = Emulator::start().context("starting the emulator")?;
    println!("  listening on {}", emulator.endpoint());
    let log = CallLog::new();
    let aws = Aws::new(emulator.sdk_config().await).with_interceptor(log.clone());
    let stack = spec.stack.clone();

    println!("\nApplying stack {stack:?} (network tier)…");
    let applied = until_settled(
        &aws,
        Verb::Apply,
        Verb::Check,
        &spec,
        "demo-apply",
        Scope::Stack,
    )
    .await?;
    let created = print_changes(&applied, Some(Action::Create));
    let last = &applied[applied.len() - 1];
    println!(
        "\n{} ({} resources created, {} AWS calls)",
        last.message,
        created,
        log.calls().len()
    );
    println!("Outputs:");
    for (k, v) in &last.outputs {
        println!("  {k:<20} {v}");
    }
    println!(
        "Not built yet: the data, loadbalancer and app tiers (the stack stops at the network)."
    );

    println!("\nPlanning again (expect no change)…");
    log.clear();
    let plan = tier(&aws, Verb::Plan, &spec, "demo-plan", Scope::Stack).await?;
    if plan.changed() {
        print_changes(std::slice::from_ref(&plan), None);
        bail!("the plan after apply is not empty");
    }
    if !log.mutating().is_empty() {
        bail!("plan made mutating calls: {:?}", log.mutating());
    }
    println!("  no change ({} read-only calls)", log.calls().len());

    println!("\nDestroying stack {stack:?}…");
    let destroyed = until_settled(
        &aws,
        Verb::Destroy,
        Verb::Destroy,
        &spec,
        "demo-destroy",
        Scope::Stack,
    )
    .await?;
    let deleted = print_changes(&destroyed, Some(Action::Delete));
    if deleted != created {
        bail!("destroy deleted {deleted} resources but apply created {created}");
    }
    let after = tier(&aws, Verb::Plan, &spec, "demo-verify", Scope::Stack).await?;
    let left: Vec<_> = after
        .changes
        .iter()
        .filter(|c| c.action != Action::Create)
        .collect();
    if !left.is_empty() {
        bail!("resources left after destroy: {left:?}");
    }
    println!(
        "\nNothing left. Demo passed in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn up(port: u16) -> anyhow::Result<()> {
    let emulator = Emulator::start_on(Some(port))
        .with_context(|| format!("starting the emulator on port {port}"))?;
    println!(
        "Emulator (moto {}) at {}",
        mbstack_emulator::MOTO_VERSION,
        emulator.endpoint()
    );
    println!(
        "  AWS_ENDPOINT_URL={} AWS_REGION={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing",
        emulator.endpoint(),
        mbstack_emulator::REGION
    );
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(emulator);
    Ok(())
}
