//! The app tier against the emulator (ECS played by the front door): every field
//! of the task definition and service, IAM exactly as designed, secrets only by
//! ARN, idempotence, an image change, the failure path, pause, rollback of an
//! update, and destroy leaving nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::types::{ServiceField, TaskDefinitionField};
use mbstack_core::naming::STACK_TAG;
use mbstack_core::spec::AutoscalingSpec;
use mbstack_core::{Action, Outcome, Scope, StackSpec, State, Tier, TierError, Verb};
use mbstack_emulator::EcsFault;
use mbstack_tests::{app_inputs, LogCapture, TestEnv, TierRunner};
use serde_json::{Map, Value};

fn s<'a>(v: &'a Map<String, Value>, tier: &str, key: &str) -> &'a str {
    v[tier][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {tier}.{key}"))
}

async fn service(app: &TierRunner<'_>, stack: &str) -> aws_sdk_ecs::types::Service {
    let out = aws_sdk_ecs::Client::new(&app.env.config)
        .describe_services()
        .cluster(format!("{stack}-cluster"))
        .services("metabase")
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap();
    out.services()[0].clone()
}

#[tokio::test]
async fn apply_runs_metabase_exactly_as_designed_and_no_secret_leaks() {
    let env = TestEnv::start().await;
    let logs = LogCapture::global();
    env.emulator
        .front
        .set_ecs_start_delay(Duration::from_millis(300));
    let spec = StackSpec::new("mb");
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    let outcomes = app.apply(&spec, "run-a").await;
    let last = outcomes.last().unwrap();
    assert_eq!(last.state, State::Ready);
    assert!(
        outcomes
            .iter()
            .any(|o| o.state == State::Pending && o.message.contains("IN_PROGRESS")),
        "check waited for the rollout: {:?}",
        outcomes.iter().map(|o| &o.message).collect::<Vec<_>>()
    );

    // The task definition, field by field.
    let ecs = aws_sdk_ecs::Client::new(&app.env.config);
    let svc = service(&app, "mb").await;
    let td_arn = svc.task_definition().unwrap().to_string();
    let td = ecs
        .describe_task_definition()
        .task_definition(&td_arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let t = td.task_definition().unwrap();
    assert_eq!(t.family(), Some("mb-metabase"));
    assert_eq!((t.cpu(), t.memory()), (Some("1024"), Some("2048")));
    assert_eq!(t.network_mode().map(|n| n.as_str()), Some("awsvpc"));
    assert_eq!(
        t.requires_compatibilities()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        vec!["FARGATE"]
    );
    let rp = t.runtime_platform().unwrap();
    assert_eq!(
        (
            rp.cpu_architecture().map(|a| a.as_str()),
            rp.operating_system_family().map(|o| o.as_str())
        ),
        (Some("X86_64"), Some("LINUX"))
    );
    let c = &t.container_definitions()[0];
    assert_eq!(t.container_definitions().len(), 1);
    assert_eq!(c.name(), Some("metabase"));
    assert_eq!(c.image(), Some(mbstack_core::spec::DEFAULT_IMAGE));
    assert_eq!(c.port_mappings()[0].container_port(), Some(3000));
    assert_eq!(c.stop_timeout(), Some(120));
    let env_vars: BTreeMap<&str, &str> = c
        .environment()
        .iter()
        .map(|e| (e.name().unwrap(), e.value().unwrap()))
        .collect();
    let port = app.inputs["data"]["port"].as_i64().unwrap().to_string();
    let want_env: BTreeMap<&str, &str> = [
        ("MB_DB_TYPE", "postgres"),
        ("MB_DB_HOST", s(&app.inputs, "data", "endpoint")),
        ("MB_DB_PORT", port.as_str()),
        ("MB_DB_DBNAME", "metabase"),
        ("MB_DB_USER", "metabase"),
        ("JAVA_TIMEZONE", "UTC"),
        ("JAVA_OPTS", "-Xmx1536m -XX:+ExitOnOutOfMemoryError"),
    ]
    .into_iter()
    .collect();
    assert_eq!(env_vars, want_env);
    let key_arn = last_output(&outcomes, "encryptionKeySecretArn");
    let db_secret = s(&app.inputs, "data", "secretArn").to_string();
    let secrets: BTreeMap<&str, &str> = c
        .secrets()
        .iter()
        .map(|x| (x.name(), x.value_from()))
        .collect();
    let want_secrets: BTreeMap<&str, String> = [
        ("MB_DB_PASS", format!("{db_secret}:password::")),
        ("MB_ENCRYPTION_SECRET_KEY", key_arn.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        secrets,
        want_secrets
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<BTreeMap<_, _>>()
    );
    let log = c.log_configuration().unwrap();
    assert_eq!(log.log_driver().as_str(), "awslogs");
    let opts = log.options().unwrap();
    assert_eq!(
        opts.get("awslogs-group").map(String::as_str),
        Some("/mbstack/mb/metabase")
    );
    assert_eq!(
        opts.get("awslogs-region").map(String::as_str),
        Some("us-east-1")
    );

    // The service.
    assert_eq!(svc.desired_count(), 1);
    assert_eq!(
        svc.capacity_provider_strategy()[0].capacity_provider(),
        "FARGATE"
    );
    let vpc = svc
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));
    assert_eq!(
        vpc.security_groups(),
        [s(&app.inputs, "network", "appSecurityGroupId").to_string()]
    );
    let mut subnets = vpc.subnets().to_vec();
    subnets.sort();
    let mut private: Vec<String> = app.inputs["network"]["privateSubnetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    private.sort();
    assert_eq!(subnets, private);
    let lb = &svc.load_balancers()[0];
    assert_eq!(
        (
            lb.target_group_arn(),
            lb.container_name(),
            lb.container_port()
        ),
        (
            Some(s(&app.inputs, "loadbalancer", "targetGroupArn")),
            Some("metabase"),
            Some(3000)
        )
    );
    assert_eq!(
        svc.health_check_grace_period_seconds(),
        Some(mbstack_app::HEALTH_CHECK_GRACE_SECONDS)
    );
    let dc = svc.deployment_configuration().unwrap();
    assert_eq!(
        (dc.minimum_healthy_percent(), dc.maximum_percent()),
        (Some(0), Some(100))
    );
    let cb = dc.deployment_circuit_breaker().unwrap();
    assert!(cb.enable() && cb.rollback());
    assert_eq!(svc.propagate_tags().map(|p| p.as_str()), Some("SERVICE"));
    assert!(svc.enable_ecs_managed_tags());
    assert!(svc
        .tags()
        .iter()
        .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some("mb")));

    // IAM: the execution role reads exactly the two secrets; the task role nothing.
    let iam = aws_sdk_iam::Client::new(&env.config);
    let exec = iam
        .get_role()
        .role_name("mb-metabase-execution")
        .send()
        .await
        .unwrap();
    let trust =
        mbstack_app::parse_policy(exec.role().unwrap().assume_role_policy_document().unwrap())
            .unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name("mb-metabase-execution")
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(
        attached,
        vec![format!("arn:aws{}", mbstack_app::EXECUTION_POLICY_ARN_SUFFIX).as_str()]
    );
    let inline = iam
        .get_role_policy()
        .role_name("mb-metabase-execution")
        .policy_name(mbstack_app::SECRETS_POLICY)
        .send()
        .await
        .unwrap();
    let policy = mbstack_app::parse_policy(inline.policy_document()).unwrap();
    assert_eq!(
        policy,
        mbstack_app::secrets_policy(&[db_secret.clone(), key_arn.clone()])
    );
    assert_eq!(
        iam.list_role_policies()
            .role_name("mb-metabase-execution")
            .send()
            .await
            .unwrap()
            .policy_names(),
        [mbstack_app::SECRETS_POLICY.to_string()]
    );
    let task_role = "mb-metabase-task";
    assert!(iam
        .list_role_policies()
        .role_name(task_role)
        .send()
        .await
        .unwrap()
        .policy_names()
        .is_empty());
    assert!(iam
        .list_attached_role_policies()
        .role_name(task_role)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .is_empty());
    assert_eq!(
        t.task_role_arn(),
        Some(
            iam.get_role()
                .role_name(task_role)
                .send()
                .await
                .unwrap()
                .role()
                .unwrap()
                .arn()
        )
    );

    // Logs, target health.
    let cw = aws_sdk_cloudwatchlogs::Client::new(&env.config);
    let groups = cw
        .describe_log_groups()
        .log_group_name_prefix("/mbstack/mb/")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(30));
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&env.config);
    let health = elb
        .describe_target_health()
        .target_group_arn(s(&app.inputs, "loadbalancer", "targetGroupArn"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.target_health_descriptions().len(), 1);

    // No secret value anywhere but Secrets Manager.
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    let key = sm
        .get_secret_value()
        .secret_id(&key_arn)
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_string();
    assert!(key.len() >= 32, "the encryption key is long enough");
    let db_value: Value = serde_json::from_str(
        sm.get_secret_value()
            .secret_id(&db_secret)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    let password = db_value["password"].as_str().unwrap().to_string();
    let td_text = format!("{t:?}");
    for secret in [&key, &password] {
        assert!(
            !serde_json::to_string(&outcomes)
                .unwrap()
                .contains(secret.as_str()),
            "a secret is in an outcome"
        );
        assert!(
            !serde_json::to_string(&app.inputs)
                .unwrap()
                .contains(secret.as_str()),
            "a secret is in an event"
        );
        assert!(
            !td_text.contains(secret.as_str()),
            "a secret is in the task definition"
        );
        assert!(
            !logs.text().contains(secret.as_str()),
            "a secret is in the logs"
        );
    }

    // The second apply: zero mutating calls.
    env.log.clear();
    let again = app
        .call(Verb::Apply, &spec, "run-b", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(env.log.mutating(), vec![], "{:?}", again.changes);
    assert!(!again.changed());
    assert_eq!(again.state, State::Ready);
}

fn last_output(outcomes: &[Outcome], key: &str) -> String {
    outcomes
        .iter()
        .rev()
        .find_map(|o| o.outputs.get(key).and_then(Value::as_str))
        .unwrap_or_else(|| panic!("no {key}"))
        .to_string()
}

#[tokio::test]
async fn an_image_change_registers_one_revision_and_its_rollback_puts_the_old_one_back() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("upg");
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    app.apply(&spec, "run-a").await;
    let before = service(&app, "upg")
        .await
        .task_definition()
        .unwrap()
        .to_string();

    spec.app.image = "metabase/metabase:v0.58.7".into();
    env.log.clear();
    let outcomes = app.apply(&spec, "run-b").await;
    let ops: Vec<String> = env
        .log
        .mutating()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(
        ops.iter()
            .filter(|o| *o == "RegisterTaskDefinition")
            .count(),
        1,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| *o == "UpdateService").count(),
        1,
        "{ops:?}"
    );
    let td_change = outcomes[0]
        .changes
        .iter()
        .find(|c| c.kind == "task-definition")
        .unwrap();
    assert_eq!(td_change.action, Action::Update);
    assert!(
        td_change
            .detail
            .contains("image metabase/metabase:v0.58.6 → metabase/metabase:v0.58.7"),
        "{}",
        td_change.detail
    );
    let after = service(&app, "upg")
        .await
        .task_definition()
        .unwrap()
        .to_string();
    assert_ne!(after, before);
    assert_eq!(last_output(&outcomes, "previousTaskDefinitionArn"), before);

    // Rolling back run B: the service is back on run A's task definition.
    let rolled = app
        .settle(Verb::Destroy, Verb::Destroy, &spec, "run-b", Scope::Run)
        .await
        .unwrap();
    assert!(rolled
        .iter()
        .flat_map(|o| &o.changes)
        .any(|c| c.kind == "ecs-service" && c.detail.contains(&before)));
    let svc = service(&app, "upg").await;
    assert_eq!(svc.task_definition(), Some(before.as_str()));
    assert!(svc
        .tags()
        .iter()
        .all(|t| t.key() != Some(mbstack_app::UPDATED_BY_TAG)));
    assert_eq!(
        svc.status(),
        Some("ACTIVE"),
        "a rollback of an update never deletes the service"
    );
}

