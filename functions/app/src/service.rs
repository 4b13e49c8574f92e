//! The ECS service `metabase`: private subnets, the app security group, no public
//! IP, behind the target group on :3000.
//!
//! Health-check grace period: 1800 s. Metabase's first boot runs its database
//! migrations before `/api/health` answers 200 — minutes on a small DB, 26 in one
//! report — and ECS must not replace a task that is still migrating (a killed
//! migration can leave a lock in the app DB). A broken image still fails fast: the
//! circuit breaker counts tasks that stop, whatever the grace period.
//!
//! Deployments: minimum healthy 0 %, maximum 100 %, at every desired count: the old
//! tasks stop before new ones start, so two Metabase versions never migrate one
//! database at once (Metabase's own advice for upgrades). The price is a short
//! outage during a deploy. The circuit breaker rolls a failed deployment back.

use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    LoadBalancer, NetworkConfiguration, PropagateTags, Service, ServiceField, Tag,
};
use aws_sdk_ecs::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, Action, Readiness, Scope, TierError, Verb, Work};

use crate::cluster;
use crate::ecs_tags::{ecs_tags, pairs};
use crate::names;
use crate::task_definition::PORT;

pub const HEALTH_CHECK_GRACE_SECONDS: i32 = 1800;
/// Tags that record an update, so that its rollback can put the service back.
pub const PREVIOUS_TASK_DEFINITION_TAG: &str = "mbstack:previous-task-definition";
pub const UPDATED_BY_TAG: &str = "mbstack:updated-by";

#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub subnets: Vec<String>,
    pub security_group: String,
    pub target_group: String,
}

/// The service (not INACTIVE) and its tags. A converge refuses one that is not
/// ours; a destroy leaves it alone.
pub(crate) async fn find(
    ecs: &Client,
    w: &Work<'_>,
) -> Result<Option<(Service, Vec<(String, String)>)>, TierError> {
    let call = ecs
        .describe_services()
        .cluster(names::cluster(&w.spec.stack))
        .services(names::SERVICE)
        .include(ServiceField::Tags)
        .send()
        .await;
    let Some(out) = found("ecs:DescribeServices", call, &["ClusterNotFoundException"])? else {
        return Ok(None);
    };
    Ok(out
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
        .map(|s| (s.clone(), pairs(s.tags()))))
}

/// The desired count the spec asks for, given the service's current one (with
/// autoscaling, the current count is kept while it is within min..max).
fn desired(w: &Work<'_>, current: Option<i32>) -> i32 {
    if w.spec.paused {
        return 0;
    }
    match (&w.spec.app.autoscaling, current) {
        (Some(a), Some(c)) if c > 0 => c.clamp(i32::from(a.min), i32::from(a.max)),
        _ => i32::from(w.spec.app.desired_count),
    }
}

fn network(p: &Placement) -> Result<NetworkConfiguration, TierError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(p.subnets.clone()))
        .security_groups(&p.security_group)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .map_err(|e| TierError::Terminal(format!("building the network configuration: {e}")))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn deployment() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .minimum_healthy_percent(0)
        .maximum_percent(100)
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .build()
}

fn load_balancer(p: &Placement) -> LoadBalancer {
    LoadBalancer::builder()
        .target_group_arn(&p.target_group)
        .container_name(names::CONTAINER)
        .container_port(PORT)
        .build()
}

/// The stack's service, to run `task_definition` in `cluster_arn` at
/// `placement` (None: not known yet, in a plan). `password_rotated`: when the
/// database password last rotated.
pub(crate) struct Services {
    pub ecs: Client,
    pub cluster_arn: Option<String>,
    pub task_definition: Option<String>,
    pub placement: Option<Placement>,
    pub password_rotated: Option<DateTime>,
}

/// A service with its tags.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub svc: Service,
    tags: Vec<(String, String)>,
}

