//! The load balancer tier against the emulator: every attribute, health-check
//! setting and listener action, both layouts and the switch between them,
//! idempotence, destroy (pending while the target group is in use), and
//! deletion protection.

use aws_sdk_elasticloadbalancingv2::types::{
    ActionTypeEnum, Listener, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, TargetTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use mbstack_core::naming::{CREATED_BY_TAG, STACK_TAG, TIER_TAG};
use mbstack_core::{Action, Outcome, Scope, StackSpec, State, Tier, TierError, Verb};
use mbstack_loadbalancer as lbt;
use mbstack_tests::{network_inputs, TestEnv, TierRunner};
use serde_json::Value;

/// An issued certificate of the user's in the emulator's ACM (ELB takes only
/// an issued one).
async fn certificate(env: &TestEnv) -> String {
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    mbstack_tests::issued_certificate(&env.config, &zone, "metabase.example.com").await
}

fn out<'a>(o: &'a Outcome, key: &str) -> &'a str {
    o.outputs
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {key} in {:?}", o.outputs))
}

async fn listeners(elb: &Client, lb_arn: &str) -> Vec<Listener> {
    let mut l = elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .unwrap()
        .listeners()
        .to_vec();
    l.sort_by_key(|x| x.port());
    l
}

async fn tags(elb: &Client, arn: &str) -> Vec<(String, String)> {
    let t = elb.describe_tags().resource_arns(arn).send().await.unwrap();
    t.tag_descriptions()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

fn has(tags: &[(String, String)], k: &str, v: &str) -> bool {
    tags.iter().any(|(a, b)| a == k && b == v)
}

fn assert_http_layout(l: &[Listener], tg: &str) {
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].port(), Some(80));
    assert_eq!(l[0].protocol().map(|p| p.as_str()), Some("HTTP"));
    let a = l[0].default_actions();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].r#type(), Some(&ActionTypeEnum::Forward));
    assert_eq!(a[0].target_group_arn(), Some(tg));
}

