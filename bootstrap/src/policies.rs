//! The least-privilege policies of mbstack's own roles: each function may call
//! exactly the actions its tier calls, on its stack's resources where the service
//! can scope them (names under `mbstack`/`<stack>-…`, or the `mbstack:tier` tag).
//!
//! Where AWS offers no resource-level scoping, `Resource: "*"` stands, and only
//! there (the list the wildcard test checks against):
//! - read-only Describe*/List*/Get* actions of EC2, RDS, ELBv2, ECS, Logs and
//!   Application Auto Scaling (these APIs take no resource ARN);
//! - EC2, ELBv2 and RDS creates, which name no resource before it exists: they are
//!   allowed only with `mbstack:tier` in the request's tags (tag-on-create);
//! - EC2/ELBv2/RDS changes and deletes: allowed only on resources tagged with the
//!   tier (`aws:ResourceTag/mbstack:tier`);
//! - Application Auto Scaling's Register/Deregister/PutScalingPolicy (no ARNs);
//! - ECS Create/Register actions (a new cluster or family has no ARN yet);
//! - the Step Functions role's CloudWatch Logs delivery actions (AWS requires `*`).
//!
//! Not verified against real IAM from this project's machines (no AWS access):
//! a deploy to a real account is the test that remains.

use serde_json::{json, Value};

/// Read-only actions: the only ones allowed on `*` without a condition.
pub fn is_read_only(action: &str) -> bool {
    let op = action.split(':').nth(1).unwrap_or("");
    ["Describe", "List", "Get"]
        .iter()
        .any(|p| op.starts_with(p))
}

fn stmt(sid: &str, actions: &[&str], resource: Value) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource})
}

fn tagged(sid: &str, actions: &[&str], key: &str, tier: &str) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*",
           "Condition": {"StringEquals": {format!("{key}/mbstack:tier"): tier}}})
}

/// CloudWatch Logs of the function itself.
fn own_logs(function: &str) -> Value {
    stmt(
        "OwnLogs",
        &[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ],
        json!([
            format!("arn:aws:logs:*:*:log-group:/aws/lambda/{function}"),
            format!("arn:aws:logs:*:*:log-group:/aws/lambda/{function}:*")
        ]),
    )
}

