//! Word of a run that failed, for runs nobody watches (schedules at night):
//! when the deployment has a notification topic (`mbstack deploy --notify`), a
//! run that fails — refused before it started, rolled back, or whose rollback
//! failed — publishes one message to it: the stack, the action, the cause, what
//! the rollback did, and the execution's console link. A run that succeeds
//! publishes nothing. Never a secret: the message is made of the outcomes'
//! changes (IDs and ARNs) and the error the execution fails with.

use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, TierError};
use serde_json::Value;

pub use mbstack_core::contract::NOTIFY_TOPIC_PLACEHOLDER as TOPIC_PLACEHOLDER;

/// SNS takes subjects of at most 100 printable ASCII characters (the
/// emulator refuses others, as AWS does).
const SUBJECT_MAX: usize = 99;

/// The console page of an execution (its region is in its ARN).
pub fn console_link(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    let host = if execution_arn.starts_with("arn:aws-cn:") {
        format!("console.amazonaws.cn/states/home?region={region}")
    } else if execution_arn.starts_with("arn:aws-us-gov:") {
        format!("console.amazonaws-us-gov.com/states/home?region={region}")
    } else {
        format!("{region}.console.aws.amazon.com/states/home?region={region}")
    };
    format!("https://{host}#/v2/executions/details/{execution_arn}")
}

fn ascii_line(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    s.truncate(max);
    s
}

/// The subject and body of the message about a failed run.
///
/// `stack` and `action` as the run was asked; `failure`: the `Error` and
/// `Cause` the execution fails with; `changes`: what the run's rollback did
/// (each `{tier, kind, id, action}`; empty when nothing had been created).
pub fn message(
    stack: &str,
    action: &str,
    execution_arn: &str,
    failure: &Value,
    changes: &[Value],
) -> (String, String) {
    let error = failure.get("Error").and_then(Value::as_str).unwrap_or("");
    let cause = readable(failure.get("Cause").and_then(Value::as_str).unwrap_or(""));
    let outcome = match error {
        "RollbackFailed" => "its rollback FAILED: resources may be left",
        "Mbstack.InvalidSpec" | "Mbstack.Locked" | "Mbstack.Busy" => {
            "refused before anything was touched"
        }
        _ if changes.is_empty() => "failed; nothing was left to undo",
        _ => "failed and was rolled back",
    };
    let stack_or = if stack.is_empty() {
        "(no stack)"
    } else {
        stack
    };
    let subject = ascii_line(
        &format!("mbstack: {action} of {stack_or} failed ({error})"),
        SUBJECT_MAX,
    );
    let mut body = format!(
        "The mbstack run {action} of stack {stack_or} {outcome}.\n\nError: {error}\nCause: {cause}\n"
    );
    if !changes.is_empty() {
        body.push_str("\nWhat the rollback did:\n");
        for c in changes {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            let detail = match s("detail") {
                "" => String::new(),
                d => format!(": {d}"),
            };
            body.push_str(&format!(
                "  {} {} {} ({}){detail}\n",
                s("action"),
                s("kind"),
                s("id"),
                s("tier")
            ));
        }
    }
    body.push_str(&format!(
        "\nThe execution: {}\nIts history shows every step; `mbstack status {stack_or}` shows the stack.\n",
        console_link(execution_arn)
    ));
    (subject, printable(&body))
}

