//! The deployment's roles: one per function, the state machine's, EventBridge's
//! and the Scheduler's, each with its inline policy; and the boundary policy that
//! bounds every role the app tier creates.

use super::*;

/// Creates or updates role `role` (trusting `service`) with inline policy `policy`.
pub(super) async fn ensure_role(
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

/// The boundary policy `name` under `/mbstack/`, if it exists.
pub(super) async fn find_role_boundary(
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
pub(super) async fn ensure_role_boundary(
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
            notify_topic_arn: None,
            hosted_zones: None,
            notify_kms_key: None,
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
        notify_topic_arn: None,
        hosted_zones: None,
        notify_kms_key: None,
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

pub(super) fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// Deletes the roles' boundary policy, unless roles of stacks left behind
/// (`undeploy --force`) still carry it: then it stays, and says so.
pub(super) async fn remove_role_boundary(
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
