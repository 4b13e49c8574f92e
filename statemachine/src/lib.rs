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

/// The placeholders a deployer substitutes with function ARNs.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("control", "${ControlFunctionArn}"),
    ("network", "${NetworkFunctionArn}"),
    ("data", "${DataFunctionArn}"),
    ("loadbalancer", "${LoadBalancerFunctionArn}"),
    ("app", "${AppFunctionArn}"),
];

/// A tier's display name and its poll limit (polls × its retryAfterSeconds is the
/// time limit: network 40 × 15 s, data 80 × 30 s, load balancer 40 × 15 s, app
/// 120 × 20 s — the app covers Metabase's first boot with migrations).
struct Tier {
    key: &'static str,
    label: &'static str,
    max_polls: u32,
}

const NETWORK: Tier = Tier {
    key: "network",
    label: "network",
    max_polls: 40,
};
const DATA: Tier = Tier {
    key: "data",
    label: "database",
    max_polls: 80,
};
const LB: Tier = Tier {
    key: "loadbalancer",
    label: "load balancer",
    max_polls: 40,
};
const APP: Tier = Tier {
    key: "app",
    label: "Metabase service",
    max_polls: 120,
};

fn placeholder(tier: &str) -> &'static str {
    PLACEHOLDERS
        .iter()
        .find(|(t, _)| *t == tier)
        .map(|(_, p)| *p)
        .unwrap_or("${UnknownFunctionArn}")
}

fn retry() -> Value {
    json!([
        {
            "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
            "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2, "JitterStrategy": "FULL"
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
        "Resource": "arn:aws:states:::lambda:invoke",
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
        "network.$": "$.network.status.outputs",
        "data.$": "$.tiers.data.status.outputs",
        "loadbalancer.$": "$.tiers.loadbalancer.status.outputs"
    })
}

/// A parallel step running the data and load balancer loops.
fn parallel_pair(
    name_done: &str,
    verb_label: &str,
    first: &str,
    again: &str,
    scope: &str,
    done: &str,
    next: &str,
    catch: (&str, &str),
) -> Value {
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
            next: name_done,
            on_error: None,
            error_path: "$.error",
        },
    );
    // Each branch hands back only its tier's outcome: `$[0]`, `$[1]` below.
    d.insert(
        name_done.to_string(),
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
            next: name_done,
            on_error: None,
            error_path: "$.error",
        },
    );
    l.insert(
        name_done.to_string(),
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
        "command": "finish", "status": status, "action.$": "$.action", "runId.$": "$.runId", "spec.$": "$.spec",
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
    // Finish must not fail on a missing tier (a run that failed early): defaults.
    t["Comment"] = json!("Records how the run ended and shapes the execution's output");
    t
}

/// The whole definition, with `${...FunctionArn}` placeholders.
pub fn definition() -> Value {
    let mut s = Map::new();
    s.insert(
        "Prepare".into(),
        json!({
            "Type": "Task",
            "Comment": "Validate the whole input (every problem listed) before anything exists",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": placeholder("control"), "Payload": {"command": "prepare", "input.$": "$", "execution.$": "$$.Execution.Name"}},
            "ResultSelector": {
                "action.$": "$.Payload.action", "spec.$": "$.Payload.spec", "runId.$": "$.Payload.runId", "polls.$": "$.Payload.polls",
                "network": {}, "tiers": {"data": {}, "loadbalancer": {}}, "app": {}
            },
            "ResultPath": "$",
            "Retry": retry(),
            "Next": "Apply or destroy?"
        }),
    );
    s.insert(
        "Apply or destroy?".into(),
        json!({"Type": "Choice", "Choices": [{"Variable": "$.action", "StringEquals": "destroy", "Next": "Start deleting"}], "Default": "Create network"}),
    );

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
        parallel_pair(
            "Ready",
            "Create",
            "apply",
            "check",
            "stack",
            "ready",
            "Create Metabase service",
            err,
        ),
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
            "Result": {"network": {"n": 0}, "data": {"n": 0}, "loadbalancer": {"n": 0}, "app": {"n": 0}},
            "ResultPath": "$.polls",
            "Next": "Roll back Metabase service"
        }),
    );
    let rb_err = ("Rollback failed", "$.rollbackError");
    let rb_app = Tier {
        key: "app",
        label: "Metabase service",
        max_polls: 60,
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
        parallel_pair(
            "Rolled back",
            "Roll back",
            "destroy",
            "destroy",
            "run",
            "gone",
            "Roll back network",
            rb_err,
        ),
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
        parallel_pair(
            "Deleted",
            "Delete",
            "destroy",
            "destroy",
            "stack",
            "gone",
            "Delete network",
            d_err,
        ),
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

/// The definition with each placeholder replaced by its function ARN.
pub fn render(arns: &[(&str, String)]) -> String {
    let mut text = serde_json::to_string_pretty(&definition()).unwrap_or_default();
    for (tier, arn) in arns {
        text = text.replace(placeholder(tier), arn);
    }
    text
}

/// The committed file's path.
pub fn asl_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("provision.asl.json")
}

#[cfg(test)]
mod tests {
    use super::*;

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
