//! mbstack-control: the first and last step of every run.
//!
//! - `prepare` takes the state machine's raw input (a stack spec, or a part of
//!   one, plus an optional `action`), applies it as a JSON merge patch over the
//!   stack's stored spec (or the defaults), validates all of it before anything
//!   exists — every problem listed with its field path — and takes the per-stack
//!   lock (not for `plan`), so a scheduled run and a manual run never overlap.
//! - `finish` releases the lock on every ending, stores the spec when the run
//!   succeeded, records the last run, and shapes the execution's output: the URL
//!   first, each tier's outputs (IDs and ARNs, never a secret) and every change.
//!
//! Its contract is `{"command": "prepare" | "finish", ...}`, not a tier's.

pub mod notify;
mod password_check;
mod recover;
pub mod store;
pub use store::stored_spec;

use mbstack_core::control::{Command, Ended, Finish, Notify};
use mbstack_core::iam::Permission;
use mbstack_core::outputs::{self, LoadBalancerOutputs};
use mbstack_core::spec::merge_patch;
use mbstack_core::{client, Aws, InvalidSpec, Problem, StackSpec, Tier, TierError};
use serde_json::{json, Map, Value};

/// The actions a run can take. `password-check` is what the stack's rotation
/// rules start: an apply only when the tasks hold a rotated password, waiting
/// for a stack another run holds.
pub const ACTIONS: &[&str] = &[
    "apply",
    "plan",
    "destroy",
    "pause",
    "resume",
    "password-check",
];

