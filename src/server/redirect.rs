//! The plain-HTTP listener of `[tls] http_redirect_bind`: every request
//! is answered on the spot, inside its connection's task, with a redirect
//! to the same host and path over https: 301 for `GET` and `HEAD`, 308
//! for every other method (a form's `POST` stays a `POST`). With ACME, a
//! request under `/.well-known/acme-challenge/` gets the HTTP-01 answer
//! of its token instead (404 when none is open).
//!
//! The host comes from the request (`Host`, or an HTTP/2 request's
//! authority), so it is checked before it is sent back: when the config
//! names the hosts gatehouse serves (the public origin's, the apps', the
//! ACME domains), only
//! those are redirected and any other gets 400, so this listener never
//! points a client at a host gatehouse does not serve. With none named,
//! any well-formed host name or address is sent back to the client that
//! named it, on the TLS listener's port. The port the client used is
//! dropped: it is this listener's.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response as AppResponse};
use hyper::body::Incoming;

use crate::config::{CertSource, Config};
use crate::server::conn::Dispatch;
use crate::tls::{Challenges, HTTP01_PREFIX, Tls};

/// Where plain-HTTP requests are sent.
#[derive(Clone)]
pub(crate) struct RedirectDispatch {
    inner: Arc<Targets>,
    /// The ACME HTTP-01 answers, with `[tls] acme_domains`.
    challenges: Option<Arc<Challenges>>,
}

/// The hosts redirected and the port they are sent to.
struct Targets {
    /// The hosts gatehouse serves, lower case without port; empty: any
    /// well-formed host.
    hosts: HashSet<String>,
    /// The port in the `Location`; none for 443.
    port: Option<u16>,
}

impl RedirectDispatch {
    /// Redirects to the hosts of `config`, on `tls_port` (the TLS
    /// listener's), unless the https public origin names its own port.
    pub(crate) fn new(config: &Config, tls: Option<&Tls>, tls_port: u16) -> Self {
        let mut hosts = HashSet::new();
        let mut port = tls_port;
        if let Some(origin) = &config.public_origin {
            if let Some(h) = origin.host_str() {
                hosts.insert(bare_host(h));
            }
            // The origin browsers see, which a port mapping may have moved.
            if origin.scheme() == "https" {
                port = origin.port_or_known_default().unwrap_or(port);
            }
        }
        for app in &config.proxy.apps {
            hosts.extend(app.host.clone());
        }
        if let Some(CertSource::Acme(a)) = config.tls.as_ref().map(|t| &t.certificate) {
            hosts.extend(a.domains.iter().cloned());
        }
        RedirectDispatch {
            inner: Arc::new(Targets {
                hosts,
                port: (port != 443).then_some(port),
            }),
            challenges: tls
                .filter(|t| t.acme().is_some())
                .map(|t| t.certs().challenges().clone()),
        }
    }

