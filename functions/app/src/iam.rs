//! IAM: the task execution role (pulls the image, writes logs, reads exactly the
//! two secrets) and the task role (no permissions: Metabase calls no AWS API).
//!
//! IAM is eventually consistent: right after creation ECS may answer "unable to
//! assume role"; that is classified retryable (see mbstack-core).

use aws_sdk_iam::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, Action, TierError, Work};
use serde_json::{json, Value};

use crate::names;

pub(crate) const KIND: &str = "iam-role";
pub const EXECUTION_POLICY_ARN_SUFFIX: &str =
    ":iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
pub const SECRETS_POLICY: &str = "mbstack-read-secrets";

fn trust() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    })
    .to_string()
}

/// The inline policy of the execution role: GetSecretValue on exactly these ARNs.
pub fn secrets_policy(secret_arns: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arns}]
    })
}

/// IAM returns policy documents URL-encoded; moto sometimes does not.
pub fn parse_policy(doc: &str) -> Option<Value> {
    serde_json::from_str(doc)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(doc)).ok())
}

/// A URL-encoded text (`+` for a space, as IAM's answers have it).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A role of ours: its ARN, tags and permissions boundary, if it exists.
type Found = (String, Vec<(String, String)>, Option<String>);

async fn find(iam: &Client, w: &Work<'_>, name: &str) -> Result<Option<Found>, TierError> {
    let out = match iam.get_role().role_name(name).send().await {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(aws_error("iam:GetRole", e)),
    };
    let Some(role) = out.role() else {
        return Ok(None);
    };
    let tags: Vec<(String, String)> = role
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    if !w.is_ours(&tags) {
        return Err(w.not_ours("IAM role", name));
    }
    let boundary = role
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_string);
    Ok(Some((role.arn().to_string(), tags, boundary)))
}

/// Puts the deployment's permissions boundary on an existing role that lacks it.
async fn bound(
    iam: &Client,
    w: &Work<'_>,
    name: &str,
    have: Option<&str>,
    want: Option<&str>,
    steps: &mut Vec<String>,
) -> Result<(), TierError> {
    let Some(want) = want else { return Ok(()) };
    if have == Some(want) {
        return Ok(());
    }
    if !w.dry_run {
        iam.put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(want)
            .send()
            .await
            .map_err(|e| aws_error("iam:PutRolePermissionsBoundary", e))?;
    }
    steps.push(format!("permissions boundary {want}"));
    Ok(())
}

async fn create(
    iam: &Client,
    w: &Work<'_>,
    name: &str,
    role: &str,
    description: &str,
    boundary: Option<&str>,
) -> Result<String, TierError> {
    let tags = w
        .tags(role)
        .into_iter()
        .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TierError::Terminal(format!("building IAM tags: {e}")))?;
    let out = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust())
        .description(description)
        .set_permissions_boundary(boundary.map(str::to_string))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| aws_error("iam:CreateRole", e))?;
    Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

