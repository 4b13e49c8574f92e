//! ACM's validation record of the stack's certificate: the CNAME in the
//! domain's hosted zone that ACM looks up before it issues. A record there
//! already with ACM's value is someone else's when the ledger does not say
//! mbstack wrote it (another certificate of the same name shares it): it is
//! matched unchanged and never deleted. A record with another value is refused:
//! ACM cannot validate through it.

use aws_sdk_route53::types::{ChangeAction, ResourceRecordSet, RrType};
use mbstack_core::naming::{CREATED_BY_TAG, STACK_TAG};
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{TierError, Work};

use crate::dns::{norm, Dns, Zone};
use crate::ledger::{LedgerTags, VALIDATION_TAG};

/// The validation records of one certificate.
pub(crate) struct Validations {
    pub dns: Dns,
    pub zone: Zone,
    pub domain: String,
    pub stack: String,
    /// ACM's (name, value) of each record.
    pub records: Vec<(String, String)>,
    /// The run whose records these are, when mbstack wrote them (the ledger
    /// says so). None: a record with ACM's value is used, never deleted.
    pub owner: Option<String>,
    /// Where the ledger marks the records as mbstack's before it writes one
    /// (None: the load balancer is only planned).
    pub ledger: Option<LedgerTags>,
}

#[derive(Debug, Clone)]
pub(crate) struct Live {
    name: String,
    set: ResourceRecordSet,
    /// The record holds ACM's value.
    acm: bool,
    tags: Vec<(String, String)>,
}

impl Validations {
    fn values(set: &ResourceRecordSet) -> Vec<String> {
        set.resource_records()
            .iter()
            .map(|r| norm(r.value()))
            .collect()
    }
}

impl Resource for Validations {
    const KIND: &'static str = "dns-record";
    const LABEL: &'static str = "DNS record";
    type Live = Live;
    type Want = (String, String);
    type Step = NoStep;

    fn name(&self, _w: &Work<'_>, want: &(String, String)) -> String {
        norm(&want.0)
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        Some(live.name.clone())
    }
    fn id(&self, live: &Live) -> String {
        live.name.clone()
    }
    /// Ours (the stack's) when it holds ACM's value; its owner is the run
    /// that wrote it, when the ledger says mbstack did.
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    async fn list(&self, _w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let mut out = Vec::new();
        for (name, value) in &self.records {
            let Some(set) = self.dns.record(&self.zone, name, RrType::Cname).await? else {
                continue;
            };
            let acm = Self::values(&set) == vec![norm(value)];
            let mut tags = Vec::new();
            if acm {
                tags.push((STACK_TAG.to_string(), self.stack.clone()));
                if let Some(run) = &self.owner {
                    tags.push((CREATED_BY_TAG.to_string(), run.clone()));
                }
            }
            out.push(Live {
                name: norm(name),
                set,
                acm,
                tags,
            });
        }
        Ok(out)
    }

    /// A record with another value than ACM's is not the stack's: named, with
    /// what it holds.
    fn not_ours(&self, _w: &Work<'_>, live: &Live) -> TierError {
        let value = self
            .records
            .iter()
            .find(|(n, _)| norm(n) == live.name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        TierError::Terminal(format!(
            "{} in hosted zone {} holds {} instead of ACM's {value}: ACM cannot validate {}'s certificate; remove that record",
            live.name,
            self.zone.name,
            Self::values(&live.set).join(", "),
            self.domain
        ))
    }

    fn diff(
        &self,
        _w: &Work<'_>,
        _live: &Live,
        _want: &(String, String),
    ) -> Result<Vec<NoStep>, TierError> {
        Ok(vec![])
    }

    fn describe(&self, _w: &Work<'_>, want: &(String, String)) -> String {
        format!("CNAME → {}, for ACM's validation", want.1)
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        match (live.acm, &self.owner) {
            (true, None) => {
                "CNAME for ACM's validation (not written by mbstack: used, kept)".into()
            }
            _ => "CNAME for ACM's validation".into(),
        }
    }

    /// The ledger's mark first, then the record.
    async fn create(&self, w: &Work<'_>, want: &(String, String)) -> Result<Live, TierError> {
        let Some(ledger) = &self.ledger else {
            return Err(TierError::Terminal(format!(
                "ACM's validation record for {} needs the load balancer's ledger",
                self.domain
            )));
        };
        if self.owner.is_none() {
            ledger.set(VALIDATION_TAG, &self.domain).await?;
        }
        let set = Dns::cname(&want.0, &want.1)?;
        self.dns
            .change(&self.zone, ChangeAction::Create, set.clone())
            .await?;
        Ok(Live {
            name: norm(&want.0),
            set,
            acm: true,
            tags: vec![
                (STACK_TAG.to_string(), self.stack.clone()),
                (CREATED_BY_TAG.to_string(), w.run.id.clone()),
            ],
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &Live,
        _want: &(String, String),
        _steps: &[NoStep],
    ) -> Result<Option<Live>, TierError> {
        Ok(None)
    }

    /// Deleted as read (Route 53 deletes a record set only by its exact values).
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.dns
            .change(&self.zone, ChangeAction::Delete, live.set.clone())
            .await?;
        Ok(Deleted::Now)
    }

    fn deleted_detail(&self, _w: &Work<'_>, _live: &Live) -> String {
        "CNAME for ACM's validation".into()
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`):
/// none of its own (Route 53's calls are [`crate::dns`]'s, the ledger's
/// [`crate::ledger`]'s).
pub(crate) const PERMISSIONS: &[mbstack_core::iam::Permission] = &[];
