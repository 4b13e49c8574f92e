//! Test support: a fresh emulator per test, the configuration tiers get (with a
//! call log), and a raw client for assertions and out-of-band changes.

use aws_sdk_ec2::types::Filter;
use mbstack_app::names as app_names;
use mbstack_core::naming;
use mbstack_core::naming::STACK_TAG;
use mbstack_core::{Aws, CallLog, Event, Outcome, Scope, StackSpec, State, Tier, TierError, Verb};
use mbstack_emulator::Emulator;
use serde_json::{Map, Value};

pub mod checks;

pub struct TestEnv {
    pub emulator: Emulator,
    pub config: aws_types::SdkConfig,
    /// Every call the tiers made through [`TestEnv::aws`].
    pub log: CallLog,
}

impl TestEnv {
    /// A fresh emulator: nothing shared with any other test.
    pub async fn start() -> Self {
        let emulator = match Emulator::start() {
            Ok(m) => m,
            Err(e) => panic!("the emulator did not start: {e}"),
        };
        let config = emulator.sdk_config().await;
        Self {
            emulator,
            config,
            log: CallLog::new(),
        }
    }

    /// What a tier handler gets: the emulator's configuration with the call log.
    pub fn aws(&self) -> Aws {
        Aws::new(self.config.clone())
            .with_interceptor(self.log.clone())
            .with_role_propagation(mbstack_local::iam_propagation())
    }

    /// A client outside the log: for assertions and out-of-band changes.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config)
    }
}

/// Runs a tier verb through the same strict event path as Lambda, then checks
/// until the outcome is not pending (as the state machine does, without waits).
pub async fn settle<F, Fut>(
    mut call: F,
    first: Verb,
    then: Verb,
    max_polls: usize,
) -> Result<Vec<Outcome>, TierError>
where
    F: FnMut(Verb) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, TierError>>,
{
    let mut all = vec![call(first).await?];
    while all.last().is_some_and(|o| o.state == State::Pending) {
        if all.len() > max_polls {
            panic!(
                "still pending after {max_polls} polls: {:?}",
                all.last().map(|o| &o.message)
            );
        }
        all.push(call(then).await?);
    }
    Ok(all)
}

/// A plan and a check are read-only: `calls`, what one call of `tier` made,
/// hold no mutating call when `verb` is one of them (panics naming them).
pub fn assert_read_only(tier: Tier, verb: Verb, calls: &[mbstack_core::Call]) {
    if !matches!(verb, Verb::Plan | Verb::Check) {
        return;
    }
    let writes: Vec<String> = calls
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| c.to_string())
        .collect();
    assert!(
        writes.is_empty(),
        "a {verb:?} of the {tier} tier made mutating calls: {writes:?}"
    );
}

/// What [`TierRunner::settled`] does with a retryable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRetryable {
    /// Call the verb again, as the state machine does.
    CallAgain,
    /// Fail the test: the run must not meet one.
    Fail,
}

/// Drives one tier through the strict JSON event path (as Lambda and the local
/// endpoint call it), with the given upstream `inputs`.
pub struct TierRunner<'a> {
    pub env: &'a TestEnv,
    pub tier: Tier,
    pub inputs: Map<String, Value>,
}

