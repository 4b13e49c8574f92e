//! `mbstack audit --stack S`: the security promises of a provisioned stack,
//! checked against what exists. Each finding names the rule, the resource and
//! what is wrong; a clean stack has none.
//!
//! Rules: no task with a public IP; the DB neither public nor unencrypted; security
//! group ingress exactly as designed (CIDRs only on the load balancer's 80/443, the
//! app from the load balancer's group on 3000, the DB from the app's on 5432, the
//! NAT instance's from the private subnets only); a NAT instance with IMDSv2
//! required and no key pair;
//! private subnets with no route to the internet gateway; the stack's IAM policies
//! without wildcard write actions; the state machine never logging execution data.

use mbstack_core::{aws_error, client, error_code, Aws, TierError};
use serde::Serialize;

use crate::policies;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub resource: String,
    pub detail: String,
}

fn finding(rule: &'static str, resource: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        rule,
        resource: resource.into(),
        detail: detail.into(),
    }
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Every finding for `stack` (and the state machine named `state_machine`, if any).
pub async fn audit(
    aws: &Aws,
    stack: &str,
    state_machine: Option<&str>,
) -> Result<Vec<Finding>, TierError> {
    let mut out = Vec::new();
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("tag:mbstack:stack")
        .values(stack)
        .build();
    let ec2 = client!(aws_sdk_ec2, aws);

    // Security groups: exactly the designed ingress.
    let sgs = ec2
        .describe_security_groups()
        .filters(filter.clone())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSecurityGroups", e))?;
    // The private subnets: the NAT instance's group admits them, and only them.
    let subnets = ec2
        .describe_subnets()
        .filters(filter.clone())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSubnets", e))?;
    let private: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter(|s| {
            tag(s.tags(), "Name").is_some_and(|n| n.starts_with(&format!("{stack}-private-")))
        })
        .filter_map(|s| s.cidr_block())
        .collect();
    let role_of = |id: &str| -> Option<String> {
        sgs.security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .and_then(|g| tag(g.tags(), "Name"))
            .and_then(|n| n.rsplit('-').next())
            .map(str::to_string)
    };
    for g in sgs.security_groups() {
        let id = g.group_id().unwrap_or("");
        let role = role_of(id).unwrap_or_default();
        for p in g.ip_permissions() {
            let (from, to, proto) = (
                p.from_port().unwrap_or(-1),
                p.to_port().unwrap_or(-1),
                p.ip_protocol().unwrap_or(""),
            );
            for r in p.ip_ranges() {
                let cidr = r.cidr_ip().unwrap_or("");
                let ok =
                    (role == "lb" && proto == "tcp" && from == to && (from == 80 || from == 443))
                        || (role == "nat" && private.contains(&cidr));
                if !ok {
                    out.push(finding(
                        "ingress",
                        id,
                        format!("{role} group allows {proto}/{from}-{to} from {cidr}"),
                    ));
                }
            }
            for pair in p.user_id_group_pairs() {
                let src = pair.group_id().and_then(role_of).unwrap_or_default();
                let ok = proto == "tcp"
                    && from == to
                    && matches!(
                        (role.as_str(), src.as_str(), from),
                        ("app", "lb", 3000) | ("db", "app", 5432)
                    );
                if !ok {
                    out.push(finding(
                        "ingress",
                        id,
                        format!("{role} group allows {proto}/{from}-{to} from the {src} group"),
                    ));
                }
            }
            if !p.ipv6_ranges().is_empty() || !p.prefix_list_ids().is_empty() {
                out.push(finding(
                    "ingress",
                    id,
                    format!("{role} group allows IPv6 or prefix-list sources"),
                ));
            }
        }
    }

    // The NAT instance: IMDSv2 only, no key pair.
    let instances = ec2
        .describe_instances()
        .filters(filter.clone())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeInstances", e))?;
    for i in instances.reservations().iter().flat_map(|r| r.instances()) {
        let id = i.instance_id().unwrap_or("");
        let tokens = i
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str());
        if tokens != Some("required") {
            out.push(finding(
                "nat-instance",
                id,
                "IMDSv1 is allowed: set HttpTokens required".to_string(),
            ));
        }
        if let Some(key) = i.key_name() {
            out.push(finding(
                "nat-instance",
                id,
                format!("it has the key pair {key}: the NAT instance takes no SSH"),
            ));
        }
    }

    // Private subnets: no route to an internet gateway.
    let rts = ec2
        .describe_route_tables()
        .filters(filter)
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeRouteTables", e))?;
    for rt in rts.route_tables() {
        let name = tag(rt.tags(), "Name").unwrap_or("");
        if !name.starts_with(&format!("{stack}-private")) {
            continue;
        }
        for r in rt.routes() {
            if r.gateway_id().is_some_and(|g| g.starts_with("igw-")) {
                out.push(finding(
                    "private-subnets",
                    rt.route_table_id().unwrap_or(""),
                    format!(
                        "{name} routes {} to {}",
                        r.destination_cidr_block().unwrap_or("?"),
                        r.gateway_id().unwrap_or("")
                    ),
                ));
            }
        }
    }

    // The DB: private and encrypted.
    let rds = client!(aws_sdk_rds, aws);
    if let Some(db) = mbstack_data::find(&rds, stack).await? {
        let id = db.db_instance_identifier().unwrap_or("");
        if db.publicly_accessible() == Some(true) {
            out.push(finding("database", id, "publicly accessible"));
        }
        if db.storage_encrypted() != Some(true) {
            out.push(finding("database", id, "storage not encrypted"));
        }
    }

    // Tasks: no public IP.
    let ecs = client!(aws_sdk_ecs, aws);
    match ecs
        .describe_services()
        .cluster(format!("{stack}-cluster"))
        .services("metabase")
        .send()
        .await
    {
        Ok(o) => {
            for s in o.services().iter().filter(|s| s.status() == Some("ACTIVE")) {
                let public = s
                    .network_configuration()
                    .and_then(|n| n.awsvpc_configuration())
                    .and_then(|v| v.assign_public_ip())
                    .map(|a| a.as_str());
                if public != Some("DISABLED") {
                    out.push(finding(
                        "public-ip",
                        s.service_arn().unwrap_or(""),
                        format!("tasks get a public IP ({})", public.unwrap_or("unset")),
                    ));
                }
            }
        }
        Err(e) if error_code(&e) == Some("ClusterNotFoundException") => {}
        Err(e) => return Err(aws_error("ecs:DescribeServices", e)),
    }

    // The stack's IAM roles: no wildcard write actions.
    let iam = client!(aws_sdk_iam, aws);
    for role in [
        format!("{stack}-metabase-execution"),
        format!("{stack}-metabase-task"),
    ] {
        let names = match iam.list_role_policies().role_name(&role).send().await {
            Ok(o) => o.policy_names().to_vec(),
            Err(e) if error_code(&e) == Some("NoSuchEntity") => continue,
            Err(e) => return Err(aws_error("iam:ListRolePolicies", e)),
        };
        for n in names {
            let p = iam
                .get_role_policy()
                .role_name(&role)
                .policy_name(&n)
                .send()
                .await
                .map_err(|e| aws_error("iam:GetRolePolicy", e))?;
            if let Some(doc) = mbstack_app::parse_policy(p.policy_document()) {
                for v in policies::wildcard_violations(&doc) {
                    out.push(finding("iam", format!("{role}/{n}"), v));
                }
            }
        }
    }

    // The state machine: never execution data in its logs.
    if let Some(name) = state_machine {
        let sfn = client!(aws_sdk_sfn, aws);
        if let Some(d) = crate::deploy::describe_named(&sfn, name).await? {
            let arn = d.state_machine_arn().to_string();
            if d.logging_configuration()
                .is_some_and(|l| l.include_execution_data())
            {
                out.push(finding(
                    "state-machine-logs",
                    arn,
                    "logs include execution data (every input and output)",
                ));
            }
        }
    }
    Ok(out)
}
