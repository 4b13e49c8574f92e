//! `nat: instance`: one NAT instance in the first AZ's public subnet, for about
//! a tenth of a NAT gateway's price.
//!
//! Two kinds, in the order they are made:
//! - its network interface (`nat-eni-<az>`), made apart from the instance and
//!   kept when the instance goes (fck-nat's way): the private route, the
//!   stack's Elastic IP and the source/destination check (off) belong to it,
//!   so a replacement instance attached to it takes over all three at once;
//! - the instance (`nat-instance-<az>`): Amazon Linux 2023 for arm64 from AWS's
//!   public SSM parameter, IMDSv2 required, an encrypted gp3 root, no key pair
//!   and no role; its user data turns on forwarding and masquerades the private
//!   subnets' traffic behind the interface (nftables), at every boot.
//!
//! Healing: EC2's simplified automatic recovery (on for the types that
//! support it, t4g among them; not for types with instance store) moves a
//! failed host's instance to a new one with the same ID and interface. A stopped instance is started, and a terminated one is
//! replaced on the same interface, by the next apply (the nightly repair).
//!
//! Real AWS: an instance is `pending` for about 10–30 s before `running`, and
//! its boot and user data take as long again; a terminated instance is
//! `shutting-down` for about a minute, holding its interface until it is gone.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, Instance, InstanceAutoRecoveryState,
    InstanceMaintenanceOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, NetworkInterface, ResourceType, VolumeType,
};
use base64::Engine;
use mbstack_core::iam::{Condition, Permission, Resources};
use mbstack_core::naming::{CREATED_BY_TAG, NAME_TAG};
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, error_code, Readiness, TierError, Verb, Work};

use crate::tags::{filter, pairs, stack_filter, tag, tag_filter, tag_spec};

/// AWS's public parameter naming the newest Amazon Linux 2023 AMI for arm64.
pub(crate) const AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";

/// The root volume's key: the AWS managed key of EBS. Without one, EC2 uses
/// the account's default EBS key, which an organisation may have set to a
/// customer managed key the tier may not use: the instance would be
/// terminated at launch (`Client.InternalError`).
const ROOT_KEY: &str = "alias/aws/ebs";

/// AL2023's root device and its snapshot's size, should the image not say.
const ROOT_DEVICE: &str = "/dev/xvda";
const ROOT_GIB: i32 = 8;

fn eni_role(az: &str) -> String {
    format!("nat-eni-{az}")
}

pub(crate) fn instance_role(az: &str) -> String {
    format!("nat-instance-{az}")
}

/// The user data: a boot script (cloud-init's per-boot folder, so a stop and
/// start, a pause and resume, sets it up again) that turns on forwarding and
/// masquerades what the private subnets send out of the primary interface.
/// It uses nftables, installing it from AL2023's repositories if the image
/// lacks it (over the internet: until the interface has its address, which a
/// switch from a NAT gateway frees only once the gateway is deleted, the
/// install is retried).
const USER_DATA: &str = r#"#!/bin/bash
# mbstack NAT instance: forward and masquerade the private subnets' traffic.
mkdir -p /var/lib/cloud/scripts/per-boot
cat > /var/lib/cloud/scripts/per-boot/mbstack-nat.sh <<'SCRIPT'
#!/bin/bash
set -u
OUT=$(ip -o route show default | awk '{print $5; exit}')
sysctl -q -w net.ipv4.ip_forward=1
sysctl -q -w net.ipv4.conf.all.send_redirects=0
sysctl -q -w "net.ipv4.conf.$OUT.send_redirects=0"
if ! command -v nft >/dev/null 2>&1; then
  # 512 MiB (t4g.nano): room for dnf, and no SSM agent (no role to use it).
  systemctl stop amazon-ssm-agent 2>/dev/null || true
  if [ ! -f /swapfile ]; then
    dd if=/dev/zero of=/swapfile bs=1M count=512 status=none && chmod 600 /swapfile && mkswap /swapfile >/dev/null
  fi
  swapon /swapfile 2>/dev/null || true
  until dnf install -y --setopt=install_weak_deps=False nftables; do sleep 5; done
