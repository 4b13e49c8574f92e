//! The ledger: DNS records carry no tags, so what the stack holds in DNS is
//! written on its load balancer's tags. `mbstack:domain` = `<domain> <zone id>
//! <run that set it up>` is the domain's claim, a resource kind of its own
//! ([`Claims`]): created before any record or certificate of the domain
//! exists, deleted last once nothing of it is left. `mbstack:dns-validation` =
//! `<domain>` says mbstack itself wrote ACM's validation record (set before
//! the record is: a crash between leaves the mark, never an unmarked record).

use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;
use aws_sdk_elasticloadbalancingv2::Client as Elb;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{tag_value, CREATED_BY_TAG, STACK_TAG};
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{aws_error, TierError, Work};

use crate::tags::Pairs;

/// The ledger's tags on the load balancer.
pub const DOMAIN_TAG: &str = "mbstack:domain";
pub const VALIDATION_TAG: &str = "mbstack:dns-validation";

/// What the load balancer's tags say the stack holds in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ledger {
    pub domain: String,
    pub zone_id: String,
    /// The run that set the domain up (a rollback of it removes it all).
    pub run: String,
    /// mbstack wrote the domain's ACM validation record.
    pub validation: bool,
}

impl Ledger {
    pub fn read(tags: &Pairs) -> Option<Self> {
        let v = tag_value(tags, DOMAIN_TAG)?;
        let mut parts = v.split(' ');
        let (domain, zone_id, run) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Self {
            domain: domain.to_string(),
            zone_id: zone_id.to_string(),
            run: run.to_string(),
            validation: tag_value(tags, VALIDATION_TAG) == Some(domain),
        })
    }

    pub fn value(domain: &str, zone_id: &str, run: &str) -> String {
        format!("{domain} {zone_id} {run}")
    }
}

/// The load balancer whose tags hold the ledger.
#[derive(Clone)]
pub(crate) struct LedgerTags {
    pub elb: Elb,
    pub alb_arn: String,
}

impl LedgerTags {
    pub async fn set(&self, key: &str, value: &str) -> Result<(), TierError> {
        let tag = ElbTag::builder().key(key).value(value).build();
        self.elb
            .add_tags()
            .resource_arns(&self.alb_arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:AddTags", e))?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), TierError> {
        self.elb
            .remove_tags()
            .resource_arns(&self.alb_arn)
            .tag_keys(DOMAIN_TAG)
            .tag_keys(VALIDATION_TAG)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:RemoveTags", e))?;
        Ok(())
    }
}

/// The domain's claim on the load balancer's tags. Its name is the domain; its
/// owner, the run that set the domain up (a rollback of that run takes it).
pub(crate) struct Claims {
    /// None: the load balancer is only planned.
    pub tags: Option<LedgerTags>,
    /// The ledger as read from the load balancer's tags.
    pub ledger: Option<Ledger>,
    /// The hosted zone a new claim names (None: the claim is only taken away).
    pub zone_id: Option<String>,
    pub stack: String,
}

impl Resource for Claims {
    const KIND: &'static str = "domain-claim";
    const LABEL: &'static str = "domain claim";
    type Live = Ledger;
    type Want = String;
    type Step = NoStep;

    fn name(&self, _w: &Work<'_>, want: &String) -> String {
        want.clone()
    }
    fn live_name(&self, live: &Ledger) -> Option<String> {
        Some(live.domain.clone())
    }
    fn id(&self, live: &Ledger) -> String {
        live.domain.clone()
    }
    fn tags(&self, live: &Ledger) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_string(), self.stack.clone()),
            (CREATED_BY_TAG.to_string(), live.run.clone()),
        ]
    }

    async fn list(&self, _w: &Work<'_>) -> Result<Vec<Ledger>, TierError> {
        Ok(self.ledger.clone().into_iter().collect())
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        _live: &Ledger,
        _want: &String,
    ) -> Result<Vec<NoStep>, TierError> {
        Ok(vec![])
    }

    fn describe(&self, _w: &Work<'_>, want: &String) -> String {
        let zone = self
            .zone_id
            .as_ref()
            .map(|z| format!(" in hosted zone {z}"))
            .unwrap_or_default();
        format!("{DOMAIN_TAG} on the load balancer: the stack holds {want}'s records{zone}")
    }
    fn summary(&self, _w: &Work<'_>, live: &Ledger) -> String {
        format!("{DOMAIN_TAG}, since run {}", live.run)
    }

    async fn create(&self, w: &Work<'_>, want: &String) -> Result<Ledger, TierError> {
        let (Some(tags), Some(zone_id)) = (&self.tags, &self.zone_id) else {
            return Err(TierError::Terminal(format!(
                "the claim on {want} needs the load balancer and the hosted zone"
            )));
        };
        tags.set(DOMAIN_TAG, &Ledger::value(want, zone_id, &w.run.id))
            .await?;
        Ok(Ledger {
            domain: want.clone(),
            zone_id: zone_id.clone(),
            run: w.run.id.clone(),
            validation: false,
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &Ledger,
        _want: &String,
        _steps: &[NoStep],
    ) -> Result<Option<Ledger>, TierError> {
        Ok(None)
    }

    async fn delete(&self, _w: &Work<'_>, _live: &Ledger) -> Result<Deleted, TierError> {
        if let Some(tags) = &self.tags {
            tags.clear().await?;
        }
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, _w: &Work<'_>, _live: &Ledger) -> String {
        format!("{DOMAIN_TAG} and {VALIDATION_TAG} taken off the load balancer")
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    // Only the ledger's two tags, only on the stack's own load balancer.
    Permission::own_tagged(
        "Ledger",
        &["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
    )
    .when(
        r#"{"StringEquals": {"aws:ResourceTag/mbstack:tier": "${Tier}"}, "ForAllValues:StringEquals": {"aws:TagKeys": ["mbstack:domain", "mbstack:dns-validation"]}}"#,
    ),
];
