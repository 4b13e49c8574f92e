//! `mbstack deploy` / `undeploy` / `schedule`: mbstack's own resources in an
//! account — one role and one Lambda function per tier (and the control
//! function), the state machine and its role, and EventBridge Scheduler schedules
//! with a role that may only start our state machine. Idempotent: a second deploy
//! with unchanged code and settings changes nothing (code compared by SHA-256).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, LogFormat, LoggingConfig, Runtime,
};
use base64::Engine;
use mbstack_core::naming::{TierInfo, TIERS};
use mbstack_core::{aws_error, client, error_code, Aws, Tier, TierError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policies::{self, Context};

/// AWS's answers that mean "not yet" while deploying: a role created moments
/// ago is not yet assumable (IAM is eventually consistent), or the function's
/// previous update is still in progress.
pub fn not_yet(code: Option<&str>, message: Option<&str>) -> bool {
    let m = message.unwrap_or("");
    match code {
        Some("InvalidParameterValueException") => m.contains("cannot be assumed"),
        Some("AccessDeniedException") | Some("InvalidDefinition") => {
            m.contains("is authorized to assume the provided role")
        }
        Some("ResourceConflictException") => m.contains("in progress") || m.contains("Pending"),
        _ => false,
    }
}

/// Runs `call` until AWS stops answering "not yet" ([`not_yet`]), waiting
/// `first_wait`, doubled each time up to 10 s, at most [`PATIENCE`] times; each
/// wait is said in the report.
async fn patiently<T, E, F, Fut>(
    label: &str,
    first_wait: Duration,
    report: &mut Report,
    mut call: F,
) -> Result<T, aws_sdk_lambda::error::SdkError<E>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, aws_sdk_lambda::error::SdkError<E>>>,
{
    let mut wait = first_wait;
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if tries < PATIENCE && not_yet(e.code(), e.message()) => {
                tries += 1;
                report.waits.push(format!(
                    "{label}: {} — waiting {:.1} s (try {tries} of {PATIENCE})",
                    e.message().unwrap_or("not yet"),
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10).max(first_wait));
            }
            other => return other,
        }
    }
}

/// Writes an empty but valid zip per function in cargo-lambda's layout under
/// `dir` (`<dir>/<binary>/bootstrap.zip`): a deployment whose functions the
/// emulator runs in-process needs no code. `build` is appended to each, so
/// that two builds differ.
pub fn placeholder_zips(dir: &Path, build: &str) -> std::io::Result<()> {
    for t in &TIERS {
        let f = dir.join(t.binary);
        std::fs::create_dir_all(&f)?;
        // The end-of-central-directory record alone: a zip with no entry.
        let mut eocd = vec![0x50, 0x4b, 0x05, 0x06];
        eocd.extend([0u8; 18]);
        eocd.extend(build.as_bytes());
        std::fs::write(f.join("bootstrap.zip"), eocd)?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Names: `<prefix>-network`, `<prefix>-provision`, …
    pub prefix: String,
    /// Where the zips are: `<dir>/<binary>/bootstrap.zip` (cargo-lambda's layout).
    pub zips: PathBuf,
    /// Wire the state machine to functions deployed some other way.
    pub skip_functions: bool,
    /// The first wait while AWS is not ready yet (a new role not yet assumable,
    /// a function update in progress); doubled each time, bounded by
    /// [`PATIENCE`]. Tests shorten it.
    pub first_wait: Duration,
}

impl Options {
    pub fn new(prefix: impl Into<String>, zips: PathBuf) -> Self {
        Self {
            prefix: prefix.into(),
            zips,
            skip_functions: false,
            first_wait: Duration::from_secs(1),
        }
    }
}

/// How many times deploy asks again while AWS is not ready: with a first wait
/// of 1 s, doubling up to 10 s, about 90 s in all (IAM propagates in seconds,
/// rarely a minute).
pub const PATIENCE: u32 = 12;

/// What a deploy did, resource by resource.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<String>,
    pub unchanged: Vec<String>,
    /// Waits for AWS (role propagation, updates in progress), said as they happened.
    pub waits: Vec<String>,
    pub state_machine_arn: String,
}

