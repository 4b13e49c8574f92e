//! The three security groups and their exact ingress: LB 80 (443 with a
//! certificate) from the allowed CIDRs; app 3000 from the LB group only; DB 5432
//! from the app group only. Any other ingress rule is revoked.

use aws_sdk_ec2::types::{
    IpPermission, IpRange, ResourceType, SecurityGroup, SecurityGroupRule, UserIdGroupPair,
};
use mbstack_core::iam::Permission;
use mbstack_core::naming::NAME_TAG;
use mbstack_core::{aws_error, Action, StackSpec, TierError};

use crate::ctx::{filter, name_of, tag, Ctx};

pub(crate) const KIND: &str = "security-group";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    LoadBalancer,
    App,
    Database,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::LoadBalancer, Role::App, Role::Database];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::LoadBalancer => "lb",
            Role::App => "app",
            Role::Database => "db",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Role::LoadBalancer => "load balancer: HTTP(S) from the allowed CIDRs",
            Role::App => "Metabase tasks: 3000 from the load balancer only",
            Role::Database => "PostgreSQL: 5432 from the Metabase tasks only",
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
struct Rule {
    port: i32,
    source: Source,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
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
}

impl Groups {
    fn get(&self, role: Role) -> Option<&String> {
        match role {
            Role::LoadBalancer => self.lb.as_ref(),
            Role::App => self.app.as_ref(),
            Role::Database => self.db.as_ref(),
        }
    }

    fn set(&mut self, role: Role, id: Option<String>) {
        match role {
            Role::LoadBalancer => self.lb = id,
            Role::App => self.app = id,
            Role::Database => self.db = id,
        }
    }
}

fn wanted_rules(spec: &StackSpec, role: Role, groups: &Groups) -> Vec<Rule> {
    let mut rules = match role {
        Role::LoadBalancer => {
            let mut ports = vec![80];
            if spec.load_balancer.certificate_arn.is_some() {
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
    };
    rules.sort();
    rules
}

fn rule_of(r: &SecurityGroupRule) -> Option<Rule> {
    if r.ip_protocol() != Some("tcp") || r.from_port() != r.to_port() {
        return None;
    }
    let port = r.from_port()?;
    let source = match (
        r.cidr_ipv4(),
        r.referenced_group_info().and_then(|g| g.group_id()),
    ) {
        (Some(c), None) => Source::Cidr(c.to_string()),
        (None, Some(g)) => Source::Group(Some(g.to_string())),
        _ => return None,
    };
    Some(Rule { port, source })
}

async fn list(ctx: &Ctx<'_>) -> Result<Vec<SecurityGroup>, TierError> {
    let out = ctx
        .ec2
        .describe_security_groups()
        .filters(ctx.stack_filter())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSecurityGroups", e))?;
    Ok(ctx.only_ours(out.security_groups(), |g| g.tags()))
}

async fn ingress_rules(
    ctx: &Ctx<'_>,
    group_ids: &[&str],
) -> Result<Vec<SecurityGroupRule>, TierError> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ctx
        .ec2
        .describe_security_group_rules()
        .filters(filter("group-id", group_ids))
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeSecurityGroupRules", e))?;
    Ok(out
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() != Some(true))
        .cloned()
        .collect())
}

