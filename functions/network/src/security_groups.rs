//! The three security groups and their exact ingress: LB 80 (443 with a
//! certificate) from the allowed CIDRs; app 3000 from the LB group only; DB 5432
//! from the app group only; and with `nat: instance` a fourth, the NAT
//! instance's: all traffic from the private subnets only. Any other ingress
//! rule is revoked.

use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroup, UserIdGroupPair,
};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::{aws_error, StackSpec, TierError};

use std::sync::Mutex;

use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::Work;

use crate::tags::{filter, pairs, stack_filter, tag, tag_spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    LoadBalancer,
    App,
    Database,
    /// The NAT instance's (`nat: instance`).
    Nat,
}

impl Role {
    /// The groups every stack has.
    pub const ALL: [Role; 3] = [Role::LoadBalancer, Role::App, Role::Database];
    /// Every group a stack may have.
    const EVERY: [Role; 4] = [Role::LoadBalancer, Role::App, Role::Database, Role::Nat];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::LoadBalancer => "lb",
            Role::App => "app",
            Role::Database => "db",
            Role::Nat => "nat",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Role::LoadBalancer => "load balancer: HTTP(S) from the allowed CIDRs",
            Role::App => "Metabase tasks: 3000 from the load balancer only",
            Role::Database => "PostgreSQL: 5432 from the Metabase tasks only",
            Role::Nat => "NAT instance: all traffic from the private subnets only",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Cidr(String),
    /// A security group (None: planned, not created yet).
    Group(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    /// A TCP port, or [`ALL_TRAFFIC`].
    port: i32,
    source: Source,
}

/// A rule's "port" for every protocol and port (IpProtocol `-1`).
const ALL_TRAFFIC: i32 = -1;

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Cidr(c) if self.port == ALL_TRAFFIC => write!(f, "all traffic from {c}"),
            Source::Cidr(c) => write!(f, "tcp/{} from {c}", self.port),
            Source::Group(Some(g)) => write!(f, "tcp/{} from {g}", self.port),
            Source::Group(None) => write!(f, "tcp/{} from a new group", self.port),
        }
    }
}

/// The ids of the three groups (None: planned).
#[derive(Debug, Clone, Default)]
pub(crate) struct Groups {
    pub lb: Option<String>,
    pub app: Option<String>,
    pub db: Option<String>,
    pub nat: Option<String>,
}

impl Groups {
    fn get(&self, role: Role) -> Option<&String> {
        match role {
            Role::LoadBalancer => self.lb.as_ref(),
            Role::App => self.app.as_ref(),
            Role::Database => self.db.as_ref(),
            Role::Nat => self.nat.as_ref(),
        }
    }

    fn set(&mut self, role: Role, id: Option<String>) {
        match role {
            Role::LoadBalancer => self.lb = id,
            Role::App => self.app = id,
            Role::Database => self.db = id,
            Role::Nat => self.nat = id,
        }
    }
}

/// `private`: the private subnets' CIDRs (the NAT instance's sources).
fn wanted_rules(spec: &StackSpec, role: Role, groups: &Groups, private: &[String]) -> Vec<Rule> {
    let mut rules = match role {
        Role::LoadBalancer => {
            let mut ports = vec![80];
            if spec.load_balancer.https() {
                ports.push(443);
            }
            ports
                .into_iter()
                .flat_map(|port| {
                    spec.load_balancer.allowed_cidrs.iter().map(move |c| Rule {
                        port,
                        source: Source::Cidr(c.clone()),
                    })
                })
                .collect()
        }
        Role::App => vec![Rule {
            port: 3000,
            source: Source::Group(groups.lb.clone()),
        }],
        Role::Database => vec![Rule {
            port: 5432,
            source: Source::Group(groups.app.clone()),
        }],
        Role::Nat => private
            .iter()
            .map(|c| Rule {
                port: ALL_TRAFFIC,
                source: Source::Cidr(c.clone()),
            })
            .collect(),
    };
    rules.sort();
    rules
}

/// Where one ingress rule lets traffic in from, as DescribeSecurityGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Cidr(String),
    Cidr6(String),
    Group(String),
    PrefixList(String),
}

/// One ingress rule as the group has it: a protocol, its ports and one source
/// (DescribeSecurityGroups' IpPermissions, one entry a source), so that the
/// group's own read needs no DescribeSecurityGroupRules and any rule can be
/// revoked by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Had {
    protocol: String,
    from_port: Option<i32>,
    to_port: Option<i32>,
    from: Origin,
}