fn name(prefix: &str, binary: &str) -> String {
    format!("{prefix}-{}", binary.trim_start_matches("mbstack-"))
}

/// Builds the Lambda zips with cargo-lambda (arm64, release).
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let probe = std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        return Err("cargo-lambda is not installed: `pip install cargo-lambda` (it brings zig), then `rustup target add aarch64-unknown-linux-gnu`".into());
    }
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace).args([
        "lambda",
        "build",
        "--release",
        "--arm64",
        "--output-format",
        "zip",
    ]);
    // `-p` per function (each package is named as its binary): features are
    // unified over the functions only, so the CLI's SSO support stays out of the
    // zips (`--bin` would unify over the whole workspace).
    for t in &TIERS {
        cmd.args(["-p", t.binary]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo lambda: {e}"))?;
    if !status.success() {
        return Err(format!("cargo lambda build failed ({status})"));
    }
    Ok(workspace.join("target").join("lambda"))
}

fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn tags(prefix: &str) -> Vec<(String, String)> {
    vec![("mbstack:deployment".to_string(), prefix.to_string())]
}

/// Creates or updates role `role` (trusting `service`) with inline policy `policy`.
async fn ensure_role(
    iam: &aws_sdk_iam::Client,
    role: &str,
    service: &str,
    policy: &Value,
    ctx: &Context,
    report: &mut Report,
) -> Result<String, TierError> {
    let trust = policies::trust_policy(service, ctx);
    let arn = match iam.get_role().role_name(role).send().await {
        Ok(o) => {
            let have = o
                .role()
                .and_then(|r| r.assume_role_policy_document())
                .and_then(mbstack_app::parse_policy);
            if have.as_ref() != Some(&trust) {
                iam.update_assume_role_policy()
                    .role_name(role)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| aws_error("iam:UpdateAssumeRolePolicy", e))?;
                report.changes.push(format!("trust policy of role {role}"));
            }
            o.role().map(|r| r.arn().to_string()).unwrap_or_default()
        }
        Err(e) if error_code(&e) == Some("NoSuchEntity") => {
            let t = tags("")
                .into_iter()
                .filter_map(|(k, _)| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(k)
                        .value(role)
                        .build()
                        .ok()
                })
                .collect();
            let out = iam
                .create_role()
                .role_name(role)
                .assume_role_policy_document(trust.to_string())
                .description("mbstack: least privilege for one function")
                .set_tags(Some(t))
                .send()
                .await
                .map_err(|e| aws_error("iam:CreateRole", e))?;
            report.changes.push(format!("create role {role}"));
            out.role().map(|r| r.arn().to_string()).unwrap_or_default()
        }
        Err(e) => return Err(aws_error("iam:GetRole", e)),
    };
    let have = match iam
        .get_role_policy()
        .role_name(role)
        .policy_name("mbstack")
        .send()
        .await
    {
        Ok(o) => mbstack_app::parse_policy(o.policy_document()),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => None,
        Err(e) => return Err(aws_error("iam:GetRolePolicy", e)),
    };
    if have.as_ref() != Some(policy) {
        iam.put_role_policy()
            .role_name(role)
            .policy_name("mbstack")
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|e| aws_error("iam:PutRolePolicy", e))?;
        report.changes.push(format!("policy of role {role}"));
    } else {
        report.unchanged.push(format!("role {role}"));
    }
    Ok(arn)
}

