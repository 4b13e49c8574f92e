//! The front door's rules: one trait, one list. Each rule is where moto stops
//! short of AWS for one service or concern, and may act at five steps of a
//! call, each a no-op unless the rule says otherwise:
//!
//! 1. `refuse`: AWS's error for a call moto would accept (or AWS's "not yet",
//!    counted apart by the rule);
//! 2. `answer`: an answer the front door gives itself, moto's being wrong;
//! 3. `before`: what AWS does at the call that moto does not (an ENI a delete
//!    frees later);
//! 4. `rewrite`: the request as moto should take it;
//! 5. `after`: moto's answer as AWS gives it, and what the rule learns from it.
//!
//! [`crate::front_door`] parses a call once ([`Call`]), asks the sweep's
//! faults, then the rules in its list's order (`front_door::RULES`), step by
//! step; forwards to
//! moto; then the rules' `after`. The rules' state lives in
//! [`crate::state`] (data only: the rules import it, it imports no rule).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::protocol::{query, Query};
use crate::state::Shared;

pub(crate) type Answer = Response<Full<Bytes>>;
/// A step's work, boxed so the rules fit one list of `dyn Rule`.
pub(crate) type Step<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One request, parsed once.
pub(crate) struct Call<'a> {
    pub parts: &'a hyper::http::request::Parts,
    pub body: Bytes,
    /// `X-Amz-Target` of a JSON-protocol call (empty otherwise).
    pub target: String,
    /// A JSON-protocol call's body.
    pub json: Option<Value>,
    /// A query-protocol call (EC2, RDS, ELB, SNS, IAM).
    pub query: Option<Query>,
    /// The service that signed it (`route53`, `scheduler`).
    pub service: String,
}

impl<'a> Call<'a> {
    pub fn parse(parts: &'a hyper::http::request::Parts, body: Bytes) -> Self {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let json = match target.is_empty() {
            true => None,
            false => serde_json::from_slice(&body).ok(),
        };
        Self {
            query: query(&parts.headers, &body),
            service: crate::journal::signer(&parts.headers).1,
            parts,
            body,
            target,
            json,
        }
    }

    /// `service:Action` of a query call, else the target.
    pub fn name(&self) -> String {
        match &self.query {
            Some(q) => format!("{}:{}", q.service, q.action()),
            None => self.target.clone(),
        }
    }

    /// Step Functions' own API (the caller following its executions).
    pub fn is_sfn(&self) -> bool {
        self.target.starts_with("AWSStepFunctions.")
    }

    /// moto's internal API.
    pub fn is_internal(&self) -> bool {
        self.parts.uri.path().starts_with("/moto-api")
    }

    /// A POST to a REST path ending in `suffix` (Route 53's `/rrset`).
    pub fn posts_to(&self, suffix: &str) -> bool {
        self.parts.method == hyper::Method::POST
            && self
                .parts
                .uri
                .path()
                .trim_end_matches('/')
                .ends_with(suffix)
    }
}

fn ready<'a, T: Send + 'a>(t: T) -> Step<'a, T> {
    Box::pin(std::future::ready(t))
}

/// A rule of the front door (see the module's doc for its steps).
pub(crate) trait Rule: Sync {
    fn refuse<'a>(&'a self, _s: &'a Arc<Shared>, _c: &'a Call<'a>) -> Step<'a, Option<Answer>> {
        ready(None)
    }
    fn answer<'a>(&'a self, _s: &'a Arc<Shared>, _c: &'a Call<'a>) -> Step<'a, Option<Answer>> {
        ready(None)
    }
    fn before<'a>(&'a self, _s: &'a Arc<Shared>, _c: &'a Call<'a>) -> Step<'a, ()> {
        ready(())
    }
    fn rewrite<'a>(
        &'a self,
        _s: &'a Arc<Shared>,
        _c: &'a Call<'a>,
        body: Bytes,
    ) -> Step<'a, Bytes> {
        ready(body)
    }
    fn after<'a>(
        &'a self,
        _s: &'a Arc<Shared>,
        _c: &'a Call<'a>,
        _status: StatusCode,
        body: Bytes,
    ) -> Step<'a, Bytes> {
        ready(body)
    }
}
