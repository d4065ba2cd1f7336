//! Words for people: a user agent as "Firefox on Linux", a time as
//! "3 minutes ago", and the exact time for a `title`.

use std::sync::LazyLock;

/// The user-agent parser; its patterns are compiled once.
static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

/// What the parser reports when it does not know a field.
const UNKNOWN: &str = "UNKNOWN";

/// A browser and system as a person says them, for example "Firefox on
/// Linux". Falls back to "Unknown browser" (and leaves out the system) when
/// the agent is missing or not recognised.
pub fn browser_and_os(user_agent: Option<&str>) -> String {
    let parsed = user_agent.and_then(|ua| PARSER.parse(ua));
    let (name, os) = match &parsed {
        Some(r) => (r.name, r.os),
        None => (UNKNOWN, UNKNOWN),
    };
    let name = match name {
        UNKNOWN | "" => "Unknown browser",
        "HTTP Library" => "Script or command-line tool",
        n => n,
    };
    match os {
        UNKNOWN | "" => name.to_string(),
        "Mac OSX" => format!("{name} on macOS"),
        os => format!("{name} on {os}"),
    }
}

/// How long ago `then_ms` was at `now_ms`, in the largest whole unit:
/// "just now", "3 minutes ago", "1 hour ago", "2 days ago". A time in the
/// future (clock skew) reads "just now".
pub fn relative(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    let (n, unit) = match secs {
        0..60 => return "just now".to_string(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        86_400..2_592_000 => (secs / 86_400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{s} ago")
}

/// `YYYY-MM-DD HH:MM:SS UTC` from milliseconds since the epoch.
pub fn exact(ms: u64) -> String {
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
    match ts {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "unknown time".to_string(),
    }
}

/// RFC 3339 for a `datetime` attribute.
pub fn machine(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_read_as_people_say_them() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser_and_os(Some(firefox)), "Firefox on Linux");
        let chrome_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        assert_eq!(browser_and_os(Some(chrome_mac)), "Chrome on macOS");
        let safari_ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(browser_and_os(Some(safari_ios)), "Safari on iPhone");
        assert_eq!(
            browser_and_os(Some("curl/8.5.0")),
            "Script or command-line tool"
        );
        assert_eq!(browser_and_os(None), "Unknown browser");
        assert_eq!(browser_and_os(Some("\u{202e}evil")), "Unknown browser");
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now, now + 5_000), "just now");
        assert_eq!(relative(now, now - 59_999), "just now");
        assert_eq!(relative(now, now - 60_000), "1 minute ago");
        assert_eq!(relative(now, now - 3 * 60_000), "3 minutes ago");
        assert_eq!(relative(now, now - 3_600_000), "1 hour ago");
        assert_eq!(relative(now, now - 2 * 86_400_000), "2 days ago");
        assert_eq!(relative(now, now - 400 * 86_400_000), "1 year ago");
    }

    #[test]
    fn exact_times() {
        assert_eq!(exact(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(exact(1_709_251_260_000), "2024-03-01 00:01:00 UTC");
        assert_eq!(exact(u64::MAX), "unknown time");
        assert_eq!(machine(0), "1970-01-01T00:00:00Z");
    }
}
