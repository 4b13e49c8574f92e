//! `mbstack deploy` / `undeploy` / `schedule`: mbstack's own resources in an
//! account — one role and one Lambda function per tier (and the control
//! function), the state machine and its role, and EventBridge Scheduler schedules
//! with a role that may only start our state machine. Idempotent: a second deploy
//! with unchanged code and settings changes nothing (code compared by SHA-256).

use std::path::{Path, PathBuf};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, LogFormat, LoggingConfig, Runtime,
};
use base64::Engine;
use mbstack_core::{aws_error, client, error_code, Aws, TierError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policies;

/// The functions: (key in the state machine, binary, memory MiB, timeout s).
pub const FUNCTIONS: &[(&str, &str, i32, i32)] = &[
    ("control", "mbstack-control", 128, 60),
    ("network", "mbstack-network", 256, 120),
    ("data", "mbstack-data", 256, 120),
    ("loadbalancer", "mbstack-loadbalancer", 256, 120),
    ("app", "mbstack-app", 256, 120),
];

#[derive(Debug, Clone)]
pub struct Options {
    /// Names: `<prefix>-network`, `<prefix>-provision`, …
    pub prefix: String,
    /// Where the zips are: `<dir>/<binary>/bootstrap.zip` (cargo-lambda's layout).
    pub zips: PathBuf,
    /// Wire the state machine to functions deployed some other way.
    pub skip_functions: bool,
}

/// What a deploy did, resource by resource.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<String>,
    pub unchanged: Vec<String>,
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
    for (_, bin, _, _) in FUNCTIONS {
        cmd.args(["-p", bin]);
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
    report: &mut Report,
) -> Result<String, TierError> {
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]});
    let arn = match iam.get_role().role_name(role).send().await {
        Ok(o) => o.role().map(|r| r.arn().to_string()).unwrap_or_default(),
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

async fn ensure_function(
    lambda: &aws_sdk_lambda::Client,
    f: (&str, String, i32, i32),
    role: &str,
    zip: &[u8],
    prefix: &str,
    report: &mut Report,
) -> Result<String, TierError> {
    let (_, fname, memory, timeout) = f;
    let sha = sha256_b64(zip);
    match lambda.get_function().function_name(&fname).send().await {
        Ok(o) => {
            let c = o
                .configuration()
                .cloned()
                .unwrap_or_else(|| aws_sdk_lambda::types::FunctionConfiguration::builder().build());
            if c.code_sha256() != Some(sha.as_str()) {
                lambda
                    .update_function_code()
                    .function_name(&fname)
                    .zip_file(Blob::new(zip.to_vec()))
                    .architectures(Architecture::Arm64)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda:UpdateFunctionCode", e))?;
                report.changes.push(format!("code of {fname}"));
            }
            let same = c.memory_size() == Some(memory)
                && c.timeout() == Some(timeout)
                && c.role() == Some(role);
            if !same {
                lambda
                    .update_function_configuration()
                    .function_name(&fname)
                    .memory_size(memory)
                    .timeout(timeout)
                    .role(role)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda:UpdateFunctionConfiguration", e))?;
                report.changes.push(format!("configuration of {fname}"));
            }
            if c.code_sha256() == Some(sha.as_str()) && same {
                report.unchanged.push(format!("function {fname}"));
            }
            Ok(c.function_arn().unwrap_or_default().to_string())
        }
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
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
            for (k, v) in tags(prefix) {
                call = call.tags(k, v);
            }
            let out = call
                .send()
                .await
                .map_err(|e| aws_error("lambda:CreateFunction", e))?;
            report.changes.push(format!("create function {fname}"));
            Ok(out.function_arn().unwrap_or_default().to_string())
        }
        Err(e) => Err(aws_error("lambda:GetFunction", e)),
    }
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
    let mut report = Report::default();
    let mut arns: Vec<(&str, String)> = Vec::new();
    for (key, bin, memory, timeout) in FUNCTIONS {
        let fname = name(&opts.prefix, bin);
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
            arns.push((key, arn));
            continue;
        }
        let zip_path = opts.zips.join(bin).join("bootstrap.zip");
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
            &policies::function_policy(key, &fname, &opts.prefix),
            &mut report,
        )
        .await?;
        let arn = ensure_function(
            &lambda,
            (key, fname, *memory, *timeout),
            &role,
            &zip,
            &opts.prefix,
            &mut report,
        )
        .await?;
        arns.push((key, arn));
    }
    let function_arns: Vec<String> = arns.iter().map(|(_, a)| a.clone()).collect();
    let states_role = ensure_role(
        &iam,
        &format!("{}-states", opts.prefix),
        "states.amazonaws.com",
        &policies::states_policy(&function_arns),
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
    let account = account_of(&states_role);
    let group_arn = format!("arn:aws:logs:{region}:{account}:log-group:{group}:*");
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
    let definition = mbstack_statemachine::render(&arns);
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
                sfn.update_state_machine()
                    .state_machine_arn(&arn)
                    .definition(&definition)
                    .role_arn(&states_role)
                    .logging_configuration(logging)
                    .send()
                    .await
                    .map_err(|e| aws_error("states:UpdateStateMachine", e))?;
                report.changes.push(format!("state machine {sm_name}"));
            } else {
                report.unchanged.push(format!("state machine {sm_name}"));
            }
            arn
        }
        None => {
            let out = sfn
                .create_state_machine()
                .name(&sm_name)
                .definition(&definition)
                .role_arn(&states_role)
                .logging_configuration(logging)
                .tags(
                    aws_sdk_sfn::types::Tag::builder()
                        .key("mbstack:deployment")
                        .value(&opts.prefix)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error("states:CreateStateMachine", e))?;
            report
                .changes
                .push(format!("create state machine {sm_name}"));
            out.state_machine_arn().to_string()
        }
    };
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
    let mut roles = vec![format!("{prefix}-states"), format!("{prefix}-scheduler")];
    for (_, bin, _, _) in FUNCTIONS {
        let fname = name(prefix, bin);
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
    let role = ensure_role(
        &iam,
        &format!("{prefix}-scheduler"),
        "scheduler.amazonaws.com",
        &policies::scheduler_policy(&sm),
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
        let exists = sched
            .get_schedule()
            .group_name(prefix)
            .name(&sname)
            .send()
            .await
            .is_ok();
        if exists {
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
        done.push(format!("{sname}: {} ({timezone}) → {action}", s.expression));
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
