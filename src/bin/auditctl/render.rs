//! How events and sessions look on a terminal: aligned tables with local
//! times, and JSON Lines for scripts. Every stored string in a table goes
//! through [`clean`] (`gatehouse::terminal::escape`): control, format,
//! separator and invisible characters are escaped, so a hostile user agent
//! cannot drive the terminal and a crafted name cannot pass for another or
//! reorder the columns. JSON output is exact.

use std::io::{self, Write};

use gatehouse::store::{AccessTokenInfo, Event, Session};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Local time of `us` microseconds since the epoch, to the second.
pub fn local_time(tz: &TimeZone, us: u64) -> String {
    match i64::try_from(us)
        .ok()
        .and_then(|us| Timestamp::from_microsecond(us).ok())
    {
        Some(ts) => ts
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => format!("@{us}us"),
    }
}

/// The name of the zone times are shown in.
pub fn tz_name(tz: &TimeZone) -> &str {
    tz.iana_name().unwrap_or("local")
}

/// Header of the time column: says which zone times are in.
pub fn time_header(tz: &TimeZone) -> String {
    format!("TIME ({})", tz_name(tz))
}

/// A stored string as a table cell: see `gatehouse::terminal::escape`.
pub fn clean(s: &str) -> String {
    gatehouse::terminal::escape(s).into_owned()
}

fn opt(s: Option<&str>) -> String {
    s.map(clean).unwrap_or_else(|| "-".into())
}

/// The cells of one event row.
pub fn event_row(tz: &TimeZone, ev: &Event) -> Vec<String> {
    let details: Vec<String> = ev
        .details
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect();
    vec![
        local_time(tz, ev.time_us),
        ev.kind.as_str().to_string(),
        opt(ev.user.as_deref()),
        ev.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
        opt(ev.session.as_deref()),
        details.join(" "),
    ]
}

