//! What every tier's resource modules share while handling one event: the spec,
//! the run, plan mode and the change list.

use serde_json::{Map, Value};

use crate::contract::{Action, Change, Outcome, Run, Scope, State, Verb};
use crate::error::TierError;
use crate::naming::{self, Tier, CREATED_BY_TAG, STACK_TAG};
use crate::spec::StackSpec;

/// What a resource's state means for a run: ready, still becoming ready (why),
/// or failed for good (why). Every tier's readiness check answers with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Pending(String),
    Failed(String),
}

pub struct Work<'a> {
    pub tier: Tier,
    pub spec: &'a StackSpec,
    pub run: &'a Run,
    /// What the tier was asked to do.
    pub verb: Verb,
    pub changes: Vec<Change>,
    /// How many of `changes` are creates of an earlier attempt of this run
    /// (found, tagged with it): the run's changes, not this pass's.
    earlier: usize,
}

impl<'a> Work<'a> {
    pub fn new(tier: Tier, spec: &'a StackSpec, run: &'a Run, verb: Verb) -> Self {
        Self {
            tier,
            spec,
            run,
            verb,
            changes: Vec::new(),
            earlier: 0,
        }
    }

    /// Records a resource an earlier attempt of this run created (its outcome
    /// lost: a function that crashed after its call and was run again): the
    /// run's output lists it as created, while this pass changed nothing.
    pub fn record_earlier_create(
        &mut self,
        kind: &str,
        id: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.earlier += 1;
        self.record(kind, id, Action::Create, detail);
    }

    /// Plan or check: read, never write; record what apply would do. Only
    /// core asks ([`crate::resource`]'s converge and prune, and the answer of
    /// a pass): a tier cannot, so its writes are a kind's create, update and
    /// delete, which a plan never reaches.
    pub(crate) fn read_only(&self) -> bool {
        matches!(self.verb, Verb::Plan | Verb::Check)
    }

    /// `<stack>-<role>`.
    pub fn name(&self, role: &str) -> String {
        naming::resource_name(&self.spec.stack, role)
    }

    /// The tags of a resource this run creates now.
    pub fn tags(&self, role: &str) -> Vec<(String, String)> {
        tags(self.spec, self.tier, &self.run.id, role)
    }

    pub fn record(
        &mut self,
        kind: &str,
        id: impl Into<String>,
        action: Action,
        detail: impl Into<String>,
    ) {
        self.changes.push(Change::new(kind, id, action, detail));
    }

    /// Records a change of a resource known only by its name (planned).
    pub fn record_named(
        &mut self,
        kind: &str,
        role: &str,
        action: Action,
        detail: impl Into<String>,
    ) {
        let name = self.name(role);
        self.record(kind, name, action, detail);
    }

    /// Whether tags mark a resource of this stack, whoever created it.
    pub fn is_ours(&self, tags: &[(String, String)]) -> bool {
        naming::tag_value(tags, STACK_TAG) == Some(self.spec.stack.as_str())
    }

    /// The refusal to touch a resource that has our deterministic name but not our
    /// stack tag (someone else's, or another stack's).
    pub fn not_ours(&self, what: &str, name: &str) -> TierError {
        TierError::Terminal(format!(
            "{what} {name} exists but is not tagged as stack {}'s: mbstack will not touch it; rename the stack or remove that {what}",
            self.spec.stack
        ))
    }

