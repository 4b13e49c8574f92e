//! The bad-spec corpus: every invalid input is refused with the exact field path
//! of each problem, all problems at once, before any AWS call.

use mbstack_core::lambda::dispatch;
use mbstack_core::{StackSpec, TierError};
use mbstack_tests::{ec2_resources, TestEnv};
use serde_json::{json, Value};

/// (input, the exact paths reported, in order).
fn corpus() -> Vec<(Value, Vec<&'static str>)> {
    let long = "a".repeat(29);
    vec![
        (json!({}), vec!["stack"]),
        (json!({"stack": ""}), vec!["stack"]),
        (json!({"stack": "Analytics"}), vec!["stack"]),
        (json!({"stack": "9lives"}), vec!["stack"]),
        (json!({"stack": "a--b"}), vec!["stack"]),
        (json!({"stack": "trailing-"}), vec!["stack"]),
        (json!({"stack": "spaces here"}), vec!["stack"]),
        (json!({"stack": "ünïcode"}), vec!["stack"]),
        (json!({"stack": long}), vec!["stack"]),
        (json!({"stack": 42}), vec!["stack"]),
        (json!({"stack": "s", "colour": "blue"}), vec!["colour"]),
        (
            json!({"stack": "s", "network": {"cidrBlock": "10.0.0.0/16"}}),
            vec!["network.cidrBlock"],
        ),
        (
            json!({"stack": "s", "network": {"cidr": "10.0.0.0"}}),
            vec!["network.cidr"],
        ),
        (
            json!({"stack": "s", "network": {"cidr": "10.0.0.1/16"}}),
            vec!["network.cidr"],
        ),
        (
            json!({"stack": "s", "network": {"cidr": "10.0.0.0/8"}}),
            vec!["network.cidr"],
        ),
        (
            json!({"stack": "s", "network": {"cidr": "10.0.0.0/24"}}),
            vec!["network.cidr"],
        ),
        (
            json!({"stack": "s", "network": {"cidr": "52.0.0.0/16"}}),
            vec!["network.cidr"],
        ),
        (
            json!({"stack": "s", "network": {"azCount": 1}}),
            vec!["network.azCount"],
        ),
        (
            json!({"stack": "s", "network": {"azCount": 7}}),
            vec!["network.azCount"],
        ),
        (
            json!({"stack": "s", "network": {"azCount": -2}}),
            vec!["network.azCount"],
        ),
        (
            json!({"stack": "s", "network": {"nat": "gateway"}}),
            vec!["network.nat"],
        ),
        (
            json!({"stack": "s", "network": {"nat": "none", "pauseNat": true}}),
            vec!["network.pauseNat"],
        ),
        (
            json!({"stack": "s", "database": {"engineVersion": "9.6"}}),
            vec!["database.engineVersion"],
        ),
        (
            json!({"stack": "s", "database": {"engineVersion": "17.x"}}),
            vec!["database.engineVersion"],
        ),
        (
            json!({"stack": "s", "database": {"instanceClass": "t4g.micro"}}),
            vec!["database.instanceClass"],
        ),
        (
            json!({"stack": "s", "database": {"storageGib": 10}}),
            vec!["database.storageGib"],
        ),
        (
            json!({"stack": "s", "database": {"backupRetentionDays": 40}}),
            vec!["database.backupRetentionDays"],
        ),
        (
            json!({"stack": "s", "database": {"multiAz": "yes"}}),
            vec!["database.multiAz"],
        ),
        (
            json!({"stack": "s", "app": {"image": "metabase/metabase"}}),
            vec!["app.image"],
        ),
        (
            json!({"stack": "s", "app": {"image": "metabase/metabase:latest"}}),
            vec!["app.image"],
        ),
        (
            json!({"stack": "s", "app": {"image": "metabase/metabase:v1 ; rm -rf /"}}),
            vec!["app.image"],
        ),
        (json!({"stack": "s", "app": {"cpu": 300}}), vec!["app.cpu"]),
        (
            json!({"stack": "s", "app": {"cpu": 1024, "memory": 1024}}),
            vec!["app.memory"],
        ),
        (
            json!({"stack": "s", "app": {"cpu": 256, "memory": 1024}}),
            vec!["app.memory"],
        ),
        (
            json!({"stack": "s", "app": {"desiredCount": 0}}),
            vec!["app.desiredCount"],
        ),
        (
            json!({"stack": "s", "app": {"desiredCount": 11}}),
            vec!["app.desiredCount"],
        ),
        (
            json!({"stack": "s", "app": {"autoscaling": {"min": 3, "max": 2}}}),
            vec!["app.autoscaling"],
        ),
        (
            json!({"stack": "s", "app": {"autoscaling": {"min": 2, "max": 4}}}),
            vec!["app.desiredCount"],
        ),
        (
            json!({"stack": "s", "app": {"autoscaling": {"min": 1, "max": 2, "targetCpuPercent": 99}}}),
            vec!["app.autoscaling.targetCpuPercent"],
        ),
        (
            json!({"stack": "s", "app": {"autoscaling": {"min": 1, "max": 2, "step": 1}}}),
            vec!["app.autoscaling.step"],
        ),
        (
            json!({"stack": "s", "app": {"cpuArchitecture": "arm"}}),
            vec!["app.cpuArchitecture"],
        ),
        (
            json!({"stack": "s", "app": {"timezone": "Mars/Olympus Mons"}}),
            vec!["app.timezone"],
        ),
        (
            json!({"stack": "s", "app": {"logRetentionDays": 10}}),
            vec!["app.logRetentionDays"],
        ),
        (
            json!({"stack": "s", "loadBalancer": {"allowedCidrs": []}}),
            vec!["loadBalancer.allowedCidrs"],
        ),
        (
            json!({"stack": "s", "loadBalancer": {"allowedCidrs": ["1.2.3.4/32", "bad"]}}),
            vec!["loadBalancer.allowedCidrs[1]"],
        ),
        (
            json!({"stack": "s", "loadBalancer": {"allowedCidrs": ["1.2.3.4/32", "1.2.3.4/32"]}}),
            vec!["loadBalancer.allowedCidrs[1]"],
        ),
        (
            json!({"stack": "s", "loadBalancer": {"certificateArn": "arn:aws:iam::123456789012:server-certificate/x"}}),
            vec!["loadBalancer.certificateArn"],
        ),
        (
            json!({"stack": "s", "loadBalancer": {"idleTimeoutSeconds": 0}}),
            vec!["loadBalancer.idleTimeoutSeconds"],
        ),
        (
            json!({"stack": "s", "tags": {"aws:owner": "x"}}),
            vec!["tags.aws:owner"],
        ),
        (
            json!({"stack": "s", "tags": {"mbstack:stack": "other"}}),
            vec!["tags.mbstack:stack"],
        ),
        (
            json!({"stack": "s", "tags": {"Name": "mine"}}),
            vec!["tags.Name"],
        ),
        (
            json!({"stack": "s", "tags": {"team": "<script>"}}),
            vec!["tags.team"],
        ),
        (
            json!({"stack": "s", "tags": {"team": 7}}),
            vec!["tags.team"],
        ),
        (json!({"stack": "s", "paused": "no"}), vec!["paused"]),
        // Several problems: all reported, in spec order.
        (
            json!({"stack": "Bad", "network": {"cidr": "8.8.0.0/16", "azCount": 9}, "app": {"image": "x", "desiredCount": 0}, "tags": {"aws:x": "y"}}),
            vec![
                "stack",
                "network.cidr",
                "network.azCount",
                "app.image",
                "app.desiredCount",
                "tags.aws:x",
            ],
        ),
        // Unknown fields are all listed at once.
        (
            json!({"stack": "s", "netwrok": {}, "database": {"size": 1}}),
            vec!["database.size", "netwrok"],
        ),
    ]
}