#[tokio::test]
async fn a_failed_rollout_is_a_terminal_error_with_the_stopped_reason() {
    // A task that never started its container is told apart from one that
    // ran and stopped (a failed upgrade's rollback returns the database only
    // after the new version ran on it).
    for (fault, name, words) in [
        (
            EcsFault::CannotPullContainer,
            "Mbstack.TasksNeverStarted",
            vec!["CannotPullContainerError"],
        ),
        (
            EcsFault::OutOfMemory,
            "Mbstack.ResourceFailed",
            vec!["exit code 137", "app.memory"],
        ),
        (
            EcsFault::MigrationFailed,
            "Mbstack.ResourceFailed",
            vec!["exit code 1", "database migration fails"],
        ),
    ] {
        let env = TestEnv::start().await;
        env.emulator.front.set_ecs_fault(Some(fault));
        let spec = StackSpec::new("broken");
        let app = TierRunner {
            env: &env,
            tier: Tier::App,
            inputs: app_inputs(&env, &spec).await,
        };
        match app
            .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
            .await
        {
            Err(e @ (TierError::ResourceFailed(_) | TierError::NeverStarted(_))) => {
                assert_eq!(e.name(), name, "{fault:?}: {e}");
                for w in &words {
                    assert!(e.to_string().contains(w), "{fault:?}: {e}");
                }
                assert!(e.to_string().contains("failed"), "{e}");
            }
            other => panic!(
                "{fault:?}: {:?}",
                other.map(|o| o.last().map(|x| x.message.clone()))
            ),
        }
        // `mbstack status` says the same of the service: fewer tasks than
        // wanted, and why the latest one stopped.
        let ecs = aws_sdk_ecs::Client::new(&env.config);
        let health = mbstack_app::service_health(&ecs, "broken")
            .await
            .expect("read")
            .expect("the service exists");
        assert!(health.running < health.desired, "{fault:?}: {health:?}");
        let why = health.last_stopped.clone().unwrap_or_default();
        for w in &words {
            assert!(why.contains(w), "{fault:?}: {w} not in {why:?}");
        }
    }
}

