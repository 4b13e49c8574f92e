//! The data tier against the emulator: the instance's every property, no password
//! anywhere, idempotence, in-place changes, pause/resume, destroy with a final
//! snapshot, deletion protection, rollback without a snapshot.

use aws_sdk_rds::types::DbInstance;
use mbstack_core::naming::{CREATED_BY_TAG, NAME_TAG, STACK_TAG, TIER_TAG};
use mbstack_core::{Action, Scope, StackSpec, State, Tier, TierError, Verb};
use mbstack_data::{readiness, Readiness};
use mbstack_tests::{network_inputs, LogCapture, OnRetryable, TestEnv, TierRunner};
use serde_json::{Map, Value};

async fn instance(env: &TestEnv, id: &str) -> Option<DbInstance> {
    let rds = aws_sdk_rds::Client::new(&env.config);
    rds.describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .ok()?
        .db_instances()
        .first()
        .cloned()
}

fn tag<'a>(db: &'a DbInstance, key: &str) -> Option<&'a str> {
    db.tag_list()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test]
async fn apply_creates_one_private_encrypted_instance_and_no_password_leaks() {
    let env = TestEnv::start().await;
    let logs = LogCapture::global();
    let spec = StackSpec::new("dbs");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    let net = d.inputs["network"].clone();
    let outcomes = d.apply(&spec, "run-a").await;
    let last = outcomes.last().unwrap();
    assert_eq!(last.state, State::Ready);
    assert_eq!(
        outcomes[0]
            .changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .count(),
        2
    );

    let rds = aws_sdk_rds::Client::new(&env.config);
    let all = rds.describe_db_instances().send().await.unwrap();
    assert_eq!(all.db_instances().len(), 1);
    let db = instance(&env, "mbstack-dbs").await.expect("the instance");
    assert_eq!(db.engine(), Some("postgres"));
    assert!(
        db.engine_version().unwrap().starts_with("17"),
        "{:?}",
        db.engine_version()
    );
    assert_eq!(db.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(db.allocated_storage(), Some(20));
    assert_eq!(db.storage_type(), Some("gp3"));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(db.db_name(), Some("metabase"));
    assert_eq!(db.master_username(), Some("metabase"));
    assert_eq!(db.backup_retention_period(), Some(7));
    assert_eq!(db.preferred_backup_window(), Some("03:00-03:30"));
    assert_eq!(db.auto_minor_version_upgrade(), Some(true));
    assert_eq!(db.deletion_protection(), Some(false));
    assert_eq!(db.multi_az(), Some(false));
    assert_eq!(db.copy_tags_to_snapshot(), Some(true));
    assert_ne!(db.performance_insights_enabled(), Some(true));
    let sg = net["dbSecurityGroupId"].as_str().unwrap();
    let sgs: Vec<&str> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(sgs, vec![sg]);
    let group = db.db_subnet_group().expect("subnet group");
    assert_eq!(group.db_subnet_group_name(), Some("mbstack-dbs"));
    let mut subnets: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    subnets.sort();
    let mut private: Vec<String> = net["privateSubnetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    private.sort();
    assert_eq!(subnets, private);
    assert_eq!(tag(&db, STACK_TAG), Some("dbs"));
    assert_eq!(tag(&db, TIER_TAG), Some("data"));
    assert_eq!(tag(&db, CREATED_BY_TAG), Some("run-a"));
    assert_eq!(tag(&db, NAME_TAG), Some("dbs-db"));

    // The password lives in Secrets Manager only; outputs carry the ARN.
    let secret_arn = db
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .expect("a managed secret")
        .to_string();
    assert_eq!(last.outputs["secretArn"], Value::String(secret_arn.clone()));
    assert_eq!(last.outputs["databaseName"], "metabase");
    assert_eq!(last.outputs["username"], "metabase");
    assert!(last.outputs["endpoint"].is_string());
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    let secret = sm
        .get_secret_value()
        .secret_id(&secret_arn)
        .send()
        .await
        .unwrap();
    let value: Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    let password = value["password"]
        .as_str()
        .expect("a password in the secret")
        .to_string();
    assert!(password.len() >= 8);
    let everything = format!(
        "{}{}",
        serde_json::to_string(&outcomes).unwrap(),
        serde_json::to_string(&d.inputs).unwrap()
    );
    assert!(
        !everything.contains(&password),
        "the password is in an outcome or event"
    );
    assert!(
        !logs.text().contains(&password),
        "the password is in the logs"
    );
    assert!(
        logs.text().contains("tier event"),
        "the capture saw the tier's logs"
    );

    // The second apply: zero mutating calls, ready at once.
    env.log.clear();
    let again = d
        .call(Verb::Apply, &spec, "run-b", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(env.log.mutating(), vec![]);
    assert_eq!(again.state, State::Ready);
    assert!(!again.changed(), "{:?}", again.changes);
}

#[tokio::test]
async fn changes_in_place_make_exactly_one_modify_call_and_refuse_what_cannot_change() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("grow");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    d.apply(&spec, "run-a").await;

    spec.database.instance_class = "db.t4g.small".into();
    spec.database.storage_gib = 30;
    spec.database.backup_retention_days = 14;
    env.log.clear();
    let o = d
        .call(Verb::Apply, &spec, "run-b", Scope::Stack)
        .await
        .unwrap();
    let mutating: Vec<String> = env
        .log
        .mutating()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    // The modification, and the tag recording when storage last changed (RDS
    // allows the next change 6 hours later).
    assert_eq!(mutating, vec!["ModifyDBInstance", "AddTagsToResource"]);
    let updates: Vec<_> = o
        .changes
        .iter()
        .filter(|c| c.action == Action::Update)
        .collect();
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0]
            .detail
            .contains("class db.t4g.micro → db.t4g.small"),
        "{}",
        updates[0].detail
    );
    assert!(
        updates[0].detail.contains("storage 20 → 30 GiB"),
        "{}",
        updates[0].detail
    );
    assert!(
        updates[0].detail.contains("backup retention 7 → 14 days"),
        "{}",
        updates[0].detail
    );
    let db = instance(&env, "mbstack-grow").await.unwrap();
    assert_eq!(db.db_instance_class(), Some("db.t4g.small"));
    assert_eq!(db.allocated_storage(), Some(30));
    assert_eq!(db.backup_retention_period(), Some(14));

    let mut bad = spec.clone();
    bad.database.engine_version = "16".into();
    env.log.clear();
    match d.call(Verb::Apply, &bad, "run-c", Scope::Stack).await {
        Err(TierError::Refused(msg)) => assert!(msg.contains("database.engineVersion"), "{msg}"),
        other => panic!("downgrade: {other:?}"),
    }
    assert_eq!(env.log.mutating(), vec![], "downgrade mutated");
}

