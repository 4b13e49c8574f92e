//! `mbstack deploy --notify`: where a failed run is published. An email address
//! gets the deployment's own topic, `<prefix>-notifications`, subscribed (AWS
//! mails a confirmation link first); a topic ARN is used as it is, never
//! changed and never deleted. The choice lives in the state machine's
//! definition: a deploy without `--notify` keeps it, `--notify off` ends it.

use mbstack_core::{aws_error, error_code, TierError};
use serde_json::Value;

use super::{describe_named, tags, Report};

/// What `--notify` asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// No `--notify`: what the current deployment has.
    Keep,
    /// `--notify off`.
    Off,
    /// `--notify you@example.com`: the deployment's own topic, this address subscribed.
    Email(String),
    /// `--notify arn:aws:sns:…`: an existing topic.
    Topic(String),
}

impl Notify {
    /// Parses `--notify`'s value; the error names the flag and the forms it takes.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let Some(v) = value.map(str::trim) else {
            return Ok(Notify::Keep);
        };
        if v == "off" {
            return Ok(Notify::Off);
        }
        if v.starts_with("arn:") {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = parts.len() == 6
                && parts[2] == "sns"
                && !parts[3].is_empty()
                && parts[4].len() == 12
                && parts[4].chars().all(|c| c.is_ascii_digit())
                && !parts[5].is_empty();
            return if ok {
                Ok(Notify::Topic(v.to_string()))
            } else {
                Err(format!("--notify: {v:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"))
            };
        }
        let email_ok = v.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty()
                && host.contains('.')
                && !host.starts_with('.')
                && !host.ends_with('.')
                && !v.chars().any(|c| c.is_whitespace() || c == ',')
        });
        if email_ok {
            Ok(Notify::Email(v.to_string()))
        } else {
            Err(format!(
                "--notify: {v:?} is neither an email address, an SNS topic ARN nor `off` (e.g. --notify ops@example.com)"
            ))
        }
    }
}

/// The deployment's own topic's name.
pub fn topic_name(prefix: &str) -> String {
    format!("{prefix}-notifications")
}

/// The hosted zones a deploy gives the load balancer tier: `wanted`, or, kept,
/// what the current state machine names (any zone when it names none).
pub(super) async fn hosted_zones(
    sfn: &aws_sdk_sfn::Client,
    prefix: &str,
    wanted: &super::Zones,
) -> Result<Option<Vec<String>>, TierError> {
    match wanted {
        super::Zones::Any => return Ok(None),
        super::Zones::Only(ids) => return Ok(Some(ids.clone())),
        super::Zones::Keep => {}
    }
    let Some(d) = describe_named(sfn, &format!("{prefix}-provision")).await? else {
        return Ok(None);
    };
    let definition: Value = serde_json::from_str(d.definition()).unwrap_or(Value::Null);
    fn find(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::Object(m) => match m.get("hostedZones") {
                Some(Value::Array(a)) => Some(
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                ),
                _ => m.values().find_map(find),
            },
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    Ok(find(&definition))
}

/// The topic the current state machine publishes to, if any.
async fn current(sfn: &aws_sdk_sfn::Client, prefix: &str) -> Result<Option<String>, TierError> {
    let Some(d) = describe_named(sfn, &format!("{prefix}-provision")).await? else {
        return Ok(None);
    };
    let definition: Value = serde_json::from_str(d.definition()).unwrap_or(Value::Null);
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) => m
                .get("notifyTopicArn")
                .and_then(Value::as_str)
                .filter(|t| t.starts_with("arn:"))
                .map(str::to_string)
                .or_else(|| m.values().find_map(find)),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    Ok(find(&definition))
}

/// The topic this deployment publishes failed runs to, made ready: the
/// deployment's own topic created and the address subscribed, or the given
/// topic checked to exist.
/// The KMS key a topic is encrypted with (`KmsMasterKeyId`), if any: the
/// control function must be allowed to use it, or its messages are lost.
pub(super) async fn kms_key(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
) -> Result<Option<String>, TierError> {
    let out = sns
        .get_topic_attributes()
        .topic_arn(topic_arn)
        .send()
        .await
        .map_err(|e| aws_error("sns:GetTopicAttributes", e))?;
    Ok(out
        .attributes()
        .and_then(|a| a.get("KmsMasterKeyId"))
        .filter(|k| !k.is_empty())
        .cloned())
}

