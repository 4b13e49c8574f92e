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
/// The deployment's notification topic ("" when it has none): a failed run
/// publishes one message there (the control function does).
pub const NOTIFY_TOPIC: &str = mbstack_core::contract::NOTIFY_TOPIC_PLACEHOLDER;

/// A tier as the state machine's loops see it: its key, the label its state
/// names use and its poll bound, all from core's tier table.
struct Tier {
    /// Where its outcome and poll counter live (`$.<key>`, `$.polls.<key>`).
    key: &'static str,
    /// The function it invokes (a tier's key).
    function: &'static str,
    label: &'static str,
    max_polls: u32,
    /// Which of the tier's work its events ask for (None: all of it).
    part: Option<Part>,
}

const fn of(tier: mbstack_core::Tier) -> Tier {
    let info = tier.info();
    Tier {
        key: tier.as_str(),
        function: tier.as_str(),
        label: info.state_label,
        max_polls: info.max_polls,
        part: None,
    }
}

/// A tier's readiness that only later stages need, waited for apart (a check
/// loop of its own) beside the tiers of the stage after the tier's own.
struct WaitApart {
    part: Part,
    /// The part the tier's own create loop applies instead of all of it.
    then: Part,
    /// The output of the tier's own loop that says the wait is over already
    /// (a repair of a running stack then makes no call for it).
    already: &'static str,
}

/// The network is usable by the database and the load balancer once its
/// subnets and security groups exist; only the app's tasks need the NAT
/// gateways (Metabase's image comes through them): the create phase applies
/// the network's foundation and waits for the NAT gateways beside the next stage.
const WAITS: &[(T, WaitApart)] = &[(
    T::Network,
    WaitApart {
        part: Part::NatGateways,
        then: Part::Foundation,
        already: "natGatewaysAvailable",
    },
)];

impl WaitApart {
    fn label(&self) -> &'static str {
        self.part.label().unwrap_or("wait")
    }
}

fn wait_of(t: T) -> Option<&'static WaitApart> {
    WAITS.iter().find(|(w, _)| *w == t).map(|(_, w)| w)
}

use mbstack_core::Tier as T;
use mbstack_core::{Part, Scope, State, Verb};

/// The order the tiers run in: each stage after the one before it, the tiers
/// of one stage in parallel. A rollback and a destroy run the stages in
/// reverse; a plan runs every tier one after the other.
pub const STAGES: &[&[T]] = &[&[T::Network], &[T::Data, T::LoadBalancer], &[T::App]];

/// Whether a tier runs in a Parallel state (its stage has more than one).
fn in_parallel(t: T) -> bool {
    STAGES.iter().any(|s| s.len() > 1 && s.contains(&t))
}

/// Where a tier's outcome lives in the state: `$.network`, or `$.tiers.data`
/// for a tier of a parallel stage (the Parallel hands its branches back there).
fn result_path(t: T) -> String {
    if in_parallel(t) {
        format!("$.tiers.{}", t.as_str())
    } else {
        format!("$.{}", t.as_str())
    }
}

/// What a tier reads to plan or apply: the outputs of every tier of the stages
/// before its own, and (the app) what the deployment says of itself.
fn inputs(t: T) -> Value {
    let mut m = Map::new();
    if t == T::App {
        m.insert(
            mbstack_core::outputs::DEPLOYMENT_KEY.into(),
            json!({
                "roleBoundaryArn": ROLE_BOUNDARY,
                "eventsRoleArn": EVENTS_ROLE,
                "stateMachineArn.$": "$$.StateMachine.Id"
            }),
        );
    }
    for earlier in STAGES.iter().take_while(|s| !s.contains(&t)) {
        for u in *earlier {
            m.insert(
                format!("{}.$", u.as_str()),
                json!(format!("{}.status.outputs", result_path(*u))),
            );
        }
    }
    Value::Object(m)
}

/// Every tier in stage order.
fn in_order() -> impl DoubleEndedIterator<Item = T> + Clone {
    STAGES.iter().flat_map(|s| s.iter().copied())
}

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
            // AWS's list of the Lambda service's transient errors ("Handle
            // transient Lambda service exceptions", Step Functions best practices).
            "ErrorEquals": ["Lambda.ClientExecutionTimeoutException", "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
            "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2, "JitterStrategy": "FULL"
        },
        {
            // A function that crashed or timed out (its outcome lost; Lambda
            // names a time-out `Sandbox.Timedout`, or `Lambda.Unknown` when it
            // cannot say): every task is idempotent, so running it again is
            // safe and finishes the work.
            "ErrorEquals": ["Runtime.ExitError", "Runtime.Unknown", "Sandbox.Timedout", "Lambda.Unknown"],
            "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 2, "JitterStrategy": "FULL"
        },
        {
            "ErrorEquals": ["Mbstack.Retryable"],
            "IntervalSeconds": 5, "MaxAttempts": 8, "BackoffRate": 1.5, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
        },
        {
            // An apply waiting for AWS between two of its changes (a switch
            // of the NAT): the same apply again, steadily, for 10 minutes.
            "ErrorEquals": ["Mbstack.Waiting"],
            "IntervalSeconds": mbstack_core::error::WAITING_RETRY_SECONDS,
            "MaxAttempts": mbstack_core::error::WAITING_RETRIES, "BackoffRate": 1
        }
    ])
}

/// How long a password check waits for a stack another run holds
/// (`Mbstack.Busy`): every 30 s, an hour in all; then it reports the lock as a
/// refused run does, and the stack's next daily check tries again.
pub const BUSY_RETRY_SECONDS: u64 = 30;
pub const BUSY_RETRIES: u64 = 120;

