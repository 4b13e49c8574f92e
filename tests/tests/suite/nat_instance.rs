//! `network.nat: "instance"`, end to end on the real state machine: apply, a
//! re-apply that changes nothing, each drift repaired with the right change,
//! pause and resume, a terminated instance replaced by the next repair, a
//! switch to a NAT gateway and back in one run each, and a destroy that leaves
//! nothing. Metabase's tasks start only through a way out that carries (the
//! emulator's egress rule), so every successful run proves the instance routes.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, Instance, NetworkInterface};
use mbstack_local::{Deployed, Execution};
use mbstack_tests::stack_leftovers;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const STACK: &str = "cheap";

fn stack_filter() -> Filter {
    Filter::builder()
        .name("tag:mbstack:stack")
        .values(STACK)
        .build()
}

async fn ok(d: &Deployed, name: &str, input: Value) -> Execution {
    let run = mbstack_tests::checks::run(d, name, input).await;
    assert_eq!(
        run.status, "SUCCEEDED",
        "{name}: {:?} {:?} {:?}",
        run.error, run.cause, run.state_names
    );
    run
}

/// The run's changes as (kind, action, detail).
fn changes(run: &Execution) -> Vec<(String, String, String)> {
    run.output
        .as_ref()
        .and_then(|o| o["changes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("kind"), s("action"), s("detail"))
        })
        .collect()
}

/// The stack's instances that are not terminated.
async fn instances(ec2: &aws_sdk_ec2::Client) -> Vec<Instance> {
    ec2.describe_instances()
        .filters(stack_filter())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|s| s.as_str()) != Some("terminated"))
        .cloned()
        .collect()
}

async fn interfaces(ec2: &aws_sdk_ec2::Client) -> Vec<NetworkInterface> {
    ec2.describe_network_interfaces()
        .filters(stack_filter())
        .send()
        .await
        .unwrap()
        .network_interfaces()
        .to_vec()
}

/// The private route table's default route target.
async fn private_route(ec2: &aws_sdk_ec2::Client) -> Option<String> {
    let out = ec2
        .describe_route_tables()
        .filters(stack_filter())
        .send()
        .await
        .unwrap();
    let table = out.route_tables().iter().find(|t| {
        t.tags()
            .iter()
            .any(|t| t.key() == Some("Name") && t.value() == Some("cheap-private"))
    })?;
    let r = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))?;
    r.network_interface_id()
        .or(r.nat_gateway_id())
        .or(r.instance_id())
        .map(str::to_string)
}

/// The stack's private subnets.
async fn private_subnets(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    ec2.describe_subnets()
        .filters(stack_filter())
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .filter(|s| {
            s.tags().iter().any(|t| {
                t.key() == Some("Name")
                    && t.value().is_some_and(|v| v.starts_with("cheap-private-"))
            })
        })
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect()
}

