//! The app's part of the return from a failed upgrade (`Part::Return`), after
//! the rollback: the rollback put the task definition before the upgrade back
//! (the image before), and the data tier's rollback restored the database from
//! the snapshot taken before the upgrade. The restored instance has a password
//! of its own (a new secret RDS manages): the service gets a revision of the
//! task definition it runs with that secret and the restored endpoint, the
//! execution role may read the new secret, and the password-rotation rule
//! watches it. Ready when Metabase's version before is healthy on the
//! restored database.

use mbstack_core::iam::Permission;
use mbstack_core::outputs::{DataOutputs, DeploymentInputs};
use mbstack_core::resource::{self, Resource};
use mbstack_core::{aws_error, Action, Outcome, Readiness, TierError, Work};
use serde_json::Map;

use crate::{iam, names, password_rule, service, task_definition, Clients};

pub(crate) async fn put_back(
    c: &Clients,
    mut w: Work<'_>,
    event: &mbstack_core::Event,
) -> Result<Outcome, TierError> {
    let data: DataOutputs = event.upstream()?;
    let deployment = event.deployment()?;
    let (Some(host), Some(port), Some(secret_arn)) =
        (data.endpoint.clone(), data.port, data.secret_arn.clone())
    else {
        return Err(TierError::Terminal(
            "the return from the upgrade needs the restored database's endpoint, port and secret (inputs.data from the data tier's rollback)".into(),
        ));
    };
    let db = task_definition::DbInputs {
        host,
        port: port.to_string(),
        name: data
            .database_name
            .clone()
            .unwrap_or_else(|| "metabase".into()),
        user: data.username.clone().unwrap_or_else(|| "metabase".into()),
        secret_arn: secret_arn.clone(),
    };
    let Some((svc, _)) = service::find(&c.ecs, &w).await? else {
        return Err(TierError::Terminal(format!(
            "the database was returned to {}, but stack {}'s Metabase service is gone: apply the stack to create it on that database",
            data.returned_to.as_deref().unwrap_or("the snapshot before the upgrade"),
            w.spec.stack
        )));
    };
    let running = svc.task_definition().unwrap_or_default().to_string();
    let Some(live) = task_definition::describe_revision(&c.ecs, &running).await? else {
        return Err(TierError::Terminal(format!(
            "the service's task definition {running} cannot be read, so Metabase was not put on the returned database: apply the stack"
        )));
    };
    let Some(before) = task_definition::wanted_from(&live) else {
        return Err(TierError::Terminal(format!(
            "the service's task definition {running} has no Metabase container mbstack made: apply the stack"
        )));
    };
    let want = task_definition::on_database(before, &db);
    if !task_definition::holds(&live, &want) {
        // The execution role reads the restored database's secret.
        let key = want
            .secrets
            .get("MB_ENCRYPTION_SECRET_KEY")
            .cloned()
            .unwrap_or_default();
        let roles = iam::Roles {
            iam: c.iam.clone(),
            secret_arns: Some(vec![secret_arn.clone(), key]),
            boundary: None,
        };
        resource::converge(&roles, &mut w, &[iam::Role::Execution]).await?;
        let tds = task_definition::TaskDefinitions { ecs: c.ecs.clone() };
        let revision = tds
            .register_tagged(&w, &want, task_definition::tags_of(&live))
            .await?;
        let arn = tds.id(&revision);
        c.ecs
            .update_service()
            .cluster(names::cluster(&w.spec.stack))
            .service(names::SERVICE)
            .task_definition(&arn)
            .send()
            .await
            .map_err(|e| aws_error("ecs:UpdateService", e))?;
        w.record(
            task_definition::TaskDefinitions::KIND,
            &arn,
            Action::Create,
            format!(
                "image {} on the returned database (its new password's secret)",
                want.image
            ),
        );
        w.record(
            service::Services::KIND,
            svc.service_arn().unwrap_or_default(),
            Action::Update,
            format!("→ {arn}: Metabase's version before, on the database as it was"),
        );
    }
    // The rotation rule watches the restored database's secret.
    if let (Some(sm), Some(role)) = (
        DeploymentInputs::given(&deployment.state_machine_arn),
        DeploymentInputs::given(&deployment.events_role_arn),
    ) {
        let rules = password_rule::PasswordRules {
            events: c.events.clone(),
            secret_arn: Some(secret_arn),
            repair: Some(password_rule::Repair {
                state_machine_arn: sm.to_string(),
                role_arn: role.to_string(),
            }),
        };
        resource::converge(&rules, &mut w, &[()]).await?;
    }
    let ready = match w.changed() {
        0 => crate::service_readiness(c, &w, Some(&svc), Some(&running)).await?,
        n => Readiness::Pending(format!(
            "{n} change(s) made: waiting for Metabase's version before to start on the returned database"
        )),
    };
    w.converged(ready, Map::new())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`):
/// the service's update is its own (service.rs).
pub(crate) const PERMISSIONS: &[Permission] = &[Permission::own_tagged(
    "ReturnUpdate",
    &["ecs:UpdateService"],
)];
