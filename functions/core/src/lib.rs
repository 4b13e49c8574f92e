//! mbstack-core: what every tier shares. No service SDK here: each tier depends
//! only on the SDKs it calls.

pub mod aws;
pub mod cidr;
pub mod contract;
pub mod control;
pub mod error;
pub mod iam;
pub mod lambda;
pub mod metabase;
pub mod naming;
pub mod outputs;
pub mod resource;
pub mod spec;
pub mod work;

pub use aws::{Aws, Call, CallLog};
pub use contract::{Action, Change, Event, Outcome, Part, Run, Scope, State, Verb};
pub use error::{aws_error, error_code, found, TierError};
pub use naming::Tier;
pub use spec::{InvalidSpec, Problem, StackSpec};
pub use work::{Readiness, Work};

/// A crate's own folder while its tests run: where cargo says it is now
/// (`CARGO_MANIFEST_DIR` at run time), else where it was compiled
/// (`compiled`: the crate's `env!("CARGO_MANIFEST_DIR")`). A shared target dir
/// can hold a test binary built from another checkout: its compiled path may be
/// gone, or another version of the files.
pub fn source_dir(compiled: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(compiled))
}

/// The outcome of a tier or verb that is not built yet: a clear error, never a
/// pretend success.
pub fn not_implemented(tier: Tier, what: &str) -> TierError {
    TierError::NotImplemented(format!(
        "the {tier} tier does not implement {what} yet (see the project's open issues)"
    ))
}
