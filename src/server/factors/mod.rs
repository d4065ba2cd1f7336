//! Second factors, shared by the sign-in flow and the account pages: the
//! factors a user has and must have, TOTP secrets, the pending sign-in's
//! cookie, passkey ceremonies, the proof a session gives before it adds a
//! factor, and the changes themselves. Uses the core and [`guard`](super::guard).

pub mod enroll;
pub mod passkeys;
pub mod pending;
pub mod proof;
pub mod relying;
pub mod reset;

use axum::http::StatusCode;

use crate::config::{Config, UserEntry};
use crate::identity::totp::TotpSecret;
use crate::server::authed::Authed;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{FactorChange, FactorRefusal, FactorSet, FactorStore, NewEvent, now_ms};

/// The purpose TOTP secrets are sealed for (bound into the ciphertext).
pub const TOTP_PURPOSE: &str = "totp";

/// Whether `user` must have a second factor.
pub fn required_for(config: &Config, user: &UserEntry) -> bool {
    user.require_second_factor
        .unwrap_or(config.second_factor.required)
}

/// Whether `session` did a second factor recently enough to change factors:
/// strictly within `[second_factor] recent_secs` (see [`proof`]).
pub fn recent(config: &Config, me: &Authed, now: u64) -> bool {
    me.session
        .second_factor_ms
        .is_some_and(|t| proof::within(config.second_factor.recent_secs, t, now))
}

/// `user`'s factors.
pub async fn factors_of(state: &AppState, user: &str) -> Result<FactorSet, ApiError> {
    state
        .store
        .factors(user)
        .await
        .map_err(|e| ApiError::internal("reading second factors failed", &e))
}

/// Opens a sealed TOTP secret of `user`. A secret that the key in the data
/// directory cannot open (a restored backup without its key) is an error
/// that says so.
pub fn open_totp(state: &AppState, user: &str, sealed: &[u8]) -> Result<TotpSecret, ApiError> {
    state
        .secrets
        .open(TOTP_PURPOSE, user, sealed)
        .ok()
        .and_then(TotpSecret::from_bytes)
        .ok_or_else(|| {
            tracing::error!(user = ?user, "a stored TOTP secret cannot be opened with this data directory's key");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the authenticator app secret cannot be read on this server; an administrator can reset it",
            )
        })
}

/// Applies a factor change; `Ok(Err(_))` when refused.
pub async fn change(
    state: &AppState,
    user: &str,
    change: FactorChange,
    event: Option<NewEvent>,
) -> Result<Result<(), FactorRefusal>, ApiError> {
    state
        .store
        .change_factors(user, change, event, now_ms())
        .await
        .map(|r| r.map(|_| ()))
        .map_err(|e| ApiError::internal("updating second factors failed", &e))
}
