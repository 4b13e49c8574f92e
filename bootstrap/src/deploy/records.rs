//! What the stacks keep in SSM Parameter Store (`/mbstack/<stack>/<leaf>`):
//! their specs, locks and last runs.

use super::*;

/// Every record of every stack: `/mbstack/<stack>/<leaf>` → (stack, leaf, value).
pub async fn records(aws: &Aws) -> Result<Vec<(String, String, String)>, TierError> {
    let ssm = client!(aws_sdk_ssm, aws);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path("/mbstack/")
            .recursive(true)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("ssm:GetParametersByPath", e))?;
        for p in page.parameters() {
            let rest = p
                .name()
                .and_then(|n| n.strip_prefix("/mbstack/"))
                .unwrap_or("");
            if let Some((stack, leaf)) = rest.split_once('/') {
                out.push((
                    stack.to_string(),
                    leaf.to_string(),
                    p.value().unwrap_or("").to_string(),
                ));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The stacks with a stored spec (they exist, or did when last applied).
pub async fn stacks(aws: &Aws) -> Result<Vec<String>, TierError> {
    Ok(records(aws)
        .await?
        .into_iter()
        .filter(|(_, leaf, _)| leaf == "spec")
        .map(|(s, _, _)| s)
        .collect())
}
