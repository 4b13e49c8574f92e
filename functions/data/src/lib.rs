//! mbstack-data: the DB subnet group and the RDS PostgreSQL instance that holds
//! Metabase's application database. Outputs carry the endpoint, port, database
//! name, user and the ARN of the secret RDS keeps the password in — never a
//! password.

mod instance;
mod subnet_group;
mod tags;

pub use instance::readiness;
pub use mbstack_core::Readiness;
/// The DB subnet group's name: `naming::resource_name(stack, SUBNET_GROUP_ROLE)`.
pub use subnet_group::ROLE as SUBNET_GROUP_ROLE;

use aws_sdk_rds::types::DbInstance;
use mbstack_core::outputs::{self, DataOutputs, NetworkOutputs};
use mbstack_core::work::utc_stamp_now;
use mbstack_core::{client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::{Map, Value};

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let rds = client!(aws_sdk_rds, aws);
    let w = Work::new(Tier::Data, &event.spec, &event.run, event.verb);
    match event.verb {
        Verb::Plan | Verb::Apply => Box::pin(converge(&rds, w, &event)).await,
        Verb::Check => Box::pin(check(&rds, w)).await,
        Verb::Destroy => Box::pin(destroy(&rds, w)).await,
    }
}

fn outputs(db: Option<&DbInstance>) -> Map<String, Value> {
    let Some(db) = db else {
        return Map::new();
    };
    let own = |v: Option<&str>| v.map(str::to_string);
    outputs::to_map(&DataOutputs {
        instance_id: own(db.db_instance_identifier()),
        instance_arn: own(db.db_instance_arn()),
        endpoint: own(db.endpoint().and_then(|e| e.address())),
        port: db.endpoint().and_then(|e| e.port()),
        database_name: Some(instance::DB_NAME.to_string()),
        username: Some(instance::MASTER_USER.to_string()),
        secret_arn: own(db.master_user_secret().and_then(|s| s.secret_arn())),
        status: own(db.db_instance_status()),
    })
}

async fn converge(
    rds: &aws_sdk_rds::Client,
    mut w: Work<'_>,
    event: &Event,
) -> Result<Outcome, TierError> {
    let net: NetworkOutputs = event.upstream()?;
    let subnets = net.private_subnets();
    let sg = net.db_security_group_id;
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
    Ok(w.outcome(State::Pending, message, outputs(db.as_ref())))
}

async fn check(rds: &aws_sdk_rds::Client, w: Work<'_>) -> Result<Outcome, TierError> {
    let Some((db, _)) = instance::find(rds, &w).await? else {
        let id = w.name("db");
        return Ok(w.outcome(
            State::Pending,
            format!("waiting for DB {id} to appear"),
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
            Ok(w.outcome(State::Ready, message, outputs(Some(&db))))
        }
        Readiness::Pending(why) => Ok(w.outcome(State::Pending, why, outputs(Some(&db)))),
        Readiness::Failed(why) => Err(TierError::ResourceFailed(why)),
    }
}

/// Instance (final snapshot, wait until gone) → subnet group.
async fn destroy(rds: &aws_sdk_rds::Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    if let Some(waiting) = instance::delete(rds, &mut w, &utc_stamp_now()).await? {
        return Ok(w.outcome(State::Pending, waiting, Map::new()));
    }
    let result = subnet_group::delete(rds, &mut w).await;
    w.destroyed(result, "database")
}

/// The IAM permissions of the calls in this file: none (the resource files make them).
pub const OWN_PERMISSIONS: &[mbstack_core::iam::Permission] = &[];

mbstack_core::tier_permissions!(instance, subnet_group);
