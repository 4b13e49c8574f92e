//! ECS: a cluster with an ACTIVE service, or with the tasks of a deleted
//! service still stopping (≈1 min), is not deleted; a service's target group
//! must be used by a load balancer.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

use crate::moto::moto_query;
use crate::protocol::json_error;
use crate::state::realism::TASKS_STOP;
use crate::state::Shared;
use crate::xml;

/// "Not yet": a deleted service's tasks still stopping hold their cluster
/// (ClusterContainsTasksException), which mbstack waits out.
pub(crate) fn not_yet(
    shared: &Arc<Shared>,
    target: &str,
    json_req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    if target != "AmazonEC2ContainerServiceV20141113.DeleteCluster" {
        return None;
    }
    let cluster = json_req
        .and_then(|r| r.get("cluster"))
        .and_then(Value::as_str)
        .map(crate::ecs::last_segment)
        .unwrap_or("");
    let stopping = shared.realism.lock().is_ok_and(|r| {
        r.tasks_stopping
            .get(cluster)
            .is_some_and(|t| t.elapsed() < r.scaled(TASKS_STOP))
    });
    stopping.then(|| {
        json_error(
            "ClusterContainsTasksException",
            "The Cluster cannot be deleted while Tasks are active.",
        )
    })
}

/// The refusal AWS would give to this ECS call, if any.
pub(crate) async fn refuse(
    shared: &Arc<Shared>,
    op: &str,
    req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    match op {
        "RegisterTaskDefinition" => {
            let fargate = req?
                .get("requiresCompatibilities")?
                .as_array()?
                .iter()
                .any(|c| c.as_str() == Some("FARGATE"));
            let cpu: u32 = req?.get("cpu")?.as_str()?.parse().ok()?;
            let memory: u32 = req?.get("memory")?.as_str()?.parse().ok()?;
            let ok = mbstack_core::spec::fargate_memory_options(cpu)
                .is_some_and(|m| m.contains(&memory));
            (fargate && !ok).then(|| {
                json_error(
                    "ClientException",
                    &format!("No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."),
                )
            })
        }
        "DeleteCluster" => {
            let cluster = req?.get("cluster")?.as_str()?;
            let form = json!({"cluster": cluster});
            let listed = crate::moto::moto_json(
                shared,
                "AmazonEC2ContainerServiceV20141113.ListServices",
                &form,
            )
            .await
            .ok()?;
            let arns: Vec<Value> = listed.get("serviceArns")?.as_array()?.clone();
            if arns.is_empty() {
                return None;
            }
            let described = crate::moto::moto_json(
                shared,
                "AmazonEC2ContainerServiceV20141113.DescribeServices",
                &json!({"cluster": cluster, "services": arns}),
            )
            .await
            .ok()?;
            let active = described
                .get("services")?
                .as_array()?
                .iter()
                .any(|s| s.get("status").and_then(Value::as_str) == Some("ACTIVE"));
            active.then(|| {
                json_error(
                    "ClusterContainsServicesException",
                    "The Cluster cannot be deleted while Services are active.",
                )
            })
        }
        "CreateService" => {
            let tgs: Vec<String> = req?
                .get("loadBalancers")?
                .as_array()?
                .iter()
                .filter_map(|l| {
                    l.get("targetGroupArn")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            for tg in tgs {
                let form = format!(
                    "Action=DescribeTargetGroups&Version=2015-12-01&TargetGroupArns.member.1={}",
                    crate::protocol::urlencode(&tg)
                );
                let xml = moto_query(shared, "elasticloadbalancing", &form)
                    .await
                    .ok()?;
                let xml = String::from_utf8_lossy(&xml).to_string();
                let used = xml::each(&xml, "LoadBalancerArns", |l| {
                    Some(!l.children("member").is_empty())
                });
                if !used.into_iter().any(|u| u) {
                    return Some(json_error(
                        "InvalidParameterException",
                        &format!("The target group with targetGroupArn {tg} does not have an associated load balancer."),
                    ));
                }
            }
            None
        }
        _ => None,
    }
}
