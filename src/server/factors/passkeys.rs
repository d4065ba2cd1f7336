//! Passkey ceremonies over HTTP, shared by registration (`account`) and
//! sign-in (`signin`): the relying party, the ceremony cookie, and taking a
//! ceremony at its finish.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::identity::webauthn::Passkeys;
use crate::server::cookie::cookie;
use crate::server::factors::relying::{NoParty, party_for};
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{Busy, CEREMONY_MS, Ceremony, CeremonyStore, Purpose, SessionToken, now_ms};

/// The relying party for this request, if passkeys can be used here: for
/// the host the browser is on (see [`party_for`]).
pub fn passkeys_for(state: &AppState, headers: &HeaderMap) -> Result<Arc<Passkeys>, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    party_for(&state.config, &state.relying, host).map_err(|no| match no {
        NoParty::Unusable(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        NoParty::Elsewhere => ApiError::bad_request(
            "passkeys need public_origin on https, an app's own host over https, or localhost",
        ),
    })
}

/// Whether pages should offer passkeys for this request.
pub fn available(state: &AppState, headers: &HeaderMap) -> bool {
    passkeys_for(state, headers).is_ok()
}

pub fn cookie_name(state: &AppState) -> String {
    format!("{}_webauthn", state.config.cookie.name)
}

/// The options answer with the ceremony's cookie.
pub fn started(state: &AppState, token: &SessionToken, options: Value) -> Response {
    let mut c = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(state),
        token.expose(),
        CEREMONY_MS / 1000
    );
    if state.config.cookie.secure {
        c.push_str("; Secure");
    }
    let mut res = Json(options).into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Takes the request's ceremony of `purpose`, once.
pub async fn taken(
    state: &AppState,
    headers: &HeaderMap,
    purpose: Purpose,
) -> Result<Ceremony, ApiError> {
    let Some(token) = cookie(headers, &cookie_name(state)).and_then(SessionToken::parse) else {
        return Err(stale_ceremony());
    };
    state
        .store
        .take_ceremony(token.hash(), purpose, now_ms())
        .await
        .map_err(|e| ApiError::internal("taking a passkey ceremony failed", &e))?
        .ok_or_else(stale_ceremony)
}

/// The answer for a finish whose ceremony is gone, used, or another's.
pub fn stale_ceremony() -> ApiError {
    ApiError::bad_request("this passkey request is no longer valid; please start again")
}

/// A finish request: the browser's answer, and for registrations a name.
#[derive(Deserialize)]
pub struct Finish {
    /// The passkey's name (registrations).
    #[serde(default)]
    pub name: String,
    /// The browser's answer to the ceremony.
    pub credential: Value,
    /// Where to go afterwards (sign-ins).
    #[serde(default)]
    pub rd: Option<String>,
}

pub async fn body(state: &AppState, req: Request) -> Result<Finish, ApiError> {
    crate::server::extract::json_or_form(state, req).await
}

/// 429 for a passkey sign-in that cannot start now ([`Busy`]).
pub fn too_many_ceremonies(busy: Busy) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many passkey sign-ins in progress; try again shortly",
    )
    .retry_after(busy.retry_after_ms.div_ceil(1000).max(1))
}