    /// The answer to one plain-HTTP request.
    fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> AppResponse {
        if let Some(c) = &self.challenges
            && uri.path().starts_with(HTTP01_PREFIX)
        {
            // An ACME CA's HTTP-01 check (it follows no redirect to https
            // before the certificate exists).
            return match c.http_answer(uri.path()) {
                Some(key_authorization) => (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    key_authorization,
                )
                    .into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        let named = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let Some(host) = named.and_then(host_of) else {
            return refuse("a request needs a valid Host");
        };
        let t = &self.inner;
        if !t.hosts.is_empty() && !t.hosts.contains(host.trim_matches(['[', ']'])) {
            return refuse("unknown host");
        }
        let path = match uri.path_and_query() {
            Some(p) if p.as_str().starts_with('/') => p.as_str(),
            Some(_) => return refuse("no such path"),
            None => "/",
        };
        let location = match t.port {
            Some(port) => format!("https://{host}:{port}{path}"),
            None => format!("https://{host}{path}"),
        };
        let status = if matches!(*method, Method::GET | Method::HEAD) {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::PERMANENT_REDIRECT
        };
        (
            status,
            [(header::LOCATION, location)],
            "This site is served over https.\n",
        )
            .into_response()
    }
}

impl Dispatch for RedirectDispatch {
    type Future = Ready<Result<AppResponse, Infallible>>;

    fn answer_hot(&self, req: &Request<Incoming>, _peer: SocketAddr) -> Option<AppResponse> {
        Some(self.answer(req.method(), req.uri(), req.headers()))
    }

    fn route(&mut self, _req: Request<Incoming>) -> Self::Future {
        // Every request is answered hot.
        std::future::ready(Ok(StatusCode::NOT_FOUND.into_response()))
    }
}

fn refuse(why: &'static str) -> AppResponse {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// A host as matched: lower case, without a trailing dot or brackets.
fn bare_host(h: &str) -> String {
    h.trim_end_matches('.')
        .trim_matches(['[', ']'])
        .to_ascii_lowercase()
}

/// The host of a `Host` value (`name`, `name:port`, `[v6]:port`), as it
/// goes into a URL: lower case, without the port or a trailing dot, an
/// IPv6 address in brackets. `None` unless it is a DNS name (letters,
/// digits, `-`, `.`; labels of 1 to 63) or an IP address.
fn host_of(value: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (format!("[{}]", v6.to_ascii_lowercase()), after)
    } else {
        let (h, port) = match value.rsplit_once(':') {
            Some((h, _)) => (h, &value[h.len()..]),
            None => (value, ""),
        };
        (bare_host(h), port)
    };
    if !(port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        }))
    {
        return None;
    }
    if host.starts_with('[') {
        return Some(host);
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(hosts: &[&str], port: u16) -> RedirectDispatch {
        RedirectDispatch {
            inner: Arc::new(Targets {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                port: (port != 443).then_some(port),
            }),
            challenges: None,
        }
    }

    fn answer(d: &RedirectDispatch, method: Method, target: &str, host: &str) -> (u16, String) {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        let r = d.answer(&method, &target.parse().unwrap(), &h);
        let loc = r
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), loc)
    }

    #[test]
    fn redirects_keep_host_path_and_method() {
        let any = targets(&[], 443);
        assert_eq!(
            answer(&any, Method::GET, "/a/b?c=d", "Auth.Example.com:80"),
            (301, "https://auth.example.com/a/b?c=d".into())
        );
        assert_eq!(
            answer(&any, Method::POST, "/login", "auth.example.com."),
            (308, "https://auth.example.com/login".into())
        );
        assert_eq!(
            answer(&any, Method::GET, "/", "[::1]:8080"),
            (301, "https://[::1]/".into())
        );
        let port = targets(&[], 8443);
        assert_eq!(
            answer(&port, Method::HEAD, "//evil.example/x", "127.0.0.1:8080"),
            (301, "https://127.0.0.1:8443//evil.example/x".into())
        );
        // An absolute-form target keeps only its path; the host is `Host`'s.
        assert_eq!(
            answer(&port, Method::GET, "http://evil.example/p", "a.example"),
            (301, "https://a.example:8443/p".into())
        );
    }

    #[test]
    fn only_well_formed_and_served_hosts_are_sent_back() {
        let any = targets(&[], 443);
        for bad in [
            "evil.example@a",
            "a/b",
            "a b",
            "a:b",
            "a:123456",
            "-a.example",
            ":80",
            "[zz]",
            "a..b",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, bad.parse().unwrap());
            let r = any.answer(&Method::GET, &"/".parse().unwrap(), &h);
            assert_eq!(r.status(), 400, "{bad}");
        }
        let r = any.answer(&Method::GET, &"/".parse().unwrap(), &HeaderMap::new());
        assert_eq!(r.status(), 400);
        let known = targets(&["auth.example.com", "app.example.com", "::1"], 443);
        assert_eq!(answer(&known, Method::GET, "/", "APP.example.com").0, 301);
        assert_eq!(answer(&known, Method::GET, "/", "[::1]").0, 301);
        assert_eq!(
            answer(&known, Method::GET, "/", "evil.example"),
            (400, String::new())
        );
    }
}
