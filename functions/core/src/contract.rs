//! The tier contract: one JSON event in, one JSON outcome out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TierError;
use crate::naming::Tier;
use crate::outputs::{self, DeploymentInputs, Upstream};
use crate::spec::{parse_strict, InvalidSpec, Problem, StackSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Read-only: the changes apply would make.
    Plan,
    /// Converge toward the spec, idempotently; never waits.
    Apply,
    /// Read-only readiness poll.
    Check,
    /// Delete this tier's resources (all of the stack's, or one run's).
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything of the stack (the user's destroy).
    #[default]
    Stack,
    /// Only what run `id` created (the rollback).
    Run,
}

/// Which of a tier's work an event asks for. A create runs each piece of work
/// as soon as what it uses exists: the database and the load balancer need the
/// network's subnets and security groups, not its NAT gateways (only Metabase's
/// image pull does), so the create phase applies the network's `foundation`
/// and waits for its `nat-gateways` beside the database and the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// Everything the tier owns, ready when all of it is (plan, destroy, a
    /// direct call).
    #[default]
    All,
    /// The network: every resource converged; ready without waiting for the
    /// NAT gateways to become available.
    Foundation,
    /// The network's NAT gateways: a check, ready when each is available (it
    /// reads them alone).
    NatGateways,
    /// The return from a failed upgrade, after its rollback: the app's
    /// service put on the database the data tier's rollback restored from the
    /// snapshot taken before the upgrade (its new password's secret, its
    /// endpoint), ready when Metabase's version before is healthy on it.
    Return,
}

impl Part {
    pub fn is_all(&self) -> bool {
        *self == Part::All
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Part::All => "all",
            Part::Foundation => "foundation",
            Part::NatGateways => "nat-gateways",
            Part::Return => "return",
        }
    }

    /// Its key in the state machine's state (`$.natGateways`, `$.polls.natGateways`).
    pub fn state_key(&self) -> &'static str {
        match self {
            Part::All => "all",
            Part::Foundation => "foundation",
            Part::NatGateways => "natGateways",
            Part::Return => "upgradeReturn",
        }
    }

    /// Its own name where people follow a run (a wait apart is a row of its
    /// own); None: shown as its tier.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Part::NatGateways => Some("NAT gateways"),
            Part::Return => Some("version before"),
            Part::All | Part::Foundation => None,
        }
    }

    /// The part an outcome's `part` field names (all of it when absent).
    pub fn of(outcome: &Value) -> Part {
        outcome
            .get("part")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default()
    }

    /// The tier that does this part (None: any tier, all of it).
    pub fn tier(&self) -> Option<Tier> {
        match self {
            Part::All => None,
            Part::Foundation | Part::NatGateways => Some(Tier::Network),
            Part::Return => Some(Tier::App),
        }
    }

    /// The parts the state machine waits for in loops of their own (each with a
    /// poll counter of its own, keyed by [`Part::state_key`]).
    pub const WAITED_APART: &'static [Part] = &[Part::NatGateways];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The execution name; stamped on what the run creates (`mbstack:created-by`).
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub verb: Verb,
    pub spec: StackSpec,
    pub run: Run,
    /// Outputs of the tiers this one depends on, keyed by tier.
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Which of the tier's work (default: all of it).
    #[serde(default, skip_serializing_if = "Part::is_all")]
    pub part: Part,
    /// An apply again (a tier that applies until ready, see
    /// [`crate::naming::TierInfo::applies_again`]): the changes its passes
    /// before made, kept at the front of this pass's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes_before: Vec<Change>,
}

impl Event {
    pub fn new(verb: Verb, spec: StackSpec, run_id: impl Into<String>, scope: Scope) -> Self {
        Self {
            verb,
            spec,
            run: Run {
                id: run_id.into(),
                scope,
            },
            inputs: Map::new(),
            part: Part::All,
            changes_before: Vec::new(),
        }
    }

