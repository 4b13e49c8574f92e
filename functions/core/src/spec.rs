//! The user's stack spec: serde model (camelCase JSON), defaults and validation.
//!
//! `{"stack": "analytics"}` alone is a complete, valid spec. Validation returns
//! every problem at once, each naming the field path and what to do about it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cidr::{self, Cidr};
use crate::naming::{self, OUR_TAG_KEYS};

/// One thing wrong with an input: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Field path in the input, e.g. `network.cidr` or `loadBalancer.allowedCidrs[1]`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in an input, listed together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stack spec ({} problem{}): {}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<Problem>);

impl InvalidSpec {
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.path.as_str()).collect()
    }
}

/// Deserializes `value` strictly: every unknown field is reported (all of them,
/// with their paths), and every value of the wrong type with its path.
pub fn parse_strict<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, InvalidSpec> {
    match parse_collecting(value) {
        Ok((v, unknown)) if unknown.is_empty() => Ok(v),
        Ok((_, unknown)) => Err(InvalidSpec(unknown)),
        Err(e) => Err(e),
    }
}

/// Deserializes `value`, returning the unknown fields beside the value so that a
/// caller can add its own checks' problems to them (every problem at once).
///
/// serde stops at the first wrong type; to report every one, the wrong value is
/// taken out and the input parsed again (a field so removed takes its default,
/// which is never used: the result is an error listing each wrong value).
pub fn parse_collecting<T: DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<(T, Vec<Problem>), InvalidSpec> {
    let mut value = value.clone();
    let mut problems: Vec<Problem> = Vec::new();
    let add = |problems: &mut Vec<Problem>, p: Problem| {
        if !problems.iter().any(|q| q.path == p.path) {
            problems.push(p);
        }
    };
    // Each pass removes one wrong value; a spec has far fewer fields than this.
    // Pass n follows n wrong values taken out.
    for pass in 0..64 {
        let mut unknown = Vec::new();
        let mut on_unknown = |path: serde_ignored::Path<'_>| {
            unknown.push(Problem::new(
                json_path(&path.to_string()),
                "unknown field: remove it, or check its spelling against the spec reference in README.md",
            ))
        };
        let ignored = serde_ignored::Deserializer::new(&value, &mut on_unknown);
        let parsed: Result<T, _> = serde_path_to_error::deserialize(ignored);
        for u in unknown {
            add(&mut problems, u);
        }
        let e = match parsed {
            Ok(v) if pass == 0 => return Ok((v, problems)),
            Ok(_) => return Err(InvalidSpec(problems)),
            Err(e) => e,
        };
        let segments: Vec<String> = e
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Map { key } => key.clone(),
                _ => String::new(),
            })
            .collect();
        let mut path = json_path(&e.path().to_string());
        let msg = e.into_inner().to_string();
        // serde names a missing field at its parent: point at the field itself.
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            add(
                &mut problems,
                Problem::new(
                    path,
                    format!("`{field}` is required: add it (see the spec reference in README.md)"),
                ),
            );
            break;
        }
        add(&mut problems, Problem::new(path, type_error_message(&msg)));
        if !remove_at(&mut value, &segments) {
            break;
        }
    }
    Err(InvalidSpec(problems))
}

/// Removes the field at `keys` (object keys from the root; an empty key, for
/// an array element, stops it): whether something was removed.
fn remove_at(value: &mut serde_json::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut at = value;
    for k in parents {
        match at.get_mut(k.as_str()) {
            Some(v) if !k.is_empty() => at = v,
            _ => return false,
        }
    }
    !last.is_empty()
        && at
            .as_object_mut()
            .is_some_and(|o| o.remove(last.as_str()).is_some())
}

/// serde_ignored prints `a.b.0.c`, serde_path_to_error `a.b[0].c`; we print the latter.
fn json_path(raw: &str) -> String {
    if raw == "." || raw == "?" {
        return String::new();
    }
    let mut out = String::new();
    for part in raw.split('.') {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else if part.starts_with('[') || out.is_empty() {
            out.push_str(part);
        } else {
            out.push('.');
            out.push_str(part);
        }
    }
    out
}

fn type_error_message(serde_msg: &str) -> String {
    // serde's own words are precise ("invalid type: string \"x\", expected u16");
    // drop its trailing position info, which points into our re-serialized value.
    let msg = serde_msg
        .split(" at line ")
        .next()
        .unwrap_or(serde_msg)
        .to_string();
    // Rust's type names, in people's words.
    let words = [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected i32", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a text in quotes"),
    ];
    let msg = words
        .iter()
        .fold(msg, |m, (rust, people)| m.replace(rust, people));
    format!("{msg}: fix the value's type or spelling (see the spec reference in README.md)")
}

/// For each unknown field, the known field of its section it most resembles:
/// "did you mean `app.desiredCount`?".
fn suggest_fields(mut e: InvalidSpec) -> InvalidSpec {
    let Ok(known) = serde_json::to_value(StackSpec::new("x")) else {
        return e;
    };
    for p in
        e.0.iter_mut()
            .filter(|p| p.message.starts_with("unknown field"))
    {
        let (parent, field) = match p.path.rsplit_once('.') {
            Some((parent, field)) => (parent, field),
            None => ("", p.path.as_str()),
        };
        let section = if parent.is_empty() {
            Some(&known)
        } else {
            known.pointer(&format!("/{}", parent.replace('.', "/")))
        };
        let Some(keys) = section.and_then(|s| s.as_object()) else {
            continue;
        };
        if let Some(c) = crate::naming::closest(field, keys.keys().map(String::as_str)) {
            let full = if parent.is_empty() {
                c.to_string()
            } else {
                format!("{parent}.{c}")
            };
            p.message = format!("unknown field: did you mean `{full}`? (or remove it)");
        }
    }
    e
}

