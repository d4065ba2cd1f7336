//! The built-in reverse proxy: `[[apps]]` served by gatehouse itself, with
//! no other proxy in front. It owns the apps' pooled upstream clients, the
//! per-app connection caps, the cap on open WebSockets, and the relaying of
//! requests, responses and WebSocket frames.
//!
//! It is a branch of the connection's dispatch taken before the router
//! (`crate::server::dispatch`), so the router's body limit, cross-site
//! guard and request timeout never apply to proxied traffic; its own bounds
//! do instead (`[proxy]`): connect, response head, body idle, WebSocket
//! idle, `max_connections` per app, `max_upgraded`.
//!
//! Each request is decided by the forward-auth check
//! ([`verify::decide_request`]) on an [`Asked`] built from the request
//! itself; the rules see its host and normalised path, before any
//! `strip_prefix`. Allowed requests go upstream with the header changes of
//! [`headers`]; bodies stream both ways frame by frame ([`body`]).
//! WebSocket upgrades are relayed message by message ([`ws`]) inside their
//! connection's task (`ConnHandle::adopt`).
//!
//! May use the core, `guard`, `forward_auth` and `pages`; never `signin` or
//! `account`.

pub mod body;
pub mod headers;
pub mod upstream;
pub mod ws;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::config::{AppConfig, Config, ProxyConfig, Route, Upstream};
use crate::server::forward_auth::asked::Asked;
use crate::server::forward_auth::verify::{self, Allowed, Verdict};
use crate::server::proxy::body::IdleBody;
use crate::server::proxy::upstream::{AppClient, is_connect_timeout};
use crate::server::respond::{ApiError, wants_html};
use crate::server::state::AppState;

/// The task serving an upgraded stream.
pub type StreamTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the connection layer lends a request that upgrades: a way to run
/// the upgraded stream inside the connection's own task (so it keeps the
/// connection's slots and is dropped with it after the grace period), and
/// the drain signal. Built by the dispatch from the connection's handle,
/// which this room does not name.
pub struct Adopter {
    /// Runs the stream in the connection's task; false when the connection
    /// is gone (the stream is then dropped).
    pub adopt: Box<dyn FnOnce(StreamTask) -> bool + Send>,
    /// Completes once the server drains.
    pub draining: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The proxy of one server: its apps and their clients.
pub struct Proxy {
    settings: ProxyConfig,
    apps: Vec<App>,
    /// `max_upgraded`: one place per open WebSocket.
    upgraded: Arc<Semaphore>,
    /// gatehouse's cookie names, removed on the way upstream.
    own_cookies: [String; 3],
    /// The scheme clients use: `https` when gatehouse's listener speaks TLS
    /// or the public origin says a TLS proxy is in front.
    proto: &'static str,
}

/// One app and what its requests share.
struct App {
    config: AppConfig,
    client: AppClient,
    /// `max_connections`, shared by the pooled client's connections.
    slots: Arc<Semaphore>,
    /// The `Host` sent with `preserve_host = false`, and the authority of
    /// every upstream URI (a Unix socket has none: `localhost`).
    authority: HeaderValue,
}

/// Why a proxied request failed, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The upstream refused the connection or broke the exchange: 502.
    BadGateway,
    /// The upstream did not accept or answer in time: 504.
    Timeout,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::BadGateway => "bad_gateway",
            Failure::Timeout => "timeout",
        }
    }
}

