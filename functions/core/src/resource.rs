//! One resource shape for every tier, and the one converge that drives it.
//!
//! A resource kind says what it is (`KIND`), how to read what exists (`list`),
//! what the spec wants (its `Want`, built by the tier), how the two differ
//! (`diff`, pure), and how to `create`, `update` and `delete` one. Core does the
//! rest once, for every kind:
//!
//! - matching what exists to what is wanted, by name;
//! - the not-ours refusal (a resource with our name but not our stack tag);
//! - plan: diff and record, never call `create`, `update` or `delete`. A plan is
//!   read-only by construction: the mutating methods are not reached;
//! - recording each change on the [`Work`];
//! - pruning: what exists of the kind minus what is wanted;
//! - destroy: delete what the run's scope owns ([`Work::owns`]), collecting what
//!   AWS is still deleting;
//! - readiness: every wanted resource exists and says it is ready.
//!
//! ```text
//! struct Subnets { ec2: aws_sdk_ec2::Client, vpc_id: Option<String> }
//! impl Resource for Subnets { /* KIND, list, diff, create, update, delete … */ }
//!
//! let found = resource::converge(&Subnets { ec2, vpc_id }, &mut work, &wants).await?;
//! ```

use std::fmt::Display;
use std::future::Future;

use crate::contract::Action;
use crate::error::TierError;
use crate::work::{Readiness, Work};

/// What a delete call achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted (or deleting with nothing left to wait for in this tier).
    Now,
    /// The delete is under way: what was done (the change's detail) and what
    /// the tier waits for.
    Started { detail: String, waiting: String },
    /// Nothing done now: AWS must finish something first (this reason).
    Waiting(String),
}

/// The step type of a kind that has nothing to change in place.
#[derive(Debug)]
pub enum NoStep {}

impl Display for NoStep {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// A resource kind. `Self` carries what every call of the kind needs (the SDK
/// client, IDs of resources it sits in); a `Want` is one resource the spec asks
/// for, a `Live` one that exists.
pub trait Resource: Sync {
    /// The kind name in changes (`subnet`, `db-instance`).
    const KIND: &'static str;
    /// How messages name the kind (`DB subnet group`).
    const LABEL: &'static str;

    type Live: Clone + Send + Sync;
    type Want: Send + Sync;
    /// One in-place change of an existing resource; shown in the change's detail.
    type Step: Display + Send + Sync;