/// JSON Merge Patch (RFC 7386): `patch` applied over `target`. An object merges
/// key by key, `null` removes a key (its default applies again), anything else
/// replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    json_patch::merge(target, patch);
}

/// serde reads a struct from an array too (field by position): every section of
/// a spec must be a JSON object, as the reference says. Problems, with paths.
pub fn section_shapes(spec: &serde_json::Value) -> Vec<Problem> {
    let mut shape = Vec::new();
    for section in ["network", "database", "app", "loadBalancer", "tags"] {
        if let Some(v) = spec.get(section).filter(|v| !v.is_object()) {
            shape.push(Problem::new(
                section,
                format!(
                    "must be a JSON object ({{...}}), not {v}: see the spec reference in README.md"
                ),
            ));
        }
    }
    if let Some(v) = spec
        .pointer("/app/autoscaling")
        .filter(|v| !v.is_object() && !v.is_null())
    {
        shape.push(Problem::new(
            "app.autoscaling",
            format!("must be a JSON object such as {{\"min\": 1, \"max\": 3}}, not {v}"),
        ));
    }
    shape
}

fn default_true() -> bool {
    true
}

/// The whole stack: the input of every run, stored after a successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackSpec {
    /// Stack name: lowercase letters, digits and hyphens; every AWS name derives from it.
    pub stack: String,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    #[serde(default)]
    pub app: AppSpec,
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
    /// The user's own tags, added to every resource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Paused: the service at 0 tasks and the DB stopped.
    #[serde(default)]
    pub paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatMode {
    /// One NAT gateway shared by every private subnet (cheapest).
    Single,
    /// One NAT gateway per AZ (no cross-AZ dependency).
    PerAz,
    /// One NAT instance (Amazon Linux 2023 on Graviton, `natInstanceType`)
    /// in the first AZ's public subnet, shared by every private subnet: about
    /// a tenth of a NAT gateway's price, healed by EC2's automatic recovery
    /// (host failure) and by the next repair run (stopped, terminated).
    Instance,
    /// No NAT: private subnets have no route out. Refused for a stack to
    /// apply ([`NAT_NONE_REFUSED`]); a stack stored with it can still be
    /// destroyed.
    None,
}

/// The NAT instance's type when the spec names none: the smallest Graviton
/// type (2 vCPU burstable, up to 5 Gbit/s).
pub const DEFAULT_NAT_INSTANCE_TYPE: &str = "t4g.nano";

