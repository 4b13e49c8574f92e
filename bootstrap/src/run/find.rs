//! Finding things before acting on them: whether a stack exists here, and
//! the run in progress on it (the one holding its lock, or one started a
//! moment ago that has not taken it yet).

use anyhow::{bail, Context};
use mbstack_control::store;
use serde_json::Value;

use super::aws::state_machine_arn;

/// The last segment of an execution ARN: its name (an ARN does not fit a line).
pub fn execution_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// The execution holding `stack`'s lock, when it is still running: its ARN,
/// its input and when it started (Unix seconds).
pub async fn running_execution(
    cfg: &aws_types::SdkConfig,
    stack: &str,
) -> anyhow::Result<Option<(String, Value, i64)>> {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    let holder = store::get(&ssm, &store::path(stack, "lock")).await?;
    let Some(holder) = holder.filter(|h| h.starts_with("arn:")) else {
        return Ok(None);
    };
    let sfn = aws_sdk_sfn::Client::new(cfg);
    let Ok(d) = sfn.describe_execution().execution_arn(&holder).send().await else {
        // Gone or unreadable: the next run takes the lock over.
        return Ok(None);
    };
    if d.status().as_str() != "RUNNING" {
        return Ok(None);
    }
    let input = d
        .input()
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(Value::Null);
    Ok(Some((holder, input, d.start_date().secs())))
}

/// The newest running execution of the state machine whose input names
/// `stack`: a run that has not taken the lock yet (it was started a moment ago).
pub async fn unlocked_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    stack: &str,
) -> anyhow::Result<Option<(String, Value, i64)>> {
    let arn = state_machine_arn(sfn, state_machine).await?;
    let running = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
        .send()
        .await
        .context("listing the running executions")?;
    for e in running.executions() {
        let Ok(d) = sfn
            .describe_execution()
            .execution_arn(e.execution_arn())
            .send()
            .await
        else {
            continue;
        };
        let input: Value = d
            .input()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        if input["stack"].as_str() == Some(stack) {
            return Ok(Some((
                e.execution_arn().to_string(),
                input,
                d.start_date().secs(),
            )));
        }
    }
    Ok(None)
}

/// Whether `stack` exists here: a stored spec, a run holding its lock, or a VPC
/// tagged as the stack's (a create that never finished). A command naming a
/// stack that does not exist refuses instead of "succeeding" on nothing.
pub async fn stack_exists(cfg: &aws_types::SdkConfig, stack: &str) -> anyhow::Result<bool> {
    let ssm = aws_sdk_ssm::Client::new(cfg);
    for p in ["spec", "lock"] {
        if store::get(&ssm, &store::path(stack, p)).await?.is_some() {
            return Ok(true);
        }
    }
    let ec2 = aws_sdk_ec2::Client::new(cfg);
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{}", mbstack_core::naming::STACK_TAG))
                .values(stack)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "looking for stack {stack}'s VPC: {}",
                e.into_service_error()
            )
        })?;
    Ok(!vpcs.vpcs().is_empty())
}

/// Fails with one line when `stack` does not exist here.
pub async fn require_stack(cfg: &aws_types::SdkConfig, stack: &str) -> anyhow::Result<()> {
    if stack_exists(cfg, stack).await? {
        return Ok(());
    }
    bail!(
        "no stack {stack} here (no stored spec, no run in progress, no resource tagged mbstack:stack={stack}): check the name (`mbstack status` lists the stacks), --region and --endpoint-url"
    )
}
