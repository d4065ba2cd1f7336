//! Typed settings: the sections of a validated config in the units the
//! server uses (lifetimes in milliseconds where they meet the clock,
//! intervals as [`Duration`], the cookie's effective name). Built only by
//! [`super::validate`], after every bound is checked, so no conversion here
//! can overflow.

use std::time::Duration;

use super::schema::{FileConfig, HstsSettings, LimitSettings, SessionSettings};

/// The session cookie, as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The name on the wire. With `Secure` and no `Domain`, the configured
    /// name gets the `__Host-` prefix: browsers then accept that cookie only
    /// from this host, over HTTPS, with `Path=/`, so neither a sibling
    /// subdomain nor a plain-HTTP page can plant or shadow it.
    pub name: String,
    /// `Domain` attribute; none: a host-only cookie.
    pub domain: Option<String>,
    /// Add `Secure`: as configured, else whenever browsers reach gatehouse
    /// over https (an https public origin, or `[tls]`).
    pub secure: bool,
}

impl CookieConfig {
    pub(super) fn new(file: &FileConfig, https: bool) -> CookieConfig {
        let secure = file.secure_cookies.unwrap_or(https);
        let name = &file.cookie_name;
        let name = if secure
            && file.cookie_domain.is_none()
            && !name.starts_with("__Host-")
            && !name.starts_with("__Secure-")
        {
            format!("__Host-{name}")
        } else {
            name.clone()
        };
        CookieConfig {
            name,
            domain: file.cookie_domain.clone(),
            secure,
        }
    }
}

/// `[session]`: lifetimes in milliseconds, as sessions store their deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// An ordinary session ends after this long without use.
    pub idle_ms: u64,
    /// An ordinary session ends this long after login.
    pub absolute_ms: u64,
    /// Lifetime of a "keep me signed in" session (no idle limit); a whole
    /// number of seconds, the cookie's `Max-Age`.
    pub remember_me_ms: u64,
    /// Most sessions one user holds; a new login evicts the oldest.
    pub max_per_user: usize,
    /// A check this long after the recorded last use slides the idle deadline.
    pub touch_interval_ms: u64,
    /// How often expired sessions and bans are swept.
    pub sweep_interval: Duration,
}

impl From<&SessionSettings> for SessionConfig {
    fn from(s: &SessionSettings) -> Self {
        let ms = |secs: u64| secs.saturating_mul(1000);
        SessionConfig {
            idle_ms: ms(s.idle_secs),
            absolute_ms: ms(s.absolute_secs),
            remember_me_ms: ms(s.remember_me_secs),
            max_per_user: s.max_per_user,
            touch_interval_ms: ms(s.touch_interval_secs),
            sweep_interval: Duration::from_secs(s.sweep_interval_secs),
        }
    }
}

/// `[limits]`: request and connection bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConfig {
    pub login_body_bytes: usize,
    pub body_bytes: usize,
    /// Largest request head; fits a `u32` (at most `MAX_BYTES`).
    pub header_bytes: usize,
    /// Time a connection may go without a request in progress (the request
    /// head bound).
    pub header_read_timeout: Duration,
    /// Time a request may take from head to response.
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Never 0.
    pub max_connections_per_ip: usize,
    pub hash_queue: usize,
    /// Hashing slots; 0 means one per CPU core.
    pub hash_workers: usize,
}

impl From<&LimitSettings> for LimitConfig {
    fn from(l: &LimitSettings) -> Self {
        LimitConfig {
            login_body_bytes: l.login_body_bytes,
            body_bytes: l.body_bytes,
            header_bytes: l.header_bytes,
            header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
            request_timeout: Duration::from_secs(l.request_timeout_secs),
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            hash_queue: l.hash_queue,
            hash_workers: l.hash_workers,
        }
    }
}

/// Audit retention, present only when `audit_retention_days` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Events older than this are removed.
    pub keep: Duration,
    /// Archive events before removing them.
    pub archive: bool,
    /// How often the retention pass runs (also once at start).
    pub interval: Duration,
}

impl RetentionConfig {
    pub(super) fn new(file: &FileConfig) -> Option<RetentionConfig> {
        file.audit_retention_days.map(|days| RetentionConfig {
            keep: Duration::from_secs(days.saturating_mul(86_400)),
            archive: file.archive_pruned_events,
            interval: Duration::from_secs(file.retention_interval_secs),
        })
    }
}

/// The `Strict-Transport-Security` value, when browsers reach gatehouse
/// over https (an https public origin, or `[tls]`) and the header is not
/// turned off. Otherwise gatehouse cannot know that browsers reach it over
/// HTTPS, and the header is ignored over plain HTTP anyway.
pub(super) fn hsts_value(h: &HstsSettings, https: bool) -> Option<String> {
    (h.enabled && https).then(|| {
        let mut v = format!("max-age={}", h.max_age_secs);
        if h.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        v
    })
}
