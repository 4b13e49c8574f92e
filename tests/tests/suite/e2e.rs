//! The real state machine, executed by moto, its tasks served in-process: apply,
//! idempotent re-apply, rollback of a failure in each tier, a failed update of a
//! healthy stack, destroy, and an invalid input.

use mbstack_core::Tier;
use mbstack_local::{Deployed, Inject};
use mbstack_tests::stack_leftovers;
use serde_json::{json, Value};

/// Mutating calls of the tiers (the control function's lock and stored spec in
/// SSM are bookkeeping, not the stack).
fn tier_mutations(d: &Deployed) -> Vec<mbstack_core::Call> {
    d.log
        .mutating()
        .into_iter()
        .filter(|c| c.service != "SSM")
        .collect()
}

#[tokio::test]
async fn apply_then_reapply_without_change_then_destroy() {
    let d = Deployed::start().await.expect("deployed into the emulator");
    let run = mbstack_tests::checks::run(&d, "apply-1", json!({"stack": "e2e"})).await;
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
    assert!(!stack_leftovers(&d.config, "e2e").await.is_empty());

    // No secret value in the execution history (inputs and outputs of every state).
    let sm = aws_sdk_secretsmanager::Client::new(&d.config);
    let db_secret = out["outputs"]["data"]["secretArn"].as_str().unwrap();
    let db: serde_json::Value = serde_json::from_str(
        sm.get_secret_value()
            .secret_id(db_secret)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    let key_arn = out["outputs"]["app"]["encryptionKeySecretArn"]
        .as_str()
        .unwrap();
    let key = sm
        .get_secret_value()
        .secret_id(key_arn)
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_string();
    assert!(
        run.history_text.contains(db_secret),
        "the scan reads the history's payloads"
    );
    for secret in [db["password"].as_str().unwrap(), key.as_str()] {
        assert!(
            !run.history_text.contains(secret),
            "a secret value is in the execution history"
        );
    }

    d.log.clear();
    let again = mbstack_tests::checks::run(&d, "apply-2", json!({"stack": "e2e"})).await;
    assert_eq!(
        again.status, "SUCCEEDED",
        "{:?} {:?}",
        again.error, again.cause
    );
    assert_eq!(
        tier_mutations(&d),
        vec![],
        "a re-apply with no change mutated"
    );
    assert!(again.output.unwrap()["changes"]
        .as_array()
        .unwrap()
        .is_empty());

    let gone = mbstack_tests::checks::run(
        &d,
        "destroy-1",
        json!({"stack": "e2e", "action": "destroy"}),
    )
    .await;
    assert_eq!(
        gone.status, "SUCCEEDED",
        "{:?} {:?} {:?}",
        gone.error, gone.cause, gone.state_names
    );
    assert_eq!(
        stack_leftovers(&d.config, "e2e").await,
        Vec::<String>::new()
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let snaps = rds.describe_db_snapshots().send().await.unwrap();
    assert!(snaps.db_snapshots().iter().any(|s| s
        .db_snapshot_identifier()
        .unwrap_or("")
        .starts_with("mbstack-e2e-final-")));
}

#[tokio::test]
async fn a_failure_in_any_tier_rolls_back_everything_the_run_created() {
    for tier in Tier::PROVISIONED {
        let name = tier.as_str();
        let d = Deployed::start().await.expect("deployed into the emulator");
        d.inject(Some(Inject {
            tier,
            verb: "apply",
        }));
        let run = mbstack_tests::checks::run(&d, "apply-1", json!({"stack": "doomed"})).await;
        assert_eq!(run.status, "FAILED", "{name}");
        assert_eq!(
            run.error.as_deref(),
            Some("Mbstack.AwsError"),
            "{name}: {:?}",
            run.cause
        );
        let cause = run.cause.unwrap_or_default();
        assert!(
            cause.contains(&format!("{name} tier: injected failure")),
            "{name}: {cause}"
        );
        assert!(
            run.state_names.iter().any(|n| n == "Roll back network"),
            "{name}: {:?}",
            run.state_names
        );
        assert!(run.state_names.iter().any(|n| n == "Record failure"));
        assert_eq!(
            stack_leftovers(&d.config, "doomed").await,
            Vec::<String>::new(),
            "{name}: the rollback left resources"
        );
    }
}

#[tokio::test]
async fn a_failed_update_of_a_healthy_stack_leaves_it_as_it_was() {
    let d = Deployed::start().await.expect("deployed into the emulator");
    let first = mbstack_tests::checks::run(&d, "apply-1", json!({"stack": "steady"})).await;
    assert_eq!(first.status, "SUCCEEDED", "{:?}", first.cause);
    let mut before = stack_leftovers(&d.config, "steady").await;
    before.sort();
    let ecs = aws_sdk_ecs::Client::new(&d.config);
    let service = |ecs: aws_sdk_ecs::Client| async move {
        let out = ecs
            .describe_services()
            .cluster("steady-cluster")
            .services("metabase")
            .send()
            .await
            .unwrap();
        out.services()[0].task_definition().unwrap().to_string()
    };
    let td_before = service(ecs.clone()).await;

    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let update = mbstack_tests::checks::run(
        &d,
        "update-1",
        json!({"stack": "steady", "app": {"image": "metabase/metabase:v0.58.7"}}),
    )
    .await;
    assert_eq!(update.status, "FAILED");
    assert!(
        update.cause.unwrap_or_default().contains("app tier"),
        "the cause names the tier"
    );
    let mut after = stack_leftovers(&d.config, "steady").await;
    after.sort();
    assert_eq!(after, before, "a failed update changed what exists");
    assert_eq!(
        service(ecs).await,
        td_before,
        "the service is back on its previous task definition"
    );
    // The stack is healthy: the next apply changes nothing.
    d.inject(None);
    d.log.clear();
    let repair = mbstack_tests::checks::run(&d, "apply-2", json!({"stack": "steady"})).await;
    assert_eq!(repair.status, "SUCCEEDED", "{:?}", repair.cause);
    assert_eq!(tier_mutations(&d), vec![]);
}

#[tokio::test]
async fn an_invalid_input_fails_in_prepare_listing_every_problem_and_touching_nothing() {
    let d = Deployed::start().await.expect("deployed into the emulator");
    let run = mbstack_tests::checks::run(&d, "bad-1", json!({"stack": "Bad Name", "network": {"azCount": 9, "cidr": "8.8.0.0/16"}, "app": {"image": "metabase/metabase:latest"}, "colour": "blue"})).await;
    assert_eq!(run.status, "FAILED");
    assert_eq!(run.error.as_deref(), Some("Mbstack.InvalidSpec"));
    let cause = run.cause.unwrap_or_default();
    for field in [
        "colour",
        "stack",
        "network.cidr",
        "network.azCount",
        "app.image",
    ] {
        assert!(
            cause.contains(&format!("{field}:")),
            "{field} missing from {cause}"
        );
    }
    assert_eq!(run.state_names, mbstack_tests::REFUSED);
    assert_eq!(d.log.calls(), vec![], "an invalid input reached AWS");
}

/// A create waits only for what each piece of work uses: the database and the
/// load balancer start while the NAT gateway is still pending (they need the
/// subnets and security groups, not the NAT), and the Metabase service starts
/// only once the NAT gateway is available (its tasks pull the image through it).
#[tokio::test]
async fn a_create_starts_the_database_before_the_nat_gateway_is_available_and_the_service_after() {
    let d = Deployed::start().await.expect("deployed");
    // AWS's timings ÷20 (a NAT gateway takes 6 s): the network's own apply, slow
    // on a loaded machine, stays well inside the NAT gateway's creation.
    d.emulator.front.set_realism(true, 20);
    d.emulator.front.set_wait_divisor(20);
    d.emulator.front.start_journal();
    let run = d
        .run("critical-path", json!({"stack": "eager"}))
        .await
        .unwrap();
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let journal = d.emulator.front.take_journal();
    let first =
        |what: &dyn Fn(&mbstack_emulator::journal::Entry) -> bool| journal.iter().position(what);
    let nat_available = first(&|e| {
        e.action == "DescribeNatGateways" && e.response.contains("<state>available</state>")
    })
    .expect("the NAT gateway was seen available");
    let db = first(&|e| e.action == "CreateDBInstance").expect("the database was created");
    let alb = first(&|e| e.action == "CreateLoadBalancer").expect("the ALB was created");
    let service = first(&|e| e.action == "CreateService").expect("the service was created");
    assert!(
        db < nat_available && alb < nat_available,
        "the database (call {db}) and the ALB (call {alb}) waited for the NAT gateway (available at call {nat_available})"
    );
    assert!(
        service > nat_available,
        "the service (call {service}) started before the NAT gateway was available (call {nat_available})"
    );
}

/// A stack with its own domain through the real state machine, AWS's timings
/// ÷20: the load balancer's loop applies again until ACM issues the
/// certificate (its validation record written by the first pass), then serves
/// HTTPS; Metabase is told its address; a destroy leaves no record or
/// certificate of the stack's and touches no one else's.
#[tokio::test]
async fn a_domain_stack_applies_with_a_validated_certificate_and_destroys_to_the_zone_it_found() {
    let d = Deployed::start().await.expect("deployed");
    d.emulator.front.set_realism(true, 20);
    d.emulator.front.set_wait_divisor(20);
    let zone = mbstack_tests::public_zone(&d.config, "example.com").await;
    let theirs = mbstack_tests::issued_certificate(&d.config, &zone, "example.com").await;
    let before = mbstack_tests::dns_records(&d.config).await;
    let input = json!({"stack": "dom", "loadBalancer": {"domain": "metabase.example.com"}});
    let run = mbstack_tests::checks::run(&d, "domain-1", input).await;
    assert_eq!(
        run.status, "SUCCEEDED",
        "{:?} {:?} {:?}",
        run.error, run.cause, run.state_names
    );
    let out = run.output.expect("an output");
    assert_eq!(out["url"], "https://metabase.example.com");
    assert!(
        run.state_names
            .iter()
            .any(|n| n == "Apply the load balancer again"),
        "the certificate was issued at once? {:?}",
        run.state_names
    );
    let changes = out["changes"].as_array().expect("changes");
    let kinds: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap_or(""),
                c["action"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "certificate create",
        "dns-record create",
        "load-balancer create",
        "listener create",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} not in {kinds:?}");
    }
    let ecs = aws_sdk_ecs::Client::new(&d.config);
    let td = out["outputs"]["app"]["taskDefinitionArn"]
        .as_str()
        .expect("a task definition");
    let td = ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .unwrap();
    let env: Vec<(String, String)> = td.task_definition().unwrap().container_definitions()[0]
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or("").into(),
                kv.value().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        env.contains(&("MB_SITE_URL".into(), "https://metabase.example.com".into())),
        "{env:?}"
    );
    let records = mbstack_tests::dns_records(&d.config).await;
    assert_eq!(records.len(), before.len() + 2, "{records:?}");
    // The load balancer's security group lets HTTPS in.
    let sg = out["outputs"]["network"]["lbSecurityGroupId"]
        .as_str()
        .expect("the LB's group");
    let groups = aws_sdk_ec2::Client::new(&d.config)
        .describe_security_groups()
        .group_ids(sg)
        .send()
        .await
        .unwrap();
    let ports: Vec<i32> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter_map(|p| p.from_port())
        .collect();
    assert!(ports.contains(&443) && ports.contains(&80), "{ports:?}");

    // The deployment narrowed to other zones after the stack was made: its
    // Route 53 rights no longer reach the domain's zone, so a destroy would
    // fail at the records. It is refused before anything is touched, with
    // the deploy that fixes it.
    d.name_hosted_zones(Some(&["Z0OTHERZONE1".to_string()]))
        .await
        .unwrap();
    d.log.clear();
    let refused = mbstack_tests::checks::run(
        &d,
        "destroy-0",
        json!({"stack": "dom", "action": "destroy"}),
    )
    .await;
    let fix = format!("mbstack deploy --hosted-zones Z0OTHERZONE1,{zone}");
    assert_refused_in_prepare(&d, refused, &["loadBalancer.domain:", &fix]);
    assert_eq!(mbstack_tests::dns_records(&d.config).await, records);
    // Named again, while a second public zone of the same name now exists (a
    // DNS migration): the zone the stack's records are in is the one its
    // ledger names, so the destroy goes ahead.
    aws_sdk_route53::Client::new(&d.config)
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("migration-example.com")
        .send()
        .await
        .unwrap();
    d.name_hosted_zones(Some(std::slice::from_ref(&zone)))
        .await
        .unwrap();

    let gone = mbstack_tests::checks::run(
        &d,
        "destroy-1",
        json!({"stack": "dom", "action": "destroy"}),
    )
    .await;
    assert_eq!(
        gone.status, "SUCCEEDED",
        "{:?} {:?} {:?}",
        gone.error, gone.cause, gone.state_names
    );
    assert_eq!(
        stack_leftovers(&d.config, "dom").await,
        Vec::<String>::new()
    );
    assert_eq!(mbstack_tests::dns_records(&d.config).await, before);
    mbstack_tests::assert_certificate_stays(&d.config, &theirs).await;
    assert_eq!(
        d.emulator.front.refused_calls(),
        0,
        "mbstack provoked a refusal"
    );
}

