//! The ACM certificate of `loadBalancer.domain` (when the spec names no
//! `certificateArn`): requested with DNS validation and the stack's tags,
//! `PENDING_VALIDATION` until ACM finds its validation record (written by
//! [`crate::dns`]), then `ISSUED` and served by the HTTPS listener. Only a
//! certificate carrying our stack tag is ever ours: a certificate someone else
//! requested for the same name is neither used nor touched.

use aws_sdk_acm::types::{CertificateStatus, Filters, KeyAlgorithm, Tag, ValidationMethod};
use aws_sdk_acm::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::pairs;
use mbstack_core::resource::{Deleted, NoStep, Resource};
use mbstack_core::{aws_error, error_code, found, Readiness, TierError, Work};

use crate::tags::Pairs;

pub const ROLE: &str = "certificate";

/// A DNS validation record ACM asks for: (name, value), as ACM gives them.
pub(crate) type ValidationRecord = (String, String);

/// The stack's certificates for `domain` (None: the stack has no domain).
pub(crate) struct Certificates {
    pub acm: Client,
    pub domain: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub arn: String,
    pub domain: String,
    pub status: String,
    /// Why ACM could not issue it (FAILED).
    failure: Option<String>,
    /// Empty until ACM has named them (seconds after the request).
    pub records: Vec<ValidationRecord>,
    tags: Pairs,
    /// Matched by the domain: pending or issued, or made by this run (a
    /// certificate this run requested that failed is this run's failure, not a
    /// reason to request another).
    active: bool,
}

impl Live {
    pub fn issued(&self) -> bool {
        self.status == CertificateStatus::Issued.as_str()
    }
}

/// An idempotency token for this run's request (ACM: up to 32 word
/// characters, kept an hour): a retried request in the same run returns the
/// same certificate.
fn token(w: &Work<'_>, domain: &str) -> String {
    mbstack_core::naming::idempotency_key(&[&w.spec.stack, domain, &w.run.id])
}

impl Certificates {
    /// What ACM says of one certificate of ours.
    async fn describe(
        &self,
        arn: &str,
        tags: Pairs,
        w: &Work<'_>,
    ) -> Result<Option<Live>, TierError> {
        let call = self
            .acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await;
        let Some(out) = found(
            "acm:DescribeCertificate",
            call,
            &["ResourceNotFoundException"],
        )?
        else {
            return Ok(None);
        };
        let Some(c) = out.certificate() else {
            return Ok(None);
        };
        let status = c
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let mut records: Vec<ValidationRecord> = c
            .domain_validation_options()
            .iter()
            .filter_map(|v| v.resource_record())
            .map(|r| (r.name().to_string(), r.value().to_string()))
            .collect();
        records.sort();
        records.dedup();
        let active = status == CertificateStatus::Issued.as_str()
            || status == CertificateStatus::PendingValidation.as_str()
            || w.created_by_this_run(&tags);
        Ok(Some(Live {
            arn: arn.to_string(),
            domain: c.domain_name().unwrap_or_default().to_string(),
            failure: c.failure_reason().map(|f| f.as_str().to_string()),
            status,
            records,
            tags,
            active,
        }))
    }

    /// The certificates of `domain` in this account and region, ARN each,
    /// whoever requested them (paged): its name or one of its alternative
    /// names, whatever its key (ListCertificates leaves out every key but
    /// RSA_1024 and RSA_2048 unless asked for them).
    pub async fn of_domain(&self, domain: &str) -> Result<Vec<String>, TierError> {
        self.naming(&[domain.to_string()]).await
    }

    /// The certificates ACM renews through `domain`'s validation record:
    /// those of the domain, and of its wildcard (ACM validates `*.<domain>`
    /// through `<domain>`'s record).
    pub async fn renewing_through(&self, domain: &str) -> Result<Vec<String>, TierError> {
        self.naming(&[domain.to_string(), format!("*.{domain}")])
            .await
    }

