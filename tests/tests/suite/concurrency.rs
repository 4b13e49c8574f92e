//! Many stacks at once, on one account and region (one emulator): each run
//! succeeds, and none touches another stack's resources.

use std::collections::BTreeSet;
use std::sync::Arc;

use mbstack_local::Deployed;
use mbstack_tests::ec2_resources;
use serde_json::{json, Value};

const STACKS: usize = 10;

/// Every resource ID and ARN in a run's outputs.
fn ids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s)
            if s.starts_with("arn:")
                || ["vpc-", "subnet-", "sg-", "nat-", "igw-", "rtb-"]
                    .iter()
                    .any(|p| s.starts_with(p)) =>
        {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| ids(x, out)),
        Value::Object(m) => m.values().for_each(|x| ids(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn ten_stacks_applied_at_once_all_succeed_and_none_touches_another() {
    let d = Arc::new(Deployed::start().await.expect("deployed"));
    // Ten NAT gateways need ten Elastic IPs: AWS's default quota is 5, raised
    // as an account owner would through Service Quotas.
    d.emulator.front.set_eip_quota(2 * STACKS);
    d.emulator.front.set_vpc_quota(2 * STACKS);
    // Some throttling, as ten stacks in one account meet on AWS: absorbed.
    d.emulator.front.set_throttle(0.02);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..STACKS {
        let d = d.clone();
        set.spawn(async move {
            let stack = format!("many{i}");
            let run = d.run(&format!("many-{i}"), json!({"stack": stack})).await;
            (stack, run)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = set.join_next().await {
        results.push(done.expect("a run's task"));
    }
    d.emulator.front.set_throttle(0.0);

    let mut seen: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (stack, run) in &results {
        let run = run.as_ref().expect("the execution ended");
        assert_eq!(
            run.status, "SUCCEEDED",
            "{stack}: {:?} {:?}",
            run.error, run.cause
        );
        let outputs = run
            .output
            .as_ref()
            .map(|o| o["outputs"].clone())
            .unwrap_or_default();
        let mut mine = BTreeSet::new();
        ids(&outputs, &mut mine);
        assert!(mine.len() > 10, "{stack}: {outputs}");
        // Its network is tagged as its own.
        let tagged: BTreeSet<String> = ec2_resources(&aws_sdk_ec2::Client::new(&d.config), stack)
            .await
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let network = &outputs["network"];
        for key in [
            "vpcId",
            "appSecurityGroupId",
            "dbSecurityGroupId",
            "lbSecurityGroupId",
        ] {
            let id = network[key].as_str().unwrap_or_default();
            assert!(
                tagged.contains(id),
                "{stack}: {key} {id} is not tagged as the stack's"
            );
        }
        seen.push((stack.clone(), mine));
    }
    assert_eq!(seen.len(), STACKS);
    // No resource appears in two stacks' outputs.
    for (i, (a, ours)) in seen.iter().enumerate() {
        for (b, theirs) in &seen[i + 1..] {
            let shared: Vec<&String> = ours.intersection(theirs).collect();
            assert!(shared.is_empty(), "{a} and {b} share {shared:?}");
        }
    }
    // A re-run of each changes nothing: no run changed another's resources.
    for (stack, _) in &seen {
        let again = d
            .run(
                &format!("again-{stack}"),
                json!({"stack": stack, "action": "plan"}),
            )
            .await
            .expect("the plan ended");
        let changes = again
            .output
            .as_ref()
            .and_then(|o| o["changes"].as_array().cloned())
            .unwrap_or_default();
        assert!(changes.is_empty(), "{stack} drifted: {changes:?}");
    }
}