/// Prepare's retriers: every task's, and the wait of a password check for a
/// stack another run holds.
fn prepare_retry() -> Value {
    let mut r = retry();
    if let Some(list) = r.as_array_mut() {
        list.push(json!({
            "ErrorEquals": ["Mbstack.Busy"],
            "IntervalSeconds": BUSY_RETRY_SECONDS, "MaxAttempts": BUSY_RETRIES, "BackoffRate": 1
        }));
    }
    r
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
fn tier_event(verb: Verb, scope: Scope, inputs: Value, part: Option<Part>) -> Value {
    let mut event = json!({"verb": verb, "spec.$": "$.spec", "run": {"id.$": "$.runId", "scope": scope}, "inputs": inputs});
    if let Some(part) = part {
        event["part"] = json!(part.as_str());
    }
    event
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
    way: Way,
    first: Verb,
    again: Verb,
    scope: Scope,
    done_state: State,
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
    let (ready, phase, mut again) = match l.way {
        Way::Create if t.label.ends_with('s') => (
            format!("Are the {} ready?", t.label),
            String::new(),
            format!("Check the {} again", t.label),
        ),
        Way::Create => (
            format!("Is the {} ready?", t.label),
            String::new(),
            format!("Check the {} again", t.label),
        ),
        Way::RollBack => (
            format!("Is the {} rolled back?", t.label),
            " rollback".to_string(),
            format!("Roll back the {} again", t.label),
        ),
        Way::PutBack => (
            format!("Is the {} back?", t.label),
            " return".to_string(),
            format!("Put back {} again", t.label),
        ),
        Way::Delete => (
            format!("Is the {} deleted?", t.label),
            " deletion".to_string(),
            format!("Delete the {} again", t.label),
        ),
    };
    if l.again == Verb::Apply {
        again = format!("Apply the {} again", t.label);
    }
    let entry = match l.first {
        Verb::Check => format!("Check the {}", t.label),
        _ => format!("{} {}", l.way.label(), t.label),
    };
    let count = format!("Count {}{phase} polls", t.label);
    let bound = format!("Waited too long for the {}{phase}?", t.label);
    let wait = format!("Wait for the {}{phase}", t.label);
    let timeout = format!("{}{phase} timed out", capitalize(t.label));
    let catch = l.on_error.map(|to| (to, l.error_path));

    let first_selector = json!({"changes.$": "$.Payload.changes", "status": status_selector()});
    states.insert(
        entry.clone(),
        invoke(
            t.function,
            tier_event(l.first, l.scope, l.inputs.clone(), t.part),
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
            "Choices": [{"Variable": format!("$.{key}.status.state"), "StringEquals": l.done_state.as_str(), "Next": l.next}],
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
    let again_selector = if l.again == Verb::Check {
        status_selector()
    } else {
        json!({"changes.$": "$.Payload.changes", "status": status_selector()})
    };
    let again_path = if l.again == Verb::Check {
        format!("$.{key}.status")
    } else {
        format!("$.{key}")
    };
    let mut again_event = tier_event(l.again, l.scope, l.inputs, t.part);
    if l.again != Verb::Check {
        // The changes of the passes before, kept by the tier in front of its
        // own: the run's output and its notification list every one.
        again_event["changesBefore.$"] = json!(format!("$.{key}.changes"));
    }
    states.insert(
        again.clone(),
        invoke(
            t.function,
            again_event,
            again_selector,
            &again_path,
            Some(&ready),
            catch,
        ),
    );
    let cause = format!(
        "the {} did not become {} within {} polls",
        t.label,
        l.done_state.as_str(),
        t.max_polls
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

/// How a loop goes through a tier: the first words of its states' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Create,
    RollBack,
    PutBack,
    Delete,
}

impl Way {
    fn label(&self) -> &'static str {
        match self {
            Way::Create => "Create",
            Way::RollBack => "Roll back",
            Way::PutBack => "Put back",
            Way::Delete => "Delete",
        }
    }
}

/// One of the three ways through the tiers' loops. Every state name a phase
/// makes starts with its way's label or names its `branch_end`, and names
/// the tier: names are unique across the whole definition by construction
/// (AWS refuses a duplicate with DUPLICATE_STATE_NAME).
#[derive(Clone, Copy)]
struct Phase {
    way: Way,
    first: Verb,
    again: Verb,
    scope: Scope,
    done: State,
    /// A Parallel branch's last state is "<Tier label> <branch_end>".
    branch_end: &'static str,
    /// The stages in reverse (undoing what the forward order made).
    reverse: bool,
    /// Where a failure goes, and where its error is kept.
    on_error: (&'static str, &'static str),
}

impl Phase {
    /// The tier as this phase's loop sees it. Undoing the service (a rollback)
    /// is a scale-down and a delete: half the create's bound.
    fn tier(&self, t: T) -> Tier {
        let full = of(t);
        match (self.scope, t) {
            (Scope::Run, T::App) => Tier {
                max_polls: full.max_polls / 2,
                ..full
            },
            // A rollback that returns the database from a failed upgrade
            // renames (~10 min), restores (10–30 min, longer Multi-AZ) and
            // turns the managed password on: twice a create's bound.
            (Scope::Run, T::Data) => Tier {
                max_polls: full.max_polls * 2,
                ..full
            },
            _ if self.first == Verb::Apply => Tier {
                part: wait_of(t).map(|w| w.then),
                ..full
            },
            _ => full,
        }
    }

    /// The waits this phase runs beside `stage` (the i-th in its order): a
    /// create's waits apart for the tiers of the stage before. Undoing waits
    /// for nothing apart.
    fn waits_beside(&self, i: usize) -> Vec<(T, &'static WaitApart)> {
        if self.reverse || self.first != Verb::Apply || i == 0 {
            return Vec::new();
        }
        let before = self.stages()[i - 1];
        WAITS
            .iter()
            .filter(|(t, _)| before.contains(t))
            .map(|(t, w)| (*t, w))
            .collect()
    }

    /// The check loop of a wait apart.
    fn wait_tier(&self, t: T, w: &WaitApart) -> Tier {
        Tier {
            key: w.part.state_key(),
            label: w.label(),
            part: Some(w.part),
            ..of(t)
        }
    }

    /// The stages in the order this phase runs them.
    fn stages(&self) -> Vec<&'static [T]> {
        let mut stages = STAGES.to_vec();
        if self.reverse {
            stages.reverse();
        }
        stages
    }

    /// What a tier reads: an apply its upstream outputs; a destroy nothing (it
    /// finds what to delete by tags), but the data tier's rollback the
    /// snapshot to return the database to when the run rolled out another
    /// Metabase version (`$.upgrade`, set on the way into the rollback).
    fn inputs(&self, t: T) -> Value {
        match (self.first, self.scope, t) {
            (Verb::Apply, _, _) => inputs(t),
            (_, Scope::Run, T::Data) => json!({"upgrade.$": "$.upgrade"}),
            _ => json!({}),
        }
    }

    /// The name of the i-th stage's first state: its loop's, or its Parallel's.
    fn entry(&self, i: usize) -> String {
        let stage = self.stages()[i];
        let mut labels: Vec<&str> = stage.iter().map(|t| t.info().state_label).collect();
        let waits = self.waits_beside(i);
        if waits.is_empty() {
            return format!("{} {}", self.way.label(), labels.join(" and "));
        }
        labels.extend(waits.iter().map(|(_, w)| w.label()));
        let last = labels.pop().unwrap_or_default();
        format!(
            "{} {}, wait for the {last}",
            self.way.label(),
            labels.join(" and ")
        )
    }

    /// A tier's loop in this phase, going on to `next`; failures go to
    /// `on_error` (None: the state machine's branch fails).
    fn tier_loop<'a>(
        &'a self,
        tier: &'a Tier,
        t: T,
        next: &'a str,
        on_error: Option<(&'a str, &'a str)>,
    ) -> Loop<'a> {
        // A create loop of a tier that applies until ready applies again.
        let again = if self.first == Verb::Apply && t.info().applies_again {
            Verb::Apply
        } else {
            self.again
        };
        Loop {
            tier,
            way: self.way,
            first: self.first,
            again,
            scope: self.scope,
            done_state: self.done,
            inputs: self.inputs(t),
            next,
            on_error: on_error.map(|e| e.0),
            error_path: on_error.map(|e| e.1).unwrap_or("$.error"),
        }
    }

    /// The i-th stage's states, going on to `next`.
    fn add_stage(&self, states: &mut Map<String, Value>, i: usize, next: &str) {
        let stage = self.stages()[i];
        match (stage, self.waits_beside(i).is_empty()) {
            ([t], true) => {
                let tier = self.tier(*t);
                add_loop(states, self.tier_loop(&tier, *t, next, Some(self.on_error)));
            }
            _ => {
                states.insert(self.entry(i), self.parallel(i, next));
            }
        }
    }

    /// Every stage, in this phase's order; the last goes on to `last_next`.
    /// Returns the phase's first state.
    fn add_stages(&self, states: &mut Map<String, Value>, last_next: &str) -> String {
        let n = self.stages().len();
        for i in 0..n {
            let next = if i + 1 < n {
                self.entry(i + 1)
            } else {
                last_next.to_string()
            };
            self.add_stage(states, i, &next);
        }
        if n == 0 {
            return String::new();
        }
        self.entry(0)
    }

    /// A Parallel step with a branch per tier of the i-th stage (and per wait
    /// apart beside it); each branch hands back only its outcome, gathered at
    /// `$.tiers.<key>`.
    fn parallel(&self, i: usize, next: &str) -> Value {
        let mut branches = Vec::new();
        let mut selector = Map::new();
        let loops = self.stages()[i]
            .iter()
            .map(|t| (self.tier(*t), *t, self.first))
            .chain(
                self.waits_beside(i)
                    .into_iter()
                    .map(|(t, w)| (self.wait_tier(t, w), t, Verb::Check)),
            );
        let waits = self.waits_beside(i);
        for (n, (tier, t, first)) in loops.enumerate() {
            let done = format!("{} {}", capitalize(tier.label), self.branch_end);
            let mut states = Map::new();
            // The branch fails; the Parallel's Catch takes over.
            let mut l = self.tier_loop(&tier, t, &done, None);
            l.first = first;
            if first == Verb::Check {
                // A wait apart reads nothing upstream.
                l.inputs = json!({});
            }
            let mut entry = add_loop(&mut states, l);
            if let Some((_, w)) = waits.iter().find(|(_, w)| w.part.state_key() == tier.key) {
                // Over already when the tier's own apply saw it done.
                let ask = format!("Are the {} available already?", w.label());
                let were = format!("The {} were available", w.label());
                states.insert(
                    ask.clone(),
                    json!({
                        "Type": "Choice",
                        "Choices": [{
                            "Variable": format!("{}.status.outputs.{}", result_path(t), w.already),
                            "BooleanEquals": true,
                            "Next": were
                        }],
                        "Default": entry
                    }),
                );
                states.insert(
                    were,
                    json!({
                        "Type": "Pass",
                        "Result": {"status": {"state": State::Ready.as_str(), "message": format!("the {} were available", w.label())}},
                        "ResultPath": format!("$.{}", tier.key),
                        "Next": done
                    }),
                );
                entry = ask;
            }
            states.insert(
                done,
                json!({"Type": "Succeed", "OutputPath": format!("$.{}", tier.key)}),
            );
            branches.push(branch(entry, states));
            selector.insert(format!("{}.$", tier.key), json!(format!("$[{n}]")));
        }
        json!({
            "Type": "Parallel",
            "Branches": branches,
            "ResultSelector": selector,
            "ResultPath": "$.tiers",
            "Next": next,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": self.on_error.1, "Next": self.on_error.0}]
        })
    }
}

