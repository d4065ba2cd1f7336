//! The HTTP server. This file only assembles: the rooms below and the
//! router that maps every path to its handler.
//!
//! The core, which every room may use: [`state`] (the shared state),
//! [`respond`] (errors and answers), [`extract`], [`client`] (who is
//! asking), [`cookie`], [`authed`] (the signed-in request), [`csrf`],
//! [`password`] (the hashing pool), [`metrics`] (counters) and
//! [`activity`]. Above them, one room per capability, each importing only
//! rooms listed before it:
//!
//! - [`guard`]: bans, regulation, and the one password check;
//! - [`factors`]: second factors shared by sign-in and account pages;
//! - [`forward_auth`]: `/auth/verify`, the hot path;
//! - [`signin`]: the sign-in flow;
//! - [`account`]: what a signed-in person manages;
//! - [`oidc`]: the OpenID Connect provider;
//! - [`ops`]: the operator's side.
//!
//! [`pages`] and [`assets`] render; they import no handler. On top,
//! [`lifecycle`], [`dispatch`], [`tasks`], `conn` and `redirect` (the
//! plain-HTTP listener that sends clients to https) run the server.

pub mod account;
pub mod activity;
pub mod assets;
pub mod authed;
pub mod client;
pub mod conn;
pub mod cookie;
pub mod csrf;
mod dispatch;
mod error;
pub mod extract;
pub mod factors;
pub mod forward_auth;
pub mod guard;
pub mod lifecycle;
pub mod metrics;
pub mod mounted;
pub mod oidc;
pub mod ops;
pub mod pages;
pub mod password;
pub mod proxy;
mod redirect;
pub mod respond;
pub mod signin;
pub mod state;
pub mod tasks;