/// Whether tasks started at `started` hold a password rotated since (ECS injects
/// a secret only when a task starts).
fn password_is_newer(started: Option<&DateTime>, rotated: Option<&DateTime>) -> bool {
    match (started, rotated) {
        (Some(s), Some(r)) => s.as_nanos() < r.as_nanos(),
        _ => false,
    }
}

/// One change, made by one UpdateService.
pub(crate) enum Step {
    TaskDefinition(String, String),
    DesiredCount(i32, i32),
    /// The database password rotated after the tasks started (when).
    ReplaceTasks(String),
    Network,
    TargetGroup(String),
    Capacity(String),
    Grace,
    Deployment,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::TaskDefinition(a, b) => write!(f, "task definition {a} → {b}"),
            Step::DesiredCount(a, b) => write!(f, "desired count {a} → {b}"),
            Step::ReplaceTasks(when) => write!(
                f,
                "the database password changed after the tasks started (rotated {when}): replace the tasks"
            ),
            Step::Network => f.write_str("network: private subnets, app security group, no public IP"),
            Step::TargetGroup(tg) => write!(f, "target group → {tg}"),
            Step::Capacity(shown) => write!(f, "capacity {shown}"),
            Step::Grace => write!(f, "health-check grace → {HEALTH_CHECK_GRACE_SECONDS} s"),
            Step::Deployment => f.write_str("deployment: 0–100 %, circuit breaker with rollback"),
        }
    }
}

impl Resource for Services {
    const KIND: &'static str = "ecs-service";
    const LABEL: &'static str = "ECS service";
    type Live = Live;
    type Want = ();
    type Step = Step;

    fn name(&self, _w: &Work<'_>, _want: &()) -> String {
        names::SERVICE.to_string()
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        live.svc.service_name().map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.svc.service_arn().unwrap_or(names::SERVICE).to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    /// None in a plan whose cluster does not exist yet.
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        if self.cluster_arn.is_none() && w.verb != Verb::Destroy {
            return Ok(Vec::new());
        }
        Ok(find(&self.ecs, w)
            .await?
            .map(|(svc, tags)| Live { svc, tags })
            .into_iter()
            .collect())
    }

