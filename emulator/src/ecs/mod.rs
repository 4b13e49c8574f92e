//! ECS as moto does not play it: moto never runs a task, never finishes a
//! deployment and never registers tasks in target groups. The front door plays
//! that part on DescribeServices, so the app tier's real-AWS readiness logic runs
//! unchanged: a service's tasks "start" `start_delay` after a deployment begins
//! (the task definition or desired count changed), the primary deployment then
//! reports COMPLETED with running == desired, and one ip target per task is
//! registered in the service's target group (moto reports registered targets
//! healthy). With a fault set, the deployment FAILS instead and the service's
//! stopped tasks say why (CannotPullContainerError, or OOM with exit code 137).
//! With a failing image set, only that image's deployments fail: its container
//! exits with 1 as Metabase does when its database migration fails.
//! With realism on, a deployment whose task definition names a role IAM has not
//! propagated yet fails the same way: "ECS was unable to assume the role …"
//! (its tasks fail to start until the circuit breaker gives up).
//! AWS's ECS refusals and "not yet"s are in [`refusals`]; the data the player
//! keeps, in `crate::state::ecs`.

pub(crate) mod refusals;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::moto::moto_query;
use crate::protocol::urlencode;
use crate::state::ecs::{now_secs, EcsFault, Rollout};
use crate::state::Shared;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// CreateService/UpdateService fields moto drops but DescribeServices returns in AWS.
const FORGOTTEN: &[&str] = &[
    "capacityProviderStrategy",
    "healthCheckGracePeriodSeconds",
    "deploymentConfiguration",
    "enableECSManagedTags",
    "enableExecuteCommand",
];

/// The synthetic stopped task of a failed rollout.
fn stopped_task_arn(service_arn: &str, rollout_id: &str) -> String {
    let base = service_arn.replace(":service/", ":task/");
    format!("{base}-stopped-{rollout_id}")
}

fn stopped_task(arn: &str, r: &Rollout) -> Value {
    let task_definition = r.task_definition.as_str();
    if let Some(role) = &r.young_role {
        return json!({
            "taskArn": arn, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "stoppedReason": format!("ECS was unable to assume the role '{role}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."),
            "stopCode": "TaskFailedToStart", "stoppedAt": now_secs(),
            "taskDefinitionArn": task_definition, "launchType": "FARGATE",
            "containers": [{"name": "metabase", "lastStatus": "STOPPED"}],
        });
    }
    let Some(fault) = r.fault else {
        return json!({"taskArn": arn, "lastStatus": "STOPPED"});
    };
    let (stopped_reason, stop_code, container) = match fault {
        EcsFault::CannotPullContainer => (
            "Task failed to start",
            "TaskFailedToStart",
            json!({"name": "metabase", "lastStatus": "STOPPED",
                   "reason": "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref docker.io/metabase/metabase: not found"}),
        ),
        EcsFault::PullRateLimited => (
            "Task failed to start",
            "TaskFailedToStart",
            json!({"name": "metabase", "lastStatus": "STOPPED",
                   "reason": "CannotPullContainerError: pull image manifest has been retried 7 time(s): failed to resolve ref docker.io/metabase/metabase: unexpected status from HEAD request: 429 Too Many Requests: toomanyrequests: You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit"}),
        ),
        // What a Fargate task without a way out meets (platform 1.4).
        EcsFault::NoWayOut => (
            "Task failed to start",
            "TaskFailedToStart",
            json!({"name": "metabase", "lastStatus": "STOPPED",
                   "reason": "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref docker.io/metabase/metabase: failed to do request: Head \"https://registry-1.docker.io/v2/metabase/metabase/manifests/latest\": dial tcp 54.236.113.205:443: i/o timeout"}),
        ),
        // What Fargate answers for an image without the task's platform.
        EcsFault::NoManifest => (
            "Task failed to start",
            "TaskFailedToStart",
            json!({"name": "metabase", "lastStatus": "STOPPED",
                   "reason": "CannotPullContainerError: pull image manifest has been retried 7 time(s): image Manifest does not contain descriptor matching platform 'linux/arm64'"}),
        ),
        EcsFault::MigrationFailed => (
            "Essential container in task exited",
            "EssentialContainerExited",
            json!({"name": "metabase", "lastStatus": "STOPPED", "exitCode": 1}),
        ),
        EcsFault::OutOfMemory => (
            "Essential container in task exited",
            "EssentialContainerExited",
            json!({"name": "metabase", "lastStatus": "STOPPED", "exitCode": 137,
                   "reason": "OutOfMemoryError: Container killed due to memory usage"}),
        ),
    };
    json!({
        "taskArn": arn, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
        "stoppedReason": stopped_reason, "stopCode": stop_code, "stoppedAt": now_secs(),
        "taskDefinitionArn": task_definition, "launchType": "FARGATE", "containers": [container],
    })
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    *r.status_mut() = StatusCode::OK;
    r
}