    /// The certificates that name one of `names`, as their name or an
    /// alternative name, whatever their key.
    async fn naming(&self, names: &[String]) -> Result<Vec<String>, TierError> {
        let every_key = KeyAlgorithm::values()
            .iter()
            .map(|k| KeyAlgorithm::from(*k))
            .collect();
        let includes = Filters::builder().set_key_types(Some(every_key)).build();
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .acm
                .list_certificates()
                .includes(includes.clone())
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("acm:ListCertificates", e))?;
            arns.extend(
                out.certificate_summary_list()
                    .iter()
                    .filter(|s| {
                        names.iter().any(|name| {
                            s.domain_name() == Some(name.as_str())
                                || s.subject_alternative_name_summaries().contains(name)
                        })
                    })
                    .filter_map(|s| s.certificate_arn().map(str::to_string)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    async fn tags_of(&self, arn: &str) -> Result<Option<Pairs>, TierError> {
        let call = self
            .acm
            .list_tags_for_certificate()
            .certificate_arn(arn)
            .send()
            .await;
        Ok(found(
            "acm:ListTagsForCertificate",
            call,
            &["ResourceNotFoundException"],
        )?
        .map(|out| pairs(out.tags().iter().map(|t| (Some(t.key()), t.value())))))
    }
}

impl Resource for Certificates {
    const KIND: &'static str = "certificate";
    const LABEL: &'static str = "certificate";
    type Live = Live;
    type Want = String;
    type Step = NoStep;

    fn name(&self, _w: &Work<'_>, want: &String) -> String {
        want.clone()
    }
    /// Only an active one is matched: a failed or timed-out certificate of an
    /// earlier run is replaced (and deleted).
    fn live_name(&self, live: &Live) -> Option<String> {
        live.active.then(|| live.domain.clone())
    }
    fn id(&self, live: &Live) -> String {
        live.arn.clone()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    /// Our certificates of the domain: ACM lists certificates with their
    /// domain only, so the domain's are listed and their tags read; only those
    /// with the stack's tag are described.
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let Some(domain) = &self.domain else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for arn in self.of_domain(domain).await? {
            let Some(tags) = self.tags_of(&arn).await? else {
                continue;
            };
            if !w.is_ours(&tags) {
                continue;
            }
            if let Some(live) = self.describe(&arn, tags, w).await? {
                out.push(live);
            }
        }
        Ok(out)
    }

    fn diff(&self, _w: &Work<'_>, _live: &Live, _want: &String) -> Result<Vec<NoStep>, TierError> {
        Ok(vec![])
    }

    fn describe(&self, _w: &Work<'_>, want: &String) -> String {
        format!("{want}, validated through DNS")
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        format!("{}: {}", live.domain, live.status.to_lowercase())
    }

    async fn create(&self, w: &Work<'_>, want: &String) -> Result<Live, TierError> {
        let tags: Vec<Tag> = w
            .tags(ROLE)
            .into_iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let out = self
            .acm
            .request_certificate()
            .domain_name(want)
            .validation_method(ValidationMethod::Dns)
            .idempotency_token(token(w, want))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("acm:RequestCertificate", e))?;
        let arn = out.certificate_arn().unwrap_or_default().to_string();
        // ACM names the validation record seconds after the request: the next
        // pass reads it.
        Ok(Live {
            arn,
            domain: want.clone(),
            status: CertificateStatus::PendingValidation.as_str().to_string(),
            failure: None,
            records: Vec::new(),
            tags: w.tags(ROLE),
            active: true,
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &Live,
        _want: &String,
        _steps: &[NoStep],
    ) -> Result<Option<Live>, TierError> {
        Ok(None)
    }

    fn readiness(&self, _w: &Work<'_>, live: &Live) -> Readiness {
        if live.issued() {
            return Readiness::Ready;
        }
        if live.status == CertificateStatus::PendingValidation.as_str() {
            return Readiness::Pending(match live.records.first() {
                None => format!("certificate for {}: ACM is naming its validation record", live.domain),
                Some((name, _)) => format!(
                    "certificate for {}: pending validation (ACM looks up the CNAME {name}; usually a few minutes, up to 30 for a new zone — if the hosted zone is not the one the domain's registrar delegates to, it never completes)",
                    live.domain
                ),
            });
        }
        Readiness::Failed(format!(
            "certificate {} for {} is {}{}: ACM did not issue it; check the domain's CAA records and that the hosted zone is the one its registrar delegates to, then apply again",
            live.arn,
            live.domain,
            live.status,
            live.failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default()
        ))
    }

    /// ELB lets a certificate go a few minutes after its listener is gone:
    /// until then ACM refuses the delete and the tier waits.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        match self
            .acm
            .delete_certificate()
            .certificate_arn(&live.arn)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Now),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(Deleted::Now),
            Err(e) if error_code(&e) == Some("ResourceInUseException") => {
                Ok(Deleted::Waiting(format!(
                    "certificate {} to be released by the load balancer",
                    live.arn
                )))
            }
            Err(e) => Err(aws_error("acm:DeleteCertificate", e)),
        }
    }

    fn deleted_detail(&self, _w: &Work<'_>, live: &Live) -> String {
        format!("{} ({})", live.domain, live.status.to_lowercase())
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    // ListCertificates takes no resource; the others are read on certificates.
    Permission::read(
        "Read",
        &[
            "acm:ListCertificates",
            "acm:DescribeCertificate",
            "acm:ListTagsForCertificate",
        ],
    ),
    // Tags in the request need both actions (ACM authorizes the tagging apart).
    Permission::create_tagged(
        "CreateTagged",
        &["acm:RequestCertificate", "acm:AddTagsToCertificate"],
    ),
    Permission::own_tagged("ChangeTagged", &["acm:DeleteCertificate"]),
];