impl Proxy {
    /// The proxy of `config`, or `None` when it names no app.
    pub fn new(config: &Config) -> Option<Arc<Proxy>> {
        let p = &config.proxy;
        if p.is_empty() {
            return None;
        }
        let apps = p
            .apps
            .iter()
            .map(|a| {
                let slots = Arc::new(Semaphore::new(a.max_connections));
                let authority = match &a.upstream {
                    Upstream::Tcp { authority } => authority.as_str(),
                    Upstream::Unix { .. } => "localhost",
                };
                App {
                    client: upstream::client(a.upstream.clone(), slots.clone(), p.connect_timeout),
                    slots,
                    authority: HeaderValue::from_str(authority)
                        .unwrap_or(HeaderValue::from_static("localhost")),
                    config: a.clone(),
                }
            })
            .collect();
        let https = config.https();
        Some(Arc::new(Proxy {
            upgraded: Arc::new(Semaphore::new(p.max_upgraded)),
            settings: p.clone(),
            apps,
            own_cookies: headers::own_cookies(config),
            proto: if https { "https" } else { "http" },
        }))
    }

    /// Where `req` goes: an app, gatehouse under the reserved prefix, or
    /// gatehouse. Borrows; allocates only for a host not in normal form.
    pub fn route_of<B>(&self, req: &Request<B>) -> Route {
        let raw = req
            .headers()
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()))
            .unwrap_or_default();
        let host = crate::access::normalize::host(raw).unwrap_or_default();
        self.settings.route(&host, req.uri().path())
    }

    /// The answer to a request for app `index`: decided by the access
    /// check, then relayed. `adopter`: for a WebSocket upgrade
    /// ([`ws::is_upgrade`]), how its stream joins its connection.
    pub async fn serve(
        self: Arc<Self>,
        state: AppState,
        index: usize,
        mut req: Request<Incoming>,
        adopter: Option<Adopter>,
    ) -> axum::response::Response {
        state.activity.record();
        let Some(app) = self.apps.get(index) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let login = self.login_base(&state, app);
        let verdict = {
            let asked = match Asked::direct(
                &state.config,
                req.method(),
                req.uri(),
                req.headers(),
                peer,
                self.proto,
                &login,
            ) {
                Ok(a) => a,
                Err(why) => {
                    return crate::server::forward_auth::answers::unreadable(&state, why);
                }
            };
            verify::decide_request(&state, &asked).await
        };
        let allowed = match verdict {
            Verdict::Allowed(a) => a,
            // Signing in happens on this host: the answer's links to
            // gatehouse's pages (the 403 page's sign-out and stylesheet)
            // must stay under the reserved prefix too.
            Verdict::Answer(r) if login.starts_with(self.reserved_prefix()) => {
                return crate::server::mounted::under(self.reserved_prefix(), r).await;
            }
            Verdict::Answer(r) => return r,
        };
        if let Some(adopter) = adopter {
            return ws::upgrade(self.clone(), state, index, req, allowed, adopter, peer).await;
        }
        let host = req.headers().get(header::HOST).cloned();
        let html = wants_html(req.headers());
        if let Err(e) = self.rewrite(&state, app, &mut req, &allowed, peer, host) {
            return e.into_response();
        }
        let req = req.map(|b| IdleBody::new(b, self.settings.body_idle));
        let sent = tokio::time::timeout(self.settings.response_timeout, app.client.request(req));
        let res = match sent.await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                let failure = if is_connect_timeout(&e) {
                    Failure::Timeout
                } else {
                    Failure::BadGateway
                };
                tracing::info!(app = %app.config.name, error = %e, "upstream failed");
                return self.failed(&state, index, failure, html);
            }
            Err(_) => {
                tracing::info!(app = %app.config.name, "upstream did not answer in time");
                return self.failed(&state, index, Failure::Timeout, html);
            }
        };
        let (mut parts, body) = res.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::strip_set_cookies(&mut parts.headers, &self.own_cookies);
        let body = Body::new(IdleBody::new(body, self.settings.body_idle));
        Response::from_parts(parts, body)
    }

    /// Turns the client's request into the upstream's: URI, `Host`,
    /// version and headers. `host`: the client's `Host`.
    fn rewrite(
        &self,
        state: &AppState,
        app: &App,
        req: &mut Request<Incoming>,
        allowed: &Allowed,
        peer: Option<IpAddr>,
        host: Option<HeaderValue>,
    ) -> Result<(), ApiError> {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let target = match &app.config.path_prefix {
            // A prefix app gets the path in the normal form it was routed
            // and decided by, so that its own router cannot resolve a
            // spelling such as `/code/../other/x` to another app's path.
            Some(prefix) => {
                let normal = crate::access::normalize::path(req.uri().path().as_bytes())
                    .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad request target"))?;
                let query = req.uri().query().map(|q| format!("?{q}"));
                let path = if app.config.strip_prefix {
                    // `/code/x` → `/x`; `/code` → `/`.
                    let bare = &prefix[..prefix.len() - 1];
                    let rest = normal.strip_prefix(bare).unwrap_or(&normal);
                    if rest.starts_with('/') {
                        rest.to_string()
                    } else {
                        format!("/{rest}")
                    }
                } else {
                    normal.into_owned()
                };
                format!("{path}{}", query.unwrap_or_default())
            }
            None => pq.to_string(),
        };
        let authority = app.authority.to_str().unwrap_or("localhost");
        let uri: Uri = format!("http://{authority}{target}")
            .parse()
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad request target"))?;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        let h = req.headers_mut();
        headers::remove_hop_by_hop(h);
        headers::set_identity(h, &allowed.id);
        headers::strip_cookies(h, &self.own_cookies);
        if allowed.id.by_authorization {
            h.remove(header::AUTHORIZATION);
        }
        if let Some(ip) = peer {
            let trusted = state.config.is_trusted_proxy(ip);
            headers::set_forwarded(h, ip, trusted, self.proto, host.clone());
        }
        let upstream_host = if app.config.preserve_host {
            host.unwrap_or_else(|| app.authority.clone())
        } else {
            app.authority.clone()
        };
        h.insert(header::HOST, upstream_host);
        Ok(())
    }

    /// Where a browser signs in for `app`: on gatehouse's public origin
    /// when the cookie is shared with the apps' hosts (`cookie_domain`),
    /// else on the app's own host, under the reserved prefix.
    fn login_base(&self, state: &AppState, app: &App) -> String {
        match (&state.config.public_origin, &state.config.cookie.domain) {
            (Some(o), Some(_)) => format!("{}/login", o.as_str().trim_end_matches('/')),
            _ if app.config.host.is_none() => "/login".to_string(),
            _ => format!("{}/login", self.settings.reserved_prefix),
        }
    }

    /// The answer when the upstream failed, counted per app.
    fn failed(
        &self,
        state: &AppState,
        index: usize,
        failure: Failure,
        html: bool,
    ) -> axum::response::Response {
        let name = self.apps.get(index).map_or("", |a| a.config.name.as_str());
        *state
            .metrics
            .proxy_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((index, failure.label()))
            .or_default() += 1;
        let status = match failure {
            Failure::BadGateway => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        };
        if html {
            let assets = state
                .config
                .public_origin
                .as_ref()
                .map(|o| o.origin().ascii_serialization());
            crate::server::pages::upstream::page(status, name, assets.as_deref())
        } else {
            let why = match failure {
                Failure::BadGateway => format!("the app {name} is not answering"),
                Failure::Timeout => format!("the app {name} did not answer in time"),
            };
            ApiError::new(status, why).into_response()
        }
    }

    /// The settings in force.
    /// The path prefix under which gatehouse's own routes answer on every
    /// host (`/.gatehouse`).
    pub fn reserved_prefix(&self) -> &str {
        &self.settings.reserved_prefix
    }

    pub fn settings(&self) -> &ProxyConfig {
        &self.settings
    }

    /// The app names, by index (for metrics).
    pub fn app_name(&self, index: usize) -> Option<&str> {
        self.apps.get(index).map(|a| a.config.name.as_str())
    }

    /// Places left under the app's `max_connections`.
    pub fn free_connections(&self, index: usize) -> Option<usize> {
        self.apps.get(index).map(|a| a.slots.available_permits())
    }
}