/// Finds or creates both roles; converges the execution role's policies and
/// both roles' permissions boundary (`boundary`, from the deployment). Returns
/// (execution role ARN, task role ARN), None where planned.
pub(crate) async fn ensure(
    iam: &Client,
    w: &mut Work<'_>,
    secret_arns: Option<&[String]>,
    boundary: Option<&str>,
    propagation: std::time::Duration,
) -> Result<(Option<String>, Option<String>), TierError> {
    let exec_name = names::execution_role(&w.spec.stack);
    let task_name = names::task_role(&w.spec.stack);

    let exec = match find(iam, w, &exec_name).await? {
        Some((arn, _, have)) => Some((arn, false, have)),
        None if w.dry_run => {
            w.record(
                KIND,
                &exec_name,
                Action::Create,
                "task execution role: image pull, logs, the two secrets",
            );
            None
        }
        None => Some((
            create(
                iam,
                w,
                &exec_name,
                "metabase-execution",
                "mbstack: ECS task execution role of Metabase",
                boundary,
            )
            .await?,
            true,
            boundary.map(str::to_string),
        )),
    };
    if let Some((arn, created, have)) = &exec {
        let mut steps = Vec::new();
        bound(iam, w, &exec_name, have.as_deref(), boundary, &mut steps).await?;
        let managed = format!("arn:{}{EXECUTION_POLICY_ARN_SUFFIX}", partition(arn));
        let attached = if *created {
            false
        } else {
            iam.list_attached_role_policies()
                .role_name(&exec_name)
                .send()
                .await
                .map_err(|e| aws_error("iam:ListAttachedRolePolicies", e))?
                .attached_policies()
                .iter()
                .any(|p| p.policy_arn() == Some(managed.as_str()))
        };
        if !attached {
            if !w.dry_run {
                iam.attach_role_policy()
                    .role_name(&exec_name)
                    .policy_arn(&managed)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam:AttachRolePolicy", e))?;
            }
            steps.push("attach AmazonECSTaskExecutionRolePolicy".to_string());
        }
        if let Some(arns) = secret_arns {
            let want = secrets_policy(arns);
            let have = if *created {
                None
            } else {
                match iam
                    .get_role_policy()
                    .role_name(&exec_name)
                    .policy_name(SECRETS_POLICY)
                    .send()
                    .await
                {
                    Ok(o) => parse_policy(o.policy_document()),
                    Err(e) if error_code(&e) == Some("NoSuchEntity") => None,
                    Err(e) => return Err(aws_error("iam:GetRolePolicy", e)),
                }
            };
            if have.as_ref() != Some(&want) {
                if !w.dry_run {
                    iam.put_role_policy()
                        .role_name(&exec_name)
                        .policy_name(SECRETS_POLICY)
                        .policy_document(want.to_string())
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:PutRolePolicy", e))?;
                }
                steps.push(format!(
                    "allow secretsmanager:GetSecretValue on {}",
                    arns.join(", ")
                ));
            }
        }
        let action = match (*created, steps.is_empty()) {
            (true, _) => Action::Create,
            (false, true) => Action::None,
            (false, false) => Action::Update,
        };
        let detail = if steps.is_empty() {
            "task execution role".to_string()
        } else {
            steps.join("; ")
        };
        w.record(KIND, arn, action, detail);
    }

    let task = match find(iam, w, &task_name).await? {
        Some((arn, _, have)) => {
            let mut steps = Vec::new();
            bound(iam, w, &task_name, have.as_deref(), boundary, &mut steps).await?;
            match steps.is_empty() {
                true => w.record(KIND, &arn, Action::None, "task role, no permissions"),
                false => w.record(KIND, &arn, Action::Update, steps.join("; ")),
            }
            Some(arn)
        }
        None if w.dry_run => {
            w.record(
                KIND,
                &task_name,
                Action::Create,
                "task role, no permissions",
            );
            None
        }
        None => {
            let arn = create(
                iam,
                w,
                &task_name,
                "metabase-task",
                "mbstack: Metabase's task role (no permissions)",
                boundary,
            )
            .await?;
            w.record(KIND, &arn, Action::Create, "task role, no permissions");
            Some(arn)
        }
    };
    let created = w
        .changes
        .iter()
        .any(|c| c.kind == KIND && c.action == Action::Create);
    if created && !w.dry_run {
        // ECS cannot assume a role IAM has not propagated yet: its tasks would fail
        // to start ("ECS was unable to assume the role") and the circuit breaker
        // would fail the deployment. A new role gets IAM's time before ECS uses it.
        tracing::info!(
            seconds = propagation.as_secs_f64(),
            "new roles: giving IAM time to propagate them before ECS uses them"
        );
        tokio::time::sleep(propagation).await;
    }
    Ok((exec.map(|(a, _, _)| a), task))
}

/// Deletes both roles destroy owns, with their policies.
pub(crate) async fn delete(iam: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    for name in [
        names::execution_role(&w.spec.stack),
        names::task_role(&w.spec.stack),
    ] {
        let Some((arn, tags, _)) = find(iam, w, &name).await? else {
            continue;
        };
        if !w.owns(&tags) {
            continue;
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .map_err(|e| aws_error("iam:ListAttachedRolePolicies", e))?;
        for p in attached.attached_policies() {
            if let Some(policy) = p.policy_arn() {
                iam.detach_role_policy()
                    .role_name(&name)
                    .policy_arn(policy)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam:DetachRolePolicy", e))?;
            }
        }
        let inline = iam
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
            .map_err(|e| aws_error("iam:ListRolePolicies", e))?;
        for p in inline.policy_names() {
            iam.delete_role_policy()
                .role_name(&name)
                .policy_name(p)
                .send()
                .await
                .map_err(|e| aws_error("iam:DeleteRolePolicy", e))?;
        }
        iam.delete_role()
            .role_name(&name)
            .send()
            .await
            .map_err(|e| aws_error("iam:DeleteRole", e))?;
        w.record(KIND, arn, Action::Delete, name);
    }
    Ok(())
}

/// The two roles of every stack's Metabase tasks.
const ROLE_ARNS: &[&str] = &[
    "arn:${Partition}:iam::*:role/*-metabase-execution",
    "arn:${Partition}:iam::*:role/*-metabase-task",
];

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::on(
        "ReadRoles",
        &["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"],
        ROLE_ARNS,
    ),
    // Every role this tier creates or changes carries the deployment's
    // permissions boundary: whatever policy it gets, it can do no more.
    Permission::on(
        "BoundedRoles",
        &["iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
        ROLE_ARNS,
    )
    .when(r#"{"StringEquals": {"iam:PermissionsBoundary": "${RoleBoundaryArn}"}}"#),
    Permission::on(
        "ChangeRoles",
        &["iam:TagRole", "iam:DeleteRolePolicy", "iam:DeleteRole"],
        ROLE_ARNS,
    ),
    // The one managed policy the execution role gets.
    Permission::on("ExecutionPolicy", &["iam:AttachRolePolicy", "iam:DetachRolePolicy"], ROLE_ARNS).when(
        r#"{"ArnEquals": {"iam:PolicyARN": "arn:${Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}}"#,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_policies() {
        let want = secrets_policy(&["arn:aws:secretsmanager:us-east-1:1:secret:a".into()]);
        let encoded = want
            .to_string()
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace(':', "%3A")
            .replace('"', "%22");
        assert_eq!(parse_policy(&encoded), Some(want.clone()));
        assert_eq!(parse_policy(&want.to_string()), Some(want));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%a\u{e9}+b"), "%a\u{e9} b");
    }
}
