//! JSON Lines of audit events, shared by `auditctl query --json`,
//! `auditctl export` and the retention archive: one event per line, in the
//! one JSON form of an event (see [`crate::domain`]'s wire form, which the
//! audit API uses too), so one `jq` program reads all of them.
//!
//! One object per line:
//! `{"id":"…","time":"2026-11-26T19:44:26.123456Z","time_us":…,"kind":"login.failure",
//! "user":"alice","ip":"203.0.113.9","user_agent":…,"session":…,"details":{"reason":"…"}}`.
//! `id` is a string (it exceeds 2^53); absent values are `null`; `details` is an
//! object in stored order.

use std::io::Write;

use crate::domain::Event;
pub use crate::domain::rfc3339_utc;

/// Writes `ev` as one JSON line (with the trailing newline).
pub fn write_event(out: &mut (impl Write + ?Sized), ev: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, ev)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, EventKind};

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

    /// A line is exactly the event's JSON form and a newline.
    #[test]
    fn line_is_the_wire_form() {
        let ev = Event {
            id: EventId(42),
            time_us: 0,
            kind: EventKind::Logout,
            user: None,
            ip: None,
            user_agent: Some("curl/8".into()),
            session: None,
            details: vec![],
        };
        let mut buf = Vec::new();
        write_event(&mut buf, &ev).unwrap();
        let mut want = serde_json::to_vec(&ev).unwrap();
        want.push(b'\n');
        assert_eq!(buf, want);
    }
}
