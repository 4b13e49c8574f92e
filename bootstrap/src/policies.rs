//! The least-privilege policies of mbstack's own roles, built from the
//! permissions each resource module declares next to its calls
//! (`mbstack_core::iam`): each function may call exactly the actions its tier
//! calls, on its stack's resources where the service can scope them (names
//! under `mbstack`/`<stack>-…`, or the `mbstack:tier` tag).
//!
//! Where AWS offers no resource-level scoping, `Resource: "*"` stands:
//! - read-only Describe*/List*/Get* actions that take no resource ARN;
//! - creates, which name no resource before it exists: only with `mbstack:tier`
//!   among the request's tags (tag-on-create); tagging actions only in the
//!   creating call (`ec2:CreateAction`, `elasticloadbalancing:CreateAction`,
//!   `ecs:CreateAction`), so no tier can stamp its tag on a resource it does not
//!   own and thereby bring it under its rights;
//! - changes and deletes: only on resources tagged with the tier;
//! - `ecs:DeregisterTaskDefinition`, which supports no resource and no condition
//!   key, and Application Auto Scaling's target actions (random IDs), limited
//!   to the `ecs` namespace;
//! - the Step Functions role's CloudWatch Logs delivery actions (AWS requires `*`).
//!
//! Every ARN is in the partition of the region deployed to (`aws`, `aws-cn`,
//! `aws-us-gov`). The roles the app tier creates for Metabase's tasks carry a
//! permissions boundary ([`role_boundary_policy`]) that the app's own policy
//! requires on every create and change, and the only managed policy it may
//! attach is AmazonECSTaskExecutionRolePolicy.

use mbstack_core::iam::{Condition, Permission, Resources};
use mbstack_core::Tier;
use serde_json::{json, Map, Value};

pub use mbstack_core::iam::is_read_only;

/// What the policies are built for.
#[derive(Debug, Clone)]
pub struct Context {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    /// The deployment's name prefix (`mbstack`).
    pub prefix: String,
    /// The account deployed to (trust policies' `aws:SourceAccount`).
    pub account: String,
    /// The topic failed runs are published to (`mbstack deploy --notify`);
    /// None: the control function gets no `sns:Publish` at all.
    pub notify_topic_arn: Option<String>,
    /// The topic's KMS key (`KmsMasterKeyId`), when it is encrypted with one
    /// the control function must be allowed to use ([`notify_key_statement`]).
    pub notify_kms_key: Option<String>,
    /// The hosted zones the load balancer tier may write records in
    /// (`mbstack deploy --hosted-zones`); None: any.
    pub hosted_zones: Option<Vec<String>>,
}

impl Context {
    /// The role EventBridge starts the state machine with (the app tier's
    /// password-rotation rule).
    pub fn events_role_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:role/{}-events",
            self.partition, self.account, self.prefix
        )
    }

    /// The managed policy that bounds every role the app tier creates.
    pub fn role_boundary_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:policy/mbstack/{}-task-role-boundary",
            self.partition, self.account, self.prefix
        )
    }

    fn fill(&self, text: &str, tier: &str) -> String {
        text.replace(
            mbstack_core::contract::NOTIFY_TOPIC_PLACEHOLDER,
            self.notify_topic_arn.as_deref().unwrap_or(""),
        )
        .replace("${Partition}", &self.partition)
        .replace("${Prefix}", &self.prefix)
        .replace("${Tier}", tier)
        .replace("${RoleBoundaryArn}", &self.role_boundary_arn())
    }
}

/// The permissions of function `tier`, as its resource modules declare them.
pub fn tier_permissions(tier: Tier) -> Vec<Permission> {
    match tier {
        Tier::Control => mbstack_control::permissions(),
        Tier::Network => mbstack_network::permissions(),
        Tier::Data => mbstack_data::permissions(),
        Tier::LoadBalancer => mbstack_loadbalancer::permissions(),
        Tier::App => mbstack_app::permissions(),
    }
}

