//! The real state machine, executed by moto, its tasks served in-process: apply,
//! idempotent re-apply, rollback of a failure in each tier, a failed update of a
//! healthy stack, destroy, and an invalid input.

use mbstack_core::Tier;
use mbstack_tests::e2e::{Deployed, Inject};
use mbstack_tests::stack_leftovers;
use serde_json::json;

#[tokio::test]
async fn apply_then_reapply_without_change_then_destroy() {
    let d = Deployed::start().await;
    let run = d.run("apply-1", json!({"stack": "e2e"})).await;
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?} {:?} states {:?}",
        run.error, run.cause, run.state_names
    );
    let out = run.output.expect("an output");
    let url = out["url"].as_str().expect("a URL");
    assert!(url.starts_with("http://e2e-alb"), "{url}");
    assert!(
        serde_json::to_string(&out).unwrap().starts_with("{\"url\""),
        "URL first"
    );
    assert!(out["outputs"]["data"]["secretArn"].is_string());
    assert!(out["changes"].as_array().unwrap().len() > 20);
    assert!(
        run.state_names.iter().any(|n| n == "Wait for the database"),
        "the machine looped: {:?}",
        run.state_names
    );
    assert!(!stack_leftovers(&d.env.config, "e2e").await.is_empty());

    d.env.log.clear();
    let again = d.run("apply-2", json!({"stack": "e2e"})).await;
    assert_eq!(
        again.status, "SUCCEEDED",
        "{:?} {:?}",
        again.error, again.cause
    );
    assert_eq!(
        d.env.log.mutating(),
        vec![],
        "a re-apply with no change mutated"
    );
    assert!(again.output.unwrap()["changes"]
        .as_array()
        .unwrap()
        .is_empty());

    let gone = d
        .run("destroy-1", json!({"stack": "e2e", "action": "destroy"}))
        .await;
    assert_eq!(
        gone.status, "SUCCEEDED",
        "{:?} {:?} {:?}",
        gone.error, gone.cause, gone.state_names
    );
    assert_eq!(
        stack_leftovers(&d.env.config, "e2e").await,
        Vec::<String>::new()
    );
    let rds = aws_sdk_rds::Client::new(&d.env.config);
    let snaps = rds.describe_db_snapshots().send().await.unwrap();
    assert!(snaps.db_snapshots().iter().any(|s| s
        .db_snapshot_identifier()
        .unwrap_or("")
        .starts_with("e2e-final-")));
}

#[tokio::test]
#[ignore]
async fn debug_history() {
    let d = Deployed::start().await;
    let run = d.run("apply-1", json!({"stack": "e2e"})).await;
    for line in run.history_text.lines() {
        println!("{}", &line[..line.len().min(3000)]);
    }
}