#[test]
fn readiness_follows_the_status() {
    let seq: Vec<Readiness> = ["creating", "backing-up", "available"]
        .iter()
        .map(|s| readiness("db-1", s, false))
        .collect();
    assert!(matches!(&seq[0], Readiness::Pending(m) if m.contains("creating")));
    assert!(matches!(&seq[1], Readiness::Pending(m) if m.contains("backing-up")));
    assert_eq!(seq[2], Readiness::Ready);
    for s in [
        "failed",
        "incompatible-parameters",
        "storage-full",
        "inaccessible-encryption-credentials",
    ] {
        assert!(
            matches!(readiness("db-1", s, false), Readiness::Failed(m) if m.contains(s)),
            "{s}"
        );
    }
    assert_eq!(readiness("db-1", "stopped", true), Readiness::Ready);
    assert!(matches!(
        readiness("db-1", "stopped", false),
        Readiness::Pending(_)
    ));
    assert!(matches!(
        readiness("db-1", "available", true),
        Readiness::Pending(_)
    ));
    assert_eq!(
        readiness("db-1", "storage-optimization", false),
        Readiness::Ready
    );
}

#[tokio::test]
async fn pause_then_resume_round_trips_the_instance() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("nap");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    d.apply(&spec, "run-a").await;
    spec.paused = true;
    let paused = d.apply(&spec, "run-pause").await;
    assert!(paused[0]
        .changes
        .iter()
        .any(|c| c.detail == "stop (paused)"));
    assert_eq!(
        instance(&env, "mbstack-nap")
            .await
            .unwrap()
            .db_instance_status(),
        Some("stopped")
    );
    assert_eq!(paused.last().unwrap().state, State::Ready);
    // A scheduled re-pause of a paused stack changes nothing.
    env.log.clear();
    d.apply(&spec, "run-pause-again").await;
    assert_eq!(env.log.mutating(), vec![]);
    spec.paused = false;
    let resumed = d.apply(&spec, "run-resume").await;
    assert!(resumed[0]
        .changes
        .iter()
        .any(|c| c.detail == "start (resumed)"));
    assert_eq!(
        instance(&env, "mbstack-nap")
            .await
            .unwrap()
            .db_instance_status(),
        Some("available")
    );
}

