//! The AWS rules moto forgives, enforced at the front door, and NAT gateways that
//! take time. Before a call reaches moto the front door checks it against moto's
//! current state and, where AWS would refuse it, answers with AWS's error (same
//! code, same HTTP status, in that service's protocol) — and counts the refusal,
//! so a test can assert that mbstack never provokes one. NAT gateways report
//! `pending` for a while after creation and `deleting` for a while after deletion,
//! as in AWS (≈2 min and ≈1 min), divided by the scale factor.
//!
//! Rules (the AWS error each mirrors):
//! - ec2 ReleaseAddress of an address a NAT gateway still maps → `InvalidIPAddress.InUse`
//! - ec2 DetachInternetGateway while a NAT gateway maps a public address in the
//!   VPC → `DependencyViolation`
//! - ec2 DeleteSubnet holding a NAT gateway → `DependencyViolation`
//! - rds DeleteDBInstance with neither a final snapshot nor SkipFinalSnapshot →
//!   `InvalidParameterCombination`
//! - rds DeleteDBSubnetGroup still used by an instance → `InvalidDBSubnetGroupStateFault`
//! - ecs DeleteCluster with an ACTIVE service → `ClusterContainsServicesException`
//! - ecs CreateService on a target group no load balancer uses → `InvalidParameterException`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::front_door::{moto_query, Shared};

/// Real AWS: a NAT gateway takes about 2 minutes to become available and 1 to go.
const NAT_CREATE: Duration = Duration::from_secs(120);
const NAT_DELETE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Realism {
    pub enabled: bool,
    /// Real durations are divided by this (60: a 2-minute create takes 2 s).
    pub scale: u32,
    pub refused: Arc<AtomicU64>,
    nat_created: HashMap<String, Instant>,
    nat_deleted: HashMap<String, Instant>,
}

impl Default for Realism {
    fn default() -> Self {
        Self {
            enabled: false,
            scale: 60,
            refused: Arc::new(AtomicU64::new(0)),
            nat_created: HashMap::new(),
            nat_deleted: HashMap::new(),
        }
    }
}

impl Realism {
    fn scaled(&self, d: Duration) -> Duration {
        d / self.scale.max(1)
    }

    /// The state AWS would report for a NAT gateway moto reports as `moto_state`.
    fn nat_state(&self, id: &str, moto_state: &str) -> String {
        if let Some(t) = self.nat_deleted.get(id) {
            if t.elapsed() < self.scaled(NAT_DELETE) {
                return "deleting".into();
            }
        }
        if let Some(t) = self.nat_created.get(id) {
            if moto_state == "available" && t.elapsed() < self.scaled(NAT_CREATE) {
                return "pending".into();
            }
        }
        moto_state.to_string()
    }
}

/// A query-protocol request: its service (from the credential scope) and params.
pub(crate) struct Query {
    pub service: String,
    pub params: HashMap<String, String>,
}

impl Query {
    pub fn action(&self) -> &str {
        self.params.get("Action").map(String::as_str).unwrap_or("")
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a form-encoded query request; None for other protocols.
pub(crate) fn query(headers: &hyper::HeaderMap, body: &[u8]) -> Option<Query> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let service = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("")
        .to_string();
    let text = std::str::from_utf8(body).ok()?;
    let params = text
        .split('&')
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        })
        .collect();
    Some(Query { service, params })
}

/// All values of `<tag>…</tag>` in an XML text.
pub(crate) fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.trim().to_string()))
        .collect()
}

fn ec2_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>mbstack-realism</RequestID></Response>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn query_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>mbstack-realism</RequestId></ErrorResponse>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn json_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"__type": code, "message": message}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// NAT gateways as (id, effective state, subnet, vpc, allocation ids).
async fn nat_gateways(shared: &Arc<Shared>) -> Vec<(String, String, String, String, Vec<String>)> {
    let Ok(xml) = moto_query(
        shared,
        "ec2",
        "Action=DescribeNatGateways&Version=2016-11-15",
    )
    .await
    else {
        return Vec::new();
    };
    let xml = String::from_utf8_lossy(&xml).to_string();
    let Ok(realism) = shared.realism.lock() else {
        return Vec::new();
    };
    xml.split("<natGatewayId>")
        .skip(1)
        .filter_map(|rest| {
            let id = rest.split_once("</natGatewayId>")?.0.trim().to_string();
            // The NAT's own fields follow its id (moto serializes in shape order);
            // its addresses come before it.
            let before_id = xml
                .split(&format!("<natGatewayId>{id}</natGatewayId>"))
                .next()
                .unwrap_or("");
            let item_start = before_id.rfind("<natGatewayAddressSet>").unwrap_or(0);
            let allocations = xml_values(&before_id[item_start..], "allocationId");
            let state = xml_values(rest, "state")
                .into_iter()
                .next()
                .unwrap_or_default();
            let subnet = xml_values(rest, "subnetId")
                .into_iter()
                .next()
                .unwrap_or_default();
            let vpc = xml_values(rest, "vpcId")
                .into_iter()
                .next()
                .unwrap_or_default();
            let effective = realism.nat_state(&id, &state);
            Some((id, effective, subnet, vpc, allocations))
        })
        .collect()
}

fn live(state: &str) -> bool {
    matches!(state, "pending" | "available" | "deleting")
}