pub(super) async fn resolve(
    sns: &aws_sdk_sns::Client,
    sfn: &aws_sdk_sfn::Client,
    (prefix, region): (&str, &str),
    notify: &Notify,
    report: &mut Report,
) -> Result<Option<String>, TierError> {
    match notify {
        Notify::Keep => current(sfn, prefix).await,
        Notify::Off => Ok(None),
        Notify::Topic(arn) => {
            // SNS publishes only to a topic of the region it is called in.
            let topic_region = arn.split(':').nth(3).unwrap_or("");
            if topic_region != region {
                return Err(TierError::Refused(format!(
                    "--notify: topic {arn} is in {topic_region}, this deployment in {region}: a function publishes only to a topic of its own region; give a topic in {region}, or an email address and mbstack makes its own"
                )));
            }
            match sns.get_topic_attributes().topic_arn(arn).send().await {
                Ok(_) => Ok(Some(arn.clone())),
                Err(e) if error_code(&e) == Some("NotFound") => Err(TierError::Refused(format!(
                    "--notify: topic {arn} does not exist (in this account and region): create it, or give an email address and mbstack makes its own"
                ))),
                Err(e) => Err(aws_error("sns:GetTopicAttributes", e)),
            }
        }
        Notify::Email(address) => {
            let name = topic_name(prefix);
            let mut create = sns.create_topic().name(&name);
            for (k, v) in tags(prefix) {
                create = create.tags(
                    aws_sdk_sns::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|e| TierError::Terminal(format!("a topic tag: {e}")))?,
                );
            }
            let arn = match create.send().await {
                Ok(out) => out.topic_arn().unwrap_or_default().to_string(),
                // The name is taken by a topic that is not this deployment's
                // (SNS: "Topic already exists with different tags").
                Err(e) if error_code(&e) == Some("InvalidParameter") => {
                    return Err(TierError::Refused(format!(
                        "--notify: a topic named {name} exists that this deployment did not make (it lacks the tag mbstack:deployment={prefix}); pass its ARN to use it as it is (--notify arn:…:{name}), or delete or rename it"
                    )))
                }
                Err(e) => return Err(aws_error("sns:CreateTopic", e)),
            };
            let mut subscribed = false;
            let mut token = None;
            loop {
                let page = sns
                    .list_subscriptions_by_topic()
                    .topic_arn(&arn)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| aws_error("sns:ListSubscriptionsByTopic", e))?;
                subscribed |= page.subscriptions().iter().any(|s| {
                    s.protocol() == Some("email") && s.endpoint() == Some(address.as_str())
                });
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if subscribed {
                report
                    .unchanged
                    .push(format!("{address} subscribed to {name}"));
            } else {
                sns.subscribe()
                    .topic_arn(&arn)
                    .protocol("email")
                    .endpoint(address)
                    .send()
                    .await
                    .map_err(|e| aws_error("sns:Subscribe", e))?;
                report.changes.push(format!(
                    "subscribe {address} to topic {name} (AWS mails a confirmation link: nothing is delivered until it is followed)"
                ));
            }
            Ok(Some(arn))
        }
    }
}

/// Undeploy: the deployment's own topic, if it made one (a topic of that name
/// without the deployment's tag is someone else's and stays).
pub(super) async fn remove(
    sns: &aws_sdk_sns::Client,
    prefix: &str,
    done: &mut Vec<String>,
) -> Result<(), TierError> {
    let suffix = format!(":{}", topic_name(prefix));
    let mut token = None;
    let mut found = None;
    loop {
        let page = sns
            .list_topics()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("sns:ListTopics", e))?;
        found = found.or_else(|| {
            page.topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|a| a.ends_with(&suffix))
                .map(str::to_string)
        });
        token = page.next_token().map(str::to_string);
        if token.is_none() || found.is_some() {
            break;
        }
    }
    let Some(arn) = found else {
        return Ok(());
    };
    let tags = match sns.list_tags_for_resource().resource_arn(&arn).send().await {
        Ok(t) => t,
        Err(e) if matches!(error_code(&e), Some("NotFound" | "ResourceNotFound")) => return Ok(()),
        Err(e) => return Err(aws_error("sns:ListTagsForResource", e)),
    };
    let ours = tags
        .tags()
        .iter()
        .any(|t| t.key() == "mbstack:deployment" && t.value() == prefix);
    if !ours {
        return Ok(());
    }
    sns.delete_topic()
        .topic_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("sns:DeleteTopic", e))?;
    done.push(format!("topic {}", topic_name(prefix)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_takes_an_email_a_topic_arn_or_off_and_names_itself_otherwise() {
        assert_eq!(Notify::parse(None), Ok(Notify::Keep));
        assert_eq!(Notify::parse(Some("off")), Ok(Notify::Off));
        assert_eq!(
            Notify::parse(Some("ops@example.com")),
            Ok(Notify::Email("ops@example.com".into()))
        );
        let arn = "arn:aws:sns:eu-west-1:123456789012:alerts";
        assert_eq!(Notify::parse(Some(arn)), Ok(Notify::Topic(arn.into())));
        for bad in [
            "ops",
            "ops@localhost",
            "a@b.com,c@d.com",
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "arn:aws:sns:eu-west-1:1234:alerts",
            "",
        ] {
            let e = Notify::parse(Some(bad)).expect_err(bad);
            assert!(e.starts_with("--notify:"), "{bad}: {e}");
        }
    }
}
