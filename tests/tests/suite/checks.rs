//! The suite's after-run checks catch what they are there to catch: a secret that
//! lived only for a moment, found in a log line, a task definition or a run's
//! history; nothing found where nothing leaked.

use mbstack_tests::checks::SecretWitness;
use mbstack_tests::{LogCapture, TestEnv};

#[tokio::test]
async fn the_secret_scan_finds_a_planted_secret_in_every_place_it_scans() {
    let env = TestEnv::start().await;
    let _ = LogCapture::global();
    let witness = SecretWitness::start(&env.emulator).await;
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    // Random per run, so no other test's logs can hold it by chance.
    let planted = format!(
        "planted-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(7)
    );
    let created = sm
        .create_secret()
        .name("short-lived")
        .secret_string(&planted)
        .send()
        .await
        .expect("created");
    // Seen by the witness, then gone before the scan: as in a rolled-back run.
    assert!(
        witness
            .wait_for("short-lived", std::time::Duration::from_secs(60))
            .await,
        "the witness never saw the secret"
    );
    sm.delete_secret()
        .secret_id(created.arn().unwrap_or("short-lived"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("deleted");

    tracing::info!(target: "mbstack_app", detail = %planted, "a careless log line");
    let ecs = aws_sdk_ecs::Client::new(&env.config);
    ecs.register_task_definition()
        .family("careless")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("c")
                .image("busybox")
                .memory(512)
                .environment(
                    aws_sdk_ecs::types::KeyValuePair::builder()
                        .name("MB_ENCRYPTION_SECRET_KEY")
                        .value(&planted)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("registered");

    let history = format!("TaskSucceeded {{\"key\":\"{planted}\"}}");
    let mut places: Vec<String> = witness
        .leaks(&[
            ("the execution history", &history),
            ("a clean place", "nothing"),
        ])
        .await
        .into_iter()
        .map(|(name, place)| format!("{name} in {place}"))
        .collect();
    places.sort();
    assert_eq!(
        places,
        vec![
            "short-lived in the captured logs",
            "short-lived in the execution history",
            "short-lived in the task definitions",
        ]
    );
}

#[tokio::test]
async fn the_secret_scan_finds_nothing_where_nothing_leaked() {
    let env = TestEnv::start().await;
    let witness = SecretWitness::start(&env.emulator).await;
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    sm.create_secret()
        .name("kept")
        .secret_string("a-value-that-is-nowhere-else-0123456789")
        .send()
        .await
        .expect("created");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let hits = witness
        .leaks(&[("the execution history", "{\"secretArn\":\"arn:...:kept\"}")])
        .await;
    assert_eq!(hits, Vec::<(String, String)>::new());
}
