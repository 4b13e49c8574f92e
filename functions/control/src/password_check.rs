//! `{"stack": …, "action": "password-check"}`: what the stack's two rotation
//! rules start (on the rotation's event, and once a day; `mbstack_app`'s
//! `password_rule.rs`). RDS rotates the database password every 7 days and
//! ECS hands a task its password only when the task starts, so tasks older
//! than the rotation cannot open new connections. The check reads the
//! rotation and the tasks' start: when the tasks are older, the run applies
//! the stack (the app tier replaces them); otherwise it ends at once, changing
//! nothing and taking no lock. A stack another run holds is waited for: Prepare
//! answers `Mbstack.Busy`, which the state machine retries every 30 s for an
//! hour (then reports the lock, and the next day's check tries again).

use mbstack_core::iam::Permission;
use mbstack_core::TierError;
use serde_json::Value;

/// What the check found.
pub(crate) enum Verdict {
    /// Nothing to do, and why.
    Nothing(String),
    /// The tasks hold an older password (rotated when).
    Replace(String),
}

/// The verdict for `stack`, whose stored spec is `stored`.
pub(crate) async fn verdict(
    rds: &aws_sdk_rds::Client,
    ecs: &aws_sdk_ecs::Client,
    sm: &aws_sdk_secretsmanager::Client,
    stack: &str,
    stored: Option<&Value>,
) -> Result<Verdict, TierError> {
    let Some(stored) = stored else {
        return Ok(Verdict::Nothing(format!(
            "stack {stack} has no stored spec (it was destroyed, or has never been applied): nothing to check"
        )));
    };
    if stored.get("paused") == Some(&Value::Bool(true)) {
        return Ok(Verdict::Nothing(format!(
            "stack {stack} is paused: its tasks start with the current password when it resumes"
        )));
    }
    let Some(secret) = mbstack_data::managed_secret_arn(rds, stack).await? else {
        return Ok(Verdict::Nothing(format!(
            "stack {stack} has no database with a password RDS manages: nothing to check"
        )));
    };
    Ok(
        match mbstack_app::password_outdated(ecs, sm, stack, &secret).await? {
            Some(when) => Verdict::Replace(when),
            None => Verdict::Nothing(format!(
                "the tasks of stack {stack} started after the database password last rotated: nothing to replace"
            )),
        },
    )
}

/// How long after a run ended where no Catch ran (failed, stopped, timed out)
/// its lock is left to the recovery the deployment's rule starts for it (which
/// acts within seconds on AWS); a check takes it over only after.
pub(crate) const RECOVERY_GRACE_SECONDS: i64 = 600;

/// The IAM permissions of the calls this check makes (in `mbstack_data` and
/// `mbstack_app`): reads of the stack's instance, its secret and its service.
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("PasswordCheckDatabase", &["rds:DescribeDBInstances"]),
    Permission::on(
        "PasswordCheckSecret",
        &["secretsmanager:DescribeSecret"],
        &["arn:${Partition}:secretsmanager:*:*:secret:rds!db-*"],
    ),
    Permission::on(
        "PasswordCheckService",
        &["ecs:DescribeServices"],
        &["arn:${Partition}:ecs:*:*:service/*-cluster/metabase"],
    ),
];