fn condition(p: &Permission, tier: &str, ctx: &Context) -> Option<Value> {
    match p.condition {
        Condition::None => None,
        Condition::RequestTier => {
            Some(json!({"StringEquals": {"aws:RequestTag/mbstack:tier": tier}}))
        }
        Condition::ResourceTier => {
            Some(json!({"StringEquals": {"aws:ResourceTag/mbstack:tier": tier}}))
        }
        Condition::Json(text) => serde_json::from_str(&ctx.fill(text, tier)).ok(),
    }
}

fn resources(p: &Permission, tier: &str, ctx: &Context) -> Value {
    use mbstack_core::contract::HOSTED_ZONE_PLACEHOLDER as ZONE;
    match p.resources {
        Resources::Any => json!("*"),
        Resources::Arns(arns) => json!(arns
            .iter()
            .flat_map(|a| match (a.contains(ZONE), &ctx.hosted_zones) {
                (false, _) => vec![ctx.fill(a, tier)],
                (true, None) => vec![ctx.fill(&a.replace(ZONE, "*"), tier)],
                (true, Some(zones)) => zones
                    .iter()
                    .map(|z| ctx.fill(&a.replace(ZONE, z), tier))
                    .collect(),
            })
            .collect::<Vec<_>>()),
    }
}

/// Statements from permissions: those with the same resources and condition
/// are merged (an inline policy holds 10,240 characters), each action once.
pub fn statements(perms: &[Permission], tier: &str, ctx: &Context) -> Vec<Value> {
    let mut out: Vec<(String, Value, Option<Value>, Vec<String>)> = Vec::new();
    let names = |p: &Permission, placeholder: &str| matches!(p.resources, Resources::Arns(arns) if arns.iter().any(|a| a.contains(placeholder)));
    let unused = |p: &&Permission| {
        (ctx.notify_topic_arn.is_none()
            && names(p, mbstack_core::contract::NOTIFY_TOPIC_PLACEHOLDER))
            || (ctx.hosted_zones.as_ref().is_some_and(Vec::is_empty)
                && names(p, mbstack_core::contract::HOSTED_ZONE_PLACEHOLDER))
    };
    for p in perms.iter().filter(|p| !unused(p)) {
        let r = resources(p, tier, ctx);
        let c = condition(p, tier, ctx);
        match out.iter_mut().find(|(_, r2, c2, _)| *r2 == r && *c2 == c) {
            Some((_, _, _, actions)) => {
                for a in p.actions {
                    if !actions.iter().any(|x| x == a) {
                        actions.push(a.to_string());
                    }
                }
            }
            None => {
                let mut sid = p.sid.to_string();
                let mut n = 2;
                while out.iter().any(|(s, ..)| *s == sid) {
                    sid = format!("{}{n}", p.sid);
                    n += 1;
                }
                out.push((sid, r, c, p.actions.iter().map(|a| a.to_string()).collect()));
            }
        }
    }
    out.into_iter()
        .map(|(sid, r, c, mut actions)| {
            actions.sort();
            let mut st = Map::new();
            st.insert("Sid".into(), json!(sid));
            st.insert("Effect".into(), json!("Allow"));
            st.insert("Action".into(), json!(actions));
            st.insert("Resource".into(), r);
            if let Some(c) = c {
                st.insert("Condition".into(), c);
            }
            Value::Object(st)
        })
        .collect()
}

/// CloudWatch Logs of the function itself.
fn own_logs(function: &str, ctx: &Context) -> Value {
    let p = &ctx.partition;
    json!({"Sid": "OwnLogs", "Effect": "Allow",
           "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
           "Resource": [format!("arn:{p}:logs:*:*:log-group:/aws/lambda/{function}"),
                        format!("arn:{p}:logs:*:*:log-group:/aws/lambda/{function}:*")]})
}

/// The inline policy of function `tier` (named `function`).
pub fn function_policy(tier: Tier, function: &str, ctx: &Context) -> Value {
    let mut s = vec![own_logs(function, ctx)];
    s.extend(statements(&tier_permissions(tier), tier.as_str(), ctx));
    if tier == Tier::Control {
        s.extend(notify_key_statement(ctx));
    }
    json!({"Version": "2012-10-17", "Statement": s})
}