/// Waits until the function is neither `Pending` (just created) nor in the
/// middle of an update (`LastUpdateStatus: InProgress`): AWS refuses the next
/// update (ResourceConflictException) or invocation until then.
async fn settled(
    lambda: &aws_sdk_lambda::Client,
    fname: &str,
    first_wait: Duration,
    report: &mut Report,
) -> Result<(), TierError> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    let mut wait = first_wait;
    for tries in 0..=PATIENCE {
        let c = lambda
            .get_function_configuration()
            .function_name(fname)
            .send()
            .await
            .map_err(|e| aws_error("lambda:GetFunctionConfiguration", e))?;
        if c.state() == Some(&State::Failed)
            || c.last_update_status() == Some(&LastUpdateStatus::Failed)
        {
            return Err(TierError::Terminal(format!(
                "function {fname} failed to become ready: {}",
                c.state_reason()
                    .or(c.last_update_status_reason())
                    .unwrap_or("no reason given")
            )));
        }
        let busy = c.state() == Some(&State::Pending)
            || c.last_update_status() == Some(&LastUpdateStatus::InProgress);
        if !busy {
            return Ok(());
        }
        if tries == PATIENCE {
            break;
        }
        report.waits.push(format!(
            "function {fname}: {} — waiting {:.1} s",
            if c.state() == Some(&State::Pending) {
                "Pending"
            } else {
                "update in progress"
            },
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10).max(first_wait));
    }
    Err(TierError::Retryable(format!(
        "function {fname} is still Pending or updating after {PATIENCE} waits: run deploy again"
    )))
}

async fn ensure_function(
    lambda: &aws_sdk_lambda::Client,
    f: (&TierInfo, String),
    role: &str,
    zip: &[u8],
    opts: &Options,
    report: &mut Report,
) -> Result<String, TierError> {
    let (t, fname) = f;
    let (memory, timeout) = (t.memory_mib, t.timeout_seconds);
    let sha = sha256_b64(zip);
    let wait = opts.first_wait;
    match lambda.get_function().function_name(&fname).send().await {
        Ok(o) => {
            let c = o
                .configuration()
                .cloned()
                .unwrap_or_else(|| aws_sdk_lambda::types::FunctionConfiguration::builder().build());
            let same = c.memory_size() == Some(memory)
                && c.timeout() == Some(timeout)
                && c.role() == Some(role);
            let new_code = c.code_sha256() != Some(sha.as_str());
            if new_code || !same {
                settled(lambda, &fname, wait, report).await?;
            }
            if new_code {
                patiently("lambda:UpdateFunctionCode", wait, report, || {
                    lambda
                        .update_function_code()
                        .function_name(&fname)
                        .zip_file(Blob::new(zip.to_vec()))
                        .architectures(Architecture::Arm64)
                        .send()
                })
                .await
                .map_err(|e| aws_error("lambda:UpdateFunctionCode", e))?;
                report.changes.push(format!("code of {fname}"));
            }
            if !same {
                if new_code {
                    // The code update must finish before the configuration can change.
                    settled(lambda, &fname, wait, report).await?;
                }
                patiently("lambda:UpdateFunctionConfiguration", wait, report, || {
                    lambda
                        .update_function_configuration()
                        .function_name(&fname)
                        .memory_size(memory)
                        .timeout(timeout)
                        .role(role)
                        .send()
                })
                .await
                .map_err(|e| aws_error("lambda:UpdateFunctionConfiguration", e))?;
                report.changes.push(format!("configuration of {fname}"));
            }
            if !new_code && same {
                report.unchanged.push(format!("function {fname}"));
            }
            Ok(c.function_arn().unwrap_or_default().to_string())
        }
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
            let out = patiently("lambda:CreateFunction", wait, report, || {
                let mut call = lambda
                    .create_function()
                    .function_name(&fname)
                    .runtime(Runtime::Providedal2023)
                    .architectures(Architecture::Arm64)
                    .handler("bootstrap")
                    .role(role)
                    .code(
                        FunctionCode::builder()
                            .zip_file(Blob::new(zip.to_vec()))
                            .build(),
                    )
                    .memory_size(memory)
                    .timeout(timeout)
                    .logging_config(LoggingConfig::builder().log_format(LogFormat::Json).build())
                    .environment(Environment::builder().variables("RUST_LOG", "info").build());
                for (k, v) in tags(&opts.prefix) {
                    call = call.tags(k, v);
                }
                call.send()
            })
            .await
            .map_err(|e| aws_error("lambda:CreateFunction", e))?;
            report.changes.push(format!("create function {fname}"));
            Ok(out.function_arn().unwrap_or_default().to_string())
        }
        Err(e) => Err(aws_error("lambda:GetFunction", e)),
    }
}

