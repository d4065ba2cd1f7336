//! Validation: every setting of a parsed file is checked (sense, then upper
//! bounds, so that no value can overflow or panic at run time) and turned
//! into the typed [`Config`]. Errors name the field; [`super::locate`] adds
//! the line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::policy::Policy;
use super::schema::{FileConfig, UserEntry};
use super::settings::{CookieConfig, LimitConfig, RetentionConfig, SessionConfig, hsts_value};
use super::suffix::PublicSuffixes;
use super::{Config, ConfigError, MAX_BYTES, MAX_COUNT, MAX_SECS};
use crate::domain::IpNet;

/// Most access tokens one user may hold: each is listed on one page and
/// checked at creation.
const MAX_TOKENS_PER_USER: usize = 1_000;

impl Config {
    /// Validates a parsed file.
    pub fn from_file(
        path: PathBuf,
        data_dir: PathBuf,
        file: FileConfig,
    ) -> Result<Config, ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.clone(),
            line: None,
            field: field.into(),
            reason,
        };
        let bind: SocketAddr = file
            .bind
            .parse()
            .map_err(|e| invalid("bind", format!("{:?}: {e}", file.bind)))?;
        let public_origin = match &file.public_origin {
            None => None,
            Some(s) => {
                let u = url::Url::parse(s).map_err(|e| invalid("public_origin", e.to_string()))?;
                if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                    return Err(invalid(
                        "public_origin",
                        "expected http(s)://host[:port]".into(),
                    ));
                }
                Some(u)
            }
        };
        let tls = super::tls::check(&file.tls, bind, &data_dir, invalid)?;
        if tls.is_some()
            && let Some(u) = public_origin.as_ref().filter(|u| u.scheme() != "https")
        {
            return Err(invalid(
                "public_origin",
                format!("{u}: the listener speaks TLS (`[tls]`), so browsers reach it over https"),
            ));
        }
        // Browsers reach gatehouse over https: through a TLS proxy in front
        // (the public origin says so) or on its own TLS listener.
        let https = tls.is_some()
            || public_origin
                .as_ref()
                .is_some_and(|u| u.scheme() == "https");
        let mut trusted = Vec::new();
        for (i, s) in file.trusted_proxies.iter().enumerate() {
            trusted.push(
                IpNet::parse_explained(s)
                    .map_err(|reason| invalid(&format!("trusted_proxies[{i}]"), reason))?,
            );
        }
        if file.cookie_name.is_empty()
            || !file
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "cookie_name",
                "use letters, digits, '_' or '-'".into(),
            ));
        }
        if let Some(d) = &file.cookie_domain {
            check_cookie_domain(d, public_origin.as_ref())
                .map_err(|reason| invalid("cookie_domain", reason))?;
        }
        // Browsers drop prefixed cookies that break the prefix's rules; refuse
        // such a setting here instead of failing every login silently.
        let secure = file.secure_cookies.unwrap_or(https);
        if file.cookie_name.starts_with("__Host-") && (!secure || file.cookie_domain.is_some()) {
            return Err(invalid(
                "cookie_name",
                "a `__Host-` cookie needs secure_cookies and no cookie_domain".into(),
            ));
        }
        if file.cookie_name.starts_with("__Secure-") && !secure {
            return Err(invalid(
                "cookie_name",
                "a `__Secure-` cookie needs secure_cookies".into(),
            ));
        }
        let s = &file.session;
        for (field, v) in [
            ("session.idle_secs", s.idle_secs),
            ("session.absolute_secs", s.absolute_secs),
            ("session.remember_me_secs", s.remember_me_secs),
            ("session.sweep_interval_secs", s.sweep_interval_secs),
            ("retention_interval_secs", file.retention_interval_secs),
            (
                "audit_retention_days",
                file.audit_retention_days.unwrap_or(1),
            ),
            ("regulation.window_secs", file.regulation.window_secs),
            ("regulation.ban_secs", file.regulation.ban_secs),
            (
                "limits.header_read_timeout_secs",
                file.limits.header_read_timeout_secs,
            ),
            (
                "limits.request_timeout_secs",
                file.limits.request_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        for (field, v) in [
            ("session.max_per_user", s.max_per_user),
            ("regulation.max_failures", file.regulation.max_failures),
            ("regulation.max_tracked", file.regulation.max_tracked),
            ("limits.login_body_bytes", file.limits.login_body_bytes),
            ("limits.body_bytes", file.limits.body_bytes),
            ("limits.max_connections", file.limits.max_connections),
            (
                "limits.max_connections_per_ip",
                file.limits.max_connections_per_ip,
            ),
            ("cache_mib", file.cache_mib),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        // Upper bounds: every lifetime is turned into milliseconds and added
        // to the clock, and every count sizes a semaphore or a buffer. Values
        // past these bounds are typos, and would overflow or panic at run time.
        for (field, v) in [
            ("session.idle_secs", s.idle_secs),
            ("session.absolute_secs", s.absolute_secs),
            ("session.remember_me_secs", s.remember_me_secs),
            ("session.touch_interval_secs", s.touch_interval_secs),
            ("session.sweep_interval_secs", s.sweep_interval_secs),
            ("regulation.window_secs", file.regulation.window_secs),
            ("regulation.ban_secs", file.regulation.ban_secs),
            (
                "limits.header_read_timeout_secs",
                file.limits.header_read_timeout_secs,
            ),
            (
                "limits.request_timeout_secs",
                file.limits.request_timeout_secs,
            ),
            ("idle_timeout_secs", file.idle_timeout_secs),
            ("shutdown_grace_secs", file.shutdown_grace_secs),
            ("hsts.max_age_secs", file.hsts.max_age_secs),
            ("second_factor.recent_secs", file.second_factor.recent_secs),
        ] {
            if v > MAX_SECS {
                return Err(invalid(
                    field,
                    format!("must be at most {MAX_SECS} (ten years)"),
                ));
            }
        }
        for (field, v, max) in [
            ("session.max_per_user", s.max_per_user, MAX_COUNT),
            (
                "regulation.max_failures",
                file.regulation.max_failures,
                MAX_COUNT,
            ),
            (
                "regulation.max_tracked",
                file.regulation.max_tracked,
                MAX_COUNT,
            ),
            (
                "limits.max_connections",
                file.limits.max_connections,
                MAX_COUNT,
            ),
            (
                "limits.max_connections_per_ip",
                file.limits.max_connections_per_ip,
                MAX_COUNT,
            ),
            ("limits.hash_workers", file.limits.hash_workers, 1024),
            ("limits.hash_queue", file.limits.hash_queue, MAX_COUNT),
            (
                "limits.login_body_bytes",
                file.limits.login_body_bytes,
                MAX_BYTES,
            ),
            ("limits.body_bytes", file.limits.body_bytes, MAX_BYTES),
            ("limits.header_bytes", file.limits.header_bytes, MAX_BYTES),
        ] {
            if v > max {
                return Err(invalid(field, format!("must be at most {max}")));
            }
        }
        let t = &file.tokens;
        if t.max_days == 0 {
            return Err(invalid("tokens.max_days", "must be greater than 0".into()));
        }
        if t.max_days > MAX_SECS / 86_400 {
            return Err(invalid(
                "tokens.max_days",
                format!("must be at most {} (ten years)", MAX_SECS / 86_400),
            ));
        }
        if t.max_per_user == 0 || t.max_per_user > MAX_TOKENS_PER_USER {
            return Err(invalid(
                "tokens.max_per_user",
                format!("must be from 1 to {MAX_TOKENS_PER_USER}"),
            ));
        }
        if file.limits.header_bytes < 8192 {
            return Err(invalid(
                "limits.header_bytes",
                "must be at least 8192".into(),
            ));
        }
        let sf = &file.second_factor;
        if !(30..=3600).contains(&sf.pending_secs) {
            return Err(invalid(
                "second_factor.pending_secs",
                "must be between 30 and 3600".into(),
            ));
        }
        if !(1..=64).contains(&sf.max_pending_per_user) {
            return Err(invalid(
                "second_factor.max_pending_per_user",
                "must be between 1 and 64".into(),
            ));
        }
        let most = crate::domain::MAX_ANONYMOUS_CEREMONIES;
        if !(1..=most).contains(&sf.passkey_ceremonies_per_client) {
            return Err(invalid(
                "second_factor.passkey_ceremonies_per_client",
                format!("must be from 1 to {most}"),
            ));
        }
        let a = &file.argon2;
        argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None)
            .map_err(|e| invalid("argon2", e.to_string()))?;
        let proxy = super::apps::check(&file, invalid)?;
        let storage = super::storage::check(&file.storage, invalid)?;
        let users = validate_users(&path, &file.users)?;
        let rules = crate::access::Rules::compile(&file.rules, file.access.default_policy, true)
            .map_err(|e| {
                let field = if e.index == usize::MAX {
                    "access.default_policy".to_string()
                } else {
                    format!("rules[{}].{}", e.index, e.field)
                };
                invalid(&field, e.message.clone())
            })?;
        let clients = super::oidc::check(&file.oidc.clients, public_origin.as_ref(), invalid)?;
        if !clients.is_empty() && storage.is_some() {
            return Err(invalid(
                "oidc.clients",
                "the OpenID Connect provider needs backend = \"redb\"; the distributed store \
                 does not keep its state yet"
                    .into(),
            ));
        }
        let mut restart_settings = file.restart_settings();
        // The data dir in force, wherever it was named.
        restart_settings.insert(
            "data_dir".into(),
            format!("{:?}", data_dir.display().to_string()),
        );
        Ok(Config {
            restart_settings,
            cookie: CookieConfig::new(&file, https),
            hsts: hsts_value(&file.hsts, https),
            session: SessionConfig::from(&file.session),
            limits: LimitConfig::from(&file.limits),
            retention: RetentionConfig::new(&file),
            regulation: file.regulation.clone(),
            second_factor: file.second_factor.clone(),
            argon2: file.argon2.clone(),
            tokens: file.tokens.clone(),
            proxy,
            tls,
            storage,
            allowed_redirect_domains: file.allowed_redirect_domains.clone(),
            log_format: file.log_format,
            metrics: file.metrics,
            idle_timeout: (file.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(file.idle_timeout_secs)),
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs),
            cache_bytes: file.cache_mib.saturating_mul(1024 * 1024),
            path,
            data_dir,
            bind,
            public_origin,
            trusted_proxies: trusted,
            forwarded_headers: file.access.forwarded_headers,
            policy: Arc::new(Policy::new(users, rules, clients)),
        })
    }
}