/// Whether `t` is an EC2 instance type on Graviton (arm64): `family.size`
/// where the family has a `g` after its generation digit (`t4g`, `c7gn`,
/// `m8g`, `is4gen`), or is `a1`. The x86 GPU families put their `g` first
/// (`g5`, `g6e`, `gr6`) and do not match.
pub fn is_graviton_type(t: &str) -> bool {
    let Some((family, size)) = t.split_once('.') else {
        return false;
    };
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !simple(family) || !simple(size) {
        return false;
    }
    if family == "a1" {
        return true;
    }
    match family.find(|c: char| c.is_ascii_digit()) {
        Some(at) if at > 0 => family[at..].contains('g'),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkSpec {
    pub cidr: String,
    pub az_count: u8,
    pub nat: NatMode,
    /// Also remove the NAT gateway(s) while paused (a NAT instance is
    /// stopped while paused either way).
    pub pause_nat: bool,
    /// The NAT instance's type (`nat: instance`): a Graviton (arm64) type,
    /// since it runs Amazon Linux 2023 for arm64.
    pub nat_instance_type: String,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            cidr: "10.0.0.0/16".into(),
            az_count: 2,
            nat: NatMode::Single,
            pause_nat: false,
            nat_instance_type: DEFAULT_NAT_INSTANCE_TYPE.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DatabaseSpec {
    pub engine_version: String,
    pub instance_class: String,
    pub storage_gib: u32,
    pub multi_az: bool,
    pub backup_retention_days: u8,
    pub deletion_protection: bool,
    /// Take a final snapshot when the stack is destroyed.
    #[serde(default = "default_true")]
    pub final_snapshot: bool,
    /// The DB snapshot a new database is restored from: its identifier, or
    /// [`LATEST_FINAL`] (the stack's newest final snapshot). Only a database
    /// that does not exist yet is restored; an existing one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
}

/// `database.restoreFrom`'s value for the stack's newest final snapshot.
pub const LATEST_FINAL: &str = "latest-final";

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            engine_version: "17".into(),
            instance_class: "db.t4g.micro".into(),
            storage_gib: 20,
            multi_az: false,
            backup_retention_days: 7,
            deletion_protection: false,
            final_snapshot: true,
            restore_from: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuArchitecture {
    #[serde(rename = "X86_64")]
    X86_64,
    #[serde(rename = "ARM64")]
    Arm64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingSpec {
    pub min: u16,
    pub max: u16,
    #[serde(default = "default_target_cpu")]
    pub target_cpu_percent: u8,
}

fn default_target_cpu() -> u8 {
    60
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppSpec {
    /// Container image pinned to an explicit tag or digest.
    pub image: String,
    /// Fargate CPU units (256 = 0.25 vCPU).
    pub cpu: u32,
    /// Fargate memory in MiB.
    pub memory: u32,
    pub desired_count: u16,
    pub autoscaling: Option<AutoscalingSpec>,
    pub cpu_architecture: CpuArchitecture,
    /// Run on FARGATE_SPOT (cheap, interruptible: non-production stacks).
    pub spot: bool,
    /// JAVA_TIMEZONE of the Metabase container.
    pub timezone: String,
    pub log_retention_days: u16,
    /// Start Metabase on a restored database with a new encryption key when
    /// the old one is gone: what Metabase encrypted with the old key (the data
    /// sources' saved passwords) must be entered again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_encryption_key: bool,
}

/// The Metabase image used when the spec names none.
pub const DEFAULT_IMAGE: &str = "metabase/metabase:v0.58.6";

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.into(),
            cpu: 1024,
            memory: 2048,
            desired_count: 1,
            autoscaling: None,
            cpu_architecture: CpuArchitecture::X86_64,
            spot: false,
            timezone: "UTC".into(),
            log_retention_days: 30,
            new_encryption_key: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerSpec {
    /// Who may reach the load balancer (IPv4 CIDR blocks).
    pub allowed_cidrs: Vec<String>,
    /// ACM certificate: adds HTTPS :443 and redirects :80 to it.
    pub certificate_arn: Option<String>,
    /// Metabase's own address (`metabase.example.com`): mbstack requests an ACM
    /// certificate for it (DNS validation in its Route 53 hosted zone) unless
    /// `certificateArn` names one, serves HTTPS and points an alias record at
    /// the load balancer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The public hosted zone holding `domain` (found by the domain's parent
    /// when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    pub idle_timeout_seconds: u16,
    pub deletion_protection: bool,
}

impl LoadBalancerSpec {
    /// Whether the load balancer serves HTTPS :443: with a certificate named
    /// or with a domain of its own (whose certificate mbstack requests).
    pub fn https(&self) -> bool {
        self.certificate_arn.is_some() || self.domain.is_some()
    }
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        Self {
            allowed_cidrs: vec!["0.0.0.0/0".into()],
            certificate_arn: None,
            domain: None,
            hosted_zone_id: None,
            idle_timeout_seconds: 60,
            deletion_protection: false,
        }
    }
}

/// The Fargate task sizes AWS offers (Linux): cpu → allowed memory (MiB).
pub fn fargate_memory_options(cpu: u32) -> Option<Vec<u32>> {
    let (lo, hi, step) = match cpu {
        256 => return Some(vec![512, 1024, 2048]),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return None,
    };
    Some((lo..=hi).step_by(step).collect())
}

/// CloudWatch Logs' allowed retention periods, in days.
pub const LOG_RETENTION_DAYS: &[u16] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// At most this many user tags. AWS allows 50 per resource; mbstack adds up to
/// 10 (the DB instance: its 4, what it was restored from, when its storage
/// changed, and the 4 of the Metabase image record).
pub const MAX_USER_TAGS: usize = 40;
/// Each allowed CIDR takes one SG rule per listener port (80, 443); an SG holds 60.
pub const MAX_ALLOWED_CIDRS: usize = 25;
/// The largest input we accept, in bytes of JSON.
pub const MAX_INPUT_BYTES: usize = 32 * 1024;
/// The stack's settings are kept in one SSM Standard parameter, which holds at
/// most 4,096 characters: a spec whose stored form is longer is refused up front
/// (else the run would apply it and then fail to record it).
pub const MAX_STORED_CHARS: usize = 4096;

impl StackSpec {
    /// The defaults for a new stack.
    pub fn new(stack: impl Into<String>) -> Self {
        Self {
            stack: stack.into(),
            network: NetworkSpec::default(),
            database: DatabaseSpec::default(),
            app: AppSpec::default(),
            load_balancer: LoadBalancerSpec::default(),
            tags: BTreeMap::new(),
            paused: false,
        }
    }

    /// Parses and validates a spec from JSON, reporting every problem found (an
    /// unknown field with the known one it most resembles).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, InvalidSpec> {
        Self::from_json_as_given(value).map_err(suggest_fields)
    }

    fn from_json_as_given(value: &serde_json::Value) -> Result<Self, InvalidSpec> {
        let size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(0);
        if size > MAX_INPUT_BYTES {
            return Err(InvalidSpec(vec![Problem::new(
                "",
                format!("the input is {size} bytes; at most {MAX_INPUT_BYTES} are accepted: remove what is not a stack setting"),
            )]));
        }
        if !value.is_object() {
            return Err(InvalidSpec(vec![Problem::new(
                "",
                "the input must be a JSON object such as {\"stack\": \"analytics\"}",
            )]));
        }
        let shape = section_shapes(value);
        if !shape.is_empty() {
            return Err(InvalidSpec(shape));
        }
        let (spec, mut problems): (StackSpec, _) = parse_collecting(value)?;
        if let Err(e) = spec.validate() {
            problems.extend(e.0);
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(InvalidSpec(problems))
        }
    }

    /// Parses a spec from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, InvalidSpec> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            InvalidSpec(vec![Problem::new(
                "",
                format!("the input is not valid JSON ({e}): fix the syntax"),
            )])
        })?;
        Self::from_json(&value)
    }

    pub fn vpc_cidr(&self) -> Result<Cidr, InvalidSpec> {
        self.network.cidr.parse().map_err(|e: cidr::CidrError| {
            InvalidSpec(vec![Problem::new("network.cidr", e.to_string())])
        })
    }

    /// Every problem with this spec, or Ok.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let mut p = Vec::new();
        self.check_stack_name(&mut p);
        self.check_network(&mut p);
        self.check_database(&mut p);
        self.check_app(&mut p);
        self.check_load_balancer(&mut p);
        self.check_tags(&mut p);
        self.check_stored_size(&mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec(p))
        }
    }

    fn check_stack_name(&self, p: &mut Vec<Problem>) {
        let s = &self.stack;
        let path = "stack";
        let max = naming::max_stack_name_len();
        if s.is_empty() {
            p.push(Problem::new(
                path,
                "the stack name is empty: give a name such as \"analytics\"",
            ));
            return;
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            p.push(Problem::new(path, format!("{s:?} may contain only lowercase letters a-z, digits and hyphens: e.g. \"analytics-prod\"")));
        } else if !s.as_bytes()[0].is_ascii_lowercase() {
            p.push(Problem::new(
                path,
                format!("{s:?} must start with a lowercase letter"),
            ));
        } else if s.ends_with('-') || s.contains("--") {
            p.push(Problem::new(
                path,
                format!("{s:?} must not end with a hyphen or contain two in a row"),
            ));
        }
        // Every derived name is `<stack>-<role>`: a stack called "internal" or
        // "sg-x" gives names AWS refuses.
        for (prefix, rule) in naming::RESERVED_PREFIXES {
            if format!("{s}-").starts_with(prefix) {
                p.push(Problem::new(
                    path,
                    format!("{s:?} would name resources \"{s}-…\", and {rule}: choose a name that does not begin with \"{prefix}\""),
                ));
            }
        }
        if s.chars().count() > max {
            p.push(Problem::new(path, format!(
                "{s:?} is {} characters; at most {max} fit every AWS name derived from it (the load balancer's is limited to 32): choose a shorter name",
                s.chars().count()
            )));
        }
    }

    fn check_network(&self, p: &mut Vec<Problem>) {
        let n = &self.network;
        match n.cidr.parse::<Cidr>() {
            Err(e) => p.push(Problem::new(
                "network.cidr",
                format!("{e}: use a private block such as 10.0.0.0/16"),
            )),
            Ok(c) => {
                // The smallest block whose 16 subnets still hold a load balancer.
                let smallest = cidr::LARGEST_SUBNET_PREFIX - cidr::SUBNET_EXTRA_BITS;
                if c.prefix() < 16 {
                    p.push(Problem::new("network.cidr", format!("{c} is a /{}; the VPC must be /16 to /{smallest} (AWS allows no VPC larger than /16): e.g. 10.0.0.0/16", c.prefix())));
                } else if c.prefix() > smallest {
                    p.push(Problem::new("network.cidr", format!(
                        "{c} is a /{}; the VPC must be /16 to /{smallest}: it is cut into 16 subnets, and a /{} subnet is too small for a load balancer (it needs /{} or larger)",
                        c.prefix(), c.prefix() + cidr::SUBNET_EXTRA_BITS, cidr::LARGEST_SUBNET_PREFIX)));
                }
                if !c.is_private() {
                    p.push(Problem::new("network.cidr", format!("{c} is not a private range: use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")));
                }
            }
        }
        if !(2..=6).contains(&n.az_count) {
            p.push(Problem::new("network.azCount", format!("{} is out of range: use 2 to 6 (a load balancer and a Multi-AZ DB need two AZs)", n.az_count)));
        }
        if n.nat == NatMode::None {
            p.push(Problem::new("network.nat", NAT_NONE_REFUSED));
        }
        if !is_graviton_type(&n.nat_instance_type) {
            p.push(Problem::new("network.natInstanceType", format!(
                "{:?} is not a Graviton (arm64) EC2 instance type: the NAT instance runs Amazon Linux 2023 for arm64, and EC2 refuses an x86 type for it. Use \"{DEFAULT_NAT_INSTANCE_TYPE}\" (the default, enough for a Metabase stack) or a larger one such as \"t4g.micro\" or \"c7g.medium\"",
                n.nat_instance_type)));
        }
    }

    fn check_database(&self, p: &mut Vec<Problem>) {
        let d = &self.database;
        if let Some(from) = d.restore_from.as_deref().filter(|f| *f != LATEST_FINAL) {
            if !is_snapshot_identifier(from) {
                p.push(Problem::new("database.restoreFrom", format!("{from:?} is not a DB snapshot identifier: use 1 to 255 letters, digits and hyphens starting with a letter (no \"--\", no trailing hyphen), such as mbstack-analytics-final-20261201-0300 or an automated snapshot's rds:mbstack-analytics-2026-12-01-03-05, or \"{LATEST_FINAL}\" for the stack's newest final snapshot")));
            }
        }
        let major = d.engine_version.split('.').next().unwrap_or("");
        let valid_shape = !d.engine_version.is_empty()
            && d.engine_version.split('.').count() <= 2
            && d.engine_version
                .split('.')
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()));
        match major.parse::<u32>() {
            Ok(m) if valid_shape && (13..=17).contains(&m) => {}
            _ => p.push(Problem::new("database.engineVersion", format!(
                "{:?} is not a supported PostgreSQL version: use a major version 13 to 17, optionally with a minor (e.g. \"17\" or \"16.4\")",
                d.engine_version))),
        }
        let class_ok = d.instance_class.starts_with("db.")
            && d.instance_class.split('.').count() == 3
            && d.instance_class
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
        if !class_ok {
            p.push(Problem::new("database.instanceClass", format!("{:?} is not an RDS instance class: use e.g. \"db.t4g.micro\" or \"db.m7g.large\"", d.instance_class)));
        }
        if !(20..=65536).contains(&d.storage_gib) {
            p.push(Problem::new(
                "database.storageGib",
                format!(
                    "{} is out of range: gp3 storage is 20 to 65536 GiB",
                    d.storage_gib
                ),
            ));
        }
        if d.backup_retention_days > 35 {
            p.push(Problem::new(
                "database.backupRetentionDays",
                format!(
                    "{} is out of range: use 0 to 35 days (0 disables automated backups)",
                    d.backup_retention_days
                ),
            ));
        }
    }

    fn check_app(&self, p: &mut Vec<Problem>) {
        let a = &self.app;
        if let Some(why) = image_problem(&a.image) {
            p.push(Problem::new("app.image", why));
        }
        match fargate_memory_options(a.cpu) {
            None => p.push(Problem::new(
                "app.cpu",
                format!(
                    "{} is not a Fargate CPU size: use 256, 512, 1024, 2048, 4096, 8192 or 16384",
                    a.cpu
                ),
            )),
            Some(options) if !options.contains(&a.memory) => p.push(Problem::new(
                "app.memory",
                format!(
                    "Fargate does not offer {} MiB with cpu {}: use one of {}",
                    a.memory,
                    a.cpu,
                    options
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(_) => {
                if a.memory < 2048 {
                    p.push(Problem::new("app.memory", format!("{} MiB is too little for Metabase (it needs at least 2048): use cpu 1024 with memory 2048", a.memory)));
                }
            }
        }
        if !(1..=10).contains(&a.desired_count) {
            p.push(Problem::new(
                "app.desiredCount",
                format!(
                    "{} is out of range: use 1 to 10 (to stop the app, set \"paused\": true)",
                    a.desired_count
                ),
            ));
        }
        if let Some(s) = &a.autoscaling {
            if s.min < 1 || s.max > 10 || s.min > s.max {
                p.push(Problem::new(
                    "app.autoscaling",
                    format!(
                        "min {} / max {} must satisfy 1 <= min <= max <= 10",
                        s.min, s.max
                    ),
                ));
            } else if !(s.min..=s.max).contains(&a.desired_count) {
                p.push(Problem::new(
                    "app.desiredCount",
                    format!(
                        "{} is outside autoscaling min {} .. max {}: set it within",
                        a.desired_count, s.min, s.max
                    ),
                ));
            }
            if !(10..=90).contains(&s.target_cpu_percent) {
                p.push(Problem::new(
                    "app.autoscaling.targetCpuPercent",
                    format!("{} is out of range: use 10 to 90", s.target_cpu_percent),
                ));
            }
        }
        let tz_ok = !a.timezone.is_empty()
            && a.timezone.len() <= 64
            && a.timezone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        if !tz_ok {
            p.push(Problem::new(
                "app.timezone",
                format!(
                    "{:?} is not a time zone name: use e.g. \"UTC\" or \"Europe/Berlin\"",
                    a.timezone
                ),
            ));
        }
        if !LOG_RETENTION_DAYS.contains(&a.log_retention_days) {
            p.push(Problem::new("app.logRetentionDays", format!("{} is not a CloudWatch Logs retention: use one of 1, 3, 5, 7, 14, 30, 60, 90, 180, 365, ...", a.log_retention_days)));
        }
    }

    fn check_load_balancer(&self, p: &mut Vec<Problem>) {
        let lb = &self.load_balancer;
        if lb.allowed_cidrs.is_empty() {
            p.push(Problem::new("loadBalancer.allowedCidrs", "the list is empty, so nobody could reach Metabase: give at least one block, e.g. [\"0.0.0.0/0\"] or your office's /32"));
        }
        if lb.allowed_cidrs.len() > MAX_ALLOWED_CIDRS {
            p.push(Problem::new("loadBalancer.allowedCidrs", format!("{} blocks; at most {MAX_ALLOWED_CIDRS} fit in one security group: merge them into larger blocks", lb.allowed_cidrs.len())));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in lb.allowed_cidrs.iter().enumerate() {
            let path = format!("loadBalancer.allowedCidrs[{i}]");
            match c.parse::<Cidr>() {
                Err(e) => p.push(Problem::new(
                    path,
                    format!("{e}: use an IPv4 block such as 203.0.113.0/24"),
                )),
                Ok(c) if !seen.insert(c) => p.push(Problem::new(
                    path,
                    format!("{c} is listed twice: remove the duplicate"),
                )),
                Ok(_) => {}
            }
        }
        if let Some(arn) = &lb.certificate_arn {
            if !is_acm_certificate_arn(arn) {
                p.push(Problem::new("loadBalancer.certificateArn", format!("{arn:?} is not an ACM certificate ARN: use arn:aws:acm:<region>:<account>:certificate/<id>, or leave it out for HTTP only")));
            }
        }
        if let Some(domain) = &lb.domain {
            if let Some(why) = domain_problem(domain) {
                p.push(Problem::new("loadBalancer.domain", why));
            } else if domain.len() > CLAIM_DOMAIN_MAX {
                // The claim on the load balancer's tags is `<domain> <zone id>
                // <run>`, and an ELB tag value "cannot exceed 256 characters".
                p.push(Problem::new("loadBalancer.domain", format!(
                    "{domain:?} is {} characters; mbstack notes the domain on the load balancer's tags (at most 256 with its hosted zone and run), which leaves {CLAIM_DOMAIN_MAX} for the name: use a shorter name",
                    domain.len()
                )));
            } else if lb.certificate_arn.is_none() && domain.len() > ACM_DOMAIN_MAX {
                // ACM RequestCertificate's DomainName: "cannot exceed 64 octets".
                p.push(Problem::new("loadBalancer.domain", format!(
                    "{domain:?} is {} characters; ACM issues a certificate for a name of at most {ACM_DOMAIN_MAX}: use a shorter name, or bring a certificate that covers it (loadBalancer.certificateArn, e.g. a wildcard of its parent)",
                    domain.len()
                )));
            }
        }
        if let Some(zone) = &lb.hosted_zone_id {
            if lb.domain.is_none() {
                p.push(Problem::new("loadBalancer.hostedZoneId", "a hosted zone without loadBalancer.domain: set the domain (e.g. \"metabase.example.com\") or leave the zone out"));
            } else if !is_hosted_zone_id(zone) {
                p.push(Problem::new("loadBalancer.hostedZoneId", format!("{zone:?} is not a Route 53 hosted zone ID: use the ID alone, such as Z0123456789ABCDEFGHIJ (without \"/hostedzone/\"), or leave it out to find the zone by the domain's parent")));
            }
        }
        if !(1..=4000).contains(&lb.idle_timeout_seconds) {
            p.push(Problem::new(
                "loadBalancer.idleTimeoutSeconds",
                format!(
                    "{} is out of range: use 1 to 4000 seconds",
                    lb.idle_timeout_seconds
                ),
            ));
        }
    }

    /// The stored form (the spec as JSON) must fit SSM's Standard parameter.
    pub fn stored_chars(&self) -> usize {
        serde_json::to_string(self)
            .map(|s| s.chars().count())
            .unwrap_or(0)
    }

    fn check_stored_size(&self, p: &mut Vec<Problem>) {
        let n = self.stored_chars();
        if n > MAX_STORED_CHARS {
            let tags: usize = self
                .tags
                .iter()
                .map(|(k, v)| k.chars().count() + v.chars().count())
                .sum();
            p.push(Problem::new(
                if tags > 0 { "tags" } else { "" },
                format!("the stack's settings take {n} characters stored, {tags} of them in tags; SSM keeps at most {MAX_STORED_CHARS} in the stack's record: shorten or drop tags (or other long values) by {} characters", n - MAX_STORED_CHARS),
            ));
        }
    }

    fn check_tags(&self, p: &mut Vec<Problem>) {
        if self.tags.len() > MAX_USER_TAGS {
            p.push(Problem::new(
                "tags",
                format!(
                    "{} tags; at most {MAX_USER_TAGS} fit beside mbstack's own: drop some",
                    self.tags.len()
                ),
            ));
        }
        for (k, v) in &self.tags {
            let path = format!("tags.{k}");
            let lower = k.to_ascii_lowercase();
            if k.is_empty() || k.chars().count() > 128 {
                p.push(Problem::new(
                    path.clone(),
                    "a tag key must be 1 to 128 characters",
                ));
            } else if lower.starts_with("aws:") {
                p.push(Problem::new(
                    path.clone(),
                    "keys starting with \"aws:\" are reserved by AWS: rename the tag",
                ));
            } else if lower.starts_with("mbstack:")
                || OUR_TAG_KEYS.iter().any(|o| o.eq_ignore_ascii_case(k))
            {
                p.push(Problem::new(
                    path.clone(),
                    "this key is set by mbstack itself: rename the tag",
                ));
            } else if !k.chars().all(tag_char_ok) {
                p.push(Problem::new(
                    path.clone(),
                    "tag keys may contain only letters, digits, spaces and _ . : / = + - @",
                ));
            }
            if v.chars().count() > 256 {
                p.push(Problem::new(
                    path,
                    "a tag value must be at most 256 characters",
                ));
            } else if !v.chars().all(tag_char_ok) {
                p.push(Problem::new(
                    path,
                    "tag values may contain only letters, digits, spaces and _ . : / = + - @",
                ));
            }
        }
    }
}

fn tag_char_ok(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// Why an image reference is not pinned, or None when it is.
fn image_problem(image: &str) -> Option<String> {
    let fix = "pin an explicit version, e.g. \"metabase/metabase:v0.58.6\"";
    if image.is_empty()
        || image.chars().any(|c| c.is_whitespace() || c.is_control())
        || image.len() > 255
    {
        return Some(format!("{image:?} is not an image reference: {fix}"));
    }
    if let Some((_, digest)) = image.split_once('@') {
        let ok = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        return (!ok)
            .then(|| format!("{image:?} has a malformed digest: use @sha256:<64 hex digits>"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some(format!("{image:?} has no tag, so it means \"latest\" and changes under you: {fix}")),
        Some((_, tag)) if tag.eq_ignore_ascii_case("latest") => Some(format!("{image:?} uses \"latest\", which changes under you (and Metabase cannot be downgraded): {fix}")),
        Some((_, tag)) if tag.is_empty() || tag.len() > 128 || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) => {
            Some(format!("{image:?} has an invalid tag: {fix}"))
        }
        Some(_) => None,
    }
}

/// An RDS DB snapshot identifier (manual snapshots: letters, digits,
/// hyphens; a letter first; no double or trailing hyphen).
/// A manual snapshot's identifier, or an automated one's (`rds:<instance>-<date>`,
/// as RDS names its daily snapshots).
fn is_snapshot_identifier(id: &str) -> bool {
    let id = id.strip_prefix("rds:").unwrap_or(id);
    (1..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !id.contains("--")
        && !id.ends_with('-')
}

/// Why `domain` cannot be Metabase's address (None: it can). A fully qualified
/// name in lower case, as ACM and Route 53 take it: two labels at least, each
/// 1–63 letters, digits or hyphens not at either end, 253 characters at most.
fn domain_problem(domain: &str) -> Option<String> {
    let fix = "use a name such as metabase.example.com, in lower case, without a scheme, a port, a trailing dot or a wildcard";
    if domain.len() > 253 {
        return Some(format!("{domain:?} is longer than 253 characters: {fix}"));
    }
    if domain != domain.to_ascii_lowercase() {
        return Some(format!(
            "{domain:?} has upper-case letters: write it as {:?}",
            domain.to_ascii_lowercase()
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Some(format!(
            "{domain:?} is not a domain name mbstack can serve: {fix}"
        ));
    }
    // An IPv4 address passes the label rules; a top-level domain is never
    // all digits, and ACM certifies names, not addresses.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!(
            "{domain:?} is an IP address, not a domain name: ACM issues certificates for names only; {fix}"
        ));
    }
    None
}

/// Why `network.nat: "none"` is refused: Metabase's tasks could never start.
pub const NAT_NONE_REFUSED: &str = "\"none\" builds Metabase tasks that can never start: Fargate tasks in private subnets with no route out cannot pull Metabase's image (Docker Hub has no VPC endpoint), read their secrets from Secrets Manager or write CloudWatch Logs (ResourceInitializationError) without interface endpoints, which mbstack does not build; use \"instance\" (one NAT instance, the cheapest that works), \"single\" (one NAT gateway) or \"per-az\"";

/// The longest domain ACM requests a certificate for (RequestCertificate's
/// DomainName: "cannot exceed 64 octets").
pub const ACM_DOMAIN_MAX: usize = 64;

/// The longest domain the load balancer's claim tag holds: a tag value of 256
/// characters at most, less a hosted zone ID (up to 32), a run's execution
/// name (up to 80) and the two spaces between.
pub const CLAIM_DOMAIN_MAX: usize = 256 - 32 - 80 - 2;

/// A Route 53 hosted zone ID: upper-case letters and digits (AWS's start
/// with `Z`; the form is checked, not the letter).
fn is_hosted_zone_id(id: &str) -> bool {
    (2..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn is_acm_certificate_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "acm"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("certificate/").is_some_and(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smallest_input_is_complete() {
        let spec = StackSpec::from_json(&json!({"stack": "analytics"})).unwrap();
        assert_eq!(spec, StackSpec::new("analytics"));
        assert_eq!(spec.network.az_count, 2);
        assert_eq!(spec.network.nat, NatMode::Single);
        assert!(spec.database.final_snapshot);
    }

    #[test]
    fn round_trips_through_json() {
        let mut spec = StackSpec::new("a1");
        spec.app.autoscaling = Some(AutoscalingSpec {
            min: 1,
            max: 3,
            target_cpu_percent: 50,
        });
        spec.load_balancer.certificate_arn =
            Some("arn:aws:acm:eu-west-1:123456789012:certificate/abc-123".into());
        spec.tags.insert("team".into(), "data".into());
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["loadBalancer"]["allowedCidrs"], json!(["0.0.0.0/0"]));
        assert_eq!(v["network"]["nat"], json!("single"));
        assert_eq!(StackSpec::from_json(&v).unwrap(), spec);
    }

    /// The NAT instance runs an arm64 AMI: an x86 type is refused by name,
    /// with the fix, before anything exists (EC2 would refuse RunInstances).
    #[test]
    fn a_nat_instance_type_must_be_graviton() {
        let spec =
            StackSpec::from_json(&json!({"stack": "s", "network": {"nat": "instance"}})).unwrap();
        assert_eq!(spec.network.nat, NatMode::Instance);
        assert_eq!(spec.network.nat_instance_type, "t4g.nano");
        for ok in [
            "t4g.nano",
            "c7gn.medium",
            "m8g.large",
            "is4gen.large",
            "a1.medium",
            "x2gd.xlarge",
        ] {
            assert!(is_graviton_type(ok), "{ok}");
        }
        for bad in [
            "t3.micro",
            "g5.xlarge",
            "g6e.xlarge",
            "gr6.4xlarge",
            "t4g",
            "T4G.nano",
            ".nano",
            "t4g.",
        ] {
            assert!(!is_graviton_type(bad), "{bad}");
        }
        let m = StackSpec::from_json(
            &json!({"stack": "s", "network": {"nat": "instance", "natInstanceType": "t3.micro"}}),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            m.contains("network.natInstanceType")
                && m.contains("\"t3.micro\"")
                && m.contains("t4g.nano"),
            "{m}"
        );
    }

    /// The message gives the range the checks accept: a /24 is refused, so it
    /// may not say "/16 to /24".
    #[test]
    fn the_cidr_range_said_is_the_range_accepted() {
        let message = |cidr: &str| {
            StackSpec::from_json(&json!({"stack": "s", "network": {"cidr": cidr}}))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        for bad in ["10.0.0.0/24", "10.0.0.0/15", "10.0.0.0/28"] {
            let m = message(bad);
            assert!(m.contains("/16 to /23"), "{bad}: {m}");
        }
        assert_eq!(message("10.0.0.0/23"), "");
        assert_eq!(message("10.0.0.0/16"), "");
    }

    #[test]
    fn a_domain_and_its_zone_are_checked_before_anything_exists() {
        let problems = |lb: serde_json::Value| {
            StackSpec::from_json(&json!({"stack": "s", "loadBalancer": lb}))
                .err()
                .map(|e| {
                    e.paths()
                        .into_iter()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert!(problems(json!({"domain": "metabase.example.com"})).is_empty());
        assert!(problems(
            json!({"domain": "bi.example.co.uk", "hostedZoneId": "Z0123456789ABCDEFGHIJ"})
        )
        .is_empty());
        for bad in [
            "https://metabase.example.com",
            "metabase.example.com.",
            "*.example.com",
            "Metabase.example.com",
            "localhost",
            "-bad.example.com",
            "metabase.example.com:443",
            "10.0.0.1",
            // 65 octets: ACM's DomainName holds 64.
            "ab123456789012345678901234567890123456789012345678901.example.com",
        ] {
            assert_eq!(
                problems(json!({"domain": bad})),
                vec!["loadBalancer.domain"],
                "{bad}"
            );
        }
        assert_eq!(
            problems(json!({"domain": "a.example.com", "hostedZoneId": "/hostedzone/Z123"})),
            vec!["loadBalancer.hostedZoneId"]
        );
        // With a certificate of its own, a long name needs no ACM request.
        assert!(problems(json!({
            "domain": "ab123456789012345678901234567890123456789012345678901.example.com",
            "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f3c2a1b-1111-2222-3333-444455556666"
        }))
        .is_empty());
        assert_eq!(
            problems(json!({"hostedZoneId": "Z123"})),
            vec!["loadBalancer.hostedZoneId"]
        );
        let e = StackSpec::from_json(
            &json!({"stack": "s", "loadBalancer": {"domain": "Metabase.Example.com"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"metabase.example.com\""), "{e}");
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = StackSpec::from_json(&json!({
            "stack": "Bad_Name",
            "network": {"cidr": "8.8.0.0/16", "azCount": 9},
            "app": {"image": "metabase/metabase:latest", "cpu": 1024, "memory": 1000},
        }))
        .unwrap_err();
        assert_eq!(
            err.paths(),
            vec![
                "stack",
                "network.cidr",
                "network.azCount",
                "app.image",
                "app.memory"
            ]
        );
    }

    #[test]
    fn every_unknown_field_is_reported_with_its_path() {
        let err =
            StackSpec::from_json(&json!({"stack": "a", "netwrok": {}, "app": {"imgae": "x"}}))
                .unwrap_err();
        let mut paths = err.paths();
        paths.sort();
        assert_eq!(paths, vec!["app.imgae", "netwrok"]);
        let said: Vec<&str> = err.0.iter().map(|p| p.message.as_str()).collect();
        assert!(
            said.iter().any(|m| m.contains("did you mean `app.image`")),
            "{said:?}"
        );
        assert!(
            said.iter().any(|m| m.contains("did you mean `network`")),
            "{said:?}"
        );
        let e = StackSpec::from_json(
            &json!({"stack": "a", "loadbalancer": {}, "app": {"desiredCont": 2}}),
        )
        .unwrap_err();
        let said: Vec<&str> = e.0.iter().map(|p| p.message.as_str()).collect();
        assert!(
            said.iter().any(|m| m.contains("`loadBalancer`")),
            "{said:?}"
        );
        assert!(
            said.iter().any(|m| m.contains("`app.desiredCount`")),
            "{said:?}"
        );
        // Types in people's words.
        let e = StackSpec::from_json(&json!({"stack": "a", "app": {"desiredCount": "oops"}}))
            .unwrap_err();
        assert!(e.0[0].message.contains("a whole number"), "{:?}", e.0);
    }

    #[test]
    fn every_value_of_the_wrong_type_is_reported_not_only_the_first() {
        let e = StackSpec::from_json(&json!({
            "stack": "a",
            "app": {"desiredCount": "oops", "cpu": true},
            "database": {"storageGib": "big"},
            "netwrok": {}
        }))
        .unwrap_err();
        let mut paths = e.paths();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                "app.cpu",
                "app.desiredCount",
                "database.storageGib",
                "netwrok"
            ],
            "{:?}",
            e.0
        );
        // A required field missing is named as such after the wrong types.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Two {
            a: u8,
            b: String,
        }
        let e = parse_collecting::<Two>(&json!({"b": 1})).unwrap_err();
        assert_eq!(e.paths(), vec!["b", "a"], "{:?}", e.0);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            t,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
        let mut t = json!({"a": 1});
        merge_patch(&mut t, &json!([1]));
        assert_eq!(t, json!([1]));
    }

    #[test]
    fn fargate_sizes() {
        assert_eq!(fargate_memory_options(256), Some(vec![512, 1024, 2048]));
        assert!(fargate_memory_options(1024).unwrap().contains(&8192));
        assert!(!fargate_memory_options(1024).unwrap().contains(&1024));
        assert!(fargate_memory_options(300).is_none());
    }

    #[test]
    fn images() {
        assert!(image_problem("metabase/metabase:v0.58.6").is_none());
        assert!(image_problem("123456789012.dkr.ecr.us-east-1.amazonaws.com/mb:v1").is_none());
        assert!(image_problem("localhost:5000/metabase").is_some());
        assert!(image_problem(&format!("metabase/metabase@sha256:{}", "a".repeat(64))).is_none());
        assert!(image_problem("metabase/metabase@sha256:abc").is_some());
    }

    #[test]
    fn restore_takes_manual_and_automated_snapshot_names_only() {
        for ok in [
            "mbstack-analytics-final-20261201-030000",
            "rds:mbstack-analytics-2026-12-01-03-05",
            "manual1",
        ] {
            assert!(is_snapshot_identifier(ok), "{ok}");
        }
        for bad in [
            "rds:",
            "rds:-x",
            "1abc",
            "a--b",
            "a-",
            "ab:cd",
            "arn:aws:rds:x",
        ] {
            assert!(!is_snapshot_identifier(bad), "{bad}");
        }
    }
}
