//! `loadBalancer.domain`: the steps between the load balancer and its
//! listeners (the certificate and its validation record), and after them (the
//! alias record), and taking it all away again (the domain removed from the
//! spec, a destroy, a rollback). The ledger on the load balancer's tags
//! ([`crate::dns`]) says what the stack holds, whatever the spec says now.

use aws_sdk_elasticloadbalancingv2::Client as Elb;
use mbstack_core::resource::{self, Resource};
use mbstack_core::{Readiness, TierError, Work};

use crate::certificate::Certificates;
use crate::dns::{Aliases, Dns, Zone};
use crate::ledger::{Claims, Ledger, LedgerTags};
use crate::validation::Validations;

/// The clients the domain's steps use.
pub(crate) struct Domain {
    pub elb: Elb,
    pub acm: aws_sdk_acm::Client,
    pub dns: Dns,
}

/// What the steps before the listeners found: the certificate HTTPS serves
/// (None: HTTP only for now) and what the tier still waits for.
pub(crate) struct Before {
    pub https: Option<String>,
    pub zone: Option<Zone>,
    pub waiting: Vec<String>,
}

impl Domain {
    /// Before the listeners: the zone, the ledger's claim, the certificate
    /// (requested, its validation record written) unless the spec names one.
    pub async fn before(
        &self,
        w: &mut Work<'_>,
        alb: Option<(&str, Option<&Ledger>)>,
        target: Option<(String, String)>,
    ) -> Result<Before, TierError> {
        let lb = &w.spec.load_balancer;
        let spec_cert = lb.certificate_arn.clone();
        let Some(domain) = lb.domain.clone() else {
            return Ok(Before {
                https: spec_cert,
                zone: None,
                waiting: Vec::new(),
            });
        };
        let ledger = alb.and_then(|(_, l)| l);
        if let Some(l) = ledger.filter(|l| l.domain != domain) {
            return Err(TierError::Terminal(format!(
                "loadBalancer.domain changes from {} to {domain}, which mbstack does not do in place: apply with loadBalancer.domain null first (removes {}'s record and certificate), then set {domain}",
                l.domain, l.domain
            )));
        }
        let zone = self.dns.zone(&domain, lb.hosted_zone_id.as_deref()).await?;
        // A record of someone else's at the domain: refused before anything
        // is claimed, requested or written.
        let aliases = Aliases {
            dns: self.dns.clone(),
            zone: Some(zone.clone()),
            domain: Some(domain.clone()),
            target,
            ledger: ledger.cloned(),
            stack: w.spec.stack.clone(),
            keep_others: false,
        };
        if let Some(theirs) = aliases
            .list(w)
            .await?
            .into_iter()
            .find(|a| !w.is_ours(&aliases.tags(a)))
        {
            return Err(TierError::Terminal(format!(
                "{domain} already has an A record in hosted zone {} ({}), which is not this stack's: mbstack will not change it; remove it or choose another loadBalancer.domain",
                zone.name,
                aliases.summary(w, &theirs)
            )));
        }
        let tags = alb.map(|(arn, _)| LedgerTags {
            elb: self.elb.clone(),
            alb_arn: arn.to_string(),
        });
        // The claim before anything it claims exists.
        let claims = Claims {
            tags: tags.clone(),
            ledger: ledger.cloned(),
            zone_id: Some(zone.id.clone()),
            stack: w.spec.stack.clone(),
        };
        resource::converge(&claims, w, std::slice::from_ref(&domain)).await?;
        if spec_cert.is_some() {
            return Ok(Before {
                https: spec_cert,
                zone: Some(zone),
                waiting: Vec::new(),
            });
        }
        let certs = Certificates {
            acm: self.acm.clone(),
            domain: Some(domain.clone()),
        };
        let wants = [domain.clone()];
        let made = resource::converge(&certs, w, &wants).await?;
        let mut waiting = resource::prune(&certs, w, &made.unwanted).await?;
        let mut https = None;
        if let Some(cert) = made.found.first().cloned().flatten() {
            let records = Validations {
                dns: self.dns.clone(),
                zone: zone.clone(),
                domain: domain.clone(),
                stack: w.spec.stack.clone(),
                records: cert.records.clone(),
                owner: ledger.filter(|l| l.validation).map(|l| l.run.clone()),
                ledger: tags.clone(),
            };
            resource::converge(&records, w, &cert.records).await?;
            match certs.readiness(w, &cert) {
                Readiness::Ready => https = Some(cert.arn.clone()),
                Readiness::Pending(why) => waiting.push(why),
                Readiness::Failed(why) => return Err(TierError::ResourceFailed(why)),
            }
        }
        Ok(Before {
            https,
            zone: Some(zone),
            waiting,
        })
    }

