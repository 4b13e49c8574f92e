//! Listeners: without a certificate, HTTP :80 forwarding to the target group. With
//! `loadBalancer.certificateArn`: HTTPS :443 (TLS 1.3/1.2 policy) forwarding, and
//! HTTP :80 redirecting to HTTPS with a 301. Listeners on other ports are not ours
//! to manage and are left alone.

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, Action, TierError, Work};

use crate::tags::{self, elb_tags};

pub(crate) const KIND: &str = "listener";
/// TLS 1.3 and 1.2 only.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Default {
    Forward(String),
    RedirectToHttps,
}

#[derive(Debug, Clone)]
struct Wanted {
    port: i32,
    protocol: ProtocolEnum,
    certificate: Option<String>,
    action: Default,
}

fn wanted(w: &Work<'_>, tg: &str) -> Vec<Wanted> {
    match &w.spec.load_balancer.certificate_arn {
        None => vec![Wanted {
            port: 80,
            protocol: ProtocolEnum::Http,
            certificate: None,
            action: Default::Forward(tg.to_string()),
        }],
        Some(cert) => vec![
            Wanted {
                port: 443,
                protocol: ProtocolEnum::Https,
                certificate: Some(cert.clone()),
                action: Default::Forward(tg.to_string()),
            },
            Wanted {
                port: 80,
                protocol: ProtocolEnum::Http,
                certificate: None,
                action: Default::RedirectToHttps,
            },
        ],
    }
}

fn elb_action(a: &Default) -> ElbAction {
    match a {
        Default::Forward(tg) => ElbAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .build(),
        Default::RedirectToHttps => ElbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
    }
}

fn current_action(l: &Listener) -> Option<Default> {
    let a = l.default_actions();
    if a.len() != 1 {
        return None;
    }
    match a[0].r#type() {
        Some(ActionTypeEnum::Forward) => a[0]
            .target_group_arn()
            .map(|t| Default::Forward(t.to_string())),
        Some(ActionTypeEnum::Redirect) => {
            let r = a[0].redirect_config()?;
            (r.protocol() == Some("HTTPS")
                && r.port() == Some("443")
                && r.status_code() == Some(&RedirectActionStatusCodeEnum::Http301))
            .then_some(Default::RedirectToHttps)
        }
        _ => None,
    }
}

fn describe(want: &Wanted) -> String {
    match &want.action {
        Default::Forward(_) => format!("{} :{} → target group", want.protocol.as_str(), want.port),
        Default::RedirectToHttps => format!(
            "{} :{} → 301 to HTTPS :443",
            want.protocol.as_str(),
            want.port
        ),
    }
}

pub(crate) async fn list(elb: &Client, lb_arn: &str) -> Result<Vec<Listener>, TierError> {
    let out = elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .map_err(|e| aws_error("elasticloadbalancing:DescribeListeners", e))?;
    Ok(out.listeners().to_vec())
}

