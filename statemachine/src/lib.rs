//! The one state machine, described once here and committed as
//! `statemachine/provision.asl.json` (a test fails if the two differ; run
//! `MBSTACK_WRITE_ASL=1 cargo test --workspace asl_file` to rewrite the file).
//!
//! apply: Prepare → network loop → (data loop ∥ load balancer loop) → app loop →
//! Finish. Each loop: apply, then Wait(retryAfterSeconds) → check → Choice until
//! ready, bounded by a poll count that ends in `Mbstack.Timeout`. Any failure after
//! Prepare → rollback (destroy scope `run`, app → data ∥ load balancer → network,
//! each with its own loop) → Finish → Fail with the original error; a rollback
//! that fails itself → `RollbackFailed`. destroy: the same chain, scope `stack`.
//! Plain JSONPath only (no JSONata, no Variables), for the console and for moto.

use serde_json::{json, Map, Value};

/// The partition placeholder: `arn:${Partition}:states:::lambda:invoke` becomes
/// `arn:aws-cn:…` in China, `arn:aws-us-gov:…` in GovCloud.
pub const PARTITION: &str = "${Partition}";
/// The permissions boundary every role the app tier creates must carry.
pub const ROLE_BOUNDARY: &str = "${RoleBoundaryArn}";
/// The role EventBridge starts this state machine with (`<prefix>-events`): the
/// app tier's rule that repairs the stack when its database password rotates.
pub const EVENTS_ROLE: &str = "${EventsRoleArn}";

/// A tier as the state machine's loops see it: its key, the label its state
/// names use and its poll bound, all from core's tier table.
struct Tier {
    key: &'static str,
    label: &'static str,
    max_polls: u32,
}

const fn of(tier: mbstack_core::Tier) -> Tier {
    let info = tier.info();
    Tier {
        key: tier.as_str(),
        label: info.state_label,
        max_polls: info.max_polls,
    }
}

const NETWORK: Tier = of(mbstack_core::Tier::Network);
const DATA: Tier = of(mbstack_core::Tier::Data);
const LB: Tier = of(mbstack_core::Tier::LoadBalancer);
const APP: Tier = of(mbstack_core::Tier::App);

/// The optimised Lambda integration, in the deployment's partition.
const LAMBDA_INVOKE: &str = "arn:${Partition}:states:::lambda:invoke";

fn placeholder(tier: &str) -> &'static str {
    mbstack_core::Tier::from_name(tier)
        .map(|t| t.info().arn_placeholder)
        .unwrap_or("${UnknownFunctionArn}")
}

fn retry() -> Value {
    json!([
        {
            "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
            "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2, "JitterStrategy": "FULL"
        },
        {
            // A function that crashed (its outcome lost): every task is idempotent,
            // so running it again is safe and finishes the work.
            "ErrorEquals": ["Runtime.ExitError", "Runtime.Unknown", "Sandbox.Timedout"],
            "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 2, "JitterStrategy": "FULL"
        },
        {
            "ErrorEquals": ["Mbstack.Retryable"],
            "IntervalSeconds": 5, "MaxAttempts": 8, "BackoffRate": 1.5, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
        }
    ])
}

/// A lambda:invoke task of `tier` with `payload`, its outcome stored at `result`.
fn invoke(
    tier: &str,
    payload: Value,
    selector: Value,
    result: &str,
    next: Option<&str>,
    catch: Option<(&str, &str)>,
) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": placeholder(tier), "Payload": payload},
        "ResultSelector": selector,
        "ResultPath": result,
        "Retry": retry(),
    });
    match next {
        Some(n) => t["Next"] = json!(n),
        None => t["End"] = json!(true),
    }
    if let Some((to, path)) = catch {
        t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": path, "Next": to}]);
    }
    t
}

/// Where a tier's outcome lives in the state: top level, or inside a Parallel
/// branch's copy (which the Parallel hands back as `$.tiers.<key>`).
fn tier_event(verb: &str, scope: &str, inputs: Value) -> Value {
    json!({"verb": verb, "spec.$": "$.spec", "run": {"id.$": "$.runId", "scope": scope}, "inputs": inputs})
}

