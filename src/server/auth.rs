//! Who is asking: client IP (through trusted proxies only), the session
//! cookie, the [`Authed`] extractor, the cross-site request guard, and the
//! `Set-Cookie` values.
//!
//! A session check is one store read answered on the spot
//! (`SessionStore::session_by_hash_now`; for redb, a cached snapshot) plus,
//! at most once per touch interval, a fire-and-forget touch. It never waits
//! for a write or for hashing.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::{ApiError, AppState};
use crate::config::{Config, Policy, UserEntry, canonical_ip};
use crate::store::{Session, SessionStore, SessionToken, StoreError, TokenHash, now_ms};

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

/// The value of cookie `name`. A request carrying it several times with
/// different values is ambiguous (one may have been planted for a wider
/// domain or a longer path by a sibling host): then none is believed.
/// Header values that are not visible ASCII are skipped.
///
/// Names are read as RFC 6265 (section 4.2.1) writes them: each pair is
/// `name=value`, pairs are separated by `;` with optional spaces or tabs
/// around it, and the name is a token (no whitespace, no separators). A
/// pair such as `gatehouse_session =TOKEN` is therefore no session cookie:
/// a proxy's cookie filter, which reads names the same way, would not
/// remove it either, and the app would receive a token that gatehouse
/// believed. The value is taken as written (a pair of surrounding double
/// quotes removed); whatever it holds, it counts toward the ambiguity rule.
///
/// Every pair is read: stopping after some number of pairs would let a
/// second, different session cookie hide behind filler pairs. The cost is
/// bounded by the request head limit (`limits.header_bytes`).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found: Option<&str> = None;
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(cookie_pair);
    for (k, v) in pairs {
        if k != name {
            continue;
        }
        match found {
            None => found = Some(v),
            Some(f) if f == v => {}
            Some(_) => return None,
        }
    }
    found
}

/// One `name=value` pair of a `Cookie` header, between two `;`: the
/// optional whitespace around it trimmed, the value's surrounding quotes
/// removed. `None` when it has no `=` or its name is not an RFC 7230
/// token.
fn cookie_pair(pair: &str) -> Option<(&str, &str)> {
    let (k, v) = pair.trim_matches([' ', '\t']).split_once('=')?;
    if k.is_empty() || !k.bytes().all(is_tchar) {
        return None;
    }
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Some((k, v))
}

/// A character of an RFC 7230 token: visible ASCII except the separators
/// `()<>@,;:\"/[]?={}` (so no space, tab or control).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The token hash of the request's session cookie, if it is well formed.
pub fn cookie_hash(state: &AppState, headers: &HeaderMap) -> Option<TokenHash> {
    cookie(headers, &state.config.cookie.name)
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
    lookup_with(state, headers, |session, hash, user, _| Authed {
        session,
        hash,
        user: user.clone(),
    })
}

/// [`lookup`], handing the session, its hash, the user's current entry and
/// the policy it belongs to to `f` instead of cloning the entry. `f` runs
/// under the policy read lock, so it must be short and must not reach for
/// the policy again.
pub fn lookup_with<T>(
    state: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(Session, TokenHash, &UserEntry, &Policy) -> T,
) -> Result<Option<T>, ApiError> {
    let Some(hash) = cookie_hash(state, headers) else {
        return Ok(None);
    };
    let now = now_ms();
    // Answered on the spot (the forward-auth answer is made before the
    // router, without awaiting); a backend that cannot answer without
    // waiting fails closed here.
    let found = state
        .store
        .session_by_hash_now(hash, now)
        .unwrap_or_else(|| {
            Err(StoreError::Storage(
                "this store cannot look up a session without waiting".into(),
            ))
        });
    let session = match found {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ApiError::internal("session lookup failed", &e)),
    };
    let interval = state.config.session.touch_interval_ms;
    // Remember-me sessions are touched too: their deadline does not move,
    // but `last_seen` keeps the sessions list truthful.
    let stale = now.saturating_sub(session.last_seen_ms) >= interval;
    let Some(out) = state.with_policy(|policy| {
        let user = policy.user(&session.user)?;
        Some(f(session, hash, user, policy))
    }) else {
        return Ok(None);
    };
    if stale {
        // A dropped touch (queue full) only delays the slide to the next check.
        if let Err(e) = state.store.touch(hash, now) {
            tracing::debug!(error = %e, "session touch dropped");
        }
    }
    Ok(Some(out))
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
        config.cookie.name,
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
        config.cookie.name
    );
    cookie_tail(config, &mut c);
    HeaderValue::from_str(&c).expect("cookie built from validated parts")
}