#[test]
fn every_bad_spec_names_its_fields() {
    let cases = corpus();
    assert!(cases.len() >= 25);
    for (input, want) in cases {
        match StackSpec::from_json(&input) {
            Ok(_) => panic!("accepted: {input}"),
            Err(e) => {
                let mut got = e.paths();
                let mut want = want.clone();
                if input.get("netwrok").is_some() {
                    got.sort();
                    want.sort();
                }
                assert_eq!(got, want, "input {input}: {e}");
                for p in &e.0 {
                    assert!(p.message.len() > 20, "a problem must say what to do: {p}");
                }
            }
        }
    }
}

#[test]
fn non_objects_and_oversize_inputs_are_refused() {
    for text in ["", "[]", "\"analytics\"", "{\"stack\": \"a\"", "null"] {
        let e = StackSpec::from_json_str(text).expect_err(text);
        assert_eq!(e.paths(), vec![""], "{text}");
    }
    let huge = json!({"stack": "s", "tags": {"k": "v".repeat(40_000)}});
    let e = StackSpec::from_json(&huge).unwrap_err();
    assert!(e.0[0].message.contains("bytes"), "{e}");
}

#[tokio::test]
async fn a_bad_spec_reaches_no_aws_call_through_the_tier() {
    let env = TestEnv::start().await;
    let aws = env.aws();
    for (spec, want) in corpus() {
        let event =
            json!({"verb": "apply", "spec": spec, "run": {"id": "run-1", "scope": "stack"}});
        let result = dispatch(&event, |ev| mbstack_network::handle(ev, &aws)).await;
        match result {
            Err(TierError::InvalidSpec(e)) => {
                let mut got = e.paths();
                got.sort();
                let mut want: Vec<String> = want.iter().map(|p| format!("spec.{p}")).collect();
                want.sort();
                assert_eq!(got, want, "{event}");
            }
            other => panic!("{event}: {other:?}"),
        }
    }
    assert_eq!(env.log.calls(), vec![], "a bad spec made AWS calls");
    assert_eq!(ec2_resources(&env.ec2(), "s").await, vec![]);
}
