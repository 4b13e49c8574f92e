//! The commands' arguments: where AWS and the state machine are (`Target`),
//! which stack and spec (`Input`, `Named`), how to print (`Output`), and the
//! execution's input and name built from them.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Where to find AWS and the state machine.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// AWS region (else the profile's or AWS_REGION)
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile (SSO and credential_process profiles work)
    #[arg(long)]
    pub profile: Option<String>,
    /// Another endpoint, e.g. the local emulator of `mbstack local up` (also AWS_ENDPOINT_URL)
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The state machine: a name or an ARN
    #[arg(long, default_value = "mbstack-provision")]
    pub state_machine: String,
}

/// What to run it on.
#[derive(clap::Args, Debug, Clone)]
pub struct Input {
    /// A spec file (JSON), merged over the stack's stored spec
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub named: Named,
    /// A field to set, as a JSON value or a plain string: --set app.desiredCount=2
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Start the execution, print its ARN and return (`mbstack watch` follows it)
    #[arg(long)]
    pub detach: bool,
}

/// How a command prints what it has to say.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

impl Target {
    /// The endpoint given by `--endpoint-url` or `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
    }

    /// Whether it is the emulator on this machine (answers in milliseconds:
    /// poll it often).
    pub fn is_local(&self) -> bool {
        self.endpoint().as_deref().is_some_and(is_loopback)
    }
}

/// Whether `endpoint` is this machine (the emulator of `mbstack local up`).
pub fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split('/')
        .next()
        .unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// A unique execution name: the stack, the action, the UTC time to the
/// millisecond and a random part (two runs in one second must not collide:
/// Step Functions refuses, or with the same input returns the other run).
pub fn execution_name(stack: &str, action: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = now.subsec_millis();
    let random = (u64::from(now.subsec_nanos()) ^ u64::from(std::process::id()).rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 48;
    format!(
        "{stack}-{action}-{}{millis:03}-{random:04x}",
        mbstack_core::work::utc_stamp_now()
    )
}

/// A stack named by `--stack` or as the first argument, and where it is.
#[derive(clap::Args, Debug, Clone)]
pub struct Named {
    /// The stack name (over a spec file's)
    #[arg(long)]
    pub stack: Option<String>,
    /// The stack name, as the first argument: `mbstack up analytics`
    #[arg(value_name = "STACK", conflicts_with = "stack")]
    pub stack_arg: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

impl Named {
    /// The stack named by `--stack` or the first argument.
    pub fn given(&self) -> Option<String> {
        self.stack.clone().or_else(|| self.stack_arg.clone())
    }

    /// The stack, or an error saying how to give it.
    pub fn name(&self, command: &str) -> anyhow::Result<String> {
        match self.given() {
            Some(s) => Ok(s),
            None => bail!("which stack? `mbstack {command} NAME` (or --stack NAME)"),
        }
    }
}

/// The execution input: file, then --stack, then each --set, then the action.
pub fn build_input(i: &Input, action: &str) -> anyhow::Result<Value> {
    let mut input = match &i.file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?
        }
        None => json!({}),
    };
    if let Some(s) = i.named.given() {
        input["stack"] = json!(s);
    }
    for set in &i.set {
        let Some((path, raw)) = set.split_once('=') else {
            bail!("--set {set:?}: write PATH=VALUE, e.g. --set app.desiredCount=2");
        };
        let value: Value = serde_json::from_str(raw).unwrap_or_else(|_| json!(raw));
        // Set in the input itself, not merged into it: the input is a merge
        // patch, and its `null` (take the field away) must reach Prepare.
        set_path(&mut input, path, value).with_context(|| {
            format!("--set {set:?}: {path} goes through a value that is not an object")
        })?;
    }
    if input.get("stack").and_then(Value::as_str).is_none() {
        bail!("which stack? give --stack NAME or a file with \"stack\"");
    }
    input["action"] = json!(action);
    Ok(input)
}

/// Sets `value` at the dotted `path` of `input`, making the objects on the
/// way; None when a part of the path is a value that is not an object.
fn set_path(input: &mut Value, path: &str, value: Value) -> Option<()> {
    let mut at = input;
    let keys: Vec<&str> = path.split('.').collect();
    let (last, before) = keys.split_last()?;
    for key in before {
        let obj = at.as_object_mut()?;
        at = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    }
    at.as_object_mut()?.insert(last.to_string(), value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--set X=null` takes the field away: the merge patch's `null` reaches
    /// Prepare (merged into the input, it vanished, and a plan said
    /// "0 change(s)").
    #[test]
    fn set_null_reaches_the_input_and_values_nest() {
        let mut input = json!({"stack": "s", "app": {"cpu": 512}});
        set_path(&mut input, "loadBalancer.domain", Value::Null).unwrap();
        set_path(&mut input, "app.desiredCount", json!(2)).unwrap();
        assert_eq!(
            input,
            json!({"stack": "s", "app": {"cpu": 512, "desiredCount": 2}, "loadBalancer": {"domain": null}})
        );
        assert!(set_path(&mut input, "stack.name", json!(1)).is_none());
    }

    #[test]
    fn sets_merge_into_the_input() {
        let i = Input {
            file: None,
            named: Named {
                stack: Some("s".into()),
                stack_arg: None,
                target: Target {
                    region: None,
                    profile: None,
                    endpoint_url: None,
                    state_machine: "mbstack-provision".into(),
                },
            },
            set: vec![
                "app.desiredCount=2".into(),
                "app.image=metabase/metabase:v0.58.7".into(),
                "tags.team=bi".into(),
            ],
            detach: false,
        };
        let v = build_input(&i, "apply").unwrap();
        assert_eq!(
            v,
            json!({"stack": "s", "app": {"desiredCount": 2, "image": "metabase/metabase:v0.58.7"}, "tags": {"team": "bi"}, "action": "apply"})
        );
        let mut positional = i.clone();
        positional.named.stack = None;
        positional.named.stack_arg = Some("s".into());
        assert_eq!(build_input(&positional, "apply").unwrap(), v);
        let mut bad = i;
        bad.named.stack = None;
        assert!(build_input(&bad, "apply").is_err());
    }
}
