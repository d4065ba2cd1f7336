//! Audit events: ids, events to append, stored events, filters and pages.
//! How an event looks on the wire is in `wire.rs`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::clock::now_us;
use super::event_kind::{EventKind, Outcome};
use super::token::PublicId;

/// Audit event id: microseconds since the epoch in the high 52 bits and a
/// per-microsecond sequence in the low 12, so ids sort by time and a time window
/// is an id range. Ids are assigned by the store and strictly increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u64);

impl EventId {
    /// Bits of the per-microsecond sequence.
    pub const SEQ_BITS: u32 = 12;

    /// The smallest id at or after `us` microseconds.
    pub fn from_micros(us: u64) -> Self {
        EventId(us.saturating_mul(1 << Self::SEQ_BITS))
    }

    /// The time part of the id, in microseconds since the epoch.
    pub fn micros(self) -> u64 {
        self.0 >> Self::SEQ_BITS
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for EventId {
    /// As a string: JSON consumers such as `jq` lose precision above 2^53.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    /// From the string form [`Serialize`] writes.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map(EventId)
            .map_err(|_| serde::de::Error::custom(format!("bad event id {s:?}")))
    }
}

/// An event to append. The store assigns its id from `at_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// When, in microseconds since the epoch.
    pub at_us: u64,
    /// The user concerned, if any.
    pub user: Option<String>,
    /// The client address, if any.
    pub ip: Option<IpAddr>,
    /// The client's user agent, if any.
    pub user_agent: Option<String>,
    /// The public id of the session concerned, if any.
    pub session: Option<PublicId>,
    /// Further facts as key and value, in the order given.
    pub details: Vec<(String, String)>,
}

impl NewEvent {
    /// An event of `kind` happening now.
    pub fn now(kind: EventKind) -> Self {
        Self::at(kind, now_us())
    }

    /// An event of `kind` at `at_us` microseconds since the epoch.
    pub fn at(kind: EventKind, at_us: u64) -> Self {
        NewEvent {
            kind,
            at_us,
            user: None,
            ip: None,
            user_agent: None,
            session: None,
            details: Vec::new(),
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    pub fn user_agent(mut self, ua: Option<String>) -> Self {
        self.user_agent = ua;
        self
    }

    pub fn session(mut self, id: PublicId) -> Self {
        self.session = Some(id);
        self
    }

    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }
}

/// A stored audit event. Its one JSON form (the audit API, JSON Lines
/// exports and archives) is defined in `wire.rs`.
///
/// Its short strings are [`CompactString`]s: up to 24 bytes (user names,
/// session ids, most detail keys and values) they live inside the event.
/// The user agent, long and repeated from event to event of one client, is
/// shared: the events of a page that name the same agent hold one string.
/// So a page read from the store costs about one allocation an event (its
/// details), instead of six or more. All serialize as plain strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's id (its time and sequence).
    pub id: EventId,
    /// Microseconds since the epoch (the time part of the id).
    pub time_us: u64,
    /// What happened.
    pub kind: EventKind,
    /// The user concerned, if any.
    pub user: Option<CompactString>,
    /// The client address, if any.
    pub ip: Option<IpAddr>,
    /// The client's user agent, if any.
    pub user_agent: Option<Arc<str>>,
    /// The public id of the session concerned, if any.
    pub session: Option<CompactString>,
    /// Further facts as key and value, in stored order.
    pub details: Vec<(CompactString, CompactString)>,
}

/// Which events a query wants. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of this user.
    pub user: Option<String>,
    /// Any of these kinds (empty: all kinds).
    pub kinds: Vec<EventKind>,
    /// Events at or after this time (microseconds).
    pub since_us: Option<u64>,
    /// Events strictly before this time (microseconds).
    pub until_us: Option<u64>,
    /// Only kinds that record this outcome.
    pub outcome: Option<Outcome>,
    /// Only events from this client address.
    pub ip: Option<IpAddr>,
}

impl EventFilter {
    /// The kinds an event must have to match, from `kinds` and `outcome`
    /// together, sorted: `None` when any kind matches, empty when none can.
    pub fn wanted_kinds(&self) -> Option<Vec<EventKind>> {
        let mut kinds: Vec<EventKind> = if self.kinds.is_empty() {
            match self.outcome {
                None => return None,
                Some(_) => EventKind::ALL.to_vec(),
            }
        } else {
            self.kinds.clone()
        };
        if let Some(o) = self.outcome {
            kinds.retain(|k| k.outcome() == Some(o));
        }
        kinds.sort();
        kinds.dedup();
        Some(kinds)
    }

    /// Whether `ev` matches every field of the filter, checked on the event
    /// itself (no index): for following new events and streaming exports.
    pub fn matches(&self, ev: &Event) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| ev.user.as_deref() == Some(u.as_str()))
            && (self.kinds.is_empty() || self.kinds.contains(&ev.kind))
            && self
                .since_us
                .is_none_or(|t| ev.id >= EventId::from_micros(t))
            && self
                .until_us
                .is_none_or(|t| ev.id < EventId::from_micros(t))
            && self.outcome.is_none_or(|o| ev.kind.outcome() == Some(o))
            && self.ip.is_none_or(|ip| ev.ip == Some(ip))
    }
}

/// Default page size of an audit query.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page an audit query returns.
pub const MAX_LIMIT: usize = 1_000;

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events of the page, newest first.
    pub events: Vec<Event>,
    /// Where the next page starts; `None` when there are no older matches.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_each_field() {
        let ev = Event {
            id: EventId::from_micros(5_000),
            time_us: 5_000,
            kind: EventKind::LoginFailure,
            user: Some("alice".into()),
            ip: Some("192.0.2.1".parse().unwrap()),
            user_agent: None,
            session: None,
            details: vec![],
        };
        let f = |f: EventFilter| f.matches(&ev);
        assert!(f(EventFilter::default()));
        assert!(f(EventFilter {
            user: Some("alice".into()),
            kinds: vec![EventKind::Logout, EventKind::LoginFailure],
            since_us: Some(5_000),
            until_us: Some(5_001),
            outcome: Some(Outcome::Failure),
            ip: ev.ip,
        }));
        assert!(!f(EventFilter {
            user: Some("bob".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            kinds: vec![EventKind::Logout],
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            since_us: Some(5_001),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            until_us: Some(5_000),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            ip: Some("::1".parse().unwrap()),
            ..Default::default()
        }));
    }
}
