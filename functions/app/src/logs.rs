//! The CloudWatch log group the Metabase container logs to.

use aws_sdk_cloudwatchlogs::Client;
use mbstack_core::iam::Permission;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, TierError, Work};

use crate::names;

/// The stack's log group.
pub(crate) struct LogGroups {
    pub logs: Client,
}

/// A log group: its name, ARN (without `:*`), retention and tags.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    name: String,
    retention: Option<i32>,
    tags: Vec<(String, String)>,
}

/// Its retention changes: (have, want).
pub(crate) struct Retention(Option<i32>, i32);

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let have = self
            .0
            .map(|r| r.to_string())
            .unwrap_or_else(|| "never expire".into());
        write!(f, "retention {have} → {} days", self.1)
    }
}

fn retention(w: &Work<'_>) -> i32 {
    i32::from(w.spec.app.log_retention_days)
}

impl LogGroups {
    async fn set_retention(&self, name: &str, days: i32) -> Result<(), TierError> {
        self.logs
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days)
            .send()
            .await
            .map_err(|e| aws_error("logs:PutRetentionPolicy", e))?;
        Ok(())
    }
}

impl Resource for LogGroups {
    const KIND: &'static str = "log-group";
    const LABEL: &'static str = "log group";
    type Live = Live;
    type Want = ();
    type Step = Retention;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        names::log_group(&w.spec.stack)
    }
    mbstack_core::resource_key!(name: name, id: name, tags: tags);

    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let name = names::log_group(&w.spec.stack);
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .map_err(|e| aws_error("logs:DescribeLogGroups", e))?;
        let Some(g) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name.as_str()))
        else {
            return Ok(Vec::new());
        };
        let arn = g
            .log_group_arn()
            .map(str::to_string)
            .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
            .unwrap_or_default();
        let tags = self
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| aws_error("logs:ListTagsForResource", e))?;
        Ok(vec![Live {
            name,
            retention: g.retention_in_days(),
            tags: tags
                .tags()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }])
    }

    fn diff(&self, w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Retention>, TierError> {
        let want = retention(w);
        Ok(if live.retention == Some(want) {
            vec![]
        } else {
            vec![Retention(live.retention, want)]
        })
    }
    fn describe(&self, w: &Work<'_>, _want: &()) -> String {
        format!("retention {} days", retention(w))
    }
    fn summary(&self, w: &Work<'_>, _live: &Live) -> String {
        self.describe(w, &())
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let name = names::log_group(&w.spec.stack);
        self.logs
            .create_log_group()
            .log_group_name(&name)
            .set_tags(Some(w.tags("logs").into_iter().collect()))
            .send()
            .await
            .map_err(|e| aws_error("logs:CreateLogGroup", e))?;
        self.set_retention(&name, retention(w)).await?;
        Ok(Live {
            name,
            retention: Some(retention(w)),
            tags: w.tags("logs"),
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        _want: &(),
        steps: &[Retention],
    ) -> Result<Option<Live>, TierError> {
        for Retention(_, days) in steps {
            self.set_retention(&live.name, *days).await?;
        }
        Ok(None)
    }

    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.logs
            .delete_log_group()
            .log_group_name(&live.name)
            .send()
            .await
            .map_err(|e| aws_error("logs:DeleteLogGroup", e))?;
        Ok(Deleted::Now)
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["logs:DescribeLogGroups"]),
    Permission::on(
        "LogGroup",
        &[
            "logs:CreateLogGroup",
            "logs:PutRetentionPolicy",
            "logs:DeleteLogGroup",
            "logs:ListTagsForResource",
            "logs:TagResource",
        ],
        &["arn:${Partition}:logs:*:*:log-group:/mbstack/*"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use mbstack_core::{StackSpec, Tier, Verb};

    fn logs() -> Client {
        Client::from_conf(
            aws_sdk_cloudwatchlogs::Config::builder()
                .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
                .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn group(retention: Option<i32>) -> Live {
        Live {
            name: names::log_group("s"),
            retention,
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_log_group_with_the_spec_retention_is_left_alone() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        // The spec's default: 30 days.
        let steps = LogGroups { logs: logs() }
            .diff(&w, &group(Some(30)), &())
            .unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_log_group_with_another_retention_is_updated() {
        let mut spec = StackSpec::new("s");
        spec.app.log_retention_days = 90;
        let run = run();
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let kind = LogGroups { logs: logs() };
        let shown = |live: &Live| -> Vec<String> {
            let steps = kind.diff(&w, live, &()).unwrap();
            steps.iter().map(ToString::to_string).collect()
        };
        assert_eq!(shown(&group(Some(30))), vec!["retention 30 → 90 days"]);
        // A group that keeps its events forever gets the spec's retention too.
        assert_eq!(
            shown(&group(None)),
            vec!["retention never expire → 90 days"]
        );
    }
}
