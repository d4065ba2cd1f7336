//! The JSON Lines form of an audit event, shared by `auditctl query --json`,
//! `auditctl export` and the retention archive, so one `jq` program reads all
//! three.
//!
//! One object per line:
//! `{"id":"…","time":"2026-11-26T19:44:26.123456Z","time_us":…,"kind":"login.failure",
//! "user":"alice","ip":"203.0.113.9","user_agent":…,"session":…,"details":{"reason":"…"}}`.
//! `id` is a string (it exceeds 2^53); absent values are `null`; `details` is an
//! object in stored order.

use std::io::Write;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::store::Event;

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

struct Details<'a>(&'a [(String, String)]);

impl Serialize for Details<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Line<'a> {
    id: String,
    time: String,
    time_us: u64,
    kind: &'static str,
    user: Option<&'a str>,
    ip: Option<String>,
    user_agent: Option<&'a str>,
    session: Option<&'a str>,
    details: Details<'a>,
}

/// Writes `ev` as one JSON line (with the trailing newline).
pub fn write_event(out: &mut (impl Write + ?Sized), ev: &Event) -> std::io::Result<()> {
    let line = Line {
        id: ev.id.to_string(),
        time: rfc3339_utc(ev.time_us),
        time_us: ev.time_us,
        kind: ev.kind.as_str(),
        user: ev.user.as_deref(),
        ip: ev.ip.map(|ip| ip.to_string()),
        user_agent: ev.user_agent.as_deref(),
        session: ev.session.as_deref(),
        details: Details(&ev.details),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventId, EventKind};

    #[test]
    fn line_is_one_json_object() {
        let ev = Event {
            id: EventId::from_micros(1_764_186_266_123_456),
            time_us: 1_764_186_266_123_456,
            kind: EventKind::LoginFailure,
            user: Some("al\"ice\n".into()),
            ip: Some("203.0.113.9".parse().unwrap()),
            user_agent: None,
            session: None,
            details: vec![("reason".into(), "bad password".into())],
        };
        let mut buf = Vec::new();
        write_event(&mut buf, &ev).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], ev.id.to_string());
        assert_eq!(v["time"], "2025-11-26T19:44:26.123456Z");
        assert_eq!(v["kind"], "login.failure");
        assert_eq!(v["user"], "al\"ice\n");
        assert_eq!(v["details"]["reason"], "bad password");
        assert!(v["session"].is_null());
    }
}
