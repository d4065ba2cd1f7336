//! Where gatehouse's requests go: a request for one of the `[[apps]]` to
//! the built-in proxy (`crate::server::proxy`), before anything else; then
//! the hot path ([`answer_hot`]: `GET /auth/verify`, `GET /healthz`),
//! answered on the spot; then the router (`crate::server::router`) for
//! everything else, with gatehouse's reserved prefix (`/.gatehouse`)
//! removed. The connection layer (`crate::server::conn`) calls these
//! through its [`Dispatch`] trait.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::http::{HeaderValue, Method, Request, Uri, header};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use hyper::body::Incoming;
use tower::Service;

use crate::config::Route;
use crate::server::conn::{ConnHandle, Dispatch};
use crate::server::forward_auth::verify;
use crate::server::ops::health;
use crate::server::proxy::{Adopter, Proxy, ws};
use crate::server::state::AppState;

/// gatehouse's dispatch: the hot path, then the router.
#[derive(Clone)]
pub(crate) struct AppDispatch {
    /// For the hot path.
    state: AppState,
    /// Every route, with its layers.
    router: Router,
    /// The built-in proxy, when `[[apps]]` names any.
    proxy: Option<Arc<Proxy>>,
    /// `Strict-Transport-Security` for the apps' answers (`[hsts]`, over
    /// https): the router adds it to gatehouse's own.
    hsts: Option<HeaderValue>,
}

impl AppDispatch {
    pub(crate) fn new(state: AppState) -> Self {
        AppDispatch {
            router: crate::server::router(state.clone()),
            proxy: Proxy::new(&state.config),
            hsts: state
                .config
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            state,
        }
    }

    /// Where `req` goes; gatehouse's own routes when there is no proxy.
    fn route_of<B>(&self, req: &Request<B>) -> Route {
        self.proxy.as_ref().map_or(Route::Own, |p| p.route_of(req))
    }
}

/// The future of a routed request: the router's, or the proxy's. The
/// connection layer boxes it once per request, so the router's larger
/// variant costs no second allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Routed {
    Router(RouteFuture<Infallible>),
    Proxy(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for Routed {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin`: the router's future is, the proxy's is boxed.
        match self.get_mut() {
            Routed::Router(f) => Pin::new(f).poll(cx),
            Routed::Proxy(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

impl Dispatch for AppDispatch {
    type Future = Routed;

    fn answer_hot(&self, req: &Request<Incoming>, peer: SocketAddr) -> Option<Response> {
        // An app's host or prefix is the app's, `/healthz` included.
        if self.route_of(req) != Route::Own {
            return None;
        }
        answer_hot(&self.state, req, Some(peer.ip()))
    }

    fn route(&mut self, mut req: Request<Incoming>) -> Self::Future {
        // HTTP/2 names the site in `:authority`, not `Host`.
        crate::server::csrf::fill_host(&mut req);
        match (self.route_of(&req), &self.proxy) {
            (Route::App(i), Some(p)) => {
                let adopter = ws::is_upgrade(&req)
                    .then(|| req.extensions().get::<ConnHandle>().cloned())
                    .flatten()
                    .map(|h| Adopter {
                        draining: Box::pin(h.draining()),
                        adopt: Box::new(move |stream| h.adopt(stream)),
                    });
                let served = p.clone().serve(self.state.clone(), i, req, adopter);
                let hsts = self.hsts.clone();
                Routed::Proxy(Box::pin(async move {
                    let mut res = served.await;
                    // The host is gatehouse's to secure; an app that sends
                    // its own policy keeps it.
                    if let Some(v) = hsts {
                        res.headers_mut()
                            .entry(header::STRICT_TRANSPORT_SECURITY)
                            .or_insert(v);
                    }
                    res
                }))
            }
            (Route::Reserved(len), Some(p)) => {
                strip_reserved(&mut req, len);
                // The router is always ready (it has no back-pressure).
                let answer = self.router.call(req);
                let proxy = p.clone();
                Routed::Proxy(Box::pin(async move {
                    let Ok(res) = answer.await;
                    crate::server::mounted::under(proxy.reserved_prefix(), res).await
                }))
            }
            _ => Routed::Router(self.router.call(req)),
        }
    }
}

/// Removes the reserved prefix (its first `len` bytes) from the request's
/// path: `/.gatehouse/login?rd=x` becomes `/login?rd=x`.
fn strip_reserved<B>(req: &mut Request<B>, len: usize) {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let rest = pq.get(len..).unwrap_or("");
    let rest = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    if let Ok(uri) = rest.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

/// The answer to a request for one of the hot routes, made on the spot
/// without the router: `GET /auth/verify` and `GET /healthz` (exact paths, as
/// the router matches them). `None` for every other request, which goes to
/// the router; that has the same two routes too, for `HEAD` and the 405 of
/// other methods. Sparing the router its route lookup, per-request service
/// clone and boxed future matters only here, on the request every protected
/// page load makes.
pub fn answer_hot<B>(state: &AppState, req: &Request<B>, peer: Option<IpAddr>) -> Option<Response> {
    if req.method() != Method::GET {
        return None;
    }
    match req.uri().path() {
        // `None` (the router) only for a Basic password to hash.
        "/auth/verify" => verify::answer(state, req, peer),
        // A shared store is probed (awaited): the router answers.
        "/healthz" if state.store.is_local() => Some(health::health(state)),
        _ => None,
    }
}
