//! Route 53 for `loadBalancer.domain`: the public hosted zone that holds the
//! domain, and the alias `A` record to the load balancer. DNS records carry no
//! tags: what the stack holds in DNS is on its load balancer's tags (the
//! ledger, [`crate::ledger`]); a record is ours only when the ledger names its
//! domain (and, for the alias, when it points at our load balancer); a record
//! of someone else's is never changed or deleted.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{CREATED_BY_TAG, STACK_TAG};

use crate::ledger::Ledger;
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, TierError, Work};

use crate::tags::Pairs;

/// A public hosted zone: its ID (without `/hostedzone/`) and name (no final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    pub id: String,
    pub name: String,
}

/// A DNS name as Route 53 compares it: lower case, no final dot.
pub(crate) fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// An alias target's DNS name as the load balancer's (Route 53 may keep a
/// `dualstack.` prefix).
fn alias_norm(name: &str) -> String {
    let n = norm(name);
    n.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(n)
}

fn build<T>(what: &str, r: Result<T, aws_sdk_route53::error::BuildError>) -> Result<T, TierError> {
    r.map_err(|e| TierError::Terminal(format!("building {what}: {e}")))
}

#[derive(Clone)]
pub(crate) struct Dns {
    pub r53: Client,
}

/// The public hosted zone of `domain` (`zone_id`'s, or found by the domain),
/// if the deployment may write records in it (`allowed`; None: any zone); else
/// the problem, naming the field to change or the deploy to run.
async fn zone_for(
    r53: &Client,
    domain: &str,
    zone_id: Option<&str>,
    allowed: Option<&[String]>,
) -> Result<Result<Zone, mbstack_core::Problem>, TierError> {
    use mbstack_core::Problem;
    let field = match zone_id {
        Some(_) => "loadBalancer.hostedZoneId",
        None => "loadBalancer.domain",
    };
    let dns = Dns { r53: r53.clone() };
    let zone = match dns.zone(domain, zone_id).await {
        Ok(z) => z,
        Err(TierError::Terminal(why)) => return Ok(Err(Problem::new(field, why))),
        Err(e) => return Err(e),
    };
    let Some(allowed) = allowed.filter(|a| !a.iter().any(|z| z == "*" || *z == zone.id)) else {
        return Ok(Ok(zone));
    };
    let mut zones: Vec<String> = allowed.to_vec();
    zones.push(zone.id.clone());
    let now = match allowed {
        [] => "in no hosted zone".to_string(),
        some => format!("only in hosted zone(s) {}", some.join(", ")),
    };
    Ok(Err(Problem::new(
        field,
        format!(
            "{domain} is in hosted zone {} ({}), and this deployment may write DNS records {now}: run `mbstack deploy --hosted-zones {}` first",
            zone.name,
            zone.id,
            zones.join(",")
        ),
    )))
}

/// Prepare's check of a domain the stack has already, when the deployment
/// names its hosted zones: a run that would change or delete its records
/// (any apply, a destroy) is refused before anything is touched when the zone
/// the records are in is not among them (`mbstack deploy --hosted-zones`
/// narrowed after the stack was made), instead of failing half-way on Route
/// 53's denial. The zone is the one the ledger on the stack's load balancer
/// names (where the records were written); with no ledger, nothing of the
/// domain was written yet, and the zone a new domain would get is checked
/// (`zone_id`, else by the domain). A zone that cannot be found is left to the
/// load balancer tier (a deleted or ambiguous zone is its message to give).
pub async fn domain_zone_problems(
    r53: &Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    domain: &str,
    zone_id: Option<&str>,
    allowed: Option<&[String]>,
) -> Result<Vec<mbstack_core::Problem>, TierError> {
    use mbstack_core::Problem;
    let Some(allowed) = allowed.filter(|a| !a.iter().any(|z| z == "*")) else {
        return Ok(Vec::new());
    };
    let reads = crate::reads::Reads::new(elb.clone(), stack);
    let mut ledger = None;
    if let Some(arn) = reads
        .load_balancers()
        .await?
        .first()
        .and_then(|l| l.load_balancer_arn())
    {
        ledger = Ledger::read(
            &crate::tags::of(elb, &[arn.to_string()])
                .await?
                .remove(arn)
                .unwrap_or_default(),
        )
        .filter(|l| l.domain == domain);
    }
    let zone = match ledger {
        Some(l) => l.zone_id,
        None => match zone_for(r53, domain, zone_id, None).await? {
            Ok(z) => z.id,
            Err(_) => return Ok(Vec::new()),
        },
    };
    if allowed.contains(&zone) {
        return Ok(Vec::new());
    }
    let mut zones: Vec<String> = allowed.to_vec();
    zones.push(zone.clone());
    Ok(vec![Problem::new(
        "loadBalancer.domain",
        format!(
            "stack {stack} serves {domain} from hosted zone {zone}, and this deployment may no longer write DNS records there: run `mbstack deploy --hosted-zones {}` first (nothing was touched)",
            zones.join(",")
        ),
    )])
}

