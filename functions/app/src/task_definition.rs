//! The task definition (family `<stack>-metabase`): Fargate, awsvpc, the pinned
//! image on :3000, Metabase's database settings, its two secrets by ARN, JSON logs
//! to CloudWatch, and a heap of 75 % of the task memory (the rest is for the JVM's
//! own overhead; more gets the task OOM-killed with exit 137). A new revision is
//! registered only when something it holds changed.

use mbstack_core::iam::Permission;
use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture as EcsArch, KeyValuePair, LogConfiguration,
    LogDriver, NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret, TaskDefinition,
    TaskDefinitionField, TransportProtocol,
};
use aws_sdk_ecs::Client;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::spec::CpuArchitecture;
use mbstack_core::{aws_error, found, TierError, Verb, Work};
use serde_json::{json, Value};

use crate::ecs_tags::pairs;
use crate::names;

pub const PORT: i32 = 3000;
/// Fargate's maximum: Metabase gets up to 2 minutes to shut down cleanly.
pub const STOP_TIMEOUT: i32 = 120;

/// Everything the task definition is made from.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub image: String,
    pub cpu: String,
    pub memory: String,
    pub arch: CpuArchitecture,
    pub execution_role: String,
    pub task_role: String,
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    pub log_group: String,
    pub region: String,
}

/// The JVM heap for a task of `memory_mib`: 75 %.
pub fn heap_mib(memory_mib: u32) -> u32 {
    memory_mib * 3 / 4
}

pub(crate) struct DbInputs {
    pub host: String,
    pub port: String,
    pub name: String,
    pub user: String,
    pub secret_arn: String,
}

pub(crate) fn wanted(
    w: &Work<'_>,
    db: &DbInputs,
    key_secret: &str,
    roles: (&str, &str),
    log_group: &str,
    region: &str,
) -> Wanted {
    let a = &w.spec.app;
    let mut env: BTreeMap<String, String> = [
        ("MB_DB_TYPE", "postgres".to_string()),
        ("MB_DB_HOST", db.host.clone()),
        ("MB_DB_PORT", db.port.clone()),
        ("MB_DB_DBNAME", db.name.clone()),
        ("MB_DB_USER", db.user.clone()),
        ("JAVA_TIMEZONE", a.timezone.clone()),
        (
            "JAVA_OPTS",
            format!("-Xmx{}m -XX:+ExitOnOutOfMemoryError", heap_mib(a.memory)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Metabase's own address (links in e-mails and Slack messages, SSO
    // redirects): the stack's domain, served over HTTPS by the load balancer.
    if let Some(domain) = &w.spec.load_balancer.domain {
        env.insert("MB_SITE_URL".into(), format!("https://{domain}"));
    }
    let secrets: BTreeMap<String, String> = [
        ("MB_DB_PASS", format!("{}:password::", db.secret_arn)),
        ("MB_ENCRYPTION_SECRET_KEY", key_secret.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Wanted {
        image: a.image.clone(),
        cpu: a.cpu.to_string(),
        memory: a.memory.to_string(),
        arch: a.cpu_architecture,
        execution_role: roles.0.to_string(),
        task_role: roles.1.to_string(),
        env,
        secrets,
        log_group: log_group.to_string(),
        region: region.to_string(),
    }
}

fn arch_str(a: CpuArchitecture) -> &'static str {
    match a {
        CpuArchitecture::X86_64 => "X86_64",
        CpuArchitecture::Arm64 => "ARM64",
    }
}

/// The fields we manage, as comparable JSON.
fn canonical_wanted(x: &Wanted) -> Value {
    json!({
        "image": x.image, "cpu": x.cpu, "memory": x.memory, "cpuArchitecture": arch_str(x.arch),
        "executionRoleArn": x.execution_role, "taskRoleArn": x.task_role,
        "environment": x.env, "secrets": x.secrets,
        "logGroup": x.log_group, "logRegion": x.region,
        "port": PORT, "stopTimeout": STOP_TIMEOUT,
    })
}

fn canonical_live(td: &TaskDefinition) -> Value {
    let c = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(crate::names::CONTAINER));
    let env: BTreeMap<&str, &str> = c
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|e| Some((e.name()?, e.value()?)))
                .collect()
        })
        .unwrap_or_default();
    let secrets: BTreeMap<&str, &str> = c
        .map(|c| {
            c.secrets()
                .iter()
                .map(|s| (s.name(), s.value_from()))
                .collect()
        })
        .unwrap_or_default();
    let log = c
        .and_then(|c| c.log_configuration())
        .map(|l| l.options().cloned().unwrap_or_default())
        .unwrap_or_default();
    json!({
        "image": c.and_then(|c| c.image()), "cpu": td.cpu(), "memory": td.memory(),
        "cpuArchitecture": td.runtime_platform().and_then(|r| r.cpu_architecture()).map(|a| a.as_str()).unwrap_or("X86_64"),
        "executionRoleArn": td.execution_role_arn(), "taskRoleArn": td.task_role_arn(),
        "environment": env, "secrets": secrets,
        "logGroup": log.get("awslogs-group"), "logRegion": log.get("awslogs-region"),
        "port": c.and_then(|c| c.port_mappings().first()).and_then(|p| p.container_port()),
        "stopTimeout": c.and_then(|c| c.stop_timeout()),
    })
}

