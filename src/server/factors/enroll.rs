//! Enrolling and removing factors: the JSON API under `/api/v1/mfa`, and
//! the enrollment a pending sign-in must do first (`/login/enroll`) when a
//! factor is required and the user has none.
//!
//! Who may enroll: a pending sign-in marked for enrollment (it can do
//! nothing else), or a signed-in session with proof from the last
//! `[second_factor] recent_secs` (see [`crate::server::factors::proof`]: a second factor,
//! or for a user with none yet a recent sign-in or the password sent as
//! `"password"`). Removing a factor or regenerating recovery codes needs a
//! session that did a second factor within `recent_secs`; anything else
//! answers 403 naming what to do.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};

use crate::identity::recovery::RecoveryCodes;
use crate::identity::totp::TotpSecret;
use crate::server::authed::{Authed, lookup};
use crate::server::factors::{TOTP_PURPOSE, change, factors_of, open_totp, recent};
use crate::server::respond::{ApiError, user_agent};
use crate::server::state::AppState;
use crate::store::{
    EnrollerId, EventKind, FactorChange, FactorRefusal, FactorStore, Method, NewEvent,
    PendingSignIn, TokenHash, now_ms,
};

/// Who is enrolling.
pub enum Enroller {
    Session(Box<Authed>),
    /// A pending sign-in that must enroll before anything else.
    Pending(TokenHash, PendingSignIn),
}

impl Enroller {
    /// The request's session, else its pending enrollment. A pending
    /// sign-in enrolls only a user's first factor: once the user has one
    /// (enrolled since through another sign-in), it is refused here, and
    /// again inside the write (`FactorRefusal::NotFirstFactor`).
    pub async fn of(state: &AppState, headers: &HeaderMap) -> Result<Option<Enroller>, ApiError> {
        if let Some(a) = lookup(state, headers).await? {
            return Ok(Some(Enroller::Session(Box::new(a))));
        }
        let Some((h, p)) = crate::server::factors::pending::pending_of(state, headers)
            .await?
            .filter(|(_, p)| p.enroll)
        else {
            return Ok(None);
        };
        if factors_of(state, &p.user).await?.any() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                FactorRefusal::NotFirstFactor.to_string(),
            ));
        }
        Ok(Some(Enroller::Pending(h, p)))
    }

    pub fn user(&self) -> &str {
        match self {
            Enroller::Session(a) => &a.user.name,
            Enroller::Pending(_, p) => &p.user,
        }
    }

    /// How the store names this enroller (see [`EnrollerId`]).
    pub fn id(&self) -> EnrollerId {
        match self {
            Enroller::Session(a) => session_enroller(a),
            Enroller::Pending(h, _) => EnrollerId::Pending(h.0),
        }
    }
}

/// The store's name for a session adding a factor: its public id, which a
/// step-up keeps.
pub fn session_enroller(me: &Authed) -> EnrollerId {
    EnrollerId::Session(me.session.id.0)
}