/// Refuses a `cookie_domain` that browsers would drop, which makes every
/// sign-in loop back to the sign-in page with no error anywhere: one that
/// is not a domain name, a single label (`localhost`, `com`), a public
/// suffix (`co.uk`, `github.io`: [`PublicSuffixes`]), or one that does not
/// cover `public_origin`'s host (a browser only keeps a cookie for the host
/// that set it or a parent of it). Each reason says what to set.
fn check_cookie_domain(d: &str, public_origin: Option<&url::Url>) -> Result<(), String> {
    // Browsers ignore a leading dot.
    let bare = d.strip_prefix('.').unwrap_or(d).to_ascii_lowercase();
    let labels: Vec<&str> = bare.split('.').collect();
    if bare.is_empty()
        || labels
            .iter()
            .any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
        || !bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        // No top-level domain is all digits: this is (part of) an address.
        || labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{d:?} is not a domain name"));
    }
    if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = public_origin.and_then(|u| u.host()) {
        return Err(format!(
            "{d:?} cannot cover public_origin's host, an IP address: browsers keep a cookie \
             for an address only without a domain. Leave cookie_domain unset (cookies do \
             not tell ports apart, so apps on other ports of that address receive it), \
             or give gatehouse and the apps names"
        ));
    }
    let suffixes = PublicSuffixes::load();
    let host = public_origin
        .and_then(|u| u.host_str())
        .map(|h| h.to_ascii_lowercase());
    // The parent of the public origin's host: what to set instead, unless
    // browsers would drop that too.
    let suggestion = host
        .as_deref()
        .and_then(|h| h.split_once('.'))
        .map(|(_, parent)| parent)
        .filter(|p| p.contains('.') && !p.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .filter(|p| !suffixes.contains(p));
    let dropped = if labels.len() < 2 {
        "a single label"
    } else if suffixes.contains(&bare) {
        "a public suffix"
    } else {
        ""
    };
    if !dropped.is_empty() {
        let instead = match (suggestion, host.as_deref()) {
            (Some(p), Some(h)) => format!("set it to {p:?} (the parent of {h})"),
            _ => "name your hosts under a domain of your own, with three labels or more \
                  for local names (auth.gh.localhost and app.gh.localhost, with \
                  cookie_domain = \"gh.localhost\")"
                .to_string(),
        };
        return Err(format!(
            "{d:?} is {dropped}: browsers drop a cookie for it, so every sign-in \
             would return to the sign-in page; {instead}, or leave cookie_domain unset \
             when gatehouse and the apps share one host"
        ));
    }
    if let Some(h) = host.as_deref()
        && h != bare
        && !h.ends_with(&format!(".{bare}"))
    {
        let instead = match suggestion {
            Some(p) => format!("set it to {p:?} (the parent of {h}) or to {h:?}"),
            None => format!("set it to {h:?} or leave it unset"),
        };
        return Err(format!(
            "{d:?} does not cover public_origin's host {h:?}: browsers drop a cookie for \
             another domain, so every sign-in would return to the sign-in page; {instead}"
        ));
    }
    Ok(())
}