/// What changed between two canonical forms, for people: `image a → b; memory 2048 → 4096`.
fn diff(old: &Value, new: &Value) -> String {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return String::new();
    };
    let show = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "unset".into(),
    };
    n.iter()
        .filter(|(k, v)| o.get(*k) != Some(v))
        .map(|(k, v)| match (o.get(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => {
                let keys: Vec<&String> = b
                    .keys()
                    .chain(a.keys())
                    .filter(|x| a.get(*x) != b.get(*x))
                    .collect();
                let mut keys: Vec<&String> = keys.into_iter().collect();
                keys.sort();
                keys.dedup();
                format!(
                    "{k}: {}",
                    keys.iter()
                        .map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            (old, new) => format!("{k} {} → {}", show(old), show(Some(new))),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What revision `live` holds, as a [`Wanted`] (None: not ours to read: no
/// Metabase container, or a field it must have is missing).
pub(crate) fn wanted_from(live: &Live) -> Option<Wanted> {
    let td = &live.td;
    let c = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(crate::names::CONTAINER))?;
    let log = c.log_configuration()?.options()?;
    Some(Wanted {
        image: c.image()?.to_string(),
        cpu: td.cpu()?.to_string(),
        memory: td.memory()?.to_string(),
        arch: match td.runtime_platform().and_then(|r| r.cpu_architecture()) {
            Some(EcsArch::Arm64) => CpuArchitecture::Arm64,
            _ => CpuArchitecture::X86_64,
        },
        execution_role: td.execution_role_arn()?.to_string(),
        task_role: td.task_role_arn()?.to_string(),
        env: c
            .environment()
            .iter()
            .filter_map(|e| Some((e.name()?.to_string(), e.value()?.to_string())))
            .collect(),
        secrets: c
            .secrets()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect(),
        log_group: log.get("awslogs-group")?.clone(),
        region: log.get("awslogs-region")?.clone(),
    })
}

/// `x` with the database `db` in place of the one it names.
pub(crate) fn on_database(mut x: Wanted, db: &DbInputs) -> Wanted {
    for (k, v) in [
        ("MB_DB_HOST", &db.host),
        ("MB_DB_PORT", &db.port),
        ("MB_DB_DBNAME", &db.name),
        ("MB_DB_USER", &db.user),
    ] {
        x.env.insert(k.to_string(), v.clone());
    }
    x.secrets
        .insert("MB_DB_PASS".into(), format!("{}:password::", db.secret_arn));
    x
}

/// The tags of revision `live`.
pub(crate) fn tags_of(live: &Live) -> Vec<(String, String)> {
    live.tags.clone()
}

/// Whether revision `live` already holds `x`.
pub(crate) fn holds(live: &Live, x: &Wanted) -> bool {
    canonical_live(&live.td) == canonical_wanted(x)
}

/// The family's revisions. A revision never changes: a converge compares the
/// latest ACTIVE one with what the spec asks for and registers a new one when
/// they differ (its update replaces it); a destroy deregisters every ACTIVE
/// revision it owns.
pub(crate) struct TaskDefinitions {
    pub ecs: Client,
}

/// What the revision must hold (None: inputs planned, a DB or role not created
/// yet, so a new revision will follow).
pub(crate) struct Want(pub Option<Wanted>);

/// A revision with its tags.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    td: TaskDefinition,
    tags: Vec<(String, String)>,
}

/// A new revision: what changes (for people).
pub(crate) struct Revise(String);

impl std::fmt::Display for Revise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The family's ACTIVE revisions (`family_prefix` also matches longer
/// families: only ours), highest revision first. Listed, not described by
/// family alone: moto answers that with the latest revision even when it was
/// deregistered (a rolled-back update's).
async fn active(ecs: &Client, family: &str) -> Result<Vec<String>, TierError> {
    let listed = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .send()
        .await
        .map_err(|e| aws_error("ecs:ListTaskDefinitions", e))?;
    let revision = |a: &String| {
        a.rsplit(':')
            .next()
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut arns: Vec<String> = listed
        .task_definition_arns()
        .iter()
        .filter(|a| {
            a.rsplit('/')
                .next()
                .and_then(|fr| fr.rsplit_once(':'))
                .map(|(f, _)| f)
                == Some(family)
        })
        .cloned()
        .collect();
    arns.sort_by_key(|a| std::cmp::Reverse(revision(a)));
    Ok(arns)
}

pub(crate) async fn describe_revision(ecs: &Client, arn: &str) -> Result<Option<Live>, TierError> {
    let call = ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    let codes = ["ClientException", "ClientError"];
    Ok(
        found("ecs:DescribeTaskDefinition", call, &codes)?.and_then(|o| {
            let tags = pairs(o.tags());
            o.task_definition().cloned().map(|td| Live { td, tags })
        }),
    )
}

impl TaskDefinitions {
    async fn register(&self, w: &Work<'_>, x: &Wanted) -> Result<Live, TierError> {
        self.register_tagged(w, x, w.tags("metabase")).await
    }

    /// A revision of `x` with `tags` (a return from an upgrade keeps the tags
    /// of the revision it replaces: not this failed run's, whose rollback is
    /// over).
    pub(crate) async fn register_tagged(
        &self,
        w: &Work<'_>,
        x: &Wanted,
        tags: Vec<(String, String)>,
    ) -> Result<Live, TierError> {
        let build = |e: aws_sdk_ecs::error::BuildError| {
            TierError::Terminal(format!("building the task definition: {e}"))
        };
        let log = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &x.log_group)
            .options("awslogs-region", &x.region)
            .options("awslogs-stream-prefix", "metabase")
            .build()
            .map_err(build)?;
        let mut container = ContainerDefinition::builder()
            .name(names::CONTAINER)
            .image(&x.image)
            .essential(true)
            .port_mappings(
                PortMapping::builder()
                    .container_port(PORT)
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            )
            .log_configuration(log)
            .stop_timeout(STOP_TIMEOUT);
        for (k, v) in &x.env {
            container = container.environment(KeyValuePair::builder().name(k).value(v).build());
        }
        for (k, v) in &x.secrets {
            container = container.secrets(
                Secret::builder()
                    .name(k)
                    .value_from(v)
                    .build()
                    .map_err(build)?,
            );
        }
        let arch = match x.arch {
            CpuArchitecture::X86_64 => EcsArch::X8664,
            CpuArchitecture::Arm64 => EcsArch::Arm64,
        };
        let out = self
            .ecs
            .register_task_definition()
            .family(names::family(&w.spec.stack))
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(&x.cpu)
            .memory(&x.memory)
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(arch)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .execution_role_arn(&x.execution_role)
            .task_role_arn(&x.task_role)
            .container_definitions(container.build())
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| aws_error("ecs:RegisterTaskDefinition", e))?;
        let td = out.task_definition().cloned().ok_or_else(|| {
            TierError::Terminal("ecs:RegisterTaskDefinition returned no task definition".into())
        })?;
        Ok(Live { td, tags })
    }
}

impl Resource for TaskDefinitions {
    const KIND: &'static str = "task-definition";
    const LABEL: &'static str = "task definition";
    type Live = Live;
    type Want = Want;
    type Step = Revise;

    fn name(&self, w: &Work<'_>, _want: &Want) -> String {
        names::family(&w.spec.stack)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        live.td.family().map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.td
            .task_definition_arn()
            .unwrap_or_default()
            .to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    /// A destroy: every ACTIVE revision of the family. Otherwise the latest
    /// ACTIVE one, described by the family's name alone (one call: AWS answers
    /// a family with its latest ACTIVE revision).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let family = names::family(&w.spec.stack);
        if w.verb != Verb::Destroy {
            return Ok(describe_revision(&self.ecs, &family)
                .await?
                .into_iter()
                .collect());
        }
        let mut revisions = Vec::new();
        for arn in active(&self.ecs, &family).await? {
            revisions.extend(describe_revision(&self.ecs, &arn).await?);
        }
        Ok(revisions)
    }

    fn diff(&self, w: &Work<'_>, live: &Live, want: &Want) -> Result<Vec<Revise>, TierError> {
        let Some(want) = &want.0 else {
            return Ok(vec![Revise(format!("image {}", w.spec.app.image))]);
        };
        let old = canonical_live(&live.td);
        let new = canonical_wanted(want);
        Ok(if old == new {
            vec![]
        } else {
            vec![Revise(diff(&old, &new))]
        })
    }

    fn describe(&self, w: &Work<'_>, _want: &Want) -> String {
        format!("image {}", w.spec.app.image)
    }
    fn summary(&self, w: &Work<'_>, _live: &Live) -> String {
        format!("image {}", w.spec.app.image)
    }

    async fn create(&self, w: &Work<'_>, want: &Want) -> Result<Live, TierError> {
        let Some(want) = &want.0 else {
            return Err(TierError::Terminal(
                "the task definition needs the database, the key secret and the roles".into(),
            ));
        };
        self.register(w, want).await
    }

    /// A new revision (the old one stays registered: a rollback puts it back).
    async fn update(
        &self,
        w: &Work<'_>,
        _live: &Live,
        want: &Want,
        _steps: &[Revise],
    ) -> Result<Option<Live>, TierError> {
        self.create(w, want).await.map(Some)
    }

    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.ecs
            .deregister_task_definition()
            .task_definition(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("ecs:DeregisterTaskDefinition", e))?;
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, _w: &Work<'_>, _live: &Live) -> String {
        "deregistered".into()
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    // DescribeTaskDefinition, ListTaskDefinitions and DeregisterTaskDefinition
    // take no resource and no condition key: `*` is all AWS offers.
    Permission::read(
        "Read",
        &["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"],
    ),
    Permission::create_tagged("CreateTagged", &["ecs:RegisterTaskDefinition"]),
    Permission {
        sid: "DeregisterTaskDefinition",
        actions: &["ecs:DeregisterTaskDefinition"],
        resources: mbstack_core::iam::Resources::Any,
        condition: mbstack_core::iam::Condition::None,
    },
    Permission::on(
        "PassRolesToTasks",
        &["iam:PassRole"],
        &[
            "arn:${Partition}:iam::*:role/*-metabase-execution",
            "arn:${Partition}:iam::*:role/*-metabase-task",
        ],
    )
    .when(r#"{"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}"#),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ecs, run};

    #[test]
    fn heap_is_three_quarters() {
        assert_eq!(heap_mib(2048), 1536);
        assert_eq!(heap_mib(4096), 3072);
    }

    #[test]
    fn diff_names_what_changed() {
        let a = json!({"image": "m:v1", "memory": "2048", "environment": {"A": "1", "B": "2"}});
        let b = json!({"image": "m:v2", "memory": "2048", "environment": {"A": "1", "B": "3"}});
        assert_eq!(diff(&a, &b), "image m:v1 → m:v2; environment: B");
    }

    const KEY_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:mbstack/s/metabase-encryption-key-GhIjKl";
    const EXECUTION_ROLE: &str = "arn:aws:iam::111122223333:role/s-metabase-execution";
    const TASK_ROLE: &str = "arn:aws:iam::111122223333:role/s-metabase-task";

    fn work<'a>(spec: &'a mbstack_core::StackSpec, run: &'a mbstack_core::Run) -> Work<'a> {
        Work::new(mbstack_core::Tier::App, spec, run, Verb::Apply)
    }

    fn db() -> DbInputs {
        DbInputs {
            host: "mbstack-s.abc.us-east-1.rds.amazonaws.com".into(),
            port: "5432".into(),
            name: "metabase".into(),
            user: "metabase".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-1-AbCdEf"
                .into(),
        }
    }

    /// What the spec of `w` asks the revision to hold, as the tier builds it.
    fn want_of(w: &Work<'_>) -> Wanted {
        let log_group = names::log_group(&w.spec.stack);
        wanted(
            w,
            &db(),
            KEY_SECRET,
            (EXECUTION_ROLE, TASK_ROLE),
            &log_group,
            "us-east-1",
        )
    }

    /// The revision ECS holds once `x` was registered (a Fargate task of one
    /// container on :3000, its logs to CloudWatch).
    fn registered(x: &Wanted) -> Live {
        let log = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &x.log_group)
            .options("awslogs-region", &x.region)
            .options("awslogs-stream-prefix", "metabase")
            .build()
            .unwrap();
        let mut container = ContainerDefinition::builder()
            .name(names::CONTAINER)
            .image(&x.image)
            .essential(true)
            .port_mappings(
                PortMapping::builder()
                    .container_port(3000)
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            )
            .log_configuration(log)
            .stop_timeout(120);
        for (k, v) in &x.env {
            container = container.environment(KeyValuePair::builder().name(k).value(v).build());
        }
        for (k, v) in &x.secrets {
            container = container.secrets(Secret::builder().name(k).value_from(v).build().unwrap());
        }
        let td = TaskDefinition::builder()
            .family("s-metabase")
            .task_definition_arn("arn:aws:ecs:us-east-1:111122223333:task-definition/s-metabase:1")
            .cpu(&x.cpu)
            .memory(&x.memory)
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(EcsArch::X8664)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .execution_role_arn(&x.execution_role)
            .task_role_arn(&x.task_role)
            .container_definitions(container.build())
            .build();
        Live {
            td,
            tags: Vec::new(),
        }
    }

    /// The steps from the revision registered for `before` to what `after` asks.
    fn revise(before: &mbstack_core::StackSpec, after: &mbstack_core::StackSpec) -> Vec<String> {
        let run = run();
        let live = registered(&want_of(&work(before, &run)));
        let w = work(after, &run);
        let want = Want(Some(want_of(&w)));
        let steps = TaskDefinitions { ecs: ecs() }
            .diff(&w, &live, &want)
            .unwrap();
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_revision_holding_what_the_spec_asks_needs_no_new_one() {
        let spec = mbstack_core::StackSpec::new("s");
        assert!(revise(&spec, &spec).is_empty());
    }

    #[test]
    fn a_new_image_in_the_spec_registers_a_revision_naming_both_images() {
        let before = mbstack_core::StackSpec::new("s");
        let mut after = before.clone();
        after.app.image = "metabase/metabase:v0.59.1".into();
        assert_eq!(
            revise(&before, &after),
            vec![format!(
                "image {} → metabase/metabase:v0.59.1",
                mbstack_core::spec::DEFAULT_IMAGE
            )]
        );
    }

    #[test]
    fn another_timezone_changes_the_environment_of_the_revision() {
        let before = mbstack_core::StackSpec::new("s");
        let mut after = before.clone();
        after.app.timezone = "Europe/Paris".into();
        assert_eq!(revise(&before, &after), vec!["environment: JAVA_TIMEZONE"]);
    }

    #[test]
    fn a_domain_gives_metabase_its_site_url() {
        let before = mbstack_core::StackSpec::new("s");
        let mut after = before.clone();
        after.load_balancer.domain = Some("bi.example.com".into());
        assert_eq!(revise(&before, &after), vec!["environment: MB_SITE_URL"]);
    }

    #[test]
    fn more_memory_raises_the_heap_with_it() {
        let before = mbstack_core::StackSpec::new("s");
        let mut after = before.clone();
        after.app.memory = 4096;
        let shown = revise(&before, &after).join("; ");
        assert!(shown.contains("memory 2048 → 4096"), "{shown}");
        assert!(shown.contains("environment: JAVA_OPTS"), "{shown}");
    }

    #[test]
    fn a_plan_whose_inputs_are_not_known_yet_expects_a_revision_of_the_spec_image() {
        let spec = mbstack_core::StackSpec::new("s");
        let run = run();
        let w = work(&spec, &run);
        let live = registered(&want_of(&w));
        let steps = TaskDefinitions { ecs: ecs() }
            .diff(&w, &live, &Want(None))
            .unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(shown, vec![format!("image {}", spec.app.image)]);
    }
}