fn assert_https_layout(l: &[Listener], tg: &str, cert: &str) {
    assert_eq!(l.len(), 2, "{l:?}");
    let (http, https) = (&l[0], &l[1]);
    assert_eq!((http.port(), https.port()), (Some(80), Some(443)));
    assert_eq!(https.protocol().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(https.ssl_policy(), Some(lbt::SSL_POLICY));
    assert_eq!(
        https
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn()),
        Some(cert)
    );
    assert_eq!(
        https.default_actions()[0].r#type(),
        Some(&ActionTypeEnum::Forward)
    );
    assert_eq!(https.default_actions()[0].target_group_arn(), Some(tg));
    let redirect = &http.default_actions()[0];
    assert_eq!(redirect.r#type(), Some(&ActionTypeEnum::Redirect));
    let r = redirect.redirect_config().expect("redirect config");
    assert_eq!(
        (r.protocol(), r.port(), r.status_code().map(|s| s.as_str())),
        (Some("HTTPS"), Some("443"), Some("HTTP_301"))
    );
}

#[tokio::test]
async fn http_layout_has_every_setting_and_a_second_apply_changes_nothing() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("web");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let net = lb.inputs["network"].clone();
    let outcomes = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
        .expect("settled");
    let last = outcomes.last().unwrap();
    assert_eq!(last.state, State::Ready);
    let elb = Client::new(&env.config);

    let lb_arn = out(last, "loadBalancerArn");
    let desc = elb
        .describe_load_balancers()
        .load_balancer_arns(lb_arn)
        .send()
        .await
        .unwrap();
    let alb = &desc.load_balancers()[0];
    assert_eq!(alb.load_balancer_name(), Some("web-alb"));
    assert_eq!(alb.scheme(), Some(&LoadBalancerSchemeEnum::InternetFacing));
    assert_eq!(alb.r#type(), Some(&LoadBalancerTypeEnum::Application));
    assert_eq!(
        alb.security_groups(),
        [net["lbSecurityGroupId"].as_str().unwrap().to_string()]
    );
    let mut subnets: Vec<&str> = alb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .collect();
    subnets.sort();
    let mut public: Vec<&str> = net["publicSubnetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    public.sort();
    assert_eq!(subnets, public);
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .unwrap();
    let attr = |k: &str| {
        attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some(k))
            .and_then(|a| a.value())
            .map(str::to_string)
    };
    assert_eq!(
        attr("routing.http.drop_invalid_header_fields.enabled").as_deref(),
        Some("true")
    );
    assert_eq!(attr("idle_timeout.timeout_seconds").as_deref(), Some("60"));
    assert_eq!(
        attr("deletion_protection.enabled").as_deref(),
        Some("false")
    );
    let t = tags(&elb, lb_arn).await;
    assert!(
        has(&t, STACK_TAG, "web")
            && has(&t, TIER_TAG, "loadbalancer")
            && has(&t, CREATED_BY_TAG, "run-a"),
        "{t:?}"
    );

    let tg_arn = out(last, "targetGroupArn");
    let tgs = elb
        .describe_target_groups()
        .target_group_arns(tg_arn)
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.target_group_name(), Some("web-tg"));
    assert_eq!(tg.protocol().map(|p| p.as_str()), Some("HTTP"));
    assert_eq!(tg.port(), Some(3000));
    assert_eq!(tg.target_type(), Some(&TargetTypeEnum::Ip));
    assert_eq!(tg.vpc_id(), net["vpcId"].as_str());
    assert_eq!(tg.health_check_path(), Some("/api/health"));
    assert_eq!(tg.health_check_interval_seconds(), Some(30));
    assert_eq!(tg.health_check_timeout_seconds(), Some(10));
    assert_eq!(tg.healthy_threshold_count(), Some(2));
    assert_eq!(tg.unhealthy_threshold_count(), Some(5));
    assert_eq!(tg.matcher().and_then(|m| m.http_code()), Some("200"));
    let tga = elb
        .describe_target_group_attributes()
        .target_group_arn(tg_arn)
        .send()
        .await
        .unwrap();
    let tattr = |k: &str| {
        tga.attributes()
            .iter()
            .find(|a| a.key() == Some(k))
            .and_then(|a| a.value())
            .map(str::to_string)
    };
    assert_eq!(
        tattr("deregistration_delay.timeout_seconds").as_deref(),
        Some("30")
    );
    assert_eq!(tattr("stickiness.enabled").as_deref(), Some("false"));

    let l = listeners(&elb, lb_arn).await;
    assert_http_layout(&l, tg_arn);
    assert!(has(
        &tags(&elb, l[0].listener_arn().unwrap()).await,
        STACK_TAG,
        "web"
    ));
    assert_eq!(
        out(last, "url"),
        format!("http://{}", alb.dns_name().unwrap())
    );
    assert_eq!(out(last, "httpListenerArn"), l[0].listener_arn().unwrap());
    assert!(last.outputs["canonicalHostedZoneId"].is_string());

    env.log.clear();
    let again = lb
        .call(Verb::Apply, &spec, "run-b", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(env.log.mutating(), vec![]);
    assert!(!again.changed(), "{:?}", again.changes);
    assert_eq!(again.state, State::Ready);
    let plan = lb
        .call(Verb::Plan, &spec, "run-p", Scope::Stack)
        .await
        .unwrap();
    assert!(!plan.changed());
}

#[tokio::test]
async fn certificate_switches_the_listener_layout_both_ways() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("tls");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let first = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
        .expect("settled");
    let lb_arn = out(first.last().unwrap(), "loadBalancerArn").to_string();
    let tg_arn = out(first.last().unwrap(), "targetGroupArn").to_string();
    let elb = Client::new(&env.config);

    let cert = certificate(&env).await;
    spec.load_balancer.certificate_arn = Some(cert.clone());
    let o = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-b", Scope::Stack)
        .await
        .expect("settled");
    assert_https_layout(&listeners(&elb, &lb_arn).await, &tg_arn, &cert);
    let kinds: Vec<(&str, Action)> = o[0]
        .changes
        .iter()
        .filter(|c| c.action != Action::None)
        .map(|c| (c.kind.as_str(), c.action))
        .collect();
    assert_eq!(
        kinds,
        vec![("listener", Action::Create), ("listener", Action::Update)]
    );
    assert!(out(o.last().unwrap(), "url").starts_with("https://"));
    env.log.clear();
    let again = lb
        .call(Verb::Apply, &spec, "run-c", Scope::Stack)
        .await
        .unwrap();
    assert_eq!(env.log.mutating(), vec![], "{:?}", again.changes);

    spec.load_balancer.certificate_arn = None;
    lb.settle(Verb::Apply, Verb::Check, &spec, "run-d", Scope::Stack)
        .await
        .expect("settled");
    assert_http_layout(&listeners(&elb, &lb_arn).await, &tg_arn);
}