/// A cause as people read it: a Lambda error's JSON
/// (`{"errorType": …, "errorMessage": …}`), whole or inside a longer cause
/// (a failed rollback's), becomes its message.
fn readable(cause: &str) -> String {
    let mut out = String::new();
    let mut rest = cause;
    while let Some(at) = rest.find('{') {
        let mut values = serde_json::Deserializer::from_str(&rest[at..]).into_iter::<Value>();
        let message = match values.next() {
            Some(Ok(v)) => v
                .get("errorMessage")
                .and_then(Value::as_str)
                .map(|m| (readable(m), values.byte_offset())),
            _ => None,
        };
        match message {
            Some((m, len)) => {
                out.push_str(&rest[..at]);
                out.push_str(&m);
                rest = &rest[at + len..];
            }
            None => {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with every control character but the line break written as an
/// escape: a refused run's stack name is whatever its input held.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Publishes the message to `topic` (skipped when `topic` is empty or still
/// the placeholder: notifications are off).
pub async fn publish(
    sns: &aws_sdk_sns::Client,
    topic: &str,
    (subject, body): (String, String),
) -> Result<bool, TierError> {
    if topic.is_empty() || topic == TOPIC_PLACEHOLDER {
        return Ok(false);
    }
    sns.publish()
        .topic_arn(topic)
        .subject(subject)
        .message(body)
        .send()
        .await
        .map_err(|e| aws_error("sns:Publish", e))?;
    Ok(true)
}

/// The IAM permissions of the calls in this file: the deployment's topic only
/// (the statement is left out of a deployment without notifications).
pub(crate) const PERMISSIONS: &[Permission] = &[Permission::on(
    "Notify",
    &["sns:Publish"],
    &[TOPIC_PLACEHOLDER],
)];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rolled_back_run_names_its_cause_what_was_undone_and_its_execution() {
        let arn = "arn:aws:states:eu-west-1:123456789012:execution:mbstack-provision:nightly-1";
        let (subject, body) = message(
            "analytics",
            "apply",
            arn,
            &json!({"Error": "Mbstack.ResourceFailed", "Cause": "the deployment of td:7 failed: CannotPullContainerError"}),
            &[json!({"tier": "app", "kind": "service", "id": "metabase", "action": "delete"})],
        );
        assert_eq!(
            subject,
            "mbstack: apply of analytics failed (Mbstack.ResourceFailed)"
        );
        for part in [
            "failed and was rolled back",
            "CannotPullContainerError",
            "delete service metabase (app)",
            "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:",
        ] {
            assert!(body.contains(part), "{part} not in {body}");
        }
    }

    /// SNS: a subject "must be less than 100 characters long" (Publish's
    /// API reference), however long the stack's name and the error's.
    #[test]
    fn the_subject_stays_under_100_characters() {
        let (subject, _) = message(
            "a-stack-name-of-28-chars-xyz",
            "destroy",
            "arn:aws:states:eu-west-1:123456789012:execution:mbstack-provision:x",
            &json!({"Error": "Lambda.ClientExecutionTimeoutException.AndSomeMore.Beyond.Anything.AWS.Names", "Cause": ""}),
            &[],
        );
        assert!(
            subject.chars().count() < 100,
            "{} characters: {subject}",
            subject.chars().count()
        );
    }

    #[test]
    fn a_lambda_error_cause_reads_as_its_message_whole_or_inside_another() {
        let lambda = r#"{"errorType":"Mbstack.ResourceFailed","errorMessage":"the deployment failed: \"exit code 1\"","trace":[]}"#;
        let (_, body) = message(
            "s",
            "apply",
            "arn:aws:states:us-east-1:1:execution:m:x",
            &json!({"Error": "Mbstack.ResourceFailed", "Cause": lambda}),
            &[],
        );
        assert!(
            body.contains("Cause: the deployment failed: \"exit code 1\"\n"),
            "{body}"
        );
        assert!(!body.contains("errorMessage"), "{body}");
        let nested = format!("The rollback of run r failed: Lambda.Unknown: {lambda}. Resources tagged {{x}} may be left");
        assert_eq!(
            readable(&nested),
            "The rollback of run r failed: Lambda.Unknown: the deployment failed: \"exit code 1\". Resources tagged {x} may be left"
        );
        assert_eq!(readable("plain {not json"), "plain {not json");
    }

    #[test]
    fn the_subject_is_what_sns_takes() {
        let (subject, _) = message(
            &"s".repeat(90),
            "apply",
            "arn:aws:states:us-east-1:1:execution:m:x",
            &json!({"Error": "RollbackFailed\n", "Cause": "x"}),
            &[],
        );
        assert!(subject.len() <= 100, "{subject}");
        assert!(subject.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }
}