/// A run Prepare refused as an invalid spec, its cause holding every one of
/// `words`, with no tier's call changing anything.
fn assert_refused_in_prepare(d: &Deployed, run: mbstack_local::Execution, words: &[&str]) {
    assert_eq!(
        run.error.as_deref(),
        Some("Mbstack.InvalidSpec"),
        "{:?}",
        run.cause
    );
    let cause = run.cause.unwrap_or_default();
    assert!(
        words.iter().all(|w| cause.contains(w)),
        "{words:?} not all in {cause}"
    );
    assert_eq!(run.state_names, mbstack_tests::REFUSED);
    assert_eq!(tier_mutations(d), vec![], "a refused run changed something");
}

/// The value of the stack's encryption-key secret (the test reads it; no run
/// ever prints it).
async fn key_value(d: &Deployed, stack: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&d.config);
    sm.get_secret_value()
        .secret_id(mbstack_app::names::encryption_key_secret(stack))
        .send()
        .await
        .expect("the key secret")
        .secret_string()
        .unwrap_or_default()
        .to_string()
}

async fn db_tag(d: &Deployed, id: &str, key: &str) -> Option<String> {
    let rds = aws_sdk_rds::Client::new(&d.config);
    let dbs = rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .ok()?;
    dbs.db_instances()[0]
        .tag_list()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// Whether the stack's encryption-key secret is scheduled for deletion (None:
/// there is no such secret).
async fn key_scheduled(d: &Deployed, stack: &str) -> Option<bool> {
    let sm = aws_sdk_secretsmanager::Client::new(&d.config);
    sm.describe_secret()
        .secret_id(mbstack_app::names::encryption_key_secret(stack))
        .send()
        .await
        .ok()
        .map(|s| s.deleted_date().is_some())
}

/// A restore brings Metabase's key back (a destroy had scheduled it for
/// deletion) before the service that reads it; when the run then fails, its
/// rollback puts the key back as the run found it, scheduled for deletion
/// (a live key nobody's stack uses would stay, and cost, for ever), its value
/// kept: the next restore brings the same key back.
#[tokio::test]
async fn a_failed_restore_leaves_the_key_scheduled_as_it_found_it() {
    use mbstack_emulator::FaultClass;
    use mbstack_tests::checks::run;
    let d = Deployed::start().await.expect("deployed");
    let first = run(&d, "up-1", json!({"stack": "undo"})).await;
    assert_eq!(first.status, "SUCCEEDED", "{:?}", first.cause);
    let key = key_value(&d, "undo").await;
    let down = run(&d, "down-1", json!({"stack": "undo", "action": "destroy"})).await;
    assert_eq!(down.status, "SUCCEEDED", "{:?}", down.cause);
    assert_eq!(key_scheduled(&d, "undo").await, Some(true));

    let up = json!({"stack": "undo", "database": {"restoreFrom": "latest-final"}});
    d.emulator.front.fail_call(
        "AmazonEC2ContainerServiceV20141113.CreateService",
        1,
        FaultClass::Terminal,
    );
    let failed = run(&d, "up-2", up.clone()).await;
    d.emulator.front.set_fault(None);
    assert_eq!(failed.status, "FAILED", "{:?}", failed.state_names);
    assert!(
        failed
            .cause
            .as_deref()
            .unwrap_or("")
            .contains("CreateService"),
        "{:?}",
        failed.cause
    );
    assert_eq!(
        key_scheduled(&d, "undo").await,
        Some(true),
        "the rollback left the key it had brought back live"
    );
    let left = stack_leftovers(&d.config, "undo").await;
    assert!(left.is_empty(), "not rolled back: {left:?}");

    let again = run(&d, "up-3", up).await;
    assert_eq!(again.status, "SUCCEEDED", "{:?}", again.cause);
    assert_eq!(key_value(&d, "undo").await, key, "the same key came back");
}

/// down → up keeps the data: the database is restored from the stack's final
/// snapshot with the spec's settings and Metabase gets the same encryption key
/// back; a snapshot that does not exist is refused before anything is made;
/// with the key gone (its recovery window over) the restore stops and says
/// what a new key means, and `app.newEncryptionKey` starts it anyway.
#[tokio::test]
async fn down_then_up_restores_the_final_snapshot_with_the_same_encryption_key() {
    use mbstack_tests::checks::run;
    let d = Deployed::start().await.expect("deployed");
    let first = run(&d, "up-1", json!({"stack": "keep"})).await;
    assert_eq!(
        first.status, "SUCCEEDED",
        "{:?} {:?}",
        first.error, first.cause
    );
    let key = key_value(&d, "keep").await;
    let down = run(&d, "down-1", json!({"stack": "keep", "action": "destroy"})).await;
    assert_eq!(
        down.status, "SUCCEEDED",
        "{:?} {:?}",
        down.error, down.cause
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let snapshot = rds
        .describe_db_snapshots()
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .find(|s| s.starts_with("mbstack-keep-final-"))
        .expect("a final snapshot")
        .to_string();

    // A snapshot that is not there: refused in Prepare, nothing made.
    d.log.clear();
    let bad = json!({"stack": "keep", "database": {"restoreFrom": "keep-final-19990101-000000"}});
    let refused = run(&d, "up-bad", bad).await;
    assert_refused_in_prepare(&d, refused, &["database.restoreFrom", "latest-final"]);

    d.emulator.front.start_journal();
    let up = json!({"stack": "keep", "database": {"restoreFrom": "latest-final", "instanceClass": "db.t4g.small"}});
    let restored = run(&d, "up-2", up).await;
    assert_eq!(
        restored.status, "SUCCEEDED",
        "{:?} {:?}",
        restored.error, restored.cause
    );
    let journal = d.emulator.front.take_journal();
    let restores: Vec<_> = journal
        .iter()
        .filter(|e| e.action == "RestoreDBInstanceFromDBSnapshot")
        .collect();
    assert_eq!(restores.len(), 1, "one restore");
    assert_eq!(
        restores[0].params["DBSnapshotIdentifier"],
        snapshot.as_str()
    );
    assert!(
        !journal.iter().any(|e| e.action == "CreateDBInstance"),
        "an empty database was created"
    );
    let out = restored.output.expect("an output");
    assert_eq!(out["outputs"]["data"]["restoredFrom"], snapshot.as_str());
    assert_eq!(
        db_tag(&d, "mbstack-keep", mbstack_data::RESTORED_FROM_TAG)
            .await
            .as_deref(),
        Some(snapshot.as_str())
    );
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("mbstack-keep")
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(
        db.db_instance_class(),
        Some("db.t4g.small"),
        "the spec's class"
    );
    assert_eq!(db.storage_encrypted(), Some(true));
    let secret = db
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .expect("a managed password");
    aws_sdk_secretsmanager::Client::new(&d.config)
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .expect("the restored database's password secret exists");
    // RestoreDBInstanceFromDBSnapshot's ManageMasterUserPassword "applies to
    // RDS for Oracle only": the password is handed to RDS afterwards.
    assert_eq!(
        restores[0].params.get("ManageMasterUserPassword"),
        None,
        "{:?}",
        restores[0].params
    );
    assert!(
        journal.iter().any(|e| e.action == "ModifyDBInstance"
            && e.params["DBInstanceIdentifier"] == "mbstack-keep"
            && e.params["ManageMasterUserPassword"] == "true"),
        "no ModifyDBInstance turned the managed password on"
    );
    // Metabase's tasks read that new secret.
    let ecs = aws_sdk_ecs::Client::new(&d.config);
    let svc = ecs
        .describe_services()
        .cluster("keep-cluster")
        .services("metabase")
        .send()
        .await
        .unwrap();
    let td = ecs
        .describe_task_definition()
        .task_definition(svc.services()[0].task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let from: Vec<String> = td
        .task_definition()
        .unwrap()
        .container_definitions()
        .iter()
        .flat_map(|c| c.secrets())
        .filter(|s| s.name() == "MB_DB_PASS")
        .map(|s| s.value_from().to_string())
        .collect();
    assert!(
        from.len() == 1 && from[0].starts_with(secret),
        "MB_DB_PASS comes from {from:?}, not the restored database's secret {secret}"
    );
    assert_eq!(
        key_value(&d, "keep").await,
        key,
        "Metabase's encryption key changed"
    );

    // The key gone for good: the restore stops before Metabase starts on it.
    let down = run(&d, "down-2", json!({"stack": "keep", "action": "destroy"})).await;
    assert_eq!(
        down.status, "SUCCEEDED",
        "{:?} {:?}",
        down.error, down.cause
    );
    aws_sdk_secretsmanager::Client::new(&d.config)
        .delete_secret()
        .secret_id(mbstack_app::names::encryption_key_secret("keep"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    d.log.clear();
    let up = json!({"stack": "keep", "database": {"restoreFrom": "latest-final"}});
    let stopped = run(&d, "up-3", up).await;
    assert_refused_in_prepare(&d, stopped, &["newEncryptionKey", "is gone"]);
    let up = json!({"stack": "keep", "database": {"restoreFrom": "latest-final"}, "app": {"newEncryptionKey": true}});
    let anyway = run(&d, "up-4", up).await;
    assert_eq!(
        anyway.status, "SUCCEEDED",
        "{:?} {:?}",
        anyway.error, anyway.cause
    );
    assert_ne!(key_value(&d, "keep").await, key);
}

/// A create with a domain whose Metabase service fails: the rollback takes
/// the alias, the validation record and the certificate away with the rest
/// (ELB lets the certificate go once its listener is gone), and DNS is as it
/// was.
#[tokio::test]
async fn a_failed_create_with_a_domain_rolls_back_its_records_and_certificate() {
    let d = Deployed::start().await.expect("deployed");
    let zone = mbstack_tests::public_zone(&d.config, "example.com").await;
    let theirs = mbstack_tests::issued_certificate(&d.config, &zone, "example.com").await;
    let before = mbstack_tests::dns_records(&d.config).await;
    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let input = json!({"stack": "doomed", "loadBalancer": {"domain": "metabase.example.com"}});
    let run = mbstack_tests::checks::run(&d, "apply-1", input).await;
    assert_eq!(run.status, "FAILED", "{:?}", run.cause);
    assert!(
        run.state_names
            .iter()
            .any(|n| n == "Apply the load balancer again"),
        "{:?}",
        run.state_names
    );
    assert!(
        run.state_names.iter().any(|n| n == "Record failure"),
        "{:?}",
        run.state_names
    );
    assert_eq!(
        stack_leftovers(&d.config, "doomed").await,
        Vec::<String>::new()
    );
    assert_eq!(mbstack_tests::dns_records(&d.config).await, before);
    mbstack_tests::assert_certificate_stays(&d.config, &theirs).await;
}

/// Every domain and zone problem a new user meets is refused in Prepare, with
/// the field to change, before any resource exists (on AWS each was found only
/// after the network, the NAT gateway, the database and the load balancer).
#[tokio::test]
async fn every_domain_and_zone_problem_is_refused_in_prepare_before_anything_exists() {
    let d = Deployed::start().await.expect("deployed");
    let zone = mbstack_tests::public_zone(&d.config, "example.com").await;
    let other = mbstack_tests::public_zone(&d.config, "other.net").await;
    let foreign = |r, set| mbstack_tests::foreign_record(&d.config, &zone, r, set);
    foreign(("taken.example.com", "A", "192.0.2.10"), None).await;
    foreign(("bi.example.com", "CNAME", "bi.vendor.example.org"), None).await;
    foreign(("blue.example.com", "A", "192.0.2.20"), Some("blue")).await;
    // Route 53, as AWS: no other record beside a CNAME (moto accepts it).
    let e = aws_sdk_route53::Client::new(&d.config)
        .change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch({
            use aws_sdk_route53::types::*;
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Create)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name("bi.example.com")
                                .r#type(RrType::A)
                                .ttl(60)
                                .resource_records(
                                    ResourceRecord::builder()
                                        .value("192.0.2.1")
                                        .build()
                                        .unwrap(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        })
        .send()
        .await
        .expect_err("an A record beside a CNAME");
    let text = format!("{e:?}");
    assert!(
        text.contains("InvalidChangeBatch") && text.contains("conflicting RRSet of type CNAME"),
        "{text}"
    );
    d.log.clear();
    let long = format!("{}.example.com", "a".repeat(53));
    let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (
            json!({"domain": "metabase.nowhere.org"}),
            vec!["loadBalancer.domain:", "no public Route 53 hosted zone"],
        ),
        (
            json!({"domain": "metabase.example.com", "hostedZoneId": "ZDOESNOTEXIST1"}),
            vec!["loadBalancer.hostedZoneId:", "does not exist"],
        ),
        (
            json!({"domain": "metabase.example.com", "hostedZoneId": other}),
            vec!["loadBalancer.hostedZoneId:", "does not hold"],
        ),
        (
            json!({"domain": "taken.example.com"}),
            vec!["loadBalancer.domain:", "(A 192.0.2.10)", "not this stack's"],
        ),
        (
            json!({"domain": "bi.example.com"}),
            vec![
                "loadBalancer.domain:",
                "(CNAME bi.vendor.example.org)",
                "beside a CNAME",
            ],
        ),
        (
            // A weighted set: Route 53 allows no simple record of its name and type.
            json!({"domain": "blue.example.com"}),
            vec!["loadBalancer.domain:", "(A 192.0.2.20)"],
        ),
        (
            json!({"domain": "192.0.2.7"}),
            vec!["loadBalancer.domain:", "IP address"],
        ),
        (
            json!({"domain": long}),
            vec!["loadBalancer.domain:", "at most 64"],
        ),
    ];
    for (i, (lb, words)) in cases.into_iter().enumerate() {
        let input = json!({"stack": format!("dom{i}"), "loadBalancer": lb});
        let run = mbstack_tests::checks::run(&d, &format!("dom-{i}"), input).await;
        assert_refused_in_prepare(&d, run, &words);
        assert_eq!(
            stack_leftovers(&d.config, &format!("dom{i}")).await,
            Vec::<String>::new()
        );
    }

    // A deployment that names its zones (`mbstack deploy --hosted-zones`):
    // its load balancer function may write records there only, so a domain
    // in another zone is refused before anything exists, with the fix.
    d.name_hosted_zones(Some(std::slice::from_ref(&other)))
        .await
        .unwrap();
    d.log.clear();
    let input = json!({"stack": "domz", "loadBalancer": {"domain": "metabase.example.com"}});
    let run = mbstack_tests::checks::run(&d, "dom-zones", input).await;
    let fix = format!("mbstack deploy --hosted-zones {other},{zone}");
    assert_refused_in_prepare(&d, run, &["loadBalancer.domain:", "example.com", &fix]);
    assert_eq!(
        stack_leftovers(&d.config, "domz").await,
        Vec::<String>::new()
    );
}

/// A new stack with deletion protection on its database and load balancer
/// whose Metabase service then fails: the rollback takes protection off what
/// its own run created and deletes it (on AWS both deletes are refused while
/// protected: before, such a run ended in RollbackFailed, half-built and
/// billed). A destroy of a protected stack is still refused.
#[tokio::test]
async fn a_failed_create_with_deletion_protection_rolls_back_whole() {
    let d = Deployed::start().await.expect("deployed");
    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let input = json!({"stack": "guarded", "database": {"deletionProtection": true}, "loadBalancer": {"deletionProtection": true}});
    let run = mbstack_tests::checks::run(&d, "apply-1", input.clone()).await;
    d.inject(None);
    assert_eq!(run.status, "FAILED");
    assert_eq!(
        run.error.as_deref(),
        Some("Mbstack.AwsError"),
        "{:?}",
        run.cause
    );
    assert!(
        !run.state_names.iter().any(|n| n == "Rollback failed"),
        "{:?}",
        run.state_names
    );
    assert!(
        run.history_text
            .contains("off (this run created it; its rollback deletes it)"),
        "the rollback did not say it took protection off"
    );
    assert_eq!(
        stack_leftovers(&d.config, "guarded").await,
        Vec::<String>::new()
    );
    assert_eq!(d.refused_calls(), 0, "a call AWS refuses");
    // Protection on a stack that exists still stops a destroy, untouched.
    let up = mbstack_tests::checks::run(&d, "apply-2", input).await;
    assert_eq!(up.status, "SUCCEEDED", "{:?}", up.cause);
    let down = mbstack_tests::checks::run(
        &d,
        "down-1",
        json!({"stack": "guarded", "action": "destroy"}),
    )
    .await;
    assert_eq!(down.status, "FAILED");
    assert!(
        down.cause
            .as_deref()
            .unwrap_or_default()
            .contains("deletion protection on"),
        "{:?}",
        down.cause
    );
    assert!(!stack_leftovers(&d.config, "guarded").await.is_empty());
}

/// A function that crashed after its AWS calls (its outcome lost) is run again,
/// and its run's output still lists every change the run made: the retry finds
/// what its first attempt created (tagged with this run) and counts it as this
/// run's create, not as "no change".
#[tokio::test]
async fn a_tier_that_crashed_after_its_calls_still_lists_every_change_of_its_run() {
    let d = Deployed::start().await.expect("deployed");
    let front = &d.emulator.front;
    front.set_fault(None);
    let clean = mbstack_tests::checks::run(&d, "clean-1", json!({"stack": "clean"})).await;
    assert_eq!(clean.status, "SUCCEEDED", "{:?}", clean.cause);
    let names = front.call_names();
    // The network tier's last create of the run (its security groups' rules).
    let k = names
        .iter()
        .rposition(|n| n.starts_with("ec2:") && !n.contains(":Describe"))
        .expect("network calls") as u64
        + 1;
    front.set_fault(Some((k, mbstack_emulator::FaultClass::Crash)));
    let crashed = mbstack_tests::checks::run(&d, "crashy-1", json!({"stack": "crashy"})).await;
    front.set_fault(None);
    assert_eq!(crashed.status, "SUCCEEDED", "{:?}", crashed.cause);
    assert!(
        crashed.history_text.contains("Runtime.ExitError"),
        "the crash did not happen (call {k}: {})",
        names[k as usize - 1]
    );
    let shape = |run: &mbstack_local::Execution| {
        let mut v: Vec<String> = run.output.as_ref().unwrap()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c["kind"], c["action"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(shape(&crashed), shape(&clean));
}

/// Metabase migrates its database when a new version starts, and cannot run
/// on a database a newer version migrated. Before another image goes out, the
/// data tier snapshots the database and waits for the snapshot (RDS takes
/// minutes: the emulator keeps it `creating`), then puts the image on record;
/// only then does the new task definition roll out. The snapshot is kept and
/// named; a run with the same image takes none; plan says so; an older image
/// is refused in Prepare, naming the snapshot to go back to; a failed upgrade
/// keeps its snapshot and takes its record back, so the image the service
/// returns to is not refused afterwards.
#[tokio::test]
async fn an_upgrade_snapshots_the_database_first_and_a_downgrade_is_refused() {
    use mbstack_core::metabase::{BEFORE_IMAGE_TAG, IMAGE_TAG, VERSION_TAG};
    let d = Deployed::start().await.expect("deployed");
    let (a, b, c) = (
        "metabase/metabase:v0.57.2",
        "metabase/metabase:v0.58.7",
        "metabase/metabase-enterprise:v1.59.1",
    );
    let up = |image: &str| json!({"stack": "up", "app": {"image": image}});
    let ok = |run: &mbstack_local::Execution| {
        assert_eq!(
            run.status, "SUCCEEDED",
            "{:?} {:?} {:?}",
            run.error, run.cause, run.state_names
        )
    };
    let run = mbstack_tests::checks::run(&d, "up-a", up(a)).await;
    ok(&run);
    assert_eq!(
        db_tag(&d, "mbstack-up", IMAGE_TAG).await.as_deref(),
        Some(a)
    );
    assert_eq!(
        db_tag(&d, "mbstack-up", VERSION_TAG).await.as_deref(),
        Some("0.57.2")
    );

    // The upgrade: the snapshot first, then the new task definition.
    d.log.clear();
    d.emulator.front.start_journal();
    let run = mbstack_tests::checks::run(&d, "up-b", up(b)).await;
    ok(&run);
    let out = run.output.as_ref().unwrap();
    let snapshot = out["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["kind"] == "db-snapshot" && c["action"] == "create")
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no pre-upgrade snapshot in {out}"))
        .to_string();
    assert!(snapshot.starts_with("mbstack-up-pre-0-58-7-"), "{snapshot}");
    let journal: Vec<String> = d
        .emulator
        .front
        .take_journal()
        .into_iter()
        .map(|e| e.action)
        .collect();
    let at = |action: &str| journal.iter().position(|a| a == action);
    let (Some(snap), Some(td)) = (at("CreateDBSnapshot"), at("RegisterTaskDefinition")) else {
        panic!("no snapshot or no new task definition: {journal:?}");
    };
    assert!(
        snap < td,
        "the task definition went out before the snapshot: {journal:?}"
    );
    assert!(
        run.state_names
            .iter()
            .filter(|s| s.contains("database"))
            .count()
            > 2,
        "the run did not wait for the snapshot: {:?}",
        run.state_names
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let snap = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    let tags = mbstack_core::naming::pairs(
        snap.db_snapshots()[0]
            .tag_list()
            .iter()
            .map(|t| (t.key(), t.value())),
    );
    let tag = |k| mbstack_core::naming::tag_value(&tags, k);
    assert_eq!(tag(BEFORE_IMAGE_TAG), Some(b));
    assert_eq!(
        tag(IMAGE_TAG),
        Some(a),
        "the snapshot holds what ran before"
    );
    assert_eq!(
        db_tag(&d, "mbstack-up", IMAGE_TAG).await.as_deref(),
        Some(b)
    );
    assert_eq!(
        db_tag(&d, "mbstack-up", VERSION_TAG).await.as_deref(),
        Some("0.58.7")
    );

    // The same image again: no snapshot.
    let run = mbstack_tests::checks::run(&d, "up-b2", up(b)).await;
    ok(&run);
    let kinds: Vec<String> = run.output.as_ref().unwrap()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!kinds.iter().any(|k| k == "db-snapshot"), "{kinds:?}");

    // Plan says it, before the next version.
    let plan = mbstack_tests::checks::run(
        &d,
        "plan-c",
        json!({"stack": "up", "action": "plan", "app": {"image": c}}),
    )
    .await;
    ok(&plan);
    let planned = plan.output.as_ref().unwrap()["changes"].to_string();
    assert!(
        planned.contains("snapshot the database first")
            && planned.contains("mbstack-up-pre-0-59-1-"),
        "{planned}"
    );

    // An older image: refused before anything, with the way back.
    d.log.clear();
    let run = mbstack_tests::checks::run(&d, "up-a2", up(a)).await;
    assert_refused_in_prepare(
        &d,
        run,
        &[
            "app.image:",
            "0.58.7 has run",
            "0.57.2 cannot run",
            &snapshot,
        ],
    );

    // A failed upgrade: its snapshot stays, its record is taken back, and the
    // image the service returns to is not refused.
    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let run = mbstack_tests::checks::run(&d, "up-c", up(c)).await;
    d.inject(None);
    assert_eq!(run.status, "FAILED", "{:?}", run.state_names);
    // Taken back: the image before on record, the highest version as before.
    assert_eq!(
        db_tag(&d, "mbstack-up", IMAGE_TAG).await.as_deref(),
        Some(b)
    );
    assert_eq!(
        db_tag(&d, "mbstack-up", VERSION_TAG).await.as_deref(),
        Some("0.58.7")
    );
    let names = mbstack_tests::manual_snapshots(&d.config, Some("mbstack-up")).await;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("mbstack-up-pre-0-59-1-"))
            && names.contains(&snapshot.as_str()),
        "{names:?}"
    );
    let run = mbstack_tests::checks::run(&d, "up-b3", up(b)).await;
    ok(&run);
    // What `mbstack status up` lists, newest first.
    let listed = mbstack_data::pre_upgrade_snapshots(&rds, "up")
        .await
        .unwrap();
    let befores: Vec<&str> = listed
        .iter()
        .map(|(_, before, _)| before.as_str())
        .collect();
    assert_eq!(befores, vec![c, b], "{listed:?}");
    assert_eq!(listed[1].0, snapshot);
}

/// `down` keeps the stack's spec beside its final snapshot, and `up --restore`
/// of a destroyed stack merges over it: the stack comes back with its domain
/// and its image (newer than the default here, which could not run on the
/// database that image migrated), not with the defaults.
#[tokio::test]
async fn down_then_up_restore_brings_the_stack_back_as_it_was() {
    use mbstack_core::metabase::IMAGE_TAG;
    let d = Deployed::start().await.expect("deployed");
    d.emulator.front.set_realism(true, 20);
    d.emulator.front.set_wait_divisor(20);
    mbstack_tests::public_zone(&d.config, "example.com").await;
    let image = "metabase/metabase:v0.59.1";
    assert_ne!(image, mbstack_core::spec::DEFAULT_IMAGE);
    let input = json!({"stack": "back", "app": {"image": image}, "loadBalancer": {"domain": "bi.example.com"}});
    let run = mbstack_tests::checks::run(&d, "up-1", input).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let run =
        mbstack_tests::checks::run(&d, "down-1", json!({"stack": "back", "action": "destroy"}))
            .await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);

    let input = json!({"stack": "back", "database": {"restoreFrom": "latest-final"}});
    let run = mbstack_tests::checks::run(&d, "up-2", input).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let out = run.output.expect("an output");
    assert_eq!(out["url"], "https://bi.example.com");
    let td = out["outputs"]["app"]["taskDefinitionArn"].as_str().unwrap();
    let td = aws_sdk_ecs::Client::new(&d.config)
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .unwrap();
    assert_eq!(
        td.task_definition().unwrap().container_definitions()[0].image(),
        Some(image)
    );
    let restored_from = db_tag(&d, "mbstack-back", mbstack_data::RESTORED_FROM_TAG)
        .await
        .expect("restored");
    assert!(
        restored_from.starts_with("mbstack-back-final-"),
        "{restored_from}"
    );
    assert_eq!(
        db_tag(&d, "mbstack-back", IMAGE_TAG).await.as_deref(),
        Some(image)
    );
    // An older image than the snapshot's is refused.
    let run =
        mbstack_tests::checks::run(&d, "down-2", json!({"stack": "back", "action": "destroy"}))
            .await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    d.log.clear();
    let older = json!({"stack": "back", "database": {"restoreFrom": "latest-final"}, "app": {"image": "metabase/metabase:v0.58.6"}});
    let run = mbstack_tests::checks::run(&d, "up-3", older).await;
    assert_refused_in_prepare(
        &d,
        run,
        &["app.image:", "0.59.1 has run", "0.58.6 cannot run"],
    );
    // Another stack's final snapshot: refused with the real reason (its key).
    d.log.clear();
    let other = json!({"stack": "other", "database": {"restoreFrom": restored_from}, "app": {"image": image}});
    let run = mbstack_tests::checks::run(&d, "other-1", other).await;
    assert_refused_in_prepare(
        &d,
        run,
        &[
            "database.restoreFrom:",
            "is stack back's database",
            "newEncryptionKey",
        ],
    );
}

/// A return AWS refuses half-way (the set-aside instance's delete refused,
/// the database before already back): the run ends RollbackFailed, the
/// migrated database kept; the next apply of the version before finishes
/// what the return would have (the set-aside instance deleted with its final
/// snapshot) instead of leaving a whole DB instance running for nobody.
#[tokio::test]
async fn a_return_refused_half_way_is_finished_by_the_next_apply() {
    use mbstack_emulator::FaultClass;
    let d = Deployed::start().await.expect("deployed");
    d.emulator.front.set_realism(true, 20);
    d.emulator.front.set_wait_divisor(20);
    let (a, b) = ("metabase/metabase:v0.57.2", "metabase/metabase:v0.58.7");
    let up = |image: &str| json!({"stack": "half", "app": {"image": image}});
    let run = mbstack_tests::checks::run(&d, "half-a", up(a)).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);

    d.emulator.front.fail_migrations_of(Some(b));
    d.emulator
        .front
        .fail_call("rds:DeleteDBInstance", 1, FaultClass::Terminal);
    let run = mbstack_tests::checks::run(&d, "half-b", up(b)).await;
    d.emulator.front.fail_migrations_of(None);
    d.emulator.front.set_fault(None);
    assert_eq!(
        run.error.as_deref(),
        Some("RollbackFailed"),
        "{:?}",
        run.cause
    );
    assert!(
        run.cause
            .as_deref()
            .unwrap_or("")
            .contains("DeleteDBInstance"),
        "{:?}",
        run.cause
    );
    let rds = aws_sdk_rds::Client::new(&d.config);
    let dbs = |rds: aws_sdk_rds::Client| async move {
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .iter()
            .filter(|db| db.db_instance_status() != Some("deleting"))
            .filter_map(|db| db.db_instance_identifier().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let aside: Vec<String> = dbs(rds.clone())
        .await
        .into_iter()
        .filter(|i| i.starts_with("mbstack-half-migrated-"))
        .collect();
    assert_eq!(aside.len(), 1, "the migrated database is kept: {aside:?}");

    // Protected against deletion (a return stopped before it turned the
    // protection off keeps it on): the next apply turns it off and says so,
    // the one after deletes it.
    rds.modify_db_instance()
        .db_instance_identifier(&aside[0])
        .deletion_protection(true)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let run = mbstack_tests::checks::run(&d, "half-a2", up(a)).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let said = run
        .output
        .as_ref()
        .map(|o| o["changes"].to_string())
        .unwrap_or_default();
    assert!(
        said.contains(&aside[0]) && said.contains("deletion protection → off"),
        "the apply changed the set-aside instance without saying so: {said}"
    );
    let run = mbstack_tests::checks::run(&d, "half-a3", up(a)).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let left = dbs(rds.clone()).await;
    assert_eq!(
        left,
        vec!["mbstack-half".to_string()],
        "the set-aside instance is still there"
    );
    let snaps = rds.describe_db_snapshots().send().await.unwrap();
    assert!(
        snaps
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier())
            .any(|s| s.starts_with("mbstack-half-migrated-")),
        "deleted without its final snapshot"
    );
}

/// A failed upgrade comes back whole: the new version's tasks exit during
/// their migration (exit code 1), the circuit breaker fails the deployment,
/// and the rollback returns the database to the snapshot taken before the
/// upgrade (the migrated instance set aside and deleted with a final
/// snapshot), then puts the version before on it with the restored
/// database's new secret and the same encryption key. One notification names
/// all of it; the next run with the version before changes nothing.
#[tokio::test]
async fn a_failed_migration_ends_on_the_version_before_with_the_database_as_it_was() {
    use mbstack_core::metabase::{IMAGE_TAG, VERSION_TAG};
    let d = Deployed::start_notifying().await.expect("deployed");
    d.emulator.front.set_realism(true, 20);
    d.emulator.front.set_wait_divisor(20);
    let (a, b) = ("metabase/metabase:v0.57.2", "metabase/metabase:v0.58.7");
    let up = |image: &str| json!({"stack": "mig", "app": {"image": image}});
    let run = mbstack_tests::checks::run(&d, "mig-a", up(a)).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let key = key_value(&d, "mig").await;
    let (_, before) = mbstack_tests::running_task_definition(&d.config, "mig").await;

    d.emulator.front.fail_migrations_of(Some(b));
    d.emulator.front.start_journal();
    let run = mbstack_tests::checks::run(&d, "mig-b", up(b)).await;
    d.emulator.front.fail_migrations_of(None);
    let journal = d.emulator.front.take_journal();
    assert_eq!(run.status, "FAILED", "{:?}", run.state_names);
    let cause = run.cause.clone().unwrap_or_default();
    assert!(cause.contains("exit code 1"), "{cause}");

    // The journal: the snapshot before the new task definition, then the
    // restore from that snapshot.
    let at = |action: &str| journal.iter().position(|e| e.action == action);
    let (Some(snap), Some(td), Some(restore)) = (
        at("CreateDBSnapshot"),
        at("RegisterTaskDefinition"),
        at("RestoreDBInstanceFromDBSnapshot"),
    ) else {
        let actions: Vec<&str> = journal.iter().map(|e| e.action.as_str()).collect();
        panic!("no snapshot, task definition or restore: {actions:?}");
    };
    assert!(
        snap < td && td < restore,
        "out of order: {snap} {td} {restore}"
    );
    let taken = journal[snap].params["DBSnapshotIdentifier"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(taken.starts_with("mbstack-mig-pre-0-58-7-"), "{taken}");
    assert_eq!(
        journal[restore].params["DBSnapshotIdentifier"].as_str(),
        Some(taken.as_str())
    );
    assert_eq!(
        journal[restore].params["DBInstanceIdentifier"].as_str(),
        Some("mbstack-mig")
    );

    // The stack's database is the restored one, the version before on record.
    assert_eq!(
        db_tag(&d, "mbstack-mig", mbstack_data::RESTORED_FROM_TAG)
            .await
            .as_deref(),
        Some(taken.as_str())
    );
    assert_eq!(
        db_tag(&d, "mbstack-mig", IMAGE_TAG).await.as_deref(),
        Some(a)
    );
    assert_eq!(
        db_tag(&d, "mbstack-mig", VERSION_TAG).await.as_deref(),
        Some("0.57.2")
    );
    // The version before runs on it: its own new secret, the same key.
    let rds = aws_sdk_rds::Client::new(&d.config);
    let secret = mbstack_data::managed_secret_arn(&rds, "mig")
        .await
        .unwrap()
        .expect("the restored database's managed secret");
    let (image, after) = mbstack_tests::running_task_definition(&d.config, "mig").await;
    assert_eq!(image, a);
    assert_eq!(after["MB_DB_PASS"], json!(format!("{secret}:password::")));
    assert_ne!(after["MB_DB_PASS"], before["MB_DB_PASS"]);
    assert_eq!(
        after["MB_ENCRYPTION_SECRET_KEY"],
        before["MB_ENCRYPTION_SECRET_KEY"]
    );
    assert_eq!(key_value(&d, "mig").await, key);
    let health = mbstack_app::service_health(&aws_sdk_ecs::Client::new(&d.config), "mig")
        .await
        .unwrap()
        .expect("the service");
    assert_eq!(
        (health.running, health.rollout.as_deref()),
        (1, Some("COMPLETED"))
    );

    // The migrated instance is gone, kept as its final snapshot.
    let all = rds.describe_db_instances().send().await.unwrap();
    let ids: Vec<&str> = all
        .db_instances()
        .iter()
        .filter_map(|i| i.db_instance_identifier())
        .collect();
    assert_eq!(ids, vec!["mbstack-mig"], "the migrated instance is left");
    let snaps = mbstack_tests::manual_snapshots(&d.config, None).await;
    let migrated: Vec<&str> = snaps
        .iter()
        .map(String::as_str)
        .filter(|s| s.starts_with("mbstack-mig-migrated-"))
        .collect();
    assert_eq!(migrated.len(), 1, "{snaps:?}");
    // Its automated backups kept (a point-in-time restore to before the
    // upgrade stays possible), as DeleteDBInstance does not by default.
    let deleted = journal
        .iter()
        .find(|e| e.action == "DeleteDBInstance")
        .expect("the set-aside instance's deletion");
    assert_eq!(deleted.params["DeleteAutomatedBackups"], json!("false"));
    // Deleted only once the restored instance was available: after the
    // ModifyDBInstance that turns its managed password on, which RDS takes
    // from an available instance only.
    let password_on = journal.iter().position(|e| {
        e.action == "ModifyDBInstance" && e.params["ManageMasterUserPassword"] == json!("true")
    });
    let deleted_at = journal.iter().position(|e| e.action == "DeleteDBInstance");
    assert!(
        password_on.is_some() && password_on < deleted_at,
        "the set-aside instance was deleted before the restored one was available: {password_on:?} {deleted_at:?}"
    );

    // One notification, naming the cause, the return and the kept snapshot.
    let sent: Vec<Value> = journal
        .iter()
        .map(|e| e.to_json())
        .filter(|e| e["service"] == "sns" && e["action"] == "Publish")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    for part in [
        "exit code 1",
        &format!("restored from {taken}"),
        migrated[0],
        "set aside as mbstack-mig-migrated-",
        &format!("image {a} on the returned database"),
    ] {
        assert!(
            body.contains(part),
            "{part} not in the notification:\n{body}"
        );
    }
    assert!(!body.contains("errorMessage"), "{body}");

    // The next run with the version before: no snapshot, nothing to change.
    let run = mbstack_tests::checks::run(&d, "mig-a2", up(a)).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let changed: Vec<String> = run.output.as_ref().unwrap()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["action"], c["kind"], c["id"]))
        .collect();
    assert_eq!(changed, Vec::<String>::new());

    // A new version whose tasks never start their container (its image
    // cannot be pulled) never ran on the database: the rollback puts the
    // image back and leaves the database alone.
    let c = "metabase/metabase:v0.59.1";
    d.emulator
        .front
        .set_ecs_fault(Some(mbstack_emulator::EcsFault::CannotPullContainer));
    d.emulator.front.start_journal();
    let run = mbstack_tests::checks::run(&d, "mig-c", up(c)).await;
    d.emulator.front.set_ecs_fault(None);
    let journal = d.emulator.front.take_journal();
    assert_eq!(
        run.error.as_deref(),
        Some("Mbstack.TasksNeverStarted"),
        "{:?}",
        run.cause
    );
    for action in ["RestoreDBInstanceFromDBSnapshot", "DeleteDBInstance"] {
        assert!(
            !journal.iter().any(|e| e.action == action),
            "a rollback of a version that never ran made {action}"
        );
    }
    assert_eq!(
        db_tag(&d, "mbstack-mig", IMAGE_TAG).await.as_deref(),
        Some(a)
    );
    assert_eq!(
        mbstack_tests::running_task_definition(&d.config, "mig")
            .await
            .0,
        a
    );
}

/// An upgrade needs room for two manual snapshots (the one before it, and the
/// migrated database's final one should it fail): with less left of RDS's
/// quota, Prepare refuses it with the figures and the fix, and nothing is
/// changed.
#[tokio::test]
async fn an_upgrade_without_room_for_its_snapshots_is_refused_in_prepare() {
    let d = Deployed::start().await.expect("deployed");
    let up = |image: &str| json!({"stack": "full", "app": {"image": image}});
    let run = mbstack_tests::checks::run(&d, "full-a", up("metabase/metabase:v0.57.2")).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
    let used = mbstack_tests::manual_snapshots(&d.config, None).await.len();
    d.emulator.front.set_manual_snapshot_quota(used + 1);
    d.log.clear();
    let run = mbstack_tests::checks::run(&d, "full-b", up("metabase/metabase:v0.58.7")).await;
    assert_refused_in_prepare(
        &d,
        run,
        &[
            "app.image:",
            "manual snapshot quota",
            &format!("{} are kept", used),
            "aws rds delete-db-snapshot",
        ],
    );
    // With room for both, it goes ahead.
    d.emulator.front.set_manual_snapshot_quota(used + 2);
    let run = mbstack_tests::checks::run(&d, "full-c", up("metabase/metabase:v0.58.7")).await;
    assert_eq!(run.status, "SUCCEEDED", "{:?} {:?}", run.error, run.cause);
}
