//! What the suite checks after every run (issue 10): no generated secret in any
//! place it could leak to (the execution history, which holds every state's input
//! and output and so every outcome; every log line captured; every task
//! definition), and a clean security audit of a stack that a successful run left
//! standing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mbstack_core::Aws;
use mbstack_emulator::Emulator;
use mbstack_local::{Deployed, Execution};
use serde_json::Value;

use crate::LogCapture;

/// Shorter values could match by chance; every generated secret is far longer.
const MIN_SECRET_LEN: usize = 12;

/// The values of every secret in the emulator: the database's managed master
/// password (the `password` field of its JSON) and Metabase's encryption key.
/// `config` should reach moto directly (`emulator.moto.sdk_config()`): the
/// suite's reads must not count as calls of a run, nor meet its injected faults.
pub async fn generated_secrets(config: &aws_types::SdkConfig) -> Vec<(String, String)> {
    let sm = aws_sdk_secretsmanager::Client::new(config);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = sm.list_secrets().set_next_token(token.clone()).send().await else {
            return out;
        };
        for s in page.secret_list() {
            let (Some(arn), name) = (s.arn(), s.name().unwrap_or("")) else {
                continue;
            };
            let Ok(v) = sm.get_secret_value().secret_id(arn).send().await else {
                // Scheduled for deletion: its value cannot be read, nor leak now.
                continue;
            };
            let Some(text) = v.secret_string() else {
                continue;
            };
            let value = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m
                    .get("password")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => Some(text.to_string()),
            };
            if let Some(value) = value.filter(|v| v.len() >= MIN_SECRET_LEN) {
                out.push((name.to_string(), value));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

/// Every field of every task definition (active and inactive), as text.
pub async fn task_definitions_text(config: &aws_types::SdkConfig) -> String {
    let ecs = aws_sdk_ecs::Client::new(config);
    let mut text = String::new();
    for status in [
        aws_sdk_ecs::types::TaskDefinitionStatus::Active,
        aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
    ] {
        let Ok(list) = ecs.list_task_definitions().status(status).send().await else {
            continue;
        };
        for arn in list.task_definition_arns() {
            if let Ok(d) = ecs
                .describe_task_definition()
                .task_definition(arn)
                .send()
                .await
            {
                let Some(td) = d.task_definition() else {
                    continue;
                };
                // The SDK's Debug redacts `environment` (the likeliest place for
                // a leak): every container's fields are taken one by one as well.
                text.push_str(&format!("{td:?}\n"));
                for c in td.container_definitions() {
                    for e in c.environment() {
                        text.push_str(&format!("{:?}={:?}\n", e.name(), e.value()));
                    }
                    for s in c.secrets() {
                        text.push_str(&format!("{}={}\n", s.name(), s.value_from()));
                    }
                    text.push_str(&format!(
                        "{:?} {:?} {:?} {:?}\n",
                        c.command(),
                        c.entry_point(),
                        c.docker_labels(),
                        c.log_configuration().map(|l| l.options())
                    ));
                }
            }
        }
    }
    text
}

/// Watches the secrets while a run goes on: a secret created and deleted within
/// one run (a rolled-back apply, a destroy) is scanned for as well. Reads moto
/// directly, every 200 ms.
pub struct SecretWitness {
    seen: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    moto: aws_types::SdkConfig,
}

impl SecretWitness {
    pub async fn start(emulator: &Emulator) -> Self {
        let moto = emulator.moto.sdk_config().await;
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (moto, seen, stop) = (moto.clone(), seen.clone(), stop.clone());
            async move {
                loop {
                    let last = stop.load(Ordering::SeqCst);
                    let values = generated_secrets(&moto).await;
                    if let Ok(mut s) = seen.lock() {
                        s.extend(values);
                    }
                    if last {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        });
        Self {
            seen,
            stop,
            task,
            moto,
        }
    }

    /// Waits until the witness has seen the secret `name` (at most `limit`):
    /// true once seen. Its polls run whenever the caller awaits, so a loaded
    /// machine delays them; a test waits for the sighting, not for a fixed time.
    pub async fn wait_for(&self, name: &str, limit: std::time::Duration) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if self
                .seen
                .lock()
                .map(|s| s.contains_key(name))
                .unwrap_or(false)
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Every secret value seen since [`SecretWitness::start`], and where any of them
    /// is: in `places`, the captured logs or a task definition.
    pub async fn leaks(self, places: &[(&str, &str)]) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let secrets: Vec<(String, String)> = self
            .seen
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        leaks_of(&secrets, &self.moto, places).await
    }
}

/// Where one of `secrets` is: `(secret name, place)`; empty when none leaked.
pub async fn leaks_of(
    secrets: &[(String, String)],
    moto: &aws_types::SdkConfig,
    places: &[(&str, &str)],
) -> Vec<(String, String)> {
    if secrets.is_empty() {
        return Vec::new();
    }
    let logs = LogCapture::global().text();
    let tds = task_definitions_text(moto).await;
    let mut all: Vec<(&str, &str)> = places.to_vec();
    all.push(("the captured logs", &logs));
    all.push(("the task definitions", &tds));
    let mut hits = Vec::new();
    for (name, value) in secrets {
        for (place, text) in &all {
            if text.contains(value.as_str()) {
                hits.push((name.clone(), place.to_string()));
            }
        }
    }
    hits
}

/// Panics if a secret that exists now is in `places`, the logs or a task definition.
pub async fn assert_no_secret_leak(moto: &aws_types::SdkConfig, places: &[(&str, &str)]) {
    let secrets = generated_secrets(moto).await;
    let hits = leaks_of(&secrets, moto, places).await;
    assert!(
        hits.is_empty(),
        "secret values leaked (secret, place): {hits:?}"
    );
}

/// The audit's findings for `stack` (without the state machine rule: the local
/// state machine is not deployed by `mbstack deploy`; bootstrap's tests cover it).
pub async fn audit_findings(config: &aws_types::SdkConfig, stack: &str) -> Vec<String> {
    let aws = Aws::new(config.clone());
    match mbstack_cli::audit::audit(&aws, stack, None).await {
        Ok(f) => f
            .iter()
            .map(|f| format!("{} {}: {}", f.rule, f.resource, f.detail))
            .collect(),
        Err(e) => vec![format!("the audit itself failed: {e}")],
    }
}

/// Whether a run with this input, if it succeeded, left the stack standing.
fn leaves_a_stack(input: &Value) -> bool {
    matches!(
        input.get("action").and_then(Value::as_str),
        None | Some("apply" | "pause" | "resume")
    )
}

/// Every check the suite makes after a run: no secret seen by `witness` in the
/// run's history, output, cause, the logs or a task definition; a clean audit
/// after a successful apply, pause or resume.
pub async fn check_after_run(d: &Deployed, input: &Value, run: &Execution, witness: SecretWitness) {
    let output = run
        .output
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    let hits = witness
        .leaks(&[
            ("the execution history", &run.history_text),
            ("the execution output", &output),
            ("the execution cause", run.cause.as_deref().unwrap_or("")),
        ])
        .await;
    assert!(
        hits.is_empty(),
        "secret values leaked (secret, place): {hits:?}"
    );
    if run.status == "SUCCEEDED" && leaves_a_stack(input) {
        if let Some(stack) = input.get("stack").and_then(Value::as_str) {
            let findings = audit_findings(&d.config, stack).await;
            assert!(
                findings.is_empty(),
                "the audit of {stack} after a successful run: {findings:?}"
            );
        }
    }
}

/// Runs an execution, then every check of [`check_after_run`]. The suite's runs
/// all go through here.
pub async fn run(d: &Deployed, name: &str, input: Value) -> Execution {
    // Installed before the run, so the run's own logs are captured.
    let _ = LogCapture::global();
    let witness = SecretWitness::start(&d.emulator).await;
    let run = match d.run(name, input.clone()).await {
        Ok(r) => r,
        Err(e) => panic!("execution {name} did not end: {e}"),
    };
    check_after_run(d, &input, &run, witness).await;
    run
}
