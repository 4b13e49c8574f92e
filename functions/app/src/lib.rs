//! mbstack-app: Metabase on ECS Fargate — log group, IAM roles, the encryption
//! key secret, the cluster, the task definition, the service and optional
//! autoscaling. Only secret ARNs appear in outputs; values stay in Secrets Manager.

mod autoscaling;
mod cluster;
mod ecs_tags;
mod iam;
mod logs;
pub mod names;
mod password_rule;
mod secret;
mod service;
mod task_definition;
#[cfg(test)]
mod test_support;
mod upgrade_return;

pub use iam::{parse_policy, secrets_policy, EXECUTION_POLICY_ARN_SUFFIX, SECRETS_POLICY};
pub use mbstack_core::Readiness;
pub use service::{
    password_outdated, readiness, service_health, ServiceHealth, HEALTH_CHECK_GRACE_SECONDS,
    NO_ARM64_IMAGE, NO_WAY_OUT, PREVIOUS_TASK_DEFINITION_TAG, UPDATED_BY_TAG,
};
pub use task_definition::{heap_mib, PORT, STOP_TIMEOUT};

use mbstack_core::iam::Permission;
use mbstack_core::naming::STACK_TAG;
use mbstack_core::outputs::{
    self, AppOutputs, DataOutputs, DeploymentInputs, LoadBalancerOutputs, NetworkOutputs,
};
use mbstack_core::resource::{self, Resource};
use mbstack_core::{aws_error, client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::Map;

struct Clients {
    ecs: aws_sdk_ecs::Client,
    iam: aws_sdk_iam::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    sm: aws_sdk_secretsmanager::Client,
    aas: aws_sdk_applicationautoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    events: aws_sdk_eventbridge::Client,
    region: String,
    role_propagation: std::time::Duration,
}

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let c = Clients {
        ecs: client!(aws_sdk_ecs, aws),
        iam: client!(aws_sdk_iam, aws),
        logs: client!(aws_sdk_cloudwatchlogs, aws),
        sm: client!(aws_sdk_secretsmanager, aws),
        aas: client!(aws_sdk_applicationautoscaling, aws),
        elb: client!(aws_sdk_elasticloadbalancingv2, aws),
        events: client!(aws_sdk_eventbridge, aws),
        region: aws
            .config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
        role_propagation: aws.role_propagation(),
    };
    let w = Work::new(Tier::App, &event.spec, &event.run, event.verb);
    if event.part == mbstack_core::Part::Return {
        return match event.verb {
            Verb::Apply => Box::pin(upgrade_return::put_back(&c, w, &event)).await,
            other => Err(TierError::Terminal(format!(
                "part \"return\" is an apply (the app put on the database a rollback returned), not a {other:?}"
            ))),
        };
    }
    match event.verb {
        Verb::Check => {
            // The service takes minutes (Metabase's first boot): while its
            // rollout is under way, one read says so and the whole plan pass
            // waits for the poll that can end the check.
            if let Some((pending, image)) = Box::pin(rolling_out(&c, &w)).await? {
                // Only what a rollback asks of a run still rolling out.
                let mut outputs = Map::new();
                if let Some(image) = image {
                    outputs.insert("image".into(), serde_json::Value::String(image));
                }
                return Ok(w.outcome(State::Pending, pending, outputs));
            }
            Box::pin(converge(&c, w, &event)).await
        }
        Verb::Plan | Verb::Apply => Box::pin(converge(&c, w, &event)).await,
        Verb::Destroy => Box::pin(destroy(&c, w)).await,
    }
}

/// Why the service is still rolling out (a deployment under way, tasks not
/// yet running or healthy), read cheaply, with the image it rolls out (the
/// spec's, when its task definition holds it); None when a full check must
/// judge (no service yet, ready, or failed: the full pass names the cause).
async fn rolling_out(
    c: &Clients,
    w: &Work<'_>,
) -> Result<Option<(String, Option<String>)>, TierError> {
    let Some((svc, tags)) = service::find(&c.ecs, w).await? else {
        return Ok(None);
    };
    let Readiness::Pending(why) = service_readiness(c, w, Some(&svc), None).await? else {
        return Ok(None);
    };
    // This run put the service on a new task definition (its tag survives the
    // circuit breaker's rollback, which puts the old one back), or the one
    // the service runs holds the spec's image.
    let updated_here =
        mbstack_core::naming::tag_value(&tags, UPDATED_BY_TAG) == Some(w.run.id.as_str());
    let image = match (updated_here, svc.task_definition()) {
        (true, _) => Some(w.spec.app.image.clone()),
        (false, Some(td)) => task_definition::describe_revision(&c.ecs, td)
            .await?
            .as_ref()
            .and_then(task_definition::wanted_from)
            .map(|x| x.image)
            .filter(|i| *i == w.spec.app.image),
        (false, None) => None,
    };
    Ok(Some((why, image)))
}

