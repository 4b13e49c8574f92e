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
use crate::xml;

/// Real AWS: a NAT gateway takes about 2 minutes to become available and 1 to go.
const NAT_CREATE: Duration = Duration::from_secs(120);
const NAT_DELETE: Duration = Duration::from_secs(60);
/// The default quota of Elastic IPs per region (EC2-VPC Elastic IPs, L-0263D0A3),
/// as DescribeAccountAttributes' `vpc-max-elastic-ips` reports it.
const EIP_QUOTA: usize = 5;
/// A deleted NAT gateway's Elastic IP stays "in use" for a short while after
/// the gateway reports `deleted`.
const NAT_EIP_SETTLE: Duration = Duration::from_secs(60);
/// A small single-AZ RDS instance: ~6 min to create (the last part backing up),
/// ~5 min to delete.
const DB_CREATE: Duration = Duration::from_secs(360);
const DB_DELETE: Duration = Duration::from_secs(300);
/// After a storage change RDS refuses another for 6 hours (or until the storage
/// optimization ends, if later).
const STORAGE_COOLDOWN: Duration = Duration::from_secs(6 * 3600);
/// Statuses in which RDS cannot take a final snapshot. Kept apart from the data
/// tier's own list on purpose: the emulator models AWS, and a list shared with
/// the code under test could not catch that code's mistake.
const BUSY: &[&str] = &[
    "creating",
    "backing-up",
    "modifying",
    "starting",
    "stopping",
    "rebooting",
    "upgrading",
];
/// An ALB: ~2.5 min from provisioning to active.
const ALB_CREATE: Duration = Duration::from_secs(150);
/// The ENIs of a deleted ALB or Fargate service linger ~1.5 min and block the
/// deletion of their subnets and security groups.
const ENI_LINGER: Duration = Duration::from_secs(90);
/// A deleted service's Fargate tasks take ~1 min to stop and deprovision; until
/// then their cluster cannot be deleted.
const TASKS_STOP: Duration = Duration::from_secs(60);
/// Metabase's start plus the target group's health checks: ~3 min.
pub(crate) const ECS_START: Duration = Duration::from_secs(180);

#[derive(Debug)]
pub(crate) struct Realism {
    pub enabled: bool,
    /// Real durations are divided by this (60: a 2-minute create takes 2 s).
    pub scale: u32,
    pub refused: Arc<AtomicU64>,
    /// "Not yet" answers (lingering ENIs): AWS's timing, waited out by mbstack.
    pub not_yet: Arc<AtomicU64>,
    nat_created: HashMap<String, Instant>,
    /// CreateNatGateway's ClientToken → the gateway it created.
    nat_tokens: HashMap<String, String>,
    nat_deleted: HashMap<String, Instant>,
    db_created: HashMap<String, Instant>,
    /// DB instances whose storage last changed: when.
    storage_changed: HashMap<String, Instant>,
    /// Deleted DB instances: when, and their description (status `deleting`).
    db_deleted: HashMap<String, (Instant, String)>,
    alb_created: HashMap<String, Instant>,
    /// Subnets and security groups of ENIs that outlive their ALB or service.
    lingering: Vec<(Instant, Vec<String>)>,
    /// Clusters whose deleted service's tasks are still stopping: since when.
    tasks_stopping: HashMap<String, Instant>,
    /// The fraction of calls answered with throttling (the reliability knob).
    pub throttle: f64,
    rng: u64,
}

