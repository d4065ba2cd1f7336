//! The one JSON form of an audit event, used by the audit API
//! (`GET /api/v1/audit`), `auditctl query --json`, `auditctl export` and the
//! retention archive, so one `jq` program reads all of them.
//!
//! One object: `{"id":"…","time":"2026-11-26T19:44:26.123456Z","time_us":…,
//! "kind":"login.failure","user":"alice","ip":"203.0.113.9","user_agent":…,
//! "session":…,"details":{"reason":"…"}}`. `id` is a string (it exceeds
//! 2^53); absent values are `null`; `details` is an object in stored order.
//! Archives exist in this form: it changes only compatibly (new fields at
//! the end), and byte for byte the same for the same event.
//!
//! The same form is read back ([`Deserialize`] for [`Event`]) where a
//! running server hands events to `auditctl` over its admin socket; `time`
//! is then ignored (it is derived from `time_us`).

use std::net::IpAddr;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize};

use super::event::{CompactString, Event, EventId};
use super::event_kind::EventKind;

/// RFC 3339 UTC form of a time in microseconds since the epoch.
pub fn rfc3339_utc(time_us: u64) -> String {
    match i64::try_from(time_us)
        .ok()
        .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
    {
        Some(ts) => ts.to_string(),
        None => format!("@{time_us}us"),
    }
}

/// Details as a JSON object, in stored order.
struct Details<'a>(&'a [(CompactString, CompactString)]);

impl Serialize for Details<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 9)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("time", &rfc3339_utc(self.time_us))?;
        st.serialize_field("time_us", &self.time_us)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("user", &self.user)?;
        st.serialize_field("ip", &self.ip)?;
        st.serialize_field("user_agent", &self.user_agent.as_deref())?;
        st.serialize_field("session", &self.session)?;
        st.serialize_field("details", &Details(&self.details))?;
        st.end()
    }
}

/// Details read back from their object, keeping its order.
struct DetailsIn(Vec<(CompactString, CompactString)>);

impl<'de> Deserialize<'de> for DetailsIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = DetailsIn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<DetailsIn, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = m.next_entry::<CompactString, CompactString>()? {
                    out.push(pair);
                }
                Ok(DetailsIn(out))
            }
        }
        d.deserialize_map(Pairs)
    }
}

#[derive(Deserialize)]
struct EventIn {
    id: EventId,
    time_us: u64,
    kind: EventKind,
    user: Option<CompactString>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    session: Option<CompactString>,
    details: DetailsIn,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = EventIn::deserialize(d)?;
        Ok(Event {
            id: e.id,
            time_us: e.time_us,
            kind: e.kind,
            user: e.user,
            ip: e.ip,
            user_agent: e.user_agent.map(Arc::from),
            session: e.session,
            details: e.details.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, EventKind};

    fn event() -> Event {
        Event {
            id: EventId(7_228_665_413_140_299_776),
            time_us: 1_764_186_266_123_456,
            kind: EventKind::LoginFailure,
            user: Some("al\"ice\n".into()),
            ip: Some("203.0.113.9".parse().unwrap()),
            user_agent: None,
            session: Some("l-MK7ZLO7NltevKMi9pK2w".into()),
            details: vec![
                ("reason".into(), "bad password".into()),
                ("count".into(), "2".into()),
            ],
        }
    }

    /// The exact bytes of one event: archives written before hold this form.
    #[test]
    fn the_form_is_pinned_byte_for_byte() {
        let text = serde_json::to_string(&event()).unwrap();
        assert_eq!(
            text,
            r#"{"id":"7228665413140299776","time":"2025-11-26T19:44:26.123456Z","time_us":1764186266123456,"kind":"login.failure","user":"al\"ice\n","ip":"203.0.113.9","user_agent":null,"session":"l-MK7ZLO7NltevKMi9pK2w","details":{"reason":"bad password","count":"2"}}"#
        );
    }

    /// Read back, the form gives the same event, details in their order.
    #[test]
    fn the_form_reads_back() {
        let ev = event();
        let text = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev);
        assert!(serde_json::from_str::<Event>(&text.replace("login.failure", "x.y")).is_err());
    }

    #[test]
    fn ipv6_and_missing_values() {
        let mut ev = event();
        ev.ip = Some("2001:db8::1".parse().unwrap());
        ev.user = None;
        ev.details.clear();
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["ip"], "2001:db8::1");
        assert!(v["user"].is_null());
        assert_eq!(v["details"], serde_json::json!({}));
    }
}
