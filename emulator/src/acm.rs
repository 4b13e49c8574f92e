//! ACM and Route 53 as AWS answers where moto stops short (always on: these are
//! AWS's answers; with realism on, its timings too, divided by the scale):
//!
//! - a DNS-validated certificate stays `PENDING_VALIDATION` until its
//!   validation CNAME exists, with ACM's value, in a public hosted zone that
//!   holds it, and ACM has looked ([`VALIDATES`] later); then it is `ISSUED`
//!   for good (moto issues every certificate 60 s after the request, record
//!   or not: the emulator starts moto with that wait off);
//! - ListCertificates returns only RSA_1024 and RSA_2048 certificates unless
//!   `Includes.keyTypes` names others, each summary with its alternative names
//!   (`SubjectAlternativeNameSummaries`); a certificate shows the key it was
//!   requested with (moto lists every key, makes each RSA_2048, and names no
//!   alternative name in a summary);
//! - right after the request, DescribeCertificate names no validation record
//!   yet ([`NAMES_RECORD`]: realism only);
//! - ELB CreateListener / ModifyListener with an ACM certificate that is not
//!   issued → `UnsupportedCertificate` (as AWS; also for [`ELB_SEES`] after
//!   the issue: realism only);
//! - ACM DeleteCertificate of a certificate a listener serves →
//!   `ResourceInUseException`;
//! - Route 53 ChangeResourceRecordSets: a DELETE of a record set that is not
//!   there, or whose values differ, and a CREATE of one that is there →
//!   `InvalidChangeBatch` (moto checks its journal of changes, not the zone);
//!   so is any record at a name that holds a CNAME, and a CNAME at a name that
//!   holds a record of any other type. A CREATE that passes is sent to moto as an UPSERT
//!   ([`checked_creates`]): moto refuses one it journaled before, deleted
//!   since, when any record lists after the name.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use crate::moto::{moto_get, moto_json_for, moto_query};
use crate::protocol::{json_error, query_error, urlencode};
use crate::state::Shared;
use crate::xml;

/// Real AWS: ACM names the validation record seconds after the request.
pub(crate) const NAMES_RECORD: Duration = Duration::from_secs(6);
/// Real AWS: ACM validates about a minute after the record is in DNS.
pub(crate) const VALIDATES: Duration = Duration::from_secs(60);
/// Real AWS: ELB takes a just-issued certificate some seconds later.
pub(crate) const ELB_SEES: Duration = Duration::from_secs(20);

/// A real duration at the emulator's scale (zero with realism off: the
/// rules, not the timings).
fn scaled(shared: &Shared, d: Duration) -> Duration {
    shared
        .realism
        .lock()
        .map(|r| {
            if r.enabled {
                d / r.scale.max(1)
            } else {
                Duration::ZERO
            }
        })
        .unwrap_or(Duration::ZERO)
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The record set `name`/`rtype` of zone `zone_id`, as moto's XML: (TTL,
/// values, alias DNS name).
async fn record(
    shared: &Shared,
    zone_id: &str,
    name: &str,
    rtype: &str,
) -> Option<(Option<String>, Vec<String>, Option<String>)> {
    let path = format!(
        "/2013-04-01/hostedzone/{zone_id}/rrset?name={}&type={rtype}&maxitems=1",
        urlencode(name)
    );
    let body = moto_get(shared, "route53", &path).await.ok()?;
    let text = String::from_utf8_lossy(&body).to_string();
    xml::each(&text, "ResourceRecordSet", |s| {
        let same = s.child("Name").is_some_and(|n| norm(&n) == norm(name))
            && s.child("Type").as_deref() == Some(rtype);
        same.then(|| {
            let values = s.all("Value");
            let alias = s
                .children("AliasTarget")
                .first()
                .and_then(|a| a.child("DNSName"));
            (s.child("TTL"), values, alias.map(|a| norm(&a)))
        })
    })
    .into_iter()
    .next()
}

/// The types of the record sets at `name` in zone `zone_id`, whatever they are.
async fn types_at(shared: &Shared, zone_id: &str, name: &str) -> Vec<String> {
    let path = format!(
        "/2013-04-01/hostedzone/{zone_id}/rrset?name={}&maxitems=100",
        urlencode(name)
    );
    let Ok(body) = moto_get(shared, "route53", &path).await else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&body).to_string();
    xml::each(&text, "ResourceRecordSet", |s| {
        s.child("Name")
            .filter(|n| norm(n) == norm(name))
            .and_then(|_| s.child("Type"))
    })
}

/// A hosted zone's name, with its final dot (as Route 53's messages give it).
async fn zone_name(shared: &Shared, zone_id: &str) -> Option<String> {
    let body = moto_get(
        shared,
        "route53",
        &format!("/2013-04-01/hostedzone/{zone_id}"),
    )
    .await
    .ok()?;
    let name = xml::first(&String::from_utf8_lossy(&body), "Name")?;
    Some(format!("{}.", norm(&name)))
}