fi
nft delete table ip mbstack_nat 2>/dev/null || true
nft add table ip mbstack_nat
nft 'add chain ip mbstack_nat postrouting { type nat hook postrouting priority 100 ; }'
nft add rule ip mbstack_nat postrouting oifname "$OUT" masquerade
SCRIPT
chmod 755 /var/lib/cloud/scripts/per-boot/mbstack-nat.sh
/var/lib/cloud/scripts/per-boot/mbstack-nat.sh
"#;

/// The NAT instance's network interface the spec asks for.
#[derive(Debug, Clone)]
pub(crate) struct EniWant {
    pub az: String,
    pub subnet_id: Option<String>,
    pub group_id: Option<String>,
    pub allocation_id: Option<String>,
    /// The NAT gateway that still maps the address (the interface takes it
    /// once that gateway is deleted and AWS frees it).
    pub held_by: Option<String>,
}

/// The stack's NAT instance interfaces.
pub(crate) struct Interfaces {
    pub ec2: aws_sdk_ec2::Client,
}

/// One change of the interface.
pub(crate) enum EniStep {
    /// Source/destination check back off: on, it drops what it forwards.
    CheckOff,
    /// The stack's Elastic IP onto it (None: planned).
    Associate(Option<String>),
}

impl std::fmt::Display for EniStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EniStep::CheckOff => f.write_str("source/destination check off (it was on)"),
            EniStep::Associate(Some(a)) => write!(f, "associate Elastic IP {a}"),
            EniStep::Associate(None) => f.write_str("associate the new Elastic IP"),
        }
    }
}

/// The allocation ID of the Elastic IP on `eni`, if one is.
fn allocation_of(eni: &NetworkInterface) -> Option<&str> {
    eni.association().and_then(|a| a.allocation_id())
}

impl Interfaces {
    async fn check_off(&self, id: &str) -> Result<(), TierError> {
        self.ec2
            .modify_network_interface_attribute()
            .network_interface_id(id)
            .source_dest_check(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(false)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error("ec2:ModifyNetworkInterfaceAttribute", e))?;
        Ok(())
    }

    /// The address onto the interface; never taken from another resource
    /// (AllowReassociation false: AWS refuses instead).
    async fn associate(&self, id: &str, want: &EniWant) -> Result<(), TierError> {
        let Some(allocation) = &want.allocation_id else {
            return Ok(());
        };
        match self
            .ec2
            .associate_address()
            .allocation_id(allocation)
            .network_interface_id(id)
            .allow_reassociation(false)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A NAT gateway deleted moments ago still holds it (AWS frees the
            // address a little after `deleted`; AuthFailure for some).
            Err(e) if matches!(error_code(&e), Some("InvalidIPAddress.InUse" | "AuthFailure")) => {
                Err(TierError::Waiting(format!(
                    "the Elastic IP {allocation} is not free yet for the NAT instance's interface {id} ({}): a NAT gateway deleted moments ago may still hold it",
                    error_code(&e).unwrap_or("")
                )))
            }
            Err(e) if error_code(&e) == Some("Resource.AlreadyAssociated") => {
                Err(TierError::Terminal(format!(
                    "{}: the stack's Elastic IP {allocation} is associated with another resource; mbstack does not take it from there: disassociate it, then run again",
                    aws_error("ec2:AssociateAddress", e)
                )))
            }
            Err(e) => Err(aws_error("ec2:AssociateAddress", e)),
        }
    }
}

impl Resource for Interfaces {
    const KIND: &'static str = "network-interface";
    const LABEL: &'static str = "NAT instance network interface";
    type Live = NetworkInterface;
    type Want = EniWant;
    type Step = EniStep;