/// Runs `input` while watching the private subnets' way out (the emulator's
/// egress rule, every 20 ms): how long, in the emulator's wall time, they had
/// none, and why.
async fn watched(
    d: &Deployed,
    name: &str,
    input: Value,
    subnets: &[String],
) -> (Execution, Duration, Vec<String>) {
    let done = AtomicBool::new(false);
    let run = async {
        let r = ok(d, name, input).await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let watch = async {
        let mut without = Duration::ZERO;
        let mut why = Vec::new();
        let mut last = Instant::now();
        while !done.load(Ordering::SeqCst) {
            let none = d.emulator.front.no_way_out(subnets).await;
            let now = Instant::now();
            if let Some(w) = none {
                without += now - last;
                if !why.contains(&w) {
                    why.push(w);
                }
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (without, why)
    };
    let (run, (without, why)) = tokio::join!(run, watch);
    (run, without, why)
}

fn state(i: &Instance) -> String {
    i.state()
        .and_then(|s| s.name())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_nat_instance_stack_applies_repairs_pauses_heals_switches_and_destroys_to_nothing() {
    let d = Deployed::start().await.expect("deployed into the emulator");
    let ec2 = aws_sdk_ec2::Client::new(&d.config);
    let input = json!({"stack": STACK, "network": {"nat": "instance"}});

    // Apply: one instance on its own interface, the private route to it.
    let run = ok(&d, "apply-1", input.clone()).await;
    let made = changes(&run);
    assert!(
        made.iter()
            .any(|(k, a, d)| k == "nat-instance" && a == "create" && d.contains("t4g.nano")),
        "{made:?}"
    );
    assert!(!made.iter().any(|(k, _, _)| k == "nat-gateway"), "{made:?}");
    let all = instances(&ec2).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let first = all[0].clone();
    assert_eq!(state(&first), "running");
    assert_eq!(first.instance_type().map(|t| t.as_str()), Some("t4g.nano"));
    assert_eq!(first.key_name(), None, "no key pair");
    let newest = aws_sdk_ssm::Client::new(&d.config)
        .get_parameter()
        .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
        .send()
        .await
        .unwrap()
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_string);
    assert_eq!(
        first.image_id().map(str::to_string),
        newest,
        "the image AWS's public parameter names"
    );
    assert_eq!(
        first
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required"),
        "IMDSv2 only"
    );
    let enis = interfaces(&ec2).await;
    assert_eq!(enis.len(), 1, "{enis:?}");
    let eni = enis[0].clone();
    let eni_id = eni.network_interface_id().unwrap().to_string();
    assert_eq!(eni.source_dest_check(), Some(false));
    let address = eni
        .association()
        .and_then(|a| a.allocation_id())
        .expect("the stack's Elastic IP on the interface")
        .to_string();
    assert_eq!(private_route(&ec2).await.as_deref(), Some(eni_id.as_str()));
    assert_eq!(
        first
            .network_interfaces()
            .iter()
            .find_map(|n| n.network_interface_id()),
        Some(eni_id.as_str())
    );
    // The instance's group admits the private subnets only, every protocol.
    let groups = ec2
        .describe_security_groups()
        .filters(stack_filter())
        .send()
        .await
        .unwrap();
    let nat = groups
        .security_groups()
        .iter()
        .find(|g| g.tags().iter().any(|t| t.value() == Some("cheap-nat")))
        .expect("the NAT instance's group");
    let sources: Vec<(String, String)> = nat
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            p.ip_ranges().iter().map(move |r| {
                (
                    p.ip_protocol().unwrap_or("").to_string(),
                    r.cidr_ip().unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    assert_eq!(
        sources,
        vec![
            ("-1".to_string(), "10.0.128.0/20".to_string()),
            ("-1".to_string(), "10.0.144.0/20".to_string())
        ],
        "private subnets only"
    );

    // A re-apply changes nothing.
    d.log.clear();
    let again = ok(&d, "apply-2", json!({"stack": STACK})).await;
    assert_eq!(changes(&again), vec![], "a re-apply with no change changed");

    // Drift: the route gone, the check back on, the instance stopped.
    let private_table = ec2
        .describe_route_tables()
        .filters(stack_filter())
        .send()
        .await
        .unwrap()
        .route_tables()
        .iter()
        .find(|t| t.tags().iter().any(|t| t.value() == Some("cheap-private")))
        .and_then(|t| t.route_table_id())
        .unwrap()
        .to_string();
    ec2.delete_route()
        .route_table_id(&private_table)
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let instance_id = first.instance_id().unwrap().to_string();
    ec2.modify_instance_attribute()
        .instance_id(&instance_id)
        .source_dest_check(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        interfaces(&ec2).await[0].source_dest_check(),
        Some(true),
        "the instance's check is its interface's"
    );
    ec2.stop_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .unwrap();
    // `stopping` for a while (AWS's timing ÷ the scale), then `stopped`.
    for _ in 0..100 {
        if state(&instances(&ec2).await[0]) == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plan = ok(&d, "plan-1", json!({"stack": STACK, "action": "plan"})).await;
    let planned = changes(&plan);
    let updates: Vec<(String, String)> = planned
        .iter()
        .filter(|(_, a, _)| a != "none")
        .map(|(k, _, d)| (k.clone(), d.clone()))
        .collect();
    assert_eq!(
        updates,
        vec![
            (
                "network-interface".to_string(),
                "source/destination check off (it was on)".to_string()
            ),
            (
                "nat-instance".to_string(),
                "start it (it is stopped)".to_string()
            ),
            (
                "route-table".to_string(),
                format!("route 0.0.0.0/0 → {eni_id}")
            ),
        ],
        "{planned:?}"
    );
    let repair = ok(&d, "repair-1", json!({"stack": STACK})).await;
    let repaired: Vec<(String, String)> = changes(&repair)
        .into_iter()
        .filter(|(_, a, _)| a != "none")
        .map(|(k, _, d)| (k, d))
        .collect();
    assert_eq!(repaired, updates, "the repair made what the plan said");
    assert_eq!(private_route(&ec2).await.as_deref(), Some(eni_id.as_str()));
    assert_eq!(interfaces(&ec2).await[0].source_dest_check(), Some(false));
    assert_eq!(state(&instances(&ec2).await[0]), "running");

    // Pause stops it (its interface and address stay); resume starts it.
    ok(&d, "pause-1", json!({"stack": STACK, "action": "pause"})).await;
    let paused = instances(&ec2).await;
    assert_eq!(paused.len(), 1);
    assert_eq!(state(&paused[0]), "stopped");
    ok(&d, "resume-1", json!({"stack": STACK, "action": "resume"})).await;
    let resumed = instances(&ec2).await;
    assert_eq!(
        (resumed[0].instance_id(), state(&resumed[0]).as_str()),
        (Some(instance_id.as_str()), "running")
    );

    // Another type: stopped, changed, started (the same instance). A type
    // the AZ does not offer is refused before the instance is stopped.
    let micro =
        json!({"stack": STACK, "network": {"nat": "instance", "natInstanceType": "t4g.micro"}});
    ok(&d, "retype-1", micro).await;
    let retyped = instances(&ec2).await;
    assert_eq!(
        (
            retyped[0].instance_id(),
            retyped[0].instance_type().map(|t| t.as_str()),
            state(&retyped[0]).as_str()
        ),
        (Some(instance_id.as_str()), Some("t4g.micro"), "running")
    );
    let unknown =
        json!({"stack": STACK, "network": {"nat": "instance", "natInstanceType": "t4g.nanoo"}});
    let refused = mbstack_tests::checks::run(&d, "retype-2", unknown).await;
    assert_eq!(refused.status, "FAILED");
    let cause = refused.cause.unwrap_or_default();
    assert!(
        cause.contains("network.natInstanceType") && cause.contains("not offered"),
        "{cause}"
    );
    let kept = instances(&ec2).await;
    assert_eq!(
        (
            kept[0].instance_type().map(|t| t.as_str()),
            state(&kept[0]).as_str()
        ),
        (Some("t4g.micro"), "running"),
        "never stopped for a type it cannot run"
    );
    ok(&d, "retype-3", input.clone()).await;

    // Terminated: the next repair launches a replacement on the same
    // interface, which keeps the route and the address.
    ec2.terminate_instances()
        .instance_ids(&instance_id)
        .send()
        .await
        .unwrap();
    let healed = ok(&d, "repair-2", json!({"stack": STACK})).await;
    let now = instances(&ec2).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].instance_id(), Some(instance_id.as_str()));
    assert!(
        changes(&healed)
            .iter()
            .any(|(k, a, _)| k == "nat-instance" && a == "create"),
        "{:?}",
        changes(&healed)
    );
    let eni_now = interfaces(&ec2).await;
    assert_eq!(eni_now.len(), 1);
    assert_eq!(eni_now[0].network_interface_id(), Some(eni_id.as_str()));
    assert_eq!(
        eni_now[0].association().and_then(|a| a.allocation_id()),
        Some(address.as_str()),
        "the same Elastic IP"
    );
    assert_eq!(private_route(&ec2).await.as_deref(), Some(eni_id.as_str()));

    // Switch to a NAT gateway in one run: same address, the instance, its
    // interface and group gone.
    let private = private_subnets(&ec2).await;
    assert_eq!(private.len(), 2);
    assert_eq!(d.emulator.front.no_way_out(&private).await, None);
    let (_, to_gateway, why) = watched(
        &d,
        "to-gateway",
        json!({"stack": STACK, "network": {"nat": "single"}}),
        &private,
    )
    .await;
    println!("instance → NAT gateway: no way out for {to_gateway:?} in the emulator ({why:?})");
    assert_eq!(instances(&ec2).await.len(), 0);
    assert_eq!(interfaces(&ec2).await.len(), 0);
    let nats = ec2.describe_nat_gateways().send().await.unwrap();
    let live: Vec<_> = nats
        .nat_gateways()
        .iter()
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(
        live[0]
            .nat_gateway_addresses()
            .first()
            .and_then(|a| a.allocation_id()),
        Some(address.as_str()),
        "the gateway took the stack's address"
    );
    assert_eq!(
        private_route(&ec2).await.as_deref(),
        live[0].nat_gateway_id()
    );
    let left = stack_leftovers(&d.config, STACK).await;
    assert!(
        !left
            .iter()
            .any(|l| l.starts_with("instance") || l.starts_with("network-interface")),
        "{left:?}"
    );

    // And back, in one run: the gateway carries until the instance runs.
    // The plan of the switch shows where it ends.
    let plan = ok(
        &d,
        "plan-switch",
        json!({"stack": STACK, "network": {"nat": "instance"}, "action": "plan"}),
    )
    .await;
    let planned = changes(&plan);
    assert!(
        planned
            .iter()
            .any(|(k, a, _)| k == "nat-gateway" && a == "delete"),
        "{planned:?}"
    );
    assert!(
        planned.iter().any(|(k, a, d)| k == "route-table"
            && a == "update"
            && d.contains("the NAT instance's new interface")),
        "{planned:?}"
    );
    assert!(
        planned
            .iter()
            .any(|(k, a, _)| k == "nat-instance" && a == "create"),
        "{planned:?}"
    );
    let (back, to_instance, why) = watched(
        &d,
        "to-instance",
        json!({"stack": STACK, "network": {"nat": "instance"}}),
        &private,
    )
    .await;
    println!("NAT gateway → instance: no way out for {to_instance:?} in the emulator ({why:?})");
    // The gateway carried until the instance ran: the window is the
    // gateway's deletion and the address's release (AWS's, ÷ the scale),
    // plus at most one wait of the apply's retrier.
    let bound = Duration::from_secs(mbstack_core::error::WAITING_RETRY_SECONDS + 3);
    assert!(to_instance <= bound, "{to_instance:?} > {bound:?}: {why:?}");
    assert!(
        back.history_text.contains("Mbstack.Waiting"),
        "the switch waited in the run for the address"
    );
    let enis = interfaces(&ec2).await;
    assert_eq!(enis.len(), 1);
    assert_eq!(
        enis[0].association().and_then(|a| a.allocation_id()),
        Some(address.as_str()),
        "the interface took the stack's address back"
    );
    assert_eq!(
        private_route(&ec2).await.as_deref(),
        enis[0].network_interface_id()
    );

    // Destroy leaves nothing.
    ok(
        &d,
        "destroy-1",
        json!({"stack": STACK, "action": "destroy"}),
    )
    .await;
    assert_eq!(
        stack_leftovers(&d.config, STACK).await,
        Vec::<String>::new()
    );
}

/// An account on AWS's Free plan launches only free-tier-eligible types, which
/// the default `t4g.nano` is not: the run fails naming the field and the type
/// that works, and rolls back whole.
#[tokio::test]
async fn a_free_plan_account_is_told_which_nat_instance_type_it_can_launch() {
    let d = Deployed::start().await.expect("deployed into the emulator");
    d.emulator.front.set_free_plan(true);
    let run = mbstack_tests::checks::run(
        &d,
        "apply-1",
        json!({"stack": STACK, "network": {"nat": "instance"}}),
    )
    .await;
    assert_eq!(run.status, "FAILED", "{:?}", run.state_names);
    let cause = run.cause.unwrap_or_default();
    assert!(
        cause.contains("not eligible for Free Tier")
            && cause.contains("network.natInstanceType")
            && cause.contains("t4g.micro"),
        "{cause}"
    );
    assert_eq!(
        stack_leftovers(&d.config, STACK).await,
        Vec::<String>::new()
    );
    let micro =
        json!({"stack": STACK, "network": {"nat": "instance", "natInstanceType": "t4g.micro"}});
    ok(&d, "apply-2", micro).await;
    assert_eq!(
        instances(&aws_sdk_ec2::Client::new(&d.config)).await[0]
            .instance_type()
            .map(|t| t.as_str()),
        Some("t4g.micro")
    );
}
