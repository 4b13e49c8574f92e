//! The `mbstack` CLI's library: deploying mbstack itself, its least-privilege
//! policies, running stacks and the local emulator.

pub mod audit;
pub mod deploy;
pub mod local;
pub mod logs;
pub mod policies;
pub mod run;
pub mod schedule;