    fn name(&self, w: &Work<'_>, want: &EniWant) -> String {
        w.name(&eni_role(&want.az))
    }
    fn live_name(&self, live: &NetworkInterface) -> Option<String> {
        tag(live.tag_set(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &NetworkInterface) -> String {
        live.network_interface_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &NetworkInterface) -> Vec<(String, String)> {
        pairs(live.tag_set())
    }

    async fn list(&self, w: &Work<'_>) -> Result<Vec<NetworkInterface>, TierError> {
        let out = self
            .ec2
            .describe_network_interfaces()
            .filters(stack_filter(w))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeNetworkInterfaces", e))?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter(|n| w.is_ours(&pairs(n.tag_set())))
            .cloned()
            .collect())
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        eni: &NetworkInterface,
        want: &EniWant,
    ) -> Result<Vec<EniStep>, TierError> {
        let mut steps = Vec::new();
        if eni.source_dest_check() != Some(false) {
            steps.push(EniStep::CheckOff);
        }
        // An address a NAT gateway still holds is taken later (see `shape`).
        if allocation_of(eni) != want.allocation_id.as_deref() && want.held_by.is_none() {
            steps.push(EniStep::Associate(want.allocation_id.clone()));
        }
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, want: &EniWant) -> String {
        let held = want
            .held_by
            .as_deref()
            .map(|n| format!(", its Elastic IP once NAT gateway {n} frees it"))
            .unwrap_or_default();
        format!(
            "in the public subnet of {}, source/destination check off{held}",
            want.az
        )
    }
    fn summary(&self, _w: &Work<'_>, eni: &NetworkInterface) -> String {
        format!(
            "{} with {}",
            eni.subnet_id().unwrap_or("?"),
            eni.association()
                .and_then(|a| a.public_ip())
                .unwrap_or("no public IP")
        )
    }

    async fn create(&self, w: &Work<'_>, want: &EniWant) -> Result<NetworkInterface, TierError> {
        let (Some(subnet), Some(group)) = (&want.subnet_id, &want.group_id) else {
            return Err(TierError::Terminal(format!(
                "the NAT instance's interface in {} needs its public subnet and security group, which do not exist",
                want.az
            )));
        };
        let role = eni_role(&want.az);
        let out = self
            .ec2
            .create_network_interface()
            .subnet_id(subnet)
            .groups(group)
            .description(format!("mbstack {}: NAT instance", w.spec.stack))
            .client_token(crate::nat::client_token(&w.spec.stack, &w.run.id, &role))
            .tag_specifications(tag_spec(w, ResourceType::NetworkInterface, &role))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateNetworkInterface", e))?;
        let eni = out
            .network_interface()
            .filter(|n| n.network_interface_id().is_some())
            .cloned()
            .ok_or_else(|| {
                TierError::Terminal("ec2:CreateNetworkInterface returned no id".into())
            })?;
        let id = self.id(&eni);
        self.check_off(&id).await?;
        if want.held_by.is_none() {
            self.associate(&id, want).await?;
        }
        Ok(eni)
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        eni: &NetworkInterface,
        want: &EniWant,
        steps: &[EniStep],
    ) -> Result<Option<NetworkInterface>, TierError> {
        let id = self.id(eni);
        for step in steps {
            match step {
                EniStep::CheckOff => self.check_off(&id).await?,
                EniStep::Associate(_) => self.associate(&id, want).await?,
            }
        }
        Ok(None)
    }

    fn readiness(&self, _w: &Work<'_>, eni: &NetworkInterface) -> Readiness {
        let id = self.id(eni);
        if eni.source_dest_check() != Some(false) {
            return Readiness::Pending(format!(
                "NAT instance interface {id}: its source/destination check is on"
            ));
        }
        match allocation_of(eni) {
            Some(_) => Readiness::Ready,
            None => Readiness::Pending(format!(
                "NAT instance interface {id}: its Elastic IP is not associated yet"
            )),
        }
    }

    /// Once no instance holds it: its address off, then the interface.
    async fn delete(&self, _w: &Work<'_>, eni: &NetworkInterface) -> Result<Deleted, TierError> {
        let id = self.id(eni);
        if let Some(instance) = eni.attachment().and_then(|a| a.instance_id()) {
            return Ok(Deleted::Waiting(format!(
                "NAT instance interface {id} to be freed by {instance}"
            )));
        }
        if let Some(association) = eni.association().and_then(|a| a.association_id()) {
            match self
                .ec2
                .disassociate_address()
                .association_id(association)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if error_code(&e) == Some("InvalidAssociationID.NotFound") => {}
                Err(e) => return Err(aws_error("ec2:DisassociateAddress", e)),
            }
        }
        match self
            .ec2
            .delete_network_interface()
            .network_interface_id(&id)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Now),
            Err(e) if error_code(&e) == Some("InvalidNetworkInterfaceID.NotFound") => {
                Ok(Deleted::Now)
            }
            // Its terminated instance lets go of it moments after it is gone.
            Err(e) if error_code(&e) == Some("InvalidNetworkInterface.InUse") => Ok(
                Deleted::Waiting(format!("NAT instance interface {id} to be detached")),
            ),
            Err(e) => Err(aws_error("ec2:DeleteNetworkInterface", e)),
        }
    }
}

