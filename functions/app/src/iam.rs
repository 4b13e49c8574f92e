//! IAM: the task execution role (pulls the image, writes logs, reads exactly the
//! two secrets) and the task role (no permissions: Metabase calls no AWS API).
//!
//! IAM is eventually consistent: right after creation ECS may answer "unable to
//! assume role"; that is classified retryable (see mbstack-core).

use aws_sdk_iam::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, TierError, Verb, Work};
use serde_json::{json, Value};

use crate::names;

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

/// The two roles: the task execution role (with the managed policy and the
/// secrets policy on `secret_arns`, None while planned) and the task role.
/// Both carry the deployment's permissions `boundary` when it gives one.
pub(crate) struct Roles {
    pub iam: Client,
    pub secret_arns: Option<Vec<String>>,
    pub boundary: Option<String>,
}

/// Which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Execution,
    Task,
}

impl Role {
    pub const BOTH: [Role; 2] = [Role::Execution, Role::Task];

    fn name(self, stack: &str) -> String {
        match self {
            Role::Execution => names::execution_role(stack),
            Role::Task => names::task_role(stack),
        }
    }

    fn tag_role(self) -> &'static str {
        match self {
            Role::Execution => "metabase-execution",
            Role::Task => "metabase-task",
        }
    }
}

/// A role as IAM has it. The execution role's policies are read only in a
/// converge.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    role: Role,
    name: String,
    arn: String,
    tags: Vec<(String, String)>,
    boundary: Option<String>,
    managed_attached: bool,
    secrets_policy: Option<Value>,
}

/// One change in place.
pub(crate) enum Step {
    Boundary(String),
    AttachManaged,
    Secrets(Vec<String>),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Boundary(b) => write!(f, "permissions boundary {b}"),
            Step::AttachManaged => f.write_str("attach AmazonECSTaskExecutionRolePolicy"),
            Step::Secrets(arns) => write!(
                f,
                "allow secretsmanager:GetSecretValue on {}",
                arns.join(", ")
            ),
        }
    }
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

fn managed_policy(role_arn: &str) -> String {
    format!("arn:{}{EXECUTION_POLICY_ARN_SUFFIX}", partition(role_arn))
}

impl Roles {
    async fn attached(&self, name: &str) -> Result<Vec<String>, TierError> {
        Ok(self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| aws_error("iam:ListAttachedRolePolicies", e))?
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect())
    }

    async fn apply(&self, live: &Live, steps: &[Step]) -> Result<(), TierError> {
        for step in steps {
            match step {
                Step::Boundary(b) => {
                    self.iam
                        .put_role_permissions_boundary()
                        .role_name(&live.name)
                        .permissions_boundary(b)
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:PutRolePermissionsBoundary", e))?;
                }
                Step::AttachManaged => {
                    self.iam
                        .attach_role_policy()
                        .role_name(&live.name)
                        .policy_arn(managed_policy(&live.arn))
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:AttachRolePolicy", e))?;
                }
                Step::Secrets(arns) => {
                    self.iam
                        .put_role_policy()
                        .role_name(&live.name)
                        .policy_name(SECRETS_POLICY)
                        .policy_document(secrets_policy(arns).to_string())
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:PutRolePolicy", e))?;
                }
            }
        }
        Ok(())
    }
}

impl Resource for Roles {
    const KIND: &'static str = "iam-role";
    const LABEL: &'static str = "IAM role";
    type Live = Live;
    type Want = Role;
    type Step = Step;