/// The inline policy of function `tier` (named `function`).
pub fn function_policy(tier: &str, function: &str, prefix: &str) -> Value {
    let mut s = vec![own_logs(function)];
    match tier {
        "control" => {
            s.push(stmt(
                "StackRecords",
                &[
                    "ssm:GetParameter",
                    "ssm:PutParameter",
                    "ssm:DeleteParameter",
                    "ssm:GetParametersByPath",
                ],
                json!(["arn:aws:ssm:*:*:parameter/mbstack/*"]),
            ));
            s.push(stmt(
                "LockHolder",
                &["states:DescribeExecution"],
                json!([format!("arn:aws:states:*:*:execution:{prefix}-provision:*")]),
            ));
        }
        "network" => {
            s.push(stmt(
                "Read",
                &[
                    "ec2:DescribeVpcs",
                    "ec2:DescribeVpcAttribute",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeInternetGateways",
                    "ec2:DescribeNatGateways",
                    "ec2:DescribeAddresses",
                    "ec2:DescribeRouteTables",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSecurityGroupRules",
                    "ec2:DescribeAvailabilityZones",
                ],
                json!("*"),
            ));
            s.push(tagged(
                "CreateTagged",
                &[
                    "ec2:CreateVpc",
                    "ec2:CreateSubnet",
                    "ec2:CreateInternetGateway",
                    "ec2:AllocateAddress",
                    "ec2:CreateNatGateway",
                    "ec2:CreateRouteTable",
                    "ec2:CreateSecurityGroup",
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:CreateTags",
                ],
                "aws:RequestTag",
                "network",
            ));
            s.push(tagged(
                "ChangeTagged",
                &[
                    "ec2:ModifyVpcAttribute",
                    "ec2:ModifySubnetAttribute",
                    "ec2:AttachInternetGateway",
                    "ec2:DetachInternetGateway",
                    "ec2:DeleteInternetGateway",
                    "ec2:ReleaseAddress",
                    "ec2:DeleteNatGateway",
                    "ec2:CreateRoute",
                    "ec2:ReplaceRoute",
                    "ec2:DeleteRoute",
                    "ec2:AssociateRouteTable",
                    "ec2:DisassociateRouteTable",
                    "ec2:ReplaceRouteTableAssociation",
                    "ec2:DeleteRouteTable",
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                    "ec2:DeleteSubnet",
                    "ec2:DeleteVpc",
                    "ec2:CreateSubnet",
                    "ec2:CreateNatGateway",
                    "ec2:CreateRouteTable",
                    "ec2:CreateSecurityGroup",
                ],
                "aws:ResourceTag",
                "network",
            ));
        }
        "data" => {
            s.push(stmt(
                "Read",
                &[
                    "rds:DescribeDBInstances",
                    "rds:DescribeDBSubnetGroups",
                    "rds:ListTagsForResource",
                ],
                json!("*"),
            ));
            s.push(tagged(
                "CreateTagged",
                &[
                    "rds:CreateDBInstance",
                    "rds:CreateDBSubnetGroup",
                    "rds:AddTagsToResource",
                ],
                "aws:RequestTag",
                "data",
            ));
            s.push(tagged(
                "ChangeTagged",
                &[
                    "rds:ModifyDBInstance",
                    "rds:StopDBInstance",
                    "rds:StartDBInstance",
                    "rds:DeleteDBInstance",
                    "rds:ModifyDBSubnetGroup",
                    "rds:DeleteDBSubnetGroup",
                    "rds:CreateDBInstance",
                    "rds:CreateDBSnapshot",
                ],
                "aws:ResourceTag",
                "data",
            ));
            // ManageMasterUserPassword: RDS creates the secret with the caller's rights.
            s.push(stmt(
                "ManagedPassword",
                &[
                    "secretsmanager:CreateSecret",
                    "secretsmanager:TagResource",
                    "secretsmanager:RotateSecret",
                    "secretsmanager:DeleteSecret",
                ],
                json!(["arn:aws:secretsmanager:*:*:secret:rds!*"]),
            ));
            s.push(stmt(
                "SubnetsOfTheGroup",
                &[
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeSecurityGroups",
                ],
                json!("*"),
            ));
        }
        "loadbalancer" => {
            s.push(stmt(
                "Read",
                &[
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeTags",
                ],
                json!("*"),
            ));
            s.push(tagged(
                "CreateTagged",
                &[
                    "elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup",
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:AddTags",
                ],
                "aws:RequestTag",
                "loadbalancer",
            ));
            s.push(tagged(
                "ChangeTagged",
                &[
                    "elasticloadbalancing:ModifyLoadBalancerAttributes",
                    "elasticloadbalancing:SetSecurityGroups",
                    "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:DeleteLoadBalancer",
                    "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:CreateListener",
                ],
                "aws:ResourceTag",
                "loadbalancer",
            ));
        }
        "app" => {
            s.push(stmt(
                "Read",
                &[
                    "ecs:DescribeClusters",
                    "ecs:DescribeServices",
                    "ecs:DescribeTaskDefinition",
                    "ecs:ListTaskDefinitions",
                    "ecs:ListTasks",
                    "ecs:DescribeTasks",
                    "logs:DescribeLogGroups",
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                    "elasticloadbalancing:DescribeTargetHealth",
                ],
                json!("*"),
            ));
            s.push(stmt(
                "EcsCreate",
                &[
                    "ecs:CreateCluster",
                    "ecs:RegisterTaskDefinition",
                    "ecs:CreateService",
                    "ecs:TagResource",
                ],
                json!("*"),
            ));
            s.push(tagged(
                "EcsChangeTagged",
                &[
                    "ecs:UpdateService",
                    "ecs:DeleteService",
                    "ecs:DeleteCluster",
                    "ecs:DeregisterTaskDefinition",
                    "ecs:TagResource",
                    "ecs:UntagResource",
                ],
                "aws:ResourceTag",
                "app",
            ));
            s.push(stmt(
                "Roles",
                &[
                    "iam:GetRole",
                    "iam:CreateRole",
                    "iam:DeleteRole",
                    "iam:TagRole",
                    "iam:PutRolePolicy",
                    "iam:GetRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:ListRolePolicies",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:ListAttachedRolePolicies",
                ],
                json!([
                    "arn:aws:iam::*:role/*-metabase-execution",
                    "arn:aws:iam::*:role/*-metabase-task"
                ]),
            ));
            s.push(json!({"Sid": "PassRolesToTasks", "Effect": "Allow", "Action": "iam:PassRole",
                          "Resource": ["arn:aws:iam::*:role/*-metabase-execution", "arn:aws:iam::*:role/*-metabase-task"],
                          "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}));
            s.push(stmt(
                "Logs",
                &[
                    "logs:CreateLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:DeleteLogGroup",
                    "logs:ListTagsForResource",
                    "logs:TagResource",
                ],
                json!(["arn:aws:logs:*:*:log-group:/mbstack/*"]),
            ));
            s.push(stmt(
                "EncryptionKey",
                &[
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:RestoreSecret",
                    "secretsmanager:TagResource",
                ],
                json!(["arn:aws:secretsmanager:*:*:secret:mbstack/*"]),
            ));
            s.push(stmt(
                "RandomKey",
                &["secretsmanager:GetRandomPassword"],
                json!("*"),
            ));
            s.push(stmt(
                "Autoscaling",
                &[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "iam:CreateServiceLinkedRole",
                ],
                json!("*"),
            ));
        }
        _ => {}
    }
    json!({"Version": "2012-10-17", "Statement": s})
}

/// The state machine's role: invoke exactly our functions, deliver its logs.
pub fn states_policy(function_arns: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        stmt("InvokeOurFunctions", &["lambda:InvokeFunction"], json!(function_arns)),
        stmt("LogDelivery", &["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
              "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"], json!("*")),
    ]})
}

/// The scheduler's role: start executions of our state machine only.
pub fn scheduler_policy(state_machine_arn: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [stmt("StartOurStateMachine", &["states:StartExecution"], json!([state_machine_arn]))]})
}

/// What a wildcard check reports: write actions on `*` without a tag condition,
/// other than the documented exceptions; and any `*` action.
pub fn wildcard_violations(policy: &Value) -> Vec<String> {
    let documented = [
        "ecs:CreateCluster",
        "ecs:RegisterTaskDefinition",
        "ecs:CreateService",
        "ecs:TagResource",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DeregisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "iam:CreateServiceLinkedRole",
        "secretsmanager:GetRandomPassword",
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