pub async fn enroller(state: &AppState, headers: &HeaderMap) -> Result<Enroller, ApiError> {
    Enroller::of(state, headers)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// A signed-in session that did a second factor recently, else 403.
pub async fn recent_session(state: &AppState, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let me = lookup(state, headers)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if !recent(&state.config, &me, now_ms()) {
        return Err(crate::server::factors::proof::step_up_first(&state.config));
    }
    Ok(me)
}

/// Checks that `who` may start adding a factor: a pending sign-in that
/// must enroll may; a session needs proof ([`crate::server::factors::proof::prove`]), with
/// the password the request sent, if any.
pub async fn may_add(
    state: &AppState,
    who: &Enroller,
    password: Option<crate::server::guard::Password>,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Enroller::Session(me) = who else {
        return Ok(());
    };
    let set = factors_of(state, &me.user.name).await?;
    crate::server::factors::proof::prove(state, me, &set, password, ip, &user_agent(headers)).await
}

/// A fresh TOTP secret, sealed and stored as `user`'s enrollment begun by
/// `by` (replacing any other unconfirmed one).
pub async fn begin_totp(
    state: &AppState,
    user: &str,
    by: EnrollerId,
) -> Result<TotpSecret, ApiError> {
    let secret = TotpSecret::generate();
    let sealed = state.secrets.seal(TOTP_PURPOSE, user, secret.as_bytes());
    match change(state, user, FactorChange::BeginTotp { sealed, by }, None).await? {
        Ok(()) => Ok(secret),
        Err(r) => Err(ApiError::new(StatusCode::CONFLICT, r.to_string())),
    }
}

/// The secret `user` is enrolling through `by`, if any (to show it again).
/// A secret another session or sign-in began is never shown here.
pub async fn enrolling(
    state: &AppState,
    user: &str,
    by: EnrollerId,
) -> Result<Option<TotpSecret>, ApiError> {
    let set = factors_of(state, user).await?;
    match set.totp_enrollment {
        Some(e) if e.by == by => Ok(Some(open_totp(state, user, &e.sealed)?)),
        _ => Ok(None),
    }
}

/// The secret `user` is enrolling through `by`, or a fresh one: reloading
/// the page shows the same QR code.
pub async fn enrolling_or_new(
    state: &AppState,
    user: &str,
    by: EnrollerId,
) -> Result<TotpSecret, ApiError> {
    match enrolling(state, user, by).await? {
        Some(s) => Ok(s),
        None => begin_totp(state, user, by).await,
    }
}

/// Confirms `user`'s pending TOTP secret with `code`. Returns the recovery
/// codes when this first factor stored them (shown once).
pub async fn confirm_totp(
    state: &AppState,
    user: &str,
    by: EnrollerId,
    code: &str,
    ip: Option<IpAddr>,
    ua: Option<String>,
) -> Result<Option<RecoveryCodes>, ApiError> {
    let Some(secret) = enrolling(state, user, by).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            FactorRefusal::NoEnrollment.to_string(),
        ));
    };
    let step = secret
        .verify(code, now_ms() / 1000, None)
        .map_err(|_| ApiError::bad_request("Wrong code. Enter the 6 digits the app shows now."))?;
    let codes = RecoveryCodes::generate();
    let recovery = codes.hashes().into_iter().map(|h| h.0).collect();
    let event = NewEvent::now(EventKind::MfaEnrolled)
        .user(user.to_string())
        .ip(ip)
        .user_agent(ua)
        .detail("method", Method::Totp.as_str());
    let applied = state
        .store
        .change_factors(
            user,
            FactorChange::ConfirmTotp { step, recovery, by },
            Some(event),
            now_ms(),
        )
        .await
        .map_err(|e| ApiError::internal("enrolling failed", &e))?
        .map_err(|r| ApiError::new(StatusCode::CONFLICT, r.to_string()))?;
    // A Basic password of this user cached as enough must stop passing now.
    state.basic.clear();
    Ok(applied.recovery_set.then_some(codes))
}

/// New recovery codes for `user`, replacing the old ones.
pub async fn regenerate(
    state: &AppState,
    user: &str,
    ip: Option<IpAddr>,
    ua: Option<String>,
) -> Result<RecoveryCodes, ApiError> {
    let set = factors_of(state, user).await?;
    if !set.any() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "recovery codes back up a second factor: enroll one first",
        ));
    }
    let codes = RecoveryCodes::generate();
    let hashes = codes.hashes().into_iter().map(|h| h.0).collect();
    let event = NewEvent::now(EventKind::MfaEnrolled)
        .user(user.to_string())
        .ip(ip)
        .user_agent(ua)
        .detail("method", Method::Recovery.as_str());
    change(
        state,
        user,
        FactorChange::SetRecovery { hashes },
        Some(event),
    )
    .await?
    .map_err(|r| ApiError::new(StatusCode::CONFLICT, r.to_string()))?;
    Ok(codes)
}

/// Removes `user`'s TOTP factor.
pub async fn remove_totp(
    state: &AppState,
    user: &str,
    ip: Option<IpAddr>,
    ua: Option<String>,
) -> Result<(), ApiError> {
    let event = NewEvent::now(EventKind::MfaRemoved)
        .user(user.to_string())
        .ip(ip)
        .user_agent(ua)
        .detail("method", Method::Totp.as_str());
    change(state, user, FactorChange::RemoveTotp, Some(event))
        .await?
        .map_err(|r| ApiError::new(StatusCode::NOT_FOUND, r.to_string()))
}

/// Renames `user`'s passkey `id` (its public id).
pub async fn rename(state: &AppState, user: &str, id: &str, name: &str) -> Result<(), ApiError> {
    let id = passkey_id(id)?;
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("give the passkey a name"));
    }
    let name = crate::store::truncate(name.to_string(), crate::store::MAX_PASSKEY_NAME);
    change(state, user, FactorChange::RenamePasskey { id, name }, None)
        .await?
        .map_err(|r| ApiError::new(StatusCode::NOT_FOUND, r.to_string()))
}

/// Removes `user`'s passkey `id`.
pub async fn remove_passkey(
    state: &AppState,
    user: &str,
    id: &str,
    ip: Option<IpAddr>,
    ua: Option<String>,
) -> Result<(), ApiError> {
    let id = passkey_id(id)?;
    let event = NewEvent::now(EventKind::MfaRemoved)
        .user(user.to_string())
        .ip(ip)
        .user_agent(ua)
        .detail("method", Method::WebAuthn.as_str());
    change(state, user, FactorChange::RemovePasskey { id }, Some(event))
        .await?
        .map_err(|r| ApiError::new(StatusCode::NOT_FOUND, r.to_string()))
}

fn passkey_id(id: &str) -> Result<[u8; 16], ApiError> {
    id.parse::<crate::store::PublicId>()
        .map(|p| p.0)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such passkey"))
}
