//! The network tier against the emulator: the exact graph, idempotence, plan,
//! destroy by stack and by run, NAT modes.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, RouteTable, SecurityGroupRule};
use mbstack_core::naming::{CREATED_BY_TAG, NAME_TAG, STACK_TAG, TIER_TAG};
use mbstack_core::spec::NatMode;
use mbstack_core::{Action, Outcome, Scope, StackSpec, State, Tier, Verb};
use mbstack_tests::{ec2_resources, stack_filter, OnRetryable, TestEnv, TierRunner};

/// The one tier runner, for the network (no upstream inputs).
fn net(env: &TestEnv) -> TierRunner<'_> {
    TierRunner {
        env,
        tier: Tier::Network,
        inputs: Default::default(),
    }
}

async fn run(env: &TestEnv, verb: Verb, spec: &StackSpec, run_id: &str, scope: Scope) -> Outcome {
    net(env).run(verb, spec, run_id, scope).await
}

/// apply, then check until ready, as the state machine does.
async fn apply(env: &TestEnv, spec: &StackSpec, run_id: &str) -> Outcome {
    let all = net(env).apply(spec, run_id).await;
    all.into_iter()
        .last()
        .unwrap_or_else(|| panic!("no outcome"))
}

async fn destroy(env: &TestEnv, spec: &StackSpec, run_id: &str, scope: Scope) -> Vec<Outcome> {
    net(env).destroy(spec, run_id, scope).await
}

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or("").to_string(),
                t.value().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn assert_ours(tags: &[aws_sdk_ec2::types::Tag], stack: &str, run_id: &str, name: &str) {
    let t = tags_of(tags);
    assert_eq!(t.get(STACK_TAG).map(String::as_str), Some(stack), "{t:?}");
    assert_eq!(
        t.get(TIER_TAG).map(String::as_str),
        Some("network"),
        "{t:?}"
    );
    assert_eq!(
        t.get(CREATED_BY_TAG).map(String::as_str),
        Some(run_id),
        "{t:?}"
    );
    assert_eq!(t.get(NAME_TAG).map(String::as_str), Some(name), "{t:?}");
}

fn out_str<'a>(o: &'a Outcome, key: &str) -> &'a str {
    o.outputs
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no output {key}: {:?}", o.outputs))
}

fn out_list(o: &Outcome, key: &str) -> Vec<String> {
    o.outputs
        .get(key)
        .and_then(|v| v.as_array())
        .unwrap_or_else(|| panic!("no output {key}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{key} has a null"))
                .to_string()
        })
        .collect()
}

fn default_route(rt: &RouteTable) -> Option<(Option<String>, Option<String>)> {
    rt.routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .map(|r| {
            (
                r.gateway_id().map(str::to_string),
                r.nat_gateway_id().map(str::to_string),
            )
        })
}

fn associated_subnets(rt: &RouteTable) -> Vec<String> {
    let mut v: Vec<String> = rt
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id().map(str::to_string))
        .collect();
    v.sort();
    v
}

async fn route_tables(env: &TestEnv, stack: &str) -> Vec<RouteTable> {
    env.ec2()
        .describe_route_tables()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap()
        .route_tables()
        .to_vec()
}

