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

mod build;
mod functions;
mod notifications;
mod records;
mod roles;
mod schedules;
mod state_machine;

pub use build::{build, placeholder_zips};
pub use notifications::{topic_name, Notify};
pub use records::{records, stacks};
pub use schedules::{list_schedules, remove_schedules, set_schedules, Schedule};
pub use state_machine::{describe_named, find_state_machine};

use functions::{ensure_function, settled};
use roles::{account_of, ensure_role, ensure_role_boundary, remove_role_boundary};

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
    /// Where failed runs are published (`--notify`).
    pub notify: Notify,
    /// The hosted zones the load balancer tier may write records in
    /// (`--hosted-zones`).
    pub hosted_zones: Zones,
}

/// `--hosted-zones`: the Route 53 zones stacks' domains may be in. Route 53
/// has no tag-based conditions, so the load balancer tier's right to write
/// records can only be limited by naming the zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zones {
    /// As the current deployment has it (any zone for a new one).
    Keep,
    /// Any zone of the account.
    Any,
    /// Only these zone IDs (none: no DNS records at all).
    Only(Vec<String>),
}

/// The most hosted zones `--hosted-zones` may name.
pub const MAX_ZONES: usize = 20;

impl Zones {
    /// `any`, `none`, or zone IDs separated by commas (`/hostedzone/` dropped).
    pub fn parse(text: &str) -> Result<Zones, String> {
        match text.trim() {
            "any" => Ok(Zones::Any),
            "none" => Ok(Zones::Only(Vec::new())),
            list => {
                let ids: Vec<String> = list
                    .split(',')
                    .map(|z| z.trim().trim_start_matches("/hostedzone/").to_string())
                    .collect();
                if ids.len() > MAX_ZONES {
                    return Err(format!(
                        "--hosted-zones: {} zones; at most {MAX_ZONES} (each is named in the load balancer function's inline policy, which IAM limits to 10,240 characters): use `any`",
                        ids.len()
                    ));
                }
                match ids.iter().find(|z| {
                    z.is_empty() || z.len() > 32 || !z.bytes().all(|b| b.is_ascii_alphanumeric())
                }) {
                    Some(bad) => Err(format!(
                        "--hosted-zones: {bad:?} is not a hosted zone ID (such as Z0123456789ABCDEFGHIJ): give IDs separated by commas, `any` or `none`"
                    )),
                    None => Ok(Zones::Only(ids)),
                }
            }
        }
    }
}

impl Options {
    pub fn new(prefix: impl Into<String>, zips: PathBuf) -> Self {
        Self {
            prefix: prefix.into(),
            zips,
            skip_functions: false,
            first_wait: Duration::from_secs(1),
            notify: Notify::Keep,
            hosted_zones: Zones::Keep,
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

fn tags(prefix: &str) -> Vec<(String, String)> {
    vec![("mbstack:deployment".to_string(), prefix.to_string())]
}

/// Deploys (or updates) everything; see the module docs.
pub async fn deploy(aws: &Aws, opts: &Options) -> Result<Report, TierError> {
    // The zones are in the load balancer function's role policy, which a
    // deploy that skips the functions leaves as it is: the state machine
    // would name zones the role does not (or the reverse).
    if opts.skip_functions && opts.hosted_zones != Zones::Keep {
        return Err(TierError::Refused(
            "--hosted-zones changes the load balancer function's role policy, which --skip-functions leaves as it is: deploy without --skip-functions (with --zips to use built functions)".into(),
        ));
    }
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
    let sns = client!(aws_sdk_sns, aws);
    let notify_topic_arn = notifications::resolve(
        &sns,
        &sfn,
        (&opts.prefix, &region),
        &opts.notify,
        &mut report,
    )
    .await?;
    let notify_kms_key = match &notify_topic_arn {
        Some(arn) => notifications::kms_key(&sns, arn).await?,
        None => None,
    };
    let ctx = Context {
        partition: partition.to_string(),
        prefix: opts.prefix.clone(),
        account: account_of(&boundary).to_string(),
        notify_topic_arn,
        notify_kms_key,
        hosted_zones: notifications::hosted_zones(&sfn, &opts.prefix, &opts.hosted_zones).await?,
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

    let sm_arn = state_machine::ensure(
        &logs,
        &sfn,
        &state_machine::Wiring {
            opts,
            ctx: &ctx,
            region: &region,
            functions: &arns,
            boundary: &boundary,
            role: &states_role,
        },
        &mut report,
    )
    .await?;
    // EventBridge's role: the app tier's rule starts a repair with it when a
    // stack's database password rotates, and the recovery rule a recovery.
    let events_role = ensure_role(
        &iam,
        &format!("{}-events", opts.prefix),
        "events.amazonaws.com",
        &policies::scheduler_policy(&sm_arn),
        &ctx,
        &mut report,
    )
    .await?;
    // A run that ends where no Catch runs (States.Runtime, stopped, timed
    // out) is rolled back by a recovery this rule starts.
    let rule = mbstack_statemachine::recovery_rule(&opts.prefix, &sm_arn);
    let what = format!(
        "EventBridge rule {} (a run that ends where no Catch runs is rolled back)",
        rule.name
    );
    let events = client!(aws_sdk_eventbridge, aws);
    match rule
        .ensure(&events, &sm_arn, &events_role, &tags(&opts.prefix))
        .await?
    {
        true => report.changes.push(what),
        false => report.unchanged.push(what),
    }
    report.state_machine_arn = sm_arn;
    Ok(report)
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
    let rule = mbstack_statemachine::recovery_rule(prefix, "");
    if rule.remove(&client!(aws_sdk_eventbridge, aws)).await? {
        done.push(format!("EventBridge rule {}", rule.name));
    }
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
    notifications::remove(&client!(aws_sdk_sns, aws), prefix, &mut done).await?;
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