impl Had {
    /// Every rule of `group`'s ingress.
    fn all_of(group: &SecurityGroup) -> Vec<Had> {
        let mut out = Vec::new();
        for p in group.ip_permissions() {
            let had = |from| Had {
                protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                from,
            };
            out.extend(
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip())
                    .map(|c| had(Origin::Cidr(c.to_string()))),
            );
            out.extend(
                p.ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6())
                    .map(|c| had(Origin::Cidr6(c.to_string()))),
            );
            out.extend(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .map(|g| had(Origin::Group(g.to_string()))),
            );
            out.extend(
                p.prefix_list_ids()
                    .iter()
                    .filter_map(|l| l.prefix_list_id())
                    .map(|l| had(Origin::PrefixList(l.to_string()))),
            );
        }
        out
    }

    /// The rule as ours reads, when it is one of the shape we make.
    fn rule(&self) -> Option<Rule> {
        let port = match self.protocol.as_str() {
            "-1" => ALL_TRAFFIC,
            "tcp" if self.from_port == self.to_port => self.from_port?,
            _ => return None,
        };
        let source = match &self.from {
            Origin::Cidr(c) => Source::Cidr(c.clone()),
            Origin::Group(g) => Source::Group(Some(g.clone())),
            Origin::Cidr6(_) | Origin::PrefixList(_) => return None,
        };
        Some(Rule { port, source })
    }

    /// The permission that revokes exactly this rule.
    fn permission(&self) -> IpPermission {
        let b = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        match &self.from {
            Origin::Cidr(c) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Origin::Cidr6(c) => b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
            Origin::Group(g) => {
                b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
            }
            Origin::PrefixList(l) => {
                b.prefix_list_ids(PrefixListId::builder().prefix_list_id(l).build())
            }
        }
        .build()
    }
}

impl std::fmt::Display for Had {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match &self.from {
            Origin::Cidr(x) | Origin::Cidr6(x) | Origin::Group(x) | Origin::PrefixList(x) => x,
        };
        write!(
            f,
            "{}/{}-{} from {from}",
            self.protocol,
            self.from_port.unwrap_or(-1),
            self.to_port.unwrap_or(-1)
        )
    }
}

/// The stack's three security groups in the VPC `vpc_id` (None: planned). A
/// rule of one group names another by ID: `ids` holds the IDs known so far
/// (those found by `list`, then each one `create` makes), so a group created in
/// this run is referenced by the next one's rules.
pub(crate) struct SecurityGroups {
    pub ec2: aws_sdk_ec2::Client,
    pub vpc_id: Option<String>,
    ids: Mutex<Groups>,
    /// The private subnets' CIDRs: the NAT instance's group admits them.
    private: Vec<String>,
}

/// A group (its ingress rules in its IpPermissions).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    group: SecurityGroup,
}

/// One change of a group's ingress.
pub(crate) enum Step {
    Authorize(Rule),
    Revoke(Had),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Authorize(r) => write!(f, "+{r}"),
            Step::Revoke(h) => match h.rule() {
                Some(r) => write!(f, "-{r}"),
                None => write!(f, "-{h}"),
            },
        }
    }
}

fn role_of(w: &Work<'_>, g: &SecurityGroup) -> Option<Role> {
    let name = tag(g.tags(), NAME_TAG)?;
    Role::EVERY.into_iter().find(|r| w.name(r.as_str()) == name)
}

impl SecurityGroups {
    pub fn new(ec2: aws_sdk_ec2::Client, vpc_id: Option<String>) -> Self {
        Self {
            ec2,
            vpc_id,
            ids: Mutex::new(Groups::default()),
            private: Vec::new(),
        }
    }

    /// The private subnets' CIDRs, which the NAT instance's group admits.
    pub fn admitting(mut self, private: Vec<String>) -> Self {
        self.private = private;
        self
    }

    /// The groups' IDs after a converge (None: planned).
    pub fn groups(&self) -> Groups {
        self.ids.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn know(&self, role: Role, id: Option<String>) {
        if let Ok(mut g) = self.ids.lock() {
            g.set(role, id);
        }
    }

    fn wanted(&self, w: &Work<'_>, role: Role) -> Vec<Rule> {
        wanted_rules(w.spec, role, &self.groups(), &self.private)
    }

    /// The groups of `group_ids` that still exist (a filter: one already gone
    /// is no error).
    async fn by_id(&self, group_ids: &[&str]) -> Result<Vec<SecurityGroup>, TierError> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ec2
            .describe_security_groups()
            .filters(filter("group-id", group_ids))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeSecurityGroups", e))?;
        Ok(out.security_groups().to_vec())
    }

