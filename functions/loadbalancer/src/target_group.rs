//! The target group Metabase's tasks register in: ip targets, HTTP :3000.
//!
//! Health check, chosen for Metabase: `GET /api/health` answers 503 while Metabase
//! starts (first boot runs migrations for minutes) and 200 when ready. ECS's
//! health-check grace period covers the start; here a check every 30 s with a
//! 10 s timeout (a busy JVM answers slowly), healthy after 2 passes (~1 min), and
//! unhealthy only after 5 failures (2.5 min), so a long GC pause or a heavy query
//! does not get a working task replaced. Deregistration delay 30 s (not 300):
//! Metabase requests are short and a deploy or destroy should not wait 5 minutes.

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroup, TargetGroupAttribute, TargetTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::target_group_name;
use mbstack_core::{aws_error, error_code, Action, TierError, Work};

use crate::tags::{self, elb_tags, ensure_ours, Pairs};

pub(crate) const KIND: &str = "target-group";
const ROLE: &str = "tg";
pub const PORT: i32 = 3000;
pub const HEALTH_PATH: &str = "/api/health";
pub const HEALTH_INTERVAL: i32 = 30;
pub const HEALTH_TIMEOUT: i32 = 10;
pub const HEALTHY_THRESHOLD: i32 = 2;
pub const UNHEALTHY_THRESHOLD: i32 = 5;
pub const DEREGISTRATION_DELAY: &str = "30";

pub(crate) async fn find(
    elb: &Client,
    w: &Work<'_>,
) -> Result<Option<(TargetGroup, Pairs)>, TierError> {
    let name = target_group_name(&w.spec.stack);
    let out = match elb.describe_target_groups().names(&name).send().await {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("TargetGroupNotFound") => return Ok(None),
        Err(e) => return Err(aws_error("elasticloadbalancing:DescribeTargetGroups", e)),
    };
    let Some(tg) = out.target_groups().first().cloned() else {
        return Ok(None);
    };
    let arn = tg.target_group_arn().unwrap_or_default().to_string();
    let t = tags::of(elb, std::slice::from_ref(&arn))
        .await?
        .remove(&arn)
        .unwrap_or_default();
    ensure_ours(w, "target group", &name, &t)?;
    Ok(Some((tg, t)))
}

fn health_differs(tg: &TargetGroup) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, have: Option<String>, want: String| {
        if have.as_deref() != Some(want.as_str()) {
            d.push(format!(
                "{what} {} → {want}",
                have.unwrap_or_else(|| "unset".into())
            ));
        }
    };
    cmp(
        "health path",
        tg.health_check_path().map(str::to_string),
        HEALTH_PATH.into(),
    );
    cmp(
        "health protocol",
        tg.health_check_protocol().map(|p| p.as_str().to_string()),
        "HTTP".into(),
    );
    cmp(
        "interval",
        tg.health_check_interval_seconds().map(|v| v.to_string()),
        HEALTH_INTERVAL.to_string(),
    );
    cmp(
        "timeout",
        tg.health_check_timeout_seconds().map(|v| v.to_string()),
        HEALTH_TIMEOUT.to_string(),
    );
    cmp(
        "healthy threshold",
        tg.healthy_threshold_count().map(|v| v.to_string()),
        HEALTHY_THRESHOLD.to_string(),
    );
    cmp(
        "unhealthy threshold",
        tg.unhealthy_threshold_count().map(|v| v.to_string()),
        UNHEALTHY_THRESHOLD.to_string(),
    );
    cmp(
        "matcher",
        tg.matcher().and_then(|m| m.http_code()).map(str::to_string),
        "200".into(),
    );
    d
}

const ATTRIBUTES: &[(&str, &str)] = &[
    ("deregistration_delay.timeout_seconds", DEREGISTRATION_DELAY),
    ("stickiness.enabled", "false"),
];

