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
    headers: &hyper::HeaderMap,
    query: Option<&crate::protocol::Query>,
    target: &str,
    request_json: Option<&Value>,
    status: u16,
    response: &Bytes,
) -> Entry {
    let (caller, service) = signer(headers);
    let (action, params) = match query {
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
