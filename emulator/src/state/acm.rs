//! What the front door's ACM rules remember: when each certificate was
//! requested, when its validation records were first seen in DNS, and when it
//! was issued.

use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Default, Clone)]
pub(crate) struct AcmState {
    pub(crate) requested: HashMap<String, Instant>,
    /// When every validation record of a certificate was first seen in DNS.
    pub(crate) records_seen: HashMap<String, Instant>,
    pub(crate) issued: HashMap<String, Instant>,
    /// The key algorithm each certificate was requested with (moto makes
    /// every key RSA_2048, whatever the request says).
    pub(crate) key_algorithms: HashMap<String, String>,
    /// The names each certificate was requested for (its domain first, then
    /// its alternative names).
    pub(crate) names: HashMap<String, Vec<String>>,
}
