//! What one tier hands the next: typed at both ends. A tier's outcome carries
//! its outputs as JSON (the state machine moves them from `$.<tier>` to the next
//! tier's `inputs.<tier>`); the producing tier writes one of these types and the
//! consuming tier reads the same type, so no key is spelled twice.
//!
//! Every field is optional: a plan of an empty account has no IDs yet (a list
//! holds `null` for each resource still to be created).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TierError;
use crate::naming::Tier;

/// The network tier's outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkOutputs {
    pub vpc_id: Option<String>,
    pub vpc_cidr: Option<String>,
    pub availability_zones: Vec<String>,
    pub public_subnet_ids: Vec<Option<String>>,
    pub private_subnet_ids: Vec<Option<String>>,
    pub internet_gateway_id: Option<String>,
    pub nat_gateway_ids: Vec<Option<String>>,
    pub route_table_ids: Vec<Option<String>>,
    pub lb_security_group_id: Option<String>,
    pub app_security_group_id: Option<String>,
    pub db_security_group_id: Option<String>,
    /// Whether every NAT gateway the spec asks for was available when the tier
    /// read them (a create's wait for them is skipped when they were).
    pub nat_gateways_available: bool,
}

impl NetworkOutputs {
    /// The public subnets, once every one of them exists.
    pub fn public_subnets(&self) -> Option<Vec<String>> {
        all_known(&self.public_subnet_ids)
    }

    /// The private subnets, once every one of them exists.
    pub fn private_subnets(&self) -> Option<Vec<String>> {
        all_known(&self.private_subnet_ids)
    }
}

/// The data tier's outputs: where the database is and the ARN of the secret
/// RDS keeps its password in (never a password).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataOutputs {
    pub instance_id: Option<String>,
    pub instance_arn: Option<String>,
    pub endpoint: Option<String>,
    pub port: Option<i32>,
    pub database_name: Option<String>,
    pub username: Option<String>,
    pub secret_arn: Option<String>,
    pub status: Option<String>,
    /// The snapshot the database was restored from (None: created empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// The snapshot taken before the Metabase image this run put on record
    /// (None: this run put none there). A failed run's rollback returns the
    /// database to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_snapshot: Option<String>,
    /// In a rollback's outcome: the snapshot the database was returned to
    /// (the app's tasks are then put on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned_to: Option<String>,
}

/// The load balancer tier's outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerOutputs {
    /// Where Metabase answers: `http://…` or, with a certificate, `https://…`.
    pub url: Option<String>,
    pub load_balancer_arn: Option<String>,
    pub dns_name: Option<String>,
    pub canonical_hosted_zone_id: Option<String>,
    pub target_group_arn: Option<String>,
    pub http_listener_arn: Option<String>,
    pub https_listener_arn: Option<String>,
    pub listener_arns: Vec<String>,
}

/// The app tier's outputs (secret ARNs only, never a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppOutputs {
    pub cluster_arn: Option<String>,
    pub service_arn: Option<String>,
    pub task_definition_arn: Option<String>,
    pub previous_task_definition_arn: Option<String>,
    pub log_group: Option<String>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub encryption_key_secret_arn: Option<String>,
    /// The Metabase image the service was put on (its task definition's),
    /// once an apply has made the service run it. A failed run whose data
    /// stage snapshotted the database before this image returns the
    /// database only when this is there: the image may have migrated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// What the state machine tells the app tier of its deployment (absent when a
/// tier is called directly, outside a deployment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentInputs {
    /// The permissions boundary every role the app tier creates carries.
    pub role_boundary_arn: Option<String>,
    /// The role EventBridge starts the state machine with.
    pub events_role_arn: Option<String>,
    pub state_machine_arn: Option<String>,
}

impl DeploymentInputs {
    /// A value the deployment filled in: an unrendered `${…}` placeholder or an
    /// empty string is none.
    pub fn given(value: &Option<String>) -> Option<&str> {
        value
            .as_deref()
            .filter(|v| !v.is_empty() && !v.starts_with("${"))
    }
}

/// The key of the deployment's entry in an event's `inputs`.
pub const DEPLOYMENT_KEY: &str = "deployment";

/// `outputs` as an outcome carries them.
pub fn to_map<T: Serialize>(outputs: &T) -> Map<String, Value> {
    match serde_json::to_value(outputs) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The entry `key` of an event's `inputs`, typed; its default when absent. A
/// present entry of the wrong shape is an error naming it.
pub fn read<T: DeserializeOwned + Default>(
    inputs: &Map<String, Value>,
    key: &str,
) -> Result<T, TierError> {
    match inputs.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            TierError::Terminal(format!(
                "inputs.{key} is not what that tier outputs ({e}): the state machine and the functions are from different versions; deploy them together"
            ))
        }),
    }
}

/// Typed access to the outputs of the tier before, by tier.
pub trait Upstream: DeserializeOwned + Default {
    const TIER: Tier;
}

impl Upstream for NetworkOutputs {
    const TIER: Tier = Tier::Network;
}

impl Upstream for DataOutputs {
    const TIER: Tier = Tier::Data;
}

impl Upstream for LoadBalancerOutputs {
    const TIER: Tier = Tier::LoadBalancer;
}

fn all_known(ids: &[Option<String>]) -> Option<Vec<String>> {
    if ids.is_empty() {
        return None;
    }
    ids.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_round_trip_in_camel_case() {
        let n = NetworkOutputs {
            vpc_id: Some("vpc-1".into()),
            private_subnet_ids: vec![Some("subnet-a".into()), None],
            ..Default::default()
        };
        let m = to_map(&n);
        assert_eq!(m["vpcId"], json!("vpc-1"));
        assert_eq!(m["privateSubnetIds"], json!(["subnet-a", null]));
        let mut inputs = Map::new();
        inputs.insert("network".into(), Value::Object(m));
        let back: NetworkOutputs = read(&inputs, "network").unwrap();
        assert_eq!(back, n);
        // A planned (null) subnet is not a subnet yet.
        assert_eq!(back.private_subnets(), None);
        assert_eq!(back.public_subnets(), None);
    }

    #[test]
    fn an_absent_input_is_empty_and_a_misshapen_one_is_named() {
        let inputs = Map::new();
        let d: DataOutputs = read(&inputs, "data").unwrap();
        assert_eq!(d, DataOutputs::default());
        let mut bad = Map::new();
        bad.insert("data".into(), json!({"port": "5432"}));
        let e = read::<DataOutputs>(&bad, "data").unwrap_err().to_string();
        assert!(e.contains("inputs.data"), "{e}");
    }

    #[test]
    fn an_unrendered_deployment_value_is_none() {
        assert_eq!(
            DeploymentInputs::given(&Some("${RoleBoundaryArn}".into())),
            None
        );
        assert_eq!(DeploymentInputs::given(&Some(String::new())), None);
        assert_eq!(
            DeploymentInputs::given(&Some("arn:x".into())),
            Some("arn:x")
        );
    }
}
