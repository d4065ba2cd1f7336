//! Proof that a session may add a factor. A factor outlives the session
//! that adds it (a passkey even signs in alone), so a stolen session must
//! not be able to add one.
//!
//! A session starts adding a factor (TOTP on the security page or through
//! `POST /api/v1/mfa/totp`, a passkey's `register/start`) only with proof
//! from the last `[second_factor] recent_secs`:
//!
//! - a second factor done in this session ([`recent`]). For a user who has
//!   a factor nothing else will do: the page sends the browser to the
//!   second step first, as removal does;
//! - for a user with no factor yet, the sign-in itself when that recent,
//!   or else the user's current password sent with the request, checked as
//!   the sign-in form checks one (`login::check_password`: bans, the
//!   failure limit, the hashing pool; a wrong one counts, is logged and is
//!   audited as a failed login, `via = add_factor`).
//!
//! A pending sign-in that must enroll is its own proof: it is at most
//! `pending_secs` old, right after the password. Finishing needs nothing
//! more: an unconfirmed TOTP secret is bound to the session or sign-in
//! that began it, and a passkey's `register/finish` to its start's
//! ceremony (and enroller).

use std::net::IpAddr;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::config::Config;
use crate::server::authed::Authed;
use crate::server::guard::{Password, PasswordCheck, check_password};
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{FactorSet, now_ms};

/// The `via` of the `login.failure` a wrong password here records.
pub const VIA: &str = "add_factor";

/// What a session still needs before it may start adding a factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: a recent second factor, or (no factor yet) a recent sign-in.
    Nothing,
    /// The user has a factor: a second factor in this session first.
    SecondFactor,
    /// The user has no factor, and the sign-in is not recent: the password.
    Password,
}

/// What `me` needs before adding a factor to `set` at `now`.
pub fn needs(config: &Config, me: &Authed, set: &FactorSet, now: u64) -> Needs {
    needs_for(
        config.second_factor.recent_secs,
        me.session.created_ms,
        me.session.second_factor_ms,
        set.any(),
        now,
    )
}

/// The rule of [`needs`], on plain values: a session signed in at
/// `created_ms` that last did a second factor at `second_factor_ms`, of a
/// user who has a factor or not. "Recent" is strictly within
/// `recent_secs`, so `0` makes nothing recent.
pub fn needs_for(
    recent_secs: u64,
    created_ms: u64,
    second_factor_ms: Option<u64>,
    has_factor: bool,
    now: u64,
) -> Needs {
    if second_factor_ms.is_some_and(|t| within(recent_secs, t, now)) {
        Needs::Nothing
    } else if has_factor {
        Needs::SecondFactor
    } else if within(recent_secs, created_ms, now) {
        Needs::Nothing
    } else {
        Needs::Password
    }
}

/// Whether `then` is strictly within `recent_secs` before `now`.
pub fn within(recent_secs: u64, then: u64, now: u64) -> bool {
    now.saturating_sub(then) < recent_secs.saturating_mul(1000)
}

/// `recent_secs` in words, for messages.
pub fn recent_words(recent_secs: u64) -> String {
    match recent_secs {
        1 => "1 second".into(),
        s if s >= 60 && s % 60 == 0 => match s / 60 {
            1 => "1 minute".into(),
            m => format!("{m} minutes"),
        },
        s => format!("{s} seconds"),
    }
}

/// The refusal for a session that must do a second factor first.
pub fn step_up_first(config: &Config) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "confirm with a second factor first (POST /login/totp or /login/recovery, or the page /login/second-factor), then try again within {}",
            recent_words(config.second_factor.recent_secs)
        ),
    )
}

/// The body of a request that starts adding a factor: the current
/// password, when the session needs it. `Debug` never prints it.
#[derive(Deserialize, Default, Debug)]
pub struct ProofInput {
    #[serde(default)]
    pub password: Option<Password>,
}

/// Checks that `me` may start adding a factor to `set`, with `password`
/// when the request sent one (ignored when not needed). Refusals: 403
/// naming what to send (a second factor first; the current password,
/// missing or wrong), 429 while banned or at the failure limit, 503 when
/// hashing is busy, 400 for an overlong password.
pub async fn prove(
    state: &AppState,
    me: &Authed,
    set: &FactorSet,
    password: Option<Password>,
    ip: Option<IpAddr>,
    ua: &Option<String>,
) -> Result<(), ApiError> {
    match needs(&state.config, me, set, now_ms()) {
        Needs::Nothing => Ok(()),
        Needs::SecondFactor => Err(step_up_first(&state.config)),
        Needs::Password => {
            let Some(password) = password.filter(|p| !p.is_empty()) else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "you signed in more than {} ago: send your current password as \"password\" to add a second factor",
                        recent_words(state.config.second_factor.recent_secs)
                    ),
                ));
            };
            if password.too_long() {
                return Err(ApiError::bad_request("password too long"));
            }
            match check_password(state, &me.user.name, password, ip, ua, Some(VIA)).await? {
                // Released, not settled as a success: this is no sign-in,
                // and it forgets no failures.
                PasswordCheck::Right(_, _, reservation) => {
                    drop(reservation);
                    Ok(())
                }
                PasswordCheck::Wrong => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Wrong password. Enter the password you sign in with.",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_session_needs_to_add_a_factor() {
        let now = 1_000_000;
        let rule = |created, second, has| needs_for(300, created, second, has, now);
        // A fresh sign-in adds the first factor; later, the password.
        assert_eq!(rule(now - 1_000, None, false), Needs::Nothing);
        assert_eq!(rule(now - 299_999, None, false), Needs::Nothing);
        assert_eq!(rule(now - 300_000, None, false), Needs::Password);
        // With a factor, only a recent second factor in the session does,
        // however fresh the sign-in.
        assert_eq!(rule(now - 1_000, None, true), Needs::SecondFactor);
        assert_eq!(rule(0, Some(now - 299_999), true), Needs::Nothing);
        assert_eq!(rule(0, Some(now - 300_000), true), Needs::SecondFactor);
        // A recent second factor also does for a user with none left.
        assert_eq!(rule(0, Some(now - 1), false), Needs::Nothing);
        // 0: nothing is recent, not even this millisecond.
        assert_eq!(needs_for(0, now, None, false, now), Needs::Password);
        assert_eq!(needs_for(0, now, Some(now), true, now), Needs::SecondFactor);
    }

    #[test]
    fn recent_secs_in_words() {
        for (secs, words) in [
            (0, "0 seconds"),
            (1, "1 second"),
            (45, "45 seconds"),
            (60, "1 minute"),
            (90, "90 seconds"),
            (300, "5 minutes"),
        ] {
            assert_eq!(recent_words(secs), words);
        }
    }
}