/// A healthy service shows its tasks and no stop reason (none is read); a
/// stack without a service has no health to show.
#[tokio::test]
async fn a_healthy_service_shows_its_tasks_and_no_stop_reason() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("fine");
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    app.apply(&spec, "run-a").await;
    let ecs = aws_sdk_ecs::Client::new(&env.config);
    let health = mbstack_app::service_health(&ecs, "fine")
        .await
        .expect("read")
        .expect("the service exists");
    assert_eq!(
        (
            health.running,
            health.desired,
            health.rollout.as_deref(),
            health.last_stopped
        ),
        (1, 1, Some("COMPLETED"), None)
    );
    assert_eq!(
        mbstack_app::service_health(&ecs, "nothing")
            .await
            .expect("read"),
        None
    );
}

#[tokio::test]
async fn pause_scales_to_zero_and_suspends_autoscaling_then_resume_restores() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("sleepy");
    spec.app.autoscaling = Some(AutoscalingSpec {
        min: 1,
        max: 3,
        target_cpu_percent: 50,
    });
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    app.apply(&spec, "run-a").await;
    let aas = aws_sdk_applicationautoscaling::Client::new(&env.config);
    let target = |aas: aws_sdk_applicationautoscaling::Client| async move {
        let out = aas
            .describe_scalable_targets()
            .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
            .send()
            .await
            .unwrap();
        out.scalable_targets()
            .first()
            .map(|t| (t.min_capacity(), t.max_capacity()))
    };
    assert_eq!(target(aas.clone()).await, Some((1, 3)));
    spec.paused = true;
    let paused = app.apply(&spec, "run-pause").await;
    assert_eq!(paused.last().unwrap().state, State::Ready);
    assert_eq!(service(&app, "sleepy").await.desired_count(), 0);
    assert_eq!(target(aas.clone()).await, Some((0, 0)));
    spec.paused = false;
    app.apply(&spec, "run-resume").await;
    assert_eq!(service(&app, "sleepy").await.desired_count(), 1);
    assert_eq!(target(aas).await, Some((1, 3)));
}

