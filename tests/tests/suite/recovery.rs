//! Runs that end where no Catch sees them (issue 35): a `States.Runtime`
//! error (which `States.ALL` does not catch on AWS), a StopExecution, a
//! time-out. The deployment's rule on the state machine's status changes
//! starts a recovery, which rolls back what the run created, releases the
//! stack's lock and publishes one notification; the runs that end through
//! their own Finish start none.

use std::time::Duration;

use mbstack_core::Tier;
use mbstack_local::{Deployed, Execution, Inject, Misbehaviour};
use mbstack_tests::stack_leftovers;
use serde_json::{json, Value};

use mbstack_tests::published;

async fn lock_free(d: &Deployed, stack: &str) -> bool {
    aws_sdk_ssm::Client::new(&d.config)
        .get_parameter()
        .name(format!("/mbstack/{stack}/lock"))
        .send()
        .await
        .is_err()
}

/// Starts execution `name` and returns its ARN once it has entered a state
/// whose name starts with `state`.
async fn started_until(d: &Deployed, name: &str, input: Value, state: &str) -> String {
    let arn = d.start_execution(name, input).await.expect("started");
    let t0 = std::time::Instant::now();
    loop {
        let h = d
            .sfn
            .get_execution_history()
            .execution_arn(&arn)
            .max_results(1000)
            .send()
            .await
            .expect("history");
        if h.events().iter().any(|e| {
            e.state_entered_event_details()
                .is_some_and(|s| s.name().starts_with(state))
        }) {
            return arn;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{name} never entered {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The recovery of `run`: it ends SUCCEEDED, having rolled back.
async fn recovered(d: &Deployed, run: &Execution) -> Execution {
    let recovery = d
        .recovery_of(&run.arn, Duration::from_secs(30))
        .await
        .expect("the rule starts a recovery");
    assert_eq!(
        recovery.status, "SUCCEEDED",
        "{:?} {:?} states {:?}",
        recovery.error, recovery.cause, recovery.state_names
    );
    assert!(
        recovery.state_names.iter().any(|n| n == "Roll back"),
        "{:?}",
        recovery.state_names
    );
    recovery
}

/// A tier's outcome that the state machine cannot select from fails the state
/// with `States.Runtime`: on AWS no `States.ALL` Catch sees it, so the run
/// ends at once with the network, database and load balancer it created. The
/// recovery rolls all of it back; a run that failed and rolled back itself
/// starts no recovery.
#[tokio::test]
async fn a_run_ended_by_states_runtime_is_rolled_back_by_its_recovery() {
    let d = Deployed::start_notifying().await.expect("deployed");
    d.emulator.front.start_journal();
    d.misbehave(Some((
        Inject {
            tier: Tier::App,
            verb: "apply",
        },
        Misbehaviour::Malformed,
    )));
    let run = d
        .run("runtime-1", json!({"stack": "uncaught"}))
        .await
        .expect("the run ends");
    d.misbehave(None);
    assert_eq!(run.status, "FAILED");
    // As AWS: States.ALL does not catch it (moto's own engine would roll back).
    assert_eq!(
        run.error.as_deref(),
        Some("States.Runtime"),
        "{:?}",
        run.cause
    );
    assert!(
        !run.state_names.iter().any(|n| n == "Roll back"),
        "{:?}",
        run.state_names
    );
    let recovery = recovered(&d, &run).await;
    assert_eq!(
        stack_leftovers(&d.config, "uncaught").await,
        Vec::<String>::new()
    );
    assert!(lock_free(&d, "uncaught").await, "the lock is still held");
    let sent = published(&d);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    for part in [
        "runtime-1",
        "States.Runtime",
        "where no Catch runs",
        "delete",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let out = recovery.output.expect("the recovery's output");
    assert_eq!(out["stack"], json!("uncaught"));
    assert_eq!(out["status"], json!("failed"));

    // A failure the run's own Catch rolled back starts no recovery.
    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let caught = mbstack_tests::checks::run(&d, "caught-1", json!({"stack": "caught"})).await;
    d.inject(None);
    assert_eq!(caught.status, "FAILED");
    assert_eq!(caught.error.as_deref(), Some("Mbstack.AwsError"));
    assert!(d
        .recovery_of(&caught.arn, Duration::from_secs(3))
        .await
        .is_err());
    assert_eq!(published(&d).len(), 1, "the rolled-back run's own message");
}

/// A create stopped from the API half-way (ABORTED: no Catch runs): its
/// recovery rolls back what it had created, frees the lock and tells of it.
#[tokio::test]
async fn a_create_stopped_half_way_is_rolled_back_by_its_recovery() {
    let d = Deployed::start_notifying().await.expect("deployed");
    d.emulator.front.start_journal();
    let arn = started_until(
        &d,
        "stopped-1",
        json!({"stack": "halted"}),
        "Wait for the database",
    )
    .await;
    assert!(!stack_leftovers(&d.config, "halted").await.is_empty());
    d.sfn
        .stop_execution()
        .execution_arn(&arn)
        .cause("a person pressed Stop")
        .send()
        .await
        .expect("stopped");
    let run = d.wait_for(&arn, "stopped-1", None).await.expect("ended");
    assert_eq!(run.status, "ABORTED");
    recovered(&d, &run).await;
    assert_eq!(
        stack_leftovers(&d.config, "halted").await,
        Vec::<String>::new()
    );
    assert!(lock_free(&d, "halted").await, "the lock is still held");
    let sent = published(&d);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    for part in ["stopped-1", "was stopped (ABORTED)", "delete"] {
        assert!(message.contains(part), "{part} not in {message}");
    }
}

/// A destroy stopped half-way is reported, not undone: its recovery frees the
/// lock and says what to do; a destroy run again then ends the stack.
#[tokio::test]
async fn a_destroy_stopped_half_way_is_reported_and_a_destroy_finishes_it() {
    let d = Deployed::start_notifying().await.expect("deployed");
    let up = mbstack_tests::checks::run(&d, "up-1", json!({"stack": "midway"})).await;
    assert_eq!(up.status, "SUCCEEDED", "{:?}", up.cause);
    d.emulator.front.start_journal();
    let input = json!({"stack": "midway", "action": "destroy"});
    let arn = started_until(&d, "down-1", input, "Delete the database").await;
    d.sfn
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("stopped");
    let run = d.wait_for(&arn, "down-1", None).await.expect("ended");
    assert_eq!(run.status, "ABORTED");
    let recovery = d
        .recovery_of(&run.arn, Duration::from_secs(30))
        .await
        .expect("a recovery");
    assert_eq!(recovery.status, "SUCCEEDED", "{:?}", recovery.cause);
    assert!(
        recovery
            .state_names
            .iter()
            .any(|n| n == "Report the stopped destroy")
            && !recovery.state_names.iter().any(|n| n == "Roll back"),
        "{:?}",
        recovery.state_names
    );
    assert!(lock_free(&d, "midway").await);
    let sent = published(&d);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let down = mbstack_tests::checks::run(
        &d,
        "down-2",
        json!({"stack": "midway", "action": "destroy"}),
    )
    .await;
    assert_eq!(down.status, "SUCCEEDED", "{:?}", down.cause);
    assert_eq!(
        stack_leftovers(&d.config, "midway").await,
        Vec::<String>::new()
    );
}

/// Step Functions' call to Lambda that gets no answer (its connection closed)
/// is `Lambda.SdkClientException` on AWS, which the state machine retries.
/// moto called it `States.Runtime`: inside the Parallel branch of the database
/// the execution failed at once with "ValueError(Custom Error Names MUST NOT
/// begin with the prefix 'States.', got 'States.Runtime'.)" and left the
/// network (issue 35's run).
#[tokio::test]
async fn an_invocation_that_gets_no_answer_is_retried_as_aws_names_it() {
    let d = Deployed::start().await.expect("deployed");
    d.emulator.front.drop_invocations("mbstack-data", 1);
    let run = mbstack_tests::checks::run(&d, "closed-1", json!({"stack": "closed"})).await;
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?} {:?} states {:?}",
        run.error, run.cause, run.state_names
    );
    assert!(
        run.history_text.contains("Lambda.SdkClientException"),
        "the dropped invocation was not seen as AWS names it"
    );
}

/// Lambda answering Step Functions' invoke with one of its own errors
/// (`ServiceException`, HTTP 500; `TooManyRequestsException`, HTTP 429) is
/// `Lambda.<code>` on AWS, among the transient Lambda errors Step Functions'
/// best practices say to retry: the run retries the task and succeeds, each
/// tier's work done once.
#[tokio::test]
async fn the_lambda_services_own_errors_are_retried_as_aws_names_them() {
    let d = Deployed::start().await.expect("deployed");
    d.emulator
        .front
        .fail_invocations("mbstack-network", "ServiceException", 1);
    d.emulator
        .front
        .fail_invocations("mbstack-app", "TooManyRequestsException", 2);
    let run = mbstack_tests::checks::run(&d, "lambda-1", json!({"stack": "lambdaerr"})).await;
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?} {:?} states {:?}",
        run.error, run.cause, run.state_names
    );
    for error in ["Lambda.ServiceException", "Lambda.TooManyRequestsException"] {
        assert!(
            run.history_text.contains(error),
            "{error} was not seen as AWS names it"
        );
    }
    let vpcs = mbstack_tests::ec2_resources(&aws_sdk_ec2::Client::new(&d.config), "lambdaerr")
        .await
        .into_iter()
        .filter(|(k, _)| k == "vpc")
        .count();
    assert_eq!(vpcs, 1, "the network's work was done once");
}

/// A tier that panics is a function error (lambda_runtime reports it, as the
/// functions keep unwinding), which the run's Catch sees: rolled back, no
/// recovery needed.
#[tokio::test]
async fn a_tier_that_panics_fails_its_run_which_rolls_back() {
    let d = Deployed::start().await.expect("deployed");
    d.misbehave(Some((
        Inject {
            tier: Tier::Data,
            verb: "apply",
        },
        Misbehaviour::Panic,
    )));
    let run = mbstack_tests::checks::run(&d, "panic-1", json!({"stack": "panics"})).await;
    d.misbehave(None);
    assert_eq!(run.status, "FAILED");
    assert!(
        run.cause
            .as_deref()
            .unwrap_or_default()
            .contains("Lambda panicked: injected: the data tier panicked in apply"),
        "{:?} {:?}",
        run.error,
        run.cause
    );
    assert!(run.state_names.iter().any(|n| n == "Roll back"));
    assert_eq!(
        stack_leftovers(&d.config, "panics").await,
        Vec::<String>::new()
    );
}

/// A run that put a new Metabase image on record and then ended where no
/// Catch saw it (here `States.Runtime` while its new version rolled out)
/// had its database migrated all the same: its recovery reads the snapshot
/// taken before the image from the run's last state and returns the
/// database to it, as the run's own rollback would have, then puts the
/// version before back on it.
#[tokio::test]
async fn the_recovery_of_an_upgrade_returns_the_database_too() {
    use mbstack_core::metabase::{IMAGE_TAG, VERSION_TAG};
    let d = Deployed::start_notifying().await.expect("deployed");
    let (a, b) = ("metabase/metabase:v0.57.2", "metabase/metabase:v0.58.7");
    let up = |image: &str| json!({"stack": "recup", "app": {"image": image}});
    let run = d.run("recup-a", up(a)).await.expect("the run ends");
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    d.misbehave(Some((
        Inject {
            tier: Tier::App,
            verb: "check",
        },
        Misbehaviour::Malformed,
    )));
    d.emulator.front.start_journal();
    let run = d.run("recup-b", up(b)).await.expect("the run ends");
    d.misbehave(None);
    assert_eq!(
        run.error.as_deref(),
        Some("States.Runtime"),
        "{:?}",
        run.cause
    );
    let recovery = recovered(&d, &run).await;
    assert!(
        recovery
            .state_names
            .iter()
            .any(|n| n == "Return the database to the snapshot the ended run took"),
        "{:?}",
        recovery.state_names
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let db = mbstack_data::find(&rds, "recup")
        .await
        .unwrap()
        .expect("the stack's database");
    let tags = mbstack_core::naming::pairs(db.tag_list().iter().map(|t| (t.key(), t.value())));
    let tag = |k| mbstack_core::naming::tag_value(&tags, k).map(str::to_string);
    let restored = tag(mbstack_data::RESTORED_FROM_TAG).unwrap_or_default();
    assert!(
        restored.starts_with("mbstack-recup-pre-0-58-7-"),
        "{tags:?}"
    );
    assert_eq!(tag(IMAGE_TAG).as_deref(), Some(a));
    assert_eq!(tag(VERSION_TAG).as_deref(), Some("0.57.2"));
    let health = mbstack_app::service_health(&aws_sdk_ecs::Client::new(&d.config), "recup")
        .await
        .unwrap()
        .expect("the service");
    assert_eq!(health.rollout.as_deref(), Some("COMPLETED"));
    assert!(lock_free(&d, "recup").await, "the lock is still held");
    let sent = published(&d);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("restored from {restored}")),
        "{message}"
    );
}