/// The NAT instance the spec asks for.
#[derive(Debug, Clone)]
pub(crate) struct InstanceWant {
    pub az: String,
    /// Its interface (None: planned).
    pub eni_id: Option<String>,
    /// The instance that still holds the interface while it shuts down.
    pub eni_held_by: Option<String>,
    pub instance_type: String,
    /// Running, or stopped (paused).
    pub running: bool,
}

/// The stack's NAT instances.
pub(crate) struct Instances {
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
}

/// One change of the instance.
pub(crate) enum InstanceStep {
    /// Start it (its state now: stopped or stopping).
    Start(String),
    Stop,
    /// Another type: stopped, changed, started again (same instance,
    /// interface and address).
    Retype {
        from: String,
        to: String,
    },
}

impl std::fmt::Display for InstanceStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceStep::Start(now) => write!(f, "start it (it is {now})"),
            InstanceStep::Stop => f.write_str("stop it (paused)"),
            InstanceStep::Retype { from, to } => {
                write!(f, "type {from} → {to} (stopped, changed, started)")
            }
        }
    }
}

fn state(i: &Instance) -> Option<&InstanceStateName> {
    i.state().and_then(|s| s.name())
}

fn type_of(i: &Instance) -> &str {
    i.instance_type().map(|t| t.as_str()).unwrap_or("?")
}

impl Instances {
    /// The AMI: the newest AL2023 for arm64, as AWS's public parameter names it.
    async fn image(&self) -> Result<String, TierError> {
        let out = self
            .ssm
            .get_parameter()
            .name(AMI_PARAMETER)
            .send()
            .await
            .map_err(|e| aws_error("ssm:GetParameter", e))?;
        out.parameter()
            .and_then(|p| p.value())
            .filter(|v| v.starts_with("ami-"))
            .map(str::to_string)
            .ok_or_else(|| {
                TierError::Terminal(format!(
                    "ssm:GetParameter {AMI_PARAMETER} returned no AMI ID: is Amazon Linux 2023 offered in this region?"
                ))
            })
    }

    /// Refuses, naming the field, a type the AZ does not offer (or that does
    /// not exist): checked before the instance is stopped for it.
    async fn offered(&self, instance_type: &str, az: &str) -> Result<(), TierError> {
        let out = self
            .ec2
            .describe_instance_type_offerings()
            .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
            .filters(filter("location", &[az]))
            .filters(filter("instance-type", &[instance_type]))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeInstanceTypeOfferings", e))?;
        if out.instance_type_offerings().is_empty() {
            return Err(TierError::Terminal(format!(
                "network.natInstanceType: {instance_type} is not offered in {az}, where the NAT instance runs: choose another Graviton type (t4g.micro, t4g.small, c7g.medium…); the instance keeps its type and runs on"
            )));
        }
        Ok(())
    }