/// The boundary policy `name` under `/mbstack/`, if it exists.
async fn find_role_boundary(
    iam: &aws_sdk_iam::Client,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::Policy>, TierError> {
    let listed = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .path_prefix("/mbstack/")
        .send()
        .await
        .map_err(|e| aws_error("iam:ListPolicies", e))?;
    Ok(listed
        .policies()
        .iter()
        .find(|p| p.policy_name() == Some(name))
        .cloned())
}

/// The managed policy that bounds every role the app tier creates, created or
/// brought up to date; returns its ARN (which names the account).
async fn ensure_role_boundary(
    iam: &aws_sdk_iam::Client,
    prefix: &str,
    partition: &str,
    report: &mut Report,
) -> Result<String, TierError> {
    let name = format!("{prefix}-task-role-boundary");
    let found = find_role_boundary(iam, &name).await?;
    let found = found.and_then(|p| {
        p.arn()
            .map(|a| (a.to_string(), p.default_version_id().map(str::to_string)))
    });
    let Some((arn, version)) = found else {
        let ctx = Context {
            partition: partition.to_string(),
            prefix: prefix.to_string(),
            account: String::new(),
        };
        let out = iam
            .create_policy()
            .policy_name(&name)
            .path("/mbstack/")
            .description("mbstack: the most any role of Metabase's tasks may do")
            .policy_document(policies::role_boundary_policy(&ctx).to_string())
            .send()
            .await
            .map_err(|e| aws_error("iam:CreatePolicy", e))?;
        report.changes.push(format!("create policy {name}"));
        return Ok(out
            .policy()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_string());
    };
    let ctx = Context {
        partition: partition.to_string(),
        prefix: prefix.to_string(),
        account: account_of(&arn).to_string(),
    };
    let want = policies::role_boundary_policy(&ctx);
    let have = match version {
        Some(v) => iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(v)
            .send()
            .await
            .map_err(|e| aws_error("iam:GetPolicyVersion", e))?
            .policy_version()
            .and_then(|v| v.document())
            .and_then(mbstack_app::parse_policy),
        None => None,
    };
    if have.as_ref() != Some(&want) {
        iam.create_policy_version()
            .policy_arn(&arn)
            .policy_document(want.to_string())
            .set_as_default(true)
            .send()
            .await
            .map_err(|e| aws_error("iam:CreatePolicyVersion", e))?;
        report.changes.push(format!("policy {name}"));
    } else {
        report.unchanged.push(format!("policy {name}"));
    }
    Ok(arn)
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// Deploys (or updates) everything; see the module docs.
pub async fn deploy(aws: &Aws, opts: &Options) -> Result<Report, TierError> {
    let iam = client!(aws_sdk_iam, aws);
    let lambda = client!(aws_sdk_lambda, aws);
    let sfn = client!(aws_sdk_sfn, aws);
    let logs = client!(aws_sdk_cloudwatchlogs, aws);
    let region = aws
        .config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let partition = mbstack_core::naming::partition_of_region(&region);
    let mut report = Report::default();
    let boundary = ensure_role_boundary(&iam, &opts.prefix, partition, &mut report).await?;
    let ctx = Context {
        partition: partition.to_string(),
        prefix: opts.prefix.clone(),
        account: account_of(&boundary).to_string(),
    };
    let mut arns: Vec<(Tier, String)> = Vec::new();
    for t in &TIERS {
        let fname = name(&opts.prefix, t.binary);
        if opts.skip_functions {
            let got = lambda
                .get_function()
                .function_name(&fname)
                .send()
                .await
                .map_err(|e| aws_error("lambda:GetFunction", e))?;
            let arn = got
                .configuration()
                .and_then(|c| c.function_arn())
                .unwrap_or_default()
                .to_string();
            arns.push((t.tier, arn));
            continue;
        }
        let zip_path = opts.zips.join(t.binary).join("bootstrap.zip");
        let zip = std::fs::read(&zip_path).map_err(|e| {
            TierError::Terminal(format!(
                "reading {}: {e} (build with cargo lambda first)",
                zip_path.display()
            ))
        })?;
        let role = ensure_role(
            &iam,
            &fname,
            "lambda.amazonaws.com",
            &policies::function_policy(t.tier, &fname, &ctx),
            &ctx,
            &mut report,
        )
        .await?;
        let arn = ensure_function(&lambda, (t, fname), &role, &zip, opts, &mut report).await?;
        arns.push((t.tier, arn));
    }
    // A new function is Pending for a moment: the first run must not meet that.
    if !opts.skip_functions {
        for t in &TIERS {
            settled(
                &lambda,
                &name(&opts.prefix, t.binary),
                opts.first_wait,
                &mut report,
            )
            .await?;
        }
    }
    let function_arns: Vec<String> = arns.iter().map(|(_, a)| a.clone()).collect();
    let states_role = ensure_role(
        &iam,
        &format!("{}-states", opts.prefix),
        "states.amazonaws.com",
        &policies::states_policy(&function_arns),
        &ctx,
        &mut report,
    )
    .await?;

    // The execution log group (errors only, without execution data: no payloads).
    let group = format!("/aws/vendedlogs/states/{}-provision", opts.prefix);
    let existing = logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .map_err(|e| aws_error("logs:DescribeLogGroups", e))?;
    if !existing
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group.as_str()))
    {
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .map_err(|e| aws_error("logs:CreateLogGroup", e))?;
        logs.put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(30)
            .send()
            .await
            .map_err(|e| aws_error("logs:PutRetentionPolicy", e))?;
        report.changes.push(format!("create log group {group}"));
    }
    let group_arn = format!(
        "arn:{partition}:logs:{region}:{}:log-group:{group}:*",
        ctx.account
    );
    let logging = aws_sdk_sfn::types::LoggingConfiguration::builder()
        .level(aws_sdk_sfn::types::LogLevel::Error)
        .include_execution_data(false)
        .destinations(
            aws_sdk_sfn::types::LogDestination::builder()
                .cloud_watch_logs_log_group(
                    aws_sdk_sfn::types::CloudWatchLogsLogGroup::builder()
                        .log_group_arn(&group_arn)
                        .build(),
                )
                .build(),
        )
        .build();
    let definition = mbstack_statemachine::render(&mbstack_statemachine::Deployment {
        functions: &arns,
        partition,
        role_boundary_arn: &boundary,
        events_role_arn: &ctx.events_role_arn(),
    });
    let sm_name = format!("{}-provision", opts.prefix);
    let found = find_state_machine(&sfn, &sm_name).await?;
    let sm_arn = match found {
        Some(arn) => {
            let d = sfn
                .describe_state_machine()
                .state_machine_arn(&arn)
                .send()
                .await
                .map_err(|e| aws_error("states:DescribeStateMachine", e))?;
            let same_def = serde_json::from_str::<Value>(d.definition()).ok()
                == serde_json::from_str::<Value>(&definition).ok();
            if !same_def || d.role_arn() != states_role {
                patiently(
                    "states:UpdateStateMachine",
                    opts.first_wait,
                    &mut report,
                    || {
                        sfn.update_state_machine()
                            .state_machine_arn(&arn)
                            .definition(&definition)
                            .role_arn(&states_role)
                            .logging_configuration(logging.clone())
                            .send()
                    },
                )
                .await
                .map_err(|e| aws_error("states:UpdateStateMachine", e))?;
                report.changes.push(format!("state machine {sm_name}"));
            } else {
                report.unchanged.push(format!("state machine {sm_name}"));
            }
            arn
        }
        None => {
            let out = patiently(
                "states:CreateStateMachine",
                opts.first_wait,
                &mut report,
                || {
                    sfn.create_state_machine()
                        .name(&sm_name)
                        .definition(&definition)
                        .role_arn(&states_role)
                        .logging_configuration(logging.clone())
                        .tags(
                            aws_sdk_sfn::types::Tag::builder()
                                .key("mbstack:deployment")
                                .value(&opts.prefix)
                                .build(),
                        )
                        .send()
                },
            )
            .await
            .map_err(|e| aws_error("states:CreateStateMachine", e))?;
            report
                .changes
                .push(format!("create state machine {sm_name}"));
            out.state_machine_arn().to_string()
        }
    };
    // EventBridge's role: the app tier's rule starts a repair with it when a
    // stack's database password rotates.
    ensure_role(
        &iam,
        &format!("{}-events", opts.prefix),
        "events.amazonaws.com",
        &policies::scheduler_policy(&sm_arn),
        &ctx,
        &mut report,
    )
    .await?;
    report.state_machine_arn = sm_arn;
    Ok(report)
}