/// Finds or creates the three groups and converges their ingress rules.
pub(crate) async fn ensure(ctx: &mut Ctx<'_>, vpc_id: Option<&str>) -> Result<Groups, TierError> {
    let existing = match vpc_id {
        Some(_) => list(ctx).await?,
        None => Vec::new(),
    };
    let mut groups = Groups::default();
    let mut created = Vec::new();
    for role in Role::ALL {
        let name = ctx.name(role.as_str());
        let found = existing
            .iter()
            .find(|g| tag(g.tags(), NAME_TAG) == Some(name.as_str()) && g.vpc_id() == vpc_id);
        let id = match (found, vpc_id) {
            (Some(g), _) => g.group_id().map(str::to_string),
            (None, Some(vpc)) if !ctx.dry_run => {
                let out = ctx
                    .ec2
                    .create_security_group()
                    .group_name(&name)
                    .description(format!(
                        "mbstack {}: {}",
                        ctx.spec.stack,
                        role.description()
                    ))
                    .vpc_id(vpc)
                    .tag_specifications(ctx.tag_spec(ResourceType::SecurityGroup, role.as_str()))
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:CreateSecurityGroup", e))?;
                let id = out
                    .group_id()
                    .ok_or_else(|| {
                        TierError::Terminal("ec2:CreateSecurityGroup returned no id".into())
                    })?
                    .to_string();
                created.push(role);
                Some(id)
            }
            (None, _) => {
                created.push(role);
                None
            }
        };
        groups.set(role, id);
    }

    let ids: Vec<&str> = Role::ALL
        .iter()
        .filter_map(|r| groups.get(*r).map(String::as_str))
        .collect();
    let actual = ingress_rules(ctx, &ids).await?;
    for role in Role::ALL {
        let want = wanted_rules(ctx.spec, role, &groups);
        let Some(id) = groups.get(role).cloned() else {
            let rules: Vec<String> = want.iter().map(Rule::to_string).collect();
            ctx.record_named(
                KIND,
                role.as_str(),
                Action::Create,
                format!("ingress {}", rules.join(", ")),
            );
            continue;
        };
        let mine: Vec<&SecurityGroupRule> = actual
            .iter()
            .filter(|r| r.group_id() == Some(id.as_str()))
            .collect();
        let have: Vec<Option<Rule>> = mine.iter().map(|r| rule_of(r)).collect();
        let extra: Vec<(&SecurityGroupRule, String)> = mine
            .iter()
            .zip(&have)
            .filter(|(_, h)| h.as_ref().is_none_or(|h| !want.contains(h)))
            .map(|(r, h)| {
                (
                    *r,
                    h.as_ref()
                        .map(Rule::to_string)
                        .unwrap_or_else(|| describe_raw(r)),
                )
            })
            .collect();
        let missing: Vec<&Rule> = want
            .iter()
            .filter(|w| !have.iter().flatten().any(|h| h == *w))
            .collect();
        if !extra.is_empty() && !ctx.dry_run {
            let rule_ids: Vec<String> = extra
                .iter()
                .filter_map(|(r, _)| r.security_group_rule_id().map(str::to_string))
                .collect();
            ctx.ec2
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_security_group_rule_ids(Some(rule_ids))
                .send()
                .await
                .map_err(|e| aws_error("ec2:RevokeSecurityGroupIngress", e))?;
        }
        if !missing.is_empty() && !ctx.dry_run {
            let mut call = ctx
                .ec2
                .authorize_security_group_ingress()
                .group_id(&id)
                .tag_specifications(ctx.tag_spec(
                    ResourceType::SecurityGroupRule,
                    &format!("{}-ingress", role.as_str()),
                ));
            for rule in &missing {
                call = call.ip_permissions(permission(rule, role)?);
            }
            call.send()
                .await
                .map_err(|e| aws_error("ec2:AuthorizeSecurityGroupIngress", e))?;
        }
        let mut steps: Vec<String> = missing.iter().map(|r| format!("+{r}")).collect();
        steps.extend(extra.iter().map(|(_, r)| format!("-{r}")));
        let action = if created.contains(&role) {
            Action::Create
        } else if steps.is_empty() {
            Action::None
        } else {
            Action::Update
        };
        let detail = if steps.is_empty() {
            format!(
                "ingress {}",
                want.iter()
                    .map(Rule::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            steps.join("; ")
        };
        ctx.record(KIND, id, action, detail);
    }
    Ok(groups)
}

fn describe_raw(r: &SecurityGroupRule) -> String {
    format!(
        "{}/{}-{} from {}",
        r.ip_protocol().unwrap_or("?"),
        r.from_port().unwrap_or(-1),
        r.to_port().unwrap_or(-1),
        r.cidr_ipv4()
            .or(r.cidr_ipv6())
            .or(r.prefix_list_id())
            .or(r.referenced_group_info().and_then(|g| g.group_id()))
            .unwrap_or("?")
    )
}

fn permission(rule: &Rule, role: Role) -> Result<IpPermission, TierError> {
    let b = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(rule.port)
        .to_port(rule.port);
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

/// Destroy: DB, app, then LB group (each referenced by the one before). Rules of
/// other stack groups that reference a group are revoked first, so a rollback
/// that deletes only one group is not blocked by its neighbour's rule.
pub(crate) async fn delete(ctx: &mut Ctx<'_>) -> Result<(), TierError> {
    let groups = list(ctx).await?;
    for role in [Role::Database, Role::App, Role::LoadBalancer] {
        let name = ctx.name(role.as_str());
        let Some(g) = groups
            .iter()
            .find(|g| tag(g.tags(), NAME_TAG) == Some(name.as_str()))
        else {
            continue;
        };
        if !ctx.owns(g.tags()) {
            continue;
        }
        let id = g.group_id().unwrap_or_default().to_string();
        let others: Vec<&str> = groups
            .iter()
            .filter_map(|o| o.group_id())
            .filter(|o| *o != id)
            .collect();
        for r in ingress_rules(ctx, &others).await? {
            if r.referenced_group_info().and_then(|x| x.group_id()) == Some(id.as_str()) {
                if let (Some(gid), Some(rid)) = (r.group_id(), r.security_group_rule_id()) {
                    ctx.ec2
                        .revoke_security_group_ingress()
                        .group_id(gid)
                        .security_group_rule_ids(rid)
                        .send()
                        .await
                        .map_err(|e| aws_error("ec2:RevokeSecurityGroupIngress", e))?;
                }
            }
        }
        ctx.ec2
            .delete_security_group()
            .group_id(&id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DeleteSecurityGroup", e))?;
        ctx.record(KIND, id, Action::Delete, name_of(g.tags()).to_string());
    }
    Ok(())
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &[
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSecurityGroupRules",
        ],
    ),
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