#[tokio::test]
async fn drifted_attributes_are_planned_and_repaired() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("drift");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let first = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
        .expect("settled");
    let lb_arn = out(first.last().unwrap(), "loadBalancerArn").to_string();
    let tg_arn = out(first.last().unwrap(), "targetGroupArn").to_string();
    let elb = Client::new(&env.config);
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb_arn)
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                .key("idle_timeout.timeout_seconds")
                .value("5")
                .build(),
        )
        .send()
        .await
        .unwrap();
    elb.modify_target_group()
        .target_group_arn(&tg_arn)
        .health_check_path("/")
        .send()
        .await
        .unwrap();
    let plan = lb
        .call(Verb::Plan, &spec, "run-p", Scope::Stack)
        .await
        .unwrap();
    let changed: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Update)
        .map(|c| (c.kind.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(
        changed
            .iter()
            .any(|(k, d)| *k == "target-group" && d.contains("health path / → /api/health")),
        "{changed:?}"
    );
    assert!(
        changed
            .iter()
            .any(|(k, d)| *k == "load-balancer" && d.contains("idle_timeout.timeout_seconds → 60")),
        "{changed:?}"
    );
    lb.settle(Verb::Apply, Verb::Check, &spec, "run-fix", Scope::Stack)
        .await
        .expect("settled");
    env.log.clear();
    let plan = lb
        .call(Verb::Plan, &spec, "run-p2", Scope::Stack)
        .await
        .unwrap();
    assert!(!plan.changed(), "{:?}", plan.changes);
}

#[tokio::test]
async fn destroy_waits_while_the_target_group_is_in_use_then_leaves_nothing() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("gone");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let first = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
        .expect("settled");
    let tg_arn = out(first.last().unwrap(), "targetGroupArn").to_string();
    let elb = Client::new(&env.config);
    // Someone else's load balancer forwards to our target group.
    let net = &lb.inputs["network"];
    let subnets: Vec<String> = net["publicSubnetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let other = elb
        .create_load_balancer()
        .name("someone-else")
        .set_subnets(Some(subnets))
        .send()
        .await
        .unwrap();
    let other_arn = other.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let foreign = elb
        .create_listener()
        .load_balancer_arn(&other_arn)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let mut pending = None;
    for _ in 0..3 {
        let o = lb
            .call(Verb::Destroy, &spec, "run-destroy", Scope::Stack)
            .await
            .expect("in use is not a failure");
        if o.state == State::Pending && o.message.contains("ResourceInUse") {
            pending = Some(o);
            break;
        }
    }
    let pending = pending.expect("destroy reports pending while the target group is in use");
    assert!(
        pending.message.contains("DeleteTargetGroup"),
        "{}",
        pending.message
    );
    elb.delete_listener()
        .listener_arn(foreign.listeners()[0].listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    let done = lb
        .settle(
            Verb::Destroy,
            Verb::Destroy,
            &spec,
            "run-destroy",
            Scope::Stack,
        )
        .await
        .expect("settled");
    assert_eq!(done.last().unwrap().state, State::Gone);

    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let names: Vec<&str> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_name())
        .collect();
    assert_eq!(names, vec!["someone-else"]);
    let tgs = elb.describe_target_groups().send().await.unwrap();
    assert!(tgs.target_groups().is_empty());
    assert!(listeners(&elb, &other_arn).await.is_empty());
}

#[tokio::test]
async fn deletion_protection_refuses_destroy_before_anything_is_deleted() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("keep");
    spec.load_balancer.deletion_protection = true;
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let first = lb
        .settle(Verb::Apply, Verb::Check, &spec, "run-a", Scope::Stack)
        .await
        .expect("settled");
    let lb_arn = out(first.last().unwrap(), "loadBalancerArn").to_string();
    env.log.clear();
    match lb
        .call(Verb::Destroy, &spec, "run-destroy", Scope::Stack)
        .await
    {
        Err(TierError::Refused(m)) => assert!(m.contains("loadBalancer.deletionProtection"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.log.mutating(), vec![]);
    assert_eq!(listeners(&Client::new(&env.config), &lb_arn).await.len(), 1);
}

#[test]
fn readiness_of_states() {
    use aws_sdk_elasticloadbalancingv2::types::LoadBalancerStateEnum as S;
    assert_eq!(
        lbt::readiness("a", Some(&S::Active), None),
        lbt::Readiness::Ready
    );
    assert!(
        matches!(lbt::readiness("a", Some(&S::Provisioning), None), lbt::Readiness::Pending(m) if m.contains("provisioning"))
    );
    assert!(
        matches!(lbt::readiness("a", Some(&S::Failed), Some("no capacity")), lbt::Readiness::Failed(m) if m.contains("no capacity"))
    );
}

/// Applies until ready as the state machine does (the load balancer applies
/// again: its HTTPS listener waits on the certificate its first pass
/// requested, each pass carrying the changes before it): the last outcome,
/// and the changes of every pass (the last outcome's).
async fn apply_until_ready(
    lb: &TierRunner<'_>,
    spec: &StackSpec,
    run: &str,
) -> (Outcome, Vec<mbstack_core::Change>) {
    let mut all = lb.apply(spec, run).await;
    let changes = all
        .last()
        .map(|o| {
            o.changes
                .iter()
                .filter(|c| c.action != Action::None)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let last = all.pop().expect("an outcome");
    assert_eq!(last.state, State::Ready, "{run}: {}", last.message);
    (last, changes)
}

async fn our_certificates(env: &TestEnv, stack: &str) -> Vec<(String, String, String)> {
    mbstack_tests::stack_certificates(&env.config, stack).await
}

/// Someone else's: an A record and a certificate in the same zone.
async fn someone_elses(env: &TestEnv, zone: &str) -> String {
    let record = ("www.example.com", "A", "192.0.2.10");
    mbstack_tests::foreign_record(&env.config, zone, record, None).await;
    mbstack_tests::issued_certificate(&env.config, zone, "www.example.com").await
}

#[tokio::test]
async fn a_domain_gets_a_validated_certificate_https_and_an_alias_and_destroy_takes_only_those() {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    let theirs = someone_elses(&env, &zone).await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("bi");
    spec.load_balancer.domain = Some("metabase.example.com".into());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let plan = lb.run(Verb::Plan, &spec, "plan-1", Scope::Stack).await;
    let planned: Vec<(&str, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.action))
        .collect();
    for kind in [
        "domain-claim",
        "certificate",
        "dns-record",
        "listener",
        "load-balancer",
    ] {
        assert!(
            planned.contains(&(kind, Action::Create)),
            "{kind} in {planned:?}"
        );
    }
    assert!(
        our_certificates(&env, "bi").await.is_empty(),
        "a plan requested a certificate"
    );

    let (last, changes) = apply_until_ready(&lb, &spec, "run-a").await;
    let certs = our_certificates(&env, "bi").await;
    assert_eq!(certs.len(), 1, "{certs:?}");
    let (cert, domain, status) = &certs[0];
    assert_eq!(
        (domain.as_str(), status.as_str()),
        ("metabase.example.com", "ISSUED")
    );
    let lb_arn = out(&last, "loadBalancerArn").to_string();
    let tg_arn = out(&last, "targetGroupArn").to_string();
    let elb = Client::new(&env.config);
    assert_https_layout(&listeners(&elb, &lb_arn).await, &tg_arn, cert);
    assert_eq!(out(&last, "url"), "https://metabase.example.com");
    let records = mbstack_tests::dns_records(&env.config).await;
    let dns = out(&last, "dnsName").to_ascii_lowercase();
    assert!(
        records
            .iter()
            .any(|r| r.contains(" metabase.example.com. A ")
                && r.to_ascii_lowercase().contains(&dns)),
        "no alias to {dns}: {records:?}"
    );
    assert!(
        records.iter().any(|r| r.contains("._") || r.contains(" _"))
            && records.len() == before.len() + 2,
        "the validation CNAME and the alias, nothing else: {records:?} (before: {before:?})"
    );
    let kinds: Vec<(&str, Action)> = changes
        .iter()
        .map(|c| (c.kind.as_str(), c.action))
        .collect();
    for (kind, n) in [("certificate", 1), ("dns-record", 2), ("listener", 2)] {
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == (kind, Action::Create))
                .count(),
            n,
            "{kind}: {kinds:?}"
        );
    }
    // Someone else's certificate of the zone is neither used nor touched.
    assert!(!listeners(&elb, &lb_arn).await.iter().any(|l| l
        .certificates()
        .iter()
        .any(|c| c.certificate_arn() == Some(&theirs))));

    // A repair changes nothing; a plan plans nothing.
    env.log.clear();
    let again = lb.run(Verb::Apply, &spec, "run-b", Scope::Stack).await;
    assert_eq!(again.state, State::Ready);
    assert_eq!(env.log.mutating(), vec![], "{:?}", again.changes);
    let plan = lb.run(Verb::Plan, &spec, "plan-2", Scope::Stack).await;
    assert!(
        plan.changes.iter().all(|c| c.action == Action::None),
        "{:?}",
        plan.changes
    );

    // The domain cannot move in place: refused, nothing touched.
    let mut moved = spec.clone();
    moved.load_balancer.domain = Some("bi.example.com".into());
    env.log.clear();
    let refused = lb
        .call(Verb::Apply, &moved, "run-c", Scope::Stack)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("loadBalancer.domain null"), "{refused}");
    assert_eq!(env.log.mutating(), vec![]);

    lb.destroy(&spec, "destroy-1", Scope::Stack).await;
    assert_eq!(
        mbstack_tests::dns_records(&env.config).await,
        before,
        "DNS is as it was"
    );
    assert!(our_certificates(&env, "bi").await.is_empty());
    mbstack_tests::assert_certificate_stays(&env.config, &theirs).await;
    assert_eq!(
        env.emulator.front.refused_calls(),
        0,
        "mbstack provoked a refusal"
    );
}

