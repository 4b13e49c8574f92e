//! Prepare for a recovery: `{"action": "recover", "execution": <ARN>}`, which
//! the deployment's rule on the state machine's status changes starts for
//! every execution that ended `FAILED`, `TIMED_OUT` or `ABORTED`
//! (`mbstack_statemachine::recovery_rule`).
//!
//! A run that ended through its own Finish released its stack's lock (and told
//! of its failure); one refused in Prepare never took it. A run that still
//! holds the lock ended where no Catch saw it: a `States.Runtime` error, a
//! StopExecution, a time-out. The recovery takes the lock over and hands the
//! state machine that run's ID, spec and requested action, so that what it
//! created is rolled back as its own rollback would have (a destroy stopped
//! half-way is reported, not undone), the lock released and one notification
//! published.

use mbstack_core::iam::Permission;
use mbstack_core::{StackSpec, TierError};
use serde_json::{json, Value};

use crate::{merged_spec, requested_stack, store, Clients};

/// How many recoveries of recoveries are followed back to the run they were
/// for before giving up (each one ended where no Catch saw it).
const MAX_CHAIN: usize = 3;

/// An ended execution, as DescribeExecution tells it.
#[derive(Clone)]
struct Ended {
    arn: String,
    name: String,
    status: String,
    input: Value,
    error: Option<String>,
    cause: Option<String>,
}

async fn describe(c: &Clients, arn: &str) -> Result<Ended, TierError> {
    let d = c
        .sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| mbstack_core::aws_error("states:DescribeExecution", e))?;
    Ok(Ended {
        arn: arn.to_string(),
        name: d.name().unwrap_or_default().to_string(),
        status: d.status().as_str().to_string(),
        input: d
            .input()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null),
        error: d.error().map(str::to_string),
        cause: d.cause().map(str::to_string),
    })
}

/// The last state the execution entered (its history read newest first),
/// with the state's input then.
async fn last_state(c: &Clients, arn: &str) -> Result<Option<(String, Value)>, TierError> {
    let h = c
        .sfn
        .get_execution_history()
        .execution_arn(arn)
        .reverse_order(true)
        .max_results(100)
        .send()
        .await
        .map_err(|e| mbstack_core::aws_error("states:GetExecutionHistory", e))?;
    Ok(h.events().iter().find_map(|e| {
        e.state_entered_event_details().map(|d| {
            let input = d
                .input()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or(Value::Null);
            (d.name().to_string(), input)
        })
    }))
}