/// The refusal AWS would give to this call, if any.
pub(crate) async fn refuse(
    shared: &Arc<Shared>,
    q: Option<&Query>,
    target: &str,
    json_req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    let enabled = shared.realism.lock().map(|r| r.enabled).unwrap_or(false);
    if !enabled {
        return None;
    }
    let refusal = match (q, target) {
        (Some(q), _) => refuse_query(shared, q).await,
        (None, t) => match t.strip_prefix("AmazonEC2ContainerServiceV20141113.") {
            Some(op) => refuse_ecs(shared, op, json_req).await,
            None => None,
        },
    };
    if let Some(r) = &refusal {
        if let Ok(realism) = shared.realism.lock() {
            realism.refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(status = %r.status(), "the emulator refused a call as AWS would");
    }
    refusal
}

async fn refuse_query(shared: &Arc<Shared>, q: &Query) -> Option<Response<Full<Bytes>>> {
    match (q.service.as_str(), q.action()) {
        ("ec2", "ReleaseAddress") => {
            let allocation = q.get("AllocationId")?;
            let nats = nat_gateways(shared).await;
            let user = nats
                .iter()
                .find(|n| live(&n.1) && n.4.iter().any(|a| a == allocation))?;
            Some(ec2_error(
                "InvalidIPAddress.InUse",
                &format!(
                    "The address with allocation id [{allocation}] is in use by {} ({}).",
                    user.0, user.1
                ),
            ))
        }
        ("ec2", "DetachInternetGateway") => {
            let vpc = q.get("VpcId")?;
            let nats = nat_gateways(shared).await;
            nats.iter().find(|n| live(&n.1) && n.3 == vpc).map(|_| {
                ec2_error(
                    "DependencyViolation",
                    &format!("Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."),
                )
            })
        }
        ("ec2", "DeleteSubnet") => {
            let subnet = q.get("SubnetId")?;
            let nats = nat_gateways(shared).await;
            nats.iter().find(|n| live(&n.1) && n.2 == subnet).map(|_| {
                ec2_error(
                    "DependencyViolation",
                    &format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
                )
            })
        }
        ("rds", "DeleteDBInstance") => {
            let skip = q.get("SkipFinalSnapshot") == Some("true");
            let snapshot = q
                .get("FinalDBSnapshotIdentifier")
                .is_some_and(|s| !s.is_empty());
            (!skip && !snapshot).then(|| {
                query_error(
                    "InvalidParameterCombination",
                    "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
                )
            })
        }
        ("rds", "DeleteDBSubnetGroup") => {
            let group = q.get("DBSubnetGroupName")?;
            let xml = moto_query(
                shared,
                "rds",
                "Action=DescribeDBInstances&Version=2014-10-31",
            )
            .await
            .ok()?;
            let xml = String::from_utf8_lossy(&xml).to_string();
            let users: Vec<String> = xml
                .split("<DBInstance>")
                .skip(1)
                .filter(|item| {
                    xml_values(item, "DBSubnetGroupName")
                        .iter()
                        .any(|g| g == group)
                })
                .filter_map(|item| xml_values(item, "DBInstanceIdentifier").into_iter().next())
                .collect();
            users.first().map(|db| {
                query_error(
                    "InvalidDBSubnetGroupStateFault",
                    &format!("Cannot delete the subnet group '{group}' because at least one database instance: {db} is still using it."),
                )
            })
        }
        _ => None,
    }
}

async fn refuse_ecs(
    shared: &Arc<Shared>,
    op: &str,
    req: Option<&Value>,
) -> Option<Response<Full<Bytes>>> {
    match op {
        "DeleteCluster" => {
            let cluster = req?.get("cluster")?.as_str()?;
            let form = json!({"cluster": cluster});
            let listed = crate::front_door::moto_json(
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
            let described = crate::front_door::moto_json(
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
                    crate::ecs::urlencode(&tg)
                );
                let xml = moto_query(shared, "elasticloadbalancing", &form)
                    .await
                    .ok()?;
                let xml = String::from_utf8_lossy(&xml).to_string();
                let lbs = xml
                    .split("<LoadBalancerArns>")
                    .nth(1)
                    .and_then(|r| r.split("</LoadBalancerArns>").next())
                    .unwrap_or("");
                if !lbs.contains("<member>") {
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

/// After moto answered a query call: remember NAT gateway lifetimes, and show
/// NAT gateways in the state AWS would report.
pub(crate) fn after(shared: &Arc<Shared>, q: &Query, body: Bytes) -> Bytes {
    let Ok(mut realism) = shared.realism.lock() else {
        return body;
    };
    if !realism.enabled || q.service != "ec2" {
        return body;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    match q.action() {
        "CreateNatGateway" => {
            for id in xml_values(&text, "natGatewayId") {
                realism.nat_created.insert(id, Instant::now());
            }
            body
        }
        "DeleteNatGateway" => {
            if let Some(id) = q.get("NatGatewayId") {
                realism
                    .nat_deleted
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
            body
        }
        "DescribeNatGateways" => {
            let mut out = text.clone();
            for id in xml_values(&text, "natGatewayId") {
                let marker = format!("<natGatewayId>{id}</natGatewayId>");
                let Some(pos) = out.find(&marker) else {
                    continue;
                };
                let after_id = pos + marker.len();
                let Some(rel) = out[after_id..].find("<state>") else {
                    continue;
                };
                let start = after_id + rel + "<state>".len();
                let Some(len) = out[start..].find("</state>") else {
                    continue;
                };
                let moto_state = out[start..start + len].to_string();
                let state = realism.nat_state(&id, &moto_state);
                if state != moto_state {
                    out.replace_range(start..start + len, &state);
                }
            }
            Bytes::from(out)
        }
        _ => body,
    }
}
