//! The audit: clean after a successful run; each rule loosened out of band is caught.

use mbstack_cli::audit::audit;
use mbstack_core::Aws;
use mbstack_local::Deployed;
use serde_json::json;

async fn rules(aws: &Aws) -> Vec<&'static str> {
    let mut r: Vec<&'static str> = audit(aws, "aud", Some("mbstack-provision"))
        .await
        .expect("audit")
        .iter()
        .map(|f| f.rule)
        .collect();
    r.sort();
    r.dedup();
    r
}

#[tokio::test]
async fn a_provisioned_stack_audits_clean_and_every_loosened_rule_is_caught() {
    let d = Deployed::start().await.expect("deployed");
    let run = d
        .run("apply-1", json!({"stack": "aud"}))
        .await
        .expect("ran");
    assert_eq!(run.status, "SUCCEEDED", "{:?}", run.cause);
    let out = run.output.unwrap();
    let aws = Aws::new(d.config.clone());
    assert_eq!(
        audit(&aws, "aud", Some("mbstack-provision")).await.unwrap(),
        vec![],
        "a fresh stack is clean"
    );
    let net = &out["outputs"]["network"];
    let s = |k: &str| net[k].as_str().unwrap().to_string();

    let ec2 = aws_sdk_ec2::Client::new(&d.config);
    ec2.authorize_security_group_ingress()
        .group_id(s("appSecurityGroupId"))
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    assert_eq!(rules(&aws).await, vec!["ingress"]);

    let private_rt = ec2
        .describe_route_tables()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Name")
                .values("aud-private")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .route_tables()[0]
        .route_table_id()
        .unwrap()
        .to_string();
    ec2.replace_route()
        .route_table_id(&private_rt)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(s("internetGatewayId"))
        .send()
        .await
        .unwrap();
    assert_eq!(rules(&aws).await, vec!["ingress", "private-subnets"]);

    let rds = aws_sdk_rds::Client::new(&d.config);
    rds.modify_db_instance()
        .db_instance_identifier("mbstack-aud")
        .publicly_accessible(true)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        rules(&aws).await,
        vec!["database", "ingress", "private-subnets"]
    );

    let ecs = aws_sdk_ecs::Client::new(&d.config);
    let vpc = aws_sdk_ecs::types::AwsVpcConfiguration::builder()
        .subnets(net["privateSubnetIds"][0].as_str().unwrap())
        .assign_public_ip(aws_sdk_ecs::types::AssignPublicIp::Enabled)
        .build()
        .unwrap();
    ecs.update_service()
        .cluster("aud-cluster")
        .service("metabase")
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        rules(&aws).await,
        vec!["database", "ingress", "private-subnets", "public-ip"]
    );

    let iam = aws_sdk_iam::Client::new(&d.config);
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Wide", "Effect": "Allow", "Action": "*", "Resource": "*"}]});
    iam.put_role_policy()
        .role_name("aud-metabase-execution")
        .policy_name("extra")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        rules(&aws).await,
        vec!["database", "iam", "ingress", "private-subnets", "public-ip"]
    );

    let sfn = aws_sdk_sfn::Client::new(&d.config);
    let logging = aws_sdk_sfn::types::LoggingConfiguration::builder()
        .level(aws_sdk_sfn::types::LogLevel::All)
        .include_execution_data(true)
        .build();
    sfn.update_state_machine()
        .state_machine_arn(&d.arn)
        .logging_configuration(logging)
        .send()
        .await
        .unwrap();
    assert_eq!(
        rules(&aws).await,
        vec![
            "database",
            "iam",
            "ingress",
            "private-subnets",
            "public-ip",
            "state-machine-logs"
        ]
    );
}
