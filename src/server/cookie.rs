//! The session cookie: reading it from a `Cookie` header (strict names;
//! differing copies are ambiguous) and the `Set-Cookie` values that set
//! and clear it.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::Config;
use crate::server::state::AppState;
use crate::store::{SessionToken, TokenHash};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{config, config_with, headers};

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

        }
    }
}
