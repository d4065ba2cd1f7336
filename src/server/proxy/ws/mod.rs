//! WebSocket upgrades through the proxy, and the relay of an open socket.
//!
//! At the upgrade: the request passed the access check like any other; its
//! `Origin`, when sent, must be the app's own origin (else 403: a cookie
//! for `cookie_domain` would otherwise let a page on another subdomain open
//! sockets as the user); a place under `max_upgraded` is taken (else 503);
//! the upstream is asked on a connection of its own (outside the pool and
//! its `max_connections`), within the connect and response bounds. Only
//! when it answers 101 does the client get its 101, with the upstream's
//! accept key and protocol; `Sec-WebSocket-Extensions` is never offered
//! upstream, so both sides speak plain frames that gatehouse can read.
//!
//! The relay runs inside the client's connection task (the [`Adopter`]
//! the dispatch lends: it keeps the connection's slots and sees the
//! drain). It moves messages
//! one at a time, each side read into a 4 KiB buffer and written without
//! buffering more than the message at hand, so a slow side slows the
//! other. Pings are answered on each hop by tungstenite and not relayed.
//! gatehouse closes a socket itself, and records `proxy.closed`, when:
//! - its session ends (signed out, revoked, expired, its user removed):
//!   1008 to the client. The session is looked up again after each commit
//!   of the store (at most every [`CHECK_AT_MOST_EVERY`]), at its deadline,
//!   and every `ws_recheck_secs`;
//! - the server drains: 1001;
//! - no message moved either way for `ws_idle_secs`: 1001.
//!
//! A socket opened with an access token or through a bypass rule has no
//! session to watch; it ends with its connection, the drain or the idle
//! bound.

mod relay;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use axum::response::IntoResponse;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use relay::Relay;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::server::forward_auth::verify::Allowed;
use crate::server::proxy::{Adopter, Failure, Proxy, headers, upstream};
use crate::server::respond::{ApiError, wants_html};
use crate::server::state::AppState;

/// A burst of commits costs each open socket at most one lookup per this.
pub const CHECK_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// Largest message relayed (and so the most one socket buffers).
const MAX_MESSAGE: usize = 16 << 20;

/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Whether `req` asks for a WebSocket (an HTTP/1.1 upgrade).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.version() == Version::HTTP_11
        && h.get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// tungstenite's buffers for a relayed socket: small reads, no write