    fn diff(&self, w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Step>, TierError> {
        let svc = &live.svc;
        if svc.status() == Some("DRAINING") {
            return Err(TierError::Retryable(format!(
                "ECS service {} is draining (being deleted): apply again once it is gone",
                self.id(live)
            )));
        }
        let mut steps = Vec::new();
        let mut new_td = false;
        if let Some(td) = self.task_definition.as_deref() {
            if svc.task_definition() != Some(td) {
                steps.push(Step::TaskDefinition(
                    svc.task_definition().unwrap_or("none").to_string(),
                    td.to_string(),
                ));
                new_td = true;
            }
        }
        let want = desired(w, Some(svc.desired_count()));
        if svc.desired_count() != want {
            steps.push(Step::DesiredCount(svc.desired_count(), want));
        }
        // A new task definition starts new tasks anyway; otherwise running tasks
        // older than the password's rotation are replaced.
        let started = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.created_at());
        if !new_td && want > 0 && password_is_newer(started, self.password_rotated.as_ref()) {
            let when = self
                .password_rotated
                .and_then(|r| r.fmt(DateTimeFormat::DateTime).ok())
                .unwrap_or_default();
            steps.push(Step::ReplaceTasks(when));
        }
        if let Some(p) = &self.placement {
            let vpc = svc
                .network_configuration()
                .and_then(|n| n.awsvpc_configuration());
            let mut have_subnets: Vec<&str> = vpc
                .map(|v| v.subnets().iter().map(String::as_str).collect())
                .unwrap_or_default();
            have_subnets.sort();
            let mut want_subnets: Vec<&str> = p.subnets.iter().map(String::as_str).collect();
            want_subnets.sort();
            let same = have_subnets == want_subnets
                && vpc.map(|v| v.security_groups())
                    == Some(std::slice::from_ref(&p.security_group))
                && vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Disabled);
            if !same {
                steps.push(Step::Network);
            }
            let lb_ok = svc.load_balancers().len() == 1
                && svc.load_balancers()[0].target_group_arn() == Some(p.target_group.as_str())
                && svc.load_balancers()[0].container_port() == Some(PORT);
            if !lb_ok {
                steps.push(Step::TargetGroup(p.target_group.clone()));
            }
        }
        let provider = svc
            .capacity_provider_strategy()
            .first()
            .map(|c| c.capacity_provider());
        if provider != Some(cluster::provider(w)) {
            steps.push(Step::Capacity(format!(
                "{} → {}",
                provider.unwrap_or("launch type"),
                cluster::provider(w)
            )));
        }
        if svc.health_check_grace_period_seconds() != Some(HEALTH_CHECK_GRACE_SECONDS) {
            steps.push(Step::Grace);
        }
        let dc = svc.deployment_configuration();
        let dc_ok = dc.and_then(|d| d.minimum_healthy_percent()) == Some(0)
            && dc.and_then(|d| d.maximum_percent()) == Some(100)
            && dc
                .and_then(|d| d.deployment_circuit_breaker())
                .map(|c| (c.enable(), c.rollback()))
                == Some((true, true));
        if !dc_ok {
            steps.push(Step::Deployment);
        }
        Ok(steps)
    }

    fn describe(&self, w: &Work<'_>, _want: &()) -> String {
        let want = desired(w, None);
        match &self.task_definition {
            Some(td) => format!("{want} task(s) of {td}"),
            None => format!("{want} task(s)"),
        }
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        format!(
            "{} task(s) of {}",
            live.svc.desired_count(),
            live.svc.task_definition().unwrap_or("")
        )
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let (Some(cluster), Some(td), Some(p)) =
            (&self.cluster_arn, &self.task_definition, &self.placement)
        else {
            return Err(TierError::Terminal(
                "the service needs the cluster, the task definition and its placement".into(),
            ));
        };
        let out = self
            .ecs
            .create_service()
            .cluster(cluster)
            .service_name(names::SERVICE)
            .task_definition(td)
            .desired_count(desired(w, None))
            .capacity_provider_strategy(cluster::strategy(w)?)
            .platform_version("LATEST")
            .network_configuration(network(p)?)
            .load_balancers(load_balancer(p))
            .health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS)
            .deployment_configuration(deployment())
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .enable_execute_command(false)
            .set_tags(Some(ecs_tags(w, "metabase")))
            .send()
            .await
            .map_err(|e| aws_error("ecs:CreateService", e))?;
        let svc = out
            .service()
            .cloned()
            .ok_or_else(|| TierError::Terminal("ecs:CreateService returned no service".into()))?;
        Ok(Live {
            svc,
            tags: w.tags("metabase"),
        })
    }

    /// One UpdateService. A new task definition is first recorded on the
    /// service itself, so this run's rollback can put the old one back.
    async fn update(
        &self,
        w: &Work<'_>,
        live: &Live,
        _want: &(),
        steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        let arn = self.id(live);
        let mut call = self
            .ecs
            .update_service()
            .cluster(names::cluster(&w.spec.stack))
            .service(names::SERVICE);
        for step in steps {
            call = match step {
                Step::TaskDefinition(_, td) => call.task_definition(td),
                Step::DesiredCount(_, n) => call.desired_count(*n),
                Step::ReplaceTasks(_) => call.force_new_deployment(true),
                Step::Network | Step::TargetGroup(_) => match &self.placement {
                    Some(p) => call
                        .network_configuration(network(p)?)
                        .load_balancers(load_balancer(p)),
                    None => call,
                },
                Step::Capacity(_) => call
                    .capacity_provider_strategy(cluster::strategy(w)?)
                    .force_new_deployment(true),
                Step::Grace => call.health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS),
                Step::Deployment => call.deployment_configuration(deployment()),
            };
        }
        let new_td = steps.iter().any(|s| matches!(s, Step::TaskDefinition(..)));
        if let (true, Some(previous)) = (new_td, live.svc.task_definition()) {
            self.ecs
                .tag_resource()
                .resource_arn(&arn)
                .tags(
                    Tag::builder()
                        .key(PREVIOUS_TASK_DEFINITION_TAG)
                        .value(previous)
                        .build(),
                )
                .tags(Tag::builder().key(UPDATED_BY_TAG).value(&w.run.id).build())
                .send()
                .await
                .map_err(|e| aws_error("ecs:TagResource", e))?;
        }
        call.send()
            .await
            .map_err(|e| aws_error("ecs:UpdateService", e))?;
        Ok(None)
    }

    /// Scale to 0, delete, wait until INACTIVE.
    async fn delete(&self, w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        let arn = self.id(live);
        let waiting = format!("service {arn} to drain");
        if live.svc.status() == Some("DRAINING") {
            return Ok(Deleted::Waiting(waiting));
        }
        let cluster = names::cluster(&w.spec.stack);
        if live.svc.desired_count() > 0 {
            self.ecs
                .update_service()
                .cluster(&cluster)
                .service(names::SERVICE)
                .desired_count(0)
                .send()
                .await
                .map_err(|e| aws_error("ecs:UpdateService", e))?;
        }
        self.ecs
            .delete_service()
            .cluster(&cluster)
            .service(names::SERVICE)
            .force(true)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DeleteService", e))?;
        Ok(Deleted::Started {
            detail: "scaled to 0 and deleted".into(),
            waiting,
        })
    }
}