impl TierRunner<'_> {
    pub async fn call(
        &self,
        verb: Verb,
        spec: &StackSpec,
        run: &str,
        scope: Scope,
    ) -> Result<Outcome, TierError> {
        self.call_after(verb, spec, run, scope, Vec::new()).await
    }

    /// One call that carries the changes of the passes before it, as the
    /// state machine's "Apply … again" does (`changesBefore`).
    pub async fn call_after(
        &self,
        verb: Verb,
        spec: &StackSpec,
        run: &str,
        scope: Scope,
        before: Vec<mbstack_core::Change>,
    ) -> Result<Outcome, TierError> {
        let mut event = Event::new(verb, spec.clone(), run, scope);
        event.inputs = self.inputs.clone();
        event.changes_before = before;
        let payload =
            serde_json::to_value(&event).map_err(|e| TierError::Terminal(e.to_string()))?;
        let _ = LogCapture::global();
        // This call's own log: a plan or a check must make no mutating call
        // (proved here, at run time, by every tier test of the suite).
        let this_call = CallLog::new();
        let aws = self.env.aws().with_interceptor(this_call.clone());
        let result = mbstack_core::lambda::invoke_tier(self.tier, &payload, |ev| async move {
            mbstack_local::handle(self.tier, ev, &aws).await
        })
        .await;
        // Every outcome (and error) of the suite's tier runs is scanned for secrets.
        let text = match &result {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        };
        let moto = self.env.emulator.moto.sdk_config().await;
        checks::assert_no_secret_leak(&moto, &[("an outcome", &text)]).await;
        assert_read_only(self.tier, verb, &this_call.calls());
        let value = result?;
        serde_json::from_value(value).map_err(|e| TierError::Terminal(e.to_string()))
    }

    /// `first`, then `then` until not pending (a short pause between polls: the
    /// front door's ECS may take a moment).
    pub async fn settle(
        &self,
        first: Verb,
        then: Verb,
        spec: &StackSpec,
        run: &str,
        scope: Scope,
    ) -> Result<Vec<Outcome>, TierError> {
        // An apply again carries the changes of the passes before it.
        let before: std::sync::Mutex<Option<Vec<mbstack_core::Change>>> = Default::default();
        let before = &before;
        settle(
            |verb| async move {
                if verb == then {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                let carried = match (verb, first, before.lock().ok().and_then(|b| b.clone())) {
                    (Verb::Apply, Verb::Apply, Some(b)) => b,
                    _ => Vec::new(),
                };
                let o = self.call_after(verb, spec, run, scope, carried).await?;
                if let Ok(mut b) = before.lock() {
                    *b = Some(o.changes.clone());
                }
                Ok(o)
            },
            first,
            then,
            60,
        )
        .await
    }

    /// Apply until ready, polled as the state machine polls this tier: check,
    /// or apply again for a tier that applies until ready
    /// ([`mbstack_core::naming::TierInfo::applies_again`]).
    pub async fn apply(&self, spec: &StackSpec, run: &str) -> Vec<Outcome> {
        self.settle(Verb::Apply, self.poll_verb(), spec, run, Scope::Stack)
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"))
    }

    /// How the state machine's create loop polls this tier.
    pub fn poll_verb(&self) -> Verb {
        if self.tier.info().applies_again {
            Verb::Apply
        } else {
            Verb::Check
        }
    }

    /// One call; an error fails the test.
    pub async fn run(&self, verb: Verb, spec: &StackSpec, run: &str, scope: Scope) -> Outcome {
        self.call(verb, spec, run, scope)
            .await
            .unwrap_or_else(|e| panic!("{verb:?} {run}: {e}"))
    }

    /// Destroy until gone.
    pub async fn destroy(&self, spec: &StackSpec, run: &str, scope: Scope) -> Vec<Outcome> {
        self.settle(Verb::Destroy, Verb::Destroy, spec, run, scope)
            .await
            .unwrap_or_else(|e| panic!("destroy {run}: {e}"))
    }

    /// `verb` (then check, for an apply) until settled, `pause` apart (the
    /// realism layer's pace): every outcome, the settled one last. A retryable
    /// error is called again as the state machine does, or fails the test.
    pub async fn settled(
        &self,
        verb: Verb,
        spec: &StackSpec,
        run: &str,
        pause: std::time::Duration,
        on_retryable: OnRetryable,
    ) -> Vec<Outcome> {
        let done = match verb {
            Verb::Destroy => State::Gone,
            _ => State::Ready,
        };
        let mut all = Vec::new();
        let mut next = verb;
        for _ in 0..200 {
            match self.call(next, spec, run, Scope::Stack).await {
                Ok(o) if o.state == done => {
                    all.push(o);
                    return all;
                }
                Ok(o) => {
                    if verb == Verb::Apply {
                        next = self.poll_verb();
                    }
                    all.push(o);
                }
                Err(e) if e.is_retryable() && on_retryable == OnRetryable::CallAgain => next = verb,
                Err(e) => panic!("{verb:?} {run}: {e}"),
            }
            tokio::time::sleep(pause).await;
        }
        panic!(
            "{verb:?} {run} never settled: {:?}",
            all.last().map(|o| &o.message)
        );
    }
}