/// DescribeTasks of our synthetic stopped tasks: answered here (moto has none).
pub(crate) fn answer_before(
    shared: &Arc<Shared>,
    target: &str,
    request: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    if target != format!("{TARGET_PREFIX}DescribeTasks") {
        return None;
    }
    let asked: Vec<&str> = request?
        .get("tasks")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ecs = shared.ecs.lock().ok()?;
    let tasks: Vec<Value> = asked
        .iter()
        .filter_map(|arn| {
            ecs.rollouts
                .iter()
                .chain(ecs.rolled_back.iter().map(|(s, r)| (s, r)))
                .find_map(|(svc, r)| {
                    (r.fails() && stopped_task_arn(svc, &r.id) == *arn)
                        .then(|| stopped_task(arn, r))
                })
        })
        .collect();
    if tasks.is_empty() {
        return None;
    }
    Some(json_response(&json!({"tasks": tasks, "failures": []})))
}

/// DescribeTaskDefinition of a family without a revision, as AWS answers it: the
/// family's latest ACTIVE revision, or `ClientException` ("Unable to describe
/// task definition.") when none is active. moto answers the highest revision
/// even when it is deregistered (INACTIVE): code trusting that would take a
/// rolled-back revision for the live one.
pub(crate) async fn answer_family(
    shared: &Arc<Shared>,
    target: &str,
    request: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    if target != format!("{TARGET_PREFIX}DescribeTaskDefinition") {
        return None;
    }
    let request = request?;
    let asked = last_segment(request.get("taskDefinition")?.as_str()?);
    if asked.contains(':') {
        return None; // family:revision, or an ARN with its revision
    }
    let listed = crate::moto::moto_json(
        shared,
        &format!("{TARGET_PREFIX}ListTaskDefinitions"),
        &json!({"familyPrefix": asked, "status": "ACTIVE"}),
    )
    .await
    .ok()?;
    let latest = listed
        .get("taskDefinitionArns")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|arn| {
            let (family, revision) = last_segment(arn).rsplit_once(':')?;
            (family == asked).then_some((revision.parse::<u64>().ok()?, arn))
        })
        .max();
    let Some((_, arn)) = latest else {
        return Some(crate::protocol::json_error(
            "ClientException",
            "Unable to describe task definition.",
        ));
    };
    let mut exact = request.clone();
    exact["taskDefinition"] = json!(arn);
    let answer = crate::moto::moto_json(
        shared,
        &format!("{TARGET_PREFIX}DescribeTaskDefinition"),
        &exact,
    )
    .await
    .ok()?;
    Some(json_response(&answer))
}

