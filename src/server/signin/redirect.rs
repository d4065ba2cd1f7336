//! Where a browser may be sent after login (`rd`), and the original URL a
//! forward-auth proxy reports.
//!
//! An `rd` is followed only when it is a path on this site or an http(s) URL
//! that is one of:
//!
//! - the public origin (scheme, host and port);
//! - the host and port the request was sent to (`Host`, or HTTP/2's
//!   `:authority` copied into it), with the public origin's scheme when one
//!   is set (without one the scheme the browser used is unknown, so either);
//! - an allowed domain or a subdomain of one, on any port, over https or
//!   over the public origin's scheme.
//!
//! Everything else falls back to `/`: an open redirect would make the login
//! page a phishing tool, and another port or scheme of this host is another
//! site (another program may listen there).

use axum::http::{HeaderMap, header};
use serde::Deserialize;

use crate::config::Config;
use crate::server::state::AppState;

/// Longest `rd` accepted.
pub const MAX_RD: usize = 2048;

/// Origin that relative `rd` values are resolved against to check them.
const PLACEHOLDER: &str = "https://gatehouse.invalid/";

/// Returns `rd` when it is safe to redirect to, else `None`. The result is
/// printable ASCII (a valid header value) and, resolved against this site,
/// lands on this site, the public origin's host or an allowed domain.
pub fn safe_redirect(config: &Config, headers: &HeaderMap, rd: &str) -> Option<String> {
    if rd.is_empty()
        || rd.len() > MAX_RD
        || rd
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    if rd.starts_with('/') {
        // `//host` is a protocol-relative URL to another site (`/\host` too,
        // but backslashes are refused above).
        if rd.starts_with("//") {
            return None;
        }
        // Resolve it as a browser would, against a placeholder origin; it
        // must stay there. The serialised form is percent-encoded ASCII, so
        // it is always a valid `Location` value.
        let base = url::Url::parse(PLACEHOLDER).expect("constant URL");
        let u = base.join(rd).ok()?;
        if u.origin() != base.origin() || !u.username().is_empty() || u.password().is_some() {
            return None;
        }
        let mut out = u.path().to_string();
        if let Some(q) = u.query() {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = u.fragment() {
            out.push('#');
            out.push_str(f);
        }
        // Dot segments can leave a path that starts with `//` (`/.//evil.com`
        // resolves to the path `//evil.com`): sent as it is, that would be a
        // protocol-relative URL to another host.
        if out.starts_with("//") {
            return None;
        }
        return Some(out);
    }
    let url = url::Url::parse(rd).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let public = config.public_origin.as_ref();
    let ours = public.is_some_and(|o| o.origin() == url.origin());
    // The scheme this site is reached with: the public origin's, else unknown.
    let scheme_ok = public.is_none_or(|o| o.scheme() == url.scheme());
    let same_host = scheme_ok
        && headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(split_host)
            .is_some_and(|(h, port)| {
                // A `Host` without a port means the scheme's default port.
                h.eq_ignore_ascii_case(&host)
                    && port.or_else(|| default_port(url.scheme())) == url.port_or_known_default()
            });
    let allowed = (url.scheme() == "https" || public.is_some_and(|o| o.scheme() == url.scheme()))
        && config.allowed_redirect_domains.iter().any(|d| {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            !d.is_empty() && (host == d || host.ends_with(&format!(".{d}")))
        });
    (ours || same_host || allowed).then(|| url.to_string())
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The host and the port of a `Host` header value (`None` when the port is
/// not a number). IPv6 hosts keep their brackets, as `Url::host_str` writes them.
fn split_host(h: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if h.starts_with('[') {
        let end = h.find(']')? + 1;
        match &h[end..] {
            "" => (&h[..end], None),
            rest => (&h[..end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(p) => p.parse().ok().map(|p| (host, Some(p))),
    }
}

/// The origin a page's form may lead to through `rd`, for its
/// `form-action`: the origin of a safe `rd` to another site, or, when `rd`
/// is the OpenID Connect authorization endpoint, the origin (or a native
/// app's scheme) of the client's checked `redirect_uri`, where the redirect
/// chain that follows the form ends.
pub fn continue_to(state: &AppState, headers: &HeaderMap, rd: &str) -> Option<String> {
    let to = safe_redirect(&state.config, headers, rd)?;
    if let Some(q) = to.strip_prefix("/oidc/authorize?") {
        return state.with_policy(|p| crate::config::oidc::return_target(p, q));
    }
    url::Url::parse(&to)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

/// The page a pending sign-in goes to next, carrying `rd`.
pub fn next_page(enroll: bool, rd: &str) -> String {
    let path = if enroll {
        "/login/enroll"
    } else {
        "/login/second-factor"
    };
    if rd.is_empty() {
        path.to_string()
    } else {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", rd)
            .finish();
        format!("{path}?{q}")
    }
}

#[derive(Deserialize, Default)]
pub struct RdQuery {
    pub rd: Option<String>,
}

/// `rd` from a query, dropped when malformed or too long.
pub fn rd_of(query: Option<&str>) -> String {
    let q: RdQuery = crate::server::extract::parse_query(query.unwrap_or("")).unwrap_or_default();
    bounded_rd(q.rd)
}

/// `rd` as a body sent it: none when too long (it is checked again where
/// it is used, as a safe redirect).
pub fn bounded_rd(rd: Option<String>) -> String {
    rd.filter(|r| r.len() <= MAX_RD).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;
    use axum::http::HeaderValue;

    fn config() -> Config {
        let file = FileConfig {
            public_origin: Some("https://auth.example.com".into()),
            allowed_redirect_domains: vec!["apps.example.org".into()],
            ..FileConfig::default()
        };
        Config::from_file("t.toml".into(), "d".into(), file).unwrap()
    }

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn relative_paths_pass() {
        let c = config();
        assert_eq!(
            safe_redirect(&c, &HeaderMap::new(), "/x?y=1").as_deref(),
            Some("/x?y=1")
        );
    }

    #[test]
    fn other_sites_are_refused() {
        let c = config();
        let h = host("gate.local:8080");
        for rd in [
            "",
            "//evil.com/x",
            "/\\evil.com",
            "https://evil.com/",
            "https://auth.example.com.evil.com/",
            "https://user@evil.com/",
            "https://auth.example.com@evil.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://evilapps.example.org/",
            "https://evil.com/\n",
            "ftp://auth.example.com/",
        ] {
            assert_eq!(safe_redirect(&c, &h, rd), None, "{rd}");
        }
    }

    #[test]
    fn own_and_allowed_hosts_pass() {
        let c = config();
        let h = host("gate.local:8080");
        for rd in [
            "https://auth.example.com/a",
            "https://auth.example.com:443/a",
            "https://gate.local:8080/b",
            "https://apps.example.org/",
            "https://wiki.apps.example.org/page?q=1",
            "https://WIKI.apps.example.org/",
            "https://apps.example.org:8443/",
        ] {
            assert!(safe_redirect(&c, &h, rd).is_some(), "{rd}");
        }
    }

    #[test]
    fn another_port_or_scheme_of_this_host_is_another_site() {
        let c = config();
        let h = host("gate.local:8080");
        for rd in [
            // This host, another port or another scheme than the public origin's.
            "https://gate.local:9999/x",
            "https://gate.local/x",
            "http://gate.local:8080/x",
            // The public origin's host, another port or scheme.
            "https://auth.example.com:8443/",
            "http://auth.example.com/",
            // Allowed domains: https (or the public origin's scheme) only.
            "http://apps.example.org/",
        ] {
            assert_eq!(safe_redirect(&c, &h, rd), None, "{rd}");
        }
        // Without a public origin: the host and port of the request, either
        // scheme (the one the browser used is unknown); allowed domains over https.
        let file = FileConfig {
            allowed_redirect_domains: vec!["apps.example.org".into()],
            ..FileConfig::default()
        };
        let bare = Config::from_file("t.toml".into(), "d".into(), file).unwrap();
        let h = host("127.0.0.1:8080");
        assert_eq!(safe_redirect(&bare, &h, "http://127.0.0.1:9999/x"), None);
        assert_eq!(safe_redirect(&bare, &h, "http://127.0.0.1/x"), None);
        assert_eq!(safe_redirect(&bare, &h, "http://apps.example.org/"), None);
        assert!(safe_redirect(&bare, &h, "http://127.0.0.1:8080/x").is_some());
        assert!(safe_redirect(&bare, &h, "https://apps.example.org:444/").is_some());
        // A Host without a port is the scheme's default port.
        let h = host("gate.example");
        assert!(safe_redirect(&bare, &h, "http://gate.example/x").is_some());
        assert!(safe_redirect(&bare, &h, "https://gate.example/x").is_some());
        assert!(safe_redirect(&bare, &h, "http://gate.example:80/x").is_some());
        assert_eq!(safe_redirect(&bare, &h, "http://gate.example:81/x"), None);
        // IPv6 hosts.
        let h = host("[::1]:8080");
        assert!(safe_redirect(&bare, &h, "http://[::1]:8080/x").is_some());
        assert_eq!(safe_redirect(&bare, &h, "http://[::1]:8081/x"), None);
        // A garbled Host matches nothing.
        for garbled in ["gate.example:x", "[::1", "[::1]x"] {
            assert_eq!(
                safe_redirect(&bare, &host(garbled), "http://gate.example/x"),
                None
            );
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Pieces that redirect tricks are made of.
        const PIECES: &[&str] = &[
            "/",
            "//",
            "\\",
            "/\\",
            "\\\\",
            "https:",
            "http:",
            "https://",
            "HTTPS://",
            "http:/",
            "javascript:",
            "data:",
            "ftp://",
            " ",
            "\t",
            "\r\n",
            "%0d%0a",
            "%0D%0A",
            "%2f",
            "%2F",
            "%5c",
            "%09",
            "%00",
            "@",
            ":",
            ":443",
            "?",
            "#",
            ".",
            "..",
            "../",
            "evil.com",
            "auth.example.com",
            "apps.example.org",
            "wiki.apps.example.org",
            "gate.local",
            "gate.local:8080",
            "user:pw@",
            "auth.example.com@",
            "\u{3002}",
            "\u{ff0f}",
            "ｅｖｉｌ",
            "\u{202e}",
            "[::1]",
            "127.0.0.1",
            "0x7f.1",
            ":8080",
            ":9999",
            ":80",
            "http://gate.local:8080",
            "https://gate.local:8080",
            "http://gate.local:9999",
            "https://auth.example.com:8443",
            "http://apps.example.org",
            "%40",
            "a",
            "x=1",
            "&",
        ];

        fn tricky() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::collection::vec(proptest::sample::select(PIECES), 1..8)
                    .prop_map(|v| v.concat()),
                "(?s).{0,40}",
                "[/\\\\]{0,3}[a-z.:@%0-9]{0,20}",
            ]
        }

        fn allowed_host(h: &str) -> bool {
            h == "gate.local"
                || h == "auth.example.com"
                || h == "apps.example.org"
                || h.ends_with(".apps.example.org")
        }

        proptest! {
            /// Whatever `rd` is, an accepted one lands, as a browser resolves
            /// it from the login page, on this site or an allowed host, and
            /// is a clean header value.
            #[test]
            fn accepted_redirects_stay_on_allowed_hosts(rd in tricky()) {
                let c = config();
                let h = host("gate.local:8080");
                if let Some(out) = safe_redirect(&c, &h, &rd) {
                    prop_assert!(HeaderValue::from_str(&out).is_ok(), "{out:?}");
                    prop_assert!(out.bytes().all(|b| b.is_ascii_graphic()), "{out:?}");
                    prop_assert!(!out.starts_with("//"), "{out:?}");
                    let page = url::Url::parse("http://gate.local:8080/login").unwrap();
                    let landed = page.join(&out).unwrap();
                    prop_assert!(matches!(landed.scheme(), "http" | "https"));
                    prop_assert!(landed.username().is_empty() && landed.password().is_none());
                    let lh = landed.host_str().unwrap_or("");
                    prop_assert!(allowed_host(lh), "{rd:?} -> {out:?} lands on {lh:?}");
                    // Same scheme and port as the site it lands on: this
                    // page (relative targets), the public origin, or https
                    // on an allowed domain.
                    let port = landed.port_or_known_default();
                    let fine = match lh {
                        "gate.local" => {
                            port == Some(8080)
                                && (landed.scheme() == "https" || out.starts_with('/'))
                        }
                        "auth.example.com" => landed.scheme() == "https" && port == Some(443),
                        _ => landed.scheme() == "https",
                    };
                    prop_assert!(fine, "{rd:?} -> {out:?} lands on {landed}");
                    // An accepted value is stable: checking it again keeps it.
                    prop_assert_eq!(safe_redirect(&c, &h, &out), Some(out.clone()));
                }
            }

        }

        #[test]
        fn relative_paths_are_normalised_and_encoded() {
            let c = config();
            let h = HeaderMap::new();
            assert_eq!(safe_redirect(&c, &h, "/a/../b").as_deref(), Some("/b"));
            assert_eq!(
                safe_redirect(&c, &h, "/ü?q=ü").as_deref(),
                Some("/%C3%BC?q=%C3%BC")
            );
            assert_eq!(
                safe_redirect(&c, &h, "/%0d%0aSet-Cookie:x").as_deref(),
                Some("/%0d%0aSet-Cookie:x")
            );
            for rd in [
                "/.//evil.com",
                "/a/..//evil.com",
                "/%2e//evil.com",
                "/\\evil.com",
                "/\tevil",
                "/x\r\nSet-Cookie: a=b",
                "https:evil.com",
                "https:/evil.com",
                "http://gate.local:8080@evil.com/",
            ] {
                assert_eq!(
                    safe_redirect(&c, &host("gate.local:8080"), rd),
                    None,
                    "{rd}"
                );
            }
        }
    }
}