async fn converge(c: &Clients, mut w: Work<'_>, event: &Event) -> Result<Outcome, TierError> {
    let net: NetworkOutputs = event.upstream()?;
    let data: DataOutputs = event.upstream()?;
    let lb: LoadBalancerOutputs = event.upstream()?;
    let deployment = event.deployment()?;
    let subnets = net.private_subnets();
    let sg = net.app_security_group_id;
    let tg = lb.target_group_arn;
    let db = match (data.endpoint, data.port, data.secret_arn) {
        (Some(host), Some(port), Some(secret_arn)) => Some(task_definition::DbInputs {
            host,
            port: port.to_string(),
            name: data.database_name.unwrap_or_else(|| "metabase".into()),
            user: data.username.unwrap_or_else(|| "metabase".into()),
            secret_arn,
        }),
        _ => None,
    };
    if w.verb == Verb::Apply {
        let mut missing = Vec::new();
        if subnets.is_none() || sg.is_none() {
            missing.push("network (privateSubnetIds, appSecurityGroupId)");
        }
        if db.is_none() {
            missing.push("data (endpoint, port, secretArn)");
        }
        if tg.is_none() {
            missing.push("loadbalancer (targetGroupArn)");
        }
        if !missing.is_empty() {
            return Err(TierError::Terminal(format!(
                "the app tier needs the outputs of {} in inputs: apply those tiers first",
                missing.join(", ")
            )));
        }
    }

    let mut k = Kinds::new(c);
    resource::converge(&k.logs, &mut w, &[()]).await?;
    let log_group = names::log_group(&w.spec.stack);
    k.keys.restored_from = data.restored_from.clone();
    let key = first(
        resource::converge(&k.keys, &mut w, &[()])
            .await?
            .ids(&k.keys),
    );
    let secret_arns = match (&db, &key) {
        (Some(db), Some(key)) => Some(vec![db.secret_arn.clone(), key.clone()]),
        _ => None,
    };
    // The permissions boundary the deployment puts on every role this tier
    // creates (the state machine passes it; a direct call may leave it out).
    let boundary = DeploymentInputs::given(&deployment.role_boundary_arn);
    k.roles.secret_arns = secret_arns;
    k.roles.boundary = boundary.map(str::to_string);
    let made = resource::converge(&k.roles, &mut w, &iam::Role::BOTH).await?;
    let (exec_role, task_role) = match made.ids(&k.roles).as_slice() {
        [e, t] => (e.clone(), t.clone()),
        _ => (None, None),
    };
    // Roles this run made (a plan makes none): young to IAM.
    if made.made_by_this_run > 0 {
        // ECS cannot assume a role IAM has not propagated yet: its tasks would
        // fail to start ("ECS was unable to assume the role") and the circuit
        // breaker would fail the deployment. A new role gets IAM's time first.
        tracing::info!(
            seconds = c.role_propagation.as_secs_f64(),
            "new roles: giving IAM time to propagate them before ECS uses them"
        );
        tokio::time::sleep(c.role_propagation).await;
    }
    let cluster_arn = first(
        resource::converge(&k.clusters, &mut w, &[()])
            .await?
            .ids(&k.clusters),
    );
    let wanted = match (&db, &key, &exec_role, &task_role) {
        (Some(db), Some(key), Some(e), Some(t)) => Some(task_definition::wanted(
            &w,
            db,
            key,
            (e, t),
            &log_group,
            &c.region,
        )),
        _ => None,
    };
    let tds = &k.tds;
    let revision = resource::converge(tds, &mut w, &[task_definition::Want(wanted)]).await?;
    let td = first(revision.ids(tds));
    let previous_td = revision
        .updated
        .first()
        .cloned()
        .flatten()
        .map(|old| tds.id(&old));
    let placement = match (subnets, sg, tg) {
        (Some(subnets), Some(security_group), Some(target_group)) => Some(service::Placement {
            subnets,
            security_group,
            target_group,
        }),
        _ => None,
    };
    let password_rotated = match &db {
        Some(db) => secret::db_password_rotated(&c.sm, &db.secret_arn).await?,
        None => None,
    };
    k.services.cluster_arn = cluster_arn.clone();
    k.services.task_definition = td.clone();
    k.services.placement = placement;
    k.services.password_rotated = password_rotated;
    let svc = resource::converge(&k.services, &mut w, &[()])
        .await?
        .found
        .into_iter()
        .next()
        .flatten()
        .map(|l| l.svc);
    // The service is ours (the converge refuses one that is not): so is its
    // scalable target.
    k.targets.service_exists = svc.is_some();
    k.targets.owner = vec![(STACK_TAG.to_string(), w.spec.stack.clone())];
    let wants: Vec<autoscaling::Want> = autoscaling::wanted(&w).into_iter().collect();
    let scaling = resource::converge(&k.targets, &mut w, &wants).await?;
    resource::prune(&k.targets, &mut w, &scaling.unwanted).await?;
    let repair = match (
        DeploymentInputs::given(&deployment.state_machine_arn),
        DeploymentInputs::given(&deployment.events_role_arn),
    ) {
        (Some(sm), Some(role)) => Some(password_rule::Repair {
            state_machine_arn: sm.to_string(),
            role_arn: role.to_string(),
        }),
        _ => None,
    };
    if repair.is_some() {
        k.rules.secret_arn = db.as_ref().map(|d| d.secret_arn.clone());
        k.rules.repair = repair;
        resource::converge(&k.rules, &mut w, &[()]).await?;
    }

    let outputs = outputs::to_map(&AppOutputs {
        cluster_arn,
        service_arn: svc
            .as_ref()
            .and_then(|s| s.service_arn())
            .map(str::to_string),
        task_definition_arn: td.clone(),
        previous_task_definition_arn: previous_td,
        log_group: Some(log_group),
        execution_role_arn: exec_role,
        task_role_arn: task_role,
        encryption_key_secret_arn: key,
        image: match (w.verb, &svc, &td) {
            (Verb::Apply | Verb::Check, Some(_), Some(_)) => Some(w.spec.app.image.clone()),
            _ => None,
        },
    });
    // An apply that changed something judges nothing from what it read before
    // its changes: the checks that follow do. With nothing changed, what it
    // read is the truth (a no-op repair run does not wait a poll).
    let n = w.changed();
    let ready = match (w.verb, n) {
        (Verb::Plan, _) => Readiness::Ready,
        (Verb::Apply, 1..) => Readiness::Pending(format!(
            "app: {n} change(s) made; waiting for the service to settle"
        )),
        _ => service_readiness(c, &w, svc.as_ref(), td.as_deref()).await?,
    };
    // A deployment none of whose tasks started its container: the version
    // never ran (a failed upgrade's rollback then has no database to return).
    if let (Readiness::Failed(why), Some(td)) = (&ready, &td) {
        if service::never_started(&c.ecs, &w.spec.stack, td).await? {
            return Err(TierError::NeverStarted(why.clone()));
        }
    }
    match w.verb {
        Verb::Check => w.checked(ready, outputs),
        _ => w.converged(ready, outputs),
    }
}