#[tokio::test]
async fn a_domain_taken_out_of_the_spec_leaves_http_and_no_record_or_certificate_of_its_own() {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("bi");
    spec.load_balancer.domain = Some("metabase.example.com".into());
    spec.load_balancer.hosted_zone_id = Some(zone.clone());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let (last, _) = apply_until_ready(&lb, &spec, "run-a").await;
    let lb_arn = out(&last, "loadBalancerArn").to_string();
    let tg_arn = out(&last, "targetGroupArn").to_string();
    spec.load_balancer.domain = None;
    spec.load_balancer.hosted_zone_id = None;
    // A plan names each piece the domain leaves behind: the alias and the
    // validation record, the certificate, the claim on the load balancer.
    let plan = lb.run(Verb::Plan, &spec, "plan-1", Scope::Stack).await;
    let deletes = |kind: &str| {
        plan.changes
            .iter()
            .filter(|c| c.kind == kind && c.action == Action::Delete)
            .count()
    };
    assert_eq!(
        (
            deletes("dns-record"),
            deletes("certificate"),
            deletes("domain-claim")
        ),
        (2, 1, 1),
        "{:?}",
        plan.changes
    );
    let (last, changes) = apply_until_ready(&lb, &spec, "run-b").await;
    let elb = Client::new(&env.config);
    assert_http_layout(&listeners(&elb, &lb_arn).await, &tg_arn);
    assert!(
        out(&last, "url").starts_with("http://"),
        "{:?}",
        last.outputs
    );
    assert_eq!(mbstack_tests::dns_records(&env.config).await, before);
    assert!(our_certificates(&env, "bi").await.is_empty());
    let deleted: Vec<&str> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.kind.as_str())
        .collect();
    assert!(
        deleted.contains(&"certificate") && deleted.contains(&"listener"),
        "{deleted:?}"
    );
    let t = tags(&elb, &lb_arn).await;
    assert!(
        !t.iter().any(|(k, _)| k.starts_with("mbstack:d")),
        "the ledger stays: {t:?}"
    );
}

