//! What the front door's ACM rules remember: when each certificate was
//! requested, when its validation records were first seen in DNS, and when it
//! was issued.

use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct AcmState {
    pub(crate) requested: HashMap<String, Instant>,
    /// When every validation record of a certificate was first seen in DNS.
    pub(crate) records_seen: HashMap<String, Instant>,
    pub(crate) issued: HashMap<String, Instant>,
}