/// The service runs the latest task definition (`expected_td`), rollout
/// COMPLETED, running == desired, and the target group reports that many
/// healthy targets. A failed rollout says why the last task stopped.
async fn service_readiness(
    c: &Clients,
    w: &Work<'_>,
    svc: Option<&aws_sdk_ecs::types::Service>,
    expected_td: Option<&str>,
) -> Result<Readiness, TierError> {
    let Some(svc) = svc else {
        return Ok(Readiness::Pending(
            "waiting for the ECS service to appear".into(),
        ));
    };
    match readiness(svc, expected_td) {
        Readiness::Failed(why) => {
            let reason = service::why_tasks_stop(&c.ecs, &w.spec.stack).await?;
            Ok(Readiness::Failed(match reason {
                Some(r) => format!("{why}: {r}"),
                None => why,
            }))
        }
        Readiness::Pending(why) => Ok(Readiness::Pending(why)),
        Readiness::Ready => {
            let desired = svc.desired_count();
            if desired == 0 {
                return Ok(Readiness::Ready);
            }
            let Some(tg) = svc
                .load_balancers()
                .first()
                .and_then(|l| l.target_group_arn())
            else {
                return Ok(Readiness::Pending(
                    "waiting for the service's target group".into(),
                ));
            };
            let health = c
                .elb
                .describe_target_health()
                .target_group_arn(tg)
                .send()
                .await
                .map_err(|e| aws_error("elasticloadbalancing:DescribeTargetHealth", e))?;
            let healthy = health
                .target_health_descriptions()
                .iter()
                .filter(|d| {
                    d.target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str())
                        == Some("healthy")
                })
                .count();
            Ok(if healthy == usize::try_from(desired).unwrap_or(0) {
                Readiness::Ready
            } else {
                Readiness::Pending(format!(
                    "waiting for healthy targets: {healthy}/{desired} (Metabase answers /api/health once started)"
                ))
            })
        }
    }
}

