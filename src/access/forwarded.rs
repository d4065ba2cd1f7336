//! The original request a forward-auth proxy asks about, read from exactly
//! one family of headers that the proxy sets ([`Family`]):
//!
//! - `x-forwarded` (the default): `X-Forwarded-Method`, `-Proto`, `-Host`,
//!   `-Uri` and optionally `-Port`. Caddy and Traefik set these themselves
//!   over a client's copies, and the shipped nginx file sets them too.
//! - `x-original`: `X-Original-URL` and `X-Original-Method`, for nginx
//!   setups that keep them.
//!
//! The family is a setting, never a guess: reading one family and falling
//! back to the other would let a client that sends the other family steer
//! the decision behind a proxy that passes client headers on. A request
//! that names no readable original request is [`Unreadable`], and the
//! caller refuses it rather than deciding for some other request.
//!
//! Values are read as bytes: a target with bytes at or above 0x80 is
//! percent-encoded, not dropped. The host and target are normalised
//! ([`super::normalize`]) before any rule sees them.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::Request;
use super::normalize::{self, Refusal};

/// Which headers carry the original request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Family {
    /// `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` (`-Port`).
    #[default]
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// `X-Original-URL` and `X-Original-Method`.
    #[serde(rename = "x-original")]
    XOriginal,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::XForwarded => "x-forwarded",
            Family::XOriginal => "x-original",
        }
    }

    /// The header whose presence marks a request of this family.
    fn marker(self) -> &'static str {
        match self {
            Family::XForwarded => "x-forwarded-uri",
            Family::XOriginal => "x-original-url",
        }
    }

    fn other(self) -> Family {
        match self {
            Family::XForwarded => Family::XOriginal,
            Family::XOriginal => Family::XForwarded,
        }
    }
}

/// Why the original request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// No header of the configured family; the other family's are there.
    #[error("the proxy sent the other family of original-request headers")]
    OtherFamily,
    #[error("the proxy sent no original-request headers")]
    Missing,
    /// A header of the family is absent, repeated or not a valid value.
    #[error("the proxy's {0} header is missing, repeated or malformed")]
    Header(&'static str),
    #[error("{0}")]
    Target(#[from] Refusal),
}

/// The original request, normalised, with what is needed to send the
/// browser back to it after sign-in.
#[derive(Debug, Clone)]
pub struct Original<'a> {
    /// Lower case, without port or trailing dot.
    pub host: Cow<'a, str>,
    /// Path plus query in normal form (see [`normalize::path`]).
    pub path: Cow<'a, str>,
    pub method: &'a str,
    /// `http` or `https`, when the proxy said.
    proto: Option<&'a str>,
    /// The host as the proxy sent it, with its port if it had one.
    authority: &'a str,
    /// `X-Forwarded-Port`, when sent.
    port: Option<&'a str>,
    /// The target as the client wrote it (for the return URL).
    target: &'a [u8],
}

/// Longest return URL offered: the sign-in refuses a longer `rd` anyway
/// (`server::redirect::MAX_RD`).
const MAX_URL: usize = 2048;

