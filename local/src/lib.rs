//! mbstack deployed into the local emulator: the real state machine created in
//! moto, its Lambda tasks (the tier handlers and the control function) served
//! in-process by the front door, executions run for real. The tests and
//! `mbstack local` both use it.

mod tiers;

pub use tiers::{handle, plan_stack};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbstack_core::lambda::invoke_tier;
use mbstack_core::{Aws, CallLog, Tier, TierError};
use mbstack_emulator::{Emulator, LambdaError, LambdaFn};
use serde_json::Value;

pub const ACCOUNT: &str = "123456789012";
/// Real AWS durations are divided by this in the emulator.
pub const REALISM_SCALE: u32 = 60;
/// An execution running longer than this is reported, not waited for.
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// A failure to inject (tests): after `tier` ran `verb` (what it did stays, its
/// outcome is lost), the invocation fails with a terminal error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub tier: Tier,
    pub verb: &'static str,
}

/// How a tier misbehaves when a test asks it to ([`Deployed::misbehave`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Answers something that is not an outcome: the state machine's selector
    /// of it fails with `States.Runtime`, an error no Catch sees on AWS.
    Malformed,
    /// Panics (as a bug would); lambda_runtime reports it as a function error.
    Panic,
}

pub struct Deployed {
    pub emulator: Emulator,
    /// The emulator's configuration (dummy credentials, the front door's endpoint).
    pub config: aws_types::SdkConfig,
    /// Every AWS call the served functions made.
    pub log: CallLog,
    pub sfn: aws_sdk_sfn::Client,
    pub arn: String,
    /// The topic failed runs are published to, when deployed with one
    /// ([`Deployed::start_notifying`]).
    pub notify_topic: Option<String>,
    inject: Arc<Mutex<Option<Inject>>>,
    misbehaving: Arc<Mutex<Option<(Inject, Misbehaviour)>>>,
}

/// How an execution ended.
#[derive(Debug)]
pub struct Execution {
    pub arn: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Every event's input, output, error and cause, for scans.
    pub history_text: String,
    /// The states entered, in order.
    pub state_names: Vec<String>,
}

/// How long a new IAM role takes to become assumable in the emulator: AWS's
/// figure at the emulator's scale.
pub fn iam_propagation() -> Duration {
    mbstack_core::aws::ROLE_PROPAGATION / REALISM_SCALE
}

pub fn function_arn(name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{ACCOUNT}:function:{name}",
        mbstack_emulator::REGION
    )
}

/// The permissions boundary of the roles the app creates, as `mbstack deploy`
/// names it for the prefix `mbstack`.
pub fn role_boundary_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/mbstack/mbstack-task-role-boundary")
}

