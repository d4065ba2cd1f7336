//! Where gatehouse's requests go: the hot path ([`answer_hot`]: `GET
//! /auth/verify`, `GET /healthz`), answered on the spot, then the router
//! (`crate::server::router`) for everything else. The connection layer
//! (`crate::server::conn`) calls these through its [`Dispatch`] trait.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::http::{Method, Request};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use hyper::body::Incoming;
use tower::Service;

use crate::server::conn::Dispatch;
use crate::server::forward_auth::verify;
use crate::server::ops::health;
use crate::server::state::AppState;

/// gatehouse's dispatch: the hot path, then the router.
#[derive(Clone)]
pub(crate) struct AppDispatch {
    /// For the hot path.
    state: AppState,
    /// Every route, with its layers.
    router: Router,
}

impl AppDispatch {
    pub(crate) fn new(state: AppState) -> Self {
        AppDispatch {
            router: crate::server::router(state.clone()),
            state,
        }
    }
}

impl Dispatch for AppDispatch {
    type Future = RouteFuture<Infallible>;

    fn answer_hot(&self, req: &Request<Incoming>, peer: SocketAddr) -> Option<Response> {
        answer_hot(&self.state, req, Some(peer.ip()))
    }

    fn route(&mut self, mut req: Request<Incoming>) -> Self::Future {
        // HTTP/2 names the site in `:authority`, not `Host`.
        crate::server::csrf::fill_host(&mut req);
        // The router is always ready (it has no back-pressure).
        self.router.call(req)
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
        "/healthz" => Some(health::health(state)),
        _ => None,
    }
}