#[tokio::test]
async fn a_domain_with_someone_elses_record_is_refused_before_anything_is_requested() {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    someone_elses(&env, &zone).await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("bi");
    spec.load_balancer.domain = Some("www.example.com".into());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let e = lb
        .call(Verb::Apply, &spec, "run-a", Scope::Stack)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("www.example.com already has an A record") && e.contains("not this stack's"),
        "{e}"
    );
    assert!(our_certificates(&env, "bi").await.is_empty());
    assert_eq!(mbstack_tests::dns_records(&env.config).await, before);
    // And no zone at all: the error says what to make.
    let mut spec = StackSpec::new("bi2");
    spec.load_balancer.domain = Some("metabase.example.org".into());
    let e = lb
        .call(Verb::Apply, &spec, "run-b", Scope::Stack)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no public Route 53 hosted zone") && e.contains("loadBalancer.hostedZoneId"),
        "{e}"
    );
}

/// ACM's validation record is the same for every certificate of a domain in
/// an account: one someone else wrote (for their certificate) is used as it
/// is and left alone by a destroy; one that holds another value is refused by
/// name, with what it holds, and nothing is changed.
#[tokio::test]
async fn a_validation_record_someone_else_wrote_is_used_and_kept_and_one_with_another_value_is_refused(
) {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    let theirs =
        mbstack_tests::issued_certificate(&env.config, &zone, "metabase.example.com").await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("bi");
    spec.load_balancer.domain = Some("metabase.example.com".into());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let (_, changes) = apply_until_ready(&lb, &spec, "run-a").await;
    let records: Vec<&str> = changes
        .iter()
        .filter(|c| c.kind == "dns-record")
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        records,
        vec!["metabase.example.com A"],
        "only the alias is written"
    );
    let t = tags(
        &Client::new(&env.config),
        out(
            &lb.run(Verb::Check, &spec, "check-1", Scope::Stack).await,
            "loadBalancerArn",
        ),
    )
    .await;
    assert!(
        !t.iter().any(|(k, _)| k == "mbstack:dns-validation"),
        "the ledger says mbstack wrote a record it did not: {t:?}"
    );
    lb.destroy(&spec, "destroy-1", Scope::Stack).await;
    assert_eq!(
        mbstack_tests::dns_records(&env.config).await,
        before,
        "their validation record stays"
    );
    mbstack_tests::assert_certificate_stays(&env.config, &theirs).await;

    // Their record now holds another value: ACM cannot validate through it.
    let cname = before
        .iter()
        .find(|r| r.contains(" CNAME "))
        .and_then(|r| r.split(' ').nth(1))
        .expect("their validation CNAME")
        .to_string();
    let record = (cname.as_str(), "CNAME", "elsewhere.example.net");
    mbstack_tests::foreign_record(&env.config, &zone, record, None).await;
    // The first pass requests the certificate; a later one reads its record.
    let mut again = Ok(());
    for _ in 0..5 {
        match lb.call(Verb::Apply, &spec, "run-b", Scope::Stack).await {
            Ok(o) if o.state == State::Pending => continue,
            Ok(o) => panic!("applied through someone else's CNAME: {}", o.message),
            Err(e) => {
                again = Err(e);
                break;
            }
        }
    }
    let e = again
        .expect_err("an apply through someone else's CNAME")
        .to_string();
    assert!(
        e.contains("instead of ACM's") && e.contains("elsewhere.example.net"),
        "{e}"
    );
    let records = mbstack_tests::dns_records(&env.config).await;
    assert!(
        records
            .iter()
            .any(|r| r.contains(&cname) && r.ends_with(" elsewhere.example.net")),
        "their record is as they left it: {records:?}"
    );
}