#[tokio::test]
async fn destroy_keeps_a_tagged_final_snapshot_and_leaves_nothing_else() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("bye");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    d.apply(&spec, "run-a").await;
    let outcomes = d
        .settle(
            Verb::Destroy,
            Verb::Destroy,
            &spec,
            "run-destroy",
            Scope::Stack,
        )
        .await
        .unwrap();
    assert_eq!(outcomes.last().unwrap().state, State::Gone);
    let rds = aws_sdk_rds::Client::new(&env.config);
    assert!(instance(&env, "mbstack-bye").await.is_none());
    assert!(rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("mbstack-bye")
        .send()
        .await
        .is_err());
    let snaps = rds
        .describe_db_snapshots()
        .db_instance_identifier("mbstack-bye")
        .send()
        .await
        .unwrap();
    let finals: Vec<_> = snaps
        .db_snapshots()
        .iter()
        .filter(|s| {
            s.db_snapshot_identifier()
                .unwrap_or("")
                .starts_with("mbstack-bye-final-")
        })
        .collect();
    assert_eq!(finals.len(), 1, "{:?}", snaps.db_snapshots());
    let tags: Vec<(Option<&str>, Option<&str>)> = finals[0]
        .tag_list()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert!(tags.contains(&(Some(STACK_TAG), Some("bye"))), "{tags:?}");
    let delete = outcomes[0]
        .changes
        .iter()
        .find(|c| c.kind == "db-instance")
        .unwrap();
    assert!(
        delete
            .detail
            .contains(finals[0].db_snapshot_identifier().unwrap()),
        "{}",
        delete.detail
    );
}