/// Prepare's check of a domain new to `stack`, before anything exists: a
/// public hosted zone holds it (`zone_id`'s, or one found by the domain), and
/// no record is at the name yet but an alias to the stack's own load
/// balancer. Any other is someone else's, since the stack has written none
/// for a domain it never had: an A or AAAA record mbstack will not change, or
/// a CNAME, beside which Route 53 allows no other record. The problems name
/// the field to change.
/// `allowed`: the hosted zones the deployment may write records in (None: any).
pub async fn new_domain_problems(
    r53: &Client,
    stack: &str,
    domain: &str,
    zone_id: Option<&str>,
    allowed: Option<&[String]>,
) -> Result<Vec<mbstack_core::Problem>, TierError> {
    use mbstack_core::Problem;
    let zone = match zone_for(r53, domain, zone_id, allowed).await? {
        Ok(zone) => zone,
        Err(problem) => return Ok(vec![problem]),
    };
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .start_record_name(domain)
        .max_items(100)
        .send()
        .await
        .map_err(|e| aws_error("route53:ListResourceRecordSets", e))?;
    let taken: Vec<String> = out
        .resource_record_sets()
        .iter()
        // Weighted, latency, failover and geolocation sets too: Route 53
        // refuses a simple record of a name and type such a set holds.
        .filter(|s| norm(s.name()) == domain)
        .filter(|s| matches!(s.r#type(), RrType::A | RrType::Aaaa | RrType::Cname))
        // An alias to this stack's own load balancer (its name is the
        // stack's, unique in the region) is the stack's: a rollback that
        // kept a domain its listener already served leaves one.
        .filter(|s| {
            let own = format!("{}-", mbstack_core::naming::resource_name(stack, "alb"));
            !alias_of(s).is_some_and(|a| a.starts_with(&own) && a.ends_with(".amazonaws.com"))
        })
        .map(shown)
        .collect();
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let cname = if taken.iter().any(|t| t.starts_with("CNAME")) {
        " (Route 53 allows no other record beside a CNAME)"
    } else {
        ""
    };
    Ok(vec![Problem::new(
        "loadBalancer.domain",
        format!(
            "{domain} already has records in hosted zone {} ({}), which are not this stack's{cname}: mbstack will not change them; remove them or choose another name",
            zone.name,
            taken.join("; ")
        ),
    )])
}

impl Dns {
    /// The public hosted zone for `domain`: `given` (checked), else the zone
    /// whose name is the longest suffix of the domain.
    pub async fn zone(&self, domain: &str, given: Option<&str>) -> Result<Zone, TierError> {
        let holds = |zone: &str| domain == zone || domain.ends_with(&format!(".{zone}"));
        if let Some(id) = given {
            let call = self.r53.get_hosted_zone().id(id).send().await;
            let Some(out) = found("route53:GetHostedZone", call, &["NoSuchHostedZone"])? else {
                return Err(TierError::Terminal(format!(
                    "loadBalancer.hostedZoneId {id} does not exist in this account: use the ID of the public hosted zone that holds {domain}, or leave it out"
                )));
            };
            let z = out.hosted_zone().ok_or_else(|| {
                TierError::Terminal("route53:GetHostedZone returned no zone".into())
            })?;
            let name = norm(z.name());
            if z.config().is_some_and(|c| c.private_zone()) {
                return Err(TierError::Terminal(format!(
                    "hosted zone {id} ({name}) is private: ACM validates a certificate through public DNS only; use a public zone"
                )));
            }
            if !holds(&name) {
                return Err(TierError::Terminal(format!(
                    "hosted zone {id} is {name}, which does not hold {domain}: use the zone of {domain}'s parent, or leave loadBalancer.hostedZoneId out"
                )));
            }
            return Ok(Zone {
                id: id.to_string(),
                name,
            });
        }
        let mut best: Vec<Zone> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .r53
                .list_hosted_zones()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_error("route53:ListHostedZones", e))?;
            for z in out.hosted_zones() {
                let name = norm(z.name());
                if z.config().is_some_and(|c| c.private_zone()) || !holds(&name) {
                    continue;
                }
                let zone = Zone {
                    id: z.id().trim_start_matches("/hostedzone/").to_string(),
                    name,
                };
                match best.first() {
                    Some(b) if b.name.len() > zone.name.len() => {}
                    Some(b) if b.name.len() == zone.name.len() => best.push(zone),
                    _ => best = vec![zone],
                }
            }
            match out.next_marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        match best.len() {
            1 => Ok(best.remove(0)),
            0 => Err(TierError::Terminal(format!(
                "no public Route 53 hosted zone of this account holds {domain}: create one for its parent domain (and point the registrar's name servers at it), or set loadBalancer.hostedZoneId"
            ))),
            _ => Err(TierError::Terminal(format!(
                "{} public hosted zones are named {} ({}): set loadBalancer.hostedZoneId to the one the registrar delegates to",
                best.len(),
                best[0].name,
                best.iter().map(|z| z.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The record set `name`/`rtype` of `zone`, if any.
    pub async fn record(
        &self,
        zone: &Zone,
        name: &str,
        rtype: RrType,
    ) -> Result<Option<ResourceRecordSet>, TierError> {
        let out = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .start_record_name(name)
            .start_record_type(rtype.clone())
            .max_items(1)
            .send()
            .await
            .map_err(|e| aws_error("route53:ListResourceRecordSets", e))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|s| {
                norm(s.name()) == norm(name) && *s.r#type() == rtype && s.set_identifier().is_none()
            })
            .cloned())
    }

    /// One change of one record set. AWS refuses a CREATE of a record that
    /// exists and a DELETE of one that does not (or differs): both are errors
    /// here (the callers read first).
    pub async fn change(
        &self,
        zone: &Zone,
        action: ChangeAction,
        set: ResourceRecordSet,
    ) -> Result<(), TierError> {
        let change = build(
            "a Route 53 change",
            Change::builder()
                .action(action)
                .resource_record_set(set)
                .build(),
        )?;
        let batch = build(
            "a Route 53 change batch",
            ChangeBatch::builder()
                .comment("mbstack")
                .changes(change)
                .build(),
        )?;
        self.r53
            .change_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| aws_error("route53:ChangeResourceRecordSets", e))?;
        Ok(())
    }

    /// The CNAME ACM validates through.
    pub fn cname(name: &str, value: &str) -> Result<ResourceRecordSet, TierError> {
        let record = build(
            "a resource record",
            ResourceRecord::builder().value(value).build(),
        )?;
        build(
            "a record set",
            ResourceRecordSet::builder()
                .name(name)
                .r#type(RrType::Cname)
                .ttl(300)
                .resource_records(record)
                .build(),
        )
    }
}

/// The alias `A` record `<domain>` → the stack's load balancer.
pub(crate) struct Aliases {
    pub dns: Dns,
    pub zone: Option<Zone>,
    pub domain: Option<String>,
    /// The load balancer's DNS name and canonical hosted zone (None: planned).
    pub target: Option<(String, String)>,
    pub ledger: Option<Ledger>,
    pub stack: String,
    /// Taking the domain away: a record the ledger names that points
    /// elsewhere now (someone repointed it) is left alone, not deleted.
    pub keep_others: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Live {
    name: String,
    set: ResourceRecordSet,
    tags: Pairs,
}

/// Points an alias at the stack's load balancer (again).
pub(crate) struct Repoint(String);

impl std::fmt::Display for Repoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alias → {}", self.0)
    }
}

fn alias_of(set: &ResourceRecordSet) -> Option<String> {
    set.alias_target().map(|a| alias_norm(a.dns_name()))
}

/// A record as people read it: `A alias → <target>`, or `A 203.0.113.7`
/// for a plain one (its values).
fn shown(set: &ResourceRecordSet) -> String {
    let to = match alias_of(set) {
        Some(a) => format!("alias → {a}"),
        None => set
            .resource_records()
            .iter()
            .map(|r| r.value().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{} {to}", set.r#type().as_str())
}

impl Aliases {
    fn set(&self, name: &str) -> Result<ResourceRecordSet, TierError> {
        let Some((dns_name, zone)) = &self.target else {
            return Err(TierError::Terminal(
                "the alias record needs the load balancer's DNS name".into(),
            ));
        };
        let target = build(
            "an alias target",
            AliasTarget::builder()
                .hosted_zone_id(zone)
                .dns_name(dns_name)
                .evaluate_target_health(false)
                .build(),
        )?;
        build(
            "a record set",
            ResourceRecordSet::builder()
                .name(name)
                .r#type(RrType::A)
                .alias_target(target)
                .build(),
        )
    }
}

impl Resource for Aliases {
    const KIND: &'static str = "dns-record";
    const LABEL: &'static str = "DNS record";
    type Live = Live;
    type Want = String;
    type Step = Repoint;

    fn name(&self, _w: &Work<'_>, want: &String) -> String {
        want.clone()
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        Some(live.name.clone())
    }
    fn id(&self, live: &Live) -> String {
        format!("{} A", live.name)
    }
    /// Ours: the ledger names the domain, or the record points at our load
    /// balancer (written by a run that stopped before its ledger did not
    /// exist: the ledger is written first). The run that set it up is the
    /// ledger's.
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    async fn list(&self, _w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let (Some(zone), Some(domain)) = (&self.zone, &self.domain) else {
            return Ok(Vec::new());
        };
        let Some(set) = self.dns.record(zone, domain, RrType::A).await? else {
            return Ok(Vec::new());
        };
        let ledger = self.ledger.as_ref().filter(|l| l.domain == *domain);
        let at_ours = alias_of(&set).is_some()
            && alias_of(&set) == self.target.as_ref().map(|(d, _)| alias_norm(d));
        let elsewhere = !at_ours && self.target.is_some();
        let tags = match (ledger, at_ours) {
            (Some(_), false) if self.keep_others && elsewhere => Vec::new(),
            (Some(l), _) => vec![
                (STACK_TAG.to_string(), self.stack.clone()),
                (CREATED_BY_TAG.to_string(), l.run.clone()),
            ],
            (None, true) => vec![(STACK_TAG.to_string(), self.stack.clone())],
            (None, false) => Vec::new(),
        };
        Ok(vec![Live {
            name: domain.clone(),
            set,
            tags,
        }])
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, _want: &String) -> Result<Vec<Repoint>, TierError> {
        let Some((dns_name, _)) = &self.target else {
            return Ok(vec![]);
        };
        Ok(if alias_of(&live.set) == Some(alias_norm(dns_name)) {
            vec![]
        } else {
            vec![Repoint(dns_name.clone())]
        })
    }

    fn describe(&self, _w: &Work<'_>, _want: &String) -> String {
        match &self.target {
            Some((d, _)) => format!("alias → {d}"),
            None => "alias → the load balancer".into(),
        }
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        shown(&live.set)
    }

    async fn create(&self, _w: &Work<'_>, want: &String) -> Result<Live, TierError> {
        let (Some(zone), set) = (&self.zone, self.set(want)?) else {
            return Err(TierError::Terminal(
                "the alias record needs its hosted zone".into(),
            ));
        };
        self.dns
            .change(zone, ChangeAction::Create, set.clone())
            .await?;
        Ok(Live {
            name: want.clone(),
            set,
            tags: vec![(STACK_TAG.to_string(), self.stack.clone())],
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        _live: &Live,
        want: &String,
        _steps: &[Repoint],
    ) -> Result<Option<Live>, TierError> {
        let (Some(zone), set) = (&self.zone, self.set(want)?) else {
            return Err(TierError::Terminal(
                "the alias record needs its hosted zone".into(),
            ));
        };
        self.dns.change(zone, ChangeAction::Upsert, set).await?;
        Ok(None)
    }

    /// Deleted as read (Route 53 deletes a record set only by its exact values).
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        let Some(zone) = &self.zone else {
            return Ok(Deleted::Now);
        };
        match self
            .dns
            .change(zone, ChangeAction::Delete, live.set.clone())
            .await
        {
            Ok(()) => Ok(Deleted::Now),
            Err(e) => Err(e),
        }
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &[
            "route53:ListHostedZones",
            "route53:GetHostedZone",
            "route53:ListResourceRecordSets",
        ],
    ),
    // Records carry no tags: only the record types mbstack writes (the alias A
    // and ACM's validation CNAME), in any zone the account has.
    Permission::on(
        "WriteRecords",
        &["route53:ChangeResourceRecordSets"],
        // The zones the deployment names (`mbstack deploy --hosted-zones`),
        // or every zone when it names none in particular.
        &["arn:${Partition}:route53:::hostedzone/${HostedZoneId}"],
    )
    .when(
        r#"{"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["A", "CNAME"]}}"#,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;

    #[test]
    fn a_record_is_shown_by_its_values_or_its_alias() {
        let plain = ResourceRecordSet::builder()
            .name("bi.example.com.")
            .r#type(RrType::A)
            .ttl(300)
            .resource_records(
                ResourceRecord::builder()
                    .value("203.0.113.7")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(shown(&plain), "A 203.0.113.7");
        let alias = ResourceRecordSet::builder()
            .name("bi.example.com.")
            .r#type(RrType::A)
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id("Z35SXDOTRQ7X7K")
                    .dns_name("dualstack.other-alb-1.us-east-1.elb.amazonaws.com.")
                    .evaluate_target_health(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            shown(&alias),
            "A alias → other-alb-1.us-east-1.elb.amazonaws.com"
        );
    }

    const ALB_DNS: &str = "s-alb-1234567890.us-east-1.elb.amazonaws.com";

    fn aliases(target: Option<&str>) -> Aliases {
        Aliases {
            dns: Dns {
                r53: Client::from_conf(
                    aws_sdk_route53::Config::builder()
                        .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
                        .region(aws_sdk_route53::config::Region::new("us-east-1"))
                        .build(),
                ),
            },
            zone: Some(Zone {
                id: "Z0123456789ABCDEFGHIJ".into(),
                name: "example.com".into(),
            }),
            domain: Some("bi.example.com".into()),
            target: target.map(|d| (d.to_string(), "Z35SXDOTRQ7X7K".to_string())),
            ledger: None,
            stack: "s".into(),
            keep_others: false,
        }
    }

    /// The `bi.example.com` A record as Route 53 lists it.
    fn record(set: ResourceRecordSet) -> Live {
        Live {
            name: "bi.example.com".into(),
            set,
            tags: Vec::new(),
        }
    }

    /// An alias to `dns_name`, as Route 53 keeps it (final dot).
    fn alias_to(dns_name: &str) -> Live {
        record(
            ResourceRecordSet::builder()
                .name("bi.example.com.")
                .r#type(RrType::A)
                .alias_target(
                    AliasTarget::builder()
                        .hosted_zone_id("Z35SXDOTRQ7X7K")
                        .dns_name(dns_name)
                        .evaluate_target_health(false)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
    }

    fn repoints(steps: &[Repoint]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_alias_to_the_stacks_load_balancer_needs_no_change() {
        let mut spec = mbstack_core::StackSpec::new("s");
        spec.load_balancer.domain = Some("bi.example.com".into());
        let run = run();
        let w = Work::new(
            mbstack_core::Tier::LoadBalancer,
            &spec,
            &run,
            mbstack_core::Verb::Apply,
        );
        let want = "bi.example.com".to_string();
        // Route 53 may add `dualstack.` and keeps the final dot.
        let live = alias_to(&format!("dualstack.{ALB_DNS}."));
        let steps = aliases(Some(ALB_DNS)).diff(&w, &live, &want).unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn an_alias_to_another_load_balancer_or_a_plain_record_is_pointed_at_ours() {
        let mut spec = mbstack_core::StackSpec::new("s");
        spec.load_balancer.domain = Some("bi.example.com".into());
        let run = run();
        let w = Work::new(
            mbstack_core::Tier::LoadBalancer,
            &spec,
            &run,
            mbstack_core::Verb::Apply,
        );
        let want = "bi.example.com".to_string();
        let plain = record(
            ResourceRecordSet::builder()
                .name("bi.example.com.")
                .r#type(RrType::A)
                .ttl(300)
                .resource_records(
                    ResourceRecord::builder()
                        .value("203.0.113.7")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        );
        for live in [alias_to("other-alb-1.us-east-1.elb.amazonaws.com."), plain] {
            let steps = aliases(Some(ALB_DNS)).diff(&w, &live, &want).unwrap();
            assert_eq!(repoints(&steps), vec![format!("alias → {ALB_DNS}")]);
        }
        // A plan whose load balancer is not created yet has nothing to point at.
        let live = alias_to("other-alb-1.us-east-1.elb.amazonaws.com.");
        assert!(aliases(None).diff(&w, &live, &want).unwrap().is_empty());
    }
}