#[tokio::test]
async fn destroy_leaves_nothing_of_the_stack_in_ecs_iam_logs_secrets_or_autoscaling() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("tidy");
    spec.app.autoscaling = Some(AutoscalingSpec {
        min: 1,
        max: 2,
        target_cpu_percent: 60,
    });
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    app.apply(&spec, "run-a").await;
    spec.app.image = "metabase/metabase:v0.58.7".into();
    app.apply(&spec, "run-b").await; // two task definition revisions
    let outcomes = app
        .settle(Verb::Destroy, Verb::Destroy, &spec, "run-x", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(outcomes.last().unwrap().state, State::Gone);

    let ecs = aws_sdk_ecs::Client::new(&app.env.config);
    let clusters = ecs
        .describe_clusters()
        .clusters("tidy-cluster")
        .send()
        .await
        .unwrap();
    assert!(clusters
        .clusters()
        .iter()
        .all(|c| c.status() != Some("ACTIVE")));
    let tds = ecs
        .list_task_definitions()
        .family_prefix("tidy-metabase")
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert!(
        tds.task_definition_arns().is_empty(),
        "{:?}",
        tds.task_definition_arns()
    );
    let iam = aws_sdk_iam::Client::new(&env.config);
    let roles = iam.list_roles().send().await.unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("tidy-")),
        "{:?}",
        roles.roles()
    );
    let cw = aws_sdk_cloudwatchlogs::Client::new(&env.config);
    assert!(cw
        .describe_log_groups()
        .log_group_name_prefix("/mbstack/tidy/")
        .send()
        .await
        .unwrap()
        .log_groups()
        .is_empty());
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    let listed = sm.list_secrets().send().await.unwrap();
    let ours: Vec<_> = listed
        .secret_list()
        .iter()
        .filter(|s| {
            s.tags()
                .iter()
                .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some("tidy"))
        })
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    // The key is only scheduled for deletion (recovery window), not forced.
    let key = sm
        .describe_secret()
        .secret_id("mbstack/tidy/metabase-encryption-key")
        .send()
        .await
        .unwrap();
    assert!(key.deleted_date().is_some());
    let aas = aws_sdk_applicationautoscaling::Client::new(&env.config);
    let targets = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    assert!(targets.scalable_targets().is_empty());
}