/// Completes moto's answers: DescribeServices (deployments, running counts,
/// target registration) and ListTasks of STOPPED tasks (our synthetic ones).
pub(crate) async fn rewrite_after(
    shared: &Arc<Shared>,
    target: &str,
    request: Option<&Value>,
    status: StatusCode,
    body: Bytes,
) -> Bytes {
    if !status.is_success() || !target.starts_with(TARGET_PREFIX) {
        return body;
    }
    let op = &target[TARGET_PREFIX.len()..];
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    match op {
        "CreateService" | "UpdateService" => {
            let service = request
                .and_then(|r| r.get("serviceName").or(r.get("service")))
                .and_then(Value::as_str);
            let cluster = request
                .and_then(|r| r.get("cluster"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            if let (Some(req), Some(service), Ok(mut ecs)) = (request, service, shared.ecs.lock()) {
                let key = format!("{}/{}", last_segment(cluster), last_segment(service));
                let kept = ecs.remembered.entry(key).or_default();
                for field in FORGOTTEN {
                    if let Some(v) = req.get(*field) {
                        kept.insert(field.to_string(), v.clone());
                    }
                }
                // A forced deployment replaces every task, whatever else changed.
                let forced = req.get("forceNewDeployment").and_then(Value::as_bool) == Some(true);
                if let (true, Some(arn)) = (
                    forced,
                    value.pointer("/service/serviceArn").and_then(Value::as_str),
                ) {
                    ecs.rollouts.remove(arn);
                }
            }
            return body;
        }
        "RegisterTaskDefinition" => {
            let td = &value["taskDefinition"];
            let roles: Vec<String> = ["executionRoleArn", "taskRoleArn"]
                .iter()
                .filter_map(|k| td.get(*k).and_then(Value::as_str).map(str::to_string))
                .collect();
            let secrets: Vec<String> = td
                .get("containerDefinitions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c.get("secrets")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|s| {
                    s.get("valueFrom")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let image = td
                .pointer("/containerDefinitions/0/image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let (Some(arn), Ok(mut ecs)) = (
                td.get("taskDefinitionArn").and_then(Value::as_str),
                shared.ecs.lock(),
            ) {
                ecs.task_roles.insert(arn.to_string(), roles);
                ecs.task_secrets.insert(arn.to_string(), secrets);
                // (moto may not echo the runtime platform: the request says it.)
                let arm64 = [Some(td), request].into_iter().flatten().any(|v| {
                    v.pointer("/runtimePlatform/cpuArchitecture")
                        .and_then(Value::as_str)
                        == Some("ARM64")
                });
                if arm64 {
                    ecs.task_arm64.insert(arn.to_string());
                }
                ecs.task_images.insert(arn.to_string(), image);
            }
            return body;
        }
        "DescribeServices" => {
            let blocked = blocked_services(shared, &value).await;
            let (registrations, rollbacks) = describe_services(shared, &mut value, &blocked);
            // The circuit breaker's rollbacks, made in moto's record too (the
            // service's task definition is the one rolled back to).
            for (cluster, service, td) in rollbacks {
                let body = json!({"cluster": cluster, "service": service, "taskDefinition": td});
                let _ = crate::moto::send_to_moto(
                    shared,
                    "ecs",
                    "application/x-amz-json-1.1",
                    Some(&format!("{TARGET_PREFIX}UpdateService")),
                    body.to_string(),
                )
                .await;
            }
            for (tg, register, deregister) in registrations {
                sync_targets(shared, &tg, &register, &deregister).await;
            }
        }
        "ListTasks"
            if request
                .and_then(|r| r.get("desiredStatus"))
                .and_then(Value::as_str)
                == Some("STOPPED") =>
        {
            let service = request
                .and_then(|r| r.get("serviceName"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Ok(ecs) = shared.ecs.lock() {
                let extra: Vec<Value> = ecs
                    .rollouts
                    .iter()
                    .chain(ecs.rolled_back.iter().map(|(s, r)| (s, r)))
                    .filter(|(svc, r)| r.fails() && svc.ends_with(&format!("/{service}")))
                    .map(|(svc, r)| Value::String(stopped_task_arn(svc, &r.id)))
                    .collect();
                if let Some(list) = value.get_mut("taskArns").and_then(Value::as_array_mut) {
                    list.extend(extra);
                }
            }
        }
        _ => return body,
    }
    Bytes::from(value.to_string())
}

type Registration = (String, Vec<String>, Vec<String>);
/// A rollback to make in moto: cluster, service, task definition.
type Rollback = (String, String, String);

/// The services (by ARN) among `value`'s whose tasks, starting now, would
/// find no way out of their subnets (`crate::realism::egress`). Looked at
/// only for a service with tasks to start whose rollout has not started them
/// yet.
async fn blocked_services(shared: &Arc<Shared>, value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(services) = value.get("services").and_then(Value::as_array) else {
        return out;
    };
    for svc in services {
        let arn = svc.get("serviceArn").and_then(Value::as_str).unwrap_or("");
        let desired = svc.get("desiredCount").and_then(Value::as_i64).unwrap_or(0);
        let td = svc
            .get("taskDefinition")
            .and_then(Value::as_str)
            .unwrap_or("");
        if desired == 0 || svc.get("status").and_then(Value::as_str) != Some("ACTIVE") {
            continue;
        }
        let settled = shared.ecs.lock().is_ok_and(|ecs| {
            ecs.rollouts.get(arn).is_some_and(|r| {
                r.egress_checked && r.task_definition == td && r.desired == desired
            })
        });
        if settled {
            continue;
        }
        let vpc = svc.pointer("/networkConfiguration/awsvpcConfiguration");
        let subnets: Vec<String> = vpc
            .and_then(|v| v.get("subnets"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        let public_ip = vpc
            .and_then(|v| v.get("assignPublicIp"))
            .and_then(Value::as_str)
            == Some("ENABLED");
        if subnets.is_empty() {
            continue;
        }
        if crate::realism::egress::no_way_out(shared, &subnets, public_ip)
            .await
            .is_some()
        {
            out.insert(arn.to_string());
        }
    }
    out
}

/// Rewrites each ACTIVE service's deployments; returns the target changes and
/// the circuit breaker's rollbacks to make. A rollout whose tasks start now
/// in a subnet without a way out (`blocked`) fails as AWS's would.
fn describe_services(
    shared: &Arc<Shared>,
    value: &mut Value,
    blocked: &BTreeSet<String>,
) -> (Vec<Registration>, Vec<Rollback>) {
    let Ok(mut ecs) = shared.ecs.lock() else {
        return (Vec::new(), Vec::new());
    };
    let mut registrations = Vec::new();
    let mut rollbacks = Vec::new();
    let Some(services) = value.get_mut("services").and_then(Value::as_array_mut) else {
        return (registrations, rollbacks);
    };
    for svc in services.iter_mut() {
        let arn = svc
            .get("serviceArn")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = svc
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let td = svc
            .get("taskDefinition")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let desired = svc.get("desiredCount").and_then(Value::as_i64).unwrap_or(0);
        let tg = svc
            .get("loadBalancers")
            .and_then(|l| l.get(0))
            .and_then(|l| l.get("targetGroupArn"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if status != "ACTIVE" {
            // Deleted or draining: its tasks are gone.
            ecs.rollouts.remove(&arn);
            ecs.rolled_back.retain(|(s, _)| *s != arn);
            ecs.completed.remove(&arn);
            if let Some(tg) = tg {
                let all: Vec<String> = ecs
                    .targets
                    .remove(&tg)
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default();
                if !all.is_empty() {
                    registrations.push((tg, Vec::new(), all));
                }
            }
            continue;
        }
        let key = arn
            .rsplit(':')
            .next()
            .and_then(|r| r.strip_prefix("service/"))
            .unwrap_or("")
            .to_string();
        if let Some(kept) = ecs.remembered.get(&key) {
            for (field, v) in kept {
                svc[field.as_str()] = v.clone();
            }
        }
        let migration_fails = ecs
            .failing_image
            .as_ref()
            .is_some_and(|i| ecs.task_images.get(&td) == Some(i));
        let no_manifest = ecs.task_arm64.contains(&td)
            && ecs
                .task_images
                .get(&td)
                .is_some_and(|i| !crate::state::ecs::has_arm64(i));
        let fault = match (no_manifest, migration_fails) {
            (true, _) => Some(EcsFault::NoManifest),
            (false, true) => Some(EcsFault::MigrationFailed),
            (false, false) => ecs.fault,
        };
        let delay = ecs.start_delay;
        let restart = ecs
            .rollouts
            .get(&arn)
            .is_none_or(|r| r.task_definition != td || r.desired != desired);
        if restart {
            let roles = ecs.task_roles.get(&td).cloned().unwrap_or_default();
            let young_role = crate::deploying::young_role(shared, &roles);
            let id = format!("ecs-svc/{:016}", ecs.next_id);
            ecs.next_id += 1;
            ecs.rollouts.insert(
                arn.clone(),
                Rollout {
                    task_definition: td.clone(),
                    desired,
                    since: Instant::now(),
                    id,
                    fault,
                    young_role,
                    started_at: now_secs(),
                    rolling_back_from: None,
                    egress_checked: false,
                },
            );
        }
        // The deployment circuit breaker with rollback on: once a deployment
        // has failed, ECS rolls the service back to the task definition of its
        // last completed deployment — a new PRIMARY deployment, IN_PROGRESS,
        // the failed one beside it — and the service names that task
        // definition again (ECS developer guide, deployment circuit breaker).
        let rolls_back = svc
            .pointer("/deploymentConfiguration/deploymentCircuitBreaker/rollback")
            .and_then(Value::as_bool)
            == Some(true);
        let back_to = ecs.completed.get(&arn).filter(|c| **c != td).cloned();
        if let (true, Some(back_to), Some(r)) = (rolls_back, back_to, ecs.rollouts.get(&arn)) {
            if r.since.elapsed() >= delay && r.fails() && r.rolling_back_from.is_none() {
                let failed = (r.id.clone(), r.task_definition.clone());
                let fails_too = ecs
                    .failing_image
                    .as_ref()
                    .is_some_and(|i| ecs.task_images.get(&back_to) == Some(i));
                let id = format!("ecs-svc/{:016}", ecs.next_id);
                ecs.next_id += 1;
                let replaced = ecs.rollouts.insert(
                    arn.clone(),
                    Rollout {
                        task_definition: back_to.clone(),
                        desired,
                        since: Instant::now(),
                        id,
                        fault: fails_too.then_some(EcsFault::MigrationFailed),
                        young_role: None,
                        started_at: now_secs(),
                        rolling_back_from: Some(failed),
                        egress_checked: false,
                    },
                );
                if let Some(failed) = replaced {
                    ecs.rolled_back.push((arn.clone(), failed));
                }
                let cluster = svc
                    .get("clusterArn")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string();
                let name = svc
                    .get("serviceName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                rollbacks.push((cluster, name, back_to.clone()));
                svc["taskDefinition"] = json!(back_to);
            }
        }
        let td = svc
            .get("taskDefinition")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Its tasks start: they pull their image through the subnet's way out.
        if let Some(r) = ecs.rollouts.get_mut(&arn) {
            if r.since.elapsed() >= delay && !r.egress_checked && desired > 0 {
                r.egress_checked = true;
                if !r.fails() && blocked.contains(&arn) {
                    r.fault = Some(EcsFault::NoWayOut);
                }
            }
        }
        let Some(r) = ecs.rollouts.get(&arn) else {
            continue;
        };
        let started = r.since.elapsed() >= delay;
        let (rollout, reason, running, failed) = match (started, r.fails()) {
            (false, _) => (
                "IN_PROGRESS",
                format!("ECS deployment {} in progress.", r.id),
                0,
                0,
            ),
            (true, true) => (
                "FAILED",
                format!(
                    "ECS deployment circuit breaker: tasks failed to start. (deployment {})",
                    r.id
                ),
                0,
                desired.max(1),
            ),
            (true, false) => (
                "COMPLETED",
                format!("ECS deployment {} completed.", r.id),
                desired,
                0,
            ),
        };
        // A secret rotated after the tasks started: ECS injected the old value, so
        // Metabase cannot open new database connections and fails its health checks.
        let stale = ecs.task_secrets.get(&td).is_some_and(|secrets| {
            secrets.iter().any(|s| {
                ecs.rotated
                    .iter()
                    .any(|(arn, at)| s.starts_with(arn.as_str()) && *at > r.started_at)
            })
        });
        let created = r.started_at;
        let reason = match (&r.rolling_back_from, rollout) {
            (Some((from, _)), "IN_PROGRESS") => {
                format!(
                    "ECS deployment circuit breaker: rolling back to deploymentId {}.",
                    r.id
                ) + &format!(" (deployment {from} failed)")
            }
            _ => reason,
        };
        let mut deployments = vec![json!({
            "id": r.id, "status": "PRIMARY", "taskDefinition": td, "desiredCount": desired,
            "runningCount": running, "pendingCount": desired - running, "failedTasks": failed,
            "rolloutState": rollout, "rolloutStateReason": reason,
            "createdAt": created, "updatedAt": now_secs(), "launchType": "FARGATE",
        })];
        if let (Some((from, from_td)), "IN_PROGRESS") = (&r.rolling_back_from, rollout) {
            deployments.push(json!({
                "id": from, "status": "ACTIVE", "taskDefinition": from_td, "desiredCount": 0,
                "runningCount": 0, "pendingCount": 0, "failedTasks": desired.max(1),
                "rolloutState": "FAILED",
                "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
                "createdAt": created, "updatedAt": now_secs(), "launchType": "FARGATE",
            }));
        }
        if rollout == "COMPLETED" {
            ecs.completed.insert(arn.clone(), td.clone());
        }
        svc["runningCount"] = json!(running);
        svc["pendingCount"] = json!(desired - running);
        svc["deployments"] = json!(deployments);
        // Targets: one ip per running task.
        if let Some(tg) = tg {
            let healthy = if stale { 0 } else { running };
            let want: BTreeSet<String> = (0..healthy)
                .map(|i| format!("10.254.{}.{}", i / 250, 10 + i % 250))
                .collect();
            let have = ecs.targets.entry(tg.clone()).or_default();
            let register: Vec<String> = want.difference(have).cloned().collect();
            let deregister: Vec<String> = have.difference(&want).cloned().collect();
            if !register.is_empty() || !deregister.is_empty() {
                *have = want;
                registrations.push((tg, register, deregister));
            }
        }
    }
    (registrations, rollbacks)
}

async fn sync_targets(shared: &Arc<Shared>, tg: &str, register: &[String], deregister: &[String]) {
    for (action, ips) in [
        ("RegisterTargets", register),
        ("DeregisterTargets", deregister),
    ] {
        if ips.is_empty() {
            continue;
        }
        let mut form = format!(
            "Action={action}&Version=2015-12-01&TargetGroupArn={}",
            urlencode(tg)
        );
        for (i, ip) in ips.iter().enumerate() {
            form.push_str(&format!(
                "&Targets.member.{n}.Id={ip}&Targets.member.{n}.Port=3000",
                n = i + 1
            ));
        }
        if let Err(e) = moto_query(shared, "elasticloadbalancing", &form).await {
            tracing::warn!(target_group = tg, error = %e, "the emulator could not {action}");
        }
    }
}

pub(crate) fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// ECS as AWS runs it (see the module's doc): tasks that start, run and stop,
/// rollouts, task definitions by family.
pub(crate) struct Ecs;

impl crate::rules::Rule for Ecs {
    fn answer<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<crate::rules::Answer>> {
        Box::pin(async move {
            if let Some(a) = answer_before(s, &c.target, c.json.as_ref()) {
                return Some(a);
            }
            answer_family(s, &c.target, c.json.as_ref()).await
        })
    }
    fn after<'a>(
        &'a self,
        s: &'a Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        Box::pin(rewrite_after(s, &c.target, c.json.as_ref(), status, body))
    }
}