pub async fn find_state_machine(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
) -> Result<Option<String>, TierError> {
    let mut token = None;
    loop {
        let page = sfn
            .list_state_machines()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("states:ListStateMachines", e))?;
        if let Some(m) = page.state_machines().iter().find(|m| m.name() == name) {
            return Ok(Some(m.state_machine_arn().to_string()));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(None);
        }
    }
}

/// Every record of every stack: `/mbstack/<stack>/<leaf>` → (stack, leaf, value).
pub async fn records(aws: &Aws) -> Result<Vec<(String, String, String)>, TierError> {
    let ssm = client!(aws_sdk_ssm, aws);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path("/mbstack/")
            .recursive(true)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("ssm:GetParametersByPath", e))?;
        for p in page.parameters() {
            let rest = p
                .name()
                .and_then(|n| n.strip_prefix("/mbstack/"))
                .unwrap_or("");
            if let Some((stack, leaf)) = rest.split_once('/') {
                out.push((
                    stack.to_string(),
                    leaf.to_string(),
                    p.value().unwrap_or("").to_string(),
                ));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The stacks with a stored spec (they exist, or did when last applied).
pub async fn stacks(aws: &Aws) -> Result<Vec<String>, TierError> {
    Ok(records(aws)
        .await?
        .into_iter()
        .filter(|(_, leaf, _)| leaf == "spec")
        .map(|(s, _, _)| s)
        .collect())
}

/// Removes what deploy created (and the schedules); refuses while stacks exist
/// unless `force`.
pub async fn undeploy(aws: &Aws, prefix: &str, force: bool) -> Result<Vec<String>, TierError> {
    let live = stacks(aws).await?;
    if !live.is_empty() && !force {
        return Err(TierError::Refused(format!(
            "stacks still exist ({}): destroy them first (mbstack down), or pass --force to leave them without their provisioner",
            live.join(", ")
        )));
    }
    let mut done = Vec::new();
    remove_schedules(aws, prefix, None, &mut done).await?;
    let sfn = client!(aws_sdk_sfn, aws);
    if let Some(arn) = find_state_machine(&sfn, &format!("{prefix}-provision")).await? {
        sfn.delete_state_machine()
            .state_machine_arn(&arn)
            .send()
            .await
            .map_err(|e| aws_error("states:DeleteStateMachine", e))?;
        done.push(format!("state machine {arn}"));
    }
    let lambda = client!(aws_sdk_lambda, aws);
    let iam = client!(aws_sdk_iam, aws);
    let mut roles = vec![
        format!("{prefix}-states"),
        format!("{prefix}-scheduler"),
        format!("{prefix}-events"),
    ];
    for t in &TIERS {
        let fname = name(prefix, t.binary);
        match lambda.delete_function().function_name(&fname).send().await {
            Ok(_) => done.push(format!("function {fname}")),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(aws_error("lambda:DeleteFunction", e)),
        }
        roles.push(fname);
    }
    for role in roles {
        match iam
            .delete_role_policy()
            .role_name(&role)
            .policy_name("mbstack")
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => return Err(aws_error("iam:DeleteRolePolicy", e)),
        }
        match iam.delete_role().role_name(&role).send().await {
            Ok(_) => done.push(format!("role {role}")),
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => return Err(aws_error("iam:DeleteRole", e)),
        }
    }
    remove_role_boundary(&iam, prefix, &mut done).await?;
    let logs = client!(aws_sdk_cloudwatchlogs, aws);
    let group = format!("/aws/vendedlogs/states/{prefix}-provision");
    if logs
        .delete_log_group()
        .log_group_name(&group)
        .send()
        .await
        .is_ok()
    {
        done.push(format!("log group {group}"));
    }
    Ok(done)
}

/// Deletes the roles' boundary policy, unless roles of stacks left behind
/// (`undeploy --force`) still carry it: then it stays, and says so.
async fn remove_role_boundary(
    iam: &aws_sdk_iam::Client,
    prefix: &str,
    done: &mut Vec<String>,
) -> Result<(), TierError> {
    let name = format!("{prefix}-task-role-boundary");
    let found = find_role_boundary(iam, &name).await?;
    let Some(p) = found else {
        return Ok(());
    };
    let arn = p.arn().unwrap_or_default().to_string();
    if p.permissions_boundary_usage_count().unwrap_or(0) > 0 {
        done.push(format!(
            "kept policy {name}: still the permissions boundary of {} role(s) of stacks left behind",
            p.permissions_boundary_usage_count().unwrap_or(0)
        ));
        return Ok(());
    }
    let versions = iam
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("iam:ListPolicyVersions", e))?;
    for v in versions.versions() {
        if !v.is_default_version() {
            if let Some(id) = v.version_id() {
                iam.delete_policy_version()
                    .policy_arn(&arn)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam:DeletePolicyVersion", e))?;
            }
        }
    }
    match iam.delete_policy().policy_arn(&arn).send().await {
        Ok(_) => done.push(format!("policy {name}")),
        Err(e) if error_code(&e) == Some("DeleteConflict") => done.push(format!(
            "kept policy {name}: roles of stacks left behind still carry it"
        )),
        Err(e) => return Err(aws_error("iam:DeletePolicy", e)),
    }
    Ok(())
}