    /// The image's root device and its snapshot's size: the root volume is
    /// given as the image has it (a smaller size is refused, and a mapping
    /// needs one), only encrypted under [`ROOT_KEY`].
    async fn root_of(&self, image: &str) -> Result<(String, i32), TierError> {
        let out = self
            .ec2
            .describe_images()
            .image_ids(image)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeImages", e))?;
        let Some(i) = out.images().first() else {
            return Ok((ROOT_DEVICE.to_string(), ROOT_GIB));
        };
        let device = i.root_device_name().unwrap_or(ROOT_DEVICE).to_string();
        let size = i
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(device.as_str()))
            .and_then(|m| m.ebs())
            .and_then(|e| e.volume_size())
            .unwrap_or(ROOT_GIB)
            .max(ROOT_GIB);
        Ok((device, size))
    }

    /// Why AWS terminated this run's launch, as the instance's state reason
    /// says (a key it cannot use: `Client.InvalidKMSKey.InvalidState`).
    async fn launch_reason(&self, run: &str) -> String {
        let out = self
            .ec2
            .describe_instances()
            .filters(tag_filter(CREATED_BY_TAG, run))
            .filters(filter(
                "instance-state-name",
                &["terminated", "shutting-down"],
            ))
            .send()
            .await;
        out.ok()
            .and_then(|o| {
                o.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state_reason().and_then(|r| r.message()))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "AWS gave no reason".into())
    }

    async fn start(&self, id: &str) -> Result<(), TierError> {
        match self.ec2.start_instances().instance_ids(id).send().await {
            Ok(_) => Ok(()),
            // Just after a change of type, AWS may not see it yet
            // (terraform-provider-aws#16433: "LaunchPlan instance type does
            // not match attribute value"): a moment later.
            Err(e)
                if aws_sdk_ec2::error::ProvideErrorMetadata::message(&e)
                    .is_some_and(|m| m.contains("LaunchPlan instance type does not match")) =>
            {
                Err(TierError::Waiting(format!(
                    "NAT instance {id}: AWS does not see its new type yet: it is started again shortly"
                )))
            }
            // AWS has no room for the type in the AZ now: later.
            Err(e) if error_code(&e) == Some("InsufficientInstanceCapacity") => {
                Err(TierError::Waiting(format!(
                    "NAT instance {id}: AWS has no capacity for its type in its AZ now ({}): it is started again shortly",
                    aws_error("ec2:StartInstances", e)
                )))
            }
            Err(e) => Err(aws_error("ec2:StartInstances", e)),
        }
    }

    async fn stop(&self, id: &str) -> Result<(), TierError> {
        self.ec2
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:StopInstances", e))?;
        Ok(())
    }
}

impl Resource for Instances {
    const KIND: &'static str = "nat-instance";
    const LABEL: &'static str = "NAT instance";
    type Live = Instance;
    type Want = InstanceWant;
    type Step = InstanceStep;