async fn ingress(env: &TestEnv, group: &str) -> Vec<(String, i32, i32, String)> {
    let out = env
        .ec2()
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(group).build())
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, i32, i32, String)> = out
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() != Some(true))
        .map(|r: &SecurityGroupRule| {
            let src = r
                .cidr_ipv4()
                .map(str::to_string)
                .or_else(|| {
                    r.referenced_group_info()
                        .and_then(|g| g.group_id())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            (
                r.ip_protocol().unwrap_or("").to_string(),
                r.from_port().unwrap_or(-1),
                r.to_port().unwrap_or(-1),
                src,
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn apply_creates_exactly_the_graph_and_a_second_apply_changes_nothing() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("graph");
    let o = apply(&env, &spec, "run-a").await;
    let ec2 = env.ec2();

    // VPC with DNS support and hostnames.
    let vpc_id = out_str(&o, "vpcId").to_string();
    let vpcs = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.unwrap();
    let vpc = &vpcs.vpcs()[0];
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    assert_ours(vpc.tags(), "graph", "run-a", "graph-vpc");
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let a = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .unwrap();
        let on = a
            .enable_dns_support()
            .or(a.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }

    // Subnets: public and private per AZ at the fixed layout, none mapping public IPs.
    let azs = out_list(&o, "availabilityZones");
    assert_eq!(azs, vec!["us-east-1a", "us-east-1b"]);
    let public = out_list(&o, "publicSubnetIds");
    let private = out_list(&o, "privateSubnetIds");
    let subnets = ec2
        .describe_subnets()
        .filters(stack_filter("graph"))
        .send()
        .await
        .unwrap();
    let mut placed: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            assert_eq!(s.vpc_id(), Some(vpc_id.as_str()));
            assert_ne!(
                s.map_public_ip_on_launch(),
                Some(true),
                "{:?}",
                s.subnet_id()
            );
            let name = tags_of(s.tags())[NAME_TAG].clone();
            assert_ours(s.tags(), "graph", "run-a", &name);
            (
                name,
                s.availability_zone().unwrap().to_string(),
                s.cidr_block().unwrap().to_string(),
            )
        })
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        vec![
            (
                "graph-private-us-east-1a".into(),
                "us-east-1a".into(),
                "10.0.128.0/20".into()
            ),
            (
                "graph-private-us-east-1b".into(),
                "us-east-1b".into(),
                "10.0.144.0/20".into()
            ),
            (
                "graph-public-us-east-1a".into(),
                "us-east-1a".into(),
                "10.0.0.0/20".into()
            ),
            (
                "graph-public-us-east-1b".into(),
                "us-east-1b".into(),
                "10.0.16.0/20".into()
            ),
        ]
    );

    // IGW attached; one NAT in the first public subnet with a tagged EIP.
    let igw_id = out_str(&o, "internetGatewayId").to_string();
    let igws = ec2
        .describe_internet_gateways()
        .internet_gateway_ids(&igw_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        igws.internet_gateways()[0].attachments()[0].vpc_id(),
        Some(vpc_id.as_str())
    );
    assert_ours(
        igws.internet_gateways()[0].tags(),
        "graph",
        "run-a",
        "graph-igw",
    );
    let nats = out_list(&o, "natGatewayIds");
    assert_eq!(nats.len(), 1);
    let n = ec2
        .describe_nat_gateways()
        .nat_gateway_ids(&nats[0])
        .send()
        .await
        .unwrap();
    let n = &n.nat_gateways()[0];
    assert_eq!(n.subnet_id(), Some(public[0].as_str()));
    assert_eq!(n.state().map(|s| s.as_str()), Some("available"));
    assert_ours(n.tags(), "graph", "run-a", "graph-nat-us-east-1a");
    let eips = ec2
        .describe_addresses()
        .filters(stack_filter("graph"))
        .send()
        .await
        .unwrap();
    assert_eq!(eips.addresses().len(), 1);
    assert_ours(
        eips.addresses()[0].tags(),
        "graph",
        "run-a",
        "graph-nat-eip-us-east-1a",
    );
    assert_eq!(
        n.nat_gateway_addresses()[0].allocation_id(),
        eips.addresses()[0].allocation_id()
    );

    // Routes: public → IGW for both public subnets; private → NAT for both private.
    let rts = route_tables(&env, "graph").await;
    assert_eq!(rts.len(), 2);
    let by_name: BTreeMap<String, &RouteTable> = rts
        .iter()
        .map(|r| (tags_of(r.tags())[NAME_TAG].clone(), r))
        .collect();
    let pub_rt = by_name["graph-public"];
    assert_eq!(default_route(pub_rt), Some((Some(igw_id.clone()), None)));
    let mut want_pub = public.clone();
    want_pub.sort();
    assert_eq!(associated_subnets(pub_rt), want_pub);
    let priv_rt = by_name["graph-private"];
    assert_eq!(
        default_route(priv_rt).and_then(|r| r.1),
        Some(nats[0].clone())
    );
    let mut want_priv = private.clone();
    want_priv.sort();
    assert_eq!(associated_subnets(priv_rt), want_priv);

    // Security groups: exactly the designed ingress.
    let lb = out_str(&o, "lbSecurityGroupId").to_string();
    let app = out_str(&o, "appSecurityGroupId").to_string();
    let db = out_str(&o, "dbSecurityGroupId").to_string();
    assert_eq!(
        ingress(&env, &lb).await,
        vec![("tcp".into(), 80, 80, "0.0.0.0/0".into())]
    );
    assert_eq!(
        ingress(&env, &app).await,
        vec![("tcp".into(), 3000, 3000, lb.clone())]
    );
    assert_eq!(
        ingress(&env, &db).await,
        vec![("tcp".into(), 5432, 5432, app.clone())]
    );
    let sgs = ec2
        .describe_security_groups()
        .group_ids(&lb)
        .group_ids(&app)
        .group_ids(&db)
        .send()
        .await
        .unwrap();
    for g in sgs.security_groups() {
        assert_eq!(g.vpc_id(), Some(vpc_id.as_str()));
        let name = tags_of(g.tags())[NAME_TAG].clone();
        assert_eq!(g.group_name(), Some(name.as_str()));
        assert_ours(g.tags(), "graph", "run-a", &name);
    }

    // The second apply: zero mutating calls, every change `none`, same outputs.
    env.log.clear();
    let again = run(&env, Verb::Apply, &spec, "run-b", Scope::Stack).await;
    assert_eq!(env.log.mutating(), vec![], "second apply mutated");
    assert!(!env.log.calls().is_empty());
    assert!(
        again.changes.iter().all(|c| c.action == Action::None),
        "{:?}",
        again.changes
    );
    assert_eq!(again.state, State::Ready);
    assert_eq!(again.outputs, o.outputs);
}

fn count(o: &Outcome, action: Action) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in o.changes.iter().filter(|c| c.action == action) {
        *m.entry(c.kind.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn plan_lists_every_create_then_nothing_and_never_mutates() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("planned");
    let p = run(&env, Verb::Plan, &spec, "run-p", Scope::Stack).await;
    assert_eq!(env.log.mutating(), vec![]);
    let creates = count(&p, Action::Create);
    let want: BTreeMap<String, usize> = [
        ("vpc", 1),
        ("internet-gateway", 1),
        ("subnet", 4),
        ("elastic-ip", 1),
        ("nat-gateway", 1),
        ("route-table", 2),
        ("security-group", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(creates, want);
    assert!(
        p.changes.iter().all(|c| c.action == Action::Create),
        "{:?}",
        p.changes
    );
    assert!(
        ec2_resources(&env.ec2(), "planned").await.is_empty(),
        "plan created something"
    );

    apply(&env, &spec, "run-a").await;
    env.log.clear();
    let p = run(&env, Verb::Plan, &spec, "run-p2", Scope::Stack).await;
    assert_eq!(env.log.mutating(), vec![]);
    assert!(!p.changed(), "{:?}", p.changes);
    assert_eq!(p.changes.len(), 13);

    // Out-of-band drift shows in the plan, and only it.
    let ec2 = env.ec2();
    let lb = out_str(&p, "lbSecurityGroupId").to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&lb)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let p = run(&env, Verb::Plan, &spec, "run-p3", Scope::Stack).await;
    let changed: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.action != Action::None)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        (
            changed[0].kind.as_str(),
            changed[0].id.as_str(),
            changed[0].action
        ),
        ("security-group", lb.as_str(), Action::Update)
    );
    assert!(
        changed[0].detail.contains("-tcp/22 from 0.0.0.0/0"),
        "{}",
        changed[0].detail
    );

    // ... and apply repairs it.
    let fixed = run(&env, Verb::Apply, &spec, "run-fix", Scope::Stack).await;
    assert_eq!(
        count(&fixed, Action::Update).get("security-group"),
        Some(&1)
    );
    assert_eq!(
        ingress(&env, &lb).await,
        vec![("tcp".into(), 80, 80, "0.0.0.0/0".into())]
    );
}

#[tokio::test]
async fn destroy_stack_removes_everything_of_that_stack_only() {
    let env = TestEnv::start().await;
    let keep = StackSpec::new("keep");
    let mut doomed = StackSpec::new("doomed");
    doomed.network.cidr = "10.1.0.0/16".into();
    apply(&env, &keep, "run-k").await;
    apply(&env, &doomed, "run-d").await;
    let before_keep = ec2_resources(&env.ec2(), "keep").await;
    assert_eq!(before_keep.len(), 13);

    let outcomes = destroy(&env, &doomed, "run-destroy", Scope::Stack).await;
    let deleted: usize = outcomes
        .iter()
        .map(|o| count(o, Action::Delete).values().sum::<usize>())
        .sum();
    assert_eq!(deleted, 13);
    assert_eq!(ec2_resources(&env.ec2(), "doomed").await, vec![]);
    assert_eq!(ec2_resources(&env.ec2(), "keep").await, before_keep);

    // Destroying again is a no-op that says gone.
    let again = run(&env, Verb::Destroy, &doomed, "run-destroy-2", Scope::Stack).await;
    assert_eq!(again.state, State::Gone);
    assert!(again.changes.is_empty());
}

#[tokio::test]
async fn destroy_scope_run_removes_only_what_that_run_created() {
    let env = TestEnv::start().await;
    let spec = StackSpec::new("scoped");
    let a = apply(&env, &spec, "run-a").await;
    let ec2 = env.ec2();
    let victim = out_list(&a, "privateSubnetIds")[1].clone();
    ec2.delete_subnet().subnet_id(&victim).send().await.unwrap();

    let b = run(&env, Verb::Apply, &spec, "run-b", Scope::Stack).await;
    let created: Vec<_> = b
        .changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .collect();
    assert_eq!(created.len(), 1, "{:?}", b.changes);
    assert_eq!(created[0].kind, "subnet");
    let recreated = created[0].id.clone();
    assert_ne!(recreated, victim);
    let updates = count(&b, Action::Update);
    assert_eq!(
        updates.get("route-table"),
        Some(&1),
        "the new subnet is associated: {:?}",
        b.changes
    );

    let before = ec2_resources(&ec2, "scoped").await;
    destroy(&env, &spec, "run-b", Scope::Run).await;
    let after = ec2_resources(&ec2, "scoped").await;
    let removed: Vec<_> = before.iter().filter(|r| !after.contains(r)).collect();
    assert_eq!(removed, vec![&("subnet".to_string(), recreated)]);
    assert_eq!(after.len(), 12);

    // A rollback of a run that created nothing deletes nothing.
    destroy(&env, &spec, "run-never", Scope::Run).await;
    assert_eq!(ec2_resources(&ec2, "scoped").await, after);
}

#[tokio::test]
async fn per_az_nat_gives_each_private_subnet_its_own_azs_nat() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("perz");
    spec.network.az_count = 3;
    spec.network.nat = NatMode::PerAz;
    let o = apply(&env, &spec, "run-a").await;
    let ec2 = env.ec2();
    let nats = ec2
        .describe_nat_gateways()
        .filter(stack_filter("perz"))
        .send()
        .await
        .unwrap();
    assert_eq!(nats.nat_gateways().len(), 3);
    assert_eq!(
        ec2.describe_addresses()
            .filters(stack_filter("perz"))
            .send()
            .await
            .unwrap()
            .addresses()
            .len(),
        3
    );
    let subnets = ec2
        .describe_subnets()
        .filters(stack_filter("perz"))
        .send()
        .await
        .unwrap();
    let az_of: BTreeMap<String, String> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap().to_string(),
                s.availability_zone().unwrap().to_string(),
            )
        })
        .collect();
    let nat_az: BTreeMap<String, String> = nats
        .nat_gateways()
        .iter()
        .map(|n| {
            (
                n.nat_gateway_id().unwrap().to_string(),
                az_of[n.subnet_id().unwrap()].clone(),
            )
        })
        .collect();
    let mut azs_with_nat: Vec<&String> = nat_az.values().collect();
    azs_with_nat.sort();
    assert_eq!(azs_with_nat, vec!["us-east-1a", "us-east-1b", "us-east-1c"]);

    let private_rts: Vec<RouteTable> = route_tables(&env, "perz")
        .await
        .into_iter()
        .filter(|r| tags_of(r.tags())[NAME_TAG].starts_with("perz-private-"))
        .collect();
    assert_eq!(private_rts.len(), 3);
    let private = out_list(&o, "privateSubnetIds");
    for rt in &private_rts {
        let subnets = associated_subnets(rt);
        assert_eq!(subnets.len(), 1);
        assert!(private.contains(&subnets[0]));
        let nat = default_route(rt).and_then(|r| r.1).expect("a NAT route");
        assert_eq!(
            nat_az[&nat], az_of[&subnets[0]],
            "private subnet routed through another AZ's NAT"
        );
    }
}

