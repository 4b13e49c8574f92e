//! mbstack-data: the DB subnet group and the RDS PostgreSQL instance that holds
//! Metabase's application database. Outputs carry the endpoint, port, database
//! name, user and the ARN of the secret RDS keeps the password in — never a
//! password.

mod instance;
mod subnet_group;
mod tags;

pub use instance::readiness;
pub use mbstack_core::Readiness;

use aws_sdk_rds::types::DbInstance;
use mbstack_core::work::{input_list, input_str, object, utc_stamp_now};
use mbstack_core::{client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::{json, Map, Value};

/// RDS takes minutes: poll every 30 s.
const POLL_SECONDS: u32 = 30;

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let rds = client!(aws_sdk_rds, aws);
    let w = |dry_run| Work::new(Tier::Data, &event.spec, &event.run, dry_run);
    match event.verb {
        Verb::Plan => Box::pin(converge(&rds, w(true), &event)).await,
        Verb::Apply => Box::pin(converge(&rds, w(false), &event)).await,
        Verb::Check => Box::pin(check(&rds, w(true))).await,
        Verb::Destroy => Box::pin(destroy(&rds, w(false))).await,
    }
}

fn outputs(db: Option<&DbInstance>) -> Map<String, Value> {
    let Some(db) = db else {
        return Map::new();
    };
    object(json!({
        "instanceId": db.db_instance_identifier(),
        "instanceArn": db.db_instance_arn(),
        "endpoint": db.endpoint().and_then(|e| e.address()),
        "port": db.endpoint().and_then(|e| e.port()),
        "databaseName": instance::DB_NAME,
        "username": instance::MASTER_USER,
        "secretArn": db.master_user_secret().and_then(|s| s.secret_arn()),
        "status": db.db_instance_status(),
    }))
}

async fn converge(
    rds: &aws_sdk_rds::Client,
    mut w: Work<'_>,
    event: &Event,
) -> Result<Outcome, TierError> {
    let net = event.input(Tier::Network);
    let subnets = input_list(net, "privateSubnetIds");
    let sg = input_str(net, "dbSecurityGroupId");
    if !w.dry_run && (subnets.is_none() || sg.is_none()) {
        return Err(TierError::Terminal(
            "the data tier needs the network tier's outputs (inputs.network.privateSubnetIds and dbSecurityGroupId): apply the network first".into(),
        ));
    }
    let group = subnet_group::ensure(rds, &mut w, subnets.as_deref()).await?;
    let db = instance::ensure(rds, &mut w, group.as_deref(), sg.as_deref()).await?;
    if w.dry_run {
        let n = w.changed();
        return Ok(w.outcome(
            State::Ready,
            format!("plan: {n} change(s) to the database"),
            0,
            outputs(db.as_ref()),
        ));
    }
    let n = w.changed();
    if n == 0 {
        // Nothing changed: the status just read is the truth (a no-op repair run
        // does not wait a poll).
        if let Some(db) = &db {
            let id = db.db_instance_identifier().unwrap_or_default();
            match readiness(
                id,
                db.db_instance_status().unwrap_or("unknown"),
                w.spec.paused,
            ) {
                Readiness::Ready => {
                    return Ok(w.outcome(
                        State::Ready,
                        format!("DB {id} ready, no change"),
                        0,
                        outputs(Some(db)),
                    ))
                }
                Readiness::Failed(why) => return Err(TierError::ResourceFailed(why)),
                Readiness::Pending(_) => {}
            }
        }
    }
    // Statuses read before this apply's own create/modify/stop/start: check judges.
    let message = format!("database: {n} change(s) made; waiting for it to settle");
    Ok(w.outcome(State::Pending, message, POLL_SECONDS, outputs(db.as_ref())))
}

async fn check(rds: &aws_sdk_rds::Client, w: Work<'_>) -> Result<Outcome, TierError> {
    let Some((db, _)) = instance::find(rds, &w).await? else {
        let id = w.name("db");
        return Ok(w.outcome(
            State::Pending,
            format!("waiting for DB {id} to appear"),
            POLL_SECONDS,
            Map::new(),
        ));
    };
    let id = db.db_instance_identifier().unwrap_or_default().to_string();
    match readiness(
        &id,
        db.db_instance_status().unwrap_or("unknown"),
        w.spec.paused,
    ) {
        Readiness::Ready => {
            let message = format!("DB {id} {}", db.db_instance_status().unwrap_or(""));
            Ok(w.outcome(State::Ready, message, 0, outputs(Some(&db))))
        }
        Readiness::Pending(why) => {
            Ok(w.outcome(State::Pending, why, POLL_SECONDS, outputs(Some(&db))))
        }
        Readiness::Failed(why) => Err(TierError::ResourceFailed(why)),
    }
}

/// Instance (final snapshot, wait until gone) → subnet group.
async fn destroy(rds: &aws_sdk_rds::Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    if let Some(waiting) = instance::delete(rds, &mut w, &utc_stamp_now()).await? {
        return Ok(w.outcome(State::Pending, waiting, POLL_SECONDS, Map::new()));
    }
    let result = subnet_group::delete(rds, &mut w).await;
    w.destroyed(result, "database", POLL_SECONDS)
}

/// The IAM permissions of the calls in this file: none (the resource files make them).
pub const OWN_PERMISSIONS: &[mbstack_core::iam::Permission] = &[];

mbstack_core::tier_permissions!(instance, subnet_group);