/// Finds or creates the target group; converges health check and attributes.
pub(crate) async fn ensure(
    elb: &Client,
    w: &mut Work<'_>,
    vpc_id: Option<&str>,
) -> Result<Option<TargetGroup>, TierError> {
    let name = target_group_name(&w.spec.stack);
    let (tg, created) = match find(elb, w).await? {
        Some((tg, _)) => {
            let fixed = (
                tg.port() == Some(PORT),
                tg.target_type() == Some(&TargetTypeEnum::Ip),
                vpc_id.is_none() || tg.vpc_id() == vpc_id,
            );
            if fixed != (true, true, true) {
                return Err(TierError::Terminal(format!(
                    "target group {name} is not ip targets on :{PORT} in the stack's VPC (changed outside mbstack?): delete it and apply again"
                )));
            }
            (tg, false)
        }
        None => {
            let (Some(vpc), false) = (vpc_id, w.dry_run) else {
                w.record(
                    KIND,
                    &name,
                    Action::Create,
                    format!("ip targets, HTTP :{PORT}, health {HEALTH_PATH}"),
                );
                return Ok(None);
            };
            let out = elb
                .create_target_group()
                .name(&name)
                .protocol(ProtocolEnum::Http)
                .port(PORT)
                .vpc_id(vpc)
                .target_type(TargetTypeEnum::Ip)
                .health_check_enabled(true)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path(HEALTH_PATH)
                .health_check_interval_seconds(HEALTH_INTERVAL)
                .health_check_timeout_seconds(HEALTH_TIMEOUT)
                .healthy_threshold_count(HEALTHY_THRESHOLD)
                .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
                .matcher(Matcher::builder().http_code("200").build())
                .set_tags(Some(elb_tags(w, ROLE)))
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:CreateTargetGroup", e))?;
            let tg = out.target_groups().first().cloned().ok_or_else(|| {
                TierError::Terminal(
                    "elasticloadbalancing:CreateTargetGroup returned no target group".into(),
                )
            })?;
            (tg, true)
        }
    };
    let arn = tg.target_group_arn().unwrap_or_default().to_string();
    let mut steps = if created {
        Vec::new()
    } else {
        health_differs(&tg)
    };
    if !steps.is_empty() && !w.dry_run {
        elb.modify_target_group()
            .target_group_arn(&arn)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(HEALTH_PATH)
            .health_check_interval_seconds(HEALTH_INTERVAL)
            .health_check_timeout_seconds(HEALTH_TIMEOUT)
            .healthy_threshold_count(HEALTHY_THRESHOLD)
            .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
            .matcher(Matcher::builder().http_code("200").build())
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:ModifyTargetGroup", e))?;
    }
    let have: Vec<(String, String)> = if created {
        Vec::new()
    } else {
        elb.describe_target_group_attributes()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeTargetGroupAttributes", e))?
            .attributes()
            .iter()
            .map(|a| {
                (
                    a.key().unwrap_or("").to_string(),
                    a.value().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let differ: Vec<&(&str, &str)> = ATTRIBUTES
        .iter()
        .filter(|(k, v)| !have.iter().any(|(hk, hv)| hk == k && hv == v))
        .collect();
    if !differ.is_empty() {
        if !w.dry_run {
            elb.modify_target_group_attributes()
                .target_group_arn(&arn)
                .set_attributes(Some(
                    differ
                        .iter()
                        .map(|(k, v)| TargetGroupAttribute::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:ModifyTargetGroupAttributes", e))?;
        }
        if !created {
            steps.extend(differ.iter().map(|(k, v)| format!("{k} → {v}")));
        }
    }
    let action = match (created, steps.is_empty()) {
        (true, _) => Action::Create,
        (false, true) => Action::None,
        (false, false) => Action::Update,
    };
    let detail = if steps.is_empty() {
        format!("ip targets, HTTP :{PORT}, health {HEALTH_PATH}")
    } else {
        steps.join("; ")
    };
    w.record(KIND, &arn, action, detail);
    Ok(Some(tg))
}

/// Deletes the target group if destroy owns it. `ResourceInUse` (a listener or an
/// ECS service still uses it) is retryable: destroy reports pending.
pub(crate) async fn delete(elb: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some((tg, t)) = find(elb, w).await? else {
        return Ok(());
    };
    if !w.owns(&t) {
        return Ok(());
    }
    let arn = tg.target_group_arn().unwrap_or_default().to_string();
    elb.delete_target_group()
        .target_group_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("elasticloadbalancing:DeleteTargetGroup", e))?;
    w.record(
        KIND,
        &arn,
        Action::Delete,
        tg.target_group_name().unwrap_or("").to_string(),
    );
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &[
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
        ],
    ),
    Permission::create_tagged("CreateTagged", &["elasticloadbalancing:CreateTargetGroup"]),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:DeleteTargetGroup",
        ],
    ),
];
