//! The reference model: sessions, bans and the audit trail in `BTreeMap`s
//! and a `Vec`, with the rules every backend must follow written the
//! simplest way.

use std::collections::BTreeMap;

use crate::domain::{EventId, EventKind, PublicId, TokenHash};

/// A session as the model keeps it.
#[derive(Debug, Clone)]
pub(super) struct MSession {
    pub user: String,
    pub id: PublicId,
    pub created: u64,
    pub last_seen: u64,
    /// Idle lifetime; `None` for remember-me sessions.
    pub idle: Option<u64>,
    pub absolute: u64,
}

impl MSession {
    /// The earlier of the idle and the absolute deadline.
    pub fn deadline(&self) -> u64 {
        match self.idle {
            Some(i) => (self.last_seen + i).min(self.absolute),
            None => self.absolute,
        }
    }
}

/// An access token as the model keeps it.
#[derive(Debug, Clone)]
pub(super) struct MToken {
    pub user: String,
    pub id: PublicId,
    pub created: u64,
    pub expires: u64,
    pub last_used: Option<u64>,
    /// Recent distinct addresses, newest last, at most `TOKEN_RECENT_IPS`.
    pub ips: Vec<std::net::IpAddr>,
}

/// Everything the model holds.
#[derive(Default)]
pub(super) struct Model {
    pub sessions: BTreeMap<TokenHash, MSession>,
    pub tokens: BTreeMap<TokenHash, MToken>,
    /// Ban run-out instants by user; a sweep lifts the earliest first.
    pub bans: BTreeMap<String, u64>,
    /// (id, kind, user), in id order.
    pub events: Vec<(u64, EventKind, Option<String>)>,
    pub last_id: u64,
}

impl Model {
    /// Appends an event as the store must: an id from its time, above every
    /// id before it.
    pub fn event(&mut self, kind: EventKind, user: Option<&str>, at_us: u64) {
        let mut id = EventId::from_micros(at_us).0;
        if id <= self.last_id {
            id = self.last_id + 1;
        }
        self.last_id = id;
        self.events.push((id, kind, user.map(str::to_string)));
    }

    /// A user's sessions in index order: (created, hash) ascending.
    pub fn of_user(&self, user: &str) -> Vec<(TokenHash, MSession)> {
        let mut v: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(h, s)| (*h, s.clone()))
            .collect();
        v.sort_by_key(|(h, s)| (s.created, *h));
        v
    }

    /// Live sessions of `user` at `now`, newest first, as public ids.
    pub fn live_of(&self, user: &str, now: u64) -> Vec<PublicId> {
        let mut live: Vec<(u64, TokenHash, PublicId)> = self
            .of_user(user)
            .into_iter()
            .filter(|(_, s)| s.deadline() > now)
            .map(|(h, s)| (s.created, h, s.id))
            .collect();
        live.sort();
        live.into_iter().rev().map(|e| e.2).collect()
    }

    /// A user's tokens in index order: (created, hash) ascending.
    pub fn tokens_of(&self, user: &str) -> Vec<(TokenHash, MToken)> {
        let mut v: Vec<_> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.user == user)
            .map(|(h, t)| (*h, t.clone()))
            .collect();
        v.sort_by_key(|(h, t)| (t.created, *h));
        v
    }
}
