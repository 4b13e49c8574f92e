//! End-to-end: the real state machine deployed into moto, its Lambda tasks served
//! in-process by the front door, executions run for real.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbstack_core::lambda::invoke_tier;
use mbstack_core::{Aws, Tier, TierError};
use mbstack_emulator::{LambdaError, LambdaFn};
use serde_json::Value;

use crate::TestEnv;

pub const ACCOUNT: &str = "123456789012";

/// A failure to inject: after `tier` ran `verb` (what it created stays; the
/// outcome is lost), the invocation fails with a terminal error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub tier: Tier,
    pub verb: &'static str,
}

pub struct Deployed {
    pub env: TestEnv,
    pub sfn: aws_sdk_sfn::Client,
    pub arn: String,
    pub inject: Arc<Mutex<Option<Inject>>>,
}

/// How an execution ended.
#[derive(Debug)]
pub struct Execution {
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Every event's input and output text, for secret scans.
    pub history_text: String,
    pub state_names: Vec<String>,
}

fn function_arn(name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{ACCOUNT}:function:{name}",
        mbstack_emulator::REGION
    )
}

fn to_lambda_error(e: TierError) -> LambdaError {
    LambdaError {
        error_type: e.name().to_string(),
        message: e.to_string(),
    }
}

fn tier_fn(tier: Tier, aws: Aws, inject: Arc<Mutex<Option<Inject>>>) -> LambdaFn {
    Arc::new(move |payload: Value| {
        let aws = aws.clone();
        let inject = inject.clone();
        Box::pin(async move {
            let verb = payload
                .get("verb")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let result = invoke_tier(tier, &payload, |event| async move {
                match tier {
                    Tier::Network => mbstack_network::handle(event, &aws).await,
                    Tier::Data => mbstack_data::handle(event, &aws).await,
                    Tier::LoadBalancer => mbstack_loadbalancer::handle(event, &aws).await,
                    Tier::App => mbstack_app::handle(event, &aws).await,
                    Tier::Control => Err(TierError::Terminal("control is not a tier".into())),
                }
            })
            .await;
            let fire = inject
                .lock()
                .ok()
                .and_then(|i| i.clone())
                .is_some_and(|i| i.tier == tier && i.verb == verb);
            if fire {
                return Err(to_lambda_error(
                    TierError::Terminal(format!(
                        "injected failure after {verb} (what it did stays, its outcome is lost)"
                    ))
                    .in_tier(tier),
                ));
            }
            result.map_err(to_lambda_error)
        })
    })
}

fn control_fn(aws: Aws) -> LambdaFn {
    Arc::new(move |payload: Value| {
        let aws = aws.clone();
        Box::pin(async move {
            mbstack_control::handle(payload, &aws)
                .await
                .map_err(to_lambda_error)
        })
    })
}

impl Deployed {
    /// A fresh emulator with every function served and the state machine created
    /// from the committed definition.
    pub async fn start() -> Self {
        let env = TestEnv::start().await;
        let inject = Arc::new(Mutex::new(None));
        let front = &env.emulator.front;
        // Tier waits of 15–30 s become 0 s: the machine still loops through Wait.
        front.set_wait_divisor(1000);
        let aws = env.aws();
        front.register_lambda("mbstack-control", control_fn(aws.clone()));
        for (tier, name) in [
            (Tier::Network, "mbstack-network"),
            (Tier::Data, "mbstack-data"),
            (Tier::LoadBalancer, "mbstack-loadbalancer"),
            (Tier::App, "mbstack-app"),
        ] {
            front.register_lambda(name, tier_fn(tier, aws.clone(), inject.clone()));
        }
        let arns: Vec<(&str, String)> = vec![
            ("control", function_arn("mbstack-control")),
            ("network", function_arn("mbstack-network")),
            ("data", function_arn("mbstack-data")),
            ("loadbalancer", function_arn("mbstack-loadbalancer")),
            ("app", function_arn("mbstack-app")),
        ];
        let committed =
            std::fs::read_to_string(mbstack_statemachine::asl_path()).unwrap_or_default();
        let mut definition = committed;
        for (tier, arn) in &arns {
            if let Some((_, p)) = mbstack_statemachine::PLACEHOLDERS
                .iter()
                .find(|(t, _)| t == tier)
            {
                definition = definition.replace(p, arn);
            }
        }
        let sfn = aws_sdk_sfn::Client::new(&env.config);
        let created = sfn
            .create_state_machine()
            .name("mbstack-provision")
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/mbstack-states"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStateMachine refused the definition: {e:?}"));
        let arn = created.state_machine_arn().to_string();
        Self {
            env,
            sfn,
            arn,
            inject,
        }
    }

    pub fn inject(&self, i: Option<Inject>) {
        if let Ok(mut g) = self.inject.lock() {
            *g = i;
        }
    }

    /// Starts an execution and waits for its end (at most `limit`).
    pub async fn run(&self, name: &str, input: Value) -> Execution {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("StartExecution: {e:?}"));
        let exec = started.execution_arn().to_string();
        let t0 = Instant::now();
        loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(&exec)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            let status = d.status().as_str().to_string();
            if status != "RUNNING" {
                let (history_text, state_names) = self.history(&exec).await;
                return Execution {
                    status,
                    output: d.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: d.error().map(str::to_string),
                    cause: d.cause().map(str::to_string),
                    history_text,
                    state_names,
                };
            }
            if t0.elapsed() > Duration::from_secs(180) {
                let (_, names) = self.history(&exec).await;
                panic!("execution {name} still RUNNING after 180 s; states so far: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn history(&self, exec: &str) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let h = self
                .sfn
                .get_execution_history()
                .execution_arn(exec)
                .set_next_token(token.clone())
                .max_results(1000)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            for e in h.events() {
                // The SDK's Debug redacts inputs and outputs: take the fields.
                let mut fields: Vec<Option<&str>> = vec![
                    e.execution_started_event_details().and_then(|d| d.input()),
                    e.execution_succeeded_event_details()
                        .and_then(|d| d.output()),
                    e.execution_failed_event_details().and_then(|d| d.error()),
                    e.execution_failed_event_details().and_then(|d| d.cause()),
                    e.state_entered_event_details().and_then(|d| d.input()),
                    e.state_exited_event_details().and_then(|d| d.output()),
                    e.task_scheduled_event_details().map(|d| d.parameters()),
                    e.task_succeeded_event_details().and_then(|d| d.output()),
                    e.task_failed_event_details().and_then(|d| d.error()),
                    e.task_failed_event_details().and_then(|d| d.cause()),
                ];
                fields.retain(Option::is_some);
                text.push_str(&format!(
                    "{} {}\n",
                    e.r#type().as_str(),
                    fields.into_iter().flatten().collect::<Vec<_>>().join(" | ")
                ));
                if let Some(n) = e.state_entered_event_details().map(|d| d.name()) {
                    names.push(n.to_string());
                }
            }
            token = h.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        (text, names)
    }
}