/// A run whose rollback had returned its database and then ended where no
/// Catch saw it (here in "Roll back network", before Metabase was put on the
/// returned database): its recovery finishes the return the run had
/// decided, so the service does not stay on the deleted database's secret.
#[tokio::test]
async fn the_recovery_of_a_run_ended_in_its_return_finishes_it() {
    let d = Deployed::start_notifying().await.expect("deployed");
    let (a, b) = ("metabase/metabase:v0.57.2", "metabase/metabase:v0.58.7");
    let up = |image: &str| json!({"stack": "halfway", "app": {"image": image}});
    let run = d.run("halfway-a", up(a)).await.expect("the run ends");
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    d.emulator.front.fail_migrations_of(Some(b));
    d.misbehave(Some((
        Inject {
            tier: Tier::Network,
            verb: "destroy",
        },
        Misbehaviour::Malformed,
    )));
    let run = d.run("halfway-b", up(b)).await.expect("the run ends");
    d.misbehave(None);
    d.emulator.front.fail_migrations_of(None);
    assert_eq!(
        run.error.as_deref(),
        Some("States.Runtime"),
        "{:?}",
        run.cause
    );
    assert!(
        run.state_names.iter().any(|n| n == "Roll back network"),
        "{:?}",
        run.state_names
    );
    let recovery = recovered(&d, &run).await;
    assert!(
        recovery
            .state_names
            .iter()
            .any(|n| n == "Put back previous Metabase"),
        "{:?}",
        recovery.state_names
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let secret = mbstack_data::managed_secret_arn(&rds, "halfway")
        .await
        .unwrap()
        .expect("the restored database's secret");
    let (image, secrets) = mbstack_tests::running_task_definition(&d.config, "halfway").await;
    assert_eq!(image, a);
    assert_eq!(
        secrets["MB_DB_PASS"],
        json!(format!("{secret}:password::")),
        "Metabase does not read the returned database's secret"
    );
    assert!(lock_free(&d, "halfway").await, "the lock is still held");
}

/// A run whose work was done but whose records could not be written fails:
/// it is told of exactly once. Its Finish tells when it could still release
/// the lock (its recovery then has nothing to do); when the lock's own delete
/// was refused, the recovery finds the run holding it, tells, and releases it.
#[tokio::test]
async fn a_run_whose_records_fail_after_its_work_is_told_of_once() {
    use mbstack_emulator::FaultClass;
    let d = Deployed::start_notifying().await.expect("deployed");
    let input = json!({"stack": "told"});
    let run = d.run("told-1", input.clone()).await.expect("the run ends");
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
    // A repair's SSM writes, counted on a clean one: the last PutParameter is
    // Finish's record of the run, the last DeleteParameter the lock's release.
    d.emulator.front.set_fault(None);
    let run = d.run("told-2", input.clone()).await.expect("the run ends");
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
    let names = d.emulator.front.call_names();
    let count = |n: &str| names.iter().filter(|c| *c == n).count() as u64;
    let (puts, deletes) = (
        count("AmazonSSM.PutParameter"),
        count("AmazonSSM.DeleteParameter"),
    );
    assert!(puts > 0 && deletes > 0, "{names:?}");
    for (call, nth, teller) in [
        ("AmazonSSM.PutParameter", puts, "Finish"),
        ("AmazonSSM.DeleteParameter", deletes, "the recovery"),
    ] {
        let _ = published(&d);
        d.emulator.front.start_journal();
        d.emulator.front.set_fault(None);
        d.emulator.front.fail_call(call, nth, FaultClass::Terminal);
        let name = format!("told-{}", call.rsplit('.').next().unwrap_or(call));
        let run = d.run(&name, input.clone()).await.expect("the run ends");
        d.emulator.front.set_fault(None);
        assert_eq!(run.status, "FAILED", "{call}: {:?}", run.state_names);
        let cause = run.cause.clone().unwrap_or_default();
        assert!(
            cause.contains(call.rsplit('.').next().unwrap_or(call)),
            "{cause}"
        );
        // The deployment's rule starts a recovery for every failed run.
        let recovery = d
            .recovery_of(&run.arn, Duration::from_secs(30))
            .await
            .expect("a recovery starts");
        assert_eq!(recovery.status, "SUCCEEDED", "{:?}", recovery.cause);
        assert!(
            lock_free(&d, "told").await,
            "{call}: the lock is still held"
        );
        let sent = published(&d);
        assert_eq!(sent.len(), 1, "{call} ({teller} tells): {sent:#?}");
        let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&name) && message.contains("apply of stack told"),
            "{message}"
        );
        assert!(
            !stack_leftovers(&d.config, "told").await.is_empty(),
            "nothing is undone: the stack was complete"
        );
    }
    // A record SSM throttles beyond the SDK's five attempts: Finish keeps the
    // lock for Step Functions' retry and tells nobody; the retry writes it,
    // and the run succeeds without a word.
    let _ = published(&d);
    d.emulator.front.start_journal();
    d.emulator.front.set_fault(None);
    d.emulator
        .front
        .fail_calls("AmazonSSM.PutParameter", puts, 5, FaultClass::Throttle);
    let run = d
        .run("told-throttled", input.clone())
        .await
        .expect("the run ends");
    d.emulator.front.set_fault(None);
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?} {:?}",
        run.cause, run.state_names
    );
    assert!(lock_free(&d, "told").await, "the lock is still held");
    let sent = published(&d);
    assert!(
        sent.is_empty(),
        "a run that succeeded was told of as failed: {sent:#?}"
    );
}
