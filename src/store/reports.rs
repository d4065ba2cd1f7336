//! What the store's operations report: sweeps, prunes, checks, counts and
//! whole-store facts. Every backend fills the same reports.

use serde::{Deserialize, Serialize};

use crate::domain::{EventId, EventKind};

/// Counts and facts about the database, for `auditctl stats` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Schema version recorded in the file.
    pub schema_version: u32,
    /// Rows of `sessions`, expired ones not yet swept included.
    pub sessions: u64,
    /// Audit events present (pruned ones excluded).
    pub events: u64,
    /// Rows of `bans`, ran-out ones not yet swept included.
    pub bans: u64,
    /// Access tokens stored, expired ones not yet swept included.
    pub tokens: u64,
    /// Id of the oldest event present.
    pub oldest_event: Option<EventId>,
    /// Id of the newest event present.
    pub newest_event: Option<EventId>,
    /// Size of the database file in bytes.
    pub file_bytes: u64,
}

/// What one sweep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions removed because their deadline passed.
    pub expired: usize,
    /// Bans removed because they ran out.
    pub bans_lifted: usize,
    /// Pending sign-ins removed because their deadline passed.
    pub pending: usize,
    /// Access tokens removed because they expired.
    pub tokens_expired: usize,
    /// OpenID Connect codes removed because they expired (spent or not).
    pub oidc_codes: usize,
    /// OpenID Connect grants removed because all their tokens expired.
    pub oidc_grants: usize,
    /// True when the batch limit was reached and expired entries remain.
    pub more: bool,
}

/// What one prune step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Events removed by this step.
    pub pruned: u64,
    /// Id of the newest event removed, if any was.
    pub through: Option<EventId>,
    /// True when the limit was reached and events at or below the bound remain.
    pub more: bool,
}

/// Events per kind and per user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Every kind with at least one event, most frequent first.
    pub by_kind: Vec<(EventKind, u64)>,
    /// Index entries whose kind this build does not know (from a newer build).
    pub unknown_kinds: u64,
    /// The `top` users with the most events, most first (ties by name).
    pub top_users: Vec<(String, u64)>,
    /// Distinct users with at least one event.
    pub users: u64,
    /// Events that name no user.
    pub without_user: u64,
}

/// Most problems listed in a report; the count is always exact.
const MAX_LISTED: usize = 20;

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub sessions: u64,
    pub events: u64,
    pub bans: u64,
    /// Users with second factors stored.
    pub users_with_factors: u64,
    /// Sign-ins waiting for their second step.
    pub pending_signins: u64,
    /// Access tokens stored.
    pub tokens: u64,
    /// Events ever appended, pruned ones included.
    pub events_appended: u64,
    /// Events removed by retention.
    pub events_pruned: u64,
    /// Hex SHA-256 of the newest event: keep it elsewhere to detect a rewrite.
    pub chain_head: String,
    /// The first event at which the chain breaks, if it does.
    pub first_bad_event: Option<u64>,
    pub problem_count: usize,
    /// Up to 20 problems, in the order found.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    /// Records one problem; the list keeps the first 20.
    pub fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}