    fn name(&self, w: &Work<'_>, want: &InstanceWant) -> String {
        w.name(&instance_role(&want.az))
    }
    fn live_name(&self, live: &Instance) -> Option<String> {
        tag(live.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &Instance) -> String {
        live.instance_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Instance) -> Vec<(String, String)> {
        pairs(live.tags())
    }

    /// The stack's instances that are not gone: a destroy also waits for
    /// those shutting down; a converge does not (their interface is waited
    /// for by the replacement).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Instance>, TierError> {
        let states: &[&str] = match w.verb {
            Verb::Destroy => &["pending", "running", "stopping", "stopped", "shutting-down"],
            _ => &["pending", "running", "stopping", "stopped"],
        };
        let out = self
            .ec2
            .describe_instances()
            .filters(stack_filter(w))
            .filters(filter("instance-state-name", states))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeInstances", e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| w.is_ours(&pairs(i.tags())))
            .filter(|i| state(i).is_some_and(|s| states.contains(&s.as_str())))
            .cloned()
            .collect())
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        i: &Instance,
        want: &InstanceWant,
    ) -> Result<Vec<InstanceStep>, TierError> {
        let mut steps = Vec::new();
        if type_of(i) != want.instance_type {
            steps.push(InstanceStep::Retype {
                from: type_of(i).to_string(),
                to: want.instance_type.clone(),
            });
        }
        match (state(i), want.running) {
            (Some(s @ (InstanceStateName::Stopped | InstanceStateName::Stopping)), true) => {
                steps.push(InstanceStep::Start(s.as_str().to_string()))
            }
            (Some(InstanceStateName::Running | InstanceStateName::Pending), false) => {
                steps.push(InstanceStep::Stop)
            }
            _ => {}
        }
        Ok(steps)
    }

    fn describe(&self, _w: &Work<'_>, want: &InstanceWant) -> String {
        let held = want
            .eni_held_by
            .as_deref()
            .map(|i| format!(", once {i} (shutting down) frees its interface"))
            .unwrap_or_default();
        format!(
            "{} in the public subnet of {} (Amazon Linux 2023 arm64){held}",
            want.instance_type, want.az
        )
    }
    fn summary(&self, _w: &Work<'_>, i: &Instance) -> String {
        format!(
            "{}, {}",
            type_of(i),
            state(i).map(|s| s.as_str()).unwrap_or("?")
        )
    }

    async fn create(&self, w: &Work<'_>, want: &InstanceWant) -> Result<Instance, TierError> {
        if let Some(old) = &want.eni_held_by {
            return Err(TierError::Waiting(format!(
                "the NAT instance's interface is still attached to {old}, which is shutting down: its replacement takes the interface once {old} is gone"
            )));
        }
        let Some(eni) = &want.eni_id else {
            return Err(TierError::Terminal(format!(
                "the NAT instance in {} needs its network interface, which does not exist",
                want.az
            )));
        };
        let image = self.image().await?;
        let (device, size) = self.root_of(&image).await?;
        let role = instance_role(&want.az);
        let out = self
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(want.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .network_interface_id(eni)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(size)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .kms_key_id(ROOT_KEY)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .maintenance_options(
                InstanceMaintenanceOptionsRequest::builder()
                    .auto_recovery(InstanceAutoRecoveryState::Default)
                    .build(),
            )
            .user_data(base64::engine::general_purpose::STANDARD.encode(USER_DATA))
            .client_token(crate::nat::client_token(&w.spec.stack, &w.run.id, &role))
            .tag_specifications(tag_spec(w, ResourceType::Instance, &role))
            .tag_specifications(tag_spec(w, ResourceType::Volume, &role))
            .send()
            .await
            .map_err(|e| launch_error("ec2:RunInstances", &want.instance_type, e));
        let out = match out {
            Err(TierError::Terminal(m)) if m.contains("IdempotentInstanceTerminated") => {
                return Err(TierError::Terminal(format!(
                    "{m}. The NAT instance this run launched was terminated by AWS at launch: {}",
                    self.launch_reason(&w.run.id).await
                )))
            }
            other => other?,
        };
        out.instances()
            .first()
            .filter(|i| i.instance_id().is_some())
            .cloned()
            .ok_or_else(|| TierError::Terminal("ec2:RunInstances returned no instance".into()))
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        i: &Instance,
        want: &InstanceWant,
        steps: &[InstanceStep],
    ) -> Result<Option<Instance>, TierError> {
        let id = self.id(i);
        for step in steps {
            match step {
                InstanceStep::Retype { to, .. }
                    if state(i) == Some(&InstanceStateName::Running) =>
                {
                    // Never stopped for a type its AZ cannot run.
                    let az = i
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or(&want.az);
                    self.offered(to, az).await?;
                    self.stop(&id).await?;
                    return Err(TierError::Waiting(format!(
                        "NAT instance {id} is stopping to change its type to {to}"
                    )));
                }
                InstanceStep::Retype { to, .. } => match state(i) {
                    Some(InstanceStateName::Stopped) => {
                        let changed = self
                            .ec2
                            .modify_instance_attribute()
                            .instance_id(&id)
                            .instance_type(
                                aws_sdk_ec2::types::AttributeValue::builder()
                                    .value(to)
                                    .build(),
                            )
                            .send()
                            .await;
                        if let Err(e) = changed {
                            // Not left stopped by a type AWS refuses: back
                            // on, as it was, and the refusal told.
                            let refused = launch_error("ec2:ModifyInstanceAttribute", to, e);
                            if want.running {
                                self.start(&id).await?;
                            }
                            return Err(refused);
                        }
                        if want.running {
                            self.start(&id).await?;
                        }
                        return Ok(None);
                    }
                    s => {
                        return Err(TierError::Waiting(format!(
                            "NAT instance {id} is {}: its type changes once it is stopped",
                            s.map(|s| s.as_str()).unwrap_or("?")
                        )))
                    }
                },
                InstanceStep::Start(_) => match state(i) {
                    // StartInstances refuses a stopping instance
                    // (IncorrectInstanceState): once it is stopped.
                    Some(InstanceStateName::Stopping) => {
                        return Err(TierError::Waiting(format!(
                            "NAT instance {id} is stopping: it is started once it is stopped"
                        )))
                    }
                    _ => self.start(&id).await?,
                },
                InstanceStep::Stop => match state(i) {
                    Some(InstanceStateName::Running) => self.stop(&id).await?,
                    // StopInstances refuses a pending instance: once it runs.
                    _ => {
                        return Err(TierError::Waiting(format!(
                            "NAT instance {id} is pending: it is stopped once it runs"
                        )))
                    }
                },
            }
        }
        Ok(None)
    }

    fn readiness(&self, w: &Work<'_>, i: &Instance) -> Readiness {
        let id = self.id(i);
        let paused = w.spec.paused;
        match state(i) {
            Some(InstanceStateName::Running) if !paused => Readiness::Ready,
            Some(InstanceStateName::Stopped) if paused => Readiness::Ready,
            s => Readiness::Pending(format!(
                "NAT instance {id}: {}",
                s.map(|s| s.as_str()).unwrap_or("?")
            )),
        }
    }

    async fn delete(&self, _w: &Work<'_>, i: &Instance) -> Result<Deleted, TierError> {
        let id = self.id(i);
        let why = format!("NAT instance {id} to terminate");
        if state(i) == Some(&InstanceStateName::ShuttingDown) {
            return Ok(Deleted::Waiting(why));
        }
        self.ec2
            .terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:TerminateInstances", e))?;
        Ok(Deleted::Started {
            detail: self.live_name(i).unwrap_or_default(),
            waiting: why,
        })
    }
}

