//! The way out of a subnet, as a Fargate task placed in it meets it when it
//! pulls its image (VPC user guide, "Route tables"; ECS's "Fargate task
//! networking"): the subnet's route table (its own association, else its
//! VPC's main table) must send `0.0.0.0/0` to
//! - a NAT gateway that is `available`;
//! - an instance, or its network interface, that is `running` with its
//!   source/destination check off ("Each EC2 instance performs
//!   source/destination checks by default … you must disable source/destination
//!   checks on the NAT instance": VPC user guide, "NAT instances");
//! - the internet gateway, for a task given a public IP.
//!
//! Anything else (no default route, a blackhole, a NAT gateway not available,
//! an instance stopped or checking source and destination) carries nothing:
//! the pull times out and ECS stops the task with the reason AWS gives
//! ([`crate::state::ecs::EcsFault::NoWayOut`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::moto::moto_query;
use crate::state::Shared;
use crate::xml;

/// A route's target, as the route table names it.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Nat(String),
    Igw(String),
    Instance(String),
    Eni(String),
    Nothing,
}

async fn ec2(shared: &Shared, form: &str) -> Option<String> {
    let bytes = moto_query(shared, "ec2", &format!("{form}&Version=2016-11-15"))
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).to_string())
}

/// The default route's target of each subnet in `subnets` (None: a subnet
/// moto does not know, on which the rule has no opinion).
async fn default_targets(shared: &Shared, subnets: &[String]) -> Option<Vec<(String, Target)>> {
    let known = ec2(shared, "Action=DescribeSubnets").await?;
    let vpc_of: Vec<(String, String)> = xml::each(&known, "subnetId", |id| {
        let s = id.parent()?;
        Some((id.text(), s.child("vpcId")?))
    });
    let tables = ec2(shared, "Action=DescribeRouteTables").await?;
    // (table's VPC, associated subnets, main?, default route's target)
    let parsed: Vec<(String, Vec<String>, bool, Target)> =
        xml::each(&tables, "routeTableId", |id| {
            let t = id.parent()?;
            // Only the table's own id (an association names it too, and has no VPC).
            let vpc = t.child("vpcId")?;
            let mut subnets = Vec::new();
            let mut main = false;
            for set in t.children("associationSet") {
                for a in set.children("item") {
                    if let Some(s) = a.child("subnetId").filter(|s| !s.is_empty()) {
                        subnets.push(s);
                    }
                    main |= a.child("main").as_deref() == Some("true");
                }
            }
            let mut target = Target::Nothing;
            for set in t.children("routeSet") {
                for r in set.children("item") {
                    if r.child("destinationCidrBlock").as_deref() != Some("0.0.0.0/0") {
                        continue;
                    }
                    if r.child("state").as_deref() == Some("blackhole") {
                        continue;
                    }
                    let given = |k: &str| r.child(k).filter(|v| !v.is_empty());
                    target = if let Some(n) = given("natGatewayId") {
                        Target::Nat(n)
                    } else if let Some(i) = given("instanceId") {
                        Target::Instance(i)
                    } else if let Some(e) = given("networkInterfaceId") {
                        Target::Eni(e)
                    } else if let Some(g) = given("gatewayId").filter(|g| g.starts_with("igw-")) {
                        Target::Igw(g)
                    } else {
                        Target::Nothing
                    };
                }
            }
            Some((vpc, subnets, main, target))
        });
    let mut out = Vec::new();
    for subnet in subnets {
        let (_, vpc) = vpc_of.iter().find(|(s, _)| s == subnet)?;
        let own = parsed.iter().find(|(_, s, _, _)| s.contains(subnet));
        let main = parsed.iter().find(|(v, _, m, _)| v == vpc && *m);
        let target = own.or(main).map_or(Target::Nothing, |t| t.3.clone());
        out.push((subnet.clone(), target));
    }
    Some(out)
}

