//! The AWS wire protocols as the emulator reads and answers them: a query
//! request's parameters (one form decoder) and each protocol's error body.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

/// A query-protocol request: its service (from the credential scope) and params.
pub(crate) struct Query {
    pub service: String,
    pub params: HashMap<String, String>,
}

impl Query {
    pub fn action(&self) -> &str {
        self.params.get("Action").map(String::as_str).unwrap_or("")
    }

    pub fn get(&self, k: &str) -> Option<&str> {
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

pub(crate) fn ec2_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_error(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>mbstack-realism</RequestID></Response>"
    ))
}

pub(crate) fn query_error(code: &str, message: &str) -> Response<Full<Bytes>> {
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

pub(crate) fn json_error(code: &str, message: &str) -> Response<Full<Bytes>> {
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

/// The value of `key` in a form-encoded body (decoded).
pub(crate) fn form_value(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A value encoded for a form (the one encoder).
pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
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
