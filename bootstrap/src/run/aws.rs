//! The AWS SDK configuration a command runs with, checked before anything is
//! started (credentials that load, a region), and the state machine it starts.

use anyhow::{bail, Context};
use aws_config::BehaviorVersion;

use super::args::Target;

/// The SDK configuration, checked: credentials that load and a region. Against
/// a loopback endpoint (the emulator), its test credentials and `us-east-1`
/// unless given. Elsewhere a missing credential, profile or region is one line
/// saying what was looked for and what to do.
pub async fn config(t: &Target) -> anyhow::Result<aws_types::SdkConfig> {
    use aws_credential_types::provider::ProvideCredentials;
    let endpoint = t.endpoint();
    let local = t.is_local();
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &t.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    } else if local {
        loader = loader.region(aws_config::Region::new(mbstack_emulator::REGION));
    }
    if let Some(p) = &t.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &endpoint {
        loader = loader.endpoint_url(e);
    }
    if local && t.profile.is_none() {
        // The emulator checks no signature: its test credentials, whatever the
        // environment holds.
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "mbstack-emulator",
        ));
    }
    let cfg = loader.load().await;
    let profile = t
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok());
    let named = profile
        .as_deref()
        .map(|p| format!("profile {p}"))
        .unwrap_or_else(|| "the environment, ~/.aws and the instance role".into());
    if cfg.region().is_none() {
        bail!(
            "no AWS region: pass --region (e.g. --region eu-west-1), set AWS_REGION, or give {} a region",
            profile.as_deref().map(|p| format!("profile {p}")).unwrap_or_else(|| "your profile".into())
        );
    }
    let Some(provider) = cfg.credentials_provider() else {
        bail!("no AWS credentials provider could be built from {named}");
    };
    if let Err(e) = provider.provide_credentials().await {
        let sso = profile
            .as_deref()
            .map(|p| format!("`aws sso login --profile {p}`"))
            .unwrap_or_else(|| "`aws sso login`".into());
        bail!(
            "no AWS credentials found in {named} ({}): run {sso}, pass --profile NAME, export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or try mbstack on the local emulator (`mbstack local up`, then --endpoint-url http://127.0.0.1:4566)",
            first_line(&e.to_string())
        );
    }
    Ok(cfg)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

pub(crate) async fn state_machine_arn(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
) -> anyhow::Result<String> {
    if name.starts_with("arn:") {
        return Ok(name.to_string());
    }
    crate::deploy::find_state_machine(sfn, name)
        .await
        .context("listing state machines")?
        .ok_or_else(|| anyhow::anyhow!("no state machine named {name} here: deploy mbstack first (or pass --state-machine, --region, --endpoint-url)"))
}