/// Why a task in `subnets` (with a public IP or not) could not reach the
/// internet, if it could not; None when every subnet has a way out, or when
/// the rule has no opinion (a subnet moto does not know).
pub(crate) async fn no_way_out(
    shared: &Arc<Shared>,
    subnets: &[String],
    public_ip: bool,
) -> Option<String> {
    let targets = default_targets(shared, subnets).await?;
    let mut instances_xml: Option<String> = None;
    let mut problems = BTreeSet::new();
    for (subnet, target) in targets {
        let problem = match target {
            Target::Nothing => Some(format!("subnet {subnet} has no route to 0.0.0.0/0")),
            Target::Igw(g) if !public_ip => Some(format!(
                "subnet {subnet} routes to the internet gateway {g}, and the task has no public IP"
            )),
            Target::Igw(_) => None,
            Target::Nat(id) => {
                let nats = super::nat::nat_gateways(shared).await;
                match nats.iter().find(|n| n.0 == id) {
                    Some(n) if n.1 == "available" => None,
                    Some(n) => Some(format!(
                        "subnet {subnet} routes to NAT gateway {id}, which is {}",
                        n.1
                    )),
                    None => Some(format!(
                        "subnet {subnet} routes to NAT gateway {id}, which does not exist"
                    )),
                }
            }
            Target::Instance(id) | Target::Eni(id) => {
                if instances_xml.is_none() {
                    // As AWS shows them: `pending` a while after a launch.
                    instances_xml = ec2(shared, "Action=DescribeInstances").await.map(|x| {
                        match shared.realism.lock() {
                            Ok(r) => xml::rewrite_state(
                                &x,
                                "instanceId",
                                &["instanceState", "name"],
                                |id, moto| r.instance_state(id, moto),
                            ),
                            Err(_) => x,
                        }
                    });
                }
                let xml = instances_xml.as_deref().unwrap_or("");
                instance_problem(xml, &id).map(|p| format!("subnet {subnet} routes to {id}: {p}"))
            }
        };
        if let Some(p) = problem {
            problems.insert(p);
        }
    }
    (!problems.is_empty()).then(|| problems.into_iter().collect::<Vec<_>>().join("; "))
}

/// Why the instance `id` (or the instance holding network interface `id`)
/// forwards nothing, if it does not.
fn instance_problem(xml: &str, id: &str) -> Option<String> {
    let found = xml::each(xml, "instanceId", |i| {
        let inst = i.parent()?;
        // The instance's own element has its state; an attachment naming the
        // instance has none.
        let state = inst.children("instanceState").first()?.child("name")?;
        let enis = inst.all("networkInterfaceId");
        (i.text() == id || enis.iter().any(|e| e == id)).then(|| {
            let check = inst.child("sourceDestCheck");
            let public = inst.child("ipAddress").filter(|a| !a.is_empty());
            (state, check, public)
        })
    });
    // A terminated instance keeps its interface in moto's record (see
    // moto_hooks.py): the interface's holder is the one not terminated.
    let holder = found
        .iter()
        .find(|(state, _, _)| state != "terminated")
        .or(found.first())
        .cloned();
    let Some((state, check, public)) = holder else {
        return Some("no such instance or network interface".into());
    };
    if state != "running" {
        return Some(format!("the instance is {state}"));
    }
    if check.as_deref() != Some("false") {
        return Some(
            "the instance's source/destination check is on: it drops traffic that is not addressed to it"
                .into(),
        );
    }
    if public.is_none() {
        return Some(
            "the instance has no public IP address: what it forwards cannot reach the internet"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::instance_problem;

    fn instance(state: &str, check: &str) -> String {
        with_ip(state, check, "<ipAddress>203.0.113.7</ipAddress>")
    }

    fn with_ip(state: &str, check: &str, ip: &str) -> String {
        format!(
            "<DescribeInstancesResponse><reservationSet><item><instancesSet><item>\
             <instanceId>i-1</instanceId><instanceState><code>16</code><name>{state}</name></instanceState>\
             <sourceDestCheck>{check}</sourceDestCheck>{ip}\
             <networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId>\
             <attachment><attachmentId>a-1</attachmentId></attachment></item></networkInterfaceSet>\
             </item></instancesSet></item></reservationSet></DescribeInstancesResponse>"
        )
    }

    #[test]
    fn an_instance_forwards_only_running_with_its_check_off() {
        assert_eq!(instance_problem(&instance("running", "false"), "i-1"), None);
        assert_eq!(
            instance_problem(&instance("running", "false"), "eni-1"),
            None
        );
        assert!(instance_problem(&instance("running", "true"), "eni-1")
            .is_some_and(|p| p.contains("source/destination check is on")));
        assert!(instance_problem(&instance("stopped", "false"), "i-1")
            .is_some_and(|p| p.contains("stopped")));
        assert!(instance_problem(&instance("running", "false"), "i-2").is_some());
        assert!(instance_problem(&with_ip("running", "false", ""), "eni-1")
            .is_some_and(|p| p.contains("no public IP address")));
    }
}