/// `nat: "none"` would build tasks that can never start (no route to Docker
/// Hub, Secrets Manager or CloudWatch Logs): refused, nothing created.
#[tokio::test]
async fn nat_none_is_refused_before_anything_is_created() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("dark");
    spec.network.nat = NatMode::None;
    match try_run(&env, Verb::Apply, &spec, "run-a").await {
        Err(mbstack_core::TierError::InvalidSpec(e)) => {
            assert_eq!(e.paths(), vec!["spec.network.nat"], "{e}");
            assert!(
                e.to_string().contains("Docker Hub has no VPC endpoint"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(ec2_resources(&env.ec2(), "dark").await.is_empty());
}

#[tokio::test]
async fn changing_nat_mode_converges_and_prunes() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("modes");
    apply(&env, &spec, "run-1").await;

    spec.network.nat = NatMode::PerAz;
    let o = apply(&env, &spec, "run-2").await;
    assert_eq!(out_list(&o, "natGatewayIds").len(), 2);
    let names: Vec<String> = route_tables(&env, "modes")
        .await
        .iter()
        .map(|r| tags_of(r.tags())[NAME_TAG].clone())
        .collect();
    assert!(
        !names.contains(&"modes-private".to_string()),
        "the single private table is pruned: {names:?}"
    );
    assert_eq!(names.len(), 3);

    spec.network.nat = NatMode::Single;
    let o = apply(&env, &spec, "run-3").await;
    assert_eq!(
        count(&o, Action::Delete).get("nat-gateway"),
        Some(&1),
        "{:?}",
        o.changes
    );
    let live: Vec<_> = ec2_resources(&env.ec2(), "modes")
        .await
        .into_iter()
        .filter(|(k, _)| k == "nat")
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let rts = route_tables(&env, "modes").await;
    let private = rts
        .iter()
        .find(|r| tags_of(r.tags())[NAME_TAG] == "modes-private")
        .expect("private table");
    assert!(default_route(private).is_some());
    assert_eq!(associated_subnets(private).len(), 2);

    // Whatever an apply left (EIPs released next time), destroy removes it all.
    destroy(&env, &spec, "run-x", Scope::Stack).await;
    assert_eq!(ec2_resources(&env.ec2(), "modes").await, vec![]);
}

#[tokio::test]
async fn changing_allowed_cidrs_and_certificate_rewrites_lb_ingress_exactly() {
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("cidrs");
    let o = apply(&env, &spec, "run-1").await;
    let lb = out_str(&o, "lbSecurityGroupId").to_string();
    spec.load_balancer.allowed_cidrs = vec!["203.0.113.0/24".into(), "198.51.100.7/32".into()];
    spec.load_balancer.certificate_arn =
        Some("arn:aws:acm:us-east-1:123456789012:certificate/abc".into());
    let o = run(&env, Verb::Apply, &spec, "run-2", Scope::Stack).await;
    let sg_changes: Vec<_> = o
        .changes
        .iter()
        .filter(|c| c.kind == "security-group" && c.action == Action::Update)
        .collect();
    assert_eq!(sg_changes.len(), 1);
    assert_eq!(sg_changes[0].id, lb);
    let want: Vec<(String, i32, i32, String)> = vec![
        ("tcp".into(), 80, 80, "198.51.100.7/32".into()),
        ("tcp".into(), 80, 80, "203.0.113.0/24".into()),
        ("tcp".into(), 443, 443, "198.51.100.7/32".into()),
        ("tcp".into(), 443, 443, "203.0.113.0/24".into()),
    ];
    assert_eq!(ingress(&env, &lb).await, want);
}

/// One call of the tier, its error returned (the state machine retries a
/// retryable one).
async fn try_run(
    env: &TestEnv,
    verb: Verb,
    spec: &StackSpec,
    run_id: &str,
) -> Result<Outcome, mbstack_core::TierError> {
    net(env).call(verb, spec, run_id, Scope::Stack).await
}

/// `verb` (then check, for apply) until settled, at the realism layer's pace.
async fn settled(env: &TestEnv, verb: Verb, spec: &StackSpec, run_id: &str) -> Outcome {
    let all = net(env)
        .settled(
            verb,
            spec,
            run_id,
            std::time::Duration::from_millis(100),
            OnRetryable::CallAgain,
        )
        .await;
    all.into_iter()
        .last()
        .unwrap_or_else(|| panic!("no outcome"))
}

/// AWS frees a NAT gateway's Elastic IP moments after the gateway is `deleted`
/// (until then ReleaseAddress answers InvalidIPAddress.InUse): destroy waits.
#[tokio::test]
async fn a_deleted_nat_gateways_address_is_released_once_aws_frees_it() {
    let env = TestEnv::start().await;
    env.emulator.front.set_realism(true, 60);
    let spec = StackSpec::new("freed");
    settled(&env, Verb::Apply, &spec, "run-a").await;
    settled(&env, Verb::Destroy, &spec, "run-x").await;
    assert!(
        env.emulator.front.not_yet_answers() > 0,
        "the address was never refused after its NAT was deleted"
    );
    assert_eq!(env.emulator.front.refused_calls(), 0);
    assert!(ec2_resources(&env.ec2(), "freed").await.is_empty());
}

/// Resume while the paused stack's NAT gateway is still `deleting`: that NAT
/// still holds the Elastic IP (CreateNatGateway would answer
/// Resource.AlreadyAssociated). The tier waits for it and reuses the address;
/// it never allocates a second one.
#[tokio::test]
async fn resume_while_the_old_nat_is_deleting_waits_for_its_address() {
    let env = TestEnv::start().await;
    env.emulator.front.set_realism(true, 60);
    let mut spec = StackSpec::new("waking");
    spec.network.pause_nat = true;
    settled(&env, Verb::Apply, &spec, "run-a").await;
    let ec2 = env.ec2();
    let addresses = || async {
        ec2.describe_addresses()
            .filters(stack_filter("waking"))
            .send()
            .await
            .unwrap()
            .addresses()
            .iter()
            .filter_map(|a| a.allocation_id().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let before = addresses().await;
    assert_eq!(before.len(), 1);
    spec.paused = true;
    settled(&env, Verb::Apply, &spec, "run-pause").await;
    spec.paused = false;
    let first = try_run(&env, Verb::Apply, &spec, "run-resume").await;
    match &first {
        Err(e) => assert!(
            e.is_retryable() && e.to_string().contains("deleting"),
            "{e}"
        ),
        Ok(o) => panic!("resumed while the NAT was deleting: {:?}", o.changes),
    }
    settled(&env, Verb::Apply, &spec, "run-resume").await;
    assert_eq!(
        addresses().await,
        before,
        "a second Elastic IP was allocated"
    );
    assert_eq!(env.emulator.front.refused_calls(), 0);
}

/// A region allows 5 Elastic IPs by default (AllocateAddress then answers
/// AddressLimitExceeded): a spec whose NAT gateways need more than are left is
/// refused before anything is created, naming the field and the ways out.
#[tokio::test]
async fn nat_gateways_beyond_the_elastic_ip_quota_are_refused_before_anything_is_created() {
    let env = TestEnv::start().await;
    env.emulator.front.set_realism(true, 60);
    let ec2 = env.ec2();
    // Someone else's addresses in the region.
    for _ in 0..3 {
        ec2.allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await
            .unwrap();
    }
    let mut spec = StackSpec::new("quota");
    spec.network.nat = NatMode::PerAz;
    spec.network.az_count = 3;
    for verb in [Verb::Plan, Verb::Apply] {
        match try_run(&env, verb, &spec, "run-a").await {
            Err(mbstack_core::TierError::Refused(msg)) => {
                assert!(
                    msg.contains("network.nat")
                        && msg.contains("allows 5")
                        && msg.contains("3 are allocated"),
                    "{msg}"
                )
            }
            other => panic!("{verb:?}: {other:?}"),
        }
    }
    assert!(
        ec2_resources(&ec2, "quota").await.is_empty(),
        "created before refusing"
    );
    // Two AZs fit (3 + 2 = 5); the sixth address is AWS's refusal.
    spec.network.az_count = 2;
    settled(&env, Verb::Apply, &spec, "run-b").await;
    let e = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&e),
        Some("AddressLimitExceeded")
    );
}

/// "VPCs per Region" is 5 by default, the default VPC included: AWS refuses
/// the next CreateVpc, the first create of a run, so the stack beyond it is
/// refused with the quota's name and nothing exists (moto has no quota).
#[tokio::test]
async fn a_stack_beyond_the_regions_vpc_quota_is_refused_with_nothing_created() {
    let env = TestEnv::start().await;
    env.emulator.front.set_realism(true, 60);
    let ec2 = env.ec2();
    // The default VPC and three of someone else's: one more fits.
    for i in 0..3 {
        ec2.create_vpc()
            .cidr_block(format!("10.{}.0.0/16", 100 + i))
            .send()
            .await
            .unwrap();
    }
    let first = StackSpec::new("fifth");
    settled(&env, Verb::Apply, &first, "run-a").await;
    let spec = StackSpec::new("sixth");
    match try_run(&env, Verb::Apply, &spec, "run-b").await {
        Err(mbstack_core::TierError::Refused(msg)) => assert!(
            msg.contains("VPCs per Region")
                && msg.contains("L-F678F1CE")
                && msg.contains("nothing was created"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        ec2_resources(&ec2, "sixth").await.is_empty(),
        "created before refusing"
    );
    // Raised (Service Quotas), the same stack is created.
    env.emulator.front.set_vpc_quota(6);
    settled(&env, Verb::Apply, &spec, "run-c").await;
    assert!(!ec2_resources(&ec2, "sixth").await.is_empty());
}

/// Right after a create, AWS may not know the new ID yet ("eventual
/// consistency"; terraform-provider-aws#35568: a launch onto a network
/// interface just created met `InvalidNetworkInterfaceID.NotFound`). Each new ID
/// of a NAT instance stack, not yet visible to the call after its create, is
/// "not yet" (retryable), and the apply run again finishes.
#[tokio::test]
async fn each_new_id_of_a_nat_instance_not_yet_visible_is_waited_for() {
    use mbstack_emulator::FaultClass;
    let env = TestEnv::start().await;
    let mut spec = StackSpec::new("unseen");
    spec.network.nat = mbstack_core::spec::NatMode::Instance;
    let mut met = Vec::new();
    for attempt in 0..40 {
        // Armed again: the first write after it that names an ID created
        // since is answered NotFound.
        env.emulator
            .front
            .set_fault(Some((1, FaultClass::NotYetVisible)));
        match net(&env)
            .call(Verb::Apply, &spec, "run-a", Scope::Stack)
            .await
        {
            Err(e) => {
                assert!(e.is_retryable(), "attempt {attempt}: {e}");
                met.push(e.to_string());
            }
            Ok(_) if !env.emulator.front.not_yet_visible_fired() => break,
            Ok(_) => {}
        }
    }
    env.emulator.front.set_fault(None);
    assert!(
        met.iter()
            .any(|m| m.contains("InvalidNetworkInterfaceID.NotFound")),
        "no call met the new interface unseen: {met:?}"
    );
    let done = apply(&env, &spec, "run-a").await;
    assert_eq!(done.state, mbstack_core::State::Ready, "{:?}", done.message);
}