/// One schedule: `repair` (apply the stored spec), `pause` or `resume`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: String,
    pub expression: String,
}

/// Creates or updates the stack's schedules in the group `<prefix>`.
pub async fn set_schedules(
    aws: &Aws,
    prefix: &str,
    stack: &str,
    schedules: &[Schedule],
    timezone: &str,
) -> Result<Vec<String>, TierError> {
    let sfn = client!(aws_sdk_sfn, aws);
    let Some(sm) = find_state_machine(&sfn, &format!("{prefix}-provision")).await? else {
        return Err(TierError::Terminal(format!(
            "no state machine {prefix}-provision: run mbstack deploy first"
        )));
    };
    let iam = client!(aws_sdk_iam, aws);
    let mut report = Report::default();
    let ctx = Context {
        partition: sm.split(':').nth(1).unwrap_or("aws").to_string(),
        prefix: prefix.to_string(),
        account: account_of(&sm).to_string(),
    };
    let role = ensure_role(
        &iam,
        &format!("{prefix}-scheduler"),
        "scheduler.amazonaws.com",
        &policies::scheduler_policy(&sm),
        &ctx,
        &mut report,
    )
    .await?;
    let sched = client!(aws_sdk_scheduler, aws);
    match sched.create_schedule_group().name(prefix).send().await {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("ConflictException") => {}
        Err(e) => return Err(aws_error("scheduler:CreateScheduleGroup", e)),
    }
    let mut done = Vec::new();
    for s in schedules {
        let action = if s.kind == "repair" {
            "apply"
        } else {
            s.kind.as_str()
        };
        let input = json!({"stack": stack, "action": action}).to_string();
        let target = aws_sdk_scheduler::types::Target::builder()
            .arn(&sm)
            .role_arn(&role)
            .input(input)
            .build()
            .map_err(|e| TierError::Terminal(format!("building the schedule target: {e}")))?;
        let window = aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
            .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| TierError::Terminal(format!("building the schedule window: {e}")))?;
        let sname = format!("{stack}-{}", s.kind);
        let existing = sched
            .get_schedule()
            .group_name(prefix)
            .name(&sname)
            .send()
            .await
            .ok();
        let was = existing.as_ref().map(|e| {
            format!(
                " (replaces {} ({}))",
                e.schedule_expression().unwrap_or("?"),
                e.schedule_expression_timezone().unwrap_or("UTC")
            )
        });
        if existing.is_some() {
            sched
                .update_schedule()
                .group_name(prefix)
                .name(&sname)
                .schedule_expression(&s.expression)
                .schedule_expression_timezone(timezone)
                .target(target)
                .flexible_time_window(window)
                .send()
                .await
                .map_err(|e| aws_error("scheduler:UpdateSchedule", e))?;
        } else {
            sched
                .create_schedule()
                .group_name(prefix)
                .name(&sname)
                .schedule_expression(&s.expression)
                .schedule_expression_timezone(timezone)
                .target(target)
                .flexible_time_window(window)
                .send()
                .await
                .map_err(|e| aws_error("scheduler:CreateSchedule", e))?;
        }
        done.push(format!(
            "{sname}: {} ({timezone}) → {action}{}",
            s.expression,
            was.unwrap_or_default()
        ));
    }
    Ok(done)
}

