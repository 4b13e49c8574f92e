//! `mbstack status`: every stack's last run and the run in progress, or one
//! stack with its resources read live (every tier's plan).

use anyhow::Context;
use mbstack_core::{Action, Change, Tier};
use serde_json::{json, Value};

use super::args::{Output, Target};
use super::aws::config;
use super::find::{
    execution_of, require_stack, running_execution, stack_exists, unlocked_execution,
};
use super::text::{fit, short_id, shorten_arns, terminal_width, when};

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
    let plans = mbstack_local::plan_stack(&aws, &spec, "status", &serde_json::Map::new()).await?;
    let resources: Vec<(Tier, Change)> = plans
        .into_iter()
        .flat_map(|o| o.changes.into_iter().map(move |c| (o.tier, c)))
        .collect();
    let kept = mbstack_data::pre_upgrade_snapshots(&aws_sdk_rds::Client::new(cfg), stack).await?;
    if !text_out {
        let rows = resources
            .iter()
            .map(|(tier, c)| json!({"tier": tier.label(), "state": state(c.action), "kind": c.kind, "id": c.id, "detail": c.detail}))
            .collect();
        let mut v = with_resources(stack, row, rows);
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
    for (tier, c) in &resources {
        let head = format!(
            "  {:<13} {:<8} {:<17} {:<28}",
            tier.label(),
            state(c.action),
            c.kind,
            short_id(&c.id),
        );
        for l in fit(head, &shorten_arns(&c.detail), width) {
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

/// A resource's state as `status` shows it: what exists as the spec says is
/// `ok`, what the next apply would create is `missing`, the rest `drifted`.
fn state(planned: Action) -> &'static str {
    match planned {
        Action::None => "ok",
        Action::Create => "missing",
        _ => "drifted",
    }
}