    /// The end of a destroy call: `gone` when its last steps succeeded, `pending`
    /// when AWS said "not yet" (an ENI lingering, a resource still in use), the
    /// error otherwise.
    pub fn destroyed(self, steps: Result<(), TierError>, what: &str) -> Result<Outcome, TierError> {
        match steps {
            Ok(()) => {
                let n = self.changes.len();
                // A rollback removes only what its run created: the rest stays.
                let message = match self.run.scope {
                    Scope::Stack => format!("{what} gone ({n} change(s) now)"),
                    Scope::Run => {
                        format!("{what}: what this run created is undone ({n} change(s) now)")
                    }
                };
                Ok(self.outcome(State::Gone, message, Map::new()))
            }
            Err(TierError::Retryable(why)) => {
                Ok(self.outcome(State::Pending, format!("waiting: {why}"), Map::new()))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether destroy may delete a resource with these tags: every resource of the
    /// stack (scope stack), or only those this run created (scope run).
    pub fn owns(&self, tags: &[(String, String)]) -> bool {
        self.is_ours(tags)
            && match self.run.scope {
                Scope::Stack => true,
                Scope::Run => naming::tag_value(tags, CREATED_BY_TAG) == Some(self.run.id.as_str()),
            }
    }

    /// Whether the resource was created by this run.
    pub fn created_by_this_run(&self, tags: &[(String, String)]) -> bool {
        naming::tag_value(tags, CREATED_BY_TAG) == Some(self.run.id.as_str())
    }

    /// The number of real (not `none`) changes this pass made so far.
    pub fn changed(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action != Action::None)
            .count()
            - self.earlier
    }

    /// The answer to `plan` and `apply`, the same in every tier: a plan is
    /// ready with its changes; an apply is ready, pending (why) or failed as
    /// `readiness` (the tier's resources after this pass) says.
    pub fn converged(
        self,
        readiness: Readiness,
        outputs: Map<String, Value>,
    ) -> Result<Outcome, TierError> {
        let n = self.changed();
        let label = self.tier.info().state_label;
        if self.read_only() {
            let message = format!("plan: {n} change(s) to the {label}");
            return Ok(self.outcome(State::Ready, message, outputs));
        }
        match readiness {
            Readiness::Ready => {
                let message = format!("{label} ready ({n} change(s))");
                Ok(self.outcome(State::Ready, message, outputs))
            }
            Readiness::Pending(why) => Ok(self.outcome(State::Pending, why, outputs)),
            Readiness::Failed(why) => Err(TierError::ResourceFailed(why)),
        }
    }

    /// The answer to `check`, the same in every tier: read-only, on the changes
    /// a converge pass recorded and the resources' readiness. Ready when no
    /// resource is missing or extra (nothing to create or delete) and every
    /// resource is ready; a failed resource is an error (the run rolls back).
    /// An in-place update still open does not hold a check: apply makes its
    /// updates itself or says why it cannot yet (a stopped DB is modified by
    /// the apply after the one that starts it), and a resource that is
    /// applying one says so in its readiness.
    pub fn checked(
        mut self,
        readiness: Readiness,
        outputs: Map<String, Value>,
    ) -> Result<Outcome, TierError> {
        if let Readiness::Failed(why) = readiness {
            return Err(TierError::ResourceFailed(why));
        }
        let list = |keep: &dyn Fn(Action) -> bool| -> Vec<String> {
            self.changes
                .iter()
                .filter(|c| keep(c.action))
                .map(|c| format!("{} {} ({:?})", c.kind, c.id, c.action).to_lowercase())
                .collect()
        };
        let missing = list(&|a| !matches!(a, Action::None | Action::Update));
        let open = list(&|a| a == Action::Update);
        // check changed nothing, so it lists no changes.
        self.changes.clear();
        if !missing.is_empty() {
            let message = format!("waiting for {}", missing.join(", "));
            return Ok(self.outcome(State::Pending, message, outputs));
        }
        Ok(match readiness {
            Readiness::Pending(why) => self.outcome(State::Pending, why, outputs),
            _ => {
                let mut message = format!("{} ready", self.tier.info().state_label);
                if !open.is_empty() {
                    message += &format!("; left for the next apply: {}", open.join(", "));
                }
                self.outcome(State::Ready, message, outputs)
            }
        })
    }

    /// The tier's answer. A pending one asks to be checked again after the
    /// tier's poll interval ([`crate::naming::TierInfo::poll_seconds`]).
    pub fn outcome(
        self,
        state: State,
        message: impl Into<String>,
        outputs: Map<String, Value>,
    ) -> Outcome {
        let retry_after_seconds = match state {
            State::Pending => self.tier.info().poll_seconds,
            State::Ready | State::Gone => 0,
        };
        Outcome {
            tier: self.tier,
            state,
            message: message.into(),
            retry_after_seconds,
            outputs,
            changes: self.changes,
            part: crate::contract::Part::All,
        }
    }
}

/// The tags of one resource: ours first (stack, tier, creating run, Name), then the
/// user's own.
pub fn tags(spec: &StackSpec, tier: Tier, run_id: &str, role: &str) -> Vec<(String, String)> {
    let mut out = vec![
        (naming::STACK_TAG.to_string(), spec.stack.clone()),
        (naming::TIER_TAG.to_string(), tier.as_str().to_string()),
        (naming::CREATED_BY_TAG.to_string(), run_id.to_string()),
        (
            naming::NAME_TAG.to_string(),
            naming::resource_name(&spec.stack, role),
        ),
    ];
    out.extend(spec.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// `json!({...})` as a map (an outcome's outputs).
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Seconds since the Unix epoch as `YYYYMMDD-HHMMSS` (UTC): unique, sortable
/// suffixes for names such as final snapshots.
pub fn utc_stamp(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, as [`utc_stamp`].
pub fn utc_stamp_now() -> String {
    utc_stamp(unix_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_waits_for_what_is_missing_and_for_readiness_not_for_open_updates() {
        use crate::contract::{Run, Scope, Verb};
        let spec = StackSpec::new("s1");
        let run = Run {
            id: "r1".into(),
            scope: Scope::Stack,
        };
        let work = |action: Action| {
            let mut w = Work::new(Tier::Data, &spec, &run, Verb::Check);
            w.record("db-instance", "s1-db", action, "");
            w
        };
        let created = work(Action::Create).checked(Readiness::Ready, Map::new());
        assert!(matches!(&created, Ok(o) if o.state == State::Pending
            && o.message == "waiting for db-instance s1-db (create)" && o.changes.is_empty()));
        let open = work(Action::Update).checked(Readiness::Ready, Map::new());
        assert!(matches!(&open, Ok(o) if o.state == State::Ready
            && o.message.ends_with("left for the next apply: db-instance s1-db (update)")));
        let busy = work(Action::None).checked(Readiness::Pending("modifying".into()), Map::new());
        assert!(matches!(&busy, Ok(o) if o.state == State::Pending && o.message == "modifying"));
        let failed =
            work(Action::None).checked(Readiness::Failed("storage-full".into()), Map::new());
        assert!(matches!(failed, Err(TierError::ResourceFailed(m)) if m == "storage-full"));
    }

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_892_522), "20261128-190202");
    }
}
