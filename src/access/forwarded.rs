//! The original request a forward-auth proxy asks about, read from the
//! headers it sets: `X-Original-URL` and `X-Original-Method` (nginx), or
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Uri` and
//! `X-Forwarded-Method` (Caddy, Traefik). Borrowed from the header map, so
//! reading it allocates nothing. Believed only from a trusted proxy: the
//! caller passes `trusted`, and an untrusted peer's headers are ignored.

use axum::http::HeaderMap;

use super::Request;

/// Longest host or path looked at; longer values are not believed.
const MAX_LEN: usize = 4096;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_LEN)
}

/// `scheme://host[:port]/path?query` split into host and path plus query.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(end);
    // User info in the authority is not a host.
    if host.is_empty() || host.contains('@') {
        return None;
    }
    let path = path.split('#').next().unwrap_or("");
    Some((host, if path.is_empty() { "/" } else { path }))
}

/// The original request of a forward-auth check, with `ip` as its client.
/// `None` when the peer is not trusted or the headers name no host; the
/// caller then decides with an empty request, which only rules without
/// domain and path matchers can match.
pub fn original_request(
    headers: &HeaderMap,
    trusted: bool,
    ip: Option<std::net::IpAddr>,
) -> Option<Request<'_>> {
    if !trusted {
        return None;
    }
    let (host, path) = match header(headers, "x-original-url") {
        Some(url) => split_url(url)?,
        None => (
            header(headers, "x-forwarded-host")?,
            header(headers, "x-forwarded-uri").unwrap_or("/"),
        ),
    };
    let method = header(headers, "x-original-method")
        .or_else(|| header(headers, "x-forwarded-method"))
        .unwrap_or("GET");
    Some(Request {
        host,
        path,
        method,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn nginx_caddy_and_traefik_forms() {
        let h = headers(&[
            (
                "x-original-url",
                "https://code.example.com:8443/admin?x=1#frag",
            ),
            ("x-original-method", "POST"),
        ]);
        let r = original_request(&h, true, None).unwrap();
        assert_eq!(
            (r.host, r.path, r.method),
            ("code.example.com:8443", "/admin?x=1", "POST")
        );
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "grafana.example.com"),
            ("x-forwarded-uri", "/d/1?orgId=1"),
            ("x-forwarded-method", "DELETE"),
        ]);
        let r = original_request(&h, true, None).unwrap();
        assert_eq!(
            (r.host, r.path, r.method),
            ("grafana.example.com", "/d/1?orgId=1", "DELETE")
        );
        let h = headers(&[("x-original-url", "http://a.example")]);
        let r = original_request(&h, true, None).unwrap();
        assert_eq!((r.host, r.path, r.method), ("a.example", "/", "GET"));
    }

    #[test]
    fn untrusted_or_garbled_headers_are_ignored() {
        let h = headers(&[("x-original-url", "https://code.example.com/admin")]);
        assert!(original_request(&h, false, None).is_none());
        for bad in [
            "ftp://a/b",
            "https://",
            "https://user@evil.example/",
            "/just/a/path",
            "no scheme",
        ] {
            let h = headers(&[("x-original-url", bad)]);
            assert!(original_request(&h, true, None).is_none(), "{bad}");
        }
        assert!(original_request(&HeaderMap::new(), true, None).is_none());
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(url in "(?s).{0,60}", host in ".{0,30}", uri in ".{0,30}") {
            let mut h = HeaderMap::new();
            for (k, v) in [("x-original-url", &url), ("x-forwarded-host", &host), ("x-forwarded-uri", &uri)] {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(k, v);
                }
            }
            if let Some(r) = original_request(&h, true, None) {
                prop_assert!(!r.host.is_empty());
            }
        }
    }
}