    /// After the listeners: the alias record to the load balancer.
    pub async fn alias(
        &self,
        w: &mut Work<'_>,
        zone: Option<Zone>,
        target: Option<(String, String)>,
        ledger: Option<Ledger>,
    ) -> Result<(), TierError> {
        let Some(domain) = w.spec.load_balancer.domain.clone() else {
            return Ok(());
        };
        let aliases = Aliases {
            dns: self.dns.clone(),
            zone,
            domain: Some(domain.clone()),
            target,
            ledger,
            stack: w.spec.stack.clone(),
            keep_others: false,
        };
        resource::converge(&aliases, w, &[domain]).await?;
        Ok(())
    }

    /// The stack's own certificate of the ledger's domain that a listener of
    /// the load balancer `alb_arn` serves, if any (a certificate of the
    /// user's own is never deleted: nothing holds a rollback up for it).
    pub async fn served(
        &self,
        w: &Work<'_>,
        alb_arn: &str,
        ledger: &Ledger,
    ) -> Result<Option<String>, TierError> {
        let out = self
            .elb
            .describe_listeners()
            .load_balancer_arn(alb_arn)
            .send()
            .await
            .map_err(|e| mbstack_core::aws_error("elasticloadbalancing:DescribeListeners", e))?;
        let serving: Vec<&str> = out
            .listeners()
            .iter()
            .flat_map(|l| l.certificates())
            .filter_map(|c| c.certificate_arn())
            .collect();
        let certs = Certificates {
            acm: self.acm.clone(),
            domain: Some(ledger.domain.clone()),
        };
        Ok(certs
            .list(w)
            .await?
            .into_iter()
            .map(|c| c.arn)
            .find(|arn| serving.contains(&arn.as_str())))
    }

    /// Takes away what the ledger says the stack holds (a destroy, a rollback
    /// of the run that set it up, a domain removed from the spec): the alias,
    /// the validation record mbstack wrote (unless another certificate of the
    /// domain needs it), the certificate; the claim last, once nothing of the
    /// domain is left. Returns what AWS is still letting go (the certificate,
    /// a few minutes after its listener).
    pub async fn remove(
        &self,
        w: &mut Work<'_>,
        alb_arn: &str,
        target: Option<(String, String)>,
        ledger: &Ledger,
        how: Removal,
    ) -> Result<Vec<String>, TierError> {
        let zone = Zone {
            id: ledger.zone_id.clone(),
            name: String::new(),
        };
        let aliases = Aliases {
            dns: self.dns.clone(),
            zone: Some(zone.clone()),
            domain: Some(ledger.domain.clone()),
            target,
            ledger: Some(ledger.clone()),
            stack: w.spec.stack.clone(),
            keep_others: true,
        };
        let mut waiting = how.take(&aliases, w).await?;
        let certs = Certificates {
            acm: self.acm.clone(),
            domain: Some(ledger.domain.clone()),
        };
        let ours = certs.list(w).await?;
        if ledger.validation {
            let mine: Vec<&str> = ours.iter().map(|c| c.arn.as_str()).collect();
            let shared = certs
                .renewing_through(&ledger.domain)
                .await?
                .into_iter()
                .any(|arn| !mine.contains(&arn.as_str()));
            let owned: Vec<_> = ours.iter().filter(|c| w.owns(&certs.tags(c))).collect();
            for cert in owned {
                let records = Validations {
                    dns: self.dns.clone(),
                    zone: zone.clone(),
                    domain: ledger.domain.clone(),
                    stack: w.spec.stack.clone(),
                    records: cert.records.clone(),
                    owner: (!shared).then(|| {
                        let tags = certs.tags(cert);
                        mbstack_core::naming::tag_value(&tags, mbstack_core::naming::CREATED_BY_TAG)
                            .unwrap_or_default()
                            .to_string()
                    }),
                    ledger: None,
                };
                if !shared {
                    waiting.extend(how.take(&records, w).await?);
                    continue;
                }
                for l in records.list(w).await? {
                    if w.is_ours(&records.tags(&l)) {
                        w.record(
                            Validations::KIND,
                            records.id(&l),
                            mbstack_core::Action::None,
                            "kept: another certificate of the domain validates through it",
                        );
                    }
                }
            }
        }
        waiting.extend(how.take(&certs, w).await?);
        if waiting.is_empty() {
            let claims = Claims {
                tags: Some(LedgerTags {
                    elb: self.elb.clone(),
                    alb_arn: alb_arn.to_string(),
                }),
                ledger: Some(ledger.clone()),
                zone_id: None,
                stack: w.spec.stack.clone(),
            };
            how.take(&claims, w).await?;
        }
        Ok(waiting)
    }
}

/// How the domain goes: pruned (it left the spec: recorded in a plan, deleted
/// in an apply) or destroyed (a destroy, a rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    Pruned,
    Destroyed,
}

impl Removal {
    async fn take<R: Resource>(self, r: &R, w: &mut Work<'_>) -> Result<Vec<String>, TierError> {
        match self {
            Removal::Pruned => resource::prune_owned(r, w).await,
            Removal::Destroyed => resource::destroy(r, w).await,
        }
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[mbstack_core::iam::Permission] =
    &[mbstack_core::iam::Permission::read(
        "Read",
        &["elasticloadbalancing:DescribeListeners"],
    )];