/// Whether the service runs what was deployed: ACTIVE, its primary deployment
/// COMPLETED on `expected_td`, running == desired, and (read separately) that
/// many healthy targets.
pub fn readiness(svc: &Service, expected_td: Option<&str>) -> Readiness {
    let arn = svc.service_arn().unwrap_or(names::SERVICE);
    if svc.status() != Some("ACTIVE") {
        return Readiness::Pending(format!(
            "waiting for service {arn}: {}",
            svc.status().unwrap_or("?")
        ));
    }
    let Some(primary) = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
    else {
        return Readiness::Pending(format!(
            "waiting for service {arn}: no primary deployment yet"
        ));
    };
    let rollout = primary
        .rollout_state()
        .map(|r| r.as_str())
        .unwrap_or("IN_PROGRESS");
    if rollout == "FAILED" {
        return Readiness::Failed(format!(
            "the deployment of {} failed: {}",
            primary.task_definition().unwrap_or("?"),
            primary.rollout_state_reason().unwrap_or("no reason given")
        ));
    }
    if let (Some(want), Some(td)) = (expected_td, svc.task_definition()) {
        if want != td {
            return Readiness::Failed(format!(
                "ECS rolled the service back to {td}: the deployment of {want} failed"
            ));
        }
    }
    if rollout != "COMPLETED" || primary.task_definition() != svc.task_definition() {
        return Readiness::Pending(format!(
            "waiting for service {arn}: deployment {rollout}, {}/{} task(s) running",
            primary.running_count(),
            primary.desired_count()
        ));
    }
    if svc.running_count() != svc.desired_count() {
        return Readiness::Pending(format!(
            "waiting for service {arn}: {}/{} task(s) running",
            svc.running_count(),
            svc.desired_count()
        ));
    }
    Readiness::Ready
}

/// What to do when Docker Hub refuses an anonymous pull (its rate limit is per
/// source IP, and a NAT gateway's address is shared by every task behind it).
/// The remedy works with the stack's execution role as it is (AWS's managed
/// AmazonECSTaskExecutionRolePolicy pulls from any ECR repository of the
/// account): an ECR pull-through cache would also need
/// `ecr:BatchImportUpstreamImage` (and `ecr:CreateRepository` on a first
/// pull), which that role and its boundary do not grant, unless someone else
/// has cached the tag already.
/// A pull that timed out: the task's subnet had no way out to the registry.
pub const NO_WAY_OUT: &str = ": the task could not reach the image's registry: the private \
subnets' way out to the internet is broken (their route to the NAT gateway or NAT instance, \
the NAT instance stopped or its source/destination check on). `mbstack apply` repairs the \
network, then starts the tasks again";