/// With a `Domain` configured, a `Set-Cookie` that removes a host-only
/// cookie of the same name (left from before `cookie_domain` was set).
/// Without it the browser would send two session cookies, which
/// [`cookie`] refuses as ambiguous. Send it before the session cookie: when
/// this host is the domain itself the two name one cookie, and the later wins.
pub fn clear_host_only_cookie(config: &Config) -> Option<HeaderValue> {
    config.cookie.domain.as_ref()?;
    let mut c = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        config.cookie.name
    );
    if config.cookie.secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

fn cookie_tail(config: &Config, c: &mut String) {
    if let Some(d) = &config.cookie.domain {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if config.cookie.secure {
        c.push_str("; Secure");
    }
}

/// Whether a state-changing request comes from our own pages: its `Origin`
/// (or, without one, its `Referer`) must be the public origin, or name the
/// `Host` the request was sent to (host and port) with the public origin's
/// scheme. Without a public origin the scheme the browser used is unknown
/// (TLS ends at the proxy), so only host and port are compared then.
/// Requests with neither header are not from a browser form on another site
/// (browsers send `Origin` on cross-site POSTs) and pass; the cookie's
/// `SameSite=Lax` is the second line.
///
/// `Host` is the request's authority: for HTTP/2 requests, which carry
/// `:authority` instead, the connection service copies it into `Host`
/// first ([`fill_host`]).
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
    if let Some(public) = &config.public_origin {
        if url.origin() == public.origin() {
            return true;
        }
        // An `http://` page must not post to an https-only deployment (nor
        // the reverse) just because it names the same host.
        if url.scheme() != public.scheme() {
            return false;
        }
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

/// Gives a request without a `Host` header one made from the authority of
/// its URI. HTTP/2 requests carry `:authority` (hyper puts it in the URI)
/// and usually no `Host`; the cross-site check and the `rd` check then
/// compare with it like with an HTTP/1 `Host`. A request that has a `Host`
/// keeps it.
pub fn fill_host<B>(req: &mut axum::http::Request<B>) {
    if req.headers().contains_key(header::HOST) {
        return;
    }
    let Some(value) = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    else {
        return;
    };
    req.headers_mut().insert(header::HOST, value);
}

/// Middleware: refuses cross-site state-changing requests with 403.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(&state.config, req.headers()) {
        let status = axum::http::StatusCode::FORBIDDEN;
        if crate::server::wants_html(req.headers()) {
            return crate::server::pages::message(
                status,
                "Request refused",
                "This form was sent from another site, so it was refused (cross-site request refused). \
                 Nothing was changed. To sign in or out, use gatehouse's own pages.",
                ("/sessions", "Go to your sessions"),
            );
        }
        return ApiError::new(status, "cross-site request refused (Origin does not match)")
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn config(trusted: &[&str], origin: Option<&str>) -> Config {
        config_with(trusted, origin, |_| {})
    }

    /// As [`config`], with `edit` applied to the file before validation.
    fn config_with(
        trusted: &[&str],
        origin: Option<&str>,
        edit: impl FnOnce(&mut FileConfig),
    ) -> Config {
        let mut file = FileConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            public_origin: origin.map(String::from),
            ..FileConfig::default()
        };
        edit(&mut file);
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
    fn cookie_names_are_tokens() {
        let t = SessionToken::generate().expose();
        // Whitespace inside a pair, a separator or quotes in the name: not
        // the cookie named `s`, whatever a lenient reader would make of it.
        for bad in [
            format!("s ={t}"),
            format!("a=1; s ={t}"),
            format!("a=1;s\t={t}"),
            format!(" s \t={t}"),
            format!("x s={t}"),
            format!("\"s\"={t}"),
            format!("s:={t}"),
            format!("={t}"),
            format!("s{t}"),
        ] {
            let h = headers(&[("cookie", &bad)]);
            assert_eq!(cookie(&h, "s"), None, "{bad:?}");
        }
        // The optional whitespace around each `;` is allowed, and so are
        // quotes around the value.
        for good in [
            format!("s={t}"),
            format!("a=1;s={t}"),
            format!("a=1 ;  s={t}  ;b=2"),
            format!("a=1;\ts={t}\t"),
            format!("s=\"{t}\""),
        ] {
            let h = headers(&[("cookie", &good)]);
            assert_eq!(cookie(&h, "s"), Some(t.as_str()), "{good:?}");
        }
        // A pair whose name is not a token is no value of `s`: it neither
        // counts as a second value nor stands in for the first.
        let u = SessionToken::generate().expose();
        let h = headers(&[("cookie", &format!("s={t}; s ={u}"))]);
        assert_eq!(cookie(&h, "s"), Some(t.as_str()));
        // Two different values of the name still make none believed.
        let h = headers(&[("cookie", &format!("s={t}; s={u}"))]);
        assert_eq!(cookie(&h, "s"), None);
    }

    #[test]
    fn every_cookie_pair_is_read() {
        let t = SessionToken::generate().expose();
        let u = SessionToken::generate().expose();
        let filler: String = (0..255).map(|i| format!("f{i}=x; ")).collect();
        let h = headers(&[("cookie", &format!("{filler}s={t}; s={u}"))]);
        assert_eq!(cookie(&h, "s"), None);
        // Far past any small bound, split over headers.
        let many: String = (0..2_000).map(|i| format!("f{i}=x; ")).collect();
        let h = headers(&[
            ("cookie", &format!("{many}s={t}")),
            ("cookie", &format!("{many}s={u}")),
        ]);
        assert_eq!(cookie(&h, "s"), None);
        let h = headers(&[("cookie", &format!("{many}s={t}"))]);
        assert_eq!(cookie(&h, "s"), Some(t.as_str()));
    }

    #[test]
    fn origin_scheme_must_be_the_public_origins() {
        let c = config(&[], Some("https://auth.example.com"));
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        // Same host as the request, but plain HTTP: refused.
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("origin", "http://auth.example.com")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("referer", "http://auth.example.com/login")
        ]));
        // The page's own forms pass, on the public origin or on the host
        // the request was sent to with the public origin's scheme.
        assert!(ok(&[
            ("host", "auth.example.com"),
            ("origin", "https://auth.example.com")
        ]));
        assert!(ok(&[
            ("host", "gate.internal:8443"),
            ("origin", "https://gate.internal:8443")
        ]));
        assert!(!ok(&[("host", "auth.example.com"), ("origin", "null")]));
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("origin", "https://evil.example")
        ]));
        // An http public origin refuses https pages of another origin the same way.
        let c = config(&[], Some("http://auth.example.com"));
        assert!(!same_origin(
            &c,
            &headers(&[("host", "h:1"), ("origin", "https://h:1")])
        ));
        assert!(same_origin(
            &c,
            &headers(&[("host", "h:1"), ("origin", "http://h:1")])
        ));
        // Without a public origin the scheme is unknown: host and port decide.
        let c = config(&[], None);
        for origin in ["http://h:1", "https://h:1"] {
            assert!(same_origin(
                &c,
                &headers(&[("host", "h:1"), ("origin", origin)])
            ));
        }
    }

    #[test]
    fn http2_authority_becomes_the_host() {
        let c = config(&[], None);
        // An HTTP/2 request: authority in the URI, no Host header.
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:8080/logout")
            .header("origin", "http://127.0.0.1:8080")
            .body(())
            .unwrap();
        assert!(
            !same_origin(&c, req.headers()),
            "nothing to compare with yet"
        );
        fill_host(&mut req);
        assert_eq!(req.headers()["host"], "127.0.0.1:8080");
        assert!(same_origin(&c, req.headers()));
        // A Host that is there is kept.
        let mut req = axum::http::Request::builder()
            .uri("http://other:1/x")
            .header("host", "h:2")
            .body(())
            .unwrap();
        fill_host(&mut req);
        assert_eq!(req.headers()["host"], "h:2");
        // No authority, no Host: nothing is made up.
        let mut req = axum::http::Request::builder().uri("/x").body(()).unwrap();
        fill_host(&mut req);
        assert!(req.headers().get("host").is_none());
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
            ("origin", "https://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://127.0.0.1:9999")
        ]));
        assert!(ok(&[
            ("host", "h:1"),
            ("referer", "https://h:1/login?rd=x")
        ]));
        assert!(!ok(&[("host", "h:1"), ("referer", "https://evil/login")]));
        let c = config(&[], None);
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        assert!(ok(&[("host", "h:1"), ("referer", "http://h:1/login?rd=x")]));
        assert!(!ok(&[("host", "h:1"), ("referer", "http://evil/login")]));
    }

    #[test]
    fn cookie_flags() {
        let c = config(&[], None);
        let t = SessionToken::generate();
        let v = session_cookie(&c, &t, None);
        let s = v.to_str().unwrap();
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Lax") && s.contains("Path=/"));
        assert!(!s.contains("Max-Age") && !s.contains("Secure"));
        let c = config_with(&[], None, |f| {
            f.secure_cookies = Some(true);
            f.cookie_domain = Some("example.com".into());
        });
        let s = session_cookie(&c, &t, Some(60))
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            s.contains("; Secure") && s.contains("Max-Age=60") && s.contains("Domain=example.com")
        );
    }

    #[test]
    fn duplicate_session_cookies_are_ambiguous() {
        let t = SessionToken::generate().expose();
        let u = SessionToken::generate().expose();
        let same = headers(&[("cookie", &format!("s={t}; s={t}"))]);
        assert_eq!(cookie(&same, "s"), Some(t.as_str()));
        let two = headers(&[("cookie", &format!("s={t}; s={u}"))]);
        assert_eq!(cookie(&two, "s"), None);
        let split = headers(&[("cookie", &format!("s={t}")), ("cookie", &format!("s={u}"))]);
        assert_eq!(cookie(&split, "s"), None);
        // A prefixed name is another cookie.
        let other = headers(&[("cookie", &format!("__Host-s={u}; s={t}"))]);
        assert_eq!(cookie(&other, "s"), Some(t.as_str()));
    }

    #[test]
    fn secure_cookie_without_domain_gets_the_host_prefix() {
        let c = config(&[], Some("https://auth.example.com"));
        let t = SessionToken::generate();
        let s = session_cookie(&c, &t, None).to_str().unwrap().to_string();
        assert!(s.starts_with("__Host-gatehouse_session="), "{s}");
        assert!(
            s.contains("; Secure") && s.contains("Path=/") && !s.contains("Domain"),
            "{s}"
        );
        assert!(clear_cookie(&c).to_str().unwrap().starts_with("__Host-"));
        assert!(clear_host_only_cookie(&c).is_none());
        let c = config_with(&[], Some("https://auth.example.com"), |f| {
            f.cookie_domain = Some("example.com".into());
        });
        let s = session_cookie(&c, &t, None).to_str().unwrap().to_string();
        assert!(
            s.starts_with("gatehouse_session=") && s.contains("Domain=example.com"),
            "{s}"
        );
        let stale = clear_host_only_cookie(&c).unwrap();
        let stale = stale.to_str().unwrap();
        assert!(
            stale.contains("Max-Age=0") && !stale.contains("Domain"),
            "{stale}"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Cookie header text: real pairs, junk, quotes, separators, and
        /// sometimes a real token.
        fn cookie_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("gatehouse_session=".to_string()),
                Just("; ".to_string()),
                Just(";".to_string()),
                Just("=".to_string()),
                Just("\"".to_string()),
                Just(" ".to_string()),
                Just("__Host-gatehouse_session=".to_string()),
                any::<[u8; 32]>().prop_map(|_| SessionToken::generate().expose()),
                "[A-Za-z0-9_-]{0,50}",
                "[ -~]{0,20}",
            ];
            proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            /// Any Cookie headers: no panic; an answer is a value that was in
            /// the header, and a token that parses is exactly 43 base64url
            /// characters that round-trip.
            #[test]
            fn cookie_parsing_never_panics(
                values in proptest::collection::vec(cookie_text(), 0..4),
                raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..2),
            ) {
                let mut h = HeaderMap::new();
                for v in &values {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.append(header::COOKIE, v);
                    }
                }
                for r in &raw {
                    if let Ok(v) = HeaderValue::from_bytes(r) {
                        h.append(header::COOKIE, v);
                    }
                }
                if let Some(v) = cookie(&h, "gatehouse_session") {
                    prop_assert!(values.iter().any(|x| x.contains(v)) || raw.iter().any(|r| r.windows(v.len().max(1)).any(|w| w == v.as_bytes())));
                    if let Some(t) = SessionToken::parse(v) {
                        prop_assert_eq!(t.expose(), v);
                    }
                }
            }

            /// Token parsing: random strings never panic; a parsed token has
            /// exactly one spelling (its own encoding).
            #[test]
            fn token_parsing_is_strict(s in "(?s).{0,64}", last in "[A-Za-z0-9_-]") {
                if let Some(t) = SessionToken::parse(&s) {
                    prop_assert_eq!(t.expose(), s);
                }
                let t = SessionToken::generate();
                let e = t.expose();
                prop_assert_eq!(SessionToken::parse(&e).map(|p| p.hash()), Some(t.hash()));
                // Another last character is another token or no token, never
                // a second spelling of this one (no spare bits accepted).
                let other = format!("{}{last}", &e[..42]);
                if let Some(p) = SessionToken::parse(&other) {
                    prop_assert_eq!(p.expose(), other);
                }
            }

            /// X-Forwarded-For: the peer when it is not trusted; through a
            /// trusted peer, the peer or an address from the header, never
            /// a panic.
            #[test]
            fn forwarded_for_picks_peer_or_listed_hop(
                values in proptest::collection::vec("[0-9a-fA-F.:, \\[\\]a-z]{0,60}", 0..4),
                peer_trusted in any::<bool>(),
                hops in proptest::collection::vec(any::<u32>(), 0..20),
            ) {
                let c = config(&["10.0.0.0/8", "127.0.0.1"], None);
                let peer: IpAddr = if peer_trusted { "127.0.0.1" } else { "9.9.9.9" }.parse().unwrap();
                let mut h = HeaderMap::new();
                let listed: Vec<String> = hops.iter().map(|n| std::net::Ipv4Addr::from(*n).to_string()).collect();
                h.append("x-forwarded-for", HeaderValue::from_str(&listed.join(", ")).unwrap());
                for v in &values {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.append("x-forwarded-for", v);
                    }
                }
                let got = client_ip(&c, Some(peer), &h).unwrap();
                if peer_trusted {
                    // The answer is the peer or one of the listed hops.
                    let listed = h
                        .get_all("x-forwarded-for")
                        .iter()
                        .flat_map(|v| v.to_str().unwrap().split(','))
                        .filter_map(|hop| parse_hop(hop.trim()))
                        .any(|ip| canonical_ip(ip) == got);
                    prop_assert!(got == peer || listed, "{got}");
                } else {
                    prop_assert_eq!(got, peer);
                }
            }

            /// With an https public origin, no page served over plain HTTP
            /// passes, whatever host it names and whatever the request's
            /// `Host`; an https page passes exactly when it is the public
            /// origin or names the request's `Host`.
            #[test]
            fn origin_scheme_is_checked(
                host in "[a-z.]{1,12}(:[0-9]{1,5})?",
                named in "[a-z.]{1,12}(:[0-9]{1,5})?",
                same in any::<bool>(),
                https in any::<bool>(),
                referer in any::<bool>(),
            ) {
                let c = config(&[], Some("https://auth.example.com"));
                let named = if same { host.clone() } else { named };
                let scheme = if https { "https" } else { "http" };
                let source = format!("{scheme}://{named}");
                let Ok(parsed) = url::Url::parse(&source) else { return Ok(()) };
                let mut h = HeaderMap::new();
                h.insert(header::HOST, HeaderValue::from_str(&host).unwrap());
                let key = if referer { header::REFERER } else { header::ORIGIN };
                h.insert(key, HeaderValue::from_str(&source).unwrap());
                let passed = same_origin(&c, &h);
                if !https {
                    prop_assert!(!passed, "{source} to {host}");
                } else {
                    let written = match (parsed.host_str(), parsed.port()) {
                        (Some(h), Some(p)) => format!("{h}:{p}"),
                        (Some(h), None) => h.to_string(),
                        _ => String::new(),
                    };
                    let expect = parsed.origin() == c.public_origin.as_ref().unwrap().origin()
                        || written.eq_ignore_ascii_case(&host);
                    prop_assert_eq!(passed, expect, "{} to {}", source, host);
                }
            }

            /// Origin/Referer checks never panic on any header text.
            #[test]
            fn same_origin_never_panics(origin in "(?s).{0,60}", host in "(?s).{0,30}", referer in "(?s).{0,60}") {
                let c = config(&[], Some("https://auth.example.com"));
                let mut h = HeaderMap::new();
                for (k, v) in [("origin", &origin), ("host", &host), ("referer", &referer)] {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.insert(k, v);
                    }
                }
                let _ = same_origin(&c, &h);
            }
        }
    }
}