fn status_selector() -> Value {
    json!({
        "state.$": "$.Payload.state",
        "retryAfterSeconds.$": "$.Payload.retryAfterSeconds",
        "message.$": "$.Payload.message",
        "outputs.$": "$.Payload.outputs"
    })
}

/// The states of one tier's loop: `first` (apply or destroy), then until
/// `done_state`: count → bound → wait → `again` (check, or destroy again).
/// Returns the loop's entry state name.
struct Loop<'a> {
    tier: &'a Tier,
    /// "Create" or "Delete"
    verb_label: &'a str,
    first: &'a str,
    again: &'a str,
    scope: &'a str,
    done_state: &'a str,
    inputs: Value,
    next: &'a str,
    /// Where failures go (Catch / timeout); None inside a Parallel branch (the
    /// branch fails and the Parallel's Catch takes over).
    on_error: Option<&'a str>,
    error_path: &'a str,
}

fn add_loop(states: &mut Map<String, Value>, l: Loop<'_>) -> String {
    let t = l.tier;
    let key = t.key;
    // Names are unique across the apply, rollback and delete loops of a tier.
    let (ready, phase, again) = match l.verb_label {
        "Create" => (
            format!("Is the {} ready?", t.label),
            String::new(),
            format!("Check the {} again", t.label),
        ),
        "Roll back" => (
            format!("Is the {} rolled back?", t.label),
            " rollback".to_string(),
            format!("Roll back the {} again", t.label),
        ),
        _ => (
            format!("Is the {} deleted?", t.label),
            " deletion".to_string(),
            format!("Delete the {} again", t.label),
        ),
    };
    let entry = format!("{} {}", l.verb_label, t.label);
    let count = format!("Count {}{phase} polls", t.label);
    let bound = format!("Waited too long for the {}{phase}?", t.label);
    let wait = format!("Wait for the {}{phase}", t.label);
    let timeout = format!("{}{phase} timed out", capitalize(t.label));
    let catch = l.on_error.map(|to| (to, l.error_path));

    let first_selector = json!({"changes.$": "$.Payload.changes", "status": status_selector()});
    states.insert(
        entry.clone(),
        invoke(
            key,
            tier_event(l.first, l.scope, l.inputs.clone()),
            first_selector,
            &format!("$.{key}"),
            Some(&ready),
            catch,
        ),
    );
    states.insert(
        ready.clone(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": format!("$.{key}.status.state"), "StringEquals": l.done_state, "Next": l.next}],
            "Default": count
        }),
    );
    states.insert(
        count.clone(),
        json!({
            "Type": "Pass",
            "Parameters": {"n.$": format!("States.MathAdd($.polls.{key}.n, 1)")},
            "ResultPath": format!("$.polls.{key}"),
            "Next": bound
        }),
    );
    states.insert(
        bound.clone(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": format!("$.polls.{key}.n"), "NumericGreaterThan": t.max_polls, "Next": timeout}],
            "Default": wait
        }),
    );
    states.insert(wait.clone(), json!({"Type": "Wait", "SecondsPath": format!("$.{key}.status.retryAfterSeconds"), "Next": again}));
    let again_selector = if l.again == "check" {
        status_selector()
    } else {
        json!({"changes.$": "$.Payload.changes", "status": status_selector()})
    };
    let again_path = if l.again == "check" {
        format!("$.{key}.status")
    } else {
        format!("$.{key}")
    };
    states.insert(
        again.clone(),
        invoke(
            key,
            tier_event(l.again, l.scope, l.inputs),
            again_selector,
            &again_path,
            Some(&ready),
            catch,
        ),
    );
    let cause = format!(
        "the {} did not become {} within {} polls",
        t.label, l.done_state, t.max_polls
    );
    match l.on_error {
        Some(to) => states.insert(
            timeout,
            json!({"Type": "Pass", "Result": {"Error": "Mbstack.Timeout", "Cause": cause}, "ResultPath": l.error_path, "Next": to}),
        ),
        None => states.insert(timeout, json!({"Type": "Fail", "Error": "Mbstack.Timeout", "Cause": cause})),
    };
    entry
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn branch(start: String, states: Map<String, Value>) -> Value {
    json!({"StartAt": start, "States": states})
}