impl Default for Realism {
    fn default() -> Self {
        Self {
            enabled: false,
            scale: 60,
            refused: Arc::new(AtomicU64::new(0)),
            not_yet: Arc::new(AtomicU64::new(0)),
            nat_created: HashMap::new(),
            nat_tokens: HashMap::new(),
            nat_deleted: HashMap::new(),
            db_created: HashMap::new(),
            storage_changed: HashMap::new(),
            db_deleted: HashMap::new(),
            alb_created: HashMap::new(),
            lingering: Vec::new(),
            tasks_stopping: HashMap::new(),
            throttle: 0.0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Realism {
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d / self.scale.max(1)
    }

    fn db_status(&self, id: &str, moto_status: &str) -> String {
        match self.db_created.get(id) {
            Some(t) if moto_status == "available" => {
                let full = self.scaled(DB_CREATE);
                let e = t.elapsed();
                if e < full * 4 / 5 {
                    "creating".into()
                } else if e < full {
                    "backing-up".into()
                } else {
                    moto_status.into()
                }
            }
            _ => moto_status.into(),
        }
    }

    fn deleting_db(&self, id: &str) -> Option<&String> {
        self.db_deleted
            .get(id)
            .filter(|(t, _)| t.elapsed() < self.scaled(DB_DELETE))
            .map(|(_, xml)| xml)
    }

    fn lingers(&self, resource: &str) -> bool {
        let limit = self.scaled(ENI_LINGER);
        self.lingering
            .iter()
            .any(|(t, used)| t.elapsed() < limit && used.iter().any(|u| u == resource))
    }

    /// Whether this call is throttled (pseudo-random, reproducible).
    fn throttled(&mut self) -> bool {
        if self.throttle <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 10_000) as f64 / 10_000.0 < self.throttle
    }

    /// Whether this NAT gateway is `deleted` but its address not yet free.
    fn nat_eip_settling(&self, id: &str) -> bool {
        self.nat_deleted.get(id).is_some_and(|t| {
            let e = t.elapsed();
            e >= self.scaled(NAT_DELETE) && e < self.scaled(NAT_DELETE + NAT_EIP_SETTLE)
        })
    }

    /// The state AWS would report for a NAT gateway moto reports as `moto_state`.
    /// A load balancer is `provisioning` for a while after its creation.
    fn alb_state(&self, arn: &str, moto_state: &str) -> String {
        match self.alb_created.get(arn) {
            Some(t) if moto_state == "active" && t.elapsed() < self.scaled(ALB_CREATE) => {
                "provisioning".into()
            }
            _ => moto_state.into(),
        }
    }

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
    // A form body is ASCII; anything else is not a query call.
    if std::str::from_utf8(body).is_err() {
        return None;
    }
    let params = form_urlencoded::parse(body).into_owned().collect();
    Some(Query { service, params })
}

fn ec2_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_error(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>mbstack-realism</RequestID></Response>"
    ))
}

fn query_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_error(format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>mbstack-realism</RequestId></ErrorResponse>"
    ))
}

/// A 400 with an XML error body (EC2's or the query protocol's shape).
fn xml_error(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn json_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    json_error_with(StatusCode::BAD_REQUEST, code, message)
}

