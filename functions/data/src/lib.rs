//! mbstack-data: the DB subnet group and the RDS PostgreSQL instance that holds
//! Metabase's application database. Outputs carry the endpoint, port, database
//! name, user and the ARN of the secret RDS keeps the password in — never a
//! password.

mod instance;
mod pre_upgrade;
pub use pre_upgrade::{
    downgrade_problem, pre_upgrade_snapshots, snapshot_room_problem, UPGRADE_SNAPSHOTS,
};
mod subnet_group;
mod tags;
#[cfg(test)]
mod test_support;
mod upgrade_return;

pub use instance::{
    find, managed_secret_arn, readiness, restore_snapshot, RestoreSnapshot, RESTORED_FROM_TAG,
};
pub use mbstack_core::Readiness;

use aws_sdk_rds::types::DbInstance;
use mbstack_core::naming::rds_name;
use mbstack_core::outputs::{self, DataOutputs, NetworkOutputs};
use mbstack_core::resource;
use mbstack_core::work::utc_stamp_now;
use mbstack_core::{client, Aws, Event, Outcome, State, Tier, TierError, Verb, Work};
use serde_json::Map;

pub async fn handle(event: Event, aws: &Aws) -> Result<Outcome, TierError> {
    event.spec.validate()?;
    let rds = client!(aws_sdk_rds, aws);
    let w = Work::new(Tier::Data, &event.spec, &event.run, event.verb);
    match event.verb {
        Verb::Plan | Verb::Apply | Verb::Check => Box::pin(converge(&rds, w, &event)).await,
        Verb::Destroy => {
            // A rollback of a run that rolled out another Metabase version:
            // the database returns to the snapshot taken before it.
            let upgrade = event
                .inputs
                .get("upgrade")
                .and_then(|u| u.get("snapshot"))
                .and_then(|s| s.as_str())
                .filter(|_| event.run.scope == mbstack_core::Scope::Run)
                .map(str::to_string);
            match upgrade {
                Some(snapshot) => Box::pin(return_from_upgrade(&rds, w, &snapshot)).await,
                None => Box::pin(destroy(&rds, w)).await,
            }
        }
    }
}

fn data_outputs(db: Option<&DbInstance>) -> DataOutputs {
    let Some(db) = db else {
        return DataOutputs::default();
    };
    let own = |v: Option<&str>| v.map(str::to_string);
    DataOutputs {
        instance_id: own(db.db_instance_identifier()),
        instance_arn: own(db.db_instance_arn()),
        endpoint: own(db.endpoint().and_then(|e| e.address())),
        port: db.endpoint().and_then(|e| e.port()),
        // A restored database keeps the snapshot's name and master user.
        database_name: Some(db.db_name().unwrap_or(instance::DB_NAME).to_string()),
        username: Some(
            db.master_username()
                .unwrap_or(instance::MASTER_USER)
                .to_string(),
        ),
        secret_arn: own(db.master_user_secret().and_then(|s| s.secret_arn())),
        status: own(db.db_instance_status()),
        restored_from: db
            .tag_list()
            .iter()
            .find(|t| t.key() == Some(RESTORED_FROM_TAG))
            .and_then(|t| t.value())
            .map(str::to_string),
        upgrade_snapshot: None,
        returned_to: None,
    }
}

