//! The functions' code: cargo-lambda's zips (or empty ones for the emulator,
//! which runs the functions in-process) and their SHA-256, which decides whether
//! a deploy uploads code.

use super::*;

/// Writes an empty but valid zip per function in cargo-lambda's layout under
/// `dir` (`<dir>/<binary>/bootstrap.zip`): a deployment whose functions the
/// emulator runs in-process needs no code. `build` is appended to each, so
/// that two builds differ.
pub fn placeholder_zips(dir: &Path, build: &str) -> std::io::Result<()> {
    for t in &TIERS {
        let f = dir.join(t.binary);
        std::fs::create_dir_all(&f)?;
        // The end-of-central-directory record alone: a zip with no entry.
        let mut eocd = vec![0x50, 0x4b, 0x05, 0x06];
        eocd.extend([0u8; 18]);
        eocd.extend(build.as_bytes());
        std::fs::write(f.join("bootstrap.zip"), eocd)?;
    }
    Ok(())
}

/// Builds the Lambda zips with cargo-lambda: arm64, the workspace's `dist`
/// profile (size-optimised, fat LTO, one codegen unit: the smallest zips, the
/// fastest cold start).
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let probe = std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        return Err("cargo-lambda is not installed: `pip install cargo-lambda` (it brings zig), then `rustup target add aarch64-unknown-linux-gnu`".into());
    }
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace).args([
        "lambda",
        "build",
        "--profile",
        "dist",
        "--arm64",
        "--output-format",
        "zip",
        // Events below info and tracing's log fallback compiled out (core's
        // `dist` feature): smaller zips.
        "--features",
        "mbstack-core/dist",
    ]);
    // `-p` per function (each package is named as its binary): features are
    // unified over the functions only, so the CLI's SSO support stays out of the
    // zips (`--bin` would unify over the whole workspace).
    for t in &TIERS {
        cmd.args(["-p", t.binary]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo lambda: {e}"))?;
    if !status.success() {
        return Err(format!("cargo lambda build failed ({status})"));
    }
    Ok(workspace.join("target").join("lambda"))
}

pub(super) fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}