/// Header cells of the event table.
pub fn event_header(tz: &TimeZone) -> Vec<String> {
    [&time_header(tz), "KIND", "USER", "IP", "SESSION", "DETAILS"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Widths that fit a follow stream without knowing the rows in advance.
pub const FOLLOW_WIDTHS: [usize; 5] = [19, 16, 12, 15, 22];

/// The columns `s` takes on a terminal: two for CJK and most emoji, none
/// for combining marks (cells are escaped first, so no control characters).
pub fn width(s: &str) -> usize {
    s.width()
}

/// `s` followed by spaces up to `w` columns.
pub fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// `s` cut to at most `max` columns, with `…` at the end when cut.
pub fn fit(s: String, max: usize) -> String {
    if width(&s) <= max {
        return s;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Writes rows with each column padded to `widths` columns (the last one
/// unpadded).
pub fn write_row(out: &mut impl Write, cells: &[String], widths: &[usize]) -> io::Result<()> {
    let mut line = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            line.push_str(c);
        } else {
            let w = widths.get(i).copied().unwrap_or(0);
            line.push_str(&pad(c, w));
            line.push_str("  ");
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Writes a whole table, columns as wide as their widest cell.
pub fn write_table(
    out: &mut impl Write,
    header: &[String],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    write_row(out, header, &widths)?;
    for r in rows {
        write_row(out, r, &widths)?;
    }
    Ok(())
}

/// Writes events as a table (newest first as given).
pub fn write_events(out: &mut impl Write, tz: &TimeZone, events: &[Event]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = events.iter().map(|e| event_row(tz, e)).collect();
    write_table(out, &event_header(tz), &rows)
}

/// Writes sessions as a table.
pub fn write_sessions(out: &mut impl Write, tz: &TimeZone, sessions: &[Session]) -> io::Result<()> {
    let header: Vec<String> = ["USER", "ID", "CREATED", "LAST SEEN", "IP", "AGENT"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let agent = s.user_agent.as_deref().map(|a| fit(clean(a), 60));
            vec![
                clean(&s.user),
                s.id.to_string(),
                local_time(tz, s.created_ms.saturating_mul(1000)),
                local_time(tz, s.last_seen_ms.saturating_mul(1000)),
                s.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
                agent.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// Writes one session as a JSON line.
pub fn write_session_json(out: &mut impl Write, s: &Session) -> io::Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    out.write_all(b"\n")
}

/// Writes access tokens as a table. Names and scopes are escaped: they
/// are whatever their owner typed.
pub fn write_tokens(
    out: &mut impl Write,
    tz: &TimeZone,
    tokens: &[AccessTokenInfo],
) -> io::Result<()> {
    let header: Vec<String> = [
        "USER",
        "ID",
        "NAME",
        "PREFIX",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "SCOPE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                clean(&t.user),
                t.id.to_string(),
                clean(&t.name),
                clean(&t.hint),
                local_time(tz, t.created_ms.saturating_mul(1000)),
                local_time(tz, t.expires_ms.saturating_mul(1000)),
                t.last_used_ms
                    .map(|u| local_time(tz, u.saturating_mul(1000)))
                    .unwrap_or_else(|| "never".into()),
                if t.domains.is_empty() {
                    "*".into()
                } else {
                    clean(&t.domains.join(","))
                },
            ]
        })
        .collect();
    write_table(out, &header, &rows)
}

/// Writes one access token as a JSON line (never the secret: only its
/// hash is stored).
pub fn write_token_json(out: &mut impl Write, t: &AccessTokenInfo) -> io::Result<()> {
    let v = serde_json::json!({
        "id": t.id.to_string(),
        "user": t.user,
        "name": t.name,
        "prefix": t.hint,
        "created_ms": t.created_ms,
        "expires_ms": t.expires_ms,
        "last_used_ms": t.last_used_ms,
        "domains": t.domains,
    });
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}

/// Bytes in a human unit (KiB, MiB, GiB).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
    }

    fn crafted_event() -> Event {
        Event {
            id: gatehouse::store::EventId::from_micros(1_700_000_000_000_000),
            time_us: 1_700_000_000_000_000,
            kind: gatehouse::store::EventKind::LoginFailure,
            user: Some("a\u{200b}\u{200b}dmin".into()),
            ip: None,
            user_agent: None,
            session: None,
            details: vec![("reason".into(), "x\u{202e}y  z".into())],
        }
    }

    #[test]
    fn crafted_cells_are_escaped_in_every_table() {
        let ev = crafted_event();
        let row = event_row(&TimeZone::UTC, &ev);
        assert_eq!(row[2], "a\\u{200b}\\u{200b}dmin");
        assert_eq!(row[5], "reason=x\\u{202e}y\\u{20}\\u{20}z");
        let mut out = Vec::new();
        write_events(&mut out, &TimeZone::UTC, &[ev]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains('\u{200b}') && !text.contains('\u{202e}'),
            "{text}"
        );
    }

    #[test]
    fn json_output_stays_exact() {
        let ev = crafted_event();
        let mut out = Vec::new();
        gatehouse::jsonl::write_event(&mut out, &ev).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["user"], "a\u{200b}\u{200b}dmin");
        assert_eq!(v["details"]["reason"], "x\u{202e}y  z");
    }

    #[test]
    fn table_columns_align() {
        let mut out = Vec::new();
        let header = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        let rows = vec![
            vec!["long cell".to_string(), "x".to_string(), "tail".to_string()],
            vec!["s".to_string(), "yy".to_string(), "".to_string()],
        ];
        write_table(&mut out, &header, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A          B   C");
        assert_eq!(lines[1], "long cell  x   tail");
        assert_eq!(lines[2], "s          yy");
    }

    /// Wide characters (CJK, emoji) take two columns on a terminal: the
    /// columns after them still line up.
    #[test]
    fn table_columns_align_by_display_width() {
        let mut out = Vec::new();
        let header = vec!["USER".to_string(), "IP".to_string(), "X".to_string()];
        let rows = vec![
            vec!["田中".to_string(), "10.0.0.1".to_string(), "a".to_string()],
            vec!["bob🙂".to_string(), "10.0.0.2".to_string(), "b".to_string()],
            vec!["zoë".to_string(), "10.0.0.3".to_string(), "c".to_string()],
        ];
        write_table(&mut out, &header, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "USER   IP        X");
        assert_eq!(lines[1], "田中   10.0.0.1  a");
        assert_eq!(lines[2], "bob🙂  10.0.0.2  b");
        assert_eq!(lines[3], "zoë    10.0.0.3  c");
        // Each IP starts at the same terminal column.
        for l in &lines[1..] {
            let ip = l.find("10.0.0").unwrap();
            assert_eq!(width(&l[..ip]), 7, "{l}");
        }
        assert_eq!(fit("ab田中cd".into(), 5), "ab田…");
        assert_eq!(fit("abc".into(), 5), "abc");
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(local_time(&TimeZone::UTC, 0), "1970-01-01 00:00:00");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
    }
}
