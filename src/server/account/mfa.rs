//! The JSON API of second factors, `/api/v1/mfa`: status, TOTP, recovery
//! codes and passkeys, for a signed-in session or a pending sign-in that must
//! enroll.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::authed::lookup;
use crate::server::client::ClientIp;
use crate::server::factors::enroll::{
    Enroller, begin_totp, confirm_totp, enroller, may_add, recent_session, regenerate,
    remove_passkey, remove_totp, rename,
};
use crate::server::factors::factors_of;
use crate::server::factors::proof::ProofInput;
use crate::server::respond::{ApiError, user_agent};
use crate::server::signin::enroll::finish_enrollment;
use crate::server::signin::session::signed_in;
use crate::server::signin::step::CodeInput;
use crate::server::state::AppState;
use crate::store::Method;

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
        let me = lookup(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
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
        let me = recent_session(&state, &headers).await?;
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

/// `DELETE /api/v1/mfa/totp`.
pub async fn api_remove_totp(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let me = recent_session(&state, &headers).await?;
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
        let me = recent_session(&state, &headers).await?;
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
