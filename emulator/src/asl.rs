//! What Step Functions checks in a definition at CreateStateMachine and
//! UpdateStateMachine, and moto does not: AWS answers `InvalidDefinition` with
//! one line per problem, in this form:
//! `Invalid State Machine Definition: 'DUPLICATE_STATE_NAME: Duplicate State name: Ready at /States/…'`.
//!
//! Checked here: state names unique across the whole definition (Parallel
//! branches included: `DUPLICATE_STATE_NAME`), every `Next`, `Default`, choice
//! and catcher target a state of the same map (`MISSING_TRANSITION_TARGET`),
//! every `StartAt` a state of its map (`SCHEMA_VALIDATION_FAILED`), and every
//! state reachable from its map's `StartAt` (`UNREACHABLE_STATE`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The problems AWS would report for `definition` (empty: accepted).
pub fn problems(definition: &str) -> Vec<String> {
    let def: Value = match serde_json::from_str(definition) {
        Ok(v) => v,
        Err(e) => return vec![format!("INVALID_JSON_DESCRIPTION: {e}")],
    };
    let mut out = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    check_map(&def, "", &mut names, &mut out);
    out
}

fn targets(state: &Value) -> Vec<(String, String)> {
    let mut t = Vec::new();
    for key in ["Next", "Default"] {
        if let Some(n) = state.get(key).and_then(Value::as_str) {
            t.push((key.to_string(), n.to_string()));
        }
    }
    for list in ["Choices", "Catch"] {
        for (i, c) in state
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(n) = c.get("Next").and_then(Value::as_str) {
                t.push((format!("{list}[{i}]/Next"), n.to_string()));
            }
        }
    }
    t
}

/// Checks one state map (`path` is where it sits), recursing into branches.
fn check_map(map: &Value, path: &str, names: &mut BTreeMap<String, String>, out: &mut Vec<String>) {
    let Some(states) = map.get("States").and_then(Value::as_object) else {
        out.push(format!(
            "SCHEMA_VALIDATION_FAILED: These fields are required: [States] at {}",
            if path.is_empty() { "/" } else { path }
        ));
        return;
    };
    let start = map.get("StartAt").and_then(Value::as_str).unwrap_or("");
    if !states.contains_key(start) {
        out.push(format!(
            "SCHEMA_VALIDATION_FAILED: Value is not a valid state name: {start:?} at {path}/StartAt"
        ));
    }
    for (name, state) in states {
        let at = format!("{path}/States/{name}");
        if let Some(first) = names.insert(name.clone(), at.clone()) {
            out.push(format!(
                "DUPLICATE_STATE_NAME: Duplicate State name: {name} at {at} (first at {first})"
            ));
        }
        for (field, target) in targets(state) {
            if !states.contains_key(&target) {
                out.push(format!(
                    "MISSING_TRANSITION_TARGET: Missing 'Next' target: {target} at {at}/{field}"
                ));
            }
        }
        for (i, b) in state
            .get("Branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_map(b, &format!("{at}/Branches[{i}]"), names, out);
        }
        if let Some(it) = state.get("ItemProcessor").or_else(|| state.get("Iterator")) {
            check_map(it, &format!("{at}/ItemProcessor"), names, out);
        }
    }
    // Reachability from StartAt.
    let mut seen = BTreeSet::new();
    let mut stack = vec![start.to_string()];
    while let Some(s) = stack.pop() {
        if !states.contains_key(&s) || !seen.insert(s.clone()) {
            continue;
        }
        stack.extend(targets(&states[&s]).into_iter().map(|(_, t)| t));
    }
    for name in states.keys().filter(|k| !seen.contains(*k)) {
        out.push(format!(
            "UNREACHABLE_STATE: State \"{name}\" is not reachable. at {path}/States/{name}"
        ));
    }
}

/// AWS's message for these problems.
pub fn message(problems: &[String]) -> String {
    format!(
        "Invalid State Machine Definition: '{}'",
        problems.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::problems;

    #[test]
    fn a_duplicate_name_in_two_branches_is_refused() {
        let def = r#"{"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Ready", "States": {"Ready": {"Type": "Succeed"}}},
            {"StartAt": "Ready", "States": {"Ready": {"Type": "Succeed"}}}]}}}"#;
        let p = problems(def);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("DUPLICATE_STATE_NAME: Duplicate State name: Ready"));
    }

    #[test]
    fn a_missing_target_and_an_unreachable_state_are_refused() {
        let def = r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"},
            "B": {"Type": "Succeed"}}}"#;
        let p = problems(def);
        assert!(
            p.iter().any(|m| m.starts_with("MISSING_TRANSITION_TARGET")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("UNREACHABLE_STATE: State \"B\"")),
            "{p:?}"
        );
    }

    #[test]
    fn a_valid_definition_passes() {
        let def = r#"{"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "B"}], "Default": "C"},
            "B": {"Type": "Succeed"}, "C": {"Type": "Fail"}}}"#;
        assert_eq!(problems(def), Vec::<String>::new());
    }
}