const UPGRADED: &str = "Did the run roll out another Metabase version?";
const KEEP_SNAPSHOT: &str = "Return the database to the snapshot before it";
const NO_UPGRADE: &str = "No version to return from";
const ENDED_UPGRADED: &str = "Did the ended run roll out another Metabase version?";
const KEEP_ENDED_SNAPSHOT: &str = "Return the database to the snapshot the ended run took";
const RETURNED: &str = "Was the database returned?";

/// After a rollback that returned the database to the snapshot taken before
/// an upgrade: the app's `return` loop (apply until ready) puts Metabase's
/// version before on it. It keeps its outcome at `$.app`, after the app's
/// rollback changes (the run's output and notification list both).
fn add_return(s: &mut Map<String, Value>, next: &str) {
    let tier = Tier {
        part: Some(Part::Return),
        label: "previous Metabase",
        ..of(T::App)
    };
    let l = Loop {
        tier: &tier,
        way: Way::PutBack,
        first: Verb::Apply,
        again: Verb::Apply,
        scope: Scope::Run,
        done_state: State::Ready,
        inputs: json!({
            "data.$": "$.tiers.data.status.outputs",
            (mbstack_core::outputs::DEPLOYMENT_KEY): inputs(T::App)[mbstack_core::outputs::DEPLOYMENT_KEY].clone()
        }),
        next,
        on_error: Some(ROLL_BACK.on_error.0),
        error_path: ROLL_BACK.on_error.1,
    };
    let entry = add_loop(s, l);
    if let Some(p) = s
        .get_mut(&entry)
        .and_then(|t| t.pointer_mut("/Parameters/Payload"))
    {
        p["changesBefore.$"] = json!("$.app.changes");
    }
    let reset = "Reset the poll counters for the return";
    s.insert(
        reset.into(),
        reset_polls(
            "The rollback is done; the return's loop counts anew",
            &entry,
        ),
    );
    s.insert(
        RETURNED.into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.tiers.data.status.outputs.returnedTo", "IsPresent": true, "Next": reset}],
            "Default": next
        }),
    );
}