struct Clients {
    ssm: aws_sdk_ssm::Client,
    sfn: aws_sdk_sfn::Client,
    sns: aws_sdk_sns::Client,
    rds: aws_sdk_rds::Client,
    sm: aws_sdk_secretsmanager::Client,
    r53: aws_sdk_route53::Client,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

pub async fn handle(payload: Value, aws: &Aws) -> Result<Value, TierError> {
    let c = Clients {
        ssm: client!(aws_sdk_ssm, aws),
        sfn: client!(aws_sdk_sfn, aws),
        sns: client!(aws_sdk_sns, aws),
        rds: client!(aws_sdk_rds, aws),
        sm: client!(aws_sdk_secretsmanager, aws),
        r53: client!(aws_sdk_route53, aws),
        ecs: client!(aws_sdk_ecs, aws),
        elb: client!(aws_sdk_elasticloadbalancingv2, aws),
    };
    let (command, unread) = mbstack_core::control::read(&payload).map_err(|e| {
        TierError::Terminal(format!(
            "the control function cannot read its payload ({e}): expected a command \"prepare\", \"finish\" or \"notify\" with its keys (is the state machine current? `mbstack deploy` updates it)"
        ))
    })?;
    if !unread.is_empty() {
        tracing::warn!(command = command.name(), ?unread, "payload keys this version does not read (a state machine deployed by another version?)");
    }
    // Boxed: the composed futures are deep enough to trip the compiler's layout limit.
    match command {
        Command::Prepare(p) => {
            let arn = match p.execution_arn.as_str() {
                "" => p.execution.as_str(),
                arn => arn,
            };
            if p.input.get("action").and_then(Value::as_str) == Some("recover") {
                let topic = Some(p.notify_topic_arn.as_str()).filter(|t| !t.is_empty());
                Box::pin(recover::prepare(&c, &p.input, &p.execution, arn, topic)).await
            } else {
                let zones = p.hosted_zones.as_deref();
                Box::pin(prepare(&c, &p.input, &p.execution, arn, zones)).await
            }
        }
        Command::Finish(f) => Box::pin(finish(&c, &f, &payload)).await,
        Command::Notify(n) => Box::pin(report_refusal(&c, &n)).await,
    }
}

/// The input's problems that do not need AWS: action, stack name, execution name.
fn check_input(
    input: &Value,
    execution: &str,
) -> Result<(String, String, Map<String, Value>), InvalidSpec> {
    let Some(object) = input.as_object() else {
        return Err(InvalidSpec(vec![Problem::new(
            "",
            "the input must be a JSON object such as {\"stack\": \"analytics\"}",
        )]));
    };
    let mut problems = Vec::new();
    let action = match object.get("action") {
        None => "apply".to_string(),
        Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => a.clone(),
        Some(other) => {
            problems.push(Problem::new(
                "action",
                format!(
                    "{other} is not an action: use one of {}",
                    ACTIONS.join(", ")
                ),
            ));
            String::new()
        }
    };
    let stack = object
        .get("stack")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let run_ok = !execution.is_empty()
        && execution.len() <= 80
        && execution
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !run_ok {
        problems.push(Problem::new(
            "",
            format!("the execution name {execution:?} cannot tag resources: name executions with 1 to 80 of a-z, A-Z, 0-9, - and _"),
        ));
    }
    let mut patch = object.clone();
    patch.remove("action");
    if problems.is_empty() {
        Ok((action, stack, patch))
    } else {
        // Add the spec's own problems, so that every problem is listed at once.
        if let Err(e) = StackSpec::from_json(&Value::Object(patch)) {
            problems.extend(e.0);
        }
        Err(InvalidSpec(problems))
    }
}

/// The requested action and the stack, checked (the stack name before it names
/// a parameter).
pub fn requested_stack(input: &Value, execution: &str) -> Result<(String, String), InvalidSpec> {
    let (requested, stack, patch) = check_input(input, execution)?;
    let probe = StackSpec::new(stack.clone());
    if let Err(e) = probe.validate() {
        let mut problems: Vec<Problem> = e.0.into_iter().filter(|p| p.path == "stack").collect();
        if !problems.is_empty() {
            if let Err(all) = StackSpec::from_json(&Value::Object(patch)) {
                problems = all.0;
            }
            return Err(InvalidSpec(problems));
        }
    }
    Ok((requested, stack))
}

/// The spec a run applies: the input (a merge patch plus `action`) over the
/// stored spec (or the defaults), validated; every problem at once. Prepare and
/// the CLI (before it starts an execution) use this same code.
pub fn merged_spec(
    input: &Value,
    stored: Option<&Value>,
    execution: &str,
) -> Result<StackSpec, InvalidSpec> {
    let (requested, stack) = requested_stack(input, execution)?;
    let (_, _, patch) = check_input(input, execution)?;
    let mut merged = match stored {
        Some(s) => s.clone(),
        None => json!({"stack": stack}),
    };
    merge_patch(&mut merged, &Value::Object(patch));
    // A stack stored with `network.nat: "none"` (before mbstack refused it)
    // can still be destroyed: a destroy finds what to delete by its tags.
    if requested == "destroy" && merged.pointer("/network/nat") == Some(&json!("none")) {
        merged["network"]["nat"] = json!("single");
        merged["network"]["pauseNat"] = json!(false);
    }
    match requested.as_str() {
        "pause" => merged["paused"] = json!(true),
        "resume" => merged["paused"] = json!(false),
        _ => {}
    }
    let spec = StackSpec::from_json(&merged)?;
    // The domain's certificate and records are found by the domain: a new one
    // in place of the old would leave the old ones behind.
    let was = stored
        .and_then(|s| s.pointer("/loadBalancer/domain"))
        .and_then(Value::as_str);
    if let (Some(was), Some(now)) = (was, spec.load_balancer.domain.as_deref()) {
        if was != now {
            return Err(InvalidSpec(vec![Problem::new(
                "loadBalancer.domain",
                format!("the stack serves {was}; mbstack does not move a domain in place: apply with loadBalancer.domain null first (its record and certificate are removed), then set {now}"),
            )]));
        }
    }
    Ok(spec)
}

/// Merges, validates, locks; returns `{action, requested, spec, runId, polls, …}`.
async fn prepare(
    c: &Clients,
    input: &Value,
    execution: &str,
    execution_arn: &str,
    hosted_zones: Option<&[String]>,
) -> Result<Value, TierError> {
    let (requested, stack) = requested_stack(input, execution)?;
    let stored = store::stored_spec(&c.ssm, &stack).await?;
    if requested == "password-check" {
        let verdict =
            password_check::verdict(&c.rds, &c.ecs, &c.sm, &stack, stored.as_ref()).await?;
        match verdict {
            password_check::Verdict::Nothing(why) => return Ok(nothing(&stack, why)),
            password_check::Verdict::Replace(when) => tracing::info!(
                stack,
                rotated = when,
                "the tasks hold a password rotated since they started: applying the stack"
            ),
        }
    }
    // A destroyed stack restored from its snapshot comes back as it was.
    let base = match &stored {
        Some(s) => Some(s.clone()),
        None => store::base_spec(&c.ssm, &stack, input).await?,
    };
    let spec = merged_spec(input, base.as_ref(), execution)?;
    // A snapshot to restore from is checked before anything exists (when it
    // is new to the stack: a stack restored already keeps its database).
    let was = stored
        .as_ref()
        .and_then(|s| s.pointer("/database/restoreFrom"))
        .and_then(Value::as_str);
    if requested != "destroy"
        && spec.database.restore_from.is_some()
        && was != spec.database.restore_from.as_deref()
    {
        let field = "database.restoreFrom";
        let found = match mbstack_data::restore_snapshot(&c.rds, &spec).await {
            Ok(s) => s,
            Err(TierError::Refused(why)) => {
                let why = why.trim_start_matches(&format!("{field}: ")).to_string();
                return Err(InvalidSpec(vec![Problem::new(field, why)]).into());
            }
            Err(e) => return Err(e),
        };
        // Metabase cannot run on a database a newer version migrated.
        let ran = found
            .as_ref()
            .and_then(|s| s.metabase_version.as_deref())
            .and_then(mbstack_core::metabase::Version::parse);
        if let (Some(ran), Some(want)) = (ran, mbstack_core::metabase::version_of(&spec.app.image))
        {
            if want < ran {
                return Err(InvalidSpec(vec![Problem::new(
                    "app.image",
                    format!(
                        "Metabase {ran} has run on the database in snapshot {} and migrated it; Metabase {want} cannot run on it (it does not downgrade): set app.image to {ran} or later",
                        found.as_ref().map(|s| s.id.as_str()).unwrap_or("")
                    ),
                )])
                .into());
            }
        }
        let source = found.as_ref().and_then(|s| s.stack.clone());
        let snapshot = found.map(|s| s.id).unwrap_or_default();
        // Metabase's saved secrets in the snapshot are encrypted with the key
        // of the stack whose database it was; another stack has another key.
        if let Some(source) = source.filter(|s| *s != stack && !spec.app.new_encryption_key) {
            return Err(InvalidSpec(vec![Problem::new(
                field,
                format!("snapshot {snapshot} is stack {source}'s database: the data sources' passwords and settings in it are encrypted with stack {source}'s Metabase key, which stack {stack} does not have, so Metabase would start but could not read them. Restore it into stack {source} (mbstack up {source} --restore {snapshot}), or, to restore it here with a new key (then enter each data source's password again in Metabase's admin), add \"app\": {{\"newEncryptionKey\": true}}"),
            )])
            .into());
        }
        if !spec.app.new_encryption_key && !key_kept(&c.sm, &stack).await? {
            return Err(InvalidSpec(vec![Problem::new(
                field,
                format!("Metabase's encryption key of stack {stack} is gone (the recovery window a destroy leaves it has passed), so the data sources' passwords and settings in snapshot {snapshot} were encrypted with a key that no longer exists: Metabase would start but could not read them. To restore anyway with a new key (then enter each data source's password again in Metabase's admin), add \"app\": {{\"newEncryptionKey\": true}}"),
            )])
            .into());
        }
    }
    // Another Metabase image than the stack runs: never one older than the
    // newest that has run on its database.
    let stored_image = stored
        .as_ref()
        .and_then(|s| s.pointer("/app/image"))
        .and_then(Value::as_str);
    if requested != "destroy" && stored_image.is_some_and(|i| i != spec.app.image) {
        if let Some(why) = mbstack_data::downgrade_problem(&c.rds, &stack, &spec.app.image).await? {
            return Err(InvalidSpec(vec![Problem::new("app.image", why)]).into());
        }
        if let Some(why) =
            mbstack_data::snapshot_room_problem(&c.rds, &stack, &spec.app.image).await?
        {
            return Err(InvalidSpec(vec![Problem::new("app.image", why)]).into());
        }
    }
    // A domain new to the stack: its zone, and no record of anyone else's at
    // the name (all found before 17 resources and minutes exist).
    let had = stored
        .as_ref()
        .and_then(|s| s.pointer("/loadBalancer/domain"))
        .and_then(Value::as_str);
    if let Some(domain) = spec
        .load_balancer
        .domain
        .as_deref()
        .filter(|d| requested != "destroy" && had != Some(*d))
    {
        let problems = mbstack_loadbalancer::new_domain_problems(
            &c.r53,
            &stack,
            domain,
            spec.load_balancer.hosted_zone_id.as_deref(),
            hosted_zones,
        )
        .await?;
        if !problems.is_empty() {
            return Err(InvalidSpec(problems).into());
        }
    }
    // The domain the stack has: a run that may change or delete its records
    // (a destroy, `domain: null`, any apply) needs its zone among the
    // deployment's, or it would fail half-way on Route 53's denial.
    if let Some(domain) = had.filter(|_| requested != "plan") {
        let zone_id = spec.load_balancer.hosted_zone_id.as_deref().or_else(|| {
            stored
                .as_ref()
                .and_then(|s| s.pointer("/loadBalancer/hostedZoneId"))
                .and_then(Value::as_str)
        });
        let problems = mbstack_loadbalancer::domain_zone_problems(
            &c.r53,
            &c.elb,
            &stack,
            domain,
            zone_id,
            hosted_zones,
        )
        .await?;
        if !problems.is_empty() {
            return Err(InvalidSpec(problems).into());
        }
    }
    let mut lock = json!(null);
    if requested != "plan" {
        // A password check waits for the stack (its run is started by an event
        // or a schedule: nobody would start it again).
        lock = take_lock(c, &stack, execution_arn, requested == "password-check").await?;
        // Finish stores the spec only when this run changes it (a nightly
        // repair does not: one write fewer).
        lock["specUnchanged"] =
            json!(stored.is_some() && stored == serde_json::to_value(&spec).ok());
    }
    let action = match requested.as_str() {
        "pause" | "resume" | "password-check" => "apply",
        other => other,
    };
    Ok(json!({
        "action": action,
        "requested": requested,
        "spec": spec,
        "runId": execution,
        "executionArn": execution_arn,
        "storedSpec": stored.is_some(),
        "lock": lock,
        "polls": mbstack_core::contract::poll_counters(),
        // Set for a recovery only (`recover.rs`).
        "error": null,
        "recovery": null,
    }))
}

/// Prepare's answer for a run with nothing to do (a password check that
/// found the tasks current): it ends at once, having taken no lock.
fn nothing(stack: &str, why: String) -> Value {
    json!({
        "action": "nothing", "requested": "password-check", "spec": null, "runId": "",
        "executionArn": "", "lock": null, "polls": mbstack_core::contract::poll_counters(),
        "storedSpec": false, "error": null,
        "recovery": {"stack": stack, "done": "nothing", "why": why},
    })
}

/// Whether the stack's encryption-key secret exists (scheduled for deletion
/// counts: the app tier restores it).
async fn key_kept(sm: &aws_sdk_secretsmanager::Client, stack: &str) -> Result<bool, TierError> {
    let name = mbstack_core::naming::encryption_key_secret(stack);
    let call = sm.describe_secret().secret_id(name).send().await;
    Ok(mbstack_core::found(
        "secretsmanager:DescribeSecret",
        call,
        &["ResourceNotFoundException"],
    )?
    .is_some())
}

/// Takes `/mbstack/<stack>/lock` for this execution. A lock held by an execution
/// that is no longer running is taken over (and the takeover reported); one held
/// by a running execution fails this run at once, naming the holder.
///
/// `patient` (a password check, which nobody would start again): a running
/// holder is `Busy`, which the state machine retries; so is a holder that
/// ended where no Catch ran (failed, stopped, timed out) less than
/// [`password_check::RECOVERY_GRACE_SECONDS`] ago, whose lock belongs to the
/// recovery the deployment's rule starts for it (taking it over would leave
/// that run's resources unrolled-back and unreported).
async fn take_lock(c: &Clients, stack: &str, me: &str, patient: bool) -> Result<Value, TierError> {
    let name = store::path(stack, "lock");
    if store::put(&c.ssm, &name, me, false).await? {
        return Ok(json!({"taken": true}));
    }
    let holder = store::get(&c.ssm, &name).await?.unwrap_or_default();
    if holder == me {
        return Ok(json!({"taken": true}));
    }
    let mut stopped_secs_ago = None;
    let status = match c
        .sfn
        .describe_execution()
        .execution_arn(&holder)
        .send()
        .await
    {
        Ok(d) => {
            stopped_secs_ago = d
                .stop_date()
                .map(|t| mbstack_core::work::unix_now() as i64 - t.secs());
            d.status().as_str().to_string()
        }
        Err(e)
            if matches!(
                mbstack_core::error_code(&e),
                Some("ExecutionDoesNotExist" | "InvalidArn")
            ) =>
        {
            "GONE".to_string()
        }
        Err(e) => return Err(mbstack_core::aws_error("states:DescribeExecution", e)),
    };
    // An execution whose redrive AWS accepted runs again: it holds its lock.
    let status = if status == "PENDING_REDRIVE" {
        "RUNNING".to_string()
    } else {
        status
    };
    if patient && status == "RUNNING" {
        return Err(TierError::Busy(format!(
            "stack {stack} is locked by execution {holder}, which is still running: this password check waits for it"
        )));
    }
    let recovering = matches!(status.as_str(), "FAILED" | "ABORTED" | "TIMED_OUT")
        && stopped_secs_ago.is_some_and(|s| s < password_check::RECOVERY_GRACE_SECONDS);
    if patient && recovering {
        return Err(TierError::Busy(format!(
            "stack {stack} is locked by execution {holder}, which ended {status}: its recovery releases the lock; this password check waits for it"
        )));
    }
    if status == "RUNNING" {
        return Err(TierError::Locked(format!(
            "stack {stack} is locked by execution {holder}, which is still running: nothing was touched; wait for it to end (or stop it) and start this run again"
        )));
    }
    store::put(&c.ssm, &name, me, true).await?;
    Ok(json!({"taken": true, "tookOverFrom": holder, "holderStatus": status}))
}

/// Releases the lock (if it is ours), stores the spec after a success, records
/// the last run, and shapes the output.
async fn finish(c: &Clients, f: &Finish, payload: &Value) -> Result<Value, TierError> {
    let out = shape_output(payload);
    let status = f.status.as_str();
    let requested = f.requested.as_str();
    let stack = f.spec.get("stack").and_then(Value::as_str).unwrap_or("");
    let me = f.execution_arn.as_str();
    // Whoever releases a failed run's lock tells of it, once: this Finish
    // once it has released it; the run's recovery when it could not (the
    // recovery rule matches `Mbstack.FinishFailed`, and a recovery that finds
    // the run holding the lock releases it and tells). A run that never took
    // the lock is told of here.
    let topic = f.notify_topic_arn.as_deref();
    let failed = (f.status == Ended::Failed).then(|| {
        let failure = f.failure.clone().unwrap_or(Value::Null);
        let changes: Vec<Value> = out["changes"].as_array().cloned().unwrap_or_default();
        notify::message(stack, requested, me, &failure, &changes)
    });
    if requested == "plan" || stack.is_empty() {
        if let Some(message) = failed {
            tell(c, topic, message).await;
        }
        return Ok(out);
    }
    // Every record is attempted, and the lock is released last whatever happened
    // to the records: a run that could not write them must not also block the
    // next run. The first failure is still reported (the execution fails).
    let mut first: Option<TierError> = None;
    let mut keep = |r: Result<(), TierError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if f.status == Ended::Succeeded {
        if requested == "destroy" {
            // Kept: a restore of the final snapshot brings the stack back as
            // it was (`store::base_spec`).
            if let Some(spec) = payload.get("spec") {
                keep(
                    store::put(
                        &c.ssm,
                        &store::path(stack, store::KEPT_SPEC),
                        &spec.to_string(),
                        true,
                    )
                    .await
                    .map(|_| ()),
                );
            }
            keep(store::delete(&c.ssm, &store::path(stack, "spec")).await);
        } else if let Some(spec) = payload
            .get("spec")
            .filter(|_| payload["lock"]["specUnchanged"] != json!(true))
        {
            keep(
                store::put(&c.ssm, &store::path(stack, "spec"), &spec.to_string(), true)
                    .await
                    .map(|_| ()),
            );
        }
    }
    // A failed apply rolls back what it created; the stack it found still serves
    // at the URL of the last run that had one (a destroy keeps none).
    let mut url = out["url"].clone();
    if url.is_null() && requested != "destroy" {
        if let Ok(Some(previous)) = store::get(&c.ssm, &store::path(stack, "last-run")).await {
            url = serde_json::from_str::<Value>(&previous)
                .ok()
                .map(|p| p["url"].clone())
                .unwrap_or(Value::Null);
        }
    }
    // `ended`: Unix seconds, for `mbstack status`.
    let last = json!({"action": requested, "status": status, "execution": me, "url": url, "ended": mbstack_core::work::unix_now()});
    keep(
        store::put(
            &c.ssm,
            &store::path(stack, "last-run"),
            &last.to_string(),
            true,
        )
        .await
        .map(|_| ()),
    );
    // A record Step Functions may yet write on a retry: the lock stays held
    // for it, and nobody is told yet (the retry, or the recovery, will).
    if let Some(e @ TierError::Retryable(_)) = first {
        return Err(e);
    }
    // Its work was done, but the run fails: told like any failed run.
    let message = failed.or_else(|| {
        first.as_ref().map(|e| {
            let failure = json!({
                "Error": e.name(),
                "Cause": format!("its work was done, but its records could not all be written: {e}. The stack is as the run made it; run the same input again to record it"),
            });
            notify::message(stack, requested, me, &failure, &[])
        })
    });
    let mut keep = |r: Result<(), TierError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    let lock = store::path(stack, "lock");
    match store::get(&c.ssm, &lock).await {
        Ok(holder) if holder.as_deref() == Some(me) => {
            if let Some(message) = message {
                keep(tell_once(c, topic, stack, me, message).await);
            }
            keep(store::delete(&c.ssm, &lock).await);
        }
        // Released by an earlier attempt of this Finish, which had told.
        Ok(_) => {}
        // Whether it holds the lock is unknown: its recovery will know, and
        // tell if nobody has.
        Err(e) => keep(Err(e)),
    }
    if let Some(e) = first {
        return Err(e);
    }
    Ok(out)
}

/// Tells of the failed run `me` of `stack` unless it was told of already
/// (its `told` record names it): published, then recorded. Whoever releases
/// a failed run's lock calls it first (Finish, or the run's recovery), so a
/// failure is told of once; twice only if the function stops between SNS
/// accepting the message and the record (SNS has no idempotent publish).
async fn tell_once(
    c: &Clients,
    topic: Option<&str>,
    stack: &str,
    me: &str,
    message: (String, String),
) -> Result<(), TierError> {
    let told = store::path(stack, store::TOLD);
    if store::get(&c.ssm, &told).await.ok().flatten().as_deref() == Some(me) {
        return Ok(());
    }
    tell(c, topic, message).await;
    store::put(&c.ssm, &told, me, true).await.map(|_| ())
}

/// Publishes `message` to the payload's notification topic, if any. A failure
/// to publish is logged, not raised: the run's own error is what the execution
/// must end with.
async fn tell(c: &Clients, topic: Option<&str>, message: (String, String)) {
    let topic = topic.unwrap_or("");
    match notify::publish(&c.sns, topic, message).await {
        Ok(true) => tracing::info!(topic, "the failure was published"),
        Ok(false) => {}
        Err(e) => tracing::error!(topic, error = %e, "the failure could not be published"),
    }
}

/// A run refused before it took anything: the notification (the state
/// machine then fails with the refusal's own error).
async fn report_refusal(c: &Clients, n: &Notify) -> Result<Value, TierError> {
    let stack = n.input.get("stack").and_then(Value::as_str).unwrap_or("");
    let action = n
        .input
        .get("action")
        .and_then(Value::as_str)
        .filter(|a| ACTIONS.contains(a))
        .unwrap_or("apply");
    let message = notify::message(stack, action, &n.execution_arn, &n.failure, &[]);
    tell(c, Some(&n.notify_topic_arn), message).await;
    Ok(json!({}))
}

/// The execution's output from the tiers' final outcomes: the URL first.
pub fn shape_output(payload: &Value) -> Value {
    let status = payload
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let tiers = payload
        .get("tiers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut outputs = Map::new();
    let mut changes = Vec::new();
    for tier in Tier::PROVISIONED.map(|t| t.as_str()) {
        let Some(t) = tiers.get(tier) else { continue };
        if let Some(o) = t
            .pointer("/status/outputs")
            .filter(|o| o.as_object().is_some_and(|m| !m.is_empty()))
        {
            outputs.insert(tier.to_string(), o.clone());
        }
        for c in t
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if c.get("action").and_then(Value::as_str) != Some("none") {
                let mut c = c.clone();
                c["tier"] = json!(tier);
                changes.push(c);
            }
        }
    }
    // Finishing must not fail on an output it only shows: no URL then.
    let lb: LoadBalancerOutputs =
        outputs::read(&outputs, Tier::LoadBalancer.as_str()).unwrap_or_default();
    let url = json!(lb.url);
    let mut out = json!({
        "url": url,
        "stack": payload.pointer("/spec/stack"),
        "action": payload.get("requested").or(payload.get("action")),
        "status": status,
        "outputs": outputs,
        "changes": changes,
    });
    if let Some(holder) = payload.pointer("/lock/tookOverFrom") {
        out["lockTakenOverFrom"] = holder.clone();
    }
    out
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub const OWN_PERMISSIONS: &[Permission] = &[
    Permission::on(
        "LockHolder",
        &["states:DescribeExecution"],
        &["arn:${Partition}:states:*:*:execution:${Prefix}-provision:*"],
    ),
    // Prepare checks a domain new to the stack: its public hosted zone and
    // the records already at the name (`mbstack_loadbalancer::new_domain_problems`).
    // With zones named by the deployment, the zone a stack's records are in
    // is read from the ledger on its load balancer (`domain_zone_problems`).
    Permission::read(
        "DomainZone",
        &[
            "route53:ListHostedZones",
            "route53:GetHostedZone",
            "route53:ListResourceRecordSets",
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeTags",
        ],
    ),
    // Prepare checks the snapshot a new database is restored from
    // (`mbstack_data::restore_snapshot`), and that Metabase's key is there.
    Permission::read("Snapshots", &["rds:DescribeDBSnapshots"]),
    // Prepare checks there is room for an upgrade's snapshots
    // (`mbstack_data::snapshot_room_problem`: the ManualSnapshots quota).
    Permission::read("SnapshotQuota", &["rds:DescribeAccountAttributes"]),
    Permission::on(
        "EncryptionKey",
        &["secretsmanager:DescribeSecret"],
        &["arn:${Partition}:secretsmanager:*:*:secret:mbstack/*/metabase-encryption-key-*"],
    ),
];

mbstack_core::tier_permissions!(store, notify, recover, password_check);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_lists_every_problem_including_the_action() {
        match check_input(
            &json!({"stack": "Bad", "action": "nuke", "network": {"azCount": 1}}),
            "run-1",
        ) {
            Err(e) => assert_eq!(e.paths(), vec!["action", "stack", "network.azCount"]),
            Ok(_) => panic!("accepted"),
        }
        let (action, stack, patch) = check_input(&json!({"stack": "good"}), "run-1").unwrap();
        assert_eq!((action.as_str(), stack.as_str()), ("apply", "good"));
        assert!(!patch.contains_key("action"));
        assert!(check_input(&json!({"stack": "good"}), "bad name").is_err());
    }

    #[test]
    fn a_domain_is_kept_or_removed_but_never_moved_in_place() {
        let stored = serde_json::to_value({
            let mut s = StackSpec::new("bi");
            s.load_balancer.domain = Some("a.example.com".into());
            s
        })
        .unwrap();
        let moved = json!({"stack": "bi", "loadBalancer": {"domain": "b.example.com"}});
        let e = merged_spec(&moved, Some(&stored), "run-1").unwrap_err();
        assert_eq!(e.paths(), vec!["loadBalancer.domain"]);
        assert!(e.to_string().contains("loadBalancer.domain null"), "{e}");
        let kept = merged_spec(&json!({"stack": "bi"}), Some(&stored), "run-2").unwrap();
        assert_eq!(kept.load_balancer.domain.as_deref(), Some("a.example.com"));
        let removed = json!({"stack": "bi", "loadBalancer": {"domain": null}});
        let spec = merged_spec(&removed, Some(&stored), "run-3").unwrap();
        assert_eq!(spec.load_balancer.domain, None);
        // A new stack takes any domain.
        assert!(merged_spec(&moved, None, "run-4").is_ok());
    }

    #[test]
    fn the_output_puts_the_url_first_and_drops_no_changes() {
        let out = shape_output(&json!({
            "status": "succeeded", "requested": "apply", "spec": {"stack": "s"},
            "lock": {"tookOverFrom": "arn:old"},
            "tiers": {
                "network": {"status": {"outputs": {"vpcId": "vpc-1"}}, "changes": [{"kind": "vpc", "action": "create"}, {"kind": "x", "action": "none"}]},
                "loadbalancer": {"status": {"outputs": {"url": "http://x"}}, "changes": []}
            }
        }));
        assert_eq!(out["url"], "http://x");
        assert_eq!(out["changes"].as_array().unwrap().len(), 1);
        assert_eq!(out["changes"][0]["tier"], "network");
        assert_eq!(out["lockTakenOverFrom"], "arn:old");
        assert!(serde_json::to_string(&out).unwrap().starts_with("{\"url\""));
    }
}
