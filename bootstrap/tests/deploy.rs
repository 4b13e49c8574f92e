//! Deploying mbstack itself into the emulator: every function, role, policy and
//! the state machine as designed; a second deploy changes nothing; no wildcard
//! beyond the documented ones; schedules; undeploy leaves nothing.

use std::path::PathBuf;

use mbstack_cli::deploy::{self, Options, Schedule};
use mbstack_cli::policies;
use mbstack_core::naming::TIERS;
use mbstack_core::{Aws, CallLog, TierError};
use mbstack_emulator::Emulator;
use serde_json::{json, Value};

/// An empty but valid zip per function, in cargo-lambda's layout.
fn zips(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mbstack-zips-{}-{tag}", std::process::id()));
    deploy::placeholder_zips(&dir, tag).unwrap(); // differs per tag: a "new build"
    dir
}

fn policy(doc: &str) -> Value {
    mbstack_app::parse_policy(doc).expect("a JSON policy")
}

#[tokio::test]
async fn deploy_is_complete_idempotent_least_privilege_and_undeploy_leaves_nothing() {
    let emu = Emulator::start().expect("emulator");
    let config = emu.sdk_config().await;
    let log = CallLog::new();
    let aws = Aws::new(config.clone()).with_interceptor(log.clone());
    let opts = Options {
        first_wait: std::time::Duration::from_millis(50),
        ..Options::new("mbt", zips("a"))
    };
    let report = deploy::deploy(&aws, &opts).await.expect("deploy");
    assert!(report.changes.len() >= 12, "{:?}", report.changes);

    let lambda = aws_sdk_lambda::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let mut arns = Vec::new();
    for t in &TIERS {
        let name = format!("mbt-{}", t.tier);
        let f = lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .expect("the function exists");
        let c = f.configuration().unwrap();
        assert_eq!(
            c.runtime().map(|r| r.as_str()),
            Some("provided.al2023"),
            "{name}"
        );
        assert_eq!(
            c.architectures()
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>(),
            vec!["arm64"],
            "{name}"
        );
        assert_eq!(
            (c.memory_size(), c.timeout()),
            (Some(t.memory_mib), Some(t.timeout_seconds)),
            "{name}"
        );
        assert_eq!(c.handler(), Some("bootstrap"));
        assert!(
            c.role().unwrap().ends_with(&format!("role/{name}")),
            "{name}: one role per function"
        );
        arns.push(c.function_arn().unwrap().to_string());
        let p = iam
            .get_role_policy()
            .role_name(&name)
            .policy_name("mbstack")
            .send()
            .await
            .unwrap();
        let doc = policy(p.policy_document());
        assert_eq!(
            policies::wildcard_violations(&doc),
            Vec::<String>::new(),
            "{}",
            t.tier
        );
        let trust = policy(
            iam.get_role()
                .role_name(&name)
                .send()
                .await
                .unwrap()
                .role()
                .unwrap()
                .assume_role_policy_document()
                .unwrap(),
        );
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
    }
    let states = policy(
        iam.get_role_policy()
            .role_name("mbt-states")
            .policy_name("mbstack")
            .send()
            .await
            .unwrap()
            .policy_document(),
    );
    assert_eq!(
        states["Statement"][0]["Action"],
        json!(["lambda:InvokeFunction"])
    );
    assert_eq!(
        states["Statement"][0]["Resource"],
        json!(arns),
        "invoke exactly our functions"
    );
    assert_eq!(policies::wildcard_violations(&states), Vec::<String>::new());

    let sfn = aws_sdk_sfn::Client::new(&config);
    let sm = sfn
        .describe_state_machine()
        .state_machine_arn(&report.state_machine_arn)
        .send()
        .await
        .unwrap();
    assert!(
        !sm.definition().contains("${"),
        "every placeholder substituted"
    );
    for a in &arns {
        assert!(sm.definition().contains(a.as_str()), "{a}");
    }
    let logging = sm.logging_configuration().expect("logging");
    assert_eq!(logging.level().map(|l| l.as_str()), Some("ERROR"));
    assert!(
        !logging.include_execution_data(),
        "execution data (payloads) are never logged"
    );

    // A second deploy with the same code changes nothing.
    log.clear();
    let again = deploy::deploy(&aws, &opts).await.expect("deploy again");
    assert_eq!(again.changes, Vec::<String>::new());
    assert_eq!(log.mutating(), vec![], "a second deploy mutated");
    // New code for every function: exactly one code update each.
    log.clear();
    let rebuilt = deploy::deploy(
        &aws,
        &Options {
            zips: zips("b"),
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    let ops: Vec<String> = log.mutating().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops, vec!["UpdateFunctionCode"; 5], "{:?}", rebuilt.changes);

    // Schedules.
    let wanted = vec![
        Schedule {
            kind: "repair".into(),
            expression: "cron(0 3 * * ? *)".into(),
        },
        Schedule {
            kind: "pause".into(),
            expression: "cron(0 19 ? * MON-FRI *)".into(),
        },
        Schedule {
            kind: "resume".into(),
            expression: "cron(0 7 ? * MON-FRI *)".into(),
        },
    ];
    deploy::set_schedules(&aws, "mbt", "analytics", &wanted, "Europe/Berlin")
        .await
        .expect("schedules");
    let mut listed = deploy::list_schedules(&aws, "mbt").await.unwrap();
    listed.sort();
    assert_eq!(listed.len(), 3);
    for (name, _, tz, input) in &listed {
        assert_eq!(tz, "Europe/Berlin");
        let v: Value = serde_json::from_str(input).unwrap();
        let action = match name.as_str() {
            "analytics-repair" => "apply",
            "analytics-pause" => "pause",
            _ => "resume",
        };
        assert_eq!(v, json!({"stack": "analytics", "action": action}));
    }
    let sched_role = policy(
        iam.get_role_policy()
            .role_name("mbt-scheduler")
            .policy_name("mbstack")
            .send()
            .await
            .unwrap()
            .policy_document(),
    );
    assert_eq!(
        sched_role["Statement"][0]["Action"],
        json!(["states:StartExecution"])
    );
    assert_eq!(
        sched_role["Statement"][0]["Resource"],
        json!([report.state_machine_arn])
    );

    // undeploy refuses while a stack exists, then removes everything.
    let ssm = aws_sdk_ssm::Client::new(&config);
    ssm.put_parameter()
        .name("/mbstack/analytics/spec")
        .value("{}")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    match deploy::undeploy(&aws, "mbt", false).await {
        Err(TierError::Refused(m)) => assert!(m.contains("analytics"), "{m}"),
        other => panic!("{other:?}"),
    }
    deploy::undeploy(&aws, "mbt", true).await.expect("undeploy");
    let functions = lambda.list_functions().send().await.unwrap();
    assert!(functions
        .functions()
        .iter()
        .all(|f| !f.function_name().unwrap_or("").starts_with("mbt-")));
    let roles = iam.list_roles().send().await.unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("mbt-")),
        "{:?}",
        roles.roles()
    );
    assert_eq!(
        deploy::find_state_machine(&sfn, "mbt-provision")
            .await
            .unwrap(),
        None
    );
    assert!(deploy::list_schedules(&aws, "mbt")
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn the_wildcard_check_catches_what_it_must() {
    let bad = json!({"Statement": [
        {"Sid": "A", "Action": "s3:*", "Resource": "arn:aws:s3:::x"},
        {"Sid": "B", "Action": ["ec2:DeleteVpc"], "Resource": "*"},
        {"Sid": "C", "Action": ["ec2:DescribeVpcs"], "Resource": "*"},
        {"Sid": "D", "Action": ["ec2:DeleteVpc"], "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/mbstack:tier": "network"}}}
    ]});
    assert_eq!(
        policies::wildcard_violations(&bad),
        vec![
            "\"A\": action s3:*".to_string(),
            "\"B\": ec2:DeleteVpc on *".to_string()
        ]
    );
}