/// Publishing to a topic encrypted with a customer-managed KMS key needs
/// `kms:GenerateDataKey*` and `kms:Decrypt` on that key (SNS developer guide,
/// "Encryption at rest"): without them every notification is lost. The
/// AWS-managed key `alias/aws/sns` needs nothing (its key policy lets SNS use
/// it for the account). A key named by alias is granted through
/// `kms:ResourceAliases`, by ID or ARN as its ARN.
pub fn notify_key_statement(ctx: &Context) -> Option<Value> {
    let key = ctx.notify_kms_key.as_deref()?;
    let topic = ctx.notify_topic_arn.as_deref()?;
    let mut parts = topic.split(':');
    let (region, account) = (parts.nth(3)?, parts.next()?);
    let p = &ctx.partition;
    let alias = key
        .strip_prefix("arn:")
        .and_then(|a| a.split_once(":alias/").map(|(_, n)| format!("alias/{n}")))
        .or_else(|| key.starts_with("alias/").then(|| key.to_string()));
    let actions = json!(["kms:GenerateDataKey*", "kms:Decrypt"]);
    match alias {
        Some(a) if a == "alias/aws/sns" => None,
        Some(a) => Some(
            json!({"Sid": "NotifyTopicKey", "Effect": "Allow", "Action": actions,
            "Resource": format!("arn:{p}:kms:{region}:{account}:key/*"),
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": a}}}),
        ),
        None if key.starts_with("arn:") => Some(json!({"Sid": "NotifyTopicKey", "Effect": "Allow",
            "Action": actions, "Resource": key})),
        None => Some(
            json!({"Sid": "NotifyTopicKey", "Effect": "Allow", "Action": actions,
            "Resource": format!("arn:{p}:kms:{region}:{account}:key/{key}")}),
        ),
    }
}

/// The permissions boundary of the roles the app tier creates for Metabase's
/// tasks: pull images, write their logs, read the stack's two secrets. Whatever
/// policy such a role is given, it can do no more than this.
pub fn role_boundary_policy(ctx: &Context) -> Value {
    let p = &ctx.partition;
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "PullImages", "Effect": "Allow",
         "Action": ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
         "Resource": "*"},
        {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [format!("arn:{p}:logs:*:*:log-group:/mbstack/*")]},
        {"Sid": "ReadStackSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": [format!("arn:{p}:secretsmanager:*:*:secret:mbstack/*"), format!("arn:{p}:secretsmanager:*:*:secret:rds!*")]}
    ]})
}

/// A trust policy for `service`. For services that act on a caller's behalf
/// (Step Functions, the scheduler), only from this account: no confused deputy.
pub fn trust_policy(service: &str, ctx: &Context) -> Value {
    let mut st =
        json!({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"});
    if service != "lambda.amazonaws.com" {
        st["Condition"] = json!({"StringEquals": {"aws:SourceAccount": ctx.account}});
    }
    json!({"Version": "2012-10-17", "Statement": [st]})
}

/// The state machine's role: invoke exactly our functions, deliver its logs.
pub fn states_policy(function_arns: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeOurFunctions", "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": function_arns},
        {"Sid": "LogDelivery", "Effect": "Allow", "Action": ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
              "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"], "Resource": "*"},
    ]})
}

/// The scheduler's role, and EventBridge's: start executions of our state
/// machine only.
pub fn scheduler_policy(state_machine_arn: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "StartOurStateMachine", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": [state_machine_arn]}
    ]})
}

