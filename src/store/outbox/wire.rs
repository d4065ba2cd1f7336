//! An outbox entry's event as JSON: what the state scripts receive from
//! the node that made the change and add to the stream, and what the
//! chainer reads back. A field's name never changes; a new field is
//! optional, so an entry written by one release is read by the next.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::domain::{EventKind, NewEvent, PublicId};

/// The event of one outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub kind: EventKind,
    /// The time of the change, in microseconds since the epoch.
    pub at_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<PublicId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

impl From<&NewEvent> for OutboxEvent {
    fn from(e: &NewEvent) -> Self {
        OutboxEvent {
            kind: e.kind,
            at_us: e.at_us,
            user: e.user.clone(),
            ip: e.ip,
            user_agent: e.user_agent.clone(),
            session: e.session,
            details: e.details.clone(),
        }
    }
}

impl From<OutboxEvent> for NewEvent {
    fn from(e: OutboxEvent) -> Self {
        NewEvent {
            kind: e.kind,
            at_us: e.at_us,
            user: e.user,
            ip: e.ip,
            user_agent: e.user_agent,
            session: e.session,
            details: e.details,
        }
    }
}

pub(crate) fn encode(e: &NewEvent) -> String {
    serde_json::to_string(&OutboxEvent::from(e)).expect("JSON encoding of an in-memory event")
}

pub(super) fn decode(bytes: &[u8]) -> Result<NewEvent, String> {
    serde_json::from_slice::<OutboxEvent>(bytes)
        .map(NewEvent::from)
        .map_err(|e| format!("not an outbox event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_comes_back_as_it_went_in() {
        let e = NewEvent::at(EventKind::SessionRevoked, 1_780_000_000_123_456)
            .user("alice")
            .ip(Some("2001:db8::7".parse().unwrap()))
            .detail("by", "admin");
        assert_eq!(decode(encode(&e).as_bytes()).unwrap(), e);
        let bare = NewEvent::at(EventKind::BanLifted, 5);
        assert_eq!(encode(&bare), r#"{"kind":"ban.lifted","at_us":5}"#);
        assert_eq!(decode(encode(&bare).as_bytes()).unwrap(), bare);
    }

    #[test]
    fn a_foreign_entry_is_refused_with_a_reason() {
        for bad in [
            &b"{}"[..],
            b"[1]",
            b"\xff",
            br#"{"kind":"no.such","at_us":1}"#,
        ] {
            assert!(decode(bad).is_err());
        }
    }
}
