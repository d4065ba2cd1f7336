//! What one forward-auth check is about, read once: the proxy's headers
//! and query, its address, the original request it names and, worked out
//! on first use only, the client's address. Every step of a check takes
//! this one value instead of reading the headers again. The built-in proxy
//! builds the same value from the request itself ([`Asked::direct`]).

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, Method, Uri, header};

use crate::access::{Original, Request as AccessRequest, Unreadable, read_original};
use crate::config::Config;
use crate::server::client::client_ip;

/// Set once a trusted proxy has sent the family of headers the settings do
/// not name, so that the warning is logged once per process.
static OTHER_FAMILY_WARNED: AtomicBool = AtomicBool::new(false);

/// One check's request.
pub struct Asked<'r> {
    config: &'r Config,
    /// The check's own headers (the proxy's copy of the client's, plus
    /// what the proxy adds).
    pub headers: &'r HeaderMap,
    /// The check's query (`redirect=1`).
    pub query: Option<&'r str>,
    /// The proxy's address, as the connection gave it.
    pub peer: Option<IpAddr>,
    /// The original request, normalised; `None` when the peer is not a
    /// trusted proxy: its headers are not believed, and the rules see host
    /// "" and path "/".
    pub original: Option<Original<'r>>,
    /// The client's address ([`client_ip`]), computed on first use: most
    /// checks never need it.
    ip: OnceLock<Option<IpAddr>>,
    /// For a request received directly, where a browser that must sign in
    /// is sent (the sign-in page, without `rd`); `None` for a proxy's check.
    pub login: Option<&'r str>,
}

impl<'r> Asked<'r> {
    /// Reads the check. A trusted proxy's original request that cannot be
    /// read from the one header family `[access] forwarded_headers` names
    /// is refused: deciding it as some other request is how rules get
    /// steered.
    pub fn read(
        config: &'r Config,
        query: Option<&'r str>,
        headers: &'r HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Self, Unreadable> {
        let original = if peer.is_some_and(|p| config.is_trusted_proxy(p)) {
            Some(read_original(headers, config.forwarded_headers).inspect_err(|&why| {
                if why == Unreadable::OtherFamily
                    && !OTHER_FAMILY_WARNED.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        setting = "access.forwarded_headers",
                        configured = config.forwarded_headers.as_str(),
                        "a trusted proxy sent the other family of original-request headers; \
                         its checks are refused until the proxy's configuration or this setting changes"
                    );
                } else {
                    tracing::debug!(reason = %why, "original request refused");
                }
            })?)
        } else {
            None
        };
        Ok(Asked {
            config,
            headers,
            query,
            peer,
            original,
            ip: OnceLock::new(),
            login: None,
        })
    }

    /// Reads a request received directly (the built-in proxy): the request
    /// is its own original, whoever the peer is. The host comes from `Host`
    /// (or HTTP/2's `:authority`), the path is normalised as the rules see
    /// it, `proto` is the scheme the client used, and a browser that must
    /// sign in is sent to `login`.
    pub fn direct(
        config: &'r Config,
        method: &'r Method,
        uri: &'r Uri,
        headers: &'r HeaderMap,
        peer: Option<IpAddr>,
        proto: &'r str,
        login: &'r str,
    ) -> Result<Self, Unreadable> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let authority = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().map_err(|_| Unreadable::Header("host"))?,
            (None, _) => uri
                .authority()
                .map(|a| a.as_str())
                .ok_or(Unreadable::Header("host"))?,
            (Some(_), Some(_)) => return Err(Unreadable::Header("host")),
        };
        let target = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes();
        let original = Original::direct(authority, target, method.as_str(), proto)?;
        Ok(Asked {
            config,
            headers,
            query: None,
            peer,
            original: Some(original),
            ip: OnceLock::new(),
            login: Some(login),
        })
    }

    /// The client's address: the peer, or through a trusted proxy the
    /// nearest untrusted hop of `X-Forwarded-For`.
    pub fn ip(&self) -> Option<IpAddr> {
        *self
            .ip
            .get_or_init(|| client_ip(self.config, self.peer, self.headers))
    }

    /// The request as the access rules see it, with the client's address
    /// when `with_ip` (only rules naming networks need it).
    pub fn access_request(&self, with_ip: bool) -> AccessRequest<'_> {
        let ip = if with_ip { self.ip() } else { None };
        match &self.original {
            Some(o) => o.request(ip),
            None => AccessRequest {
                host: "",
                path: "/",
                method: "GET",
                ip,
            },
        }
    }

    /// The original host and path, or empty ones.
    pub fn host_path(&self) -> (&str, &str) {
        self.original
            .as_ref()
            .map_or(("", ""), |o| (&*o.host, &*o.path))
    }

    /// The original host, or "" (an access token's scope matches nothing
    /// then).
    pub fn host(&self) -> &str {
        self.host_path().0
    }

    /// Where the browser goes back to after signing in: the original URL
    /// the proxy named. A peer that is not a trusted proxy is not believed
    /// about the request, but its URL is still offered as `rd`, which the
    /// sign-in checks like any other.
    pub fn return_url(&self) -> Option<String> {
        match &self.original {
            Some(o) => o.return_url(),
            None => read_original(self.headers, self.config.forwarded_headers)
                .ok()?
                .return_url(),
        }
    }
}