    /// Parses an event strictly (unknown fields anywhere are errors) and validates
    /// its spec and run id.
    pub fn parse(value: &Value) -> Result<Self, TierError> {
        if let Some(spec) = value.get("spec") {
            let shape = crate::spec::section_shapes(spec);
            if !shape.is_empty() {
                let problems = shape
                    .into_iter()
                    .map(|p| Problem::new(format!("spec.{}", p.path), p.message))
                    .collect();
                return Err(InvalidSpec(problems).into());
            }
        }
        let event: Event = parse_strict(value).map_err(|e| {
            InvalidSpec(
                e.0.into_iter()
                    .map(|p| Problem::new(p.path, p.message))
                    .collect(),
            )
        })?;
        // Paths relative to the event, as the unknown-field paths above are.
        let mut problems: Vec<Problem> = match event.spec.validate() {
            Ok(()) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|p| {
                        let path = if p.path.is_empty() {
                            "spec".to_string()
                        } else {
                            format!("spec.{}", p.path)
                        };
                        Problem::new(path, p.message)
                    })
                    .collect()
            }
        };
        let id = &event.run.id;
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(Problem::new(
                "run.id",
                format!("{id:?} is not an execution name: use 1 to 80 of a-z, A-Z, 0-9, - and _"),
            ));
        }
        if problems.is_empty() {
            Ok(event)
        } else {
            Err(InvalidSpec(problems).into())
        }
    }

    /// The outputs of the tier before (`NetworkOutputs`, …) as handed in by
    /// the state machine; empty when absent.
    pub fn upstream<T: Upstream>(&self) -> Result<T, TierError> {
        outputs::read(&self.inputs, T::TIER.as_str())
    }

    /// What the state machine says of its deployment; empty when absent.
    pub fn deployment(&self) -> Result<DeploymentInputs, TierError> {
        outputs::read(&self.inputs, outputs::DEPLOYMENT_KEY)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ready,
    Pending,
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Adopt,
    None,
}

impl Run {
    pub fn new(id: impl Into<String>, scope: Scope) -> Self {
        Self {
            id: id.into(),
            scope,
        }
    }
}

impl Verb {
    /// As the contract spells it (`apply`, `check`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Verb::Plan => "plan",
            Verb::Apply => "apply",
            Verb::Check => "check",
            Verb::Destroy => "destroy",
        }
    }
}

impl State {
    /// As the contract spells it (`ready`, `gone`).
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Pending => "pending",
            State::Gone => "gone",
        }
    }
}

impl Action {
    /// As the contract spells it (`create`, `none`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Adopt => "adopt",
            Action::None => "none",
        }
    }
}

/// One resource's change, made (apply, destroy) or planned (plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub kind: String,
    pub id: String,
    pub action: Action,
    #[serde(default)]
    pub detail: String,
}

impl Change {
    pub fn new(
        kind: &str,
        id: impl Into<String>,
        action: Action,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.to_string(),
            id: id.into(),
            action,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub tier: Tier,
    pub state: State,
    pub message: String,
    /// How long the state machine waits before the next check (0 when not pending).
    pub retry_after_seconds: u32,
    #[serde(default)]
    pub outputs: Map<String, Value>,
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The part of the tier's work this answers for (the event's).
    #[serde(default, skip_serializing_if = "Part::is_all")]
    pub part: Part,
}

impl Outcome {
    /// Whether any change in the outcome is a real one (not `none`).
    pub fn changed(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::None)
    }
}

/// The state machine's placeholder for the deployment's notification topic
/// (`mbstack deploy --notify`): the control function publishes a failed run
/// there; a deployment without notifications fills it with "".
pub const NOTIFY_TOPIC_PLACEHOLDER: &str = "${NotifyTopicArn}";

/// In a policy's resource ARN: one ARN per hosted zone the deployment names
/// (`mbstack deploy --hosted-zones`), `*` when it names none in particular.
pub const HOSTED_ZONE_PLACEHOLDER: &str = "${HostedZoneId}";

/// In the state machine's definition: the hosted zones the deployment names,
/// as a JSON array (null: any zone).
pub const HOSTED_ZONES_PLACEHOLDER: &str = "${HostedZones}";

/// The state machine's states a run has entered once its work is done (all
/// that is left is to record it): a run that ends in one of them uncaught is
/// not rolled back by its recovery, only its lock released.
pub const WORK_DONE_STATES: &[&str] = &[
    "Record success",
    "Recording the success failed",
    "Record plan",
    "Done",
];