/// Inputs of the tiers after the network, from the state.
fn network_inputs() -> Value {
    json!({"network.$": "$.network.status.outputs"})
}

fn app_inputs() -> Value {
    json!({
        (mbstack_core::outputs::DEPLOYMENT_KEY): {
            "roleBoundaryArn": ROLE_BOUNDARY,
            "eventsRoleArn": EVENTS_ROLE,
            "stateMachineArn.$": "$$.StateMachine.Id"
        },
        "network.$": "$.network.status.outputs",
        "data.$": "$.tiers.data.status.outputs",
        "loadbalancer.$": "$.tiers.loadbalancer.status.outputs"
    })
}

/// One of the three ways through the tiers.
#[derive(Clone, Copy)]
struct Phase {
    verb_label: &'static str,
    first: &'static str,
    again: &'static str,
    scope: &'static str,
    done: &'static str,
    /// A Parallel branch's last state is "<Tier label> <branch_end>": state
    /// names are unique across the whole definition, branches included (AWS
    /// refuses a duplicate with DUPLICATE_STATE_NAME).
    branch_end: &'static str,
}

const CREATE: Phase = Phase {
    verb_label: "Create",
    first: "apply",
    again: "check",
    scope: "stack",
    done: "ready",
    branch_end: "ready",
};
const ROLL_BACK: Phase = Phase {
    verb_label: "Roll back",
    first: "destroy",
    again: "destroy",
    scope: "run",
    done: "gone",
    branch_end: "rolled back",
};
const DELETE: Phase = Phase {
    verb_label: "Delete",
    first: "destroy",
    again: "destroy",
    scope: "stack",
    done: "gone",
    branch_end: "deleted",
};

/// A parallel step running the data and load balancer loops.
fn parallel_pair(phase: &Phase, next: &str, catch: (&str, &str)) -> Value {
    let Phase {
        verb_label,
        first,
        again,
        scope,
        done,
        branch_end,
    } = *phase;
    let d_done = format!("{} {branch_end}", capitalize(DATA.label));
    let l_done = format!("{} {branch_end}", capitalize(LB.label));
    let mut d = Map::new();
    let inputs = if first == "apply" {
        network_inputs()
    } else {
        json!({})
    };
    let d_entry = add_loop(
        &mut d,
        Loop {
            tier: &DATA,
            verb_label,
            first,
            again,
            scope,
            done_state: done,
            inputs: inputs.clone(),
            next: &d_done,
            on_error: None,
            error_path: "$.error",
        },
    );
    // Each branch hands back only its tier's outcome: `$[0]`, `$[1]` below.
    d.insert(
        d_done.clone(),
        json!({"Type": "Succeed", "OutputPath": "$.data"}),
    );
    let mut l = Map::new();
    let l_entry = add_loop(
        &mut l,
        Loop {
            tier: &LB,
            verb_label,
            first,
            again,
            scope,
            done_state: done,
            inputs,
            next: &l_done,
            on_error: None,
            error_path: "$.error",
        },
    );
    l.insert(
        l_done.clone(),
        json!({"Type": "Succeed", "OutputPath": "$.loadbalancer"}),
    );
    json!({
        "Type": "Parallel",
        "Branches": [branch(d_entry, d), branch(l_entry, l)],
        "ResultSelector": {"data.$": "$[0]", "loadbalancer.$": "$[1]"},
        "ResultPath": "$.tiers",
        "Next": next,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": catch.1, "Next": catch.0}]
    })
}

