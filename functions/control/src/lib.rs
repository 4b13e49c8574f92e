//! mbstack-control: the first and last step of every run.
//!
//! - `prepare` takes the state machine's raw input (a stack spec plus an optional
//!   `action`), validates all of it before anything exists — every problem listed
//!   with its field path — and hands the tiers the spec and the run id.
//! - `finish` records how the run ended and shapes the execution's output: the URL
//!   first, then each tier's outputs (ARNs and names, never a secret) and every
//!   change the run made.
//!
//! Its contract is `{"command": "prepare" | "finish", ...}`, not a tier's.

use mbstack_core::{Aws, InvalidSpec, Problem, StackSpec, TierError};
use serde_json::{json, Map, Value};

/// The actions a run can take.
pub const ACTIONS: &[&str] = &["apply", "destroy"];
/// Actions the state machine will offer once the lifecycle work lands.
pub const LATER_ACTIONS: &[&str] = &["plan", "pause", "resume"];

pub async fn handle(payload: Value, _aws: &Aws) -> Result<Value, TierError> {
    let command = payload.get("command").and_then(Value::as_str).unwrap_or("");
    match command {
        "prepare" => prepare(
            payload.get("input").unwrap_or(&Value::Null),
            payload.get("execution").and_then(Value::as_str).unwrap_or(""),
        ),
        "finish" => finish(&payload),
        other => Err(TierError::Terminal(format!(
            "the control function got command {other:?}: expected \"prepare\" or \"finish\" (is the state machine current?)"
        ))),
    }
}

/// Validates the whole input and returns `{action, spec, runId, polls}`.
pub fn prepare(input: &Value, execution: &str) -> Result<Value, TierError> {
    let Some(object) = input.as_object() else {
        return Err(InvalidSpec(vec![Problem::new(
            "",
            "the input must be a JSON object such as {\"stack\": \"analytics\"}",
        )])
        .into());
    };
    let mut problems = Vec::new();
    let action = match object.get("action") {
        None => "apply".to_string(),
        Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => a.clone(),
        Some(Value::String(a)) if LATER_ACTIONS.contains(&a.as_str()) => {
            problems.push(Problem::new(
                "action",
                format!("{a:?} is not available yet: use \"apply\" or \"destroy\""),
            ));
            a.clone()
        }
        Some(other) => {
            problems.push(Problem::new(
                "action",
                format!("{other} is not an action: use \"apply\" (the default) or \"destroy\""),
            ));
            String::new()
        }
    };
    let mut spec_input = object.clone();
    spec_input.remove("action");
    let spec = match StackSpec::from_json(&Value::Object(spec_input)) {
        Ok(spec) => Some(spec),
        Err(e) => {
            problems.extend(e.0);
            None
        }
    };
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
    match (spec, problems.is_empty()) {
        (Some(spec), true) => Ok(json!({
            "action": action,
            "spec": spec,
            "runId": execution,
            "polls": {"network": {"n": 0}, "data": {"n": 0}, "loadbalancer": {"n": 0}, "app": {"n": 0}},
        })),
        _ => Err(InvalidSpec(problems).into()),
    }
}

/// Shapes the execution's output from the tiers' final outcomes.
pub fn finish(payload: &Value) -> Result<Value, TierError> {
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
    for tier in ["network", "data", "loadbalancer", "app"] {
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
    let url = outputs
        .get("loadbalancer")
        .and_then(|o| o.get("url"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(json!({
        "url": url,
        "stack": payload.pointer("/spec/stack"),
        "action": payload.get("action"),
        "status": status,
        "outputs": outputs,
        "changes": changes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_lists_every_problem_including_the_action() {
        let e = prepare(
            &json!({"stack": "Bad", "action": "nuke", "network": {"azCount": 1}}),
            "run-1",
        )
        .unwrap_err();
        match e {
            TierError::InvalidSpec(e) => {
                assert_eq!(e.paths(), vec!["action", "stack", "network.azCount"])
            }
            other => panic!("{other:?}"),
        }
        let ok = prepare(&json!({"stack": "good"}), "run-1").unwrap();
        assert_eq!(ok["action"], "apply");
        assert_eq!(ok["runId"], "run-1");
        assert_eq!(ok["spec"]["network"]["cidr"], "10.0.0.0/16");
        assert!(prepare(&json!({"stack": "good", "action": "destroy"}), "r").is_ok());
        assert!(prepare(&json!({"stack": "good"}), "bad name").is_err());
    }

    #[test]
    fn finish_puts_the_url_first_and_drops_no_changes() {
        let out = finish(&json!({
            "status": "succeeded", "action": "apply", "spec": {"stack": "s"},
            "tiers": {
                "network": {"status": {"outputs": {"vpcId": "vpc-1"}}, "changes": [{"kind": "vpc", "action": "create"}, {"kind": "x", "action": "none"}]},
                "loadbalancer": {"status": {"outputs": {"url": "http://x"}}, "changes": []}
            }
        }))
        .unwrap();
        assert_eq!(out["url"], "http://x");
        assert_eq!(out["changes"].as_array().unwrap().len(), 1);
        assert_eq!(out["changes"][0]["tier"], "network");
        let text = serde_json::to_string(&out).unwrap();
        assert!(text.starts_with("{\"url\""), "{text}");
    }
}