/// The states a run has entered once its rollback (or the report of a
/// stopped destroy) is done: its recovery releases the lock and undoes
/// nothing more.
pub const ROLLED_BACK_STATES: &[&str] = &[
    "Rolled back",
    "Rollback failed",
    "Report the stopped destroy",
    "Check the error name",
    "Name the state machine error",
    "Record failure",
    "Recording the failure failed",
    "Did a recovery end?",
    "Failed",
    "Recovered",
];

/// Every tier's poll counter at zero, as the state machine keeps them at
/// `$.polls` (a phase starts counting afresh).
pub fn poll_counters() -> Value {
    Tier::PROVISIONED
        .iter()
        .map(|t| t.to_string())
        .chain(Part::WAITED_APART.iter().map(|p| p.state_key().to_string()))
        .map(|key| (key, serde_json::json!({"n": 0})))
        .collect::<Map<String, Value>>()
        .into()
}

/// The inputs a tier gets from the outcomes of the tiers before it.
pub fn inputs_from<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Map<String, Value> {
    outcomes
        .into_iter()
        .map(|o| {
            (
                o.tier.as_str().to_string(),
                Value::Object(o.outputs.clone()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_verb_and_a_state_are_spelled_as_the_contract_spells_them() {
        for v in [Verb::Plan, Verb::Apply, Verb::Check, Verb::Destroy] {
            assert_eq!(json!(v), json!(v.as_str()));
        }
        for s in [State::Ready, State::Pending, State::Gone] {
            assert_eq!(json!(s), json!(s.as_str()));
        }
    }

    #[test]
    fn an_action_is_spelled_as_the_contract_spells_it() {
        for a in [
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::Adopt,
            Action::None,
        ] {
            assert_eq!(json!(a), json!(a.as_str()));
        }
    }

    #[test]
    fn event_round_trip_and_strictness() {
        let ev = Event::new(Verb::Apply, StackSpec::new("s"), "run-1", Scope::Run);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["run"], json!({"id": "run-1", "scope": "run"}));
        assert_eq!(Event::parse(&v).unwrap(), ev);

        let mut bad = v.clone();
        bad["spec"]["network"]["cidrr"] = json!("x");
        bad["verb"] = json!("apply");
        match Event::parse(&bad) {
            Err(TierError::InvalidSpec(e)) => assert_eq!(e.paths(), vec!["spec.network.cidrr"]),
            other => panic!("{other:?}"),
        }
        let mut bad_verb = v.clone();
        bad_verb["verb"] = json!("nuke");
        match Event::parse(&bad_verb) {
            Err(TierError::InvalidSpec(e)) => assert_eq!(e.paths(), vec!["verb"]),
            other => panic!("{other:?}"),
        }
        let mut bad_cidr = v.clone();
        bad_cidr["spec"]["network"]["cidr"] = json!("8.8.0.0/16");
        assert!(
            matches!(Event::parse(&bad_cidr), Err(TierError::InvalidSpec(e)) if e.paths() == vec!["spec.network.cidr"])
        );
        let mut bad_run = v;
        bad_run["run"]["id"] = json!("has space");
        assert!(
            matches!(Event::parse(&bad_run), Err(TierError::InvalidSpec(e)) if e.paths() == vec!["run.id"])
        );
    }

    #[test]
    fn outcome_round_trip() {
        let o = Outcome {
            tier: Tier::LoadBalancer,
            state: State::Pending,
            message: "waiting".into(),
            retry_after_seconds: 15,
            outputs: Map::new(),
            changes: vec![Change::new(
                "nat-gateway",
                "nat-1",
                Action::Create,
                "in subnet-1",
            )],
            part: Part::All,
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["tier"], json!("loadbalancer"));
        assert_eq!(v["retryAfterSeconds"], json!(15));
        assert_eq!(v["changes"][0]["action"], json!("create"));
        assert_eq!(serde_json::from_value::<Outcome>(v).unwrap(), o);
        assert!(o.changed());
    }
}
