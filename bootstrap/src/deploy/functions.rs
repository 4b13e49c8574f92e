//! The Lambda functions: created or brought up to date (code by SHA-256,
//! configuration), and waited for until AWS would run them.

use super::build::sha256_b64;
use super::*;

/// Waits until the function is neither `Pending` (just created) nor in the
/// middle of an update (`LastUpdateStatus: InProgress`): AWS refuses the next
/// update (ResourceConflictException) or invocation until then.
pub(super) async fn settled(
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

pub(super) async fn ensure_function(
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
