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
use mbstack_core::naming::{resource_name, STACK_TAG};
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Verb, Work};

use crate::tags::{self, elb_tags, Pairs};

/// TLS 1.3 and 1.2 only.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Default {
    Forward(String),
    RedirectToHttps,
}

#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub port: i32,
    protocol: ProtocolEnum,
    certificate: Option<String>,
    action: Default,
}

/// The layout: HTTPS with `certificate` (the spec's, or the stack's own once
/// ACM issued it) and :80 redirecting; HTTP :80 alone without one (also while
/// the stack's own certificate waits for validation).
pub(crate) fn wanted(tg: &str, certificate: Option<&str>) -> Vec<Wanted> {
    match certificate {
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
                certificate: Some(cert.to_string()),
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

/// ELB takes a certificate ACM has just issued only some seconds later
/// (`UnsupportedCertificate`, `CertificateNotFound`): retried (the state
/// machine's Retry); if it lasts, the message says what to check.
fn not_yet(want: &Wanted, e: TierError) -> TierError {
    match (&want.certificate, e) {
        (Some(cert), TierError::Terminal(text))
            if text.contains("UnsupportedCertificate") || text.contains("CertificateNotFound") =>
        {
            TierError::Retryable(format!(
                "{text} — ELB takes a certificate some seconds after ACM issues it; if this lasts, check that {cert} is ISSUED, in this region"
            ))
        }
        (_, e) => e,
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

/// The listeners of the stack's ALB `lb_arn`, forwarding to `tg_arn` (None:
/// planned). Only :80 and :443 are ours to manage; a listener on another port
/// is left alone (a destroy deletes it only if it carries our tags).
pub(crate) struct Listeners {
    pub elb: Client,
    pub stack: String,
    pub lb_arn: Option<String>,
    pub tg_arn: Option<String>,
}

/// A listener with its tags. A converge reads no tags: the listeners of our
/// ALB are ours (their stack tag is implied); a destroy reads them, since a
/// rollback deletes only what its run created.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    listener: Listener,
    tags: Pairs,
}

/// Its protocol, action, certificate or TLS policy differ: one ModifyListener.
pub(crate) struct Modify(String);

impl std::fmt::Display for Modify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn role(port: i32) -> String {
    format!("listener-{port}")
}

impl Resource for Listeners {
    const KIND: &'static str = "listener";
    const LABEL: &'static str = "listener";
    type Live = Live;
    type Want = Wanted;
    type Step = Modify;

    fn name(&self, _w: &Work<'_>, want: &Wanted) -> String {
        resource_name(&self.stack, &role(want.port))
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        live.listener
            .port()
            .map(|port| resource_name(&self.stack, &role(port)))
    }
    fn id(&self, live: &Live) -> String {
        live.listener.listener_arn().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let Some(lb_arn) = &self.lb_arn else {
            return Ok(Vec::new());
        };
        let out = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeListeners", e))?;
        if w.verb == Verb::Destroy {
            let arns: Vec<String> = out
                .listeners()
                .iter()
                .filter_map(|l| l.listener_arn().map(str::to_string))
                .collect();
            let mut all_tags = tags::of(&self.elb, &arns).await?;
            return Ok(out
                .listeners()
                .iter()
                .map(|l| Live {
                    tags: all_tags
                        .remove(l.listener_arn().unwrap_or_default())
                        .unwrap_or_default(),
                    listener: l.clone(),
                })
                .collect());
        }
        let implied = vec![(STACK_TAG.to_string(), self.stack.clone())];
        Ok(out
            .listeners()
            .iter()
            .filter(|l| matches!(l.port(), Some(80 | 443)))
            .map(|l| Live {
                listener: l.clone(),
                tags: implied.clone(),
            })
            .collect())
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, want: &Wanted) -> Result<Vec<Modify>, TierError> {
        let l = &live.listener;
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
        // A planned target group: nothing to compare with yet.
        Ok(if same || self.tg_arn.is_none() {
            vec![]
        } else {
            vec![Modify(describe(want))]
        })
    }

    fn describe(&self, _w: &Work<'_>, want: &Wanted) -> String {
        describe(want)
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        format!(
            "{} :{}",
            live.listener.protocol().map(|p| p.as_str()).unwrap_or("?"),
            live.listener.port().unwrap_or(0)
        )
    }

    async fn create(&self, w: &Work<'_>, want: &Wanted) -> Result<Live, TierError> {
        let (Some(lb), Some(_)) = (&self.lb_arn, &self.tg_arn) else {
            return Err(TierError::Terminal(
                "a listener needs the load balancer and the target group".into(),
            ));
        };
        let mut call = self
            .elb
            .create_listener()
            .load_balancer_arn(lb)
            .protocol(want.protocol.clone())
            .port(want.port)
            .default_actions(elb_action(&want.action))
            .set_tags(Some(elb_tags(w, &role(want.port))));
        if let Some(c) = &want.certificate {
            call = call
                .ssl_policy(SSL_POLICY)
                .certificates(Certificate::builder().certificate_arn(c).build());
        }
        let out = call
            .send()
            .await
            .map_err(|e| not_yet(want, aws_error("elasticloadbalancing:CreateListener", e)))?;
        let listener = out.listeners().first().cloned().ok_or_else(|| {
            TierError::Terminal("elasticloadbalancing:CreateListener returned no listener".into())
        })?;
        Ok(Live {
            listener,
            tags: w.tags(&role(want.port)),
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        want: &Wanted,
        _steps: &[Modify],
    ) -> Result<Option<Live>, TierError> {
        let mut call = self
            .elb
            .modify_listener()
            .listener_arn(self.id(live))
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
            .map_err(|e| not_yet(want, aws_error("elasticloadbalancing:ModifyListener", e)))?;
        Ok(None)
    }

    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.elb
            .delete_listener()
            .listener_arn(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DeleteListener", e))?;
        Ok(Deleted::Now)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{elb, run};
    use mbstack_core::{StackSpec, Tier};

    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/s-tg/0123456789abcdef";
    const CERT: &str =
        "arn:aws:acm:us-east-1:111122223333:certificate/11111111-2222-3333-4444-555555555555";

    fn listeners(tg: Option<&str>) -> Listeners {
        Listeners {
            elb: elb(),
            stack: "s".into(),
            lb_arn: Some(
                "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/s-alb/0123456789abcdef"
                    .into(),
            ),
            tg_arn: tg.map(str::to_string),
        }
    }

    fn live(listener: Listener) -> Live {
        Live {
            listener,
            tags: Vec::new(),
        }
    }

    /// HTTP :80 forwarding to the target group.
    fn http_forward() -> Listener {
        Listener::builder()
            .port(80)
            .protocol(ProtocolEnum::Http)
            .default_actions(
                ElbAction::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(TG)
                    .build(),
            )
            .build()
    }

    /// HTTPS :443 with `cert` and the TLS 1.3/1.2 policy, forwarding.
    fn https_forward(cert: &str) -> Listener {
        Listener::builder()
            .port(443)
            .protocol(ProtocolEnum::Https)
            .ssl_policy("ELBSecurityPolicy-TLS13-1-2-2021-06")
            .certificates(Certificate::builder().certificate_arn(cert).build())
            .default_actions(
                ElbAction::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(TG)
                    .build(),
            )
            .build()
    }

    /// HTTP :80 answering 301 to HTTPS :443.
    fn http_redirect() -> Listener {
        Listener::builder()
            .port(80)
            .protocol(ProtocolEnum::Http)
            .default_actions(
                ElbAction::builder()
                    .r#type(ActionTypeEnum::Redirect)
                    .redirect_config(
                        RedirectActionConfig::builder()
                            .protocol("HTTPS")
                            .port("443")
                            .status_code(RedirectActionStatusCodeEnum::Http301)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn shown(steps: &[Modify]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn listeners_as_the_layout_wants_need_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let ls = listeners(Some(TG));
        // Without a certificate: HTTP :80 forwards.
        let http = wanted(TG, None);
        assert!(ls
            .diff(&w, &live(http_forward()), &http[0])
            .unwrap()
            .is_empty());
        // With one: HTTPS :443 forwards, :80 redirects.
        let https = wanted(TG, Some(CERT));
        assert!(ls
            .diff(&w, &live(https_forward(CERT)), &https[0])
            .unwrap()
            .is_empty());
        assert!(ls
            .diff(&w, &live(http_redirect()), &https[1])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_certificate_turns_the_forwarding_http_listener_into_a_redirect() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let https = wanted(TG, Some(CERT));
        let port_80 = https.iter().find(|l| l.port == 80).unwrap();
        let steps = listeners(Some(TG))
            .diff(&w, &live(http_forward()), port_80)
            .unwrap();
        assert_eq!(shown(&steps), vec!["HTTP :80 → 301 to HTTPS :443"]);
    }

    #[test]
    fn an_https_listener_with_another_certificate_or_policy_is_modified() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let https = wanted(TG, Some(CERT));
        let port_443 = https.iter().find(|l| l.port == 443).unwrap();
        let old_cert = https_forward(
            "arn:aws:acm:us-east-1:111122223333:certificate/99999999-8888-7777-6666-555555555555",
        );
        let old_policy = Listener::builder()
            .port(443)
            .protocol(ProtocolEnum::Https)
            .ssl_policy("ELBSecurityPolicy-2016-08")
            .certificates(Certificate::builder().certificate_arn(CERT).build())
            .default_actions(
                ElbAction::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(TG)
                    .build(),
            )
            .build();
        for listener in [old_cert, old_policy] {
            let steps = listeners(Some(TG))
                .diff(&w, &live(listener), port_443)
                .unwrap();
            assert_eq!(shown(&steps), vec!["HTTPS :443 → target group"]);
        }
    }

    #[test]
    fn a_listener_forwarding_elsewhere_is_pointed_back_unless_the_target_group_is_planned() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::LoadBalancer, &spec, &run, Verb::Apply);
        let http = wanted(TG, None);
        let elsewhere = Listener::builder()
            .port(80)
            .protocol(ProtocolEnum::Http)
            .default_actions(
                ElbAction::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(
                        "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/other/1",
                    )
                    .build(),
            )
            .build();
        let steps = listeners(Some(TG))
            .diff(&w, &live(elsewhere.clone()), &http[0])
            .unwrap();
        assert_eq!(shown(&steps), vec!["HTTP :80 → target group"]);
        // A plan whose target group is not created yet has nothing to compare.
        let steps = listeners(None)
            .diff(&w, &live(elsewhere), &http[0])
            .unwrap();
        assert!(steps.is_empty());
    }
}