const CREATE: Phase = Phase {
    way: Way::Create,
    first: Verb::Apply,
    again: Verb::Check,
    scope: Scope::Stack,
    done: State::Ready,
    branch_end: "ready",
    reverse: false,
    on_error: ("Roll back", "$.error"),
};
const ROLL_BACK: Phase = Phase {
    way: Way::RollBack,
    first: Verb::Destroy,
    again: Verb::Destroy,
    scope: Scope::Run,
    done: State::Gone,
    branch_end: "rolled back",
    reverse: true,
    on_error: ("Rollback failed", "$.rollbackError"),
};
const DELETE: Phase = Phase {
    way: Way::Delete,
    first: Verb::Destroy,
    again: Verb::Destroy,
    scope: Scope::Stack,
    done: State::Gone,
    branch_end: "deleted",
    reverse: true,
    on_error: ("Destroy failed", "$.error"),
};

/// The state that sets every tier's poll counter to 0 before a phase of loops
/// (`Prepare` gets the same counters from control): the one place they reset.
fn reset_polls(comment: &str, next: &str) -> Value {
    json!({
        "Type": "Pass",
        "Comment": comment,
        "Result": mbstack_core::contract::poll_counters(),
        "ResultPath": "$.polls",
        "Next": next
    })
}

/// The Fail states a run ends in when its Finish could not finish (a record,
/// the lock's release): `Mbstack.FinishFailed`, which the recovery rule
/// matches. If the run still holds its lock, its recovery releases it and
/// tells of the run (whoever releases a failed run's lock tells of it).
pub const FINISH_FAILED: &str = "Mbstack.FinishFailed";

/// The state a finish that failed goes to.
fn finish_failed_state(status: &str) -> &'static str {
    match status {
        "failed" => "Recording the failure failed",
        _ => "Recording the success failed",
    }
}

fn finish_failed(s: &mut Map<String, Value>, status: &str) {
    s.insert(
        finish_failed_state(status).into(),
        json!({"Type": "Fail", "Error": FINISH_FAILED, "CausePath": "$.finishError.Cause"}),
    );
}

fn finish(status: &str, next: &str, path: &str) -> Value {
    let mut payload = json!({
        "command": "finish", "status": status, "action.$": "$.action", "requested.$": "$.requested",
        "runId.$": "$.runId", "executionArn.$": "$.executionArn", "spec.$": "$.spec", "lock.$": "$.lock",
        "tiers": in_order()
            .map(|t| (format!("{}.$", t.as_str()), json!(result_path(t))))
            .collect::<Map<String, Value>>()
    });
    if status == "failed" {
        // The error the execution fails with, for the notification.
        payload["failure.$"] = json!("$.failure");
    }
    if status != "planned" {
        // A failed run is told of; so is a run whose records could not be
        // written after its work was done (it fails too).
        payload["notifyTopicArn"] = json!(NOTIFY_TOPIC);
    }
    // A plan's finish holds no lock and writes no record.
    let catch = (status != "planned").then(|| (finish_failed_state(status), "$.finishError"));
    let mut t = invoke(
        "control",
        payload,
        json!({"result.$": "$.Payload"}),
        path,
        Some(next),
        catch,
    );
    t["Comment"] = json!("Releases the stack's lock, stores the spec after a success, and shapes the execution's output");
    t
}

