//! Deterministic names and the tags every resource carries.

use serde::{Deserialize, Serialize};

pub const STACK_TAG: &str = "mbstack:stack";
pub const TIER_TAG: &str = "mbstack:tier";
pub const CREATED_BY_TAG: &str = "mbstack:created-by";
pub const NAME_TAG: &str = "Name";
/// The tag keys mbstack sets itself; a user tag may not use them.
pub const OUR_TAG_KEYS: &[&str] = &[STACK_TAG, TIER_TAG, CREATED_BY_TAG, NAME_TAG];

/// The tiers of a stack, in apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Control,
    Network,
    Data,
    #[serde(rename = "loadbalancer")]
    LoadBalancer,
    App,
}

impl Tier {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Tier::Control => "control",
            Tier::Network => "network",
            Tier::Data => "data",
            Tier::LoadBalancer => "loadbalancer",
            Tier::App => "app",
        }
    }

    /// The tier as every view names it for people: the spec's section names
    /// (`loadBalancer` → "load balancer", `data` → "database").
    pub fn label(&self) -> &'static str {
        match self {
            Tier::Control => "control",
            Tier::Network => "network",
            Tier::Data => "database",
            Tier::LoadBalancer => "load balancer",
            Tier::App => "app",
        }
    }

    /// The tier named `name` (as in outcomes and outputs: `loadbalancer`).
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Every function of a deployment: control, then the tiers in apply order.
    pub const ALL: [Tier; 5] = [
        Tier::Control,
        Tier::Network,
        Tier::Data,
        Tier::LoadBalancer,
        Tier::App,
    ];

    /// The tiers that own resources, in apply order (destroy runs them backwards).
    pub const PROVISIONED: [Tier; 4] = [Tier::Network, Tier::Data, Tier::LoadBalancer, Tier::App];

    /// This tier's row of [`TIERS`].
    pub const fn info(self) -> &'static TierInfo {
        match self {
            Tier::Control => &TIERS[0],
            Tier::Network => &TIERS[1],
            Tier::Data => &TIERS[2],
            Tier::LoadBalancer => &TIERS[3],
            Tier::App => &TIERS[4],
        }
    }
}

/// What the state machine, the deployer, the local emulator, the CLI and the
/// tests know of a function: one row per tier, here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierInfo {
    pub tier: Tier,
    /// The binary, and the function's name after the deployment's prefix.
    pub binary: &'static str,
    pub memory_mib: i32,
    pub timeout_seconds: i32,
    /// How long the state machine waits before checking a pending tier again.
    pub poll_seconds: u32,
    /// Checks before the state machine gives up: `poll_seconds × max_polls` is
    /// the tier's time limit (the app's covers Metabase's first boot with its
    /// migrations).
    pub max_polls: u32,
    /// How the state machine's state names call the tier ("Is the database ready?").
    pub state_label: &'static str,
    /// While pending, a create applies again instead of checking: a step of
    /// the tier waits on an earlier one of its own (the HTTPS listener on the
    /// domain's certificate, issued minutes after it is requested). Each pass
    /// makes the reads a check makes, and the changes of the passes before
    /// are kept (`Event::changes_before`).
    pub applies_again: bool,
    /// The function ARN's placeholder in the state machine definition.
    pub arn_placeholder: &'static str,
}

/// The table itself, in [`Tier::ALL`]'s order.
pub const TIERS: [TierInfo; 5] = [
    TierInfo {
        tier: Tier::Control,
        binary: "mbstack-control",
        memory_mib: 128,
        timeout_seconds: 60,
        poll_seconds: 0,
        max_polls: 0,
        state_label: "control",
        applies_again: false,
        arn_placeholder: "${ControlFunctionArn}",
    },
    // A NAT gateway takes 1–2 minutes: 40 × 15 s.
    TierInfo {
        tier: Tier::Network,
        binary: "mbstack-network",
        memory_mib: 256,
        timeout_seconds: 120,
        poll_seconds: 15,
        max_polls: 40,
        state_label: "network",
        applies_again: false,
        arn_placeholder: "${NetworkFunctionArn}",
    },
    // RDS takes minutes (a create up to ~20): 80 × 30 s.
    TierInfo {
        tier: Tier::Data,
        binary: "mbstack-data",
        memory_mib: 256,
        timeout_seconds: 120,
        poll_seconds: 30,
        max_polls: 80,
        state_label: "database",
        // A restored instance gets the password RDS manages only through a
        // ModifyDBInstance once it is available: its create loop applies again.
        applies_again: true,
        arn_placeholder: "${DataFunctionArn}",
    },
    // An ALB takes 2–3 minutes to become active; the domain's certificate
    // usually minutes after its validation record, up to 30 for a new zone
    // (Terraform's validation waits 75): 160 × 15 s = 40 min.
    TierInfo {
        tier: Tier::LoadBalancer,
        binary: "mbstack-loadbalancer",
        memory_mib: 256,
        timeout_seconds: 120,
        poll_seconds: 15,
        max_polls: 160,
        state_label: "load balancer",
        applies_again: true,
        arn_placeholder: "${LoadBalancerFunctionArn}",
    },
    // ECS deployments take minutes (Metabase's start and health checks): 120 × 20 s.
    TierInfo {
        tier: Tier::App,
        binary: "mbstack-app",
        memory_mib: 256,
        timeout_seconds: 120,
        poll_seconds: 20,
        max_polls: 120,
        state_label: "Metabase service",
        applies_again: false,
        arn_placeholder: "${AppFunctionArn}",
    },
];