    fn name(&self, w: &Work<'_>, role: &Role) -> String {
        role.name(&w.spec.stack)
    }
    mbstack_core::resource_key!(name: name, id: arn, tags: tags);

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let mut roles = Vec::new();
        for role in Role::BOTH {
            let name = role.name(&w.spec.stack);
            let call = self.iam.get_role().role_name(&name).send().await;
            let Some(out) = found("iam:GetRole", call, &["NoSuchEntity"])? else {
                continue;
            };
            let Some(r) = out.role() else {
                continue;
            };
            let tags: Vec<(String, String)> = r
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            let mut live = Live {
                role,
                name,
                arn: r.arn().to_string(),
                boundary: r
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string),
                managed_attached: false,
                secrets_policy: None,
                tags,
            };
            if role == Role::Execution && w.verb != Verb::Destroy && w.is_ours(&live.tags) {
                let managed = managed_policy(&live.arn);
                live.managed_attached = self.attached(&live.name).await?.contains(&managed);
                if self.secret_arns.is_some() {
                    let call = self
                        .iam
                        .get_role_policy()
                        .role_name(&live.name)
                        .policy_name(SECRETS_POLICY)
                        .send()
                        .await;
                    live.secrets_policy = found("iam:GetRolePolicy", call, &["NoSuchEntity"])?
                        .and_then(|o| parse_policy(o.policy_document()));
                }
            }
            roles.push(live);
        }
        Ok(roles)
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, role: &Role) -> Result<Vec<Step>, TierError> {
        let mut steps = Vec::new();
        if let Some(b) = self
            .boundary
            .as_ref()
            .filter(|b| live.boundary.as_ref() != Some(*b))
        {
            steps.push(Step::Boundary(b.clone()));
        }
        if *role == Role::Execution {
            if !live.managed_attached {
                steps.push(Step::AttachManaged);
            }
            if let Some(arns) = &self.secret_arns {
                if live.secrets_policy.as_ref() != Some(&secrets_policy(arns)) {
                    steps.push(Step::Secrets(arns.clone()));
                }
            }
        }
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, role: &Role) -> String {
        match role {
            Role::Execution => "task execution role: image pull, logs, the two secrets".into(),
            Role::Task => "task role, no permissions".into(),
        }
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        match live.role {
            Role::Execution => "task execution role".into(),
            Role::Task => "task role, no permissions".into(),
        }
    }

    /// The role, then (the execution role) its two policies.
    async fn create(&self, w: &Work<'_>, role: &Role) -> Result<Live, TierError> {
        let name = role.name(&w.spec.stack);
        let tags = w
            .tags(role.tag_role())
            .into_iter()
            .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TierError::Terminal(format!("building IAM tags: {e}")))?;
        let description = match role {
            Role::Execution => "mbstack: ECS task execution role of Metabase",
            Role::Task => "mbstack: Metabase's task role (no permissions)",
        };
        let out = self
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust())
            .description(description)
            .set_permissions_boundary(self.boundary.clone())
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("iam:CreateRole", e))?;
        let live = Live {
            role: *role,
            name,
            arn: out.role().map(|r| r.arn().to_string()).unwrap_or_default(),
            tags: w.tags(role.tag_role()),
            boundary: self.boundary.clone(),
            managed_attached: false,
            secrets_policy: None,
        };
        let steps = self.diff(w, &live, role)?;
        self.apply(&live, &steps).await?;
        Ok(live)
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        _role: &Role,
        steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        self.apply(live, steps).await?;
        Ok(None)
    }

    /// Its policies first, as IAM requires.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        for policy in self.attached(&live.name).await? {
            self.iam
                .detach_role_policy()
                .role_name(&live.name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| aws_error("iam:DetachRolePolicy", e))?;
        }
        let inline = self
            .iam
            .list_role_policies()
            .role_name(&live.name)
            .send()
            .await
            .map_err(|e| aws_error("iam:ListRolePolicies", e))?;
        for p in inline.policy_names() {
            self.iam
                .delete_role_policy()
                .role_name(&live.name)
                .policy_name(p)
                .send()
                .await
                .map_err(|e| aws_error("iam:DeleteRolePolicy", e))?;
        }
        self.iam
            .delete_role()
            .role_name(&live.name)
            .send()
            .await
            .map_err(|e| aws_error("iam:DeleteRole", e))?;
        Ok(Deleted::Now)
    }
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

    const DB_SECRET: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-1-AbCdEf";
    const KEY_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:mbstack/s/metabase-encryption-key-GhIjKl";
    const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/mbstack-boundary";

    fn iam() -> Client {
        Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
                .region(aws_sdk_iam::config::Region::new("us-east-1"))
                .build(),
        )
    }

    /// The roles of a stack whose database and key secrets are known, under
    /// the deployment's boundary.
    fn roles() -> Roles {
        Roles {
            iam: iam(),
            secret_arns: Some(vec![DB_SECRET.to_string(), KEY_SECRET.to_string()]),
            boundary: Some(BOUNDARY.to_string()),
        }
    }

    /// The execution role as IAM has it once set up: the boundary, the
    /// managed policy, and GetSecretValue on `secrets`.
    fn execution_role(secrets: &[&str]) -> Live {
        Live {
            role: Role::Execution,
            name: names::execution_role("s"),
            arn: "arn:aws:iam::111122223333:role/s-metabase-execution".into(),
            tags: Vec::new(),
            boundary: Some(BOUNDARY.to_string()),
            managed_attached: true,
            secrets_policy: Some(serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secrets
                }]
            })),
        }
    }

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_execution_role_reading_exactly_the_two_secrets_needs_nothing() {
        let spec = mbstack_core::StackSpec::new("s");
        let run = mbstack_core::Run {
            id: "run-1".into(),
            scope: mbstack_core::Scope::Stack,
        };
        let w = Work::new(mbstack_core::Tier::App, &spec, &run, Verb::Apply);
        let live = execution_role(&[DB_SECRET, KEY_SECRET]);
        let steps = roles().diff(&w, &live, &Role::Execution).unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn an_execution_role_on_an_old_secret_without_the_managed_policy_is_fixed() {
        let spec = mbstack_core::StackSpec::new("s");
        let run = mbstack_core::Run {
            id: "run-1".into(),
            scope: mbstack_core::Scope::Stack,
        };
        let w = Work::new(mbstack_core::Tier::App, &spec, &run, Verb::Apply);
        let old_db = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-0-ZyXwVu";
        let mut live = execution_role(&[old_db, KEY_SECRET]);
        live.managed_attached = false;
        let steps = roles().diff(&w, &live, &Role::Execution).unwrap();
        assert_eq!(
            shown(&steps),
            vec![
                "attach AmazonECSTaskExecutionRolePolicy".to_string(),
                format!("allow secretsmanager:GetSecretValue on {DB_SECRET}, {KEY_SECRET}"),
            ]
        );
    }

    #[test]
    fn a_task_role_without_the_boundary_gets_it_and_no_policy() {
        let spec = mbstack_core::StackSpec::new("s");
        let run = mbstack_core::Run {
            id: "run-1".into(),
            scope: mbstack_core::Scope::Stack,
        };
        let w = Work::new(mbstack_core::Tier::App, &spec, &run, Verb::Apply);
        let live = Live {
            role: Role::Task,
            name: names::task_role("s"),
            arn: "arn:aws:iam::111122223333:role/s-metabase-task".into(),
            tags: Vec::new(),
            boundary: None,
            managed_attached: false,
            secrets_policy: None,
        };
        let steps = roles().diff(&w, &live, &Role::Task).unwrap();
        assert_eq!(
            shown(&steps),
            vec![format!("permissions boundary {BOUNDARY}")]
        );
    }
}
