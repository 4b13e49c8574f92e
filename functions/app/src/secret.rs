//! Metabase's `MB_ENCRYPTION_SECRET_KEY`: 64 random characters from Secrets
//! Manager's GetRandomPassword, kept in its own secret, generated once and never
//! regenerated (a new key would make every saved connection unreadable). The value
//! never leaves Secrets Manager except into the container, by ARN.

use aws_sdk_secretsmanager::primitives::DateTime;
use aws_sdk_secretsmanager::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{self, CREATED_BY_TAG};
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, Scope, TierError, Verb, Work};

use crate::names;

/// Destroy schedules deletion with this window; an apply within it restores the key.
pub(crate) const RECOVERY_DAYS: i64 = 7;

/// The run that last brought the key back from its scheduled deletion: that
/// run's rollback schedules it again, as the run found it.
pub(crate) const RESTORED_BY_TAG: &str = "mbstack:restored-by";

/// The stack's encryption-key secret.
pub(crate) struct KeySecrets {
    pub sm: Client,
    /// The snapshot the stack's database was restored from: its data was
    /// encrypted with the key this secret held.
    pub restored_from: Option<String>,
}

/// The secret (never its value): ARN, whether it is scheduled for deletion,
/// tags.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    name: String,
    arn: String,
    scheduled_for_deletion: bool,
    tags: Vec<(String, String)>,
}

/// The one change in place: restore the key scheduled for deletion.
pub(crate) struct Restore;

impl std::fmt::Display for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("restore the encryption key scheduled for deletion (it must never change)")
    }
}

impl Resource for KeySecrets {
    const KIND: &'static str = "secret";
    const LABEL: &'static str = "secret";
    type Live = Live;
    type Want = ();
    type Step = Restore;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        names::encryption_key_secret(&w.spec.stack)
    }
    mbstack_core::resource_key!(name: name, id: arn, tags: tags);

    /// A destroy leaves a secret already scheduled for deletion alone.
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let name = names::encryption_key_secret(&w.spec.stack);
        let call = self.sm.describe_secret().secret_id(&name).send().await;
        let codes = ["ResourceNotFoundException"];
        let Some(out) = found("secretsmanager:DescribeSecret", call, &codes)? else {
            return Ok(Vec::new());
        };
        let live = Live {
            name,
            arn: out.arn().unwrap_or_default().to_string(),
            scheduled_for_deletion: out.deleted_date().is_some(),
            tags: out
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or("").to_string(),
                        t.value().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        };
        Ok(match (w.verb, live.scheduled_for_deletion) {
            (Verb::Destroy, true) => Vec::new(),
            // A rollback owns what its run created, and the key its run brought
            // back: scheduling it again puts it as the run found it (its value
            // kept for the recovery window, which starts again).
            (Verb::Destroy, false)
                if w.run.scope == Scope::Run
                    && naming::tag_value(&live.tags, RESTORED_BY_TAG)
                        == Some(w.run.id.as_str()) =>
            {
                let mut live = live;
                live.tags.retain(|(k, _)| k != CREATED_BY_TAG);
                live.tags
                    .push((CREATED_BY_TAG.to_string(), w.run.id.clone()));
                vec![live]
            }
            _ => vec![live],
        })
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<Restore>, TierError> {
        Ok(if live.scheduled_for_deletion {
            vec![Restore]
        } else {
            vec![]
        })
    }
    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        "Metabase encryption key, 64 random characters".into()
    }
    fn summary(&self, _w: &Work<'_>, _live: &Live) -> String {
        "Metabase encryption key (kept, never regenerated)".into()
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let name = names::encryption_key_secret(&w.spec.stack);
        if let (Some(snapshot), false) = (&self.restored_from, w.spec.app.new_encryption_key) {
            return Err(TierError::Refused(format!(
                "Metabase's encryption key {name} is gone (a destroy keeps it {RECOVERY_DAYS} days, and they have passed), so the database restored from {snapshot} has data sources' passwords and settings encrypted with a key that no longer exists: Metabase would start but could not read them. To start it with a new key anyway (then enter each data source's password again in Metabase's admin), set app.newEncryptionKey to true and apply"
            )));
        }
        let random = self
            .sm
            .get_random_password()
            .password_length(64)
            .exclude_punctuation(true)
            .include_space(false)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:GetRandomPassword", e))?;
        let Some(value) = random.random_password() else {
            return Err(TierError::Terminal(
                "secretsmanager:GetRandomPassword returned no value".into(),
            ));
        };
        let tags = w
            .tags("encryption-key")
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            })
            .collect();
        let out = self
            .sm
            .create_secret()
            .name(&name)
            .description(format!(
                "mbstack {}: Metabase MB_ENCRYPTION_SECRET_KEY. Never change it.",
                w.spec.stack
            ))
            .secret_string(value)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:CreateSecret", e))?;
        Ok(Live {
            name,
            arn: out.arn().unwrap_or_default().to_string(),
            scheduled_for_deletion: false,
            tags: w.tags("encryption-key"),
        })
    }

    /// Restores the key, then marks it as this run's to schedule again should
    /// the run fail. A mark refused schedules the key again at once (as the
    /// run found it) before the run fails; a crash between the two leaves it
    /// live, as a successful run would.
    async fn update(
        &self,
        w: &Work<'_>,
        live: &Live,
        _want: &(),
        _steps: &[Restore],
    ) -> Result<Option<Live>, TierError> {
        self.sm
            .restore_secret()
            .secret_id(&live.arn)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:RestoreSecret", e))?;
        let tag = aws_sdk_secretsmanager::types::Tag::builder()
            .key(RESTORED_BY_TAG)
            .value(&w.run.id)
            .build();
        let marked = self
            .sm
            .tag_resource()
            .secret_id(&live.arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:TagResource", e));
        if let Err(e) = marked {
            // Unmarked, no rollback would know the key was this run's to put back.
            if let Err(undo) = self.delete(w, live).await {
                return Err(TierError::Terminal(format!(
                    "{e}; and scheduling the key {} for deletion again, as the run found it, failed too: {undo}. The key is live, its value kept: the next apply uses it, or `mbstack destroy` schedules it",
                    live.name
                )));
            }
            return Err(e);
        }
        Ok(None)
    }

    /// Schedules deletion with a recovery window (never forced).
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.sm
            .delete_secret()
            .secret_id(&live.arn)
            .recovery_window_in_days(RECOVERY_DAYS)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:DeleteSecret", e))?;
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, w: &Work<'_>, _live: &Live) -> String {
        match w.run.scope {
            Scope::Run => format!("scheduled for deletion again, as this run found it, in {RECOVERY_DAYS} days (an apply before then restores it)"),
            Scope::Stack => format!("scheduled for deletion in {RECOVERY_DAYS} days (an apply before then restores it)"),
        }
    }
}