fn validate_users(
    path: &Path,
    users: &[UserEntry],
) -> Result<HashMap<String, UserEntry>, ConfigError> {
    let mut map = HashMap::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            field: format!("users[{i}].{field}"),
            reason,
        };
        if u.name.is_empty()
            || u.name.len() > crate::store::MAX_USER
            || u.name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "name",
                format!(
                    "{:?}: 1 to {} characters, no spaces or control characters",
                    u.name,
                    crate::store::MAX_USER
                ),
            ));
        }
        if let Err(e) = argon2::PasswordHash::new(&u.password_hash) {
            return Err(invalid(
                "password_hash",
                format!("not a PHC string ({e}); make one with `gatehouse hash-password`"),
            ));
        }
        // Groups travel comma-separated in `Remote-Groups`; email and name
        // travel as header values.
        for (j, g) in u.groups.iter().enumerate() {
            if g.is_empty()
                || g.len() > 64
                || !g
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(invalid(
                    &format!("groups[{j}]"),
                    format!("{g:?}: 1 to 64 of A-Z, a-z, 0-9, `-`, `_`, `.`"),
                ));
            }
        }
        for (field, v) in [("email", &u.email), ("display_name", &u.display_name)] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > 256 || v.chars().any(char::is_control))
            {
                return Err(invalid(
                    field,
                    "1 to 256 bytes, no control characters".into(),
                ));
            }
        }
        if map.insert(u.name.clone(), u.clone()).is_some() {
            return Err(invalid("name", format!("duplicate user {:?}", u.name)));
        }
    }
    Ok(map)
}