/// ACM validates every certificate of a name through the same CNAME, and a
/// certificate whose record is deleted fails its next renewal. A record
/// mbstack wrote stays when another certificate uses it: one with an EC key
/// (ListCertificates leaves it out unless asked for every key type), one
/// that names the domain as an alternative name, or the wildcard of the domain.
#[tokio::test]
async fn a_validation_record_another_certificate_renews_through_is_kept() {
    use aws_sdk_acm::types::KeyAlgorithm;
    let env = TestEnv::start().await;
    mbstack_tests::public_zone(&env.config, "example.com").await;
    // (stack, its domain, the other certificate's key, its name, whether it
    // names the domain as an alternative name): ACM validates `*.<domain>`
    // through `<domain>`'s record.
    for (stack, domain, key, other, san) in [
        (
            "ec",
            "metabase.example.com",
            KeyAlgorithm::EcPrime256v1,
            None,
            false,
        ),
        (
            "san",
            "bi.example.com",
            KeyAlgorithm::Rsa2048,
            Some("www.example.com"),
            true,
        ),
        (
            "wild",
            "data.example.com",
            KeyAlgorithm::Rsa2048,
            Some("*.data.example.com"),
            false,
        ),
    ] {
        let mut spec = StackSpec::new(stack);
        spec.load_balancer.domain = Some(domain.into());
        let lb = TierRunner {
            env: &env,
            tier: Tier::LoadBalancer,
            inputs: network_inputs(&env, &spec).await,
        };
        apply_until_ready(&lb, &spec, "run-a").await;
        let cname = |records: &[String]| {
            records
                .iter()
                .find(|r| r.contains(&format!(".{domain}. CNAME ")))
                .cloned()
        };
        let ours = cname(&mbstack_tests::dns_records(&env.config).await)
            .expect("the validation record the stack wrote");
        // Someone else's certificate that validates through the same record.
        let names = match (other, san) {
            (Some(other), true) => vec![other, domain],
            (other, _) => vec![other.unwrap_or(domain)],
        };
        mbstack_tests::request_certificate_for(&env.config, &names, key).await;
        lb.destroy(&spec, "destroy-1", Scope::Stack).await;
        assert_eq!(
            cname(&mbstack_tests::dns_records(&env.config).await),
            Some(ours),
            "{stack}: the record the other certificate renews through is kept"
        );
        assert!(our_certificates(&env, stack).await.is_empty());
    }
}