/// A tier's name (`loadbalancer`) as people read it ("load balancer"); other
/// text as it is.
pub fn tier_label(name: &str) -> &str {
    Tier::from_name(name).map_or(name, |t| t.label())
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names derived from the stack name with AWS's length limit for each: the stack
/// name is validated so that every one of them fits.
const DERIVED: &[(&str, usize)] = &[
    ("-alb", 32),                           // elbv2 load balancer
    ("-tg", 32),                            // elbv2 target group
    ("mbstack--final-20261231-235959", 63), // RDS instance (`mbstack-<stack>`) and its final snapshot
    ("-metabase-execution", 64),            // IAM role
    ("-metabase-task", 64),                 // IAM role
];

/// The longest stack name for which every derived name fits its AWS limit.
pub fn max_stack_name_len() -> usize {
    DERIVED
        .iter()
        .map(|(suffix, limit)| limit - suffix.len())
        .min()
        .unwrap_or(32)
}

/// Name beginnings AWS refuses for names derived from the stack's
/// (`<stack>-alb`, `<stack>-app`, …), with the rule each breaks.
pub const RESERVED_PREFIXES: &[(&str, &str)] = &[
    (
        "internal-",
        "a load balancer's name may not begin with \"internal-\"",
    ),
    ("sg-", "a security group's name may not begin with \"sg-\""),
];

/// `<stack>-<role>`: the Name tag, and the name of resources that take one.
pub fn resource_name(stack: &str, role: &str) -> String {
    format!("{stack}-{role}")
}

/// The name of the stack's RDS instance and DB subnet group: `mbstack-<stack>`.
/// RDS has no condition key that tells a tag in the creating call from one added
/// later, so the data tier may tag on create only what bears this name (its
/// policy names `db:mbstack-*`): a foreign database such as `billing-db` can
/// never be tagged into the tier and then deleted.
pub fn rds_name(stack: &str) -> String {
    format!("mbstack-{stack}")
}

/// The name stacks made before `rds_name` bear (`<stack>-db`): found and kept,
/// not renamed by a repair (an RDS rename changes the endpoint Metabase
/// connects to). A failed upgrade's return sets it aside like any other and
/// restores under `rds_name` (the app is then put on the new endpoint).
pub fn legacy_rds_name(stack: &str) -> String {
    resource_name(stack, "db")
}

/// Whether `name` is the stack's RDS name, new or legacy.
pub fn is_rds_name(stack: &str, name: &str) -> bool {
    name == rds_name(stack) || name == legacy_rds_name(stack)
}

/// A final snapshot's name: `mbstack-<stack>-final-<UTC stamp>`.
pub fn final_snapshot_name(stack: &str, stamp: &str) -> String {
    format!("{}-final-{stamp}", rds_name(stack))
}

pub fn alb_name(stack: &str) -> String {
    resource_name(stack, "alb")
}

pub fn target_group_name(stack: &str) -> String {
    resource_name(stack, "tg")
}

/// (key, value) pairs from any SDK's tags (or attributes): each service has
/// its own `Tag` type, all with optional strings.
pub fn pairs<'a>(
    items: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Vec<(String, String)> {
    items
        .into_iter()
        .map(|(k, v)| (k.unwrap_or("").to_string(), v.unwrap_or("").to_string()))
        .collect()
}

/// The idempotency key of a create (a NAT gateway's ClientToken, an ACM
/// certificate's IdempotencyToken): the same parts give the same 32 hex
/// characters, in every build (FNV-1a with two seeds; std's hasher may change
/// between Rust versions, and a retry may meet a newer function).
pub fn idempotency_key(parts: &[&str]) -> String {
    let fnv = |seed: u64| {
        parts.iter().enumerate().fold(seed, |h, (i, p)| {
            let h = if i > 0 {
                (h ^ 0x1f).wrapping_mul(0x0100_0000_01b3)
            } else {
                h
            };
            p.bytes()
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

/// The secret holding Metabase's `MB_ENCRYPTION_SECRET_KEY` (the app tier
/// makes it; Prepare checks it is there before a database is restored).
pub fn encryption_key_secret(stack: &str) -> String {
    format!("mbstack/{stack}/metabase-encryption-key")
}

/// The value of tag `key` in a list of (key, value) pairs.
pub fn tag_value<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tier_has_its_own_row_and_names() {
        for t in Tier::ALL {
            assert_eq!(t.info().tier, t, "{t}'s row");
            assert_eq!(t.info().binary, format!("mbstack-{t}"));
        }
        for (i, a) in TIERS.iter().enumerate() {
            for b in &TIERS[i + 1..] {
                assert_ne!(a.arn_placeholder, b.arn_placeholder);
                assert_ne!(a.state_label, b.state_label);
            }
        }
        // A tier that can be pending waits and has a bound on its checks.
        for t in Tier::PROVISIONED {
            assert!(t.info().poll_seconds > 0 && t.info().max_polls > 0, "{t}");
        }
    }

    #[test]
    fn every_derived_name_fits_at_the_longest_stack_name() {
        let stack = "a".repeat(max_stack_name_len());
        for (suffix, limit) in DERIVED {
            assert!(format!("{stack}{suffix}").len() <= *limit, "{suffix}");
        }
        assert_eq!(alb_name(&stack).len(), 32);
    }

    #[test]
    fn tags_put_ours_first_then_the_users() {
        let mut spec = crate::spec::StackSpec::new("s1");
        spec.tags.insert("team".into(), "bi".into());
        let t = crate::work::tags(&spec, Tier::Network, "run-1", "vpc");
        assert_eq!(tag_value(&t, STACK_TAG), Some("s1"));
        assert_eq!(tag_value(&t, TIER_TAG), Some("network"));
        assert_eq!(tag_value(&t, CREATED_BY_TAG), Some("run-1"));
        let key = idempotency_key(&["s", "run-1", "a"]);
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, idempotency_key(&["s", "run-1", "a"]));
        // The parts are kept apart: "ab"+"c" is not "a"+"bc".
        assert_ne!(idempotency_key(&["ab", "c"]), idempotency_key(&["a", "bc"]));
        assert_ne!(key, idempotency_key(&["s", "run-2", "a"]));
        assert_eq!(tag_value(&t, NAME_TAG), Some("s1-vpc"));
        assert_eq!(t.last(), Some(&("team".to_string(), "bi".to_string())));
    }
}

/// The candidate closest to `word` (edit distance, case-insensitive), if it is
/// close enough to be what was meant: "did you mean …?".
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w: Vec<char> = word.to_lowercase().chars().collect();
    let limit = (w.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| {
            (
                edit_distance(&w, &c.to_lowercase().chars().collect::<Vec<_>>()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The partition of a region, for the ARNs mbstack writes itself (policies, the
/// state machine): `aws-cn` in China, `aws-us-gov` in GovCloud, the ISO
/// partitions by their prefixes, `aws` elsewhere.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod partition_tests {
    use super::partition_of_region;

    #[test]
    fn regions_map_to_their_partitions() {
        assert_eq!(partition_of_region("eu-west-1"), "aws");
        assert_eq!(partition_of_region("cn-northwest-1"), "aws-cn");
        assert_eq!(partition_of_region("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of_region("us-isob-east-1"), "aws-iso-b");
        assert_eq!(partition_of_region("us-iso-east-1"), "aws-iso");
    }
}

#[cfg(test)]
mod closest_tests {
    use super::closest;

    #[test]
    fn the_closest_name_when_it_is_close_enough() {
        let fields = ["desiredCount", "image", "loadBalancer", "cpu"];
        assert_eq!(closest("desiredCont", fields), Some("desiredCount"));
        assert_eq!(closest("loadbalancer", fields), Some("loadBalancer"));
        assert_eq!(closest("memory", fields), None);
    }
}