/// Applies the network tier for `spec` and returns the `inputs` the tiers after it get.
pub async fn network_inputs(env: &TestEnv, spec: &StackSpec) -> Map<String, Value> {
    let net = TierRunner {
        env,
        tier: Tier::Network,
        inputs: Map::new(),
    };
    let outcomes = net.apply(spec, "net-run").await;
    mbstack_core::contract::inputs_from(outcomes.last())
}

/// Applies network, then data and load balancer, and returns the `inputs` the
/// app tier gets: every upstream tier's outputs, keyed by tier.
pub async fn app_inputs(env: &TestEnv, spec: &StackSpec) -> Map<String, Value> {
    let mut inputs = network_inputs(env, spec).await;
    let mut upstream = Vec::new();
    // The tiers between the network and the app: the state machine's middle stage.
    for &tier in mbstack_statemachine::STAGES[1] {
        let runner = TierRunner {
            env,
            tier,
            inputs: inputs.clone(),
        };
        upstream.extend(runner.apply(spec, "upstream-run").await.pop());
    }
    inputs.extend(mbstack_core::contract::inputs_from(upstream.iter()));
    inputs
}

/// Captures what `tracing` logs in this test binary (to scan for secrets). One
/// global subscriber: a per-thread one misses events whose callsite interest
/// another test thread has already cached.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// The binary-wide capture, installed on first use.
    pub fn global() -> LogCapture {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = LogCapture::default();
                let sink = capture.clone();
                // Everything of ours down to TRACE; the SDK's and hyper's own
                // chatter (thousands of lines a run, never a payload) at INFO.
                let filter = tracing_subscriber::EnvFilter::new(
                    "info,mbstack_core=trace,mbstack_network=trace,mbstack_data=trace,\
                     mbstack_loadbalancer=trace,mbstack_app=trace,mbstack_control=trace,\
                     mbstack_local=trace,mbstack_emulator=trace",
                );
                let subscriber = tracing_subscriber::fmt()
                    .json()
                    .with_env_filter(filter)
                    .with_writer(move || sink.clone())
                    .finish();
                let _ = tracing::subscriber::set_global_default(subscriber);
                capture
            })
            .clone()
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The service's task definition: its image and the value of each secret it
/// names (`valueFrom`).
pub async fn running_task_definition(
    config: &aws_types::SdkConfig,
    stack: &str,
) -> (String, Value) {
    let ecs = aws_sdk_ecs::Client::new(config);
    let svc = ecs
        .describe_services()
        .cluster(app_names::cluster(stack))
        .services(app_names::SERVICE)
        .send()
        .await
        .expect("the service");
    let td = svc.services()[0]
        .task_definition()
        .expect("a task definition")
        .to_string();
    let out = ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .expect("the task definition");
    let c = &out.task_definition().expect("td").container_definitions()[0];
    let secrets: serde_json::Map<String, Value> = c
        .secrets()
        .iter()
        .map(|s| (s.name().to_string(), serde_json::json!(s.value_from())))
        .collect();
    (
        c.image().unwrap_or_default().to_string(),
        Value::Object(secrets),
    )
}