    async fn authorize(
        &self,
        w: &Work<'_>,
        id: &str,
        role: Role,
        rules: &[&Rule],
    ) -> Result<(), TierError> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut call = self
            .ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .tag_specifications(tag_spec(
                w,
                ResourceType::SecurityGroupRule,
                &format!("{}-ingress", role.as_str()),
            ));
        for rule in rules {
            call = call.ip_permissions(permission(rule, role)?);
        }
        call.send()
            .await
            .map_err(|e| aws_error("ec2:AuthorizeSecurityGroupIngress", e))?;
        Ok(())
    }

    async fn revoke(&self, group: &str, rules: &[&Had]) -> Result<(), TierError> {
        if rules.is_empty() {
            return Ok(());
        }
        self.ec2
            .revoke_security_group_ingress()
            .group_id(group)
            .set_ip_permissions(Some(rules.iter().map(|h| h.permission()).collect()))
            .send()
            .await
            .map_err(|e| aws_error("ec2:RevokeSecurityGroupIngress", e))?;
        Ok(())
    }
}

impl Resource for SecurityGroups {
    const KIND: &'static str = "security-group";
    const LABEL: &'static str = "security group";
    type Live = Live;
    type Want = Role;
    type Step = Step;

    fn name(&self, w: &Work<'_>, role: &Role) -> String {
        w.name(role.as_str())
    }
    fn live_name(&self, live: &Live) -> Option<String> {
        tag(live.group.tags(), NAME_TAG).map(str::to_string)
    }
    fn id(&self, live: &Live) -> String {
        live.group.group_id().unwrap_or_default().to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        pairs(live.group.tags())
    }

    /// The stack's groups (in the stack's VPC, when it is known) in the order
    /// destroy deletes them: DB, app, LB (each referenced by the one before).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(stack_filter(w))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeSecurityGroups", e))?;
        let mut groups: Vec<SecurityGroup> = out
            .security_groups()
            .iter()
            .filter(|g| w.is_ours(&pairs(g.tags())))
            .filter(|g| self.vpc_id.is_none() || g.vpc_id() == self.vpc_id.as_deref())
            .cloned()
            .collect();
        groups.sort_by_key(|g| match role_of(w, g) {
            Some(Role::Nat) => 0,
            Some(Role::Database) => 1,
            Some(Role::App) => 2,
            Some(Role::LoadBalancer) => 3,
            None => 4,
        });
        for g in &groups {
            if let Some(role) = role_of(w, g) {
                self.know(role, g.group_id().map(str::to_string));
            }
        }
        Ok(groups.into_iter().map(|group| Live { group }).collect())
    }

    /// Exactly the wanted rules: the missing authorized, any other revoked.
    fn diff(&self, w: &Work<'_>, live: &Live, role: &Role) -> Result<Vec<Step>, TierError> {
        let want = self.wanted(w, *role);
        let had = Had::all_of(&live.group);
        let mut steps: Vec<Step> = want
            .iter()
            .filter(|w| !had.iter().any(|h| h.rule().as_ref() == Some(*w)))
            .cloned()
            .map(Step::Authorize)
            .collect();
        for h in had {
            if h.rule().is_none_or(|r| !want.contains(&r)) {
                steps.push(Step::Revoke(h));
            }
        }
        Ok(steps)
    }

    fn describe(&self, w: &Work<'_>, role: &Role) -> String {
        ingress(&self.wanted(w, *role))
    }
    fn summary(&self, w: &Work<'_>, live: &Live) -> String {
        role_of(w, &live.group)
            .map(|role| ingress(&self.wanted(w, role)))
            .unwrap_or_default()
    }

    async fn create(&self, w: &Work<'_>, role: &Role) -> Result<Live, TierError> {
        let vpc = self.vpc_id.as_deref().ok_or_else(|| {
            TierError::Terminal("a security group needs the VPC, which does not exist".into())
        })?;
        let name = w.name(role.as_str());
        let out = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(format!("mbstack {}: {}", w.spec.stack, role.description()))
            .vpc_id(vpc)
            .tag_specifications(tag_spec(w, ResourceType::SecurityGroup, role.as_str()))
            .send()
            .await
            .map_err(|e| aws_error("ec2:CreateSecurityGroup", e))?;
        let id = out
            .group_id()
            .ok_or_else(|| TierError::Terminal("ec2:CreateSecurityGroup returned no id".into()))?
            .to_string();
        self.know(*role, Some(id.clone()));
        let want = self.wanted(w, *role);
        self.authorize(w, &id, *role, &want.iter().collect::<Vec<_>>())
            .await?;
        let tags = tag_spec(w, ResourceType::SecurityGroup, role.as_str())
            .tags()
            .to_vec();
        Ok(Live {
            group: SecurityGroup::builder()
                .group_id(id)
                .group_name(name)
                .vpc_id(vpc)
                .set_tags(Some(tags))
                .build(),
        })
    }

    async fn update(
        &self,
        w: &Work<'_>,
        live: &Live,
        _want: &Role,
        steps: &[Step],
    ) -> Result<Option<Live>, TierError> {
        let id = self.id(live);
        let revoke: Vec<&Had> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Revoke(h) => Some(h),
                Step::Authorize(_) => None,
            })
            .collect();
        self.revoke(&id, &revoke).await?;
        let add: Vec<&Rule> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Authorize(r) => Some(r),
                Step::Revoke(..) => None,
            })
            .collect();
        if let Some(role) = role_of(w, &live.group) {
            self.authorize(w, &id, role, &add).await?;
        }
        Ok(None)
    }

    /// Rules of the stack's other groups that reference this one are revoked
    /// first, so a rollback that deletes only one group is not blocked by its
    /// neighbour's rule.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        let id = self.id(live);
        let known = self.groups();
        let others: Vec<&str> = Role::EVERY
            .iter()
            .filter_map(|r| known.get(*r).map(String::as_str))
            .filter(|o| *o != id)
            .collect();
        for other in self.by_id(&others).await? {
            let had = Had::all_of(&other);
            let naming: Vec<&Had> = had
                .iter()
                .filter(|h| h.from == Origin::Group(id.clone()))
                .collect();
            if let Some(gid) = other.group_id() {
                self.revoke(gid, &naming).await?;
            }
        }
        self.ec2
            .delete_security_group()
            .group_id(&id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteSecurityGroup", e))?;
        Ok(Deleted::Now)
    }
}