/// What the person (or pipeline) running `mbstack deploy`, `undeploy` and
/// `schedule` needs: printed by `mbstack deploy --print-deployer-policy`.
pub fn deployer_policy(ctx: &Context) -> Value {
    let p = &ctx.partition;
    let pre = &ctx.prefix;
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Roles", "Effect": "Allow",
         "Action": ["iam:GetRole", "iam:CreateRole", "iam:DeleteRole", "iam:TagRole", "iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:UpdateAssumeRolePolicy"],
         "Resource": [format!("arn:{p}:iam::*:role/{pre}-*")]},
        {"Sid": "PassRoles", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [format!("arn:{p}:iam::*:role/{pre}-*")],
         "Condition": {"StringEquals": {"iam:PassedToService": ["lambda.amazonaws.com", "states.amazonaws.com", "scheduler.amazonaws.com", "events.amazonaws.com"]}}},
        {"Sid": "RoleBoundary", "Effect": "Allow",
         "Action": ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:ListPolicyVersions", "iam:DeletePolicyVersion", "iam:DeletePolicy"],
         "Resource": [format!("arn:{p}:iam::*:policy/mbstack/{pre}-*")]},
        {"Sid": "Functions", "Effect": "Allow",
         "Action": ["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration", "lambda:DeleteFunction", "lambda:TagResource"],
         "Resource": [format!("arn:{p}:lambda:*:*:function:{pre}-*")]},
        {"Sid": "StateMachine", "Effect": "Allow",
         "Action": ["states:CreateStateMachine", "states:UpdateStateMachine", "states:DescribeStateMachine", "states:DeleteStateMachine", "states:TagResource"],
         "Resource": [format!("arn:{p}:states:*:*:stateMachine:{pre}-provision")]},
        {"Sid": "Runs", "Effect": "Allow",
         "Action": ["states:StartExecution", "states:DescribeExecution", "states:GetExecutionHistory", "states:ListExecutions", "states:StopExecution"],
         "Resource": [format!("arn:{p}:states:*:*:stateMachine:{pre}-provision"), format!("arn:{p}:states:*:*:execution:{pre}-provision:*")]},
        {"Sid": "ListStateMachines", "Effect": "Allow", "Action": ["states:ListStateMachines", "iam:ListPolicies", "logs:DescribeLogGroups", "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:ListLogDeliveries", "sns:ListTopics", "sns:GetTopicAttributes"], "Resource": "*"},
        {"Sid": "RecoveryRule", "Effect": "Allow",
         "Action": ["events:DescribeRule", "events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets", "events:ListTargetsByRule", "events:TagResource"],
         "Resource": [format!("arn:{p}:events:*:*:rule/{pre}-run-ended")]},
        {"Sid": "Notifications", "Effect": "Allow",
         "Action": ["sns:CreateTopic", "sns:TagResource", "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic", "sns:Subscribe", "sns:DeleteTopic"],
         "Resource": [format!("arn:{p}:sns:*:*:{pre}-notifications")]},
        {"Sid": "ExecutionLogs", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteLogGroup"],
         "Resource": [format!("arn:{p}:logs:*:*:log-group:/aws/vendedlogs/states/{pre}-provision*")]},
        {"Sid": "Schedules", "Effect": "Allow",
         "Action": ["scheduler:CreateScheduleGroup", "scheduler:DeleteScheduleGroup", "scheduler:GetSchedule", "scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule", "scheduler:ListSchedules"],
         "Resource": [format!("arn:{p}:scheduler:*:*:schedule-group/{pre}"), format!("arn:{p}:scheduler:*:*:schedule/{pre}/*")]},
        {"Sid": "StackRecords", "Effect": "Allow", "Action": ["ssm:GetParametersByPath", "ssm:GetParameter"],
         "Resource": [format!("arn:{p}:ssm:*:*:parameter/mbstack/*")]}
    ]})
}

/// What a wildcard check reports: write actions on `*` without a condition,
/// other than the documented exceptions; and any `*` action.
pub fn wildcard_violations(policy: &Value) -> Vec<String> {
    let documented = [
        "ecs:DeregisterTaskDefinition",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
    ];
    let mut out = Vec::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        let actions: Vec<String> = match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let star_resource = st["Resource"] == json!("*")
            || st["Resource"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "*"));
        let conditioned = st.get("Condition").is_some();
        for a in &actions {
            if a == "*" || a.ends_with(":*") {
                out.push(format!("{}: action {a}", st["Sid"]));
            } else if star_resource
                && !conditioned
                && !is_read_only(a)
                && !documented.contains(&a.as_str())
            {
                out.push(format!("{}: {a} on *", st["Sid"]));
            }
        }
    }
    out
}