#[tokio::test]
async fn destroy_refuses_while_deletion_protection_is_on_and_deletes_nothing() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("safe");
    spec.database.deletion_protection = true;
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    d.apply(&spec, "run-a").await;
    env.log.clear();
    match d
        .call(Verb::Destroy, &spec, "run-destroy", Scope::Stack)
        .await
    {
        Err(e @ TierError::Refused(_)) => {
            assert_eq!(e.name(), "Mbstack.Refused");
            assert!(e.to_string().contains("database.deletionProtection"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.log.mutating(), vec![]);
    assert!(instance(&env, "mbstack-safe").await.is_some());
}

#[tokio::test]
async fn rollback_of_the_creating_run_takes_no_snapshot_and_spares_an_older_db() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("fresh");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    d.apply(&spec, "run-new").await;
    // A rollback of another run leaves the DB alone.
    let other = d
        .settle(Verb::Destroy, Verb::Destroy, &spec, "run-other", Scope::Run)
        .await
        .unwrap();
    assert!(other.iter().all(|o| o.changes.is_empty()));
    assert!(instance(&env, "mbstack-fresh").await.is_some());
    // The rollback of the run that created it: no snapshot, the data is new.
    let rolled = d
        .settle(Verb::Destroy, Verb::Destroy, &spec, "run-new", Scope::Run)
        .await
        .unwrap();
    let delete = rolled[0]
        .changes
        .iter()
        .find(|c| c.kind == "db-instance")
        .unwrap();
    assert!(
        delete.detail.starts_with("no final snapshot"),
        "{}",
        delete.detail
    );
    let rds = aws_sdk_rds::Client::new(&env.config);
    let snaps = rds
        .describe_db_snapshots()
        .db_instance_identifier("mbstack-fresh")
        .send()
        .await
        .unwrap();
    assert!(snaps
        .db_snapshots()
        .iter()
        .all(|s| s.snapshot_type() != Some("manual")));
    assert!(instance(&env, "mbstack-fresh").await.is_none());
}

/// Apply, then check until settled, at the pace of the realism layer's timings.
/// Applies `spec`, then grows its storage: RDS optimizes it for hours after.
async fn storage_grown(d: &TierRunner<'_>, spec: &mut StackSpec) {
    applied(d, spec, "run-a").await;
    spec.database.storage_gib = 30;
    applied(d, spec, "run-grow").await;
    let id = mbstack_core::naming::rds_name(&spec.stack);
    assert_eq!(
        instance(d.env, &id).await.unwrap().db_instance_status(),
        Some("storage-optimization")
    );
}

async fn applied(d: &TierRunner<'_>, spec: &StackSpec, run: &str) -> Vec<mbstack_core::Outcome> {
    // An error, retryable or not, fails the test (as before the one runner).
    d.settled(
        Verb::Apply,
        spec,
        run,
        std::time::Duration::from_millis(200),
        OnRetryable::Fail,
    )
    .await
}

/// The realism layer on, after the networks of `stacks` exist (their NAT gateways
/// would otherwise take their 2 s).
async fn realistic(stacks: &[&str]) -> (TestEnv, Vec<Map<String, Value>>) {
    let env = TestEnv::start().await;
    let mut inputs = Vec::new();
    for s in stacks {
        inputs.push(network_inputs(&env, &StackSpec::new(*s)).await);
    }
    env.emulator.front.set_realism(true, 60);
    (env, inputs)
}

fn code(e: &dyn aws_sdk_rds::error::ProvideErrorMetadata) -> String {
    e.code().unwrap_or("").to_string()
}

/// RDS takes no final snapshot of an instance still creating
/// (`InvalidDBInstanceState`): a destroy that meets one waits, then snapshots.
#[tokio::test]
async fn a_destroy_waits_for_a_creating_db_before_its_final_snapshot() {
    let (env, mut inputs) = realistic(&["early"]).await;
    let rds = aws_sdk_rds::Client::new(&env.config);
    let spec = StackSpec::new("early");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    d.call(Verb::Apply, &spec, "run-a", Scope::Stack)
        .await
        .unwrap();
    let e = rds
        .delete_db_instance()
        .db_instance_identifier("mbstack-early")
        .final_db_snapshot_identifier("early-raw")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidDBInstanceState");
    let first = d
        .call(Verb::Destroy, &spec, "run-destroy", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(first.state, State::Pending);
    assert!(first.message.contains("creating"), "{}", first.message);
    // The create takes 6 s at the emulator's scale: poll as the state machine does.
    let mut last = first;
    for _ in 0..100 {
        if last.state != State::Pending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        last = d
            .call(Verb::Destroy, &spec, "run-destroy", Scope::Stack)
            .await
            .unwrap();
    }
    assert_eq!(last.state, State::Gone, "{}", last.message);
    let snapshots = rds.describe_db_snapshots().send().await.unwrap();
    assert!(
        snapshots.db_snapshots().iter().any(|s| s
            .db_snapshot_identifier()
            .is_some_and(|i| i.starts_with("mbstack-early-final-"))),
        "no final snapshot"
    );
    assert_eq!(
        env.emulator.front.refused_calls(),
        1,
        "only the test's raw call is refused"
    );
}

/// RDS modifies no stopped instance (`InvalidDBInstanceState`): a change to a
/// paused stack waits for the instance to run; resume starts it, the apply after
/// that makes the change.
#[tokio::test]
async fn a_stopped_db_is_changed_once_it_runs_again() {
    let (env, mut inputs) = realistic(&["asleep"]).await;
    let rds = aws_sdk_rds::Client::new(&env.config);
    let mut spec = StackSpec::new("asleep");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    applied(&d, &spec, "run-a").await;
    spec.paused = true;
    applied(&d, &spec, "run-pause").await;
    let e = rds
        .modify_db_instance()
        .db_instance_identifier("mbstack-asleep")
        .backup_retention_period(9)
        .apply_immediately(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidDBInstanceState");
    spec.database.backup_retention_days = 14;
    env.log.clear();
    let o = applied(&d, &spec, "run-change-paused").await;
    assert_eq!(
        env.log.mutating(),
        vec![],
        "a stopped instance was modified"
    );
    let note = &o[0].changes[1].detail;
    assert!(
        note.contains("backup retention 7 → 14 days not yet"),
        "{note}"
    );
    spec.paused = false;
    let resumed = applied(&d, &spec, "run-resume").await;
    assert!(resumed[0]
        .changes
        .iter()
        .any(|c| c.detail.starts_with("start (resumed)")));
    // The resume applies again until the instance is ready (as the state
    // machine's create loop does), so the change it waited for follows in the
    // same run; an apply after it changes nothing more.
    let after = applied(&d, &spec, "run-after").await;
    assert!(resumed[0]
        .changes
        .iter()
        .any(|c| c.action == Action::Update && c.detail.contains("backup retention 7 → 14 days")));
    assert!(!after[0].changed(), "{:?}", after[0].changes);
    assert_eq!(
        instance(&env, "mbstack-asleep")
            .await
            .unwrap()
            .backup_retention_period(),
        Some(14)
    );
    assert_eq!(
        env.emulator.front.refused_calls(),
        1,
        "only the test's raw call is refused"
    );
}

/// RDS grows storage by at least 10 % (less is rounded up, after which the spec
/// would ask to shrink) and once in 6 hours (`InvalidParameterCombination`):
/// +5 % is refused in plan, naming the field and the least size; +10 % grows;
/// the next change within 6 hours waits, with its time; less than the instance
/// has is converged.
#[tokio::test]
async fn storage_grows_by_ten_percent_once_in_six_hours_and_never_shrinks() {
    let (env, mut inputs) = realistic(&["disk"]).await;
    let mut spec = StackSpec::new("disk");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    applied(&d, &spec, "run-a").await;
    spec.database.storage_gib = 21;
    env.log.clear();
    match d.call(Verb::Plan, &spec, "run-plan", Scope::Stack).await {
        Err(TierError::Refused(msg)) => {
            assert!(
                msg.contains("database.storageGib") && msg.contains("22"),
                "{msg}"
            )
        }
        other => panic!("a 5 % increase: {other:?}"),
    }
    match d.call(Verb::Apply, &spec, "run-5", Scope::Stack).await {
        Err(TierError::Refused(msg)) => assert!(msg.contains("at least 10 %"), "{msg}"),
        other => panic!("a 5 % increase: {other:?}"),
    }
    assert_eq!(env.log.mutating(), vec![]);
    spec.database.storage_gib = 22;
    applied(&d, &spec, "run-10").await;
    assert_eq!(
        instance(&env, "mbstack-disk")
            .await
            .unwrap()
            .allocated_storage(),
        Some(22)
    );
    spec.database.storage_gib = 30;
    env.log.clear();
    let o = applied(&d, &spec, "run-again").await;
    assert_eq!(
        env.log.mutating(),
        vec![],
        "a second storage change within 6 hours"
    );
    let note = &o[0].changes[1].detail;
    assert!(
        note.contains("not yet") && note.contains("6 hours after the last, at 20"),
        "{note}"
    );
    spec.database.storage_gib = 20;
    env.log.clear();
    let o = applied(&d, &spec, "run-less").await;
    assert_eq!(env.log.mutating(), vec![]);
    assert!(
        o[0].changes[1].detail.contains("storage stays 22 GiB"),
        "{:?}",
        o[0].changes
    );
    assert_eq!(env.emulator.front.refused_calls(), 0);
}

/// After a storage change RDS optimizes the storage for hours
/// (`storage-optimization`), and no instance is stopped then: a pause in that
/// time ends at once, saying why the database still runs, instead of waiting
/// for a stop that never comes (it timed out every night).
#[tokio::test]
async fn a_pause_during_storage_optimization_says_why_the_db_still_runs() {
    let (env, mut inputs) = realistic(&["tuned"]).await;
    let mut spec = StackSpec::new("tuned");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    storage_grown(&d, &mut spec).await;
    spec.paused = true;
    env.log.clear();
    let paused = applied(&d, &spec, "run-pause").await;
    assert_eq!(paused.last().unwrap().state, State::Ready);
    assert!(
        paused[0].changes.iter().any(|c| c
            .detail
            .contains("not stopped yet: RDS is optimizing its storage")),
        "{:?}",
        paused[0].changes
    );
    assert_eq!(
        env.log.mutating(),
        vec![],
        "nothing to call while it optimizes"
    );
    assert_eq!(env.emulator.front.refused_calls(), 0);
}

/// RDS modifies an instance only when it is available: a restore whose
/// snapshot is older than `database.engineVersion` is upgraded once the
/// restored instance is available, not while it is still creating (the
/// apply-again loop asked at every poll, RDS refused each time with
/// InvalidDBInstanceState, and the run timed out and deleted the restore).
#[tokio::test]
async fn a_restore_of_an_older_engine_is_upgraded_once_available_never_before() {
    let (env, mut inputs) = realistic(&["elder", "heir"]).await;
    let rds = aws_sdk_rds::Client::new(&env.config);
    let mut old = StackSpec::new("elder");
    old.database.engine_version = "16".into();
    // Larger than the spec restoring it: the restore keeps the snapshot's.
    old.database.storage_gib = 30;
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    applied(&d, &old, "run-a").await;
    rds.create_db_snapshot()
        .db_instance_identifier("mbstack-elder")
        .db_snapshot_identifier("elder-manual")
        .send()
        .await
        .unwrap();
    // RDS restores an available snapshot only (minutes; seconds here).
    let t0 = std::time::Instant::now();
    loop {
        let s = rds
            .describe_db_snapshots()
            .db_snapshot_identifier("elder-manual")
            .send()
            .await
            .unwrap();
        if s.db_snapshots()[0].status() == Some("available") {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "never available"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut spec = StackSpec::new("heir");
    spec.database.restore_from = Some("elder-manual".into());
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    let out = applied(&d, &spec, "run-b").await;
    assert_eq!(out.last().unwrap().state, State::Ready);
    // The change line tells what the restore makes: the snapshot's storage
    // and engine, not the spec's.
    let made = out
        .iter()
        .flat_map(|o| o.changes.iter())
        .find(|c| c.kind == "db-instance" && c.action == Action::Create)
        .map(|c| c.detail.clone())
        .unwrap_or_default();
    assert!(
        made.contains("elder-manual (30 GiB")
            && made.contains(", 30 GiB gp3")
            && made.contains("PostgreSQL 16"),
        "{made}"
    );
    let db = instance(&env, "mbstack-heir").await.unwrap();
    assert!(
        db.engine_version().is_some_and(|v| v.starts_with("17")),
        "{:?}",
        db.engine_version()
    );
    assert!(db.master_user_secret().is_some(), "no managed password");
    assert_eq!(
        env.emulator.front.refused_calls(),
        0,
        "a ModifyDBInstance reached RDS before the instance was available"
    );
}

/// A stack made by older mbstack has its instance and subnet group named
/// `<stack>-db` (and tagged by it). The data tier now names new ones
/// `mbstack-<stack>`, the only names its policy lets it tag on create (so
/// that a foreign `billing-db` can never be tagged into the tier and then
/// deleted); the old ones are found, kept and changed in place, never
/// created again beside them nor renamed (a rename moves Metabase's
/// endpoint), and a destroy deletes them.
#[tokio::test]
async fn a_database_named_by_older_mbstack_is_adopted_not_duplicated() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("elderly");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    // What older mbstack made: the same calls, the old names.
    let rds = aws_sdk_rds::Client::new(&env.config);
    let net = &d.inputs["network"];
    let subnets: Vec<String> = net["privateSubnetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let tags = |run: &str| {
        [
            (STACK_TAG, "elderly"),
            (TIER_TAG, "data"),
            (CREATED_BY_TAG, run),
            (NAME_TAG, "elderly-db"),
        ]
        .into_iter()
        .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
        .collect::<Vec<_>>()
    };
    rds.create_db_subnet_group()
        .db_subnet_group_name("elderly-db")
        .db_subnet_group_description("older mbstack")
        .set_subnet_ids(Some(subnets))
        .set_tags(Some(tags("old-run")))
        .send()
        .await
        .unwrap();
    rds.create_db_instance()
        .db_instance_identifier("elderly-db")
        .engine("postgres")
        .engine_version("17")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .storage_type("gp3")
        .storage_encrypted(true)
        .publicly_accessible(false)
        .db_name("metabase")
        .master_username("metabase")
        .manage_master_user_password(true)
        .db_subnet_group_name("elderly-db")
        .vpc_security_group_ids(net["dbSecurityGroupId"].as_str().unwrap())
        .backup_retention_period(7)
        .set_tags(Some(tags("old-run")))
        .send()
        .await
        .unwrap();

    let out = applied(&d, &spec, "run-new").await;
    let creates: Vec<String> = out
        .iter()
        .flat_map(|o| o.changes.iter())
        .filter(|c| c.action == Action::Create)
        .map(|c| format!("{} {}", c.kind, c.id))
        .collect();
    // Older mbstack put no Metabase image on record: the database is
    // snapshotted before the spec's image is recorded, and nothing else made.
    assert!(
        creates.len() == 1 && creates[0].starts_with("db-snapshot mbstack-elderly-pre-"),
        "created beside the old ones: {creates:?}"
    );
    assert!(instance(&env, "mbstack-elderly").await.is_none());
    assert_eq!(
        out.last().unwrap().outputs["instanceId"],
        serde_json::json!("elderly-db")
    );
    assert_eq!(
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .len(),
        1
    );

    // A change reaches the old instance in place.
    let mut bigger = spec.clone();
    bigger.database.storage_gib = 30;
    applied(&d, &bigger, "run-grow").await;
    assert_eq!(
        instance(&env, "elderly-db")
            .await
            .unwrap()
            .allocated_storage(),
        Some(30)
    );

    // A destroy deletes both, and names its final snapshot as new stacks do.
    let mut gone = bigger.clone();
    gone.database.final_snapshot = true;
    d.settled(
        Verb::Destroy,
        &gone,
        "run-bye",
        std::time::Duration::from_millis(200),
        OnRetryable::Fail,
    )
    .await;
    assert!(instance(&env, "elderly-db").await.is_none());
    assert!(rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("elderly-db")
        .send()
        .await
        .is_err());
    let snaps = rds.describe_db_snapshots().send().await.unwrap();
    assert!(
        snaps.db_snapshots().iter().any(|s| s
            .db_snapshot_identifier()
            .is_some_and(|i| i.starts_with("mbstack-elderly-final-"))),
        "{:?}",
        snaps
            .db_snapshots()
            .iter()
            .map(|s| s.db_snapshot_identifier())
            .collect::<Vec<_>>()
    );
}

/// Someone else's database happens to bear the name older mbstack gave
/// (`<stack>-db`), without the stack's tag: it is not the stack's. The stack
/// gets its own `mbstack-<stack>`, and the foreign one is not touched.
#[tokio::test]
async fn a_foreign_database_with_the_old_name_is_left_alone() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("billing");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    let rds = aws_sdk_rds::Client::new(&env.config);
    rds.create_db_instance()
        .db_instance_identifier("billing-db")
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username("finance")
        .master_user_password("not-ours-1234")
        .tags(
            aws_sdk_rds::types::Tag::builder()
                .key("team")
                .value("finance")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = applied(&d, &spec, "run-1").await;
    assert_eq!(
        out.last().unwrap().outputs["instanceId"],
        serde_json::json!("mbstack-billing")
    );
    let foreign = instance(&env, "billing-db").await.expect("the foreign DB");
    assert_eq!(foreign.allocated_storage(), Some(20));
    assert_eq!(tag(&foreign, STACK_TAG), None, "the foreign DB was tagged");
    d.settled(
        Verb::Destroy,
        &spec,
        "run-bye",
        std::time::Duration::from_millis(200),
        OnRetryable::Fail,
    )
    .await;
    assert!(
        instance(&env, "billing-db").await.is_some(),
        "the foreign DB was deleted"
    );
}

/// The manual snapshots of the stack's instance, by name.
async fn manual_snapshots(env: &TestEnv, instance: &str) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(&env.config);
    let mut names: Vec<String> = rds
        .describe_db_snapshots()
        .db_instance_identifier(instance)
        .snapshot_type("manual")
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Images whose tags say no version (digests) switched A → B → A → B: each
/// switch is snapshotted anew. The snapshot taken before B the first time
/// holds the database as A left it then, not as it is after B and A ran: it is
/// never taken for the second switch to B.
#[tokio::test]
async fn each_switch_between_images_is_snapshotted_anew() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("swap");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    let a = format!("metabase/metabase@sha256:{}", "a".repeat(64));
    let b = format!("metabase/metabase@sha256:{}", "b".repeat(64));
    spec.app.image = a.clone();
    applied(&d, &spec, "run-0").await;
    assert!(manual_snapshots(&env, "mbstack-swap").await.is_empty());
    for (i, image) in [&b, &a, &b].into_iter().enumerate() {
        // RDS stamps a snapshot to the second.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        spec.app.image = image.clone();
        applied(&d, &spec, &format!("run-{}", i + 1)).await;
        assert_eq!(
            manual_snapshots(&env, "mbstack-swap").await.len(),
            i + 1,
            "switch {} to {image}",
            i + 1
        );
    }
}

/// RDS optimizes an instance's storage for hours after a storage change, and
/// snapshots it meanwhile ("The source DB instance must be in the available
/// or storage-optimization state"): an image change then is snapshotted
/// first, as any other, not rolled out unsnapshotted.
#[tokio::test]
async fn an_image_change_while_storage_is_optimized_is_snapshotted_first() {
    let (env, mut inputs) = realistic(&["opt"]).await;
    let mut spec = StackSpec::new("opt");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: inputs.remove(0),
    };
    storage_grown(&d, &mut spec).await;
    spec.app.image = "metabase/metabase:v0.59.1".into();
    let out = applied(&d, &spec, "run-c").await;
    // Each pass reports what the run created (the state machine lists each once).
    let mut made: Vec<String> = out
        .iter()
        .flat_map(|o| o.changes.iter())
        .filter(|c| c.kind == "db-snapshot" && c.action == Action::Create)
        .map(|c| c.id.clone())
        .collect();
    made.dedup();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].starts_with("mbstack-opt-pre-0-59-1-"), "{made:?}");
    assert_eq!(env.emulator.front.refused_calls(), 0);
}

/// A failed upgrade's return that did not finish leaves the stack's database
/// set aside (`mbstack-<stack>-migrated-…`) and none under its name: an apply
/// then refuses to create a new, empty database (whose Metabase would open
/// its setup page to whoever comes first) and says how to get the set-aside
/// one back.
#[tokio::test]
async fn no_empty_database_is_created_beside_a_set_aside_one() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("aside");
    let d = TierRunner {
        env: &env,
        tier: Tier::Data,
        inputs: network_inputs(&env, &spec).await,
    };
    let rds = aws_sdk_rds::Client::new(&env.config);
    rds.create_db_instance()
        .db_instance_identifier("mbstack-aside-migrated-0badc0de")
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username("u")
        .manage_master_user_password(true)
        .tags(
            aws_sdk_rds::types::Tag::builder()
                .key(STACK_TAG)
                .value("aside")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let Err(err) = d
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
    else {
        panic!("an apply went ahead beside the set-aside database");
    };
    let text = err.to_string();
    for part in [
        "set aside as DB mbstack-aside-migrated-0badc0de",
        "--new-db-instance-identifier mbstack-aside",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    assert!(
        instance(&env, "mbstack-aside").await.is_none(),
        "an empty database was created"
    );
}