/// A launch (or a change of type) AWS refused, with the fix where AWS's
/// answer names one: an account on AWS's Free plan launches only
/// free-tier-eligible types, which `t4g.nano` is not; a type not offered in
/// the AZ.
fn launch_error<E>(op: &str, instance_type: &str, e: aws_sdk_ec2::error::SdkError<E>) -> TierError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = aws_sdk_ec2::error::ProvideErrorMetadata::message(&e)
        .unwrap_or("")
        .to_string();
    let err = aws_error(op, e);
    if message.contains("not eligible for Free Tier") {
        return TierError::Terminal(format!(
            "{err}. network.natInstanceType: this account is on AWS's Free plan, which launches only free-tier-eligible types, and {instance_type} is not one: set network.natInstanceType to \"t4g.micro\" (or upgrade the account's plan)"
        ));
    }
    if message.contains("is not supported in your requested Availability Zone") {
        return TierError::Terminal(format!(
            "{err}. network.natInstanceType: {instance_type} is not offered in the stack's first AZ: choose another Graviton type (t4g.micro, t4g.small, c7g.medium…)"
        ));
    }
    err
}

/// The instance (not yet terminated) an interface is attached to, if any.
pub(crate) fn attached_to(eni: &NetworkInterface) -> Option<String> {
    eni.attachment()
        .and_then(|a| a.instance_id())
        .map(str::to_string)
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &[
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeInstances",
            "ec2:DescribeImages",
            "ec2:DescribeInstanceTypeOfferings",
        ],
    ),
    // AWS's public parameter only. Its ARN is written without an account;
    // `*` matches that, and no account can own a parameter under /aws/ (a
    // name may not begin with "aws").
    Permission::on(
        "AmiParameter",
        &["ssm:GetParameter"],
        &["arn:${Partition}:ssm:*:*:parameter/aws/service/ami-amazon-linux-latest/*"],
    ),
    Permission::create_tagged("CreateTagged", &["ec2:CreateNetworkInterface"]),
    // A launch tags what it creates (the instance, its volume); the rest of
    // what it is authorized on is below: ours, or Amazon's image.
    Permission {
        sid: "LaunchTagged",
        actions: &["ec2:RunInstances"],
        resources: Resources::Arns(&[
            "arn:${Partition}:ec2:*:*:instance/*",
            "arn:${Partition}:ec2:*:*:volume/*",
        ]),
        condition: Condition::RequestTier,
    },
    // A create is also authorized on what it uses: the subnet, the group and
    // the interface (ours); RunInstances also on Amazon's image.
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:CreateNetworkInterface",
            "ec2:RunInstances",
            "ec2:ModifyNetworkInterfaceAttribute",
            "ec2:AssociateAddress",
            "ec2:DisassociateAddress",
            "ec2:DeleteNetworkInterface",
            "ec2:StartInstances",
            "ec2:StopInstances",
            "ec2:ModifyInstanceAttribute",
            "ec2:TerminateInstances",
        ],
    ),
    Permission::on(
        "AmazonImages",
        &["ec2:RunInstances"],
        &["arn:${Partition}:ec2:*::image/*"],
    )
    .when(r#"{"StringEquals": {"ec2:Owner": "amazon"}}"#),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use aws_sdk_ec2::types::{InstanceState, NetworkInterfaceAssociation};
    use mbstack_core::{StackSpec, Tier};

    fn instances() -> Instances {
        Instances {
            ec2: ec2(),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::Config::builder()
                    .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                    .region(aws_sdk_ssm::config::Region::new("us-east-1"))
                    .build(),
            ),
        }
    }

    fn instance(state: InstanceStateName, t: &str) -> Instance {
        Instance::builder()
            .instance_id("i-1")
            .instance_type(InstanceType::from(t))
            .state(InstanceState::builder().name(state).build())
            .build()
    }

    fn want(running: bool) -> InstanceWant {
        InstanceWant {
            az: "us-east-1a".into(),
            eni_id: Some("eni-1".into()),
            eni_held_by: None,
            instance_type: "t4g.nano".into(),
            running,
        }
    }

    fn shown<S: ToString>(steps: &[S]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_stopped_instance_is_started_and_a_paused_one_stopped() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let k = instances();
        let stopped = instance(InstanceStateName::Stopped, "t4g.nano");
        let running = instance(InstanceStateName::Running, "t4g.nano");
        assert_eq!(
            shown(&k.diff(&w, &stopped, &want(true)).unwrap()),
            vec!["start it (it is stopped)"]
        );
        assert!(k.diff(&w, &running, &want(true)).unwrap().is_empty());
        assert_eq!(
            shown(&k.diff(&w, &running, &want(false)).unwrap()),
            vec!["stop it (paused)"]
        );
        assert!(k.diff(&w, &stopped, &want(false)).unwrap().is_empty());
        // Resumed while it is still stopping: started once stopped.
        let stopping = instance(InstanceStateName::Stopping, "t4g.nano");
        assert_eq!(
            shown(&k.diff(&w, &stopping, &want(true)).unwrap()),
            vec!["start it (it is stopping)"]
        );
        let bigger = instance(InstanceStateName::Running, "t4g.micro");
        assert_eq!(
            shown(&k.diff(&w, &bigger, &want(true)).unwrap()),
            vec!["type t4g.micro → t4g.nano (stopped, changed, started)"]
        );
    }

    #[test]
    fn an_interface_checking_source_and_destination_or_without_its_address_is_repaired() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let k = Interfaces { ec2: ec2() };
        let want = EniWant {
            az: "us-east-1a".into(),
            subnet_id: Some("subnet-1".into()),
            group_id: Some("sg-1".into()),
            allocation_id: Some("eipalloc-1".into()),
            held_by: None,
        };
        let good = NetworkInterface::builder()
            .network_interface_id("eni-1")
            .source_dest_check(false)
            .association(
                NetworkInterfaceAssociation::builder()
                    .allocation_id("eipalloc-1")
                    .build(),
            )
            .build();
        assert!(k.diff(&w, &good, &want).unwrap().is_empty());
        assert_eq!(k.readiness(&w, &good), Readiness::Ready);
        let drifted = NetworkInterface::builder()
            .network_interface_id("eni-1")
            .source_dest_check(true)
            .build();
        assert_eq!(
            shown(&k.diff(&w, &drifted, &want).unwrap()),
            vec![
                "source/destination check off (it was on)",
                "associate Elastic IP eipalloc-1"
            ]
        );
        assert!(matches!(k.readiness(&w, &drifted), Readiness::Pending(_)));
    }
}