/// Where each tier's outcome is kept, empty before a run: `network`, `tiers`
/// (the parallel stages' tiers), `app`.
fn empty_outcomes() -> Map<String, Value> {
    let mut m = Map::new();
    for stage in STAGES {
        match stage {
            [t] => {
                m.insert(t.as_str().into(), json!({}));
            }
            many => {
                let tiers = m.entry("tiers").or_insert_with(|| json!({}));
                for t in *many {
                    tiers[t.as_str()] = json!({});
                }
            }
        }
    }
    m
}

/// The whole definition, with `${...FunctionArn}` placeholders.
pub fn definition() -> Value {
    let mut s = Map::new();
    let mut selector = json!({
        "action.$": "$.Payload.action", "requested.$": "$.Payload.requested", "spec.$": "$.Payload.spec",
        "runId.$": "$.Payload.runId", "executionArn.$": "$.Payload.executionArn", "lock.$": "$.Payload.lock",
        "polls.$": "$.Payload.polls", "error.$": "$.Payload.error", "recovery.$": "$.Payload.recovery"
    });
    if let Some(m) = selector.as_object_mut() {
        m.extend(empty_outcomes());
    }
    s.insert(
        "Prepare".into(),
        json!({
            "Type": "Task",
            "Comment": "Merge the input over the stored spec, validate all of it (every problem listed) before anything exists, take the stack's lock",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {
                "FunctionName": placeholder("control"),
                "Payload": {"command": "prepare", "input.$": "$", "execution.$": "$$.Execution.Name", "executionArn.$": "$$.Execution.Id", "hostedZones": mbstack_core::contract::HOSTED_ZONES_PLACEHOLDER, "notifyTopicArn": NOTIFY_TOPIC}
            },
            "ResultSelector": selector,
            "ResultPath": "$",
            "Retry": prepare_retry(),
            // The input may be anything (an array, a string): the error
            // replaces it, the input stays in the context object.
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "Report the refusal"}],
            "Next": "Which action?"
        }),
    );
    // A run refused before it took anything (an invalid spec, a held lock):
    // the notification, then the refusal's own error.
    s.insert(
        "Report the refusal".into(),
        json!({
            "Type": "Task",
            "Comment": "Publishes the refusal to the deployment's notification topic, if it has one",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {
                "FunctionName": placeholder("control"),
                "Payload": {"command": "notify", "failure.$": "$", "input.$": "$$.Execution.Input", "executionArn.$": "$$.Execution.Id", "notifyTopicArn": NOTIFY_TOPIC}
            },
            "ResultPath": null,
            "Retry": retry(),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": "Is the refusal the state machine's?"}],
            "Next": "Is the refusal the state machine's?"
        }),
    );
    s.insert(
        "Is the refusal the state machine's?".into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.Error", "StringMatches": "States.*", "Next": "Name the refusal"}],
            "Default": "Refused"
        }),
    );
    s.insert(
        "Name the refusal".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"Error": "Mbstack.StateMachineError", "Cause.$": "States.Format('{}: {}', $.Error, $.Cause)"},
            "Next": "Refused"
        }),
    );
    s.insert(
        "Refused".into(),
        json!({"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"}),
    );
    let plan_name = |t: T| format!("Plan {}", t.info().state_label);
    let first_plan = in_order().next().map(plan_name).unwrap_or_default();
    s.insert(
        "Which action?".into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.action", "StringEquals": "destroy", "Next": "Start deleting"},
                {"Variable": "$.action", "StringEquals": "plan", "Next": first_plan},
                {"Variable": "$.action", "StringEquals": "recover", "Next": "Was the ended run a destroy?"},
                {"Variable": "$.action", "StringEquals": "nothing", "Next": "Nothing to do"}
            ],
            "Default": CREATE.entry(0)
        }),
    );

    // plan: read-only, no lock; every tier in turn, each seeing the outputs of
    // those before it.
    let tiers: Vec<T> = in_order().collect();
    for (i, t) in tiers.iter().enumerate() {
        let next = tiers
            .get(i + 1)
            .map(|n| plan_name(*n))
            .unwrap_or_else(|| "Record plan".into());
        s.insert(
            plan_name(*t),
            invoke(
                t.as_str(),
                tier_event(Verb::Plan, Scope::Stack, inputs(*t), None),
                json!({"changes.$": "$.Payload.changes", "status": status_selector()}),
                &result_path(*t),
                Some(&next),
                None,
            ),
        );
    }
    s.insert("Record plan".into(), finish("planned", "Done", "$.finish"));

    // apply
    CREATE.add_stages(&mut s, "Record success");
    s.insert(
        "Record success".into(),
        finish("succeeded", "Done", "$.finish"),
    );
    finish_failed(&mut s, "succeeded");
    s.insert(
        "Done".into(),
        json!({"Type": "Succeed", "OutputPath": "$.finish.result"}),
    );

    // recovery: a run that ended where no Catch saw it (`States.Runtime`,
    // stopped, timed out) is found by the rule on the state machine's status
    // changes, which starts `{"action": "recover", "execution": <its ARN>}`.
    // Prepare takes its lock over and gives back its run ID and spec: what it
    // created is rolled back as its own rollback would have; a destroy that
    // stopped half-way is reported, not undone.
    s.insert(
        "Was the ended run a destroy?".into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.requested", "StringEquals": "destroy", "Next": "Report the stopped destroy"}],
            "Default": "Roll back"
        }),
    );
    s.insert(
        "Report the stopped destroy".into(),
        json!({"Type": "Pass", "Parameters": {"Error.$": "$.error.Error", "Cause.$": "$.error.Cause"}, "ResultPath": "$.failure", "Next": "Check the error name"}),
    );
    s.insert(
        "Nothing to do".into(),
        json!({"Type": "Succeed", "Comment": "A recovery of a run that ended through its own Finish (or never took the stack's lock: nothing of it is left to undo), or a password check that found the tasks current; no lock was taken", "OutputPath": "$.recovery"}),
    );

    // rollback: destroy scope run, in reverse order
    s.insert(
        "Roll back".into(),
        reset_polls(
            "Delete what this run created; put back what it updated",
            UPGRADED,
        ),
    );
    // A run whose data stage put another Metabase image on record (after
    // snapshotting the database) and whose app stage put the service on it
    // may have migrated the database: its rollback returns the database to
    // that snapshot (the data tier's), then puts Metabase's version before
    // on it (the app's `return` part). One that failed before the service
    // ran the new image (before its update, or with tasks that never started
    // their container: `Mbstack.TasksNeverStarted`) only puts the record
    // back: its database is as it was, and Metabase went on writing to it.
    s.insert(
        UPGRADED.into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"And": [
                    {"Variable": "$.tiers.data.status.outputs.upgradeSnapshot", "IsPresent": true},
                    {"Variable": "$.app.status.outputs.image", "IsPresent": true},
                    {"Not": {"Variable": "$.error.Error", "StringEquals": "Mbstack.TasksNeverStarted"}}
                ], "Next": KEEP_SNAPSHOT},
                {"Variable": "$.action", "StringEquals": "recover", "Next": ENDED_UPGRADED}
            ],
            "Default": NO_UPGRADE
        }),
    );
    // A recovery: Prepare read the ended run's last state.
    s.insert(
        ENDED_UPGRADED.into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.recovery.upgradeSnapshot", "IsPresent": true, "Next": KEEP_ENDED_SNAPSHOT}],
            "Default": NO_UPGRADE
        }),
    );
    s.insert(
        KEEP_ENDED_SNAPSHOT.into(),
        json!({"Type": "Pass", "Parameters": {"snapshot.$": "$.recovery.upgradeSnapshot"}, "ResultPath": "$.upgrade", "Next": ROLL_BACK.entry(0)}),
    );
    s.insert(
        KEEP_SNAPSHOT.into(),
        json!({"Type": "Pass", "Parameters": {"snapshot.$": "$.tiers.data.status.outputs.upgradeSnapshot"}, "ResultPath": "$.upgrade", "Next": ROLL_BACK.entry(0)}),
    );
    s.insert(
        NO_UPGRADE.into(),
        json!({"Type": "Pass", "Result": {}, "ResultPath": "$.upgrade", "Next": ROLL_BACK.entry(0)}),
    );
    ROLL_BACK.add_stages(&mut s, RETURNED);
    add_return(&mut s, "Rolled back");
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
        finish("failed", "Did a recovery end?", "$.finish"),
    );
    finish_failed(&mut s, "failed");
    // A recovery that rolled back (or reported) the run it was started for has
    // done its work: it succeeds, and its notification tells of the run.
    s.insert(
        "Did a recovery end?".into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.failure.Error", "StringEquals": "RollbackFailed", "Next": "Failed"},
                {"Variable": "$.action", "StringEquals": "recover", "Next": "Recovered"}
            ],
            "Default": "Failed"
        }),
    );
    s.insert(
        "Recovered".into(),
        json!({"Type": "Succeed", "OutputPath": "$.finish.result"}),
    );
    s.insert(
        "Failed".into(),
        json!({"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}),
    );

    // destroy: scope stack
    s.insert(
        "Start deleting".into(),
        reset_polls("Delete every resource of the stack", &DELETE.entry(0)),
    );
    DELETE.add_stages(&mut s, "Record success");
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

/// The EventBridge rule that finds a run which ended where no Catch saw it.
///
/// Step Functions sends a status-change event for every end of an execution;
/// `States.ALL` catches neither `States.Runtime` nor `States.DataLimitExceeded`,
/// and a stopped (`ABORTED`) or timed-out execution runs no Catch at all. The
/// rule starts the state machine again with `{"action": "recover",
/// "execution": <the ended execution's ARN>}` for every such end (`TIMED_OUT`,
/// `ABORTED`, and `FAILED` with a `States.*` error); Prepare then finds
/// whether the run still holds its stack's lock and where it ended, and rolls
/// back what it created unless its work or its rollback was done. Deployed by `mbstack deploy` and by the local emulator's deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryRule {
    pub name: String,
    pub description: &'static str,
    pub pattern: Value,
    /// The target's input transformer.
    pub input_paths: Value,
    pub input_template: String,
    /// The target's ID on the rule.
    pub target_id: &'static str,
}

/// The recovery rule of the deployment `prefix`, for its state machine.
pub fn recovery_rule(prefix: &str, state_machine_arn: &str) -> RecoveryRule {
    RecoveryRule {
        name: format!("{prefix}-run-ended"),
        description: "mbstack: rolls back what a run left when it ended where no Catch runs (States.Runtime, stopped, timed out)",
        pattern: json!({
            "source": ["aws.states"],
            "detail-type": ["Step Functions Execution Status Change"],
            // Every end of the state machine's own Fail states carries an
            // mbstack error name ("Check the error name" renames `States.*`):
            // a FAILED end named `States.*` is one the engine raised where no
            // Catch runs. Stopped and timed-out ends run no Catch at all. A
            // Finish that could not finish (`Mbstack.FinishFailed`) may have
            // left the lock held and nobody told.
            "detail": {
                "stateMachineArn": [state_machine_arn],
                "$or": [
                    {"status": ["TIMED_OUT", "ABORTED"]},
                    {"status": ["FAILED"], "error": [{"prefix": "States."}, FINISH_FAILED]}
                ]
            }
        }),
        input_paths: json!({"execution": "$.detail.executionArn"}),
        input_template: r#"{"action": "recover", "execution": <execution>}"#.to_string(),
        target_id: "mbstack-recover",
    }
}

impl RecoveryRule {
    /// Puts the rule and its one target (the state machine `state_machine_arn`,
    /// started with `role_arn`): creates it, or sets it as described.
    /// `tags` only on a new rule (EventBridge takes them in PutRule).
    pub async fn put(
        &self,
        events: &aws_sdk_eventbridge::Client,
        state_machine_arn: &str,
        role_arn: &str,
        tags: &[(String, String)],
    ) -> Result<(), mbstack_core::TierError> {
        use aws_sdk_eventbridge::types::{InputTransformer, RuleState, Tag, Target};
        use mbstack_core::aws_error;
        let mut put = events
            .put_rule()
            .name(&self.name)
            .description(self.description)
            .event_pattern(self.pattern.to_string())
            .state(RuleState::Enabled);
        for (k, v) in tags {
            put = put.tags(
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| mbstack_core::TierError::Terminal(e.to_string()))?,
            );
        }
        put.send()
            .await
            .map_err(|e| aws_error("events:PutRule", e))?;
        let paths: std::collections::HashMap<String, String> = self
            .input_paths
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let transformer = InputTransformer::builder()
            .set_input_paths_map(Some(paths))
            .input_template(&self.input_template)
            .build()
            .map_err(|e| mbstack_core::TierError::Terminal(e.to_string()))?;
        let target = Target::builder()
            .id(self.target_id)
            .arn(state_machine_arn)
            .role_arn(role_arn)
            .input_transformer(transformer)
            .build()
            .map_err(|e| mbstack_core::TierError::Terminal(e.to_string()))?;
        let out = events
            .put_targets()
            .rule(&self.name)
            .targets(target)
            .send()
            .await
            .map_err(|e| aws_error("events:PutTargets", e))?;
        if out.failed_entry_count() > 0 {
            let why: Vec<String> = out
                .failed_entries()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code().unwrap_or(""),
                        f.error_message().unwrap_or("")
                    )
                })
                .collect();
            return Err(mbstack_core::TierError::Terminal(format!(
                "events:PutTargets on rule {}: {}",
                self.name,
                why.join("; ")
            )));
        }
        Ok(())
    }

    /// Puts the rule unless it is already as described; true when it changed.
    pub async fn ensure(
        &self,
        events: &aws_sdk_eventbridge::Client,
        state_machine_arn: &str,
        role_arn: &str,
        tags: &[(String, String)],
    ) -> Result<bool, mbstack_core::TierError> {
        use mbstack_core::{aws_error, error_code};
        let rule = match events.describe_rule().name(&self.name).send().await {
            Ok(r) => Some(r),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => None,
            Err(e) => return Err(aws_error("events:DescribeRule", e)),
        };
        if let Some(rule) = rule {
            let pattern: Option<Value> = rule
                .event_pattern()
                .and_then(|p| serde_json::from_str(p).ok());
            let enabled = rule.state().map(|s| s.as_str()) == Some("ENABLED");
            let targets = events
                .list_targets_by_rule()
                .rule(&self.name)
                .send()
                .await
                .map_err(|e| aws_error("events:ListTargetsByRule", e))?;
            let target_ok = match targets.targets() {
                [t] => {
                    let tr = t.input_transformer();
                    t.id() == self.target_id
                        && t.arn() == state_machine_arn
                        && t.role_arn() == Some(role_arn)
                        && tr.map(|x| x.input_template()) == Some(self.input_template.as_str())
                        && tr
                            .and_then(|x| x.input_paths_map())
                            .map(|m| serde_json::to_value(m).unwrap_or_default())
                            == Some(self.input_paths.clone())
                }
                _ => false,
            };
            if pattern.as_ref() == Some(&self.pattern) && enabled && target_ok {
                return Ok(false);
            }
        }
        self.put(events, state_machine_arn, role_arn, tags).await?;
        Ok(true)
    }

    /// Removes the rule and its target; true when there was one.
    pub async fn remove(
        &self,
        events: &aws_sdk_eventbridge::Client,
    ) -> Result<bool, mbstack_core::TierError> {
        use mbstack_core::{aws_error, error_code};
        match events
            .remove_targets()
            .rule(&self.name)
            .ids(self.target_id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(false),
            Err(e) => return Err(aws_error("events:RemoveTargets", e)),
        }
        match events.delete_rule().name(&self.name).send().await {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(aws_error("events:DeleteRule", e)),
        }
    }
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
    /// The topic a failed run is published to; "" for none.
    pub notify_topic_arn: &'a str,
    /// The hosted zones stacks' domains may be in (None: any).
    pub hosted_zones: Option<&'a [String]>,
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
        .replace(NOTIFY_TOPIC, d.notify_topic_arn)
        .replace(
            &format!("\"{}\"", mbstack_core::contract::HOSTED_ZONES_PLACEHOLDER),
            &serde_json::to_string(&d.hosted_zones).unwrap_or_else(|_| "null".into()),
        )
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
    fn the_stages_hold_every_provisioned_tier_once_in_apply_order() {
        let staged: Vec<T> = in_order().collect();
        assert_eq!(staged, T::PROVISIONED.to_vec());
        // A tier reads the outputs of exactly the stages before its own.
        assert_eq!(inputs(T::Network), json!({}));
        assert_eq!(
            inputs(T::LoadBalancer),
            json!({"network.$": "$.network.status.outputs"})
        );
        let app = inputs(T::App);
        for key in ["network.$", "data.$", "loadbalancer.$"] {
            assert!(app.get(key).is_some(), "the app reads {key}");
        }
        assert_eq!(app["data.$"], json!("$.tiers.data.status.outputs"));
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
        let given = &inputs(T::App)[mbstack_core::outputs::DEPLOYMENT_KEY];
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
            hosted_zones: None,
            notify_topic_arn: "arn:aws-cn:sns:cn-north-1:1:t",
        });
        assert!(!text.contains("${"), "a placeholder is left");
        assert!(!text.contains("arn:aws:"), "an ARN outside the partition");
        assert!(text.contains("arn:aws-cn:states:::lambda:invoke"));
    }

    /// A Task's Parameters as Step Functions resolves them: each `key.$`
    /// becomes `key` with the value at its path (`$…` in the state, `$$…` in
    /// the context object), in nested objects too.
    fn resolved(params: &Value, state: &Value, context: &Value) -> Result<Value, String> {
        let Value::Object(m) = params else {
            return Ok(params.clone());
        };
        let mut out = Map::new();
        for (k, v) in m {
            let Some(key) = k.strip_suffix(".$") else {
                out.insert(k.clone(), resolved(v, state, context)?);
                continue;
            };
            let path = v.as_str().ok_or(format!("{k}: {v} is not a path"))?;
            let (mut at, rest) = match path.strip_prefix("$$") {
                Some(rest) => (context, rest),
                None => (state, path.strip_prefix('$').ok_or(format!("{k}: {path}"))?),
            };
            for part in rest.split('.').filter(|p| !p.is_empty()) {
                at = at
                    .get(part)
                    .ok_or(format!("{k}: {path} is not in the sample state"))?;
            }
            out.insert(key.to_string(), at.clone());
        }
        Ok(Value::Object(out))
    }

    /// Every payload the deployed definition sends the control function, as
    /// Step Functions resolves it from a run's state, reads into
    /// `mbstack_core::control::Command` with no key left unread: the two sides
    /// spell every key alike.
    #[test]
    fn every_control_payload_of_the_definition_reads_into_its_command() {
        let functions: Vec<(mbstack_core::Tier, String)> = mbstack_core::Tier::ALL
            .iter()
            .map(|t| (*t, format!("arn:aws:lambda:us-east-1:1:function:{t}")))
            .collect();
        let zones = ["Z1".to_string()];
        let text = render(&Deployment {
            functions: &functions,
            partition: "aws",
            role_boundary_arn: "arn:aws:iam::1:policy/b",
            events_role_arn: "arn:aws:iam::1:role/e",
            hosted_zones: Some(&zones),
            notify_topic_arn: "arn:aws:sns:us-east-1:1:t",
        });
        let def: Value = serde_json::from_str(&text).unwrap();
        let outcome =
            json!({"changes": [], "status": {"state": "ready", "message": "", "outputs": {}}});
        // The state of a run at its end, with every key a payload reads.
        let state = json!({
            "stack": "s", "action": "apply", "requested": "apply", "runId": "r-1",
            "executionArn": "arn:aws:states:us-east-1:1:execution:p:r-1",
            "spec": {"stack": "s"}, "lock": {"taken": true},
            "network": outcome, "tiers": {"data": outcome, "loadbalancer": outcome}, "app": outcome,
            "failure": {"Error": "States.TaskFailed", "Cause": "c"},
        });
        let context = json!({"Execution": {"Name": "r-1", "Id": "arn:aws:states:us-east-1:1:execution:p:r-1", "Input": {"stack": "s"}}});
        let control = &functions
            .iter()
            .find(|(t, _)| *t == mbstack_core::Tier::Control)
            .unwrap()
            .1;
        let mut read = BTreeSet::new();
        let mut n = 0;
        let states = all_maps(&def).into_iter().flat_map(|(_, m)| m);
        for (name, st) in states {
            let Some(params) = st.get("Parameters") else {
                continue;
            };
            if params["FunctionName"].as_str() != Some(control.as_str()) {
                continue;
            }
            let payload = resolved(&params["Payload"], &state, &context)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (command, unread) = mbstack_core::control::read(&payload)
                .unwrap_or_else(|e| panic!("{name}: {e}: {payload}"));
            assert!(
                unread.is_empty(),
                "{name}: control does not read {unread:?}"
            );
            read.insert(command.name());
            n += 1;
        }
        assert_eq!(
            read,
            BTreeSet::from(["finish", "notify", "prepare"]),
            "{n} payloads"
        );
        assert!(n >= 5, "every Prepare, Finish and Notify: {n}");
    }

    #[test]
    fn the_states_a_recovery_reads_the_history_for_exist() {
        let all = all_maps(&definition());
        let names: BTreeSet<&str> = all
            .iter()
            .flat_map(|(_, m)| m.keys())
            .map(String::as_str)
            .collect();
        for n in mbstack_core::contract::WORK_DONE_STATES
            .iter()
            .chain(mbstack_core::contract::ROLLED_BACK_STATES)
        {
            assert!(names.contains(n), "{n} is not a state of the definition");
        }
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