/// The domain's claim on the load balancer's tags holds the domain, its zone
/// and the run: ELB takes a tag value of 256 characters at most. A domain too
/// long for it (one only a certificate of the user's own can cover) is
/// refused by name before anything is made, not after the load balancer.
#[tokio::test]
async fn a_domain_too_long_for_the_claim_is_refused_before_anything_is_made() {
    let env = TestEnv::start().await;
    let cert = certificate(&env).await;
    let label = "a".repeat(60);
    // 231 characters: with the hosted zone and a run, over ELB's 256.
    let domain = format!("{label}.{label}.{label}.{}.example.com", "b".repeat(36));
    let mut spec = StackSpec::new("long");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    spec.load_balancer.domain = Some(domain.clone());
    spec.load_balancer.certificate_arn = Some(cert);
    env.log.clear();
    let e = lb
        .call(Verb::Apply, &spec, "run-a", Scope::Stack)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("loadBalancer.domain") && e.contains(&domain.len().to_string()),
        "{e}"
    );
    assert_eq!(env.log.mutating(), vec![], "nothing is made");
}

/// A certificate of the user's own (`certificateArn`) that also names the
/// domain is not what a rollback keeps a domain for (mbstack never deletes it,
/// so ELB holds nothing up): the rollback of the run that added the domain
/// takes its alias and claim away, as for any run.
#[tokio::test]
async fn a_rollback_of_a_domain_served_by_the_users_own_certificate_takes_the_domain_away() {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    let names = ["www.example.com", "bi.example.com"];
    let rsa = aws_sdk_acm::types::KeyAlgorithm::Rsa2048;
    let cert = mbstack_tests::request_certificate_for(&env.config, &names, rsa).await;
    mbstack_tests::validate_certificate(&env.config, &zone, &cert).await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("own");
    spec.load_balancer.certificate_arn = Some(cert.clone());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let (last, _) = apply_until_ready(&lb, &spec, "run-a").await;
    let lb_arn = out(&last, "loadBalancerArn").to_string();
    spec.load_balancer.domain = Some("bi.example.com".into());
    apply_until_ready(&lb, &spec, "run-b").await;
    let rolled = lb.destroy(&spec, "run-b", Scope::Run).await;
    let kept: Vec<_> = rolled
        .iter()
        .flat_map(|o| &o.changes)
        .filter(|c| c.detail.starts_with("kept"))
        .collect();
    assert!(kept.is_empty(), "{kept:?}");
    assert_eq!(
        mbstack_tests::dns_records(&env.config).await,
        before,
        "the alias is gone"
    );
    let t = tags(&Client::new(&env.config), &lb_arn).await;
    assert!(
        !t.iter().any(|(k, _)| k.starts_with("mbstack:d")),
        "the claim stays: {t:?}"
    );
    mbstack_tests::assert_certificate_stays(&env.config, &cert).await;
}