/// Converges the listeners of `lb_arn` (None: the ALB is planned). Returns the
/// ARNs of the listeners in the spec's layout (None where planned).
pub(crate) async fn ensure(
    elb: &Client,
    w: &mut Work<'_>,
    lb_arn: Option<&str>,
    tg_arn: Option<&str>,
) -> Result<Vec<(i32, Option<String>)>, TierError> {
    let existing = match lb_arn {
        Some(arn) => list(elb, arn).await?,
        None => Vec::new(),
    };
    let layout = wanted(w, tg_arn.unwrap_or("(planned target group)"));
    let mut arns = Vec::new();
    for want in &layout {
        let role = format!("listener-{}", want.port);
        match existing.iter().find(|l| l.port() == Some(want.port)) {
            Some(l) => {
                let arn = l.listener_arn().unwrap_or_default().to_string();
                let cert = l
                    .certificates()
                    .first()
                    .and_then(|c| c.certificate_arn())
                    .map(str::to_string);
                let policy_ok = want.certificate.is_none() || l.ssl_policy() == Some(SSL_POLICY);
                let same = l.protocol() == Some(&want.protocol)
                    && current_action(l).as_ref() == Some(&want.action)
                    && cert == want.certificate
                    && policy_ok;
                if same || tg_arn.is_none() {
                    w.record(KIND, &arn, Action::None, describe(want));
                } else {
                    if !w.dry_run {
                        let mut call = elb
                            .modify_listener()
                            .listener_arn(&arn)
                            .protocol(want.protocol.clone())
                            .port(want.port)
                            .default_actions(elb_action(&want.action));
                        if let Some(c) = &want.certificate {
                            call = call
                                .ssl_policy(SSL_POLICY)
                                .certificates(Certificate::builder().certificate_arn(c).build());
                        }
                        call.send()
                            .await
                            .map_err(|e| aws_error("elasticloadbalancing:ModifyListener", e))?;
                    }
                    w.record(KIND, &arn, Action::Update, describe(want));
                }
                arns.push((want.port, Some(arn)));
            }
            None => {
                let (Some(lb), Some(_), false) = (lb_arn, tg_arn, w.dry_run) else {
                    w.record_named(KIND, &role, Action::Create, describe(want));
                    arns.push((want.port, None));
                    continue;
                };
                let mut call = elb
                    .create_listener()
                    .load_balancer_arn(lb)
                    .protocol(want.protocol.clone())
                    .port(want.port)
                    .default_actions(elb_action(&want.action))
                    .set_tags(Some(elb_tags(w, &role)));
                if let Some(c) = &want.certificate {
                    call = call
                        .ssl_policy(SSL_POLICY)
                        .certificates(Certificate::builder().certificate_arn(c).build());
                }
                let out = call
                    .send()
                    .await
                    .map_err(|e| aws_error("elasticloadbalancing:CreateListener", e))?;
                let arn = out
                    .listeners()
                    .first()
                    .and_then(|l| l.listener_arn())
                    .unwrap_or_default()
                    .to_string();
                w.record(KIND, &arn, Action::Create, describe(want));
                arns.push((want.port, Some(arn)));
            }
        }
    }
    // :443 without a certificate in the spec: the layout switched back to HTTP.
    for l in &existing {
        let port = l.port().unwrap_or(0);
        if (port == 80 || port == 443) && !layout.iter().any(|wl| wl.port == port) {
            let arn = l.listener_arn().unwrap_or_default().to_string();
            if !w.dry_run {
                delete_one(elb, &arn).await?;
            }
            w.record(
                KIND,
                &arn,
                Action::Delete,
                format!(
                    "{} :{port} is no longer in the layout",
                    l.protocol().map(|p| p.as_str()).unwrap_or("?")
                ),
            );
        }
    }
    Ok(arns)
}

async fn delete_one(elb: &Client, arn: &str) -> Result<(), TierError> {
    elb.delete_listener()
        .listener_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("elasticloadbalancing:DeleteListener", e))?;
    Ok(())
}

/// Destroy: the listeners of `lb_arn` that destroy owns.
pub(crate) async fn delete(elb: &Client, w: &mut Work<'_>, lb_arn: &str) -> Result<(), TierError> {
    let existing = list(elb, lb_arn).await?;
    let arns: Vec<String> = existing
        .iter()
        .filter_map(|l| l.listener_arn().map(str::to_string))
        .collect();
    let all_tags = tags::of(elb, &arns).await?;
    for l in &existing {
        let arn = l.listener_arn().unwrap_or_default();
        if all_tags.get(arn).is_some_and(|t| w.owns(t)) {
            delete_one(elb, arn).await?;
            w.record(
                KIND,
                arn,
                Action::Delete,
                format!(":{}", l.port().unwrap_or(0)),
            );
        }
    }
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["elasticloadbalancing:DescribeListeners"]),
    Permission::create_tagged("CreateTagged", &["elasticloadbalancing:CreateListener"]),
    // CreateListener is authorized on the load balancer (ours).
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:DeleteListener",
        ],
    ),
];
