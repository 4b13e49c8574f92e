//! Test support: a fresh emulator per test, the configuration tiers get (with a
//! call log), and a raw client for assertions and out-of-band changes.

use aws_sdk_ec2::types::Filter;
use mbstack_core::naming::STACK_TAG;
use mbstack_core::{Aws, CallLog, StackSpec};
use mbstack_emulator::Moto;

pub struct TestEnv {
    pub moto: Moto,
    pub config: aws_types::SdkConfig,
    /// Every call the tiers made through [`TestEnv::aws`].
    pub log: CallLog,
}

impl TestEnv {
    /// A fresh emulator: nothing shared with any other test.
    pub async fn start() -> Self {
        let moto = match Moto::start() {
            Ok(m) => m,
            Err(e) => panic!("the emulator did not start: {e}"),
        };
        let config = moto.sdk_config().await;
        Self {
            moto,
            config,
            log: CallLog::new(),
        }
    }

    /// What a tier handler gets: the emulator's configuration with the call log.
    pub fn aws(&self) -> Aws {
        Aws::new(self.config.clone()).with_interceptor(self.log.clone())
    }

    /// A client outside the log: for assertions and out-of-band changes.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config)
    }
}

pub fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(stack)
        .build()
}

/// Every EC2 resource carrying `mbstack:stack=<stack>` (NAT gateways in any
/// state but `deleted`), as (kind, id).
pub async fn ec2_resources(ec2: &aws_sdk_ec2::Client, stack: &str) -> Vec<(String, String)> {
    let f = || stack_filter(stack);
    let mut out = Vec::new();
    let r = ec2.describe_vpcs().filters(f()).send().await.unwrap();
    out.extend(
        r.vpcs()
            .iter()
            .map(|x| ("vpc".into(), x.vpc_id().unwrap().to_string())),
    );
    let r = ec2.describe_subnets().filters(f()).send().await.unwrap();
    out.extend(
        r.subnets()
            .iter()
            .map(|x| ("subnet".into(), x.subnet_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.internet_gateways()
            .iter()
            .map(|x| ("igw".into(), x.internet_gateway_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_nat_gateways()
        .filter(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.nat_gateways()
            .iter()
            // moto ignores tag filters on NAT gateways: check the tag here.
            .filter(|n| {
                n.tags()
                    .iter()
                    .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack))
            })
            .filter(|n| n.state().map(|s| s.as_str()) != Some("deleted"))
            .map(|x| ("nat".into(), x.nat_gateway_id().unwrap().to_string())),
    );
    let r = ec2.describe_addresses().filters(f()).send().await.unwrap();
    out.extend(
        r.addresses()
            .iter()
            .map(|x| ("eip".into(), x.allocation_id().unwrap().to_string())),
    );
    let r = ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(r.route_tables().iter().map(|x| {
        (
            "route-table".into(),
            x.route_table_id().unwrap().to_string(),
        )
    }));
    let r = ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap();
    out.extend(
        r.security_groups()
            .iter()
            .map(|x| ("security-group".into(), x.group_id().unwrap().to_string())),
    );
    out
}

pub fn spec(stack: &str) -> StackSpec {
    StackSpec::new(stack)
}