/// An ARM64 task of an image published for x86-64 only.
pub const NO_ARM64_IMAGE: &str = ": the image has no linux/arm64 variant (Metabase publishes \
one from v0.53 on). Set app.cpuArchitecture to X86_64, or choose an image published for \
ARM64, and apply again";

pub const PULL_RATE_LIMITED: &str =
    ": Docker Hub's rate limit for anonymous pulls refused the image. \
Copy it into an ECR repository of this account and region (docker pull metabase/metabase:<tag>; \
docker tag it <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>; docker push it), \
set app.image to that address, then apply again";

/// Why the most recent task of the service stopped, in a sentence a person can
/// act on: the stopped reason, the container's reason and exit code (137 = OOM).
/// Whether no stopped task of revision `td` ever started its container: each
/// stopped with ECS's `TaskFailedToStart` (its image not pulled, its role not
/// assumed, its storage not set up) and no exit code, and there is at least
/// one. Then the version in it never ran. A task that ran and stopped (an
/// exit code: a failed migration, an out-of-memory kill, a health check's
/// stop) says it did.
pub(crate) async fn never_started(ecs: &Client, stack: &str, td: &str) -> Result<bool, TierError> {
    let tasks: Vec<aws_sdk_ecs::types::Task> = stopped(ecs, stack)
        .await?
        .into_iter()
        .filter(|t| t.task_definition_arn() == Some(td))
        .collect();
    Ok(!tasks.is_empty()
        && tasks.iter().all(|task| {
            let exited = task.containers().iter().any(|c| c.exit_code().is_some());
            task.stop_code().map(|c| c.as_str()) == Some("TaskFailedToStart")
                && !exited
                && task.started_at().is_none()
        }))
}

/// The service's stopped tasks (ECS lists them for about an hour), every page.
async fn stopped(ecs: &Client, stack: &str) -> Result<Vec<aws_sdk_ecs::types::Task>, TierError> {
    let cluster = names::cluster(stack);
    let mut arns: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let listed = ecs
            .list_tasks()
            .cluster(&cluster)
            .service_name(names::SERVICE)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("ecs:ListTasks", e))?;
        arns.extend(listed.task_arns().iter().cloned());
        match listed.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    let mut tasks = Vec::new();
    for chunk in arns.chunks(100) {
        let out = ecs
            .describe_tasks()
            .cluster(&cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ecs:DescribeTasks", e))?;
        tasks.extend(out.tasks().iter().cloned());
    }
    Ok(tasks)
}

/// The service's latest stopped task (None: none).
async fn last_stopped(
    ecs: &Client,
    stack: &str,
) -> Result<Option<aws_sdk_ecs::types::Task>, TierError> {
    Ok(stopped(ecs, stack)
        .await?
        .into_iter()
        .max_by_key(|t| t.stopped_at().map(|d| d.secs()).unwrap_or(0)))
}

pub(crate) async fn why_tasks_stop(ecs: &Client, stack: &str) -> Result<Option<String>, TierError> {
    let Some(task) = last_stopped(ecs, stack).await? else {
        return Ok(None);
    };
    let task = &task;
    let mut why = format!(
        "task {} stopped: {}",
        task.task_arn()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("?"),
        task.stopped_reason().unwrap_or("no reason given")
    );
    if let Some(c) = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(names::CONTAINER))
    {
        if let Some(reason) = c.reason() {
            why.push_str(&format!("; container {}: {reason}", names::CONTAINER));
            if reason.contains("toomanyrequests") {
                why.push_str(PULL_RATE_LIMITED);
            } else if reason.contains("CannotPullContainerError") && reason.contains("i/o timeout")
            {
                why.push_str(NO_WAY_OUT);
            } else if reason.contains("descriptor matching platform")
                || reason.contains("no matching manifest")
            {
                why.push_str(NO_ARM64_IMAGE);
            }
        }
        if let Some(code) = c.exit_code() {
            why.push_str(&format!(" (exit code {code})"));
            if code == 137 {
                why.push_str(": out of memory — raise app.memory");
            } else if code == 1 {
                why.push_str(": Metabase stopped itself, as it does when its database migration fails — its log says why (`mbstack logs`)");
            }
        }
    }
    Ok(Some(why))
}

