//! The calls the emulator served, as AWS's authorization would see them: who made
//! the call (the access key it was signed with), the service and action, the
//! request's parameters and the answer. Off until a test turns it on; the IAM test
//! evaluates every entry against the calling function's deployed policy.

use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// One call, as the front door served it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The access key the request was signed with (`Credential=KEY/…`).
    pub caller: String,
    /// The signing service (`ec2`, `elasticloadbalancing`, `ecs`, …), or `lambda`
    /// for an Invoke.
    pub service: String,
    /// The API action (`CreateVpc`, `CreateCluster`, `Invoke`, …).
    pub action: String,
    /// The request: query parameters as an object of strings, a JSON body as is,
    /// `{"FunctionName": …}` for an Invoke.
    pub params: Value,
    pub status: u16,
    pub response: String,
}

impl Entry {
    pub fn to_json(&self) -> Value {
        json!({"caller": self.caller, "service": self.service, "action": self.action,
               "params": self.params, "status": self.status, "response": self.response})
    }
}

/// `None`: not recording.
#[derive(Default)]
pub(crate) struct Journal(pub Mutex<Option<Vec<Entry>>>);

impl Journal {
    pub fn on(&self) -> bool {
        self.0.lock().map(|j| j.is_some()).unwrap_or(false)
    }

    pub fn push(&self, entry: Entry) {
        if let Ok(mut j) = self.0.lock() {
            if let Some(j) = j.as_mut() {
                j.push(entry);
            }
        }
    }
}

/// The access key and signing service of a SigV4 `Authorization` header.
pub(crate) fn signer(headers: &hyper::HeaderMap) -> (String, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut scope = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split([',', ' ']).next())
        .unwrap_or("")
        .split('/');
    let key = scope.next().unwrap_or("").to_string();
    let service = scope.nth(2).unwrap_or("").to_string();
    (key, service)
}

/// The entry for a request that is not an Invoke.
pub(crate) fn entry(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    query: Option<&crate::protocol::Query>,
    target: &str,
    request_json: Option<&Value>,
    status: u16,
    response: &Bytes,
) -> Entry {
    let (caller, service) = signer(&parts.headers);
    let (action, params) = match (route53(parts, body), query) {
        (Some(call), _) => call,
        (None, query) => match query {
            Some(q) => (
                q.action().to_string(),
                Value::Object(
                    q.params
                        .iter()
                        .filter(|(k, _)| k.as_str() != "Action" && k.as_str() != "Version")
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect::<Map<_, _>>(),
                ),
            ),
            None => (
                target.rsplit('.').next().unwrap_or("").to_string(),
                request_json.cloned().unwrap_or(Value::Null),
            ),
        },
    };
    Entry {
        caller,
        service,
        action,
        params,
        status,
        response: String::from_utf8_lossy(response).into_owned(),
    }
}

/// A Route 53 call (REST, XML): its action and the parameters an IAM
/// evaluation needs (the zone; for a change, its actions, record names and
/// types, the keys `route53:ChangeResourceRecordSets*` condition on). None for
/// another service's call.
pub(crate) fn route53(parts: &hyper::http::request::Parts, body: &[u8]) -> Option<(String, Value)> {
    if signer(&parts.headers).1 != "route53" {
        return None;
    }
    let path = parts.uri.path().trim_end_matches('/');
    let rest = path.strip_prefix("/2013-04-01/hostedzone")?;
    let mut segs = rest
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty());
    let zone = segs.next();
    let sub = segs.next();
    let post = parts.method == hyper::Method::POST;
    Some(match (zone, sub, post) {
        (None, _, false) => ("ListHostedZones".into(), json!({})),
        (None, _, true) => ("CreateHostedZone".into(), json!({})),
        (Some(z), None, false) => ("GetHostedZone".into(), json!({"Id": z})),
        (Some(z), Some("rrset"), false) => ("ListResourceRecordSets".into(), json!({"Id": z})),
        (Some(z), Some("rrset"), true) => {
            let text = String::from_utf8_lossy(body);
            let changes = crate::xml::each(&text, "Change", |c| {
                let set = c.children("ResourceRecordSet").into_iter().next()?;
                Some((c.child("Action")?, set.child("Name")?, set.child("Type")?))
            });
            let pick = |f: fn(&(String, String, String)) -> &String| -> Vec<String> {
                changes.iter().map(f).cloned().collect()
            };
            (
                "ChangeResourceRecordSets".into(),
                json!({"Id": z, "Actions": pick(|c| &c.0), "Names": pick(|c| &c.1), "Types": pick(|c| &c.2)}),
            )
        }
        (Some(z), Some(other), _) => (format!("route53:{other}"), json!({"Id": z})),
        (Some(z), None, true) => ("UpdateHostedZoneComment".into(), json!({"Id": z})),
    })
}
