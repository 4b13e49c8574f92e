//! Bad input through real executions: every invalid input fails in Prepare, its
//! cause names each field at fault, and nothing is created or changed.

use mbstack_local::Deployed;
use mbstack_tests::bad_specs;
use serde_json::{json, Value};

/// Hostile and odd inputs beyond the validation corpus: (input, a field named).
fn hostile() -> Vec<(Value, &'static str)> {
    vec![
        (json!({"stack": "x; rm -rf /"}), "stack"),
        (json!({"stack": "$(whoami)"}), "stack"),
        (json!({"stack": "a\u{0000}b"}), "stack"),
        (json!({"stack": "\u{202e}kcats"}), "stack"),
        (json!({"stack": "😀"}), "stack"),
        (json!({"stack": "s", "tags": {"team": "a\nb"}}), "tags.team"),
        (
            json!({"stack": "s", "tags": {"k": "x".repeat(300)}}),
            "tags.k",
        ),
        (
            json!({"stack": "s", "tags": {"<script>": "v"}}),
            "tags.<script>",
        ),
        (
            json!({"stack": "s", "app": {"image": "metabase/metabase:v1\u{0000}"}}),
            "app.image",
        ),
        (
            json!({"stack": "s", "app": {"timezone": "../../etc/passwd"}}),
            "app.timezone",
        ),
        (
            json!({"stack": "s", "loadBalancer": {"allowedCidrs": ["0.0.0.0/0; DROP TABLE"]}}),
            "loadBalancer.allowedCidrs[0]",
        ),
        (
            json!({"stack": "s", "database": {"storageGib": 1e9}}),
            "database.storageGib",
        ),
        (
            json!({"stack": "s", "database": {"storageGib": -1}}),
            "database.storageGib",
        ),
        (
            json!({"stack": "s", "network": {"azCount": "2"}}),
            "network.azCount",
        ),
        (json!({"stack": "s", "app": {"cpu": 1024.5}}), "app.cpu"),
        (json!({"stack": "s", "paused": null, "app": []}), "app"),
        (json!({"stack": "s", "action": "DROP"}), "action"),
        (json!({"stack": "s", "action": ["apply"]}), "action"),
        (
            json!({"stack": "s", "tags": {"k": "v".repeat(40_000)}}),
            "bytes",
        ),
        (json!([1, 2, 3]), "JSON object"),
        (json!("analytics"), "JSON object"),
    ]
}

#[tokio::test]
async fn every_bad_input_fails_in_prepare_naming_its_fields_and_touches_nothing() {
    let d = Deployed::start().await.expect("deployed");
    let mut cases: Vec<(Value, Vec<String>)> = bad_specs()
        .into_iter()
        .map(|(v, paths)| (v, paths.iter().map(|p| format!("{p}:")).collect()))
        .collect();
    cases.extend(hostile().into_iter().map(|(v, f)| (v, vec![f.to_string()])));
    assert!(cases.len() >= 60, "{} inputs", cases.len());
    for (i, (input, fields)) in cases.iter().enumerate() {
        let run = mbstack_tests::checks::run(&d, &format!("bad-{i}"), input.clone()).await;
        assert_eq!(run.status, "FAILED", "{input}");
        assert_eq!(
            run.error.as_deref(),
            Some("Mbstack.InvalidSpec"),
            "{input}: {:?}",
            run.cause
        );
        let cause = run.cause.unwrap_or_default();
        for f in fields {
            assert!(
                cause.contains(f.as_str()),
                "{input}: {f} missing from {cause}"
            );
        }
        assert_eq!(run.state_names, mbstack_tests::REFUSED, "{input}");
    }
    assert_eq!(d.log.mutating(), vec![], "a bad input changed something");
}
