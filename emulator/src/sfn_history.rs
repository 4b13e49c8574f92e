//! GetExecutionHistory as AWS pages it. moto answers every event, oldest
//! first, whatever the request asks; AWS returns at most `maxResults` events
//! (100 when unset, 1000 at most), newest first with `reverseOrder`, and a
//! `nextToken` for the rest. Code that reads "the last state entered" from the
//! first page of a reversed history reads the first state on moto: this rule
//! answers as AWS does.

use bytes::Bytes;
use serde_json::{json, Value};

const TOKEN_PREFIX: &str = "mbstack-history-";
/// GetExecutionHistory's `maxResults`: "the default is 100 and the maximum
/// allowed page size is 1000".
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// moto's whole history (`body`), paged as `request` asks.
pub(crate) fn page(target: &str, request: Option<&Value>, ok: bool, body: Bytes) -> Bytes {
    if !ok || target != "AWSStepFunctions.GetExecutionHistory" {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(mut events) = value.get("events").and_then(Value::as_array).cloned() else {
        return body;
    };
    let ask = |k: &str| request.and_then(|r| r.get(k));
    if ask("reverseOrder").and_then(Value::as_bool) == Some(true) {
        events.reverse();
    }
    let size = match ask("maxResults").and_then(Value::as_u64).unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    };
    let start = ask("nextToken")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix(TOKEN_PREFIX))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(events.len());
    let end = (start + size).min(events.len());
    value["events"] = json!(events[start..end].to_vec());
    match end < events.len() {
        true => value["nextToken"] = json!(format!("{TOKEN_PREFIX}{end}")),
        false => {
            if let Some(m) = value.as_object_mut() {
                m.remove("nextToken");
            }
        }
    }
    Bytes::from(value.to_string())
}

/// Step Functions' execution history, paged as AWS pages it.
pub(crate) struct History;

impl crate::rules::Rule for History {
    fn after<'a>(
        &'a self,
        _s: &'a std::sync::Arc<crate::state::Shared>,
        c: &'a crate::rules::Call<'a>,
        status: hyper::StatusCode,
        body: Bytes,
    ) -> crate::rules::Step<'a, Bytes> {
        let paged = page(&c.target, c.json.as_ref(), status.is_success(), body);
        Box::pin(std::future::ready(paged))
    }
}
