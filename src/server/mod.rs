//! The HTTP server: shared state, the router and the response helpers every
//! handler uses.
//!
//! [`AppState`] is one `Arc`, cloned per request. It holds the store (reads on
//! the request's own thread, no locks), the writer (all writes), the hashing
//! pool, the regulator and the metrics. The users form one [`Policy`] behind a
//! `RwLock<Arc<Policy>>` that a reload swaps whole, so a request sees one
//! consistent set. Under the same lock the reload moves the credential
//! generation of every changed user ([`CredentialGenerations`]), which the
//! writer checks before it creates a session: a login whose password was
//! checked against a replaced hash gets no session.

pub mod admin;

pub mod assets;

pub mod audit;

pub mod authed;
pub mod client;
pub mod cookie;
pub mod csrf;

pub mod bearer;

pub mod conn;

mod dispatch;

mod error;

pub mod extract;

pub mod factors;

pub mod first_start;

pub mod health;

pub mod lifecycle;

pub mod login;

pub mod metrics;

pub mod pages;

pub mod password;

pub mod redirect;

pub mod regulation;

pub mod rejections;

pub mod reload;
pub mod respond;

pub mod sessions;
pub mod state;

pub mod tasks;
#[cfg(test)]
mod testing;

pub mod tokens;

pub mod verify;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
pub use dispatch::answer_hot;
pub use error::ServerError;
pub use health::Activity;
pub use lifecycle::{Exit, Server};
pub use reload::{Reloaded, Reloader};
pub use respond::{ApiError, ip_str, no_store, see_other, user_agent, wants_html, wants_json};
pub use state::AppState;

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let login_limit = limits.login_body_bytes;
    let body_limit = limits.body_bytes;
    let timeout = limits.request_timeout;
    let login = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/login/second-factor", get(factors::step::page))
        .route("/login/totp", post(factors::step::totp))
        .route("/login/recovery", post(factors::step::recovery))
        .route("/login/passkey/start", post(factors::passkeys::step_start))
        .route(
            "/login/passkey/finish",
            post(factors::passkeys::step_finish),
        )
        .route(
            "/login/passkey/discover/start",
            post(factors::passkeys::discover_start),
        )
        .route(
            "/login/passkey/discover/finish",
            post(factors::passkeys::discover_finish),
        )
        .route(
            "/login/enroll",
            get(factors::enroll::page).post(factors::enroll::submit),
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
        .route("/auth/verify", get(verify::verify))
        .route("/healthz", get(health::healthz));
    let rest = Router::new()
        .merge(login)
        .route("/", get(home))
        .route("/logout", get(sessions::page_sign_out).post(login::logout))
        .route("/api/v1/session", get(sessions::whoami))
        .route("/api/v1/sessions", get(sessions::list))
        .route("/api/v1/sessions/{id}", delete(sessions::revoke_one))
        .route(
            "/api/v1/sessions/revoke-others",
            post(sessions::revoke_others),
        )
        .route("/api/v1/sessions/revoke-all", post(sessions::revoke_all))
        .route("/sessions", get(sessions::page))
        .route(
            "/sessions/revoke-others",
            get(sessions::page_confirm_others).post(sessions::page_revoke_others),
        )
        .route("/sessions/revoke", post(sessions::page_revoke))
        .route("/api/v1/mfa", get(factors::enroll::status))
        .route(
            "/api/v1/mfa/totp",
            post(factors::enroll::api_begin_totp).delete(factors::enroll::api_remove_totp),
        )
        .route(
            "/api/v1/mfa/totp/confirm",
            post(factors::enroll::api_confirm_totp),
        )
        .route(
            "/api/v1/mfa/recovery-codes",
            post(factors::enroll::api_regenerate),
        )
        .route(
            "/api/v1/mfa/passkeys/register/start",
            post(factors::passkeys::register_start),
        )
        .route(
            "/api/v1/mfa/passkeys/register/finish",
            post(factors::passkeys::register_finish),
        )
        .route(
            "/api/v1/mfa/passkeys/{id}",
            axum::routing::patch(factors::enroll::api_rename_passkey)
                .delete(factors::enroll::api_remove_passkey),
        )
        .route("/account/security", get(factors::account::page))
        .route(
            "/account/security/passkeys/{id}/rename",
            post(factors::account::rename_passkey),
        )
        .route(
            "/account/security/passkeys/{id}/remove",
            post(factors::account::remove_passkey),
        )
        .route("/account/security/totp", post(factors::account::begin))
        .route(
            "/account/security/totp/confirm",
            post(factors::account::confirm),
        )
        .route(
            "/account/security/totp/remove",
            post(factors::account::remove),
        )
        .route(
            "/account/security/recovery",
            post(factors::account::new_codes),
        )
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/tokens", get(tokens::page).post(tokens::page_create))
        .route("/tokens/revoke", post(tokens::page_revoke))
        .route("/api/v1/audit", get(audit::query))
        .route("/metrics", get(metrics::render))
        .route("/robots.txt", get(assets::robots))
        .route("/security.txt", get(assets::security))
        .route("/.well-known/security.txt", get(assets::security))
        .route("/assets/style.css", get(assets::style))
        .route("/assets/icon.svg", get(assets::icon))
        .route("/assets/passkey.js", get(assets::passkey_js))
        .route("/favicon.ico", get(assets::icon))
        .fallback(respond::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::csrf_guard,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            body_limit.max(login_limit),
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            health::track_activity,
        ))
        // Request spans and timings at debug level (`RUST_LOG=tower_http=debug`).
        .layer(tower_http::trace::TraceLayer::new_for_http());
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

/// `GET /`: the sessions page is gatehouse's home (it sends anonymous
/// visitors on to the login form).
async fn home() -> Response {
    see_other("/sessions")
}
