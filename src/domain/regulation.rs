//! The limits of brute-force regulation (`[regulation]` in the config):
//! what the store's failure counters count toward, given with every call so
//! that every node and every reload applies the same ones.

use serde::{Deserialize, Serialize};

/// Brute-force regulation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegulationSettings {
    /// Failures per user or per client IP within `window_secs` that trigger a ban.
    pub max_failures: usize,
    pub window_secs: u64,
    pub ban_secs: u64,
    /// Most users and IPs tracked at once; the stalest are dropped beyond it.
    pub max_tracked: usize,
}

impl Default for RegulationSettings {
    fn default() -> Self {
        RegulationSettings {
            max_failures: 5,
            window_secs: 600,
            ban_secs: 900,
            max_tracked: 10_000,
        }
    }
}
