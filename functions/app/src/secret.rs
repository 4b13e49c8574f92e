//! Metabase's `MB_ENCRYPTION_SECRET_KEY`: 64 random characters from Secrets
//! Manager's GetRandomPassword, kept in its own secret, generated once and never
//! regenerated (a new key would make every saved connection unreadable). The value
//! never leaves Secrets Manager except into the container, by ARN.

use aws_sdk_secretsmanager::primitives::DateTime;
use aws_sdk_secretsmanager::Client;
use mbstack_core::iam::Permission;
use mbstack_core::{aws_error, error_code, Action, TierError, Work};

use crate::names;

pub(crate) const KIND: &str = "secret";
/// Destroy schedules deletion with this window; an apply within it restores the key.
pub(crate) const RECOVERY_DAYS: i64 = 7;

struct Found {
    arn: String,
    scheduled_for_deletion: bool,
    tags: Vec<(String, String)>,
}

async fn find(sm: &Client, w: &Work<'_>) -> Result<Option<Found>, TierError> {
    let name = names::encryption_key_secret(&w.spec.stack);
    let out = match sm.describe_secret().secret_id(&name).send().await {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("secretsmanager:DescribeSecret", e)),
    };
    let tags: Vec<(String, String)> = out
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or("").to_string(),
                t.value().unwrap_or("").to_string(),
            )
        })
        .collect();
    if !w.is_ours(&tags) {
        return Err(w.not_ours("secret", &name));
    }
    Ok(Some(Found {
        arn: out.arn().unwrap_or_default().to_string(),
        scheduled_for_deletion: out.deleted_date().is_some(),
        tags,
    }))
}

/// The key secret's ARN (None: planned).
pub(crate) async fn ensure(sm: &Client, w: &mut Work<'_>) -> Result<Option<String>, TierError> {
    let name = names::encryption_key_secret(&w.spec.stack);
    if let Some(found) = find(sm, w).await? {
        if found.scheduled_for_deletion {
            if !w.dry_run {
                sm.restore_secret()
                    .secret_id(&found.arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("secretsmanager:RestoreSecret", e))?;
            }
            w.record(
                KIND,
                &found.arn,
                Action::Update,
                "restore the encryption key scheduled for deletion (it must never change)",
            );
        } else {
            w.record(
                KIND,
                &found.arn,
                Action::None,
                "Metabase encryption key (kept, never regenerated)",
            );
        }
        return Ok(Some(found.arn));
    }
    if w.dry_run {
        w.record(
            KIND,
            &name,
            Action::Create,
            "Metabase encryption key, 64 random characters",
        );
        return Ok(None);
    }
    let random = sm
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
    let out = sm
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
    let arn = out.arn().unwrap_or_default().to_string();
    w.record(
        KIND,
        &arn,
        Action::Create,
        "Metabase encryption key, 64 random characters",
    );
    Ok(Some(arn))
}

/// When the database password (the secret RDS manages, `arn`) last rotated:
/// None when it never has. ECS reads a secret only when a task starts, so tasks
/// older than this hold a password that no longer opens a connection.
pub(crate) async fn db_password_rotated(
    sm: &Client,
    arn: &str,
) -> Result<Option<DateTime>, TierError> {
    match sm.describe_secret().secret_id(arn).send().await {
        Ok(o) => Ok(o.last_rotated_date().copied()),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(aws_error("secretsmanager:DescribeSecret", e)),
    }
}

/// Schedules deletion with a recovery window (never forced).
pub(crate) async fn delete(sm: &Client, w: &mut Work<'_>) -> Result<(), TierError> {
    let Some(found) = find(sm, w).await? else {
        return Ok(());
    };
    if found.scheduled_for_deletion || !w.owns(&found.tags) {
        return Ok(());
    }
    sm.delete_secret()
        .secret_id(&found.arn)
        .recovery_window_in_days(RECOVERY_DAYS)
        .send()
        .await
        .map_err(|e| aws_error("secretsmanager:DeleteSecret", e))?;
    w.record(
        KIND,
        &found.arn,
        Action::Delete,
        format!(
            "scheduled for deletion in {RECOVERY_DAYS} days (an apply before then restores it)"
        ),
    );
    Ok(())
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