/// A rollback of the run that gave a kept load balancer its domain, once the
/// HTTPS listener serves the new certificate: the site stays as it is (the
/// domain kept, and the rollback says so) instead of waiting forever for ELB
/// to let go of a certificate the kept listener serves.
#[tokio::test]
async fn a_rollback_of_the_run_that_added_a_domain_to_a_kept_load_balancer_ends_and_says_it_kept_it(
) {
    let env = TestEnv::start().await;
    mbstack_tests::public_zone(&env.config, "example.com").await;
    let mut spec = StackSpec::new("bi");
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    apply_until_ready(&lb, &spec, "run-a").await;
    spec.load_balancer.domain = Some("metabase.example.com".into());
    apply_until_ready(&lb, &spec, "run-b").await;
    let rolled = lb.destroy(&spec, "run-b", Scope::Run).await;
    let last = rolled.last().expect("an outcome");
    assert_eq!(last.state, State::Gone, "{:?}", last.message);
    let kept: Vec<&str> = rolled
        .iter()
        .flat_map(|o| &o.changes)
        .filter(|c| c.kind == "certificate" && c.detail.starts_with("kept"))
        .map(|c| c.detail.as_str())
        .collect();
    assert_eq!(kept.len(), 1, "{rolled:?}");
    assert!(kept[0].contains("loadBalancer.domain null"), "{kept:?}");
    assert_eq!(
        our_certificates(&env, "bi").await.len(),
        1,
        "the served certificate stays"
    );
    // Taking the domain away afterwards works as ever.
    spec.load_balancer.domain = None;
    apply_until_ready(&lb, &spec, "run-c").await;
    assert!(our_certificates(&env, "bi").await.is_empty());
}

/// A domain with the user's own certificate: that certificate is served, none
/// is requested, the alias is written; a destroy takes the alias away and
/// leaves the certificate.
#[tokio::test]
async fn a_domain_with_its_own_certificate_gets_an_alias_and_no_certificate_of_ours() {
    let env = TestEnv::start().await;
    let zone = mbstack_tests::public_zone(&env.config, "example.com").await;
    let cert = mbstack_tests::issued_certificate(&env.config, &zone, "metabase.example.com").await;
    let before = mbstack_tests::dns_records(&env.config).await;
    let mut spec = StackSpec::new("own");
    spec.load_balancer.domain = Some("metabase.example.com".into());
    spec.load_balancer.certificate_arn = Some(cert.clone());
    let lb = TierRunner {
        env: &env,
        tier: Tier::LoadBalancer,
        inputs: network_inputs(&env, &spec).await,
    };
    let (last, _) = apply_until_ready(&lb, &spec, "run-a").await;
    let elb = Client::new(&env.config);
    let lb_arn = out(&last, "loadBalancerArn").to_string();
    assert_https_layout(
        &listeners(&elb, &lb_arn).await,
        out(&last, "targetGroupArn"),
        &cert,
    );
    assert_eq!(out(&last, "url"), "https://metabase.example.com");
    assert!(
        our_certificates(&env, "own").await.is_empty(),
        "a certificate was requested"
    );
    let records = mbstack_tests::dns_records(&env.config).await;
    assert_eq!(
        records.len(),
        before.len() + 1,
        "the alias alone: {records:?}"
    );
    lb.destroy(&spec, "destroy-1", Scope::Stack).await;
    assert_eq!(mbstack_tests::dns_records(&env.config).await, before);
    mbstack_tests::assert_certificate_stays(&env.config, &cert).await;
}
