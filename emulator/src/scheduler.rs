//! EventBridge Scheduler: a group that exists is a ConflictException on AWS;
//! moto replaces it, deleting its schedules (other stacks' included).

use std::sync::Arc;

use hyper::StatusCode;

use crate::moto::moto_get;
use crate::protocol::json_error_with;
use crate::rules::{Answer, Call, Rule, Step};
use crate::state::Shared;

pub(crate) struct Scheduler;

impl Rule for Scheduler {
    fn refuse<'a>(&'a self, s: &'a Arc<Shared>, c: &'a Call<'a>) -> Step<'a, Option<Answer>> {
        Box::pin(async move {
            let path = c.parts.uri.path();
            if c.parts.method != hyper::Method::POST
                || !path.starts_with("/schedule-groups/")
                || c.service != "scheduler"
            {
                return None;
            }
            moto_get(s, "scheduler", path).await.ok()?;
            let name = path.trim_start_matches("/schedule-groups/");
            let mut r = json_error_with(
                StatusCode::CONFLICT,
                "ConflictException",
                &format!("Schedule group {name} already exists."),
            );
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Some(r)
        })
    }
}
