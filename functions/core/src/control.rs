//! What the state machine asks the control function: one typed [`Command`]
//! per payload. The definition (`mbstack-statemachine`) writes each payload's
//! keys; the control function reads them into these types (a payload without
//! a key it needs is refused, naming it). A key it does not read is logged,
//! not refused: a run started by the definition before a deploy still
//! finishes (and releases its lock) under the function after it. The
//! statemachine's tests resolve every control payload of the definition as
//! Step Functions would and require [`unread_keys`] to be empty, so a key
//! spelled differently on one side fails there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A payload of the control function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Command {
    /// Check the input, take the stack's lock, resolve the spec.
    Prepare(Prepare),
    /// Release the lock, record the run, shape the execution's output.
    Finish(Box<Finish>),
    /// Tell of a run refused before it took anything.
    Notify(Notify),
}

impl Command {
    /// Its `command` key.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Prepare(_) => "prepare",
            Command::Finish(_) => "finish",
            Command::Notify(_) => "notify",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepare {
    /// The execution's input, whole.
    pub input: Value,
    /// The execution's name (the run's ID).
    pub execution: String,
    /// Its ARN (empty: the name stands for it).
    #[serde(default)]
    pub execution_arn: String,
    /// The hosted zones the deployment may write records in (None: any zone;
    /// a deployment that names none, or one made before the option).
    #[serde(default)]
    pub hosted_zones: Option<Vec<String>>,
    /// The deployment's notification topic ("" without one): a recovery that
    /// finds a run whose Finish never told of its end tells of it.
    #[serde(default)]
    pub notify_topic_arn: String,
}

/// How a run ended, as Finish records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    Planned,
    Succeeded,
    Failed,
}

impl Ended {
    pub fn as_str(&self) -> &'static str {
        match self {
            Ended::Planned => "planned",
            Ended::Succeeded => "succeeded",
            Ended::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finish {
    pub status: Ended,
    /// What the run did (a recovery's, the action it recovers).
    #[serde(default)]
    pub action: String,
    /// What the person asked for.
    pub requested: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub execution_arn: String,
    #[serde(default)]
    pub spec: Value,
    /// Prepare's answer about the lock.
    #[serde(default)]
    pub lock: Value,
    /// Each tier's last outcome, by tier.
    #[serde(default)]
    pub tiers: Map<String, Value>,
    /// A failed run's error and cause.
    #[serde(default)]
    pub failure: Option<Value>,
    /// Where a failed run is told.
    #[serde(default)]
    pub notify_topic_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    /// The refusal's error and cause.
    pub failure: Value,
    /// The execution's input.
    pub input: Value,
    pub execution_arn: String,
    pub notify_topic_arn: String,
}

/// The payload as its command, and the keys of the payload the command does
/// not read (a key misspelt on one side, or one this version does not know).
pub fn read(payload: &Value) -> Result<(Command, Vec<String>), serde_json::Error> {
    let command: Command = serde_json::from_value(payload.clone())?;
    let back = serde_json::to_value(&command)?;
    let unread = payload
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| back.get(k.as_str()).is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok((command, unread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_reads_into_its_command_and_a_misspelt_key_is_refused() {
        let p = json!({"command": "prepare", "input": {"stack": "s"}, "execution": "e", "executionArn": "arn:e", "hostedZones": ["Z1"], "notifyTopicArn": "t"});
        let c: Command = serde_json::from_value(p).unwrap();
        assert_eq!(c.name(), "prepare");
        let Command::Prepare(p) = c else {
            panic!("not a prepare")
        };
        assert_eq!(p.hosted_zones, Some(vec!["Z1".to_string()]));
        let misspelt =
            json!({"command": "prepare", "input": {}, "execution": "e", "executionARN": "arn:e"});
        let (_, unread) = read(&misspelt).unwrap();
        assert_eq!(unread, vec!["executionARN".to_string()]);
        let (_, unread) = read(&json!({"command": "notify", "failure": {}, "input": {}, "executionArn": "a", "notifyTopicArn": "t"})).unwrap();
        assert!(unread.is_empty(), "{unread:?}");
        let missing = json!({"command": "finish", "status": "failed"});
        let e = read(&missing).unwrap_err().to_string();
        assert!(e.contains("requested"), "{e}");
        let unknown = json!({"command": "restart"});
        assert!(serde_json::from_value::<Command>(unknown).is_err());
    }
}
