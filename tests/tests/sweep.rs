//! The reliability sweep: the k-th AWS call of an apply fails with each class of
//! fault. Throttling, 5xx, a dropped connection and a crash of the function (its
//! outcome lost after its call succeeded) must end SUCCEEDED with exactly the
//! resources of a clean run (no duplicate); a terminal error must end FAILED with
//! everything rolled back. The lock is released in every case.
//!
//! By default a few calls per class (CI); `MBSTACK_SWEEP=full` sweeps every call.

use std::collections::BTreeMap;

use mbstack_emulator::FaultClass;
use mbstack_local::Deployed;
use mbstack_tests::stack_leftovers;
use serde_json::json;

const CLASSES: [FaultClass; 5] = [
    FaultClass::Terminal,
    FaultClass::Throttle,
    FaultClass::ServerError,
    FaultClass::Drop,
    FaultClass::Crash,
];

async fn lock_released(d: &Deployed, stack: &str) -> bool {
    let ssm = aws_sdk_ssm::Client::new(&d.config);
    ssm.get_parameter()
        .name(format!("/mbstack/{stack}/lock"))
        .send()
        .await
        .is_err()
}

#[tokio::test]
async fn every_fault_class_at_chosen_calls_of_an_apply_ends_safely() {
    let base = Deployed::start().await.expect("deployed");
    base.emulator.front.set_fault(None);
    let clean = base
        .run("clean", json!({"stack": "sw"}))
        .await
        .expect("ran");
    assert_eq!(clean.status, "SUCCEEDED", "{:?}", clean.cause);
    let n = base.emulator.front.aws_calls();
    let mut clean_resources = stack_leftovers(&base.config, "sw").await;
    clean_resources.sort();
    let shape = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|r| r.split(' ').next().unwrap_or("").to_string())
            .collect()
    };
    drop(base);

    let full = std::env::var("MBSTACK_SWEEP").is_ok_and(|v| v == "full");
    // The last calls belong to Finish (recording the run): a terminal fault there
    // fails a run whose stack is complete, by design; the sweep stops before them.
    let last = n.saturating_sub(6);
    let ks: Vec<u64> = if full {
        (1..=last).collect()
    } else {
        vec![3, last / 2, last]
    };
    let mut table: BTreeMap<String, (u32, u32, usize)> = BTreeMap::new();
    for class in CLASSES {
        for &k in &ks {
            let d = Deployed::start().await.expect("deployed");
            d.emulator.front.set_fault(Some((k, class)));
            let run = d.run("sweep", json!({"stack": "sw"})).await.expect("ran");
            d.emulator.front.set_fault(None);
            let mut left = stack_leftovers(&d.config, "sw").await;
            left.sort();
            let released = lock_released(&d, "sw").await;
            let ok = match class {
                FaultClass::Terminal => run.status == "FAILED" && left.is_empty() && released,
                _ => {
                    run.status == "SUCCEEDED" && shape(&left) == shape(&clean_resources) && released
                }
            };
            let leftovers = match class {
                FaultClass::Terminal => left.len(),
                _ => left.len().abs_diff(clean_resources.len()),
            };
            let cell = table.entry(format!("{class:?}")).or_default();
            cell.0 += 1;
            cell.1 += u32::from(ok);
            cell.2 += leftovers;
            assert!(
                ok,
                "{class:?} at call {k}/{n}: {} {:?} {:?}; left {left:?}; lock released {released}",
                run.status, run.error, run.cause
            );
        }
    }
    println!("fault class × apply ({n} AWS calls, k in {ks:?}): runs, survived, leftovers");
    for (class, (runs, survived, leftovers)) in &table {
        println!("  {class:<12} {runs:>4} {survived:>4} {leftovers:>4}");
    }
}