fn ingress(rules: &[Rule]) -> String {
    format!(
        "ingress {}",
        rules
            .iter()
            .map(Rule::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn permission(rule: &Rule, role: Role) -> Result<IpPermission, TierError> {
    let b = match rule.port {
        ALL_TRAFFIC => IpPermission::builder().ip_protocol("-1"),
        port => IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port),
    };
    Ok(match &rule.source {
        Source::Cidr(c) => b
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(c)
                    .description(format!("mbstack {}", role.as_str()))
                    .build(),
            )
            .build(),
        Source::Group(Some(g)) => b
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
            .build(),
        Source::Group(None) => {
            return Err(TierError::Terminal(
                "a referenced security group was not created".into(),
            ))
        }
    })
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read("Read", &["ec2:DescribeSecurityGroups"]),
    Permission::create_tagged(
        "CreateTagged",
        &[
            "ec2:CreateSecurityGroup",
            "ec2:AuthorizeSecurityGroupIngress",
        ],
    ),
    Permission::own_tagged(
        "ChangeTagged",
        &[
            "ec2:CreateSecurityGroup",
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:DeleteSecurityGroup",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ec2, run};
    use mbstack_core::{Tier, Verb};

    /// The stack's groups, the load balancer's known as `sg-lb` (as `list`
    /// learns it).
    fn kind() -> SecurityGroups {
        let sg = SecurityGroups::new(ec2(), Some("vpc-1".into()));
        sg.know(Role::LoadBalancer, Some("sg-lb".into()));
        sg
    }

    fn tcp_from(port: i32, cidr: &str) -> IpPermission {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    }

    fn group(id: &str, ingress: Vec<IpPermission>) -> Live {
        Live {
            group: SecurityGroup::builder()
                .group_id(id)
                .set_ip_permissions(Some(ingress))
                .build(),
        }
    }

    fn shown(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_load_balancer_group_open_on_80_to_the_allowed_cidrs_needs_no_change() {
        // The default spec: HTTP only, from 0.0.0.0/0.
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let live = group("sg-lb", vec![tcp_from(80, "0.0.0.0/0")]);
        let steps = kind().diff(&w, &live, &Role::LoadBalancer).unwrap();
        assert!(steps.is_empty(), "{:?}", shown(&steps));
    }

    #[test]
    fn a_certificate_opens_443_and_any_other_rule_is_revoked() {
        let mut spec = StackSpec::new("s");
        spec.load_balancer.certificate_arn =
            Some("arn:aws:acm:us-east-1:123456789012:certificate/abc".into());
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let live = group(
            "sg-lb",
            vec![tcp_from(80, "0.0.0.0/0"), tcp_from(22, "10.0.0.0/8")],
        );
        let steps = kind().diff(&w, &live, &Role::LoadBalancer).unwrap();
        assert_eq!(
            shown(&steps),
            vec!["+tcp/443 from 0.0.0.0/0", "-tcp/22 from 10.0.0.0/8"]
        );
    }

    #[test]
    fn the_app_group_takes_3000_from_the_load_balancer_group_only() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Network, &spec, &run, Verb::Apply);
        let live = group("sg-app", vec![tcp_from(3000, "0.0.0.0/0")]);
        let steps = kind().diff(&w, &live, &Role::App).unwrap();
        assert_eq!(
            shown(&steps),
            vec!["+tcp/3000 from sg-lb", "-tcp/3000 from 0.0.0.0/0"]
        );
    }
}
