//! SSM Parameter Store: a Standard parameter holds at most 4,096 characters.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use crate::protocol::json_error;

/// SSM: a Standard parameter holds at most 4,096 characters.
pub(super) fn refuse(op: &str, req: Option<&Value>) -> Option<Response<Full<Bytes>>> {
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