/// A deleted service's tasks take a minute to stop, and until then ECS refuses
/// to delete their cluster (`ClusterContainsTasksException`): destroy waits.
#[tokio::test]
async fn a_destroy_waits_for_the_tasks_of_its_service_to_stop() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("stopping");
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs: app_inputs(&env, &spec).await,
    };
    app.apply(&spec, "run-a").await;
    env.emulator.front.set_realism(true, 60);
    let mut last = app
        .call(Verb::Destroy, &spec, "run-x", Scope::Stack)
        .await
        .unwrap();
    for _ in 0..100 {
        if last.state != State::Pending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = app
            .call(Verb::Destroy, &spec, "run-x", Scope::Stack)
            .await
            .unwrap_or_else(|e| panic!("destroy: {e}"));
    }
    assert_eq!(last.state, State::Gone, "{}", last.message);
    assert!(
        env.emulator.front.not_yet_answers() > 0,
        "the cluster was never refused while its tasks stopped"
    );
    assert_eq!(env.emulator.front.refused_calls(), 0);
}

/// A database restored from a snapshot whose Metabase key is gone (Prepare
/// refuses such a run first; this is the tier's own guard, for a database
/// restored by a repair): no new key is made unless the spec accepts one.
#[tokio::test]
async fn a_restored_database_without_its_key_gets_no_new_key_unless_the_spec_accepts_one() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("rekey");
    let mut inputs = app_inputs(&env, &spec).await;
    inputs["data"]["restoredFrom"] = serde_json::json!("rekey-final-20261201-030000");
    let app = TierRunner {
        env: &env,
        tier: Tier::App,
        inputs,
    };
    let e = app
        .call(Verb::Apply, &spec, "run-a", Scope::Stack)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("app.newEncryptionKey") && e.contains("rekey-final-20261201-030000"),
        "{e}"
    );
    let sm = aws_sdk_secretsmanager::Client::new(&env.config);
    let key = mbstack_app::names::encryption_key_secret("rekey");
    assert!(
        sm.describe_secret().secret_id(&key).send().await.is_err(),
        "a new key was made"
    );
    spec.app.new_encryption_key = true;
    app.apply(&spec, "run-b").await;
    sm.describe_secret()
        .secret_id(&key)
        .send()
        .await
        .expect("the new key");
}