fn finish(status: &str, next: &str, result_path: &str) -> Value {
    let payload = json!({
        "command": "finish", "status": status, "action.$": "$.action", "requested.$": "$.requested",
        "runId.$": "$.runId", "executionArn.$": "$.executionArn", "spec.$": "$.spec", "lock.$": "$.lock",
        "tiers": {
            "network.$": "$.network", "data.$": "$.tiers.data", "loadbalancer.$": "$.tiers.loadbalancer", "app.$": "$.app"
        }
    });
    let mut t = invoke(
        "control",
        payload,
        json!({"result.$": "$.Payload"}),
        result_path,
        Some(next),
        None,
    );
    t["Comment"] = json!("Releases the stack's lock, stores the spec after a success, and shapes the execution's output");
    t
}

/// The whole definition, with `${...FunctionArn}` placeholders.
pub fn definition() -> Value {
    let mut s = Map::new();
    s.insert(
        "Prepare".into(),
        json!({
            "Type": "Task",
            "Comment": "Merge the input over the stored spec, validate all of it (every problem listed) before anything exists, take the stack's lock",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {
                "FunctionName": placeholder("control"),
                "Payload": {"command": "prepare", "input.$": "$", "execution.$": "$$.Execution.Name", "executionArn.$": "$$.Execution.Id"}
            },
            "ResultSelector": {
                "action.$": "$.Payload.action", "requested.$": "$.Payload.requested", "spec.$": "$.Payload.spec",
                "runId.$": "$.Payload.runId", "executionArn.$": "$.Payload.executionArn", "lock.$": "$.Payload.lock",
                "polls.$": "$.Payload.polls",
                "network": {}, "tiers": {"data": {}, "loadbalancer": {}}, "app": {}
            },
            "ResultPath": "$",
            "Retry": retry(),
            "Next": "Which action?"
        }),
    );
    s.insert(
        "Which action?".into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.action", "StringEquals": "destroy", "Next": "Start deleting"},
                {"Variable": "$.action", "StringEquals": "plan", "Next": "Plan network"}
            ],
            "Default": "Create network"
        }),
    );

    // plan: read-only, no lock; each tier's plan sees the outputs of those before it
    let plan_selector = || json!({"changes.$": "$.Payload.changes", "status": status_selector()});
    for (name, tier, inputs, path, next) in [
        (
            "Plan network",
            "network",
            json!({}),
            "$.network",
            "Plan database",
        ),
        (
            "Plan database",
            "data",
            network_inputs(),
            "$.tiers.data",
            "Plan load balancer",
        ),
        (
            "Plan load balancer",
            "loadbalancer",
            network_inputs(),
            "$.tiers.loadbalancer",
            "Plan Metabase service",
        ),
        (
            "Plan Metabase service",
            "app",
            app_inputs(),
            "$.app",
            "Record plan",
        ),
    ] {
        s.insert(
            name.into(),
            invoke(
                tier,
                tier_event("plan", "stack", inputs),
                plan_selector(),
                path,
                Some(next),
                None,
            ),
        );
    }
    s.insert("Record plan".into(), finish("planned", "Done", "$.finish"));

    // apply
    let err = ("Roll back", "$.error");
    add_loop(
        &mut s,
        Loop {
            tier: &NETWORK,
            verb_label: "Create",
            first: "apply",
            again: "check",
            scope: "stack",
            done_state: "ready",
            inputs: json!({}),
            next: "Create database and load balancer",
            on_error: Some(err.0),
            error_path: err.1,
        },
    );
    s.insert(
        "Create database and load balancer".into(),
        parallel_pair(&CREATE, "Create Metabase service", err),
    );
    add_loop(
        &mut s,
        Loop {
            tier: &APP,
            verb_label: "Create",
            first: "apply",
            again: "check",
            scope: "stack",
            done_state: "ready",
            inputs: app_inputs(),
            next: "Record success",
            on_error: Some(err.0),
            error_path: err.1,
        },
    );
    s.insert(
        "Record success".into(),
        finish("succeeded", "Done", "$.finish"),
    );
    s.insert(
        "Done".into(),
        json!({"Type": "Succeed", "OutputPath": "$.finish.result"}),
    );

    // rollback: destroy scope run, in reverse order
    s.insert(
        "Roll back".into(),
        json!({
            "Type": "Pass",
            "Comment": "Delete what this run created; put back what it updated",
            "Result": mbstack_core::contract::poll_counters(),
            "ResultPath": "$.polls",
            "Next": "Roll back Metabase service"
        }),
    );
    let rb_err = ("Rollback failed", "$.rollbackError");
    // Undoing the service is a scale-down and a delete: half the create's bound.
    let rb_app = Tier {
        max_polls: APP.max_polls / 2,
        ..APP
    };
    add_loop_named(
        &mut s,
        "Roll back",
        &rb_app,
        "run",
        "Roll back database and load balancer",
        Some(rb_err),
    );
    s.insert(
        "Roll back database and load balancer".into(),
        parallel_pair(&ROLL_BACK, "Roll back network", rb_err),
    );
    add_loop_named(
        &mut s,
        "Roll back",
        &NETWORK,
        "run",
        "Rolled back",
        Some(rb_err),
    );
    s.insert(
        "Rolled back".into(),
        json!({"Type": "Pass", "Parameters": {"Error.$": "$.error.Error", "Cause.$": "$.error.Cause"}, "ResultPath": "$.failure", "Next": "Check the error name"}),
    );
    s.insert(
        "Rollback failed".into(),
        json!({
            "Type": "Pass",
            "Parameters": {
                "Error": "RollbackFailed",
                "Cause.$": "States.Format('The rollback of run {} failed: {}: {}. Resources tagged mbstack:created-by={} may be left: run the same input again (apply repairs) or destroy. The run had failed with {}: {}', $.runId, $.rollbackError.Error, $.rollbackError.Cause, $.runId, $.error.Error, $.error.Cause)"
            },
            "ResultPath": "$.failure",
            "Next": "Record failure"
        }),
    );
    // A Fail state may not raise a `States.*` name: such an error (a runtime error
    // of the machine itself) is reported as Mbstack.StateMachineError.
    s.insert(
        "Check the error name".into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.failure.Error", "StringMatches": "States.*", "Next": "Name the state machine error"}],
            "Default": "Record failure"
        }),
    );
    s.insert(
        "Name the state machine error".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"Error": "Mbstack.StateMachineError", "Cause.$": "States.Format('{}: {}', $.failure.Error, $.failure.Cause)"},
            "ResultPath": "$.failure",
            "Next": "Record failure"
        }),
    );
    s.insert(
        "Record failure".into(),
        finish("failed", "Failed", "$.finish"),
    );
    s.insert(
        "Failed".into(),
        json!({"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}),
    );

    // destroy: scope stack
    let d_err = ("Destroy failed", "$.error");
    s.insert(
        "Start deleting".into(),
        json!({"Type": "Pass", "Result": {"n": 0}, "ResultPath": "$.polls.app", "Next": "Delete Metabase service"}),
    );
    add_loop_named(
        &mut s,
        "Delete",
        &APP,
        "stack",
        "Delete database and load balancer",
        Some(d_err),
    );
    s.insert(
        "Delete database and load balancer".into(),
        parallel_pair(&DELETE, "Delete network", d_err),
    );
    add_loop_named(
        &mut s,
        "Delete",
        &NETWORK,
        "stack",
        "Record success",
        Some(d_err),
    );
    s.insert(
        "Destroy failed".into(),
        json!({"Type": "Pass", "Parameters": {"Error.$": "$.error.Error", "Cause.$": "$.error.Cause"}, "ResultPath": "$.failure", "Next": "Check the error name"}),
    );

    json!({
        "Comment": "mbstack: provisions Metabase on AWS (VPC with NAT, RDS PostgreSQL, ALB, ECS Fargate) and rolls back what a failed run created. Input: a stack spec such as {\"stack\": \"analytics\"}, optionally with \"action\": \"apply\" | \"destroy\".",
        "StartAt": "Prepare",
        "States": s
    })
}

/// A destroy loop (first and again are both `destroy`) with its own names.
fn add_loop_named(
    states: &mut Map<String, Value>,
    verb_label: &str,
    tier: &Tier,
    scope: &str,
    next: &str,
    on_error: Option<(&str, &str)>,
) -> String {
    add_loop(
        states,
        Loop {
            tier,
            verb_label,
            first: "destroy",
            again: "destroy",
            scope,
            done_state: "gone",
            // destroy needs no inputs: it finds what to delete by tags
            inputs: json!({}),
            next,
            on_error: on_error.map(|e| e.0),
            error_path: on_error.map(|e| e.1).unwrap_or("$.error"),
        },
    )
}

/// What a deployment substitutes into the definition.
#[derive(Debug, Clone)]
pub struct Deployment<'a> {
    /// The function ARN of every tier (control included).
    pub functions: &'a [(mbstack_core::Tier, String)],
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: &'a str,
    /// The managed policy every role the app tier creates is bounded by.
    pub role_boundary_arn: &'a str,
    /// The role EventBridge starts the state machine with.
    pub events_role_arn: &'a str,
}

