//! `mbstack up | plan | down | pause | resume | watch | status`: start an
//! execution of the deployed state machine and follow it live, or read the
//! stacks' last runs. One module per job:
//!
//! - [`args`]: the commands' arguments and the execution input built from them;
//! - [`aws`]: the SDK configuration and the state machine;
//! - [`find`]: whether a stack exists, and its run in progress;
//! - [`start`]: starting a run (`up` with its restore question, `down` with its
//!   confirmation);
//! - [`follow`]: following a run live, `watch`;
//! - [`status`]: `status`, of every stack or one;
//! - [`text`]: text for people (names for ARNs, lines fitted to the terminal).

pub mod args;
pub mod aws;
pub mod find;
pub mod follow;
pub mod start;
pub mod status;
pub mod text;

pub use args::{build_input, execution_name, is_loopback, Input, Named, Output, Target};
pub use aws::config;
pub use find::{require_stack, stack_exists};
pub use follow::{follow, watch, StoppedFollowing};
pub use start::{confirm_down, run, up};
pub use status::status;
pub use text::{fit, short_id, shorten_arns, terminal_width, when};