impl<'a> Original<'a> {
    /// The request as the rules take it, with `ip` as its client.
    pub fn request(&self, ip: Option<std::net::IpAddr>) -> Request<'_> {
        Request {
            host: &self.host,
            path: &self.path,
            method: self.method,
            ip,
        }
    }

    /// The URL the browser asked for, to come back to after sign-in: the
    /// target as the client wrote it (bytes outside visible ASCII
    /// percent-encoded), on the host the proxy named, with the port when
    /// it is not the scheme's default. `None` when it is too long or does
    /// not parse as an http(s) URL.
    pub fn return_url(&self) -> Option<String> {
        let proto = self.proto.unwrap_or("https").to_ascii_lowercase();
        let mut url = format!("{proto}://{}", self.authority);
        let has_port = match self.authority.strip_prefix('[') {
            Some(rest) => rest.contains("]:"),
            None => self.authority.contains(':'),
        };
        if let Some(port) = self.port {
            let default = matches!((proto.as_str(), port), ("https", "443") | ("http", "80"));
            if !has_port && !default {
                url.push(':');
                url.push_str(port);
            }
        }
        let target = match self.target.iter().position(|&b| b == b'#') {
            Some(i) => &self.target[..i],
            None => self.target,
        };
        if !target.starts_with(b"/") {
            url.push('/');
        }
        for &b in target {
            if (0x21..=0x7e).contains(&b) {
                url.push(b as char);
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        if url.len() > MAX_URL {
            return None;
        }
        let parsed = url::Url::parse(&url).ok()?;
        matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
    }
}

impl<'a> Original<'a> {
    /// A request received directly (the built-in proxy): `authority` from
    /// `Host` or the HTTP/2 `:authority`, `target` the path and query as
    /// the client wrote them, `proto` the scheme the client used. Normalised
    /// as a proxy's report of the same request would be.
    pub fn direct(
        authority: &'a str,
        target: &'a [u8],
        method: &'a str,
        proto: &'a str,
    ) -> Result<Original<'a>, Refusal> {
        Ok(Original {
            host: normalize::host(authority.as_bytes())?,
            path: normalize::path(target)?,
            method,
            proto: Some(proto),
            authority,
            port: None,
            target,
        })
    }
}

/// The one value of header `name`: `Ok(None)` when absent, an error when
/// repeated or empty.
fn one<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h [u8]>, Unreadable> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Unreadable::Header(name));
    }
    let v = trim(v);
    if v.is_empty() {
        return Err(Unreadable::Header(name));
    }
    Ok(Some(v))
}

fn trim(v: &HeaderValue) -> &[u8] {
    v.as_bytes().trim_ascii()
}

fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], Unreadable> {
    one(headers, name)?.ok_or(Unreadable::Header(name))
}

/// `v` as text when it is a visible-ASCII token of `ok` bytes.
fn ascii<'a>(
    v: &'a [u8],
    name: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<&'a str, Unreadable> {
    if v.iter().all(|&b| ok(b)) {
        // Checked: every byte is ASCII.
        std::str::from_utf8(v).map_err(|_| Unreadable::Header(name))
    } else {
        Err(Unreadable::Header(name))
    }
}

/// An HTTP method: an RFC 9110 token.
fn method<'a>(v: &'a [u8], name: &'static str) -> Result<&'a str, Unreadable> {
    if v.len() > 32 {
        return Err(Unreadable::Header(name));
    }
    ascii(v, name, |b| {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    })
}

/// The original request as `family` reports it. Read the same way from
/// any peer; whether to believe it is the caller's decision.
pub fn read(headers: &HeaderMap, family: Family) -> Result<Original<'_>, Unreadable> {
    if !headers.contains_key(family.marker()) {
        return Err(if headers.contains_key(family.other().marker()) {
            Unreadable::OtherFamily
        } else {
            Unreadable::Missing
        });
    }
    match family {
        Family::XForwarded => {
            let m = required(headers, "x-forwarded-method")?;
            let method = method(m, "x-forwarded-method")?;
            let host_raw = required(headers, "x-forwarded-host")?;
            let target = required(headers, "x-forwarded-uri")?;
            let proto = match one(headers, "x-forwarded-proto")? {
                None => None,
                Some(p) if p.eq_ignore_ascii_case(b"http") || p.eq_ignore_ascii_case(b"https") => {
                    Some(ascii(p, "x-forwarded-proto", |_| true)?)
                }
                Some(_) => return Err(Unreadable::Header("x-forwarded-proto")),
            };
            let port = match one(headers, "x-forwarded-port")? {
                None => None,
                Some(p) if p.len() <= 5 => {
                    Some(ascii(p, "x-forwarded-port", |b| b.is_ascii_digit())?)
                }
                Some(_) => return Err(Unreadable::Header("x-forwarded-port")),
            };
            let host = normalize::host(host_raw)?;
            // The normalised host proves the raw one is ASCII.
            let authority = std::str::from_utf8(host_raw).map_err(|_| Refusal::BadHost)?;
            Ok(Original {
                host,
                path: normalize::path(target)?,
                method,
                proto,
                authority,
                port,
                target,
            })
        }
        Family::XOriginal => {
            let m = required(headers, "x-original-method")?;
            let method = method(m, "x-original-method")?;
            let url = required(headers, "x-original-url")?;
            let (proto, authority, target) = split_url(url)?;
            Ok(Original {
                host: normalize::host(authority.as_bytes())?,
                path: normalize::path(target)?,
                method,
                proto: Some(proto),
                authority,
                port: None,
                target,
            })
        }
    }
}

