//! Who is asking: client IP (through trusted proxies only), the session
//! cookie, the [`Authed`] extractor, the cross-site request guard, and the
//! `Set-Cookie` values.
//!
//! A session check is one read transaction (`Store::session_by_hash`) plus,
//! at most once per touch interval, a fire-and-forget touch. It never waits
//! for a write or for hashing.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::{Config, UserEntry, canonical_ip};
use crate::store::{Session, SessionToken, TokenHash, now_ms};

/// Most `X-Forwarded-For` entries looked at.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client's address: the peer, or when the peer is a trusted proxy the
/// nearest untrusted address in `X-Forwarded-For`.
pub fn client_ip(config: &Config, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = canonical_ip(peer?);
    if !config.is_trusted_proxy(peer) {
        return Some(peer);
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return Some(peer);
        };
        hops.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let Some(ip) = parse_hop(hop) else {
            // A garbled entry: trust nothing to its left.
            return Some(client);
        };
        client = canonical_ip(ip);
        if !config.is_trusted_proxy(client) {
            return Some(client);
        }
    }
    Some(client)
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client IP as an extractor.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(client_ip(&state.config, peer, &parts.headers)))
    }
}

/// The value of cookie `name`, if the request carries it once or more (the
/// first wins).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The token hash of the request's session cookie, if it is well formed.
pub fn cookie_hash(state: &AppState, headers: &HeaderMap) -> Option<TokenHash> {
    cookie(headers, &state.config.file.cookie_name)
        .and_then(SessionToken::parse)
        .map(|t| t.hash())
}

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub session: Session,
    pub hash: TokenHash,
    pub user: UserEntry,
}

impl Authed {
    pub fn is_admin(&self) -> bool {
        self.user.admin
    }
}

/// Looks up the request's session: one read. Refuses sessions of users no
/// longer in the config. Slides the idle deadline (fire and forget) when the
/// last recorded use is older than the touch interval.
pub fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Authed>, ApiError> {
    let Some(hash) = cookie_hash(state, headers) else {
        return Ok(None);
    };
    let now = now_ms();
    let session = match state.store.session_by_hash(hash, now) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ApiError::internal("session lookup failed", &e)),
    };
    let Some(user) = state.users().get(&session.user).cloned() else {
        return Ok(None);
    };
    let interval = state.config.file.session.touch_interval_secs * 1000;
    // Remember-me sessions are touched too: their deadline does not move,
    // but `last_seen` keeps the sessions list truthful.
    if now.saturating_sub(session.last_seen_ms) >= interval {
        // A dropped touch (queue full) only delays the slide to the next check.
        if let Err(e) = state.writer.touch(hash, now) {
            tracing::debug!(error = %e, "session touch dropped");
        }
    }
    Ok(Some(Authed {
        session,
        hash,
        user,
    }))
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        lookup(state, &parts.headers)?.ok_or_else(ApiError::unauthorized)
    }
}

/// `Set-Cookie` for a new session. `max_age` only for remember-me sessions:
/// others end with the browser.
pub fn session_cookie(config: &Config, token: &SessionToken, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax",
        config.file.cookie_name,
        token.expose()
    );
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    cookie_tail(config, &mut c);
    HeaderValue::from_str(&c).expect("cookie built from validated parts")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(config: &Config) -> HeaderValue {
    let mut c = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        config.file.cookie_name
    );
    cookie_tail(config, &mut c);
    HeaderValue::from_str(&c).expect("cookie built from validated parts")
}

fn cookie_tail(config: &Config, c: &mut String) {
    if let Some(d) = &config.file.cookie_domain {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if config.file.secure_cookies {
        c.push_str("; Secure");
    }
}

/// Whether a state-changing request comes from our own pages: its `Origin`
/// (or, without one, its `Referer`) must be the public origin or the `Host`
/// it was sent to. Requests with neither header are not from a browser form
/// on another site (browsers send `Origin` on cross-site POSTs) and pass;
/// the cookie's `SameSite=Lax` is the second line.
pub fn same_origin(config: &Config, headers: &HeaderMap) -> bool {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    let Some(source) = source else {
        return true;
    };
    let Some(url) = source.to_str().ok().and_then(|s| url::Url::parse(s).ok()) else {
        // Includes `Origin: null` (sandboxed frames, some redirects).
        return false;
    };
    if let Some(public) = &config.public_origin
        && url.origin() == public.origin()
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    authority.eq_ignore_ascii_case(host)
}

/// Middleware: refuses cross-site state-changing requests with 403.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(&state.config, req.headers()) {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "cross-site request refused (Origin does not match)",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn config(trusted: &[&str], origin: Option<&str>) -> Config {
        let file = FileConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            public_origin: origin.map(String::from),
            ..FileConfig::default()
        };
        Config::from_file("t.toml".into(), "d".into(), file).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_ignored_from_untrusted_peer() {
        let c = config(&[], None);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_ip(&c, ip("9.9.9.9"), &h), ip("9.9.9.9"));
    }

    #[test]
    fn forwarded_for_from_trusted_peer_takes_nearest_untrusted() {
        let c = config(&["10.0.0.0/8", "127.0.0.1"], None);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5")]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("1.2.3.4"));
        // Several headers are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("1.2.3.4"));
        // A garbled hop stops the walk.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, junk")]);
        assert_eq!(client_ip(&c, ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(&c, ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Mapped addresses count as IPv4.
        assert_eq!(
            client_ip(
                &c,
                ip("::ffff:127.0.0.1"),
                &headers(&[("x-forwarded-for", "[2001:db8::1]:443")])
            ),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn cookies_parse() {
        let h = headers(&[("cookie", "a=1; gatehouse_session=tok; b=2")]);
        assert_eq!(cookie(&h, "gatehouse_session"), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn origin_checks() {
        let c = config(&[], Some("https://auth.example.com"));
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        assert!(ok(&[]));
        assert!(ok(&[("origin", "https://auth.example.com")]));
        assert!(!ok(&[("origin", "http://auth.example.com")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999")
        ]));
        assert!(ok(&[("host", "h:1"), ("referer", "http://h:1/login?rd=x")]));
        assert!(!ok(&[("host", "h:1"), ("referer", "http://evil/login")]));
    }

    #[test]
    fn cookie_flags() {
        let mut c = config(&[], None);
        let t = SessionToken::generate();
        let v = session_cookie(&c, &t, None);
        let s = v.to_str().unwrap();
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Lax") && s.contains("Path=/"));
        assert!(!s.contains("Max-Age") && !s.contains("Secure"));
        c.file.secure_cookies = true;
        c.file.cookie_domain = Some("example.com".into());
        let s = session_cookie(&c, &t, Some(60))
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            s.contains("; Secure") && s.contains("Max-Age=60") && s.contains("Domain=example.com")
        );
    }
}