/// `config`, with the function's name as its access key (the secret is the
/// emulator's): the emulator's journal names the caller of every call by it.
fn signed_as(config: &aws_types::SdkConfig, function: &str) -> aws_types::SdkConfig {
    let credentials =
        aws_credential_types::Credentials::new(function, "testing", None, None, "mbstack-local");
    config
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

fn to_lambda_error(e: TierError) -> LambdaError {
    LambdaError {
        error_type: e.name().to_string(),
        message: e.to_string(),
    }
}

/// A crashed function, as Lambda reports it (the runtime process died).
fn crashed() -> LambdaError {
    LambdaError {
        error_type: "Runtime.ExitError".into(),
        message:
            "Runtime exited with error: signal: killed (injected crash after an AWS call returned)"
                .into(),
    }
}

fn tier_fn(
    tier: Tier,
    aws: Aws,
    inject: Arc<Mutex<Option<Inject>>>,
    misbehaving: Arc<Mutex<Option<(Inject, Misbehaviour)>>>,
    crash: Arc<AtomicBool>,
) -> LambdaFn {
    Arc::new(move |payload: Value| {
        let aws = aws.clone();
        let inject = inject.clone();
        let misbehaving = misbehaving.clone();
        let crash = crash.clone();
        Box::pin(async move {
            let verb = payload
                .get("verb")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let result = invoke_tier(tier, &payload, |event| async move {
                handle(tier, event, &aws).await
            })
            .await;
            let fire = inject
                .lock()
                .ok()
                .and_then(|i| i.clone())
                .is_some_and(|i| i.tier == tier && i.verb == verb);
            let misbehaviour = misbehaving
                .lock()
                .ok()
                .and_then(|m| m.clone())
                .filter(|(i, _)| i.tier == tier && i.verb == verb)
                .map(|(_, m)| m);
            match misbehaviour {
                Some(Misbehaviour::Malformed) => {
                    return Ok(serde_json::json!({"state": "pending"}))
                }
                Some(Misbehaviour::Panic) => panic!("injected: the {tier} tier panicked in {verb}"),
                None => {}
            }
            if crash.swap(false, Ordering::SeqCst) {
                return Err(crashed());
            }
            if fire {
                let e = TierError::Terminal(format!(
                    "injected failure after {verb} (what it did stays, its outcome is lost)"
                ));
                return Err(to_lambda_error(e.in_tier(tier)));
            }
            result.map_err(to_lambda_error)
        })
    })
}

fn control_fn(aws: Aws, crash: Arc<AtomicBool>) -> LambdaFn {
    Arc::new(move |payload: Value| {
        let aws = aws.clone();
        let crash = crash.clone();
        Box::pin(async move {
            let result = mbstack_control::handle(payload, &aws)
                .await
                .map_err(to_lambda_error);
            if crash.swap(false, Ordering::SeqCst) {
                return Err(crashed());
            }
            result
        })
    })
}

/// The state machine's definition as `mbstack deploy` renders it for the
/// emulator's functions.
fn definition(notify_topic: Option<&str>, hosted_zones: Option<&[String]>) -> String {
    let arns: Vec<(Tier, String)> = mbstack_core::naming::TIERS
        .iter()
        .map(|t| (t.tier, function_arn(t.binary)))
        .collect();
    mbstack_statemachine::render(&mbstack_statemachine::Deployment {
        functions: &arns,
        partition: "aws",
        role_boundary_arn: &role_boundary_arn(),
        events_role_arn: &format!("arn:aws:iam::{ACCOUNT}:role/mbstack-events"),
        hosted_zones,
        notify_topic_arn: notify_topic.unwrap_or(""),
    })
}

impl Deployed {
    /// Renders the state machine again with the hosted zones stacks' domains
    /// may be in (None: any), as `mbstack deploy --hosted-zones` does.
    pub async fn name_hosted_zones(&self, zones: Option<&[String]>) -> Result<(), String> {
        self.sfn
            .update_state_machine()
            .state_machine_arn(&self.arn)
            .definition(definition(self.notify_topic.as_deref(), zones))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("UpdateStateMachine: {e:?}"))
    }

    /// A fresh emulator with every function served and the state machine created.
    pub async fn start() -> Result<Self, String> {
        let emulator = Emulator::start().map_err(|e| e.to_string())?;
        Self::start_in(emulator).await
    }

    /// Deploys into a running emulator.
    pub async fn start_in(emulator: Emulator) -> Result<Self, String> {
        Self::start_with(emulator, iam_propagation(), iam_propagation()).await
    }

    /// Deploys into a running emulator where a new IAM role takes `iam_delay`
    /// to become assumable, and the tiers give a new role `patience` before a
    /// service uses it (tests of that rule set them apart).
    pub async fn start_with(
        emulator: Emulator,
        iam_delay: Duration,
        patience: Duration,
    ) -> Result<Self, String> {
        Self::deploy(emulator, iam_delay, patience, false).await
    }

    /// A fresh emulator, deployed as `mbstack deploy --notify` does: failed runs
    /// are published to the topic `mbstack-notifications`.
    pub async fn start_notifying() -> Result<Self, String> {
        let emulator = Emulator::start().map_err(|e| e.to_string())?;
        Self::deploy(emulator, iam_propagation(), iam_propagation(), true).await
    }

    async fn deploy(
        emulator: Emulator,
        iam_delay: Duration,
        patience: Duration,
        notify: bool,
    ) -> Result<Self, String> {
        let config = emulator.sdk_config().await;
        let notify_topic = match notify {
            false => None,
            true => Some(
                aws_sdk_sns::Client::new(&config)
                    .create_topic()
                    .name("mbstack-notifications")
                    .send()
                    .await
                    .map_err(|e| format!("CreateTopic: {e:?}"))?
                    .topic_arn()
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let log = CallLog::new();
        let inject = Arc::new(Mutex::new(None));
        let misbehaving = Arc::new(Mutex::new(None));
        let front = &emulator.front;
        // AWS's rules and timings, 60 times faster: a NAT gateway takes 2 s, and the
        // tiers' waits of 15–30 s become 1 s (the state machine is unchanged).
        front.set_realism(true, REALISM_SCALE);
        front.set_wait_divisor(REALISM_SCALE);
        front.set_role_propagation(iam_delay);
        let crash = front.crash_flag();
        for t in &mbstack_core::naming::TIERS {
            // Each function signs as itself, as its role would on AWS: the
            // emulator's journal tells the callers apart.
            let aws = Aws::new(signed_as(&config, t.binary))
                .with_interceptor(log.clone())
                .with_role_propagation(patience);
            let f = match t.tier {
                Tier::Control => control_fn(aws.clone(), crash.clone()),
                tier => tier_fn(
                    tier,
                    aws.clone(),
                    inject.clone(),
                    misbehaving.clone(),
                    crash.clone(),
                ),
            };
            front.register_lambda(t.binary, f);
        }
        let definition = definition(notify_topic.as_deref(), None);
        let sfn = aws_sdk_sfn::Client::new(&config);
        let created = sfn
            .create_state_machine()
            .name("mbstack-provision")
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/mbstack-states"))
            .send()
            .await
            .map_err(|e| format!("CreateStateMachine refused the definition: {e:?}"))?;
        let arn = created.state_machine_arn().to_string();
        // As `mbstack deploy` does: the rule that rolls back what a run left
        // when it ended where no Catch runs.
        mbstack_statemachine::recovery_rule("mbstack", &arn)
            .put(
                &aws_sdk_eventbridge::Client::new(&config),
                &arn,
                &format!("arn:aws:iam::{ACCOUNT}:role/mbstack-events"),
                &[],
            )
            .await
            .map_err(|e| format!("the recovery rule: {e}"))?;
        Ok(Self {
            emulator,
            config,
            log,
            sfn,
            arn,
            notify_topic,
            inject,
            misbehaving,
        })
    }

    /// How many calls the emulator refused as AWS would have (zero for mbstack's
    /// own runs).
    pub fn refused_calls(&self) -> u64 {
        self.emulator.front.refused_calls()
    }

    /// Sets (or clears) the failure to inject.
    pub fn inject(&self, i: Option<Inject>) {
        if let Ok(mut g) = self.inject.lock() {
            *g = i;
        }
    }

    /// Makes `tier`'s `verb` misbehave (each time, until cleared).
    pub fn misbehave(&self, m: Option<(Inject, Misbehaviour)>) {
        if let Ok(mut g) = self.misbehaving.lock() {
            *g = m;
        }
    }

    /// The recovery the deployment's rule started for the ended execution
    /// `arn` (`{"action": "recover", "execution": arn}`), waited for to its
    /// end; an error when none starts within `within`.
    pub async fn recovery_of(&self, arn: &str, within: Duration) -> Result<Execution, String> {
        let t0 = Instant::now();
        loop {
            let listed = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.arn)
                .send()
                .await
                .map_err(|e| format!("ListExecutions: {e:?}"))?;
            for e in listed.executions() {
                let d = self
                    .sfn
                    .describe_execution()
                    .execution_arn(e.execution_arn())
                    .send()
                    .await
                    .map_err(|e| format!("DescribeExecution: {e:?}"))?;
                let input: Value = d
                    .input()
                    .and_then(|i| serde_json::from_str(i).ok())
                    .unwrap_or(Value::Null);
                if input["action"] == "recover" && input["execution"] == arn {
                    return self.wait_for(e.execution_arn(), e.name(), None).await;
                }
            }
            if t0.elapsed() > within {
                return Err(format!(
                    "no recovery of {arn} started within {} s",
                    within.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts an execution and waits for its end.
    ///
    /// It reads the execution's history once, at the end: read at every poll,
    /// a long history (megabytes of JSON) from many runs at once was most of
    /// the emulator's work and slowed the runs it watched.
    pub async fn run(&self, name: &str, input: Value) -> Result<Execution, String> {
        self.watch(name, input, None).await
    }

    /// Starts an execution, calls `progress` with each state entered, and waits
    /// for its end (at most [`RUN_LIMIT`]).
    pub async fn run_following(
        &self,
        name: &str,
        input: Value,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<Execution, String> {
        self.watch(name, input, Some(&mut progress)).await
    }

    async fn watch(
        &self,
        name: &str,
        input: Value,
        progress: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Execution, String> {
        let exec = self.start_execution(name, input).await?;
        self.wait_for(&exec, name, progress).await
    }

    /// Starts an execution without waiting for it: its ARN.
    pub async fn start_execution(&self, name: &str, input: Value) -> Result<String, String> {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| format!("StartExecution: {e:?}"))?;
        Ok(started.execution_arn().to_string())
    }

    /// Waits for the end of the execution `exec` (named `name`), calling
    /// `progress` with each state entered.
    pub async fn wait_for(
        &self,
        exec: &str,
        name: &str,
        mut progress: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Execution, String> {
        let exec = exec.to_string();
        let t0 = Instant::now();
        let mut shown = 0;
        loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(&exec)
                .send()
                .await
                .map_err(|e| format!("DescribeExecution: {e:?}"))?;
            let status = d.status().as_str().to_string();
            let running = status == "RUNNING";
            if let Some(progress) = progress.as_mut() {
                let (_, state_names) = self.history(&exec).await?;
                for n in state_names.iter().skip(shown) {
                    progress(n);
                }
                shown = state_names.len();
            }
            if !running {
                let (history_text, state_names) = self.history(&exec).await?;
                return Ok(Execution {
                    arn: exec.clone(),
                    status,
                    output: d.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: d.error().map(str::to_string),
                    cause: d.cause().map(str::to_string),
                    history_text,
                    state_names,
                });
            }
            if t0.elapsed() > RUN_LIMIT {
                let (_, state_names) = self.history(&exec).await?;
                return Err(format!(
                    "execution {name} still RUNNING after {} s; states so far: {state_names:?}",
                    RUN_LIMIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(if progress.is_some() {
                200
            } else {
                100
            }))
            .await;
        }
    }

    async fn history(&self, exec: &str) -> Result<(String, Vec<String>), String> {
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
                .map_err(|e| format!("GetExecutionHistory: {e:?}"))?;
            for e in h.events() {
                // The SDK's Debug redacts inputs and outputs: take the fields.
                let fields: Vec<&str> = [
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
                ]
                .into_iter()
                .flatten()
                .collect();
                text.push_str(&format!("{} {}\n", e.r#type().as_str(), fields.join(" | ")));
                if let Some(n) = e.state_entered_event_details().map(|d| d.name()) {
                    names.push(n.to_string());
                }
            }
            token = h.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok((text, names))
    }
}