/// The rollback of a run that only updated the service (it did not create
/// it): put the task definition it recorded back.
pub(crate) async fn undo_update(
    ecs: &Client,
    w: &mut Work<'_>,
    live: &Live,
) -> Result<(), TierError> {
    let tag = |key: &str| {
        live.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    if w.run.scope != Scope::Run || tag(UPDATED_BY_TAG).as_deref() != Some(w.run.id.as_str()) {
        return Ok(());
    }
    let Some(previous) = tag(PREVIOUS_TASK_DEFINITION_TAG) else {
        return Ok(());
    };
    let arn = live.svc.service_arn().unwrap_or_default().to_string();
    ecs.update_service()
        .cluster(names::cluster(&w.spec.stack))
        .service(names::SERVICE)
        .task_definition(&previous)
        .send()
        .await
        .map_err(|e| aws_error("ecs:UpdateService", e))?;
    ecs.untag_resource()
        .resource_arn(&arn)
        .tag_keys(PREVIOUS_TASK_DEFINITION_TAG)
        .tag_keys(UPDATED_BY_TAG)
        .send()
        .await
        .map_err(|e| aws_error("ecs:UntagResource", e))?;
    w.record(
        Services::KIND,
        &arn,
        Action::Update,
        format!("back to the previous task definition {previous}"),
    );
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ecs:DescribeServices", "ecs:DescribeTasks", "ecs:ListTasks"]),
    Permission::create_tagged("CreateTagged", &["ecs:CreateService"]),
    Permission::own_tagged("ChangeTagged", &["ecs:UpdateService", "ecs:DeleteService"]),
    // The rollback's record on a service it updates (which run, and the task
    // definition to put back): these two tag keys only.
    Permission::own_tagged("UpdatedByTag", &["ecs:TagResource", "ecs:UntagResource"]).when(
        r#"{"StringEquals": {"aws:ResourceTag/mbstack:tier": "${Tier}"}, "ForAllValues:StringEquals": {"aws:TagKeys": ["mbstack:updated-by", "mbstack:previous-task-definition"]}}"#,
    ),
];

/// The Metabase service as `mbstack status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub running: i32,
    pub desired: i32,
    /// The primary deployment's rollout state (IN_PROGRESS, COMPLETED, FAILED).
    pub rollout: Option<String>,
    /// Why the latest task stopped, read only when fewer tasks run than wanted
    /// or the rollout failed.
    pub last_stopped: Option<String>,
}

/// The stack's ACTIVE service, read by name (None: no cluster or no service).
async fn active_service(ecs: &Client, stack: &str) -> Result<Option<Service>, TierError> {
    let call = ecs
        .describe_services()
        .cluster(names::cluster(stack))
        .services(names::SERVICE)
        .send()
        .await;
    let codes = ["ClusterNotFoundException"];
    Ok(
        found("ecs:DescribeServices", call, &codes)?.and_then(|out| {
            out.services()
                .iter()
                .find(|s| s.status() == Some("ACTIVE"))
                .cloned()
        }),
    )
}

/// When the database password (the secret RDS manages, `secret_arn`) rotated,
/// if the stack's running tasks started before that: they hold a password that
/// no longer opens a connection (ECS injects a secret only when a task starts).
/// None when they started after it, or the stack runs no tasks. The daily check
/// of the rotation rules asks this before anything else (`mbstack_control`).
pub async fn password_outdated(
    ecs: &Client,
    sm: &aws_sdk_secretsmanager::Client,
    stack: &str,
    secret_arn: &str,
) -> Result<Option<String>, TierError> {
    let Some(svc) = active_service(ecs, stack)
        .await?
        .filter(|s| s.desired_count() > 0)
    else {
        return Ok(None);
    };
    let started = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.created_at());
    let rotated = crate::secret::db_password_rotated(sm, secret_arn).await?;
    Ok(password_is_newer(started, rotated.as_ref()).then(|| {
        rotated
            .and_then(|r| r.fmt(DateTimeFormat::DateTime).ok())
            .unwrap_or_default()
    }))
}

