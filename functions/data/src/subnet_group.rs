//! The DB subnet group over the network tier's private subnets.

use aws_sdk_rds::types::DbSubnetGroup;
use mbstack_core::iam::Permission;
use mbstack_core::naming::{legacy_rds_name, rds_name};
use mbstack_core::resource::{Deleted, Resource};
use mbstack_core::{aws_error, found, TierError, Work};

use crate::tags::{pairs, rds_tags};

pub const ROLE: &str = "db";

/// The stack's DB subnet group over `subnets` (None: not known, as in a plan
/// of a new stack or a check).
pub(crate) struct SubnetGroups {
    pub rds: aws_sdk_rds::Client,
    pub subnets: Option<Vec<String>>,
    /// The stack's name (its group is `rds_name`, or the legacy name of an
    /// older stack).
    pub stack: String,
}

/// A subnet group with its tags (read apart).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    group: DbSubnetGroup,
    tags: Vec<(String, String)>,
}

/// Its subnets change: (have, want), sorted.
pub(crate) struct SetSubnets(Vec<String>, Vec<String>);

impl std::fmt::Display for SetSubnets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subnets {} → {}", self.0.join(", "), self.1.join(", "))
    }
}

fn subnets_of(group: &DbSubnetGroup) -> Vec<String> {
    let mut have: Vec<String> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    have.sort();
    have
}

impl SubnetGroups {
    /// The group `name` with its tags, if it exists.
    async fn read(&self, name: &str) -> Result<Vec<Live>, TierError> {
        let call = self
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await;
        let codes = ["DBSubnetGroupNotFoundFault", "DBSubnetGroupNotFound"];
        let Some(out) = found("rds:DescribeDBSubnetGroups", call, &codes)? else {
            return Ok(Vec::new());
        };
        let mut groups = Vec::new();
        for group in out.db_subnet_groups() {
            let tags = match group.db_subnet_group_arn() {
                Some(arn) => {
                    let out = self
                        .rds
                        .list_tags_for_resource()
                        .resource_name(arn)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:ListTagsForResource", e))?;
                    pairs(out.tag_list())
                }
                None => Vec::new(),
            };
            groups.push(Live {
                group: group.clone(),
                tags,
            });
        }
        Ok(groups)
    }
}

impl Resource for SubnetGroups {
    const KIND: &'static str = "db-subnet-group";
    const LABEL: &'static str = "DB subnet group";
    type Live = Live;
    type Want = ();
    type Step = SetSubnets;

    fn name(&self, w: &Work<'_>, _want: &()) -> String {
        rds_name(&w.spec.stack)
    }
    /// A legacy-named group is the stack's group all the same.
    fn live_name(&self, live: &Live) -> Option<String> {
        let name = live.group.db_subnet_group_name()?;
        Some(if name == legacy_rds_name(&self.stack) {
            rds_name(&self.stack)
        } else {
            name.to_string()
        })
    }
    fn id(&self, live: &Live) -> String {
        live.group
            .db_subnet_group_name()
            .unwrap_or_default()
            .to_string()
    }
    fn tags(&self, live: &Live) -> Vec<(String, String)> {
        live.tags.clone()
    }