/// When the database password (the secret RDS manages, `arn`) last rotated:
/// None when it never has. ECS reads a secret only when a task starts, so tasks
/// older than this hold a password that no longer opens a connection.
pub(crate) async fn db_password_rotated(
    sm: &Client,
    arn: &str,
) -> Result<Option<DateTime>, TierError> {
    let call = sm.describe_secret().secret_id(arn).send().await;
    let codes = ["ResourceNotFoundException"];
    Ok(found("secretsmanager:DescribeSecret", call, &codes)?
        .and_then(|o| o.last_rotated_date().copied()))
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::on(
        "EncryptionKey",
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:CreateSecret",
            "secretsmanager:DeleteSecret",
            "secretsmanager:RestoreSecret",
            "secretsmanager:TagResource",
        ],
        &["arn:${Partition}:secretsmanager:*:*:secret:mbstack/*"],
    ),
    // The database password RDS manages: only when it last rotated (never its value).
    Permission::on(
        "DatabasePassword",
        &["secretsmanager:DescribeSecret"],
        &["arn:${Partition}:secretsmanager:*:*:secret:rds!db-*"],
    ),
    // Takes no resource.
    Permission::read("RandomKey", &["secretsmanager:GetRandomPassword"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use mbstack_core::{Run, Scope, StackSpec, Tier};

    fn sm() -> Client {
        Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
                .build(),
        )
    }

    fn key(scheduled_for_deletion: bool) -> Live {
        Live {
            name: names::encryption_key_secret("s"),
            arn: "arn:aws:secretsmanager:us-east-1:111122223333:secret:mbstack/s/metabase-encryption-key-AbCdEf".into(),
            scheduled_for_deletion,
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_key_secret_scheduled_for_deletion_is_restored_and_a_kept_one_left_alone() {
        let spec = StackSpec::new("s");
        let run = Run {
            id: "run-1".into(),
            scope: Scope::Stack,
        };
        let w = Work::new(Tier::App, &spec, &run, Verb::Apply);
        let keys = KeySecrets {
            sm: sm(),
            restored_from: None,
        };
        assert!(keys.diff(&w, &key(false), &()).unwrap().is_empty());
        let steps = keys.diff(&w, &key(true), &()).unwrap();
        assert!(matches!(steps.as_slice(), [Restore]));
        assert!(steps[0]
            .to_string()
            .starts_with("restore the encryption key"));
    }
}
