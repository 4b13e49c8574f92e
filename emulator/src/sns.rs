//! SNS as AWS answers where moto takes anything (always, not only with
//! realism on: these are AWS's answers, not its timings):
//! - Publish whose Subject is not ASCII, holds a line break or a control
//!   character, or is over 100 characters → `InvalidParameter`;
//! - CreateTopic of a name that exists, with a tag the topic has not →
//!   `InvalidParameter` "Topic already exists with different tags" (moto
//!   returns the existing topic, so a deploy would adopt a topic someone else
//!   made under its name).

use std::collections::BTreeSet;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::moto::moto_query;
use crate::protocol::{query_error, urlencode, Query};
use crate::state::Shared;
use crate::xml;

/// The tags a query call carries (`Tags.member.N.Key` / `.Value`).
fn request_tags(q: &Query) -> BTreeSet<(String, String)> {
    (1..)
        .map_while(|n| {
            let key = q.get(&format!("Tags.member.{n}.Key"))?;
            let value = q.get(&format!("Tags.member.{n}.Value")).unwrap_or("");
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

pub(crate) async fn refuse(shared: &Shared, q: &Query) -> Option<Response<Full<Bytes>>> {
    if q.service != "sns" {
        return None;
    }
    match q.action() {
        "Publish" => {
            let subject = q.get("Subject")?;
            let ok = subject.chars().count() < 100
                && subject
                    .chars()
                    .all(|c| c.is_ascii() && !c.is_ascii_control());
            (!ok).then(|| {
                query_error(
                    "InvalidParameter",
                    "Invalid parameter: Subject must be ASCII text that begins with a letter, number, or punctuation mark; must not include line breaks or control characters; and must be less than 100 characters long",
                )
            })
        }
        "CreateTopic" => {
            let name = q.get("Name")?;
            let listed = moto_query(shared, "sns", "Action=ListTopics&Version=2010-03-31")
                .await
                .ok()?;
            let suffix = format!(":{name}");
            let arn = xml::values(&String::from_utf8_lossy(&listed), "TopicArn")
                .into_iter()
                .find(|a| a.ends_with(&suffix))?;
            let form = format!(
                "Action=ListTagsForResource&Version=2010-03-31&ResourceArn={}",
                urlencode(&arn)
            );
            let answer = moto_query(shared, "sns", &form).await.ok()?;
            let have: BTreeSet<(String, String)> =
                xml::each(&String::from_utf8_lossy(&answer), "member", |m| {
                    Some((m.child("Key")?, m.child("Value").unwrap_or_default()))
                })
                .into_iter()
                .collect();
            // Tags it does not have; none asked: the existing topic, as AWS.
            (!request_tags(q).is_subset(&have)).then(|| {
                query_error(
                    "InvalidParameter",
                    "Invalid parameter: Tags Reason: Topic already exists with different tags",
                )
            })
        }
        _ => None,
    }
}

/// SNS's refusals, always (AWS's answers, not its timings).
pub(crate) struct Sns;

impl crate::rules::Rule for Sns {
    fn refuse<'a>(
        &'a self,
        s: &'a std::sync::Arc<Shared>,
        c: &'a crate::rules::Call<'a>,
    ) -> crate::rules::Step<'a, Option<crate::rules::Answer>> {
        Box::pin(async move {
            match &c.query {
                Some(q) => refuse(s, q).await,
                None => None,
            }
        })
    }
}