/// Autoscaling → service (scale to 0, delete, wait until INACTIVE) → task
/// definitions → cluster → roles → log group → encryption-key secret.
/// The tier's kinds in the order an apply converges them, each built once
/// with its client and knowing nothing upstream: an apply fills in what each
/// takes from the one before as it goes (the key and the database's secret
/// for the roles, the roles for the task definition, the cluster and the task
/// definition for the service); a destroy walks them in reverse, each found by
/// its name and tags.
struct Kinds {
    logs: logs::LogGroups,
    keys: secret::KeySecrets,
    roles: iam::Roles,
    clusters: cluster::Clusters,
    tds: task_definition::TaskDefinitions,
    services: service::Services,
    targets: autoscaling::ScalableTargets,
    rules: password_rule::PasswordRules,
}

impl Kinds {
    fn new(c: &Clients) -> Self {
        Self {
            logs: logs::LogGroups {
                logs: c.logs.clone(),
            },
            keys: secret::KeySecrets {
                sm: c.sm.clone(),
                restored_from: None,
            },
            roles: iam::Roles {
                iam: c.iam.clone(),
                secret_arns: None,
                boundary: None,
            },
            clusters: cluster::Clusters { ecs: c.ecs.clone() },
            tds: task_definition::TaskDefinitions { ecs: c.ecs.clone() },
            services: service::Services {
                ecs: c.ecs.clone(),
                cluster_arn: None,
                task_definition: None,
                placement: None,
                password_rotated: None,
            },
            targets: autoscaling::ScalableTargets {
                aas: c.aas.clone(),
                service_exists: true,
                owner: Vec::new(),
            },
            rules: password_rule::PasswordRules {
                events: c.events.clone(),
                secret_arn: None,
                repair: None,
            },
        }
    }
}

/// The kinds in reverse: the password rule, the scalable target (the
/// service's: ours to delete when the service is), the service (put back
/// instead, for a rollback of a run that only updated it; pending until ECS
/// has drained it), then what it ran on.
async fn destroy(c: &Clients, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let mut k = Kinds::new(c);
    resource::destroy(&k.rules, &mut w).await?;
    let found = k.services.list(&w).await?;
    k.targets.owner = match found.first() {
        Some(live) => k.services.tags(live),
        None if w.run.scope == mbstack_core::Scope::Stack => {
            vec![(STACK_TAG.to_string(), w.spec.stack.clone())]
        }
        None => Vec::new(),
    };
    resource::destroy(&k.targets, &mut w).await?;
    // A rollback of a run that only updated the service puts it back.
    for live in &found {
        if !w.owns(&k.services.tags(live)) {
            service::undo_update(&c.ecs, &mut w, live).await?;
        }
    }
    let waiting = resource::destroy(&k.services, &mut w).await?;
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let steps = async {
        resource::destroy(&k.tds, &mut w).await?;
        resource::destroy(&k.clusters, &mut w).await?;
        resource::destroy(&k.roles, &mut w).await?;
        resource::destroy(&k.keys, &mut w).await?;
        resource::destroy(&k.logs, &mut w).await?;
        Ok(())
    };
    let result = steps.await;
    w.destroyed(result, "Metabase service")
}

fn first(ids: Vec<Option<String>>) -> Option<String> {
    ids.into_iter().next().flatten()
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub const OWN_PERMISSIONS: &[Permission] = &[Permission::read(
    "Read",
    &["elasticloadbalancing:DescribeTargetHealth"],
)];

mbstack_core::tier_permissions!(
    autoscaling,
    cluster,
    ecs_tags,
    iam,
    logs,
    password_rule,
    secret,
    service,
    task_definition,
    upgrade_return
);
