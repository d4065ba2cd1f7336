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

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::identity::recovery::RecoveryCodes;
use crate::identity::totp::TotpSecret;
use crate::server::authed::{Authed, lookup};
use crate::server::client::ClientIp;
use crate::server::factors::proof::ProofInput;
use crate::server::factors::step::{CodeInput, change, rd_of};
use crate::server::factors::{
    SignIn, TOTP_PURPOSE, complete, factors_of, open_totp, recent, signed_in,
};
use crate::server::pages;
use crate::server::respond::{ApiError, user_agent, wants_json};
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
        if let Some(a) = lookup(state, headers)? {
            return Ok(Some(Enroller::Session(Box::new(a))));
        }
        let Some((h, p)) = crate::server::factors::pending_of(state, headers)
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

async fn enroller(state: &AppState, headers: &HeaderMap) -> Result<Enroller, ApiError> {
    Enroller::of(state, headers)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// A signed-in session that did a second factor recently, else 403.
fn recent_session(state: &AppState, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let me = lookup(state, headers)?.ok_or_else(ApiError::unauthorized)?;
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
    password: Option<crate::server::login::Password>,
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

// ------------------------------------------------------------------ API

#[derive(serde::Deserialize)]
pub struct NameInput {
    name: String,
}

/// `PATCH /api/v1/mfa/passkeys/{id}` with `{"name"}`.
pub async fn api_rename_passkey(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::server::extract::Json(input): crate::server::extract::Json<NameInput>,
) -> Response {
    let run = async {
        let me = lookup(&state, &headers)?.ok_or_else(ApiError::unauthorized)?;
        rename(&state, &me.user.name, &id, &input.name).await
    };
    match run.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/v1/mfa/passkeys/{id}`: needs a recent second factor.
pub async fn api_remove_passkey(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let run = async {
        let me = recent_session(&state, &headers)?;
        remove_passkey(&state, &me.user.name, &id, ip, user_agent(&headers)).await
    };
    match run.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize)]
struct Status {
    user: String,
    totp: bool,
    totp_enrollment_started: bool,
    passkeys: Vec<PasskeyView>,
    recovery_codes_left: usize,
    required: bool,
}

#[derive(Serialize)]
struct PasskeyView {
    id: String,
    name: String,
    created_ms: u64,
    last_used_ms: Option<u64>,
}

/// `GET /api/v1/mfa`: what the caller has enrolled.
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let who = match enroller(&state, &headers).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let set = match factors_of(&state, who.user()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let required = state
        .user_for_login(who.user())
        .0
        .is_some_and(|u| crate::server::factors::required_for(&state.config, &u));
    Json(Status {
        user: who.user().to_string(),
        totp: set.totp.is_some(),
        totp_enrollment_started: set.totp_enrollment.is_some(),
        passkeys: set
            .passkeys
            .iter()
            .map(|p| PasskeyView {
                id: crate::store::PublicId(p.id).to_string(),
                name: p.name.clone(),
                created_ms: p.created_ms,
                last_used_ms: p.last_used_ms,
            })
            .collect(),
        recovery_codes_left: set.recovery.len(),
        required,
    })
    .into_response()
}

#[derive(Serialize)]
struct Begun {
    secret: String,
    otpauth_uri: String,
}

/// `POST /api/v1/mfa/totp`, with `{"password"}` when a session needs it:
/// starts TOTP enrollment.
pub async fn api_begin_totp(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let who = enroller(&state, &headers).await?;
        let input: ProofInput = crate::server::extract::optional_json_or_form(&state, req).await?;
        may_add(&state, &who, input.password, ip, &headers).await?;
        let secret = begin_totp(&state, who.user(), who.id()).await?;
        Ok::<_, ApiError>(Json(Begun {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(who.user()),
        }))
    };
    match run.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize)]
struct Confirmed<'a> {
    enrolled: &'a str,
    /// Shown once, when this first factor stored them.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<&'a [String]>,
}

/// `POST /api/v1/mfa/totp/confirm` with `{"code"}`: activates TOTP. For a
/// pending sign-in that had to enroll, this also signs it in.
pub async fn api_confirm_totp(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let input: CodeInput = match crate::server::extract::json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let run = async {
        let who = enroller(&state, &headers).await?;
        let ua = user_agent(&headers);
        let codes = confirm_totp(&state, who.user(), who.id(), &input.code, ip, ua).await?;
        let body = Json(Confirmed {
            enrolled: Method::Totp.as_str(),
            recovery_codes: codes.as_ref().map(|c| c.shown()),
        });
        match who {
            Enroller::Session(_) => Ok::<_, ApiError>(body.into_response()),
            Enroller::Pending(hash, p) => {
                let created = finish_enrollment(&state, &headers, hash, &p, ip).await?;
                // The session cookie of `signed_in`, with this body.
                let signed = signed_in(&state, &headers, ip, &p.user, &created, p.remember_me, "");
                let mut res = body.into_response();
                for v in signed.headers().get_all(axum::http::header::SET_COOKIE) {
                    res.headers_mut()
                        .append(axum::http::header::SET_COOKIE, v.clone());
                }
                Ok(res)
            }
        }
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Turns a pending sign-in that just enrolled TOTP into its session.
async fn finish_enrollment(
    state: &AppState,
    headers: &HeaderMap,
    hash: TokenHash,
    p: &PendingSignIn,
    ip: Option<IpAddr>,
) -> Result<crate::store::CreatedSession, ApiError> {
    let Some(user) = state.user_for_login(&p.user).0 else {
        return Err(ApiError::unauthorized());
    };
    let s = SignIn {
        user: &user,
        remember: p.remember_me,
        ip,
        ua: user_agent(headers),
        rd: "",
    };
    complete(state, hash, &s, Method::Totp)
        .await?
        .ok_or_else(crate::server::factors::no_sign_in)
}

/// `DELETE /api/v1/mfa/totp`.
pub async fn api_remove_totp(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let me = recent_session(&state, &headers)?;
        remove_totp(&state, &me.user.name, ip, user_agent(&headers)).await
    };
    match run.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize)]
struct Codes<'a> {
    recovery_codes: &'a [String],
}

/// `POST /api/v1/mfa/recovery-codes`: replaces the recovery codes.
pub async fn api_regenerate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let me = recent_session(&state, &headers)?;
        regenerate(&state, &me.user.name, ip, user_agent(&headers)).await
    };
    match run.await {
        Ok(codes) => Json(Codes {
            recovery_codes: codes.shown(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

// --------------------------------------------------- pending enrollment

/// `GET /login/enroll`: a pending sign-in that must enroll sees the QR
/// code of a fresh secret (the one it started, if any).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let rd = rd_of(query.as_deref());
    let run = async {
        let Some((hash, p)) = crate::server::factors::pending_of(&state, &headers)
            .await?
            .filter(|(_, p)| p.enroll)
        else {
            return Ok(crate::server::respond::see_other(
                &crate::server::factors::step::next_page(false, &rd),
            ));
        };
        let secret = enrolling_or_new(&state, &p.user, EnrollerId::Pending(hash.0)).await?;
        Ok::<_, ApiError>(pages::factors::enroll_totp(
            StatusCode::OK,
            &pages::factors::EnrollView {
                user: &p.user,
                secret: &secret,
                action: "/login/enroll",
                rd: &rd,
                error: None,
                required: true,
                passkeys: crate::server::factors::passkeys::available(&state, &headers),
            },
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /login/enroll` with `code`: confirms, signs in, shows the
/// recovery codes once with a way on to `rd`.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let input: CodeInput = match crate::server::extract::json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let rd = crate::server::factors::step::bounded_rd(input.rd.clone());
    let run = async {
        let Some((hash, p)) = crate::server::factors::pending_of(&state, &headers)
            .await?
            .filter(|(_, p)| p.enroll)
        else {
            return Ok(crate::server::respond::see_other(
                &crate::server::factors::step::next_page(false, &rd),
            ));
        };
        let by = EnrollerId::Pending(hash.0);
        let ua = user_agent(&headers);
        let codes = match confirm_totp(&state, &p.user, by, &input.code, ip, ua).await {
            Ok(c) => c,
            Err(e) if e.status == StatusCode::BAD_REQUEST && !wants_json(&headers) => {
                let secret = enrolling(&state, &p.user, by).await?;
                let Some(secret) = secret else { return Err(e) };
                return Ok(pages::factors::enroll_totp(
                    e.status,
                    &pages::factors::EnrollView {
                        user: &p.user,
                        secret: &secret,
                        action: "/login/enroll",
                        rd: &rd,
                        error: Some(&e.message),
                        required: true,
                        passkeys: crate::server::factors::passkeys::available(&state, &headers),
                    },
                ));
            }
            Err(e) => return Err(e),
        };
        let created = finish_enrollment(&state, &headers, hash, &p, ip).await?;
        let target = crate::server::redirect::safe_redirect(&state.config, &headers, &rd)
            .unwrap_or_else(|| "/".into());
        let signed = signed_in(&state, &headers, ip, &p.user, &created, p.remember_me, &rd);
        let mut res = pages::factors::recovery_codes(
            codes.as_ref().map(|c| c.shown()).unwrap_or(&[]),
            &target,
            Some(&p.user),
        );
        for v in signed.headers().get_all(axum::http::header::SET_COOKIE) {
            res.headers_mut()
                .append(axum::http::header::SET_COOKIE, v.clone());
        }
        Ok::<_, ApiError>(res)
    };
    run.await.unwrap_or_else(|e| e.into_response())
}
