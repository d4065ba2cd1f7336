//! Parsing of the times and spans operators type: `--since 2h`,
//! `--until 2026-11-26`, `--since 2026-11-26T08:00:00Z`, `--older-than 90d`.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

const HINT: &str = "expected RFC 3339 (2026-11-26T08:00:00Z), a local date or date-time \
                    (2026-11-26, 2026-11-26T08:00), or a span ago (30s, 15m, 2h, 7d, 2w, 1h30m)";

/// Why a time or span could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    #[error("invalid time {0:?}: {HINT}")]
    Time(String),
    #[error("invalid span {0:?}: expected a number and a unit (30s, 15m, 2h, 7d, 2w), e.g. 90d")]
    Span(String),
    #[error("time {0:?} is out of range")]
    Range(String),
}

/// Parses a span such as `15m`, `7d` or `1h30m`. Units: s, m, h, d, w.
pub fn parse_span(s: &str) -> Result<Duration, TimeSpecError> {
    let bad = || TimeSpecError::Span(s.to_string());
    let t = s.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn micros(ts: Timestamp, s: &str) -> Result<u64, TimeSpecError> {
    u64::try_from(ts.as_microsecond()).map_err(|_| TimeSpecError::Range(s.to_string()))
}

/// Parses a point in time into microseconds since the epoch. Relative spans
/// count back from `now`; dates and date-times without an offset are read in
/// `tz`.
pub fn parse_time(s: &str, now: Timestamp, tz: &TimeZone) -> Result<u64, TimeSpecError> {
    let t = s.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(TimeSpecError::Time(s.to_string()));
    }
    if t == "now" {
        return micros(now, s);
    }
    if t.starts_with(|c: char| c.is_ascii_digit())
        && t.ends_with(['s', 'm', 'h', 'd', 'w'])
        && let Ok(span) = parse_span(t)
    {
        let secs = i64::try_from(span.as_secs()).map_err(|_| TimeSpecError::Range(s.into()))?;
        let ts = jiff::SignedDuration::from_secs(secs);
        let back = now
            .checked_sub(ts)
            .map_err(|_| TimeSpecError::Range(s.to_string()))?;
        return micros(back, s);
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return micros(ts, s);
    }
    // A date-time first: the date parser also accepts one and drops its time.
    let local = if let Ok(dt) = t.parse::<DateTime>() {
        dt.to_zoned_datetime(tz.clone())
    } else if let Ok(d) = t.parse::<Date>() {
        d.to_zoned_datetime(tz.clone())
    } else {
        return Err(TimeSpecError::Time(s.to_string()));
    };
    let zdt = local.map_err(|_| TimeSpecError::Range(s.to_string()))?;
    micros(zdt.timestamp(), s)
}

/// [`parse_time`] against the system clock and time zone, for clap.
pub fn parse_time_now(s: &str) -> Result<u64, TimeSpecError> {
    parse_time(s, Timestamp::now(), &TimeZone::system())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    fn at(s: &str) -> u64 {
        micros(s.parse::<Timestamp>().unwrap(), s).unwrap()
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_span("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_span("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_span("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "d", "15", "15x", "-5m", "1.5h", "99999999999999999999d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        let utc = TimeZone::UTC;
        assert_eq!(
            parse_time("2h", now(), &utc),
            Ok(at("2026-11-26T10:00:00Z"))
        );
        assert_eq!(
            parse_time("7d", now(), &utc),
            Ok(at("2026-11-19T12:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-26", now(), &utc),
            Ok(at("2026-11-26T00:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-26T08:30", now(), &utc),
            Ok(at("2026-11-26T08:30:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-26T08:00:00+01:00", now(), &utc),
            Ok(at("2026-11-26T07:00:00Z"))
        );
        assert_eq!(
            parse_time("now", now(), &utc),
            Ok(at("2026-11-26T12:00:00Z"))
        );
        let paris = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(
            parse_time("2026-11-26", now(), &paris),
            Ok(at("2026-11-25T23:00:00Z"))
        );
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        for bad in ["yesterday", "2026-13-01", "1969-01-01", "99999d", "", "12"] {
            let e = parse_time(bad, now(), &TimeZone::UTC).unwrap_err();
            assert!(
                e.to_string().contains("RFC 3339") || e.to_string().contains("range"),
                "{bad}: {e}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_strings_never_panic(s in "\\PC{0,80}") {
            let _ = parse_time(&s, now(), &TimeZone::UTC);
            let _ = parse_span(&s);
        }

        #[test]
        fn spanlike_strings_never_panic(n in any::<u64>(), u in "[smhdwx]{1,3}") {
            let s = format!("{n}{u}");
            let _ = parse_time(&s, now(), &TimeZone::UTC);
            let _ = parse_span(&s);
        }
    }
}