/// `scheme://host[:port]/path?query` split into scheme, authority and the
/// rest (which may be empty).
fn split_url(url: &[u8]) -> Result<(&str, &str, &[u8]), Unreadable> {
    const NAME: &str = "x-original-url";
    let sep = url
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(Unreadable::Header(NAME))?;
    let scheme = &url[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(Unreadable::Header(NAME));
    }
    let rest = &url[sep + 3..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    // User info in the authority is not a host; `host()` refuses `@` too.
    let authority = ascii(authority, NAME, |b| (0x21..=0x7e).contains(&b) && b != b'@')?;
    let scheme = ascii(scheme, NAME, |_| true)?;
    Ok((scheme, authority, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn caddy(uri: &[u8]) -> HeaderMap {
        headers(&[
            ("x-forwarded-proto", b"https"),
            ("x-forwarded-host", b"grafana.example.com"),
            ("x-forwarded-uri", uri),
            ("x-forwarded-method", b"DELETE"),
        ])
    }

    #[test]
    fn each_family_read_alone() {
        let h = headers(&[
            (
                "x-original-url",
                b"https://Code.Example.com:8443/%61dmin?x=1#frag",
            ),
            ("x-original-method", b"POST"),
        ]);
        let r = read(&h, Family::XOriginal).unwrap();
        assert_eq!(
            (&*r.host, &*r.path, r.method),
            ("code.example.com", "/admin?x=1", "POST")
        );
        assert_eq!(
            r.return_url().as_deref(),
            Some("https://code.example.com:8443/%61dmin?x=1")
        );
        // The same headers under the other setting: refused, never read.
        assert_eq!(
            read(&h, Family::XForwarded).unwrap_err(),
            Unreadable::OtherFamily
        );

        let h = caddy(b"/d/1?orgId=1");
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(
            (&*r.host, &*r.path, r.method),
            ("grafana.example.com", "/d/1?orgId=1", "DELETE")
        );
        assert_eq!(
            read(&h, Family::XOriginal).unwrap_err(),
            Unreadable::OtherFamily
        );
        assert_eq!(
            read(&HeaderMap::new(), Family::XForwarded).unwrap_err(),
            Unreadable::Missing
        );
        assert_eq!(
            read(&HeaderMap::new(), Family::XOriginal).unwrap_err(),
            Unreadable::Missing
        );
    }

    /// A client's `X-Original-*` beside the proxy's `X-Forwarded-*` changes
    /// nothing under the default, and the reverse under `x-original`.
    #[test]
    fn the_other_family_is_never_read() {
        let mut h = caddy(b"/admin");
        h.insert(
            "x-original-url",
            HeaderValue::from_static("https://grafana.example.com/"),
        );
        h.insert("x-original-method", HeaderValue::from_static("GET"));
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!((&*r.path, r.method), ("/admin", "DELETE"));
        let r = read(&h, Family::XOriginal).unwrap();
        assert_eq!((&*r.path, r.method), ("/", "GET"));
    }

    #[test]
    fn non_ascii_targets_are_encoded_not_dropped() {
        let h = caddy(b"/admin/users?\xff");
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(&*r.path, "/admin/users?%FF");
        assert_eq!(
            r.return_url().as_deref(),
            Some("https://grafana.example.com/admin/users?%FF")
        );
        let h = headers(&[
            ("x-original-url", b"http://a.example/dash?\xff"),
            ("x-original-method", b"GET"),
        ]);
        assert_eq!(&*read(&h, Family::XOriginal).unwrap().path, "/dash?%FF");
    }

    #[test]
    fn unreadable_requests() {
        let refused = |h: HeaderMap, f| read(&h, f).unwrap_err();
        // Each x-forwarded header missing in turn (but the marker).
        for skip in ["x-forwarded-host", "x-forwarded-method"] {
            let mut h = caddy(b"/");
            h.remove(skip);
            assert_eq!(refused(h, Family::XForwarded), Unreadable::Header(skip));
        }
        let mut h = caddy(b"/");
        h.append(
            "x-forwarded-host",
            HeaderValue::from_static("other.example"),
        );
        assert_eq!(
            refused(h, Family::XForwarded),
            Unreadable::Header("x-forwarded-host")
        );
        let mut h = caddy(b"/");
        h.insert("x-forwarded-proto", HeaderValue::from_static("ftp"));
        assert_eq!(
            refused(h, Family::XForwarded),
            Unreadable::Header("x-forwarded-proto")
        );
        let mut h = caddy(b"/");
        h.insert("x-forwarded-method", HeaderValue::from_static("GET /"));
        assert_eq!(
            refused(h, Family::XForwarded),
            Unreadable::Header("x-forwarded-method")
        );
        assert_eq!(
            refused(caddy(b"/%2fadmin"), Family::XForwarded),
            Unreadable::Target(Refusal::Separator)
        );
        assert_eq!(
            refused(caddy(b"admin"), Family::XForwarded),
            Unreadable::Target(Refusal::NotAPath)
        );
        let mut h = caddy(b"/");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_bytes(b"caf\xe9.example").unwrap(),
        );
        assert_eq!(
            refused(h, Family::XForwarded),
            Unreadable::Target(Refusal::BadHost)
        );
        for bad in [
            &b"ftp://a/b"[..],
            b"https://",
            b"https://user@evil.example/",
            b"/just/a/path",
            b"no scheme",
            b"https://a.example\xff/",
        ] {
            let h = headers(&[("x-original-url", bad), ("x-original-method", b"GET")]);
            assert!(read(&h, Family::XOriginal).is_err(), "{bad:?}");
        }
        let h = headers(&[("x-original-url", b"https://a.example/")]);
        assert_eq!(
            refused(h, Family::XOriginal),
            Unreadable::Header("x-original-method")
        );
    }

    #[test]
    fn return_url_ports() {
        let mut h = caddy(b"/p");
        h.insert("x-forwarded-port", HeaderValue::from_static("8443"));
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(
            r.return_url().as_deref(),
            Some("https://grafana.example.com:8443/p")
        );
        h.insert("x-forwarded-port", HeaderValue::from_static("443"));
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(
            r.return_url().as_deref(),
            Some("https://grafana.example.com/p")
        );
        // A host that has its port keeps it.
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("grafana.example.com:9000"),
        );
        h.insert("x-forwarded-port", HeaderValue::from_static("8443"));
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(
            r.return_url().as_deref(),
            Some("https://grafana.example.com:9000/p")
        );
        h.insert("x-forwarded-host", HeaderValue::from_static("[::1]"));
        let r = read(&h, Family::XForwarded).unwrap();
        assert_eq!(r.return_url().as_deref(), Some("https://[::1]:8443/p"));
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(url in prop::collection::vec(any::<u8>(), 0..60), host in prop::collection::vec(any::<u8>(), 0..30), uri in prop::collection::vec(any::<u8>(), 0..30)) {
            let mut h = HeaderMap::new();
            for (k, v) in [("x-original-url", &url), ("x-forwarded-host", &host), ("x-forwarded-uri", &uri)] {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.insert(k, v);
                }
            }
            h.insert("x-original-method", HeaderValue::from_static("GET"));
            h.insert("x-forwarded-method", HeaderValue::from_static("GET"));
            for f in [Family::XForwarded, Family::XOriginal] {
                if let Ok(r) = read(&h, f) {
                    prop_assert!(!r.host.is_empty());
                    prop_assert!(r.path.starts_with('/'));
                    // The return URL is absent or an http(s) URL that fits in a header.
                    if let Some(u) = r.return_url() {
                        let parsed = url::Url::parse(&u).unwrap();
                        prop_assert!(matches!(parsed.scheme(), "http" | "https"));
                        prop_assert!(HeaderValue::from_str(&u).is_ok());
                    }
                }
            }
        }
    }
}
