//! Registering a passkey: for a signed-in session (after proof, see
//! `factors::proof`) or for a pending sign-in that must enroll.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::identity::recovery::RecoveryCodes;
use crate::server::client::ClientIp;
use crate::server::factors::enroll::Enroller;
use crate::server::factors::factors_of;
use crate::server::factors::passkeys::{body, passkeys_for, stale_ceremony, started, taken};
use crate::server::factors::proof::ProofInput;
use crate::server::respond::{ApiError, user_agent};
use crate::server::signin::session::{SignIn, complete, signed_in};
use crate::server::state::AppState;
use crate::store::{
    CeremonyStore, EventKind, FactorChange, FactorStore, MAX_PASSKEY_NAME, Method, NewEvent,
    Passkey, PublicId, Purpose, now_ms, truncate,
};

// ------------------------------------------------------------ register

/// `POST /api/v1/mfa/passkeys/register/start`, with `{"password"}` when a
/// session needs it (see `proof`).
pub async fn register_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let who = Enroller::of(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let input: ProofInput = crate::server::extract::optional_json_or_form(&state, req).await?;
        let pk = passkeys_for(&state, &headers)?;
        crate::server::factors::enroll::may_add(&state, &who, input.password, ip, &headers).await?;
        let set = factors_of(&state, who.user()).await?;
        let existing: Vec<Vec<u8>> = set
            .passkeys
            .iter()
            .map(|p| p.credential_id.clone())
            .collect();
        let (options, st) = pk
            .start_registration(who.user(), who.user(), &existing)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state
            .store
            .put_ceremony(
                Purpose::Register,
                who.user().to_string(),
                Some(who.id()),
                st,
                now_ms(),
            )
            .await
            .map_err(|e| ApiError::internal("keeping a passkey ceremony failed", &e))?;
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /api/v1/mfa/passkeys/register/finish` with `{name, credential}`.
/// Answers `{"enrolled": "webauthn", "recovery_codes"?: [...], "redirect"}`;
/// a pending sign-in that had to enroll is signed in by it.
pub async fn register_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let who = Enroller::of(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let entry = taken(&state, &headers, Purpose::Register).await?;
        if entry.user.as_deref() != Some(who.user()) || entry.by != Some(who.id()) {
            return Err(stale_ceremony());
        }
        let pk = passkeys_for(&state, &headers)?;
        let (credential_id, credential) = pk
            .finish_registration(&entry.state, &input.credential)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let name = truncate(input.name.trim().to_string(), MAX_PASSKEY_NAME);
        let name = if name.is_empty() || name.chars().any(char::is_control) {
            "Passkey".to_string()
        } else {
            name
        };
        let codes = RecoveryCodes::generate();
        let event = NewEvent::now(EventKind::MfaEnrolled)
            .user(who.user().to_string())
            .ip(ip)
            .user_agent(user_agent(&headers))
            .detail("method", Method::WebAuthn.as_str())
            .detail("name", name.clone());
        let applied = state
            .store
            .change_factors(
                who.user(),
                FactorChange::AddPasskey {
                    passkey: Passkey {
                        id: PublicId::generate().0,
                        name,
                        credential_id,
                        credential,
                        created_ms: now_ms(),
                        last_used_ms: None,
                    },
                    recovery: codes.hashes().into_iter().map(|h| h.0).collect(),
                    by: who.id(),
                },
                Some(event),
                now_ms(),
            )
            .await
            .map_err(|e| ApiError::internal("registering the passkey failed", &e))?
            .map_err(|r| ApiError::new(StatusCode::CONFLICT, r.to_string()))?;
        // A Basic password of this user cached as enough must stop passing now.
        state.basic.clear();
        let codes = applied.recovery_set.then_some(codes);
        let mut answer = serde_json::json!({
            "enrolled": Method::WebAuthn.as_str(),
            "redirect": "/account/security",
        });
        if let Some(c) = &codes {
            answer["recovery_codes"] = serde_json::json!(c.shown());
        }
        match who {
            Enroller::Session(_) => Ok(Json(answer).into_response()),
            Enroller::Pending(hash, p) => {
                let Some(user) = state.user_for_login(&p.user).0 else {
                    return Err(ApiError::unauthorized());
                };
                let rd = input.rd.unwrap_or_default();
                let s = SignIn {
                    user: &user,
                    remember: p.remember_me,
                    ip,
                    ua: user_agent(&headers),
                    rd: &rd,
                };
                let created = complete(&state, hash, &s, Method::WebAuthn)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?;
                let signed = signed_in(&state, &headers, ip, &p.user, &created, p.remember_me, &rd);
                let to =
                    crate::server::signin::redirect::safe_redirect(&state.config, &headers, &rd);
                answer["redirect"] = Value::from(to.unwrap_or_else(|| "/".into()));
                let mut res = Json(answer).into_response();
                for v in signed.headers().get_all(header::SET_COOKIE) {
                    res.headers_mut().append(header::SET_COOKIE, v.clone());
                }
                Ok(res)
            }
        }
    };
    run.await.unwrap_or_else(|e| e.into_response())
}