/// The snapshot an ended run's data stage took before the Metabase image it
/// put on record, as the run's state held it when it ended, once its app
/// stage had put the service on that image (None: its data stage had not
/// finished, put no image on record, or the image never ran). Its rollback
/// returns the database to it, as the run's own would have.
fn upgrade_snapshot(state: &Value) -> Option<String> {
    // Ended in its own rollback, which had decided to return the database.
    if let Some(s) = state.pointer("/upgrade/snapshot").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    state.pointer("/app/status/outputs/image")?;
    if state.pointer("/error/Error").and_then(Value::as_str) == Some("Mbstack.TasksNeverStarted") {
        return None;
    }
    state
        .pointer("/tiers/data/status/outputs/upgradeSnapshot")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn is_recovery(input: &Value) -> Option<&str> {
    match input.get("action").and_then(Value::as_str) {
        Some("recover") => input.get("execution").and_then(Value::as_str),
        _ => None,
    }
}

/// Prepare's answer for a recovery that has nothing to do.
fn nothing(of: &str, why: String) -> Value {
    json!({
        "action": "nothing", "requested": "recover", "spec": null, "runId": "",
        "executionArn": "", "lock": null, "polls": mbstack_core::contract::poll_counters(),
        "storedSpec": false, "error": null,
        "recovery": {"of": of, "done": "nothing", "why": why},
    })
}

/// The error the recovered run is reported with.
fn error_of(ended: &Ended, run: &Ended, requested: &str, me: &str) -> Value {
    let how = match ended.status.as_str() {
        "ABORTED" => "was stopped (ABORTED)".to_string(),
        "TIMED_OUT" => "timed out".to_string(),
        _ => format!(
            "failed with {}: {}",
            ended.error.as_deref().unwrap_or("an unnamed error"),
            ended.cause.as_deref().unwrap_or("no cause given")
        ),
    };
    let error = match ended.status.as_str() {
        "ABORTED" => "Mbstack.RunStopped".to_string(),
        "TIMED_OUT" => "Mbstack.RunTimedOut".to_string(),
        _ => ended
            .error
            .clone()
            .unwrap_or_else(|| "Mbstack.RunEnded".into()),
    };
    let through = if ended.arn == run.arn {
        String::new()
    } else {
        format!(" (its recovery {} ended the same way)", ended.name)
    };
    let what = if requested == "destroy" {
        "the destroy is not undone: what it had not deleted yet is still there; run the destroy again to finish it"
    } else {
        "the recovery rolled back what the run created and put back what it changed"
    };
    json!({
        "Error": error,
        "Cause": format!(
            "run {} {how}{through}, where no Catch runs; recovery {me} took its lock over: {what}",
            run.name
        ),
    })
}

/// Prepare of `{"action": "recover", "execution": ARN}` run as execution `me`.
pub(crate) async fn prepare(
    c: &Clients,
    input: &Value,
    me_name: &str,
    me_arn: &str,
    topic: Option<&str>,
) -> Result<Value, TierError> {
    let Some(ended_arn) = input.get("execution").and_then(Value::as_str) else {
        return Err(mbstack_core::InvalidSpec(vec![mbstack_core::Problem::new(
            "execution",
            "a recovery names the ended execution: {\"action\": \"recover\", \"execution\": \"<its ARN>\"}",
        )])
        .into());
    };
    let ended = describe(c, ended_arn).await?;
    if ended.status == "RUNNING" || ended.status == "PENDING_REDRIVE" {
        return Err(TierError::Refused(format!(
            "execution {} is {}: a recovery undoes only a run that has ended",
            ended.name, ended.status
        )));
    }
    // A recovery that itself ended where no Catch saw it: the run it was for.
    let mut run = ended.clone();
    let mut chain = 0;
    // Every execution on the way back: any of them may hold the lock (a
    // recovery that ended before it took the lock over leaves the run's).
    let mut arns = vec![ended.arn.clone()];
    while let Some(before) = is_recovery(&run.input).map(str::to_string) {
        chain += 1;
        if chain > MAX_CHAIN {
            return Err(TierError::Refused(format!(
                "{MAX_CHAIN} recoveries in a row ended where no Catch runs (the last: {}); the stack's lock is left to {}: look at those executions, then run the stack's input again (apply repairs; a new run takes the lock over)",
                ended.name, ended.arn
            )));
        }
        run = describe(c, &before).await?;
        arns.push(run.arn.clone());
    }
    let Ok((requested, stack)) = requested_stack(&run.input, &run.name) else {
        return Ok(nothing(
            &ended.arn,
            format!("run {} was refused before it took a stack", run.name),
        ));
    };
    if requested == "plan" {
        return Ok(nothing(
            &ended.arn,
            format!("run {} was a plan: it changed nothing", run.name),
        ));
    }
    let lock = store::path(&stack, "lock");
    let holder = store::get(&c.ssm, &lock).await?;
    let Some(holder) = holder.filter(|h| arns.contains(h)) else {
        return Ok(nothing(
            &ended.arn,
            format!(
                "run {} does not hold stack {stack}'s lock: it ended through its own Finish (which released it and told of its end), or never took it",
                ended.name
            ),
        ));
    };
    // Where it ended: after its work, or after its own rollback, there is
    // nothing to undo (a failed record or notification only held the lock).
    let ended_in = last_state(c, &holder).await?;
    if let Some((last, _)) = &ended_in {
        use mbstack_core::contract::{ROLLED_BACK_STATES, WORK_DONE_STATES};
        let done = if WORK_DONE_STATES.contains(&last.as_str()) {
            Some("its work was done")
        } else if ROLLED_BACK_STATES.contains(&last.as_str()) {
            Some("its rollback was done")
        } else {
            None
        };
        if let Some(done) = done {
            // Whoever releases a failed run's lock tells of it first, once
            // (`tell_once`): a run that still holds it may not have been told
            // of.
            let failure = json!({
                "Error": ended.error.as_deref().unwrap_or("Mbstack.RunEnded"),
                "Cause": format!(
                    "run {} ended in \"{last}\" ({}), when {done}, before its Finish had released its lock; the recovery {me_name} released it and undid nothing",
                    ended.name,
                    ended.cause.as_deref().unwrap_or("no cause given")
                ),
            });
            let message = crate::notify::message(&stack, &requested, &ended.arn, &failure, &[]);
            // Told (once: a retried Prepare finds it told), then released.
            crate::tell_once(c, topic, &stack, &holder, message).await?;
            store::delete(&c.ssm, &lock).await?;
            return Ok(nothing(
                &ended.arn,
                format!(
                    "run {} ended in \"{last}\", when {done}: its lock on stack {stack} is released, nothing is undone",
                    ended.name
                ),
            ));
        }
    }
    let upgrade = match &ended_in {
        Some((_, state)) if holder == run.arn => upgrade_snapshot(state),
        _ => last_state(c, &run.arn)
            .await?
            .and_then(|(_, state)| upgrade_snapshot(&state)),
    };
    store::put(&c.ssm, &lock, me_arn, true).await?;
    let stored = store::stored_spec(&c.ssm, &stack).await?;
    // The spec the run applied: its input over the spec stored before it
    // (a run that fails stores nothing).
    let spec = merged_spec(&run.input, stored.as_ref(), &run.name)
        .ok()
        .or_else(|| stored.as_ref().and_then(|s| StackSpec::from_json(s).ok()))
        .unwrap_or_else(|| StackSpec::new(stack.clone()));
    let error = error_of(&ended, &run, &requested, me_name);
    let done = if requested == "destroy" {
        "reported"
    } else {
        "rolled back"
    };
    Ok(json!({
        "action": "recover",
        "requested": requested,
        "spec": spec,
        "runId": run.name,
        "executionArn": me_arn,
        "storedSpec": stored.is_some(),
        "lock": {"taken": true, "tookOverFrom": holder, "holderStatus": ended.status, "specUnchanged": true},
        "polls": mbstack_core::contract::poll_counters(),
        "error": error,
        "recovery": match upgrade {
            Some(snapshot) => json!({"of": ended.arn, "run": run.arn, "done": done, "upgradeSnapshot": snapshot}),
            None => json!({"of": ended.arn, "run": run.arn, "done": done}),
        },
    }))
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`):
/// the deployment's own executions only.
pub(crate) const PERMISSIONS: &[Permission] = &[Permission::on(
    "EndedRuns",
    &["states:DescribeExecution", "states:GetExecutionHistory"],
    &["arn:${Partition}:states:*:*:execution:${Prefix}-provision:*"],
)];