pub use activity::Activity;
pub use dispatch::answer_hot;
pub use error::ServerError;
pub use lifecycle::{Exit, Server};
pub use ops::reload::{Reloaded, Reloader};
pub use respond::{ApiError, ip_str, no_store, see_other, user_agent, wants_html, wants_json};
pub use state::AppState;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{delete, get, post};

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let login_limit = limits.login_body_bytes;
    let body_limit = limits.body_bytes;
    let login = Router::new()
        .route("/login", get(signin::form::form).post(signin::form::submit))
        .route("/login/second-factor", get(signin::step::page))
        .route("/login/totp", post(signin::step::totp))
        .route("/login/recovery", post(signin::step::recovery))
        .route("/login/passkey/start", post(signin::passkeys::step_start))
        .route("/login/passkey/finish", post(signin::passkeys::step_finish))
        .route(
            "/login/passkey/discover/start",
            post(signin::passkeys::discover_start),
        )
        .route(
            "/login/passkey/discover/finish",
            post(signin::passkeys::discover_finish),
        )
        .route(
            "/login/enroll",
            get(signin::enroll::page).post(signin::enroll::submit),
        )
        .layer(DefaultBodyLimit::max(login_limit));
    // The forward-auth check runs on every request to every protected app.
    // These two handlers read no body, change nothing and never wait on I/O
    // they do not bound themselves (one in-memory store read, atomics), so
    // they skip the layers that only matter for bodies, state-changing posts
    // and slow handlers: the CSRF guard, the body limits and the per-request
    // timer. They also skip the activity middleware (`/healthz` is not
    // activity; `verify` records its own) and the request trace layer, each
    // a boxed service and a boxed future per request.
    let hot = Router::new()
        .route("/auth/verify", get(forward_auth::verify::verify))
        .route("/healthz", get(ops::health::healthz));
    let rest = Router::new()
        .merge(login)
        .route("/", get(account::sessions::home))
        .route(
            "/logout",
            get(account::sessions::page_sign_out).post(account::sessions::logout),
        )
        .route("/api/v1/session", get(account::sessions::whoami))
        .route("/api/v1/sessions", get(account::sessions::list))
        .route(
            "/api/v1/sessions/{id}",
            delete(account::sessions::revoke_one),
        )
        .route(
            "/api/v1/sessions/revoke-others",
            post(account::sessions::revoke_others),
        )
        .route(
            "/api/v1/sessions/revoke-all",
            post(account::sessions::revoke_all),
        )
        .route("/sessions", get(account::sessions::page))
        .route(
            "/sessions/revoke-others",
            get(account::sessions::page_confirm_others).post(account::sessions::page_revoke_others),
        )
        .route("/sessions/revoke", post(account::sessions::page_revoke))
        .route("/api/v1/mfa", get(account::mfa::status))
        .route(
            "/api/v1/mfa/totp",
            post(account::mfa::api_begin_totp).delete(account::mfa::api_remove_totp),
        )
        .route(
            "/api/v1/mfa/totp/confirm",
            post(account::mfa::api_confirm_totp),
        )
        .route(
            "/api/v1/mfa/recovery-codes",
            post(account::mfa::api_regenerate),
        )
        .route(
            "/api/v1/mfa/passkeys/register/start",
            post(account::passkeys::register_start),
        )
        .route(
            "/api/v1/mfa/passkeys/register/finish",
            post(account::passkeys::register_finish),
        )
        .route(
            "/api/v1/mfa/passkeys/{id}",
            axum::routing::patch(account::mfa::api_rename_passkey)
                .delete(account::mfa::api_remove_passkey),
        )
        .route("/account/security", get(account::security::page))
        .route(
            "/account/security/passkeys/{id}/rename",
            post(account::security::rename_passkey),
        )
        .route(
            "/account/security/passkeys/{id}/remove",
            post(account::security::remove_passkey),
        )
        .route("/account/security/totp", post(account::security::begin))
        .route(
            "/account/security/totp/confirm",
            post(account::security::confirm),
        )
        .route(
            "/account/security/totp/remove",
            post(account::security::remove),
        )
        .route(
            "/account/security/recovery",
            post(account::security::new_codes),
        )
        .route(
            "/api/v1/tokens",
            get(account::tokens::list).post(account::tokens::create),
        )
        .route("/api/v1/tokens/{id}", delete(account::tokens::revoke))
        .route(
            "/tokens",
            get(account::tokens::page).post(account::tokens::page_create),
        )
        .route("/tokens/revoke", post(account::tokens::page_revoke))
        .route("/api/v1/audit", get(ops::audit::query))
        .route("/metrics", get(ops::metrics::render))
        .route("/robots.txt", get(assets::robots))
        .route("/security.txt", get(assets::security))
        .route("/.well-known/security.txt", get(assets::security))
        .route("/assets/style.css", get(assets::style))
        .route("/assets/icon.svg", get(assets::icon))
        .route("/assets/passkey.js", get(assets::passkey_js))
        .route("/favicon.ico", get(assets::icon))
        .merge(oidc::page_routes())
        .fallback(respond::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::csrf_guard,
        ))
        .layer(DefaultBodyLimit::max(body_limit));
    let rest = bounded(&state, rest, body_limit.max(login_limit));
    // The provider's endpoints that other sites call (apps' servers, and
    // public clients' scripts): the same bounds, without the cross-site
    // guard, which would refuse them (they authenticate the client instead).
    let machine = oidc::machine_routes().layer(DefaultBodyLimit::max(body_limit));
    let rest = rest.merge(bounded(&state, machine, body_limit));
    // HSTS on every answer a browser may see. The hot routes go without: their
    // answers are read by the proxy, not by browsers (see `answer_hot`).
    let hsts = state
        .config
        .hsts
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    let rest = match hsts {
        Some(v) => rest.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            v,
        )),
        None => rest,
    };
    hot.merge(rest).with_state(state)
}

/// `routes` with the bounds every handler that reads a body runs under: a
/// body limit of `body_bytes`, the request timeout, the activity record
/// and, at debug level (`RUST_LOG=tower_http=debug`), request spans.
fn bounded(state: &AppState, routes: Router<AppState>, body_bytes: usize) -> Router<AppState> {
    routes
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.activity.clone(),
            activity::track_activity,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[cfg(test)]
mod testing;