    /// The name a wanted resource has (`<stack>-<role>` as a tag or identifier).
    fn name(&self, w: &Work<'_>, want: &Self::Want) -> String;
    /// The name of an existing one (None: unnamed, never matched).
    fn live_name(&self, live: &Self::Live) -> Option<String>;
    /// The ID shown in changes.
    fn id(&self, live: &Self::Live) -> String;
    /// Its tags, for ownership.
    fn tags(&self, live: &Self::Live) -> Vec<(String, String)>;

    /// What exists of the kind for this stack: by the stack's tags, or by the
    /// names the kind gives. May include a resource with our name that is not
    /// ours (refused by [`converge`]).
    fn list(&self, w: &Work<'_>)
        -> impl Future<Output = Result<Vec<Self::Live>, TierError>> + Send;

    /// Pure: the in-place changes from `live` to `want`. An error when the
    /// difference cannot be made in place (the fix named in the message).
    fn diff(
        &self,
        w: &Work<'_>,
        live: &Self::Live,
        want: &Self::Want,
    ) -> Result<Vec<Self::Step>, TierError>;

    /// The detail of a create (`10.0.0.0/24 in us-east-1a`).
    fn describe(&self, w: &Work<'_>, want: &Self::Want) -> String;
    /// The detail of an existing resource that needs no change.
    fn summary(&self, w: &Work<'_>, live: &Self::Live) -> String;

    fn create(
        &self,
        w: &Work<'_>,
        want: &Self::Want,
    ) -> impl Future<Output = Result<Self::Live, TierError>> + Send;

    /// Makes `steps` (from [`Resource::diff`]). Returns the resource when the
    /// update replaced it (None: `live` stands).
    fn update(
        &self,
        w: &Work<'_>,
        live: &Self::Live,
        want: &Self::Want,
        steps: &[Self::Step],
    ) -> impl Future<Output = Result<Option<Self::Live>, TierError>> + Send;

    /// The refusal of an existing resource with a wanted name that is not
    /// ours (its tags lack the stack's): the default names it as not tagged;
    /// a kind whose resources carry no tags says why it is not ours.
    fn not_ours(&self, w: &Work<'_>, live: &Self::Live) -> TierError {
        let name = self.live_name(live).unwrap_or_else(|| self.id(live));
        w.not_ours(Self::LABEL, &name)
    }

    /// Pure: whether an existing resource is usable. A pending reason reads
    /// after "waiting for" (`NAT gateway nat-1 (s-nat-a): pending`).
    fn readiness(&self, _w: &Work<'_>, _live: &Self::Live) -> Readiness {
        Readiness::Ready
    }

    fn delete(
        &self,
        w: &Work<'_>,
        live: &Self::Live,
    ) -> impl Future<Output = Result<Deleted, TierError>> + Send;

    /// The detail of a delete that is done ([`Deleted::Now`]): its name unless
    /// the kind says more (a secret: when it really goes).
    fn deleted_detail(&self, _w: &Work<'_>, live: &Self::Live) -> String {
        self.live_name(live).unwrap_or_default()
    }
}

/// The three accessors of a kind whose `Live` keeps its name, ID and tags in
/// fields as read: `resource_key!(name: name, id: arn, tags: tags);` in the
/// `impl Resource`.
#[macro_export]
macro_rules! resource_key {
    (name: $name:ident, id: $id:ident, tags: $tags:ident) => {
        fn live_name(&self, live: &Self::Live) -> Option<String> {
            Some(live.$name.clone())
        }
        fn id(&self, live: &Self::Live) -> String {
            live.$id.clone()
        }
        fn tags(&self, live: &Self::Live) -> Vec<(String, String)> {
            live.$tags.clone()
        }
    };
}

/// What [`converge`] found or made: for each want, in order, the resource (None
/// in a plan that would create it), and what exists of the kind that no want
/// names (for [`prune`]).
pub struct Converged<R: Resource> {
    pub found: Vec<Option<R::Live>>,
    /// For each want, the resource as it was before an update (None: not
    /// updated): what a replaced revision replaced.
    pub updated: Vec<Option<R::Live>>,
    pub unwanted: Vec<R::Live>,
    /// How many of the wanted resources this run made: in this pass, or in
    /// an earlier attempt of the same run whose outcome was lost. A plan makes
    /// none (it records what an apply would).
    pub made_by_this_run: usize,
}

impl<R: Resource> Converged<R> {
    /// The IDs, in want order.
    pub fn ids(&self, r: &R) -> Vec<Option<String>> {
        self.found
            .iter()
            .map(|l| l.as_ref().map(|l| r.id(l)))
            .collect()
    }
}

/// Makes what exists match `wants` (plan: only records what it would do).
pub async fn converge<R: Resource>(
    r: &R,
    w: &mut Work<'_>,
    wants: &[R::Want],
) -> Result<Converged<R>, TierError> {
    let mut live = r.list(w).await?;
    let mut found = Vec::with_capacity(wants.len());
    let mut updated = Vec::with_capacity(wants.len());
    let mut made_by_this_run = 0;
    for want in wants {
        let name = r.name(w, want);
        let at = live
            .iter()
            .position(|l| r.live_name(l).as_deref() == Some(name.as_str()));
        let Some(at) = at else {
            let detail = r.describe(w, want);
            if w.read_only() {
                w.record(R::KIND, name, Action::Create, detail);
                found.push(None);
            } else {
                let made = r.create(w, want).await?;
                w.record(R::KIND, r.id(&made), Action::Create, detail);
                found.push(Some(made));
                made_by_this_run += 1;
            }
            updated.push(None);
            continue;
        };
        let l = live.remove(at);
        if !w.is_ours(&r.tags(&l)) {
            return Err(r.not_ours(w, &l));
        }
        if w.verb == crate::Verb::Apply && w.created_by_this_run(&r.tags(&l)) {
            made_by_this_run += 1;
        }
        let steps = r.diff(w, &l, want)?;
        if steps.is_empty() {
            let detail = r.summary(w, &l);
            // Made by this run in an attempt whose outcome was lost (a function
            // that crashed after its call, retried): still this run's create.
            if w.verb == crate::Verb::Apply && w.created_by_this_run(&r.tags(&l)) {
                w.record_earlier_create(R::KIND, r.id(&l), detail);
            } else {
                w.record(R::KIND, r.id(&l), Action::None, detail);
            }
            found.push(Some(l));
            updated.push(None);
            continue;
        }
        let detail = steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let replaced = match w.read_only() {
            true => None,
            false => r.update(w, &l, want, &steps).await?,
        };
        // A replacement is recorded under its new ID.
        let id = replaced
            .as_ref()
            .map(|n| r.id(n))
            .unwrap_or_else(|| r.id(&l));
        w.record(R::KIND, id, Action::Update, detail);
        updated.push(Some(l.clone()));
        found.push(Some(replaced.unwrap_or(l)));
    }
    let unwanted = live.into_iter().filter(|l| w.is_ours(&r.tags(l))).collect();
    Ok(Converged {
        found,
        updated,
        unwanted,
        made_by_this_run,
    })
}

/// Deletes what the spec no longer asks for (a converge's `unwanted`); a plan
/// records it. Returns what AWS is still deleting.
pub async fn prune<R: Resource>(
    r: &R,
    w: &mut Work<'_>,
    unwanted: &[R::Live],
) -> Result<Vec<String>, TierError> {
    let mut waiting = Vec::new();
    for l in unwanted {
        let name = r.live_name(l).unwrap_or_else(|| r.id(l));
        let mut detail = format!("{name} is no longer in the spec");
        if !w.read_only() {
            if let Deleted::Started { waiting: why, .. } | Deleted::Waiting(why) =
                r.delete(w, l).await?
            {
                detail = format!("{detail}; {why}");
                waiting.push(why);
            }
        }
        w.record(R::KIND, r.id(l), Action::Delete, detail);
    }
    Ok(waiting)
}

/// Prunes every resource of the kind that the run's scope owns: a feature
/// that left the spec whole (a domain), recorded in a plan, deleted in an
/// apply. Returns what AWS is still deleting.
pub async fn prune_owned<R: Resource>(r: &R, w: &mut Work<'_>) -> Result<Vec<String>, TierError> {
    let owned: Vec<R::Live> = r
        .list(w)
        .await?
        .into_iter()
        .filter(|l| w.owns(&r.tags(l)))
        .collect();
    prune(r, w, &owned).await
}

/// Destroy: deletes every resource of the kind that the run's scope owns.
/// Returns what AWS is still deleting (the tier stays pending until it is empty).
pub async fn destroy<R: Resource>(r: &R, w: &mut Work<'_>) -> Result<Vec<String>, TierError> {
    let mut waiting = Vec::new();
    for l in r.list(w).await? {
        if !w.owns(&r.tags(&l)) {
            continue;
        }
        match r.delete(w, &l).await? {
            Deleted::Now => {
                let detail = r.deleted_detail(w, &l);
                w.record(R::KIND, r.id(&l), Action::Delete, detail)
            }
            Deleted::Started {
                detail,
                waiting: why,
            } => {
                w.record(R::KIND, r.id(&l), Action::Delete, detail);
                waiting.push(why);
            }
            // Nothing done by this call: no change to record.
            Deleted::Waiting(why) => waiting.push(why),
        }
    }
    Ok(waiting)
}

/// Whether every wanted resource exists and is ready: the first failure, else
/// every reason to wait, else ready. `found` is a converge's.
pub fn readiness<R: Resource>(
    r: &R,
    w: &Work<'_>,
    wants: &[R::Want],
    found: &[Option<R::Live>],
) -> Readiness {
    let mut waiting = Vec::new();
    for (want, live) in wants.iter().zip(found) {
        match live.as_ref().map(|l| r.readiness(w, l)) {
            None => waiting.push(format!("{} {}: not created yet", R::LABEL, r.name(w, want))),
            Some(Readiness::Ready) => {}
            Some(Readiness::Pending(why)) => waiting.push(why),
            Some(Readiness::Failed(why)) => return Readiness::Failed(why),
        }
    }
    all_ready(waiting)
}

/// Ready when nothing is waited for; else pending with every reason.
pub fn all_ready(waiting: Vec<String>) -> Readiness {
    if waiting.is_empty() {
        Readiness::Ready
    } else {
        Readiness::Pending(format!("waiting for {}", waiting.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    //! The generic logic, on an in-memory kind: what core decides by itself
    //! (matching, refusal, plan, prune, scope). The tiers' tests drive the same
    //! code against the emulator.

    use super::*;
    use crate::contract::{Run, Scope, Verb};
    use crate::naming::{self, Tier};
    use crate::spec::StackSpec;
    use std::sync::Mutex;

    #[derive(Clone, Debug)]
    struct Thing {
        name: String,
        size: u32,
        tags: Vec<(String, String)>,
        ready: bool,
    }

    struct Things {
        live: Mutex<Vec<Thing>>,
        calls: Mutex<Vec<String>>,
    }

    struct Want {
        role: String,
        size: u32,
    }

    impl Things {
        fn new(live: Vec<Thing>) -> Self {
            Self {
                live: Mutex::new(live),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn log(&self, call: String) {
            if let Ok(mut c) = self.calls.lock() {
                c.push(call);
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl Resource for Things {
        const KIND: &'static str = "thing";
        const LABEL: &'static str = "thing";
        type Live = Thing;
        type Want = Want;
        type Step = String;

        fn name(&self, w: &Work<'_>, want: &Want) -> String {
            w.name(&want.role)
        }
        fn live_name(&self, live: &Thing) -> Option<String> {
            Some(live.name.clone())
        }
        fn id(&self, live: &Thing) -> String {
            format!("id-{}", live.name)
        }
        fn tags(&self, live: &Thing) -> Vec<(String, String)> {
            live.tags.clone()
        }
        async fn list(&self, _w: &Work<'_>) -> Result<Vec<Thing>, TierError> {
            self.log("list".into());
            Ok(self.live.lock().map(|l| l.clone()).unwrap_or_default())
        }
        fn diff(&self, _w: &Work<'_>, live: &Thing, want: &Want) -> Result<Vec<String>, TierError> {
            if want.size < live.size {
                return Err(TierError::Refused(format!("{} cannot shrink", live.name)));
            }
            Ok(if want.size > live.size {
                vec![format!("size {} → {}", live.size, want.size)]
            } else {
                vec![]
            })
        }
        fn describe(&self, _w: &Work<'_>, want: &Want) -> String {
            format!("size {}", want.size)
        }
        fn summary(&self, _w: &Work<'_>, live: &Thing) -> String {
            format!("size {}", live.size)
        }
        async fn create(&self, w: &Work<'_>, want: &Want) -> Result<Thing, TierError> {
            self.log(format!("create {}", want.role));
            Ok(Thing {
                name: w.name(&want.role),
                size: want.size,
                tags: w.tags(&want.role),
                ready: false,
            })
        }
        async fn update(
            &self,
            _w: &Work<'_>,
            live: &Thing,
            _want: &Want,
            steps: &[String],
        ) -> Result<Option<Thing>, TierError> {
            self.log(format!("update {} {}", live.name, steps.join(",")));
            Ok(None)
        }
        fn readiness(&self, _w: &Work<'_>, live: &Thing) -> Readiness {
            if live.ready {
                Readiness::Ready
            } else {
                Readiness::Pending(format!("{} starting", live.name))
            }
        }
        async fn delete(&self, _w: &Work<'_>, live: &Thing) -> Result<Deleted, TierError> {
            self.log(format!("delete {}", live.name));
            Ok(Deleted::Now)
        }
    }

    fn spec() -> StackSpec {
        StackSpec::new("s1")
    }

    fn run(id: &str, scope: Scope) -> Run {
        Run {
            id: id.into(),
            scope,
        }
    }

    fn thing(spec: &StackSpec, run: &str, role: &str, size: u32) -> Thing {
        Thing {
            name: naming::resource_name(&spec.stack, role),
            size,
            tags: crate::work::tags(spec, Tier::Network, run, role),
            ready: true,
        }
    }

    fn want(role: &str, size: u32) -> Want {
        Want {
            role: role.into(),
            size,
        }
    }

    #[tokio::test]
    async fn a_plan_diffs_and_records_but_never_calls_a_mutating_method() {
        let spec = spec();
        let run = run("r1", Scope::Stack);
        let things = Things::new(vec![
            thing(&spec, "r0", "a", 1),
            thing(&spec, "r0", "b", 1),
            thing(&spec, "r0", "gone", 1),
        ]);
        let mut w = Work::new(Tier::Network, &spec, &run, Verb::Plan);
        let wants = [want("a", 1), want("b", 2), want("c", 1)];
        let c = converge(&things, &mut w, &wants).await.expect("plan");
        prune(&things, &mut w, &c.unwanted).await.expect("prune");
        assert_eq!(things.calls(), vec!["list"]);
        let actions: Vec<(Action, &str)> = w
            .changes
            .iter()
            .map(|c| (c.action, c.id.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                (Action::None, "id-s1-a"),
                (Action::Update, "id-s1-b"),
                (Action::Create, "s1-c"),
                (Action::Delete, "id-s1-gone"),
            ]
        );
        assert!(c.found[2].is_none());
        assert_eq!(
            readiness(&things, &w, &wants, &c.found),
            Readiness::Pending("waiting for thing s1-c: not created yet".into())
        );
    }

    #[tokio::test]
    async fn apply_creates_updates_and_prunes_live_minus_wanted() {
        let spec = spec();
        let run = run("r1", Scope::Stack);
        let things = Things::new(vec![
            thing(&spec, "r0", "a", 1),
            thing(&spec, "r0", "old", 1),
        ]);
        let mut w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let wants = [want("a", 3), want("c", 1)];
        let c = converge(&things, &mut w, &wants).await.expect("apply");
        prune(&things, &mut w, &c.unwanted).await.expect("prune");
        assert_eq!(
            things.calls(),
            vec![
                "list",
                "update s1-a size 1 → 3",
                "create c",
                "delete s1-old"
            ]
        );
        assert_eq!(w.changed(), 3);
        // The new one is not ready yet: its readiness says why.
        assert_eq!(
            readiness(&things, &w, &wants, &c.found),
            Readiness::Pending("waiting for s1-c starting".into())
        );
    }

    #[tokio::test]
    async fn a_resource_with_our_name_but_not_our_tag_is_refused_untouched() {
        let spec = spec();
        let run = run("r1", Scope::Stack);
        let mut foreign = thing(&spec, "r0", "a", 1);
        foreign.tags.clear();
        let things = Things::new(vec![foreign]);
        let mut w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let err = converge(&things, &mut w, &[want("a", 2)])
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("s1-a exists but is not tagged"), "{err}");
        assert_eq!(things.calls(), vec!["list"]);
    }

    #[tokio::test]
    async fn a_difference_that_cannot_be_made_in_place_stops_before_any_change() {
        let spec = spec();
        let run = run("r1", Scope::Stack);
        let things = Things::new(vec![thing(&spec, "r0", "a", 5)]);
        let mut w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let err = converge(&things, &mut w, &[want("a", 2)]).await.err();
        assert!(matches!(err, Some(TierError::Refused(m)) if m.contains("cannot shrink")));
        assert_eq!(things.calls(), vec!["list"]);
    }

    #[tokio::test]
    async fn destroy_of_a_rollback_deletes_only_what_its_run_created() {
        let spec = spec();
        let run = run("r2", Scope::Run);
        let mut someone_elses = thing(&spec, "r0", "x", 1);
        someone_elses.tags = vec![("owner".into(), "them".into())];
        let things = Things::new(vec![
            thing(&spec, "r0", "kept", 1),
            thing(&spec, "r2", "new", 1),
            someone_elses,
        ]);
        let mut w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let waiting = destroy(&things, &mut w).await.expect("destroy");
        assert!(waiting.is_empty());
        assert_eq!(things.calls(), vec!["list", "delete s1-new"]);
    }
}