    /// The group by its name, else by the legacy name when it carries the
    /// stack's tag (a foreign `<stack>-db` is not the stack's).
    async fn list(&self, w: &Work<'_>) -> Result<Vec<Live>, TierError> {
        for name in [rds_name(&w.spec.stack), legacy_rds_name(&w.spec.stack)] {
            let legacy = name != rds_name(&w.spec.stack);
            let found: Vec<Live> = self
                .read(&name)
                .await?
                .into_iter()
                .filter(|g| !legacy || crate::instance::is_stacks(&g.tags, &w.spec.stack))
                .collect();
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }

    fn diff(&self, _w: &Work<'_>, live: &Live, _want: &()) -> Result<Vec<SetSubnets>, TierError> {
        let have = subnets_of(&live.group);
        Ok(match &self.subnets {
            Some(want) => {
                let mut want = want.clone();
                want.sort();
                if want == have {
                    vec![]
                } else {
                    vec![SetSubnets(have, want)]
                }
            }
            None => vec![],
        })
    }

    fn describe(&self, _w: &Work<'_>, _want: &()) -> String {
        match &self.subnets {
            Some(s) => format!("subnets {}", s.join(", ")),
            None => "over the private subnets".into(),
        }
    }
    fn summary(&self, _w: &Work<'_>, live: &Live) -> String {
        format!("subnets {}", subnets_of(&live.group).join(", "))
    }

    async fn create(&self, w: &Work<'_>, _want: &()) -> Result<Live, TierError> {
        let subnets = self.subnets.clone().ok_or_else(|| {
            TierError::Terminal("the DB subnet group needs the network's private subnets".into())
        })?;
        let out = self
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(rds_name(&w.spec.stack))
            .db_subnet_group_description(format!(
                "mbstack {}: Metabase's database, private subnets",
                w.spec.stack
            ))
            .set_subnet_ids(Some(subnets))
            .set_tags(Some(rds_tags(w, ROLE)))
            .send()
            .await
            .map_err(|e| aws_error("rds:CreateDBSubnetGroup", e))?;
        let group = out.db_subnet_group().cloned().unwrap_or_else(|| {
            DbSubnetGroup::builder()
                .db_subnet_group_name(rds_name(&w.spec.stack))
                .build()
        });
        Ok(Live {
            group,
            tags: w.tags(ROLE),
        })
    }

    async fn update(
        &self,
        _w: &Work<'_>,
        live: &Live,
        _want: &(),
        steps: &[SetSubnets],
    ) -> Result<Option<Live>, TierError> {
        for SetSubnets(_, want) in steps {
            self.rds
                .modify_db_subnet_group()
                .db_subnet_group_name(self.id(live))
                .set_subnet_ids(Some(want.clone()))
                .send()
                .await
                .map_err(|e| aws_error("rds:ModifyDBSubnetGroup", e))?;
        }
        Ok(None)
    }

    /// The instance must be gone first.
    async fn delete(&self, _w: &Work<'_>, live: &Live) -> Result<Deleted, TierError> {
        self.rds
            .delete_db_subnet_group()
            .db_subnet_group_name(self.id(live))
            .send()
            .await
            .map_err(|e| aws_error("rds:DeleteDBSubnetGroup", e))?;
        Ok(Deleted::Now)
    }
}

/// The IAM permissions of the calls in this file (see `mbstack_core::iam`).
pub(crate) const PERMISSIONS: &[Permission] = &[
    Permission::read(
        "Read",
        &["rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"],
    ),
    Permission::create_tagged("CreateTagged", &["rds:CreateDBSubnetGroup"]),
    Permission::own_tagged(
        "ChangeTagged",
        &["rds:ModifyDBSubnetGroup", "rds:DeleteDBSubnetGroup"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{rds, run};
    use mbstack_core::outputs::NetworkOutputs;
    use mbstack_core::{StackSpec, Tier, Verb};

    /// The kind over the network's private subnets, as the tier reads them
    /// from the network's outputs (in the network's order, not sorted).
    fn kind() -> SubnetGroups {
        let net = NetworkOutputs {
            private_subnet_ids: vec![Some("subnet-b".into()), Some("subnet-a".into())],
            ..Default::default()
        };
        SubnetGroups {
            rds: rds(),
            subnets: net.private_subnets(),
            stack: "s".into(),
        }
    }

    fn group(subnets: &[&str]) -> Live {
        let subnets: Vec<aws_sdk_rds::types::Subnet> = subnets
            .iter()
            .map(|s| {
                aws_sdk_rds::types::Subnet::builder()
                    .subnet_identifier(*s)
                    .build()
            })
            .collect();
        Live {
            group: DbSubnetGroup::builder()
                .db_subnet_group_name(rds_name("s"))
                .set_subnets(Some(subnets))
                .build(),
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_group_over_the_private_subnets_in_any_order_needs_no_change() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let steps = kind()
            .diff(&w, &group(&["subnet-a", "subnet-b"]), &())
            .unwrap();
        assert!(steps.is_empty());
    }

    #[test]
    fn a_group_over_other_subnets_is_set_to_the_private_subnets() {
        let spec = StackSpec::new("s");
        let run = run();
        let w = Work::new(Tier::Data, &spec, &run, Verb::Apply);
        let steps = kind()
            .diff(&w, &group(&["subnet-old", "subnet-a"]), &())
            .unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec!["subnets subnet-a, subnet-old → subnet-a, subnet-b"]
        );
    }
}
