//! The pending sign-in's cookie: a correct password waiting for its second
//! step (or its enrollment) is held under `<cookie_name>_pending`, host-only,
//! for `[second_factor] pending_secs`. No session lookup ever sees it.

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::Config;
use crate::server::cookie::cookie;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{FactorStore, PendingSignIn, SessionToken, TokenHash, now_ms};

/// The answer for a second step or an enrollment with no pending sign-in
/// (it expired, or a parallel request used it).
pub fn no_sign_in() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "no sign-in in progress: it expired or was used; sign in again",
    )
}

/// Name of the pending sign-in cookie.
pub fn pending_name(config: &Config) -> String {
    format!("{}_pending", config.cookie.name)
}

/// `Set-Cookie` for a pending sign-in: host-only, for its lifetime.
pub fn pending_cookie(config: &Config, token: &SessionToken) -> HeaderValue {
    let mut c = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        pending_name(config),
        token.expose(),
        config.second_factor.pending_secs
    );
    if config.cookie.secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie built from validated parts")
}

/// `Set-Cookie` that removes the pending cookie.
pub fn clear_pending(config: &Config) -> HeaderValue {
    let mut c = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        pending_name(config)
    );
    if config.cookie.secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie built from validated parts")
}

/// The hash of the request's pending cookie, if well formed.
pub fn pending_hash(state: &AppState, headers: &HeaderMap) -> Option<TokenHash> {
    cookie(headers, &pending_name(&state.config))
        .and_then(SessionToken::parse)
        .map(|t| t.hash())
}

/// The request's live pending sign-in, with its hash.
pub async fn pending_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(TokenHash, PendingSignIn)>, ApiError> {
    let Some(hash) = pending_hash(state, headers) else {
        return Ok(None);
    };
    match state.store.pending(hash, now_ms()).await {
        Ok(p) => Ok(p.map(|p| (hash, p))),
        Err(e) => Err(ApiError::internal("reading the sign-in failed", &e)),
    }
}