/// The identifiers of the manual DB snapshots (of instance `instance`, or
/// of every instance).
pub async fn manual_snapshots(
    config: &aws_types::SdkConfig,
    instance: Option<&str>,
) -> Vec<String> {
    aws_sdk_rds::Client::new(config)
        .describe_db_snapshots()
        .set_db_instance_identifier(instance.map(str::to_string))
        .snapshot_type("manual")
        .send()
        .await
        .expect("the manual snapshots")
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
        .collect()
}

pub fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(stack)
        .build()
}

/// Every EC2 resource carrying `mbstack:stack=<stack>` (NAT gateways in any
/// state but `deleted`), as (kind, id).
pub async fn ec2_resources(ec2: &aws_sdk_ec2::Client, stack: &str) -> Vec<(String, String)> {
    let f = || stack_filter(stack);
    let mut out = Vec::new();
    let r = ec2.describe_vpcs().filters(f()).send().await.unwrap();
    out.extend(
        r.vpcs()
            .iter()
            .map(|x| ("vpc".into(), x.vpc_id().unwrap().to_string())),
    );
    let r = ec2.describe_subnets().filters(f()).send().await.unwrap();
    out.extend(
        r.subnets()
            .iter()
            .map(|x| ("subnet".into(), x.subnet_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.internet_gateways()
            .iter()
            .map(|x| ("igw".into(), x.internet_gateway_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_nat_gateways()
        .filter(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.nat_gateways()
            .iter()
            // moto ignores tag filters on NAT gateways: check the tag here.
            .filter(|n| {
                n.tags()
                    .iter()
                    .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack))
            })
            .filter(|n| n.state().map(|s| s.as_str()) != Some("deleted"))
            .map(|x| ("nat".into(), x.nat_gateway_id().unwrap().to_string())),
    );
    let r = ec2.describe_addresses().filters(f()).send().await.unwrap();
    out.extend(
        r.addresses()
            .iter()
            .map(|x| ("eip".into(), x.allocation_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(r.route_tables().iter().map(|x| {
        (
            "route-table".into(),
            x.route_table_id().unwrap().to_string(),
        )
    }));
    let r = ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.security_groups()
            .iter()
            .map(|x| ("security-group".into(), x.group_id().unwrap().to_string())),
    );
    let r = ec2.describe_instances().filters(f()).send().await.unwrap();
    out.extend(
        r.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|s| s.as_str()) != Some("terminated"))
            .map(|x| ("instance".into(), x.instance_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_network_interfaces()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(r.network_interfaces().iter().map(|x| {
        (
            "network-interface".into(),
            x.network_interface_id().unwrap().to_string(),
        )
    }));
    out
}

/// Everything of `stack` that still exists, in every service mbstack uses (empty
/// when the stack is fully gone). A secret scheduled for deletion is gone (it is
/// only in its recovery window).
pub async fn stack_leftovers(config: &aws_types::SdkConfig, stack: &str) -> Vec<String> {
    let mut left: Vec<String> = ec2_resources(&aws_sdk_ec2::Client::new(config), stack)
        .await
        .into_iter()
        .map(|(k, id)| format!("{k} {id}"))
        .collect();
    let rds = aws_sdk_rds::Client::new(config);
    let dbs = rds.describe_db_instances().send().await.unwrap();
    left.extend(
        dbs.db_instances()
            .iter()
            .filter(|d| {
                d.tag_list()
                    .iter()
                    .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack))
            })
            .map(|d| format!("db-instance {}", d.db_instance_identifier().unwrap_or(""))),
    );
    for group in [naming::rds_name(stack), naming::legacy_rds_name(stack)] {
        if rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(&group)
            .send()
            .await
            .is_ok()
        {
            left.push(format!("db-subnet-group {group}"));
        }
    }
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    left.extend(
        lbs.load_balancers()
            .iter()
            .filter(|l| l.load_balancer_name() == Some(&naming::alb_name(stack)))
            .map(|_| format!("load-balancer {}", naming::alb_name(stack))),
    );
    let tgs = elb.describe_target_groups().send().await.unwrap();
    left.extend(
        tgs.target_groups()
            .iter()
            .filter(|t| t.target_group_name() == Some(&naming::target_group_name(stack)))
            .map(|_| format!("target-group {}", naming::target_group_name(stack))),
    );
    let ecs = aws_sdk_ecs::Client::new(config);
    let clusters = ecs
        .describe_clusters()
        .clusters(app_names::cluster(stack))
        .send()
        .await
        .unwrap();
    left.extend(
        clusters
            .clusters()
            .iter()
            .filter(|c| c.status() == Some("ACTIVE"))
            .map(|c| format!("ecs-cluster {}", c.cluster_name().unwrap_or(""))),
    );
    let tds = ecs
        .list_task_definitions()
        .family_prefix(app_names::family(stack))
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    left.extend(
        tds.task_definition_arns()
            .iter()
            .map(|a| format!("task-definition {a}")),
    );
    let iam = aws_sdk_iam::Client::new(config);
    let roles = iam.list_roles().send().await.unwrap();
    left.extend(
        roles
            .roles()
            .iter()
            // Any role named like the stack's (not only the two the app means
            // to create): a stray one counts too.
            .filter(|r| {
                r.role_name()
                    .starts_with(&format!("{}-", app_names::family(stack)))
            })
            .map(|r| format!("iam-role {}", r.role_name())),
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/mbstack/{stack}/"))
        .send()
        .await
        .unwrap();
    left.extend(
        groups
            .log_groups()
            .iter()
            .map(|g| format!("log-group {}", g.log_group_name().unwrap_or(""))),
    );
    let sm = aws_sdk_secretsmanager::Client::new(config);
    let secrets = sm.list_secrets().send().await.unwrap();
    left.extend(
        secrets
            .secret_list()
            .iter()
            .filter(|s| {
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack))
            })
            .map(|s| format!("secret {}", s.name().unwrap_or(""))),
    );
    left.extend(
        stack_certificates(config, stack)
            .await
            .into_iter()
            .map(|(arn, domain, _)| format!("certificate {arn} ({domain})")),
    );
    let aas = aws_sdk_applicationautoscaling::Client::new(config);
    let targets = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    left.extend(
        targets
            .scalable_targets()
            .iter()
            .filter(|t| {
                t.resource_id()
                    .contains(&format!("/{}/", app_names::cluster(stack)))
            })
            .map(|t| format!("scalable-target {}", t.resource_id())),
    );
    left
}

/// The ACM certificates carrying the stack's tag: (ARN, domain, status).
pub async fn stack_certificates(
    config: &aws_types::SdkConfig,
    stack: &str,
) -> Vec<(String, String, String)> {
    let acm = aws_sdk_acm::Client::new(config);
    let mut out = Vec::new();
    let list = acm.list_certificates().send().await.unwrap();
    for c in list.certificate_summary_list() {
        let arn = c.certificate_arn().unwrap_or("").to_string();
        let tags = acm
            .list_tags_for_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == Some(stack))
        {
            let d = acm
                .describe_certificate()
                .certificate_arn(&arn)
                .send()
                .await
                .unwrap();
            let status = d
                .certificate()
                .and_then(|c| c.status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let domain = c.domain_name().unwrap_or("").to_string();
            out.push((arn, domain, status));
        }
    }
    out
}

/// Fails the test unless certificate `arn` (someone else's) still exists.
pub async fn assert_certificate_stays(config: &aws_types::SdkConfig, arn: &str) {
    aws_sdk_acm::Client::new(config)
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("certificate {arn}, not the stack's, is gone: {e}"));
}

/// Requests a DNS-validated certificate for `domain` (as its owner would):
/// its ARN.
pub async fn request_certificate(config: &aws_types::SdkConfig, domain: &str) -> String {
    let rsa = aws_sdk_acm::types::KeyAlgorithm::Rsa2048;
    request_certificate_for(config, &[domain], rsa).await
}

/// A DNS-validated certificate request (not validated): `names[0]` its name,
/// every one of `names` an alternative name when there are several; its ARN.
pub async fn request_certificate_for(
    config: &aws_types::SdkConfig,
    names: &[&str],
    key: aws_sdk_acm::types::KeyAlgorithm,
) -> String {
    let mut request = aws_sdk_acm::Client::new(config)
        .request_certificate()
        .domain_name(names[0])
        .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
        .key_algorithm(key);
    if names.len() > 1 {
        for n in names {
            request = request.subject_alternative_names(*n);
        }
    }
    request
        .send()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string()
}

/// Rotates the secret `arn` as RDS does every 7 days, with its event lost (AWS
/// delivers CloudTrail's events "on a best effort basis"): nothing starts
/// unless a check does.
pub async fn rotate_losing_the_event(d: &mbstack_local::Deployed, arn: &str) {
    d.emulator.front.lose_events(1);
    aws_sdk_secretsmanager::Client::new(&d.config)
        .rotate_secret()
        .secret_id(arn)
        .rotate_immediately(true)
        .send()
        .await
        .unwrap();
}

/// The SNS Publish calls SNS accepted, in the emulator's journal since its
/// last take.
pub fn published(d: &mbstack_local::Deployed) -> Vec<serde_json::Value> {
    d.emulator
        .front
        .take_journal()
        .iter()
        .map(|e| e.to_json())
        .filter(|e| e["service"] == "sns" && e["action"] == "Publish")
        // What SNS accepted: a throttled or refused attempt sent nothing.
        .filter(|e| {
            e["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .collect()
}

/// A public hosted zone `name` (created, as its owner would): its ID.
pub async fn public_zone(config: &aws_types::SdkConfig, name: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(config);
    let out = r53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("test-{name}"))
        .send()
        .await
        .unwrap();
    out.hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string()
}

/// Writes (or overwrites) a record of someone else's in `zone`: `rtype`
/// `name` → `value`, as a weighted set `set_id` when given one.
pub async fn foreign_record(
    config: &aws_types::SdkConfig,
    zone: &str,
    (name, rtype, value): (&str, &str, &str),
    set_id: Option<&str>,
) {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let mut set = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(rtype))
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap());
    if let Some(id) = set_id {
        set = set.set_identifier(id).weight(100);
    }
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(set.build().unwrap())
        .build()
        .unwrap();
    aws_sdk_route53::Client::new(config)
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// Every record set of every hosted zone but the zones' own SOA and NS, as
/// `<zone id> <name> <type> <values or alias>`, sorted.
pub async fn dns_records(config: &aws_types::SdkConfig) -> Vec<String> {
    let r53 = aws_sdk_route53::Client::new(config);
    let mut out = Vec::new();
    for z in r53.list_hosted_zones().send().await.unwrap().hosted_zones() {
        let id = z.id().trim_start_matches("/hostedzone/");
        let sets = r53
            .list_resource_record_sets()
            .hosted_zone_id(id)
            .send()
            .await
            .unwrap();
        for s in sets.resource_record_sets() {
            let t = s.r#type().as_str();
            if t == "SOA" || t == "NS" {
                continue;
            }
            let values: Vec<&str> = s.resource_records().iter().map(|r| r.value()).collect();
            let alias = s.alias_target().map(|a| a.dns_name()).unwrap_or("");
            out.push(format!("{id} {} {t} {}{alias}", s.name(), values.join(",")));
        }
    }
    out.sort();
    out
}

/// Writes every validation record certificate `arn` names in `zone` (as its
/// owner would) and waits until ACM issues it.
pub async fn validate_certificate(config: &aws_types::SdkConfig, zone: &str, arn: &str) {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let acm = aws_sdk_acm::Client::new(config);
    let r53 = aws_sdk_route53::Client::new(config);
    let mut written = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let d = acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap();
        let c = d.certificate().unwrap();
        if c.status() == Some(&aws_sdk_acm::types::CertificateStatus::Issued) {
            return;
        }
        let records = c
            .domain_validation_options()
            .iter()
            .filter_map(|o| o.resource_record());
        for r in records {
            if !written.insert(r.name().to_string()) {
                continue;
            }
            let set = ResourceRecordSet::builder()
                .name(r.name())
                .r#type(RrType::Cname)
                .ttl(300)
                .resource_records(ResourceRecord::builder().value(r.value()).build().unwrap())
                .build()
                .unwrap();
            let change = Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .unwrap();
            r53.change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("certificate {arn} was not issued");
}

/// A certificate for `domain` that someone else requested and validated (in
/// `zone`): ISSUED, not the stack's.
pub async fn issued_certificate(config: &aws_types::SdkConfig, zone: &str, domain: &str) -> String {
    let arn = request_certificate(config, domain).await;
    validate_certificate(config, zone, &arn).await;
    arn
}

pub fn spec(stack: &str) -> StackSpec {
    StackSpec::new(stack)
}

/// The states of a run Prepare refused (an invalid spec, a held lock): the
/// refusal is reported (to the deployment's notification topic, if any) and
/// the run fails with it. No tier runs.
pub const REFUSED: [&str; 4] = [
    "Prepare",
    "Report the refusal",
    "Is the refusal the state machine's?",
    "Refused",
];

/// (input, the exact paths reported, in order).
pub fn bad_specs() -> Vec<(Value, Vec<&'static str>)> {
    let long = "a".repeat(29);
    vec![
        (serde_json::json!({}), vec!["stack"]),
        (serde_json::json!({"stack": ""}), vec!["stack"]),
        (serde_json::json!({"stack": "Analytics"}), vec!["stack"]),
        (serde_json::json!({"stack": "9lives"}), vec!["stack"]),
        (serde_json::json!({"stack": "a--b"}), vec!["stack"]),
        (serde_json::json!({"stack": "trailing-"}), vec!["stack"]),
        (serde_json::json!({"stack": "spaces here"}), vec!["stack"]),
        (serde_json::json!({"stack": "ünïcode"}), vec!["stack"]),
        (serde_json::json!({"stack": long}), vec!["stack"]),
        (serde_json::json!({"stack": 42}), vec!["stack"]),
        (
            serde_json::json!({"stack": "s", "colour": "blue"}),
            vec!["colour"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidrBlock": "10.0.0.0/16"}}),
            vec!["network.cidrBlock"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidr": "10.0.0.0"}}),
            vec!["network.cidr"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidr": "10.0.0.1/16"}}),
            vec!["network.cidr"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidr": "10.0.0.0/8"}}),
            vec!["network.cidr"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidr": "10.0.0.0/24"}}),
            vec!["network.cidr"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"cidr": "52.0.0.0/16"}}),
            vec!["network.cidr"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"azCount": 1}}),
            vec!["network.azCount"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"azCount": 7}}),
            vec!["network.azCount"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"azCount": -2}}),
            vec!["network.azCount"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"nat": "gateway"}}),
            vec!["network.nat"],
        ),
        (
            serde_json::json!({"stack": "s", "network": {"nat": "none", "pauseNat": true}}),
            vec!["network.nat"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"engineVersion": "9.6"}}),
            vec!["database.engineVersion"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"engineVersion": "17.x"}}),
            vec!["database.engineVersion"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"instanceClass": "t4g.micro"}}),
            vec!["database.instanceClass"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"storageGib": 10}}),
            vec!["database.storageGib"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"backupRetentionDays": 40}}),
            vec!["database.backupRetentionDays"],
        ),
        (
            serde_json::json!({"stack": "s", "database": {"multiAz": "yes"}}),
            vec!["database.multiAz"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"image": "metabase/metabase"}}),
            vec!["app.image"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"image": "metabase/metabase:latest"}}),
            vec!["app.image"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"image": "metabase/metabase:v1 ; rm -rf /"}}),
            vec!["app.image"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"cpu": 300}}),
            vec!["app.cpu"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"cpu": 1024, "memory": 1024}}),
            vec!["app.memory"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"cpu": 256, "memory": 1024}}),
            vec!["app.memory"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"desiredCount": 0}}),
            vec!["app.desiredCount"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"desiredCount": 11}}),
            vec!["app.desiredCount"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"autoscaling": {"min": 3, "max": 2}}}),
            vec!["app.autoscaling"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"autoscaling": {"min": 2, "max": 4}}}),
            vec!["app.desiredCount"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"autoscaling": {"min": 1, "max": 2, "targetCpuPercent": 99}}}),
            vec!["app.autoscaling.targetCpuPercent"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"autoscaling": {"min": 1, "max": 2, "step": 1}}}),
            vec!["app.autoscaling.step"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"cpuArchitecture": "arm"}}),
            vec!["app.cpuArchitecture"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"timezone": "Mars/Olympus Mons"}}),
            vec!["app.timezone"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"logRetentionDays": 10}}),
            vec!["app.logRetentionDays"],
        ),
        (
            serde_json::json!({"stack": "s", "loadBalancer": {"allowedCidrs": []}}),
            vec!["loadBalancer.allowedCidrs"],
        ),
        (
            serde_json::json!({"stack": "s", "loadBalancer": {"allowedCidrs": ["1.2.3.4/32", "bad"]}}),
            vec!["loadBalancer.allowedCidrs[1]"],
        ),
        (
            serde_json::json!({"stack": "s", "loadBalancer": {"allowedCidrs": ["1.2.3.4/32", "1.2.3.4/32"]}}),
            vec!["loadBalancer.allowedCidrs[1]"],
        ),
        (
            serde_json::json!({"stack": "s", "loadBalancer": {"certificateArn": "arn:aws:iam::123456789012:server-certificate/x"}}),
            vec!["loadBalancer.certificateArn"],
        ),
        (
            serde_json::json!({"stack": "s", "loadBalancer": {"idleTimeoutSeconds": 0}}),
            vec!["loadBalancer.idleTimeoutSeconds"],
        ),
        (
            serde_json::json!({"stack": "s", "tags": {"aws:owner": "x"}}),
            vec!["tags.aws:owner"],
        ),
        (
            serde_json::json!({"stack": "s", "tags": {"mbstack:stack": "other"}}),
            vec!["tags.mbstack:stack"],
        ),
        (
            serde_json::json!({"stack": "s", "tags": {"Name": "mine"}}),
            vec!["tags.Name"],
        ),
        (
            serde_json::json!({"stack": "s", "tags": {"team": "<script>"}}),
            vec!["tags.team"],
        ),
        (
            serde_json::json!({"stack": "s", "tags": {"team": 7}}),
            vec!["tags.team"],
        ),
        (
            serde_json::json!({"stack": "s", "paused": "no"}),
            vec!["paused"],
        ),
        // An array where a section belongs (serde would read it field by field).
        (serde_json::json!({"stack": "s", "app": []}), vec!["app"]),
        (
            serde_json::json!({"stack": "s", "network": [], "tags": ["a"]}),
            vec!["network", "tags"],
        ),
        (
            serde_json::json!({"stack": "s", "app": {"autoscaling": [1, 3]}}),
            vec!["app.autoscaling"],
        ),
        // Several problems: all reported, in spec order.
        (
            serde_json::json!({"stack": "Bad", "network": {"cidr": "8.8.0.0/16", "azCount": 9}, "app": {"image": "x", "desiredCount": 0}, "tags": {"aws:x": "y"}}),
            vec![
                "stack",
                "network.cidr",
                "network.azCount",
                "app.image",
                "app.desiredCount",
                "tags.aws:x",
            ],
        ),
        // Unknown fields are all listed at once.
        (
            serde_json::json!({"stack": "s", "netwrok": {}, "database": {"size": 1}}),
            vec!["database.size", "netwrok"],
        ),
    ]
}