/// buffering beyond the message being written.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// The answer to an allowed WebSocket upgrade for app `index`.
pub async fn upgrade(
    proxy: Arc<Proxy>,
    state: AppState,
    index: usize,
    mut req: Request<Incoming>,
    allowed: Allowed,
    adopter: Adopter,
    peer: Option<IpAddr>,
) -> axum::response::Response {
    let Some(app) = proxy.apps.get(index) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let host = req.headers().get(header::HOST).cloned();
    let html = wants_html(req.headers());
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let own = format!(
            "{}://{}",
            proxy.proto,
            host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("")
        );
        if !origin.as_bytes().eq_ignore_ascii_case(own.as_bytes()) {
            tracing::info!(app = %app.config.name, origin = ?origin, "WebSocket from another origin refused");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "a WebSocket may be opened only by the app's own pages",
            )
            .into_response();
        }
    }
    let Ok(place) = proxy.upgraded.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open WebSockets; try again later",
        )
        .into_response();
    };
    // Taken before the request is rewritten: hyper hands the client's
    // socket over through this once the 101 is sent.
    let client_upgrade = hyper::upgrade::on(&mut req);
    let protocol = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION).cloned();
    if let Err(e) = proxy.rewrite(&state, app, &mut req, &allowed, peer, host) {
        return e.into_response();
    }
    // The upstream connection is this request's own: origin-form target.
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_default();
    *req.uri_mut() = target;
    let h = req.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    for (name, v) in [
        (header::SEC_WEBSOCKET_PROTOCOL, protocol),
        (header::SEC_WEBSOCKET_KEY, key),
        (header::SEC_WEBSOCKET_VERSION, version),
    ] {
        if let Some(v) = v {
            h.insert(name, v);
        }
    }
    let req = req.map(|_| Empty::<Bytes>::new());
    let settings = &proxy.settings;
    let io = match upstream::connect(&app.config.upstream, None, settings.connect_timeout).await {
        Ok(io) => io,
        Err(e) => {
            tracing::info!(app = %app.config.name, error = %e, "upstream WebSocket connect failed");
            let f = match e {
                upstream::ConnectError::Timeout => Failure::Timeout,
                upstream::ConnectError::Io(_) => Failure::BadGateway,
            };
            return proxy.failed(&state, index, f, html);
        }
    };
    let exchanged = timeout(settings.response_timeout, exchange(io, req)).await;
    let (upstream_headers, upstream_io) = match exchanged {
        Ok(Ok(Exchanged::Switched { headers, upgraded })) => (headers, upgraded),
        Ok(Ok(Exchanged::Refused(status, mut headers))) => {
            // The app said no (a 403, a 404): its answer, without a body,
            // since its connection is not kept.
            headers::remove_hop_by_hop(&mut headers);
            headers::strip_set_cookies(&mut headers, &proxy.own_cookies);
            headers.remove(header::CONTENT_LENGTH);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            return r;
        }
        Ok(Err(e)) => {
            tracing::info!(app = %app.config.name, error = %e, "upstream WebSocket upgrade failed");
            return proxy.failed(&state, index, Failure::BadGateway, html);
        }
        Err(_) => {
            tracing::info!(app = %app.config.name, "upstream WebSocket upgrade not answered in time");
            return proxy.failed(&state, index, Failure::Timeout, html);
        }
    };
    let relay = Relay {
        state: state.clone(),
        app: app.config.name.clone(),
        idle: settings.ws_idle,
        recheck: settings.ws_recheck,
        session: allowed.session,
        token: allowed.token,
        user: allowed.user,
        ip: peer,
    };
    let draining = adopter.draining;
    let head_wait = settings.response_timeout;
    let adopted = (adopter.adopt)(Box::pin(async move {
        // Held until the relay ends: this socket's place under `max_upgraded`.
        let _place = place;
        let client = match timeout(head_wait, client_upgrade).await {
            Ok(Ok(c)) => c,
            _ => return,
        };
        relay.run(client, upstream_io, draining).await;
    }));
    if !adopted {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL] {
        if let Some(v) = upstream_headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    r
}

/// Why the upstream's side of an upgrade failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("the upstream closed the connection before answering")]
    Closed,
}

/// The upstream's answer to an upgrade.
enum Exchanged {
    /// 101: its headers, and the upgraded connection.
    Switched {
        headers: axum::http::HeaderMap,
        upgraded: Upgraded,
    },
    /// Any other answer: its status and headers.
    Refused(StatusCode, axum::http::HeaderMap),
}

/// Sends the upgrade request on `io` and, on a 101, takes the upgraded
/// connection. Runs within the caller's time bound; the connection's own
/// future is driven here, never spawned.
async fn exchange(
    io: upstream::Held,
    req: Request<Empty<Bytes>>,
) -> Result<Exchanged, ExchangeError> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let mut conn = conn.with_upgrades();
    // The sender is ready only once the connection's future has run.
    let send = async {
        sender.ready().await?;
        sender.send_request(req).await
    };
    let mut send = std::pin::pin!(send);
    // On a 101 the connection's future ends as soon as it has handed the
    // response and the socket over: the response is then still to be
    // taken from the sender.
    let mut conn_done = false;
    let res = tokio::select! {
        r = &mut send => r?,
        r = &mut conn => {
            r?;
            conn_done = true;
            send.await.map_err(|_| ExchangeError::Closed)?
        }
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, _) = res.into_parts();
        return Ok(Exchanged::Refused(parts.status, parts.headers));
    }
    let headers = res.headers().clone();
    let upgraded = if conn_done {
        hyper::upgrade::on(res).await
    } else {
        let (upgraded, done) = tokio::join!(hyper::upgrade::on(res), conn);
        done?;
        upgraded
    };
    Ok(Exchanged::Switched {
        headers,
        upgraded: upgraded?,
    })
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;
