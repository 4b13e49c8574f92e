//! The integration and end-to-end tests, one test binary: each file a module.
//! One binary links once (13 binaries each linking every SDK took minutes of
//! a fresh CI run); cargo-nextest still runs every test in its own process.

mod app;
mod bad_input;
mod checks;
mod concurrency;
mod data;
mod e2e;
mod lifecycle;
mod loadbalancer;
mod nat_instance;
mod network;
mod real_aws;
mod realism;
mod recovery;
mod structure;
mod sweep;
mod validation;