/// The definition with each placeholder replaced.
pub fn render(d: &Deployment<'_>) -> String {
    let mut text = serde_json::to_string_pretty(&definition()).unwrap_or_default();
    for (tier, arn) in d.functions {
        text = text.replace(tier.info().arn_placeholder, arn);
    }
    text.replace(PARTITION, d.partition)
        .replace(ROLE_BOUNDARY, d.role_boundary_arn)
        .replace(EVENTS_ROLE, d.events_role_arn)
}

/// The committed file's path.
pub fn asl_path() -> std::path::PathBuf {
    // Where the crate is while its tests run (as mbstack_core::source_dir).
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("provision.asl.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Every state map of the definition: the top level and each Parallel branch.
    fn maps(
        states: &Map<String, Value>,
        out: &mut Vec<(String, Map<String, Value>)>,
        start: String,
    ) {
        out.push((start, states.clone()));
        for st in states.values() {
            for b in st
                .get("Branches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(s), Some(start)) = (
                    b.get("States").and_then(Value::as_object),
                    b.get("StartAt").and_then(Value::as_str),
                ) {
                    maps(s, out, start.to_string());
                }
            }
        }
    }

    /// The state maps of a whole definition, each with its `StartAt`.
    fn all_maps(def: &Value) -> Vec<(String, Map<String, Value>)> {
        let mut all = Vec::new();
        let states = def["States"].as_object().expect("a definition has States");
        let start = def["StartAt"].as_str().expect("a definition has StartAt");
        maps(states, &mut all, start.to_string());
        all
    }

    fn targets(st: &Value) -> Vec<String> {
        let mut t = Vec::new();
        for key in ["Next", "Default"] {
            if let Some(n) = st.get(key).and_then(Value::as_str) {
                t.push(n.to_string());
            }
        }
        for list in ["Choices", "Catch"] {
            for c in st.get(list).and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = c.get("Next").and_then(Value::as_str) {
                    t.push(n.to_string());
                }
            }
        }
        t
    }

    #[test]
    fn every_state_is_reachable_every_target_exists_and_no_loop_is_unbounded() {
        let all = all_maps(&definition());
        assert!(
            all.len() >= 5,
            "the top level and the four Parallel branches"
        );
        for (start, states) in &all {
            let graph: BTreeMap<&str, Vec<String>> = states
                .iter()
                .map(|(k, v)| (k.as_str(), targets(v)))
                .collect();
            for (from, to) in &graph {
                for t in to {
                    assert!(states.contains_key(t), "{from} → {t}: no such state");
                }
                let ty = states[*from]["Type"].as_str().unwrap();
                let terminal = matches!(ty, "Succeed" | "Fail")
                    || states[*from].get("End") == Some(&json!(true));
                assert!(terminal || !to.is_empty(), "{from} leads nowhere");
            }
            // Reachability.
            let mut seen = BTreeSet::new();
            let mut stack = vec![start.clone()];
            while let Some(s) = stack.pop() {
                if seen.insert(s.clone()) {
                    stack.extend(graph.get(s.as_str()).cloned().unwrap_or_default());
                }
            }
            let unreachable: Vec<&String> = states.keys().filter(|k| !seen.contains(*k)).collect();
            assert!(unreachable.is_empty(), "unreachable: {unreachable:?}");
            // Every cycle passes a poll counter: without the "Count … polls" states
            // the graph has no cycle (Kahn's algorithm empties it).
            let nodes: Vec<&str> = graph
                .keys()
                .copied()
                .filter(|k| !k.starts_with("Count "))
                .collect();
            let mut indegree: BTreeMap<&str, usize> = nodes.iter().map(|n| (*n, 0)).collect();
            for n in &nodes {
                for t in &graph[n] {
                    if let Some(d) = indegree.get_mut(t.as_str()) {
                        *d += 1;
                    }
                }
            }
            let mut queue: Vec<&str> = indegree
                .iter()
                .filter(|(_, d)| **d == 0)
                .map(|(n, _)| *n)
                .collect();
            let mut removed = 0;
            while let Some(n) = queue.pop() {
                removed += 1;
                for t in &graph[n] {
                    if let Some(d) = indegree.get_mut(t.as_str()) {
                        *d -= 1;
                        if *d == 0 {
                            queue.push(t.as_str());
                        }
                    }
                }
            }
            assert_eq!(removed, nodes.len(), "a loop does not pass a poll counter");
            // And each counter is bounded: it leads to a Choice with a numeric limit.
            for (name, st) in states.iter().filter(|(k, _)| k.starts_with("Count ")) {
                let bound = &states[st["Next"].as_str().unwrap()];
                assert!(
                    bound["Choices"][0]["NumericGreaterThan"].is_number(),
                    "{name} is not bounded"
                );
            }
        }
    }

    #[test]
    fn state_names_are_unique_across_the_whole_definition() {
        let all = all_maps(&definition());
        let mut seen = BTreeSet::new();
        let dups: Vec<&String> = all
            .iter()
            .flat_map(|(_, m)| m.keys())
            .filter(|k| !seen.insert(k.as_str()))
            .collect();
        assert!(dups.is_empty(), "duplicate state names: {dups:?}");
    }

    #[test]
    fn the_app_gets_every_deployment_input_it_reads() {
        let given = &app_inputs()[mbstack_core::outputs::DEPLOYMENT_KEY];
        let filled: Map<String, Value> = given
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.trim_end_matches(".$").to_string(), json!("arn:x")))
            .collect();
        let d: mbstack_core::outputs::DeploymentInputs =
            serde_json::from_value(Value::Object(filled)).unwrap();
        assert!(
            d.role_boundary_arn.is_some()
                && d.events_role_arn.is_some()
                && d.state_machine_arn.is_some(),
            "{d:?}"
        );
    }

    #[test]
    fn render_leaves_no_placeholder_and_no_partition_but_the_deployments() {
        let functions: Vec<(mbstack_core::Tier, String)> = mbstack_core::Tier::ALL
            .iter()
            .map(|t| (*t, format!("arn:aws-cn:lambda:cn-north-1:1:function:{t}")))
            .collect();
        let text = render(&Deployment {
            functions: &functions,
            partition: "aws-cn",
            role_boundary_arn: "arn:aws-cn:iam::1:policy/b",
            events_role_arn: "arn:aws-cn:iam::1:role/e",
        });
        assert!(!text.contains("${"), "a placeholder is left");
        assert!(!text.contains("arn:aws:"), "an ARN outside the partition");
        assert!(text.contains("arn:aws-cn:states:::lambda:invoke"));
    }

    #[test]
    fn asl_file_matches_the_description() {
        let text = serde_json::to_string_pretty(&definition()).unwrap() + "\n";
        if std::env::var_os("MBSTACK_WRITE_ASL").is_some() {
            std::fs::write(asl_path(), &text).unwrap();
        }
        let committed = std::fs::read_to_string(asl_path()).unwrap_or_default();
        assert!(committed == text, "statemachine/provision.asl.json is stale: run MBSTACK_WRITE_ASL=1 cargo test --workspace asl_file");
    }
}