/// A JSON-protocol error with AWS's code in the body and the header.
pub(crate) fn json_error_with(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let body = json!({"__type": code, "message": message}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
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
    // Each NAT is the element around its id: its own state, subnet and VPC
    // are children of it, its addresses inside it.
    xml::each(&xml, "natGatewayId", |id| {
        let nat = id.parent()?;
        let id = id.text();
        let state = nat.child("state").unwrap_or_default();
        let subnet = nat.child("subnetId").unwrap_or_default();
        let vpc = nat.child("vpcId").unwrap_or_default();
        let effective = realism.nat_state(&id, &state);
        Some((id, effective, subnet, vpc, nat.all("allocationId")))
    })
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
    // Step Functions' own API (the caller following its executions) is not throttled.
    let sfn = target.starts_with("AWSStepFunctions.");
    let (enabled, throttled) = shared
        .realism
        .lock()
        .map(|mut r| (r.enabled, !sfn && r.throttled()))
        .unwrap_or((false, false));
    if throttled {
        // Counted apart: a throttled call is AWS's load, not a call AWS refuses.
        return Some(match (q, target.is_empty()) {
            (Some(q), _) if q.service == "ec2" => {
                ec2_error("RequestLimitExceeded", "Request limit exceeded.")
            }
            (Some(_), _) => query_error("Throttling", "Rate exceeded"),
            (None, _) => json_error("ThrottlingException", "Rate exceeded"),
        });
    }
    if !enabled {
        return None;
    }
    // ENIs of a deleted ALB or service still hold their subnets and security
    // groups: AWS's "not yet" (DependencyViolation), which mbstack waits out. It
    // is counted apart from the refusals mbstack must never provoke.
    if let Some(q) = q.filter(|q| {
        q.service == "ec2" && matches!(q.action(), "DeleteSubnet" | "DeleteSecurityGroup")
    }) {
        let id = q.get("SubnetId").or(q.get("GroupId")).unwrap_or("");
        let lingers = shared
            .realism
            .lock()
            .map(|r| r.lingers(id))
            .unwrap_or(false);
        if lingers {
            if let Ok(r) = shared.realism.lock() {
                r.not_yet.fetch_add(1, Ordering::Relaxed);
            }
            return Some(ec2_error(
                "DependencyViolation",
                &format!("resource {id} has a dependent object (a network interface still in use)"),
            ));
        }
    }
    // A deleted service's tasks still stopping hold their cluster: AWS's "not
    // yet" (ClusterContainsTasksException), counted with the lingering ENIs.
    if target == "AmazonEC2ContainerServiceV20141113.DeleteCluster" {
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
        if stopping {
            if let Ok(r) = shared.realism.lock() {
                r.not_yet.fetch_add(1, Ordering::Relaxed);
            }
            return Some(json_error(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
    }
    // The Elastic IP of a NAT gateway `deleted` moments ago is still in use:
    // AWS's "not yet" (InvalidIPAddress.InUse; AuthFailure for some), which
    // mbstack waits out.
    if let Some(allocation) = q
        .filter(|q| q.service == "ec2" && q.action() == "ReleaseAddress")
        .and_then(|q| q.get("AllocationId"))
    {
        let nats = nat_gateways(shared).await;
        let settling = shared.realism.lock().ok().and_then(|r| {
            nats.iter()
                .filter(|n| n.4.iter().any(|a| a == allocation))
                .find(|n| r.nat_eip_settling(&n.0))
                .map(|n| n.0.clone())
        });
        if let Some(nat) = settling {
            if let Ok(r) = shared.realism.lock() {
                r.not_yet.fetch_add(1, Ordering::Relaxed);
            }
            return Some(ec2_error(
                "InvalidIPAddress.InUse",
                &format!("The address with allocation id [{allocation}] is in use by {nat} (deleted moments ago)."),
            ));
        }
    }
    let refusal = match (q, target) {
        (Some(q), _) => refuse_query(shared, q).await,
        (None, t) => match (
            t.strip_prefix("AmazonEC2ContainerServiceV20141113."),
            t.strip_prefix("AmazonSSM."),
        ) {
            (Some(op), _) => refuse_ecs(shared, op, json_req).await,
            (_, Some(op)) => refuse_ssm(op, json_req),
            _ => None,
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
        ("ec2", "AllocateAddress") => {
            let xml = moto_query(shared, "ec2", "Action=DescribeAddresses&Version=2016-11-15")
                .await
                .ok()?;
            let in_use = xml::values(&String::from_utf8_lossy(&xml), "allocationId").len();
            (in_use >= EIP_QUOTA).then(|| {
                ec2_error(
                    "AddressLimitExceeded",
                    "The maximum number of addresses has been reached.",
                )
            })
        }
        ("ec2", "CreateNatGateway") => {
            let allocation = q.get("AllocationId")?;
            let nats = nat_gateways(shared).await;
            let holder = nats
                .iter()
                .find(|n| live(&n.1) && n.4.iter().any(|a| a == allocation))?;
            // The same ClientToken again is a retry: AWS answers with that gateway.
            let retry = q.get("ClientToken").is_some_and(|t| {
                shared
                    .realism
                    .lock()
                    .is_ok_and(|r| r.nat_tokens.get(t) == Some(&holder.0))
            });
            if retry {
                return None;
            }
            Some(ec2_error(
                "Resource.AlreadyAssociated",
                &format!(
                    "Elastic IP address [{allocation}] is already associated (with {}, {}).",
                    holder.0, holder.1
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
            let nat = nats.iter().any(|n| live(&n.1) && n.2 == subnet);
            let eni = shared
                .realism
                .lock()
                .map(|r| r.lingers(subnet))
                .unwrap_or(false);
            let used = nat || eni || used_by_lb_or_db(shared, subnet).await;
            used.then(|| {
                ec2_error(
                    "DependencyViolation",
                    &format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
                )
            })
        }
        ("ec2", "DeleteSecurityGroup") => {
            let group = q.get("GroupId")?;
            let rules = moto_query(
                shared,
                "ec2",
                "Action=DescribeSecurityGroupRules&Version=2016-11-15",
            )
            .await
            .ok()?;
            let rules = String::from_utf8_lossy(&rules).to_string();
            // A rule of another group whose source is this one.
            let referenced = xml::each(&rules, "referencedGroupInfo", |r| {
                let owner = r.parent()?.child("groupId")?;
                Some(owner != group && r.child("groupId").as_deref() == Some(group))
            })
            .into_iter()
            .any(|b| b);
            (referenced || used_by_lb_or_db(shared, group).await).then(|| {
                ec2_error(
                    "DependencyViolation",
                    &format!("resource {group} has a dependent object"),
                )
            })
        }
        ("rds", "CreateDBSubnetGroup") => {
            let subnets: Vec<&String> = q
                .params
                .iter()
                .filter(|(k, _)| k.starts_with("SubnetIds."))
                .map(|(_, v)| v)
                .collect();
            let azs = subnet_azs(shared, &subnets).await;
            (azs.len() < 2).then(|| {
                query_error(
                    "DBSubnetGroupDoesNotCoverEnoughAZs",
                    &format!(
                        "The DB subnet group doesn't meet Availability Zone (AZ) coverage requirement. Current AZ coverage: {}. Add subnets to cover at least 2 AZs.",
                        azs.join(", ")
                    ),
                )
            })
        }
        ("rds", "CreateDBInstance") => {
            let storage: i64 = q
                .get("AllocatedStorage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let class = q.get("DBInstanceClass").unwrap_or("");
            let version = q.get("EngineVersion").unwrap_or("");
            let major: u32 = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if q.get("StorageType") == Some("gp3") && !(20..=65536).contains(&storage) {
                Some(query_error("InvalidParameterValue", &format!("Invalid storage size for engine name postgres and storage type gp3: {storage}")))
            } else if !class.starts_with("db.") || class.split('.').count() != 3 {
                Some(query_error(
                    "InvalidParameterValue",
                    &format!("Invalid DB Instance class: {class}"),
                ))
            } else if q.get("Engine") == Some("postgres")
                && !version.is_empty()
                && !(11..=17).contains(&major)
            {
                Some(query_error(
                    "InvalidParameterCombination",
                    &format!("Cannot find version {version} for postgres"),
                ))
            } else {
                None
            }
        }
        ("ec2", "CreateSecurityGroup")
            if q.get("GroupName").is_some_and(|n| n.starts_with("sg-")) =>
        {
            Some(ec2_error(
                "InvalidParameterValue",
                &format!(
                    "Value ({}) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
                    q.get("GroupName").unwrap_or("")
                ),
            ))
        }
        ("elasticloadbalancing", "CreateLoadBalancer")
            if q.get("Name").is_some_and(|n| n.starts_with("internal-")) =>
        {
            Some(query_error(
                "ValidationError",
                &format!(
                    "The load balancer name '{}' is invalid: it must not begin with 'internal-'",
                    q.get("Name").unwrap_or("")
                ),
            ))
        }
        ("elasticloadbalancing", "CreateLoadBalancer") => {
            let subnets: Vec<&String> = q
                .params
                .iter()
                .filter(|(k, _)| k.starts_with("Subnets.member."))
                .map(|(_, v)| v)
                .collect();
            let azs = subnet_azs(shared, &subnets).await;
            if azs.len() < 2 {
                return Some(query_error(
                    "ValidationError",
                    "At least two subnets in two different Availability Zones must be specified",
                ));
            }
            let internal = q.get("Scheme") == Some("internal");
            let vpc = subnet_vpc(shared, subnets.first()?).await?;
            let form = format!("Action=DescribeInternetGateways&Version=2016-11-15&Filter.1.Name=attachment.vpc-id&Filter.1.Value.1={vpc}");
            let igws = moto_query(shared, "ec2", &form).await.ok()?;
            let has_igw = String::from_utf8_lossy(&igws).contains("<internetGatewayId>");
            (!internal && !has_igw).then(|| {
                query_error(
                    "InvalidSubnet",
                    &format!("VPC {vpc} has no internet gateway"),
                )
            })
        }
        ("rds", "DeleteDBInstance") => {
            let skip = q.get("SkipFinalSnapshot") == Some("true");
            let snapshot = q
                .get("FinalDBSnapshotIdentifier")
                .is_some_and(|s| !s.is_empty());
            if !skip && !snapshot {
                return Some(query_error(
                    "InvalidParameterCombination",
                    "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
                ));
            }
            // A final snapshot needs an instance at rest.
            let id = q.get("DBInstanceIdentifier")?;
            let status = db_status_now(shared, id).await?;
            (snapshot && !skip && BUSY.contains(&status.as_str())).then(|| {
                query_error(
                    "InvalidDBInstanceState",
                    &format!("Instance {id} is currently {status} - a final snapshot cannot be taken."),
                )
            })
        }
        ("rds", "ModifyDBInstance") => {
            let id = q.get("DBInstanceIdentifier")?;
            let status = db_status_now(shared, id).await?;
            if status == "stopped" {
                return Some(query_error(
                    "InvalidDBInstanceState",
                    &format!("Instance {id} is not in available state: it is stopped (start it first)."),
                ));
            }
            let recent = q.get("AllocatedStorage").is_some()
                && shared.realism.lock().is_ok_and(|r| {
                    r.storage_changed
                        .get(id)
                        .is_some_and(|t| t.elapsed() < r.scaled(STORAGE_COOLDOWN))
                });
            recent.then(|| {
                query_error(
                    "InvalidParameterCombination",
                    "You can't currently modify the storage of this DB instance because the previous storage change is being optimized: storage can change again 6 hours after the last change, once its optimization has completed.",
                )
            })
        }
        ("rds", "DeleteDBSubnetGroup") => {
            let group = q.get("DBSubnetGroupName")?;
            let deleting = shared.realism.lock().ok().and_then(|r| {
                r.db_deleted
                    .iter()
                    .find(|(id, (_, xml))| {
                        r.deleting_db(id).is_some()
                            && xml::values(xml, "DBSubnetGroupName")
                                .iter()
                                .any(|g| g == group)
                    })
                    .map(|(id, _)| id.clone())
            });
            if let Some(db) = deleting {
                return Some(query_error(
                    "InvalidDBSubnetGroupStateFault",
                    &format!("Cannot delete the subnet group '{group}' because at least one database instance: {db} is still using it."),
                ));
            }
            let xml = moto_query(
                shared,
                "rds",
                "Action=DescribeDBInstances&Version=2014-10-31",
            )
            .await
            .ok()?;
            let xml = String::from_utf8_lossy(&xml).to_string();
            let users: Vec<String> = xml::each(&xml, "DBInstance", |db| {
                db.all("DBSubnetGroupName")
                    .iter()
                    .any(|g| g == group)
                    .then(|| db.child("DBInstanceIdentifier"))
                    .flatten()
            });
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

/// The first `<tag>` value of moto's answer to a query call (None: no answer or
/// no such value).
async fn moto_value(shared: &Arc<Shared>, service: &str, form: &str, tag: &str) -> Option<String> {
    let xml = moto_query(shared, service, form).await.ok()?;
    xml::first(&String::from_utf8_lossy(&xml), tag)
}

fn describe_db(id: &str) -> String {
    format!("Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier={id}")
}

/// A DB instance's status as AWS would report it now (None: no such instance).
async fn db_status_now(shared: &Arc<Shared>, id: &str) -> Option<String> {
    let moto = moto_value(shared, "rds", &describe_db(id), "DBInstanceStatus").await?;
    let r = shared.realism.lock().ok()?;
    Some(r.db_status(id, &moto))
}

/// The request as AWS would carry it out: an RDS storage increase under 10 % is
/// rounded up to 10 % (ModifyDBInstance API reference, AllocatedStorage). Other
/// requests are unchanged.
pub(crate) async fn rewrite_request(shared: &Arc<Shared>, q: Option<&Query>, body: Bytes) -> Bytes {
    let Some(q) = q.filter(|q| q.service == "rds" && q.action() == "ModifyDBInstance") else {
        return body;
    };
    if !shared.realism.lock().is_ok_and(|r| r.enabled) {
        return body;
    }
    let (Some(id), Some(want)) = (
        q.get("DBInstanceIdentifier"),
        q.get("AllocatedStorage")
            .and_then(|v| v.parse::<u64>().ok()),
    ) else {
        return body;
    };
    let Some(have) = moto_value(shared, "rds", &describe_db(id), "AllocatedStorage")
        .await
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return body;
    };
    let least = (have * 11).div_ceil(10);
    if want <= have || want >= least {
        return body;
    }
    let form: Vec<String> = q
        .params
        .iter()
        .map(|(k, v)| {
            let v = if k == "AllocatedStorage" {
                least.to_string()
            } else {
                v.clone()
            };
            format!("{}={}", crate::ecs::urlencode(k), crate::ecs::urlencode(&v))
        })
        .collect();
    Bytes::from(form.join("&"))
}

/// The availability zones of these subnets (distinct).
async fn subnet_azs(shared: &Arc<Shared>, subnets: &[&String]) -> Vec<String> {
    let mut form = "Action=DescribeSubnets&Version=2016-11-15".to_string();
    for (i, s) in subnets.iter().enumerate() {
        form.push_str(&format!("&SubnetId.{}={s}", i + 1));
    }
    let Ok(xml) = moto_query(shared, "ec2", &form).await else {
        return Vec::new();
    };
    let mut azs = xml::values(&String::from_utf8_lossy(&xml), "availabilityZone");
    azs.sort();
    azs.dedup();
    azs
}

async fn subnet_vpc(shared: &Arc<Shared>, subnet: &str) -> Option<String> {
    let form = format!("Action=DescribeSubnets&Version=2016-11-15&SubnetId.1={subnet}");
    moto_value(shared, "ec2", &form, "vpcId").await
}

/// Whether a load balancer or a DB instance uses this subnet or security group.
async fn used_by_lb_or_db(shared: &Arc<Shared>, resource: &str) -> bool {
    let lbs = moto_query(
        shared,
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers&Version=2015-12-01",
    )
    .await
    .unwrap_or_default();
    let dbs = moto_query(
        shared,
        "rds",
        "Action=DescribeDBInstances&Version=2014-10-31",
    )
    .await
    .unwrap_or_default();
    let needle = format!(">{resource}<");
    String::from_utf8_lossy(&lbs).contains(&needle)
        || String::from_utf8_lossy(&dbs).contains(&needle)
}

/// SSM: a Standard parameter holds at most 4,096 characters.
fn refuse_ssm(op: &str, req: Option<&Value>) -> Option<Response<Full<Bytes>>> {
    let req = req?;
    let value = req.get("Value").and_then(Value::as_str)?;
    let standard = req
        .get("Tier")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "Standard");
    (op == "PutParameter" && standard && value.chars().count() > 4096).then(|| {
        json_error(
            "ValidationException",
            "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html",
        )
    })
}

async fn refuse_ecs(
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

/// Answers the front door gives in moto's stead: a DB instance that AWS would
/// still be deleting (moto removes it at once).
pub(crate) fn answer(shared: &Arc<Shared>, q: Option<&Query>) -> Option<Response<Full<Bytes>>> {
    let q = q?;
    if q.service != "rds" || q.action() != "DescribeDBInstances" {
        return None;
    }
    let id = q.get("DBInstanceIdentifier")?;
    let realism = shared.realism.lock().ok()?;
    if !realism.enabled {
        return None;
    }
    let block = realism.deleting_db(id)?;
    let body = format!(
        "<DescribeDBInstancesResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><DescribeDBInstancesResult><DBInstances>{block}</DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>mbstack-realism</RequestId></ResponseMetadata></DescribeDBInstancesResponse>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    Some(r)
}

/// Before a delete reaches moto: remember the subnets and security groups whose
/// ENIs will linger after it (an ALB, or an ECS service's tasks).
pub(crate) async fn before_delete(
    shared: &Arc<Shared>,
    q: Option<&Query>,
    target: &str,
    req: Option<&Value>,
) {
    if !shared.realism.lock().map(|r| r.enabled).unwrap_or(false) {
        return;
    }
    let used: Vec<String> = match (q, target) {
        (Some(q), _)
            if q.service == "elasticloadbalancing" && q.action() == "DeleteLoadBalancer" =>
        {
            let Some(arn) = q.get("LoadBalancerArn") else {
                return;
            };
            let form = format!(
                "Action=DescribeLoadBalancers&Version=2015-12-01&LoadBalancerArns.member.1={}",
                crate::ecs::urlencode(arn)
            );
            let Ok(xml) = moto_query(shared, "elasticloadbalancing", &form).await else {
                return;
            };
            let xml = String::from_utf8_lossy(&xml).to_string();
            let mut v = xml::values(&xml, "SubnetId");
            v.extend(
                xml::each(&xml, "SecurityGroups", |g| Some(g.all("member")))
                    .into_iter()
                    .flatten(),
            );
            v
        }
        (None, "AmazonEC2ContainerServiceV20141113.DeleteService") => {
            let Some(req) = req else { return };
            if let (Some(cluster), Ok(mut r)) = (
                req.get("cluster").and_then(Value::as_str),
                shared.realism.lock(),
            ) {
                r.tasks_stopping.insert(
                    crate::ecs::last_segment(cluster).to_string(),
                    Instant::now(),
                );
            }
            let body = json!({"cluster": req.get("cluster"), "services": [req.get("service")]});
            let Ok(d) = crate::front_door::moto_json(
                shared,
                "AmazonEC2ContainerServiceV20141113.DescribeServices",
                &body,
            )
            .await
            else {
                return;
            };
            let vpc = d
                .pointer("/services/0/networkConfiguration/awsvpcConfiguration")
                .cloned()
                .unwrap_or(Value::Null);
            ["subnets", "securityGroups"]
                .iter()
                .flat_map(|k| {
                    vpc.get(*k)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        }
        _ => return,
    };
    if let Ok(mut r) = shared.realism.lock() {
        r.lingering.push((Instant::now(), used));
    }
}

/// After moto answered a query call: remember creations and deletions, and show
/// resources in the state AWS would report.
pub(crate) fn after(shared: &Arc<Shared>, q: &Query, body: Bytes) -> Bytes {
    let Ok(mut realism) = shared.realism.lock() else {
        return body;
    };
    if !realism.enabled {
        return body;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let call = (q.service.as_str(), q.action());
    // What the call did, for the states shown later.
    match call {
        ("ec2", "CreateNatGateway") => {
            for id in xml::values(&text, "natGatewayId") {
                if let Some(token) = q.get("ClientToken") {
                    realism.nat_tokens.insert(token.to_string(), id.clone());
                }
                realism.nat_created.entry(id).or_insert_with(Instant::now);
            }
        }
        ("ec2", "DeleteNatGateway") => {
            if let Some(id) = q.get("NatGatewayId") {
                realism
                    .nat_deleted
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
        }
        ("rds", "CreateDBInstance") => {
            if let Some(id) = q.get("DBInstanceIdentifier") {
                realism.db_created.insert(id.to_string(), Instant::now());
            }
        }
        ("rds", "DeleteDBInstance") => {
            if let (Some(id), Some(block)) = (
                q.get("DBInstanceIdentifier"),
                xml::each(&text, "DBInstance", |d| Some(d.source().to_string()))
                    .into_iter()
                    .next(),
            ) {
                realism
                    .db_deleted
                    .insert(id.to_string(), (Instant::now(), block));
            }
        }
        ("rds", "ModifyDBInstance") => {
            if let (Some(id), Some(_)) = (q.get("DBInstanceIdentifier"), q.get("AllocatedStorage"))
            {
                realism
                    .storage_changed
                    .insert(id.to_string(), Instant::now());
            }
        }
        ("elasticloadbalancing", "CreateLoadBalancer") => {
            for arn in xml::values(&text, "LoadBalancerArn") {
                realism.alb_created.entry(arn).or_insert_with(Instant::now);
            }
        }
        _ => {}
    }
    // The state AWS would report, in a create's answer as in a describe's: AWS
    // answers a create with the resource in its first state (a NAT gateway
    // `pending`, a DB `creating`, a load balancer `provisioning`), and a tier
    // that judges readiness from that answer must see it not ready.
    let out = match call {
        ("ec2", "CreateNatGateway" | "DescribeNatGateways") => {
            xml::rewrite_state(&text, "natGatewayId", &["state"], |id, moto| {
                realism.nat_state(id, moto)
            })
        }
        ("rds", "CreateDBInstance" | "DescribeDBInstances") => xml::rewrite_state(
            &text,
            "DBInstanceIdentifier",
            &["DBInstanceStatus"],
            |id, moto| realism.db_status(id, moto),
        ),
        ("elasticloadbalancing", "CreateLoadBalancer" | "DescribeLoadBalancers") => {
            xml::rewrite_state(&text, "LoadBalancerArn", &["State", "Code"], |arn, moto| {
                realism.alb_state(arn, moto)
            })
        }
        _ => return body,
    };
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_form_query() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        // Decoded as a form: `+` is a space; a stray `%` before a multi-byte
        // character is kept, not a panic.
        let q = query(&h, "A=arn%3Aaws%3Ax+y&B=%a\u{e9}".as_bytes()).expect("a form");
        assert_eq!(q.get("A"), Some("arn:aws:x y"));
        assert_eq!(q.get("B"), Some("%a\u{e9}"));
    }
}