/// A fresh account as AWS behaves: new roles are not assumable for a while
/// (IAM propagation), a new function is Pending, an update is InProgress. The
/// first deploy waits them out (and says so), the second changes nothing, a
/// deploy with new code and drifted configuration updates both in turn.
#[tokio::test]
async fn a_first_deploy_survives_iam_propagation_and_function_states() {
    let emu = Emulator::start().expect("emulator");
    // AWS's delays ÷ 4: a role is assumable after 2.5 s, a function Pending 1.25 s.
    emu.front.set_realism(true, 4);
    let config = emu.sdk_config().await;
    let log = CallLog::new();
    let aws = Aws::new(config.clone()).with_interceptor(log.clone());
    let opts = Options {
        first_wait: std::time::Duration::from_millis(100),
        ..Options::new("mbp", zips("p1"))
    };
    let report = deploy::deploy(&aws, &opts).await.expect("first deploy");
    assert!(
        emu.front.deploy_not_yet_answers() > 0,
        "the emulator never said 'not yet': the rule is not on"
    );
    assert!(
        report
            .waits
            .iter()
            .any(|w| w.contains("cannot be assumed by Lambda")),
        "{:?}",
        report.waits
    );
    // Whether the state machine's role is still young when it is used depends on
    // the machine's load; the rule itself, deterministically: a role used at once.
    let iam = aws_sdk_iam::Client::new(&config);
    iam.create_role()
        .role_name("young")
        .assume_role_policy_document("{}")
        .send()
        .await
        .unwrap();
    let e = aws_sdk_sfn::Client::new(&config)
        .create_state_machine()
        .name("young")
        .definition(r#"{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/young")
        .send()
        .await
        .expect_err("a role just created is not assumable by Step Functions");
    use aws_sdk_sfn::error::ProvideErrorMetadata;
    assert!(
        deploy::not_yet(e.code(), e.message()),
        "deploy would not retry this: {e:?}"
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    for t in &TIERS {
        let name = format!("mbp-{}", t.tier);
        let c = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        assert_ne!(
            c.state().map(|s| s.as_str()),
            Some("Pending"),
            "{name}: deploy ended before the function was Active"
        );
    }

    log.clear();
    let again = deploy::deploy(&aws, &opts).await.expect("second deploy");
    assert_eq!(again.changes, Vec::<String>::new());
    assert_eq!(log.mutating(), vec![], "a second deploy mutated");

    // Drift in one function's configuration, and new code for all.
    lambda
        .update_function_configuration()
        .function_name("mbp-network")
        .memory_size(512)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let third = deploy::deploy(
        &aws,
        &Options {
            zips: zips("p2"),
            ..opts.clone()
        },
    )
    .await
    .expect("deploy with new code and configuration");
    assert!(
        third.changes.contains(&"code of mbp-network".to_string())
            && third
                .changes
                .contains(&"configuration of mbp-network".to_string()),
        "{:?}",
        third.changes
    );
    assert!(
        third.waits.iter().any(|w| w.contains("update in progress")),
        "the configuration update must wait for the code update: {:?}",
        third.waits
    );
    let c = lambda
        .get_function_configuration()
        .function_name("mbp-network")
        .send()
        .await
        .unwrap();
    assert_eq!(c.memory_size(), Some(256));
}

/// `--notify`: an email gets the deployment's own topic with the address
/// subscribed once, the control function's policy may publish to that topic
/// only, and the state machine names it; a deploy without `--notify` keeps it,
/// `--notify off` ends it (no Publish permission, no topic in the definition);
/// an existing topic is used as it is and never deleted; undeploy deletes the
/// deployment's own topic only.
#[tokio::test]
async fn notify_subscribes_once_is_kept_until_off_and_undeploy_removes_only_its_topic() {
    let emu = Emulator::start().expect("emulator");
    let config = emu.sdk_config().await;
    let aws = Aws::new(config.clone());
    let sns = aws_sdk_sns::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let deploy_with = |notify: deploy::Notify| Options {
        first_wait: std::time::Duration::from_millis(50),
        notify,
        ..Options::new("mbn", zips("n"))
    };
    let definition = || async {
        let arn = deploy::find_state_machine(&sfn, "mbn-provision")
            .await
            .unwrap()
            .expect("the state machine");
        sfn.describe_state_machine()
            .state_machine_arn(arn)
            .send()
            .await
            .unwrap()
            .definition()
            .to_string()
    };
    let control_policy = || async {
        policy(
            iam.get_role_policy()
                .role_name("mbn-control")
                .policy_name("mbstack")
                .send()
                .await
                .unwrap()
                .policy_document(),
        )
    };
    let publish_resources = |p: &Value| -> Vec<Value> {
        p["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["Action"].to_string().contains("sns:"))
            .map(|s| s["Resource"].clone())
            .collect()
    };
    let subscriptions = || async {
        sns.list_subscriptions()
            .send()
            .await
            .unwrap()
            .subscriptions()
            .iter()
            .map(|s| {
                (
                    s.protocol().unwrap_or_default().to_string(),
                    s.endpoint().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };

    // Every topic's ARN, sorted.
    let topics = || async {
        let mut all: Vec<String> = sns
            .list_topics()
            .send()
            .await
            .unwrap()
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn().map(str::to_string))
            .collect();
        all.sort();
        all
    };

    let email = deploy::Notify::parse(Some("ops@example.com")).unwrap();
    let report = deploy::deploy(&aws, &deploy_with(email.clone()))
        .await
        .expect("deploy --notify");
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.contains("subscribe ops@example.com") && c.contains("confirmation")),
        "{:?}",
        report.changes
    );
    let topic = format!(
        "arn:aws:sns:us-east-1:123456789012:{}",
        deploy::topic_name("mbn")
    );
    assert!(definition()
        .await
        .contains(&format!("\"notifyTopicArn\": \"{topic}\"")));
    assert_eq!(
        publish_resources(&control_policy().await),
        vec![json!([topic])]
    );
    assert_eq!(
        subscriptions().await,
        vec![("email".to_string(), "ops@example.com".to_string())]
    );

    // Again with the same address: nothing new. Without --notify: kept.
    deploy::deploy(&aws, &deploy_with(email))
        .await
        .expect("again");
    deploy::deploy(&aws, &deploy_with(deploy::Notify::Keep))
        .await
        .expect("without --notify");
    assert_eq!(subscriptions().await.len(), 1);
    assert!(definition().await.contains(&topic));
    assert_eq!(
        publish_resources(&control_policy().await),
        vec![json!([topic])]
    );

    // An existing topic: used as it is.
    let theirs = sns
        .create_topic()
        .name("their-alerts")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    deploy::deploy(&aws, &deploy_with(deploy::Notify::Topic(theirs.clone())))
        .await
        .expect("deploy --notify <their topic>");
    assert!(definition().await.contains(&theirs));
    assert_eq!(
        publish_resources(&control_policy().await),
        vec![json!([theirs])]
    );
    let missing = "arn:aws:sns:us-east-1:123456789012:nope".to_string();
    match deploy::deploy(&aws, &deploy_with(deploy::Notify::Topic(missing))).await {
        Err(TierError::Refused(m)) => assert!(m.contains("--notify") && m.contains("nope"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A topic of another region: SNS would refuse every Publish to it.
    let elsewhere = "arn:aws:sns:eu-west-1:123456789012:their-alerts".to_string();
    match deploy::deploy(&aws, &deploy_with(deploy::Notify::Topic(elsewhere))).await {
        Err(TierError::Refused(m)) => {
            assert!(m.contains("eu-west-1") && m.contains("us-east-1"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    // Off: no topic in the definition, no sns permission.
    deploy::deploy(&aws, &deploy_with(deploy::Notify::Off))
        .await
        .expect("deploy --notify off");
    assert!(!definition().await.contains("arn:aws:sns:"));
    assert_eq!(
        publish_resources(&control_policy().await),
        Vec::<Value>::new()
    );

    // Undeploy: its own topic goes, theirs stays.
    deploy::undeploy(&aws, "mbn", true).await.expect("undeploy");
    assert_eq!(topics().await, vec![theirs.clone()]);

    // A topic that takes the deployment's topic name but is not its own: not
    // adopted (SNS refuses the tagged create, as the emulator does), named in
    // the refusal with what to do, and left alone by undeploy.
    let squatter = sns
        .create_topic()
        .name(deploy::topic_name("mbn"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    match deploy::deploy(
        &aws,
        &deploy_with(deploy::Notify::parse(Some("ops@example.com")).unwrap()),
    )
    .await
    {
        Err(TierError::Refused(m)) => {
            assert!(
                m.contains("mbn-notifications") && m.contains("--notify arn:"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    deploy::undeploy(&aws, "mbn", true).await.expect("undeploy");
    let mut want = vec![squatter, theirs];
    want.sort();
    assert_eq!(topics().await, want);
}

/// `--hosted-zones`: the load balancer function may write DNS records only in
/// the zones named (Route 53 has no tag conditions); the state machine tells
/// Prepare the same zones; a deploy without the option keeps them; `any`
/// opens them again; `none` takes the right away; the option refuses what is
/// not a zone ID, too many zones, and `--skip-functions` (which would leave
/// the role's policy as it was).
#[tokio::test]
async fn hosted_zones_are_named_in_the_policy_and_the_state_machine_and_kept() {
    let emu = Emulator::start().expect("emulator");
    let config = emu.sdk_config().await;
    let aws = Aws::new(config.clone());
    let sfn = aws_sdk_sfn::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let deploy_with = |zones: deploy::Zones| Options {
        first_wait: std::time::Duration::from_millis(50),
        hosted_zones: zones,
        ..Options::new("mbz", zips("z"))
    };
    let zones_in_definition = || async {
        let arn = deploy::find_state_machine(&sfn, "mbz-provision")
            .await
            .unwrap()
            .expect("the state machine");
        let d: Value = serde_json::from_str(
            sfn.describe_state_machine()
                .state_machine_arn(arn)
                .send()
                .await
                .unwrap()
                .definition(),
        )
        .unwrap();
        d["States"]["Prepare"]["Parameters"]["Payload"]["hostedZones"].clone()
    };
    let record_resources = || async {
        let p = policy(
            iam.get_role_policy()
                .role_name("mbz-loadbalancer")
                .policy_name("mbstack")
                .send()
                .await
                .unwrap()
                .policy_document(),
        );
        p["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["Action"]
                    .to_string()
                    .contains("route53:ChangeResourceRecordSets")
            })
            .map(|s| s["Resource"].clone())
            .collect::<Vec<Value>>()
    };

    // A new deployment: any zone.
    deploy::deploy(&aws, &deploy_with(deploy::Zones::Keep))
        .await
        .expect("deploy");
    assert_eq!(zones_in_definition().await, Value::Null);
    assert_eq!(
        record_resources().await,
        vec![json!(["arn:aws:route53:::hostedzone/*"])]
    );

    let two = deploy::Zones::parse("Z0AAAA1, /hostedzone/Z0BBBB2").unwrap();
    deploy::deploy(&aws, &deploy_with(two))
        .await
        .expect("deploy --hosted-zones");
    let named = json!([
        "arn:aws:route53:::hostedzone/Z0AAAA1",
        "arn:aws:route53:::hostedzone/Z0BBBB2"
    ]);
    assert_eq!(zones_in_definition().await, json!(["Z0AAAA1", "Z0BBBB2"]));
    assert_eq!(record_resources().await, vec![named.clone()]);

    // Kept by a deploy that does not say.
    deploy::deploy(&aws, &deploy_with(deploy::Zones::Keep))
        .await
        .expect("deploy again");
    assert_eq!(zones_in_definition().await, json!(["Z0AAAA1", "Z0BBBB2"]));
    assert_eq!(record_resources().await, vec![named]);

    // None: no record may be written, and Prepare refuses every domain.
    deploy::deploy(&aws, &deploy_with(deploy::Zones::parse("none").unwrap()))
        .await
        .expect("deploy --hosted-zones none");
    assert_eq!(zones_in_definition().await, json!([]));
    assert!(record_resources().await.is_empty());

    deploy::deploy(&aws, &deploy_with(deploy::Zones::Any))
        .await
        .expect("deploy --hosted-zones any");
    assert_eq!(zones_in_definition().await, Value::Null);

    // Refused before any call.
    for bad in ["Z0AAAA1,", "zone one", "arn:aws:route53:::hostedzone/Z1"] {
        let e = deploy::Zones::parse(bad).unwrap_err();
        assert!(
            e.contains("--hosted-zones") && e.contains("hosted zone ID"),
            "{e}"
        );
    }
    let many = (0..=deploy::MAX_ZONES)
        .map(|i| format!("Z{i:04}"))
        .collect::<Vec<_>>()
        .join(",");
    let e = deploy::Zones::parse(&many).unwrap_err();
    assert!(e.contains("at most 20"), "{e}");
    let skip = Options {
        skip_functions: true,
        ..deploy_with(deploy::Zones::parse("Z0AAAA1").unwrap())
    };
    match deploy::deploy(&aws, &skip).await {
        Err(e) => assert!(e.to_string().contains("--skip-functions"), "{e}"),
        Ok(_) => panic!("--hosted-zones with --skip-functions was accepted"),
    }
}