/// The public hosted zones that hold `name`: their IDs.
async fn zones_of(shared: &Shared, name: &str) -> Vec<String> {
    let Ok(body) = moto_get(shared, "route53", "/2013-04-01/hostedzone").await else {
        return Vec::new();
    };
    let name = norm(name);
    xml::each(&String::from_utf8_lossy(&body), "HostedZone", |z| {
        let zone = norm(&z.child("Name")?);
        let private = z
            .children("Config")
            .first()
            .and_then(|c| c.child("PrivateZone"))
            .is_some_and(|p| p == "true");
        let holds = name == zone || name.ends_with(&format!(".{zone}"));
        (holds && !private).then(|| {
            z.child("Id")
                .unwrap_or_default()
                .trim_start_matches("/hostedzone/")
                .to_string()
        })
    })
}

/// Whether the CNAME `name` → `value` is in public DNS.
async fn in_dns(shared: &Shared, name: &str, value: &str) -> bool {
    for zone in zones_of(shared, name).await {
        if let Some((_, values, _)) = record(shared, &zone, name, "CNAME").await {
            if values.iter().any(|v| norm(v) == norm(value)) {
                return true;
            }
        }
    }
    false
}

/// Counts an answer as the realism layer counts its own: a refusal mbstack
/// provoked, or AWS's "not yet" that it waits out.
fn counted(shared: &Shared, not_yet: bool, r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    if let Ok(realism) = shared.realism.lock() {
        let counter = if not_yet {
            &realism.not_yet
        } else {
            &realism.refused
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    r
}

/// Whether ACM has issued certificate `arn` (by these rules), and since when.
fn issued_at(shared: &Shared, arn: &str) -> Option<Instant> {
    shared.acm.lock().ok()?.issued.get(arn).copied()
}

/// A refusal before the call reaches moto.
pub(crate) async fn refuse(
    shared: &Shared,
    c: &crate::rules::Call<'_>,
) -> Option<Response<Full<Bytes>>> {
    let (q, target, json) = (c.query.as_ref(), c.target.as_str(), c.json.as_ref());
    if let Some(q) = q.filter(|q| q.service == "elasticloadbalancing") {
        if !matches!(q.action(), "CreateListener" | "ModifyListener") {
            return None;
        }
        let arn = q.get("Certificates.member.1.CertificateArn")?;
        if !arn.contains(":acm:") {
            return None;
        }
        let described = moto_json_for(
            shared,
            "acm",
            "CertificateManager.DescribeCertificate",
            &serde_json::json!({"CertificateArn": arn}),
        )
        .await
        .ok()?;
        if described["Certificate"]["Type"] != "AMAZON_ISSUED" {
            return None;
        }
        let issued = issued_at(shared, arn);
        let usable = issued.is_some_and(|at| at.elapsed() >= scaled(shared, ELB_SEES));
        return (!usable).then(|| {
            let r = query_error(
                "UnsupportedCertificate",
                &format!("The certificate '{arn}' must have a fully-qualified domain name, a supported signature, and a supported key size."),
            );
            // Just issued: AWS's timing. Not issued at all: a refusal.
            counted(shared, issued.is_some(), r)
        });
    }
    if target == "CertificateManager.DeleteCertificate" {
        let arn = json?.get("CertificateArn")?.as_str()?;
        return in_use(shared, arn).await.then(|| {
            let r = json_error(
                "ResourceInUseException",
                &format!("Certificate {arn} in use."),
            );
            counted(shared, false, r)
        });
    }
    if c.service == "route53" && c.posts_to("/rrset") {
        let zone = c
            .parts
            .uri
            .path()
            .trim_end_matches('/')
            .trim_end_matches("/rrset")
            .rsplit('/')
            .next()?
            .to_string();
        return change_batch(shared, &zone, &String::from_utf8_lossy(&c.body)).await;
    }
    None
}

/// A Route 53 change batch [`refuse`] let through, as moto should take it:
/// each CREATE becomes an UPSERT. The front door checked that no such record
/// is in the zone; moto would refuse a CREATE it journaled before (deleted
/// since) whenever any record lists after the name.
fn checked_creates(c: &crate::rules::Call<'_>, body: Bytes) -> Bytes {
    if c.service != "route53" || !c.posts_to("/rrset") {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    if !text.contains("<Action>CREATE</Action>") {
        return body;
    }
    Bytes::from(text.replace("<Action>CREATE</Action>", "<Action>UPSERT</Action>"))
}

/// Whether an ELB listener serves certificate `arn`.
async fn in_use(shared: &Shared, arn: &str) -> bool {
    let Ok(lbs) = moto_query(
        shared,
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers&Version=2015-12-01",
    )
    .await
    else {
        return false;
    };
    for lb in xml::values(&String::from_utf8_lossy(&lbs), "LoadBalancerArn") {
        let form = format!(
            "Action=DescribeListeners&Version=2015-12-01&LoadBalancerArn={}",
            urlencode(&lb)
        );
        if let Ok(ls) = moto_query(shared, "elasticloadbalancing", &form).await {
            if xml::values(&String::from_utf8_lossy(&ls), "CertificateArn")
                .iter()
                .any(|c| c == arn)
            {
                return true;
            }
        }
    }
    false
}

/// Route 53's checks of a change batch against the zone as it is.
async fn change_batch(shared: &Shared, zone: &str, body: &str) -> Option<Response<Full<Bytes>>> {
    struct Asked {
        action: String,
        name: String,
        rtype: String,
        ttl: Option<String>,
        values: Vec<String>,
        alias: Option<String>,
    }
    let changes = xml::each(body, "Change", |c| {
        let set = c.children("ResourceRecordSet").into_iter().next()?;
        Some(Asked {
            action: c.child("Action")?,
            name: set.child("Name")?,
            rtype: set.child("Type")?,
            ttl: set.child("TTL"),
            values: set.all("Value"),
            alias: set
                .children("AliasTarget")
                .first()
                .and_then(|a| a.child("DNSName"))
                .map(|a| norm(&a)),
        })
    });
    let mut problems = Vec::new();
    for a in changes {
        let have = record(shared, zone, &a.name, &a.rtype).await;
        let fqdn = format!("{}.", norm(&a.name));
        match (a.action.as_str(), have) {
            ("DELETE", None) => problems.push(format!(
                "Tried to delete resource record set [name='{fqdn}', type='{}'] but it was not found",
                a.rtype
            )),
            ("DELETE", Some((ttl, values, alias))) => {
                let norm_all = |v: &[String]| {
                    let mut v: Vec<String> = v.iter().map(|x| norm(x)).collect();
                    v.sort();
                    v
                };
                let same = ttl == a.ttl && norm_all(&values) == norm_all(&a.values) && alias == a.alias;
                if !same {
                    problems.push(format!(
                        "Tried to delete resource record set [name='{fqdn}', type='{}'] but the values provided do not match the current values",
                        a.rtype
                    ));
                }
            }
            ("CREATE", Some(_)) => problems.push(format!(
                "Tried to create resource record set [name='{fqdn}', type='{}'] but it already exists",
                a.rtype
            )),
            _ => {}
        }
        // No other record may share a name with a CNAME (RFC 1034; Route 53
        // answers InvalidChangeBatch either way round).
        if matches!(a.action.as_str(), "CREATE" | "UPSERT") {
            let zone_name = zone_name(shared, zone).await.unwrap_or_default();
            if a.rtype == "CNAME" {
                if types_at(shared, zone, &a.name)
                    .await
                    .iter()
                    .any(|t| t != "CNAME")
                {
                    problems.push(format!(
                        "RRSet of type CNAME with DNS name {fqdn} is not permitted as it conflicts with other records with the same DNS name in zone {zone_name}."
                    ));
                }
            } else if record(shared, zone, &a.name, "CNAME").await.is_some() {
                problems.push(format!(
                    "RRSet of type {} with DNS name {fqdn} is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone {zone_name}.",
                    a.rtype
                ));
            }
        }
    }
    (!problems.is_empty()).then(|| {
        let messages = problems
            .iter()
            .map(|p| format!("[{p}]"))
            .collect::<Vec<_>>()
            .join(", ");
        counted(shared, false, query_error("InvalidChangeBatch", &messages))
    })
}

/// After moto answered: remembers requests; shows a certificate as ACM would.
pub(crate) async fn after(
    shared: &Shared,
    target: &str,
    request: Option<&Value>,
    status_ok: bool,
    bytes: Bytes,
) -> Bytes {
    if !status_ok {
        return bytes;
    }
    match target {
        "CertificateManager.RequestCertificate" => {
            if let Some(arn) = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["CertificateArn"].as_str().map(str::to_string))
            {
                let key = request
                    .and_then(|r| r["KeyAlgorithm"].as_str())
                    .unwrap_or("RSA_2048")
                    .to_string();
                let mut names: Vec<String> = request
                    .and_then(|r| r["DomainName"].as_str())
                    .map(str::to_string)
                    .into_iter()
                    .collect();
                for n in request
                    .and_then(|r| r["SubjectAlternativeNames"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !names.iter().any(|x| x == n) {
                        names.push(n.to_string());
                    }
                }
                if let Ok(mut s) = shared.acm.lock() {
                    s.names.insert(arn.clone(), names);
                    s.key_algorithms.insert(arn.clone(), key);
                    s.requested.entry(arn).or_insert_with(Instant::now);
                }
            }
            bytes
        }
        "CertificateManager.DescribeCertificate" => {
            let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                return bytes;
            };
            show(shared, &mut v["Certificate"]).await;
            Bytes::from(v.to_string())
        }
        "CertificateManager.ListCertificates" => {
            let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                return bytes;
            };
            // Only RSA_1024 and RSA_2048 unless the request names other keys
            // (AWS's default filter); each with its alternative names.
            let wanted: Vec<String> = request
                .and_then(|r| r.pointer("/Includes/keyTypes"))
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_else(|| vec!["RSA_1024".into(), "RSA_2048".into()]);
            if let Some(list) = v["CertificateSummaryList"].as_array_mut() {
                for c in list.iter_mut() {
                    let arn = c["CertificateArn"].as_str().unwrap_or("").to_string();
                    if c["Status"] == "PENDING_VALIDATION" && issued_at(shared, &arn).is_some() {
                        c["Status"] = Value::from("ISSUED");
                    }
                    if let Some(key) = key_algorithm(shared, &arn) {
                        c["KeyAlgorithm"] = Value::from(key);
                    }
                    if c.get("SubjectAlternativeNameSummaries").is_none() {
                        let names = shared
                            .acm
                            .lock()
                            .ok()
                            .and_then(|s| s.names.get(&arn).cloned())
                            .or_else(|| c["DomainName"].as_str().map(|d| vec![d.to_string()]))
                            .unwrap_or_default();
                        let names = names.into_iter().take(100).map(Value::from).collect();
                        c["SubjectAlternativeNameSummaries"] = Value::Array(names);
                    }
                }
                list.retain(|c| {
                    c["KeyAlgorithm"]
                        .as_str()
                        .is_some_and(|k| wanted.iter().any(|w| w == k))
                });
            }
            Bytes::from(v.to_string())
        }
        _ => bytes,
    }
}

/// The key algorithm certificate `arn` was requested with (None: not
/// requested through the front door).
fn key_algorithm(shared: &Shared, arn: &str) -> Option<String> {
    shared
        .acm
        .lock()
        .ok()
        .and_then(|s| s.key_algorithms.get(arn).cloned())
}

/// One certificate's description as ACM would give it now.
async fn show(shared: &Shared, c: &mut Value) {
    let arn = c["CertificateArn"].as_str().unwrap_or("").to_string();
    if let Some(key) = key_algorithm(shared, &arn) {
        c["KeyAlgorithm"] = Value::from(key);
    }
    if c["Type"] != "AMAZON_ISSUED" || c["Status"] != "PENDING_VALIDATION" {
        return;
    }
    let requested = shared
        .acm
        .lock()
        .ok()
        .and_then(|s| s.requested.get(&arn).copied());
    if requested.is_some_and(|at| at.elapsed() < scaled(shared, NAMES_RECORD)) {
        if let Some(options) = c["DomainValidationOptions"].as_array_mut() {
            for o in options {
                if let Some(o) = o.as_object_mut() {
                    o.remove("ResourceRecord");
                }
            }
        }
        return;
    }
    if issued_at(shared, &arn).is_none() {
        let records: Vec<(String, String)> = c["DomainValidationOptions"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|o| {
                        let r = &o["ResourceRecord"];
                        Some((
                            r["Name"].as_str()?.to_string(),
                            r["Value"].as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut all = !records.is_empty();
        for (name, value) in &records {
            all = all && in_dns(shared, name, value).await;
        }
        let wait = scaled(shared, VALIDATES);
        let Ok(mut s) = shared.acm.lock() else {
            return;
        };
        if !all {
            // ACM looks again from the start when a record goes missing.
            s.records_seen.remove(&arn);
            return;
        }
        let seen = *s
            .records_seen
            .entry(arn.clone())
            .or_insert_with(Instant::now);
        if seen.elapsed() < wait {
            return;
        }
        s.issued.insert(arn.clone(), Instant::now());
    }
    c["Status"] = Value::from("ISSUED");
    if let Some(options) = c["DomainValidationOptions"].as_array_mut() {
        for o in options {
            o["ValidationStatus"] = Value::from("SUCCESS");
        }
    }
}

/// ACM's issue and Route 53's refusals (see the module's doc).
pub(crate) struct Acm;

impl crate::rules::Rule for Acm {
    fn refuse<'a>(
        &'a self,
        s: &'a std::sync::Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<Response<Full<Bytes>>>> {
        Box::pin(refuse(s, c))
    }
    fn rewrite<'a>(
        &'a self,
        _s: &'a std::sync::Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        Box::pin(std::future::ready(checked_creates(c, body)))
    }
    fn after<'a>(
        &'a self,
        s: &'a std::sync::Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        Box::pin(after(
            s,
            &c.target,
            c.json.as_ref(),
            status.is_success(),
            body,
        ))
    }
}