/// Plan, apply and check: the subnet group, then the instance.
async fn converge(
    rds: &aws_sdk_rds::Client,
    mut w: Work<'_>,
    event: &Event,
) -> Result<Outcome, TierError> {
    let net: NetworkOutputs = event.upstream()?;
    let subnets = net.private_subnets();
    let sg = net.db_security_group_id;
    if w.verb == Verb::Apply && (subnets.is_none() || sg.is_none()) {
        return Err(TierError::Terminal(
            "the data tier needs the network tier's outputs (inputs.network.privateSubnetIds and dbSecurityGroupId): apply the network first".into(),
        ));
    }
    let groups = subnet_group::SubnetGroups {
        rds: rds.clone(),
        subnets,
        stack: event.spec.stack.clone(),
    };
    let group = resource::converge(&groups, &mut w, &[()]).await?;
    // Before another Metabase image goes out: a snapshot of the database, and
    // the image put on record only once the snapshot is available.
    let stamp = utc_stamp_now();
    let known = instance::find(rds, &event.spec.stack).await?;
    let pre = pre_upgrade::PreUpgrade {
        rds: rds.clone(),
        instance: known.clone(),
        image: event.spec.app.image.clone(),
        stamp: stamp.clone(),
    };
    let pre_wants = pre.wants(&w);
    let snapshots = resource::converge(&pre, &mut w, &pre_wants).await?;
    let snapshotted = snapshots
        .found
        .iter()
        .flatten()
        .any(|s| s.status() == Some("available"));
    let record = (!pre.wanted(&w) || snapshotted).then(|| event.spec.app.image.clone());
    // A database to restore: its snapshot read once (the plan's and the
    // run's change line show its storage, which the restore keeps).
    let restore = match (&pre.instance, &event.spec.database.restore_from) {
        (None, Some(_)) => instance::restore_snapshot(rds, &event.spec).await?,
        _ => None,
    };
    let dbs = instance::DbInstances {
        rds: rds.clone(),
        stack: event.spec.stack.clone(),
        subnet_group: group.ids(&groups).into_iter().next().flatten(),
        security_group: sg,
        stamp,
        known: Some(known),
        record,
        restore,
    };
    let db = resource::converge(&dbs, &mut w, &[()]).await?;
    let found = db.found.first().cloned().flatten();
    upgrade_return::finish_left_return(rds, &mut w, found.as_ref(), &utc_stamp_now()).await?;
    // The snapshot is named in the run's changes (`db-snapshot create …`);
    // the one before the image this run put on record is in the outputs (a
    // failed run's rollback returns the database to it).
    let mut out = data_outputs(found.as_ref());
    if let Some(db) = found.as_ref().filter(|_| w.verb != Verb::Plan) {
        out.upgrade_snapshot = pre_upgrade::before_record_of(rds, db, &w.run.id).await?;
    }
    let outputs = outputs::to_map(&out);
    let asleep = w.spec.paused
        && pre
            .instance
            .as_ref()
            .is_some_and(|db| db.db_instance_status() == Some("stopped"));
    let ready = match resource::readiness(&pre, &w, &pre_wants, &snapshots.found) {
        // No image goes out on a database not snapshotted first: wait until
        // RDS can snapshot it (a paused stack runs no tasks).
        Readiness::Ready if pre.wanted(&w) && !snapshotted && !asleep => {
            Readiness::Pending(format!(
                "waiting for DB {} to be snapshotted before {} runs on it (RDS snapshots an instance that is available or optimizing its storage)",
                rds_name(&w.spec.stack),
                event.spec.app.image
            ))
        }
        Readiness::Ready => resource::readiness(&dbs, &w, &[()], &db.found),
        other => other,
    };
    if w.verb == Verb::Check {
        return w.checked(ready, outputs);
    }
    // The status read before this apply's own create / modify / stop / start
    // is not the truth after it: check judges. With nothing changed it is (a
    // no-op repair run does not wait a poll).
    let n = w.changed();
    let ready = match n {
        0 => ready,
        _ => Readiness::Pending(format!(
            "database: {n} change(s) made; waiting for it to settle"
        )),
    };
    w.converged(ready, outputs)
}

/// The rollback of a run whose new Metabase version migrated the database:
/// the database returned to `snapshot` (see `upgrade_return`), then what the
/// run created is deleted as in any rollback.
async fn return_from_upgrade(
    rds: &aws_sdk_rds::Client,
    mut w: Work<'_>,
    snapshot: &str,
) -> Result<Outcome, TierError> {
    match upgrade_return::pass(rds, &mut w, snapshot, &utc_stamp_now()).await? {
        upgrade_return::Progress::Waiting(why) => {
            let message = format!("returning the database to {snapshot}: waiting for {why}");
            Ok(w.outcome(State::Pending, message, Map::new()))
        }
        upgrade_return::Progress::Done(db) => {
            let mut out = data_outputs(Some(&db));
            out.returned_to = Some(snapshot.to_string());
            let rest = Box::pin(destroy(rds, w)).await?;
            Ok(Outcome {
                outputs: outputs::to_map(&out),
                message: format!(
                    "the database is back as it was before the upgrade (restored from {snapshot}); {}",
                    rest.message
                ),
                ..rest
            })
        }
        upgrade_return::Progress::Nothing => Box::pin(destroy(rds, w)).await,
    }
}

/// Instance (final snapshot, wait until gone) → subnet group.
async fn destroy(rds: &aws_sdk_rds::Client, mut w: Work<'_>) -> Result<Outcome, TierError> {
    let dbs = instance::DbInstances {
        rds: rds.clone(),
        stack: w.spec.stack.clone(),
        subnet_group: None,
        security_group: None,
        stamp: utc_stamp_now(),
        known: None,
        record: None,
        restore: None,
    };
    // A rollback takes back the Metabase image its run put on record (the
    // service returns to the image before it).
    if w.run.scope == mbstack_core::Scope::Run {
        if let Some(db) = instance::find(rds, &w.spec.stack).await? {
            if let Some(back) = dbs.put_back_record(&w, &db).await? {
                let id = db.db_instance_identifier().unwrap_or_default().to_string();
                w.record(
                    "db-instance",
                    id,
                    mbstack_core::Action::Update,
                    format!("Metabase image on record → {back} (put back)"),
                );
            }
        }
    }
    let waiting = resource::destroy(&dbs, &mut w).await?;
    if !waiting.is_empty() {
        let message = format!("waiting for {}", waiting.join(", "));
        return Ok(w.outcome(State::Pending, message, Map::new()));
    }
    let groups = subnet_group::SubnetGroups {
        rds: rds.clone(),
        subnets: None,
        stack: w.spec.stack.clone(),
    };
    let result = resource::destroy(&groups, &mut w).await.map(|_| ());
    w.destroyed(result, "database")
}

/// The IAM permissions of the calls in this file: none (the resource files make them).
pub const OWN_PERMISSIONS: &[mbstack_core::iam::Permission] = &[];

mbstack_core::tier_permissions!(instance, subnet_group, pre_upgrade, upgrade_return);