/// The stack's service: its tasks and, when it is not healthy, why the latest
/// task stopped. None when the stack has no service (not created, destroyed).
pub async fn service_health(ecs: &Client, stack: &str) -> Result<Option<ServiceHealth>, TierError> {
    let Some(svc) = active_service(ecs, stack).await? else {
        return Ok(None);
    };
    let rollout = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.rollout_state())
        .map(|r| r.as_str().to_string());
    let unhealthy =
        svc.running_count() < svc.desired_count() || rollout.as_deref() == Some("FAILED");
    let last_stopped = if unhealthy {
        why_tasks_stop(ecs, stack).await?
    } else {
        None
    };
    Ok(Some(ServiceHealth {
        running: svc.running_count(),
        desired: svc.desired_count(),
        rollout,
        last_stopped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ecs, run};
    use aws_sdk_ecs::types::builders::ServiceBuilder;
    use aws_sdk_ecs::types::{CapacityProviderStrategyItem, Deployment};
    use mbstack_core::{StackSpec, Tier};

    const TD: &str = "arn:aws:ecs:us-east-1:111122223333:task-definition/s-metabase:1";
    const TD2: &str = "arn:aws:ecs:us-east-1:111122223333:task-definition/s-metabase:2";
    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/s-tg/0123456789abcdef";

    /// The service of a converge that runs `td` in two private subnets.
    fn services(td: &str) -> Services {
        Services {
            ecs: ecs(),
            cluster_arn: Some("arn:aws:ecs:us-east-1:111122223333:cluster/s-cluster".into()),
            task_definition: Some(td.into()),
            placement: Some(Placement {
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
                security_group: "sg-app".into(),
                target_group: TG.into(),
            }),
            password_rotated: None,
        }
    }

    /// The service as ECS has it for the default spec, at `desired` tasks of
    /// TD: private subnets (listed in another order), no public IP, behind
    /// the target group on :3000, on FARGATE, a 1800 s grace, 0–100 %
    /// deployments with the circuit breaker rolling back.
    fn as_created(desired: i32) -> ServiceBuilder {
        let vpc = AwsVpcConfiguration::builder()
            .subnets("subnet-b")
            .subnets("subnet-a")
            .security_groups("sg-app")
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .unwrap();
        Service::builder()
            .service_name("metabase")
            .service_arn("arn:aws:ecs:us-east-1:111122223333:service/s-cluster/metabase")
            .status("ACTIVE")
            .task_definition(TD)
            .desired_count(desired)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(TG)
                    .container_name("metabase")
                    .container_port(3000)
                    .build(),
            )
            .capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE")
                    .weight(1)
                    .build()
                    .unwrap(),
            )
            .health_check_grace_period_seconds(1800)
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .minimum_healthy_percent(0)
                    .maximum_percent(100)
                    .deployment_circuit_breaker(
                        DeploymentCircuitBreaker::builder()
                            .enable(true)
                            .rollback(true)
                            .build(),
                    )
                    .build(),
            )
    }

    fn live(svc: ServiceBuilder) -> Live {
        Live {
            svc: svc.build(),
            tags: Vec::new(),
        }
    }

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_service_as_the_spec_wants_needs_no_update() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = services(TD).diff(&w, &live(as_created(1)), &()).unwrap();
        assert!(shown(&steps).is_empty(), "{:?}", shown(&steps));
    }

    #[test]
    fn a_service_at_another_desired_count_is_scaled_to_the_spec() {
        let mut spec = StackSpec::new("s");
        spec.app.desired_count = 3;
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = services(TD).diff(&w, &live(as_created(1)), &()).unwrap();
        assert_eq!(shown(&steps), vec!["desired count 1 → 3"]);
    }

    #[test]
    fn a_paused_stack_scales_its_service_to_zero() {
        let mut spec = StackSpec::new("s");
        spec.paused = true;
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = services(TD).diff(&w, &live(as_created(1)), &()).unwrap();
        assert_eq!(shown(&steps), vec!["desired count 1 → 0"]);
    }

    #[test]
    fn an_autoscaled_service_keeps_its_count_within_min_and_max() {
        let mut spec = StackSpec::new("s");
        spec.app.autoscaling = Some(mbstack_core::spec::AutoscalingSpec {
            min: 1,
            max: 3,
            target_cpu_percent: 60,
        });
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let kind = services(TD);
        // 2 is the autoscaler's to choose, not the spec's desired count of 1.
        assert!(kind.diff(&w, &live(as_created(2)), &()).unwrap().is_empty());
        let steps = kind.diff(&w, &live(as_created(5)), &()).unwrap();
        assert_eq!(shown(&steps), vec!["desired count 5 → 3"]);
    }

    #[test]
    fn a_new_task_definition_is_rolled_out() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = services(TD2).diff(&w, &live(as_created(1)), &()).unwrap();
        assert_eq!(shown(&steps), vec![format!("task definition {TD} → {TD2}")]);
    }

    #[test]
    fn tasks_started_before_the_password_rotated_are_replaced() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let started = Deployment::builder()
            .status("PRIMARY")
            .created_at(DateTime::from_secs(1_700_000_000))
            .build();
        let svc = live(as_created(1).deployments(started));
        let mut kind = services(TD);
        kind.password_rotated = Some(DateTime::from_secs(1_700_000_600));
        let steps = kind.diff(&w, &svc, &()).unwrap();
        assert!(matches!(steps.as_slice(), [Step::ReplaceTasks(_)]));
        // A new task definition starts new tasks anyway: no second rollout.
        kind.task_definition = Some(TD2.into());
        let steps = kind.diff(&w, &svc, &()).unwrap();
        assert!(matches!(steps.as_slice(), [Step::TaskDefinition(..)]));
        // Tasks started after the rotation hold the new password.
        kind.task_definition = Some(TD.into());
        kind.password_rotated = Some(DateTime::from_secs(1_600_000_000));
        assert!(kind.diff(&w, &svc, &()).unwrap().is_empty());
    }

    #[test]
    fn spot_in_the_spec_moves_the_service_to_fargate_spot() {
        let mut spec = StackSpec::new("s");
        spec.app.spot = true;
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let steps = services(TD).diff(&w, &live(as_created(1)), &()).unwrap();
        assert_eq!(shown(&steps), vec!["capacity FARGATE → FARGATE_SPOT"]);
    }

    #[test]
    fn a_public_ip_and_another_target_group_are_put_back() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let vpc = AwsVpcConfiguration::builder()
            .subnets("subnet-a")
            .subnets("subnet-b")
            .security_groups("sg-app")
            .assign_public_ip(AssignPublicIp::Enabled)
            .build()
            .unwrap();
        let other_tg = LoadBalancer::builder()
            .target_group_arn(
                "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/other/1",
            )
            .container_name("metabase")
            .container_port(3000)
            .build();
        let svc = as_created(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .set_load_balancers(Some(vec![other_tg]));
        let steps = services(TD).diff(&w, &live(svc), &()).unwrap();
        assert!(matches!(
            steps.as_slice(),
            [Step::Network, Step::TargetGroup(tg)] if tg == TG
        ));
    }

    #[test]
    fn a_draining_service_is_retried_not_updated() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let draining = live(as_created(1).status("DRAINING"));
        let result = services(TD).diff(&w, &draining, &());
        assert!(matches!(result, Err(TierError::Retryable(m)) if m.contains("draining")));
    }
}