/// The schedules in our group: (name, expression, time zone, input).
pub async fn list_schedules(
    aws: &Aws,
    prefix: &str,
) -> Result<Vec<(String, String, String, String)>, TierError> {
    let sched = client!(aws_sdk_scheduler, aws);
    let page = match sched.list_schedules().group_name(prefix).send().await {
        Ok(p) => p,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(Vec::new()),
        Err(e) => return Err(aws_error("scheduler:ListSchedules", e)),
    };
    let mut out = Vec::new();
    for s in page.schedules() {
        let Some(n) = s.name() else { continue };
        let d = sched
            .get_schedule()
            .group_name(prefix)
            .name(n)
            .send()
            .await
            .map_err(|e| aws_error("scheduler:GetSchedule", e))?;
        out.push((
            n.to_string(),
            d.schedule_expression().unwrap_or("").to_string(),
            d.schedule_expression_timezone()
                .unwrap_or("UTC")
                .to_string(),
            d.target().and_then(|t| t.input()).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

/// Removes the stack's schedules (every schedule of the group when `stack` is None).
pub async fn remove_schedules(
    aws: &Aws,
    prefix: &str,
    stack: Option<&str>,
    done: &mut Vec<String>,
) -> Result<(), TierError> {
    let sched = client!(aws_sdk_scheduler, aws);
    for (n, _, _, _) in list_schedules(aws, prefix).await? {
        if stack.is_none_or(|s| n.starts_with(&format!("{s}-"))) {
            sched
                .delete_schedule()
                .group_name(prefix)
                .name(&n)
                .send()
                .await
                .map_err(|e| aws_error("scheduler:DeleteSchedule", e))?;
            done.push(format!("schedule {n}"));
        }
    }
    if stack.is_none() {
        let _ = sched.delete_schedule_group().name(prefix).send().await;
    }
    Ok(())
}
