//! Passkeys in the sign-in flow: as the second step (after the password,
//! or to step up) and alone (discoverable, user verification required).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::identity::webauthn::Passkeys;
use crate::server::client::ClientIp;
use crate::server::factors::factors_of;
use crate::server::factors::passkeys::{
    body, passkeys_for, stale_ceremony, started, taken, too_many_ceremonies,
};
use crate::server::guard::{admit, audit, regulate};
use crate::server::respond::{ApiError, user_agent};
use crate::server::signin::session::{SignIn, signed_in};
use crate::server::signin::step::{Proof, Stepper, attempt_with};
use crate::server::state::AppState;
use crate::store::{
    BanSubject, CeremonyStore, EventKind, FactorChange, FactorStore, Method, Methods, NewEvent,
    Purpose, now_ms,
};

// ---------------------------------------------------------- second step

/// `POST /login/passkey/start`: the second step with a passkey (a pending
/// sign-in, or a session stepping up).
pub async fn step_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let run = async {
        let who = Stepper::of(&state, &headers)
            .await?
            .ok_or_else(crate::server::factors::pending::no_sign_in)?;
        let pk = passkeys_for(&state, &headers)?;
        let set = factors_of(&state, who.user()).await?;
        let creds: Vec<Vec<u8>> = set.passkeys.iter().map(|p| p.credential.clone()).collect();
        let (options, st) = pk
            .start_authentication(&creds)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state
            .store
            .put_ceremony(Purpose::Step, who.user().to_string(), None, st, now_ms())
            .await
            .map_err(|e| ApiError::internal("keeping a passkey ceremony failed", &e))?;
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /login/passkey/finish` with `{credential, rd}`.
pub async fn step_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let who = Stepper::of(&state, &headers)
            .await?
            .ok_or_else(crate::server::factors::pending::no_sign_in)?;
        let entry = taken(&state, &headers, Purpose::Step).await?;
        if entry.user.as_deref() != Some(who.user()) {
            return Err(stale_ceremony());
        }
        let rd = crate::server::signin::redirect::bounded_rd(input.rd);
        let proof = Proof::Passkey {
            state: entry.state,
            response: input.credential,
        };
        // The script asks for JSON: the answer names where to go.
        attempt_with(&state, ip, &headers, &who, Method::WebAuthn, &proof, &rd).await
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

// ------------------------------------------------------ passkey alone

/// `POST /login/passkey/discover/start`: a sign-in with a passkey alone.
/// Anyone may start one, so each client has a quota of open ones
/// (`[second_factor] passkey_ceremonies_per_client`); past it, or when
/// every place is taken by clients under theirs, the answer is 429 with
/// `Retry-After` (see [`Ceremonies`]).
pub async fn discover_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let pk = passkeys_for(&state, &headers)?;
        let (options, st) = pk
            .start_discoverable()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let quota = state.config.second_factor.passkey_ceremonies_per_client;
        let token = state
            .store
            .put_anonymous_ceremony(ip, quota, st, now_ms())
            .await
            .map_err(|e| ApiError::internal("keeping a passkey ceremony failed", &e))?
            .map_err(too_many_ceremonies)?;
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /login/passkey/discover/finish` with `{credential, rd}`: the
/// passkey names its user; bans and the failure limit apply as for a
/// password, and the session records the passkey as its method (it is two
/// factors in one: the key and its PIN or biometric).
pub async fn discover_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let entry = taken(&state, &headers, Purpose::Discover).await?;
        let unknown = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "This passkey is not registered here.",
            )
        };
        let id = Passkeys::credential_id_of(&input.credential).ok_or_else(unknown)?;
        let owner = state
            .store
            .passkey_owner(&id)
            .await
            .map_err(|e| ApiError::internal("looking up the passkey failed", &e))?
            .ok_or_else(unknown)?;
        let (user, credentials) = state.user_for_login(&owner);
        let user = user.ok_or_else(unknown)?;
        let now = now_ms();
        let ua = user_agent(&headers);
        let mut subjects = vec![BanSubject::User(user.name.clone())];
        subjects.extend(ip.map(BanSubject::ip));
        let reservation = admit(&state, &subjects, true, &user.name, ip, &ua, now).await?;
        let set = factors_of(&state, &user.name).await?;
        let creds: Vec<Vec<u8>> = set.passkeys.iter().map(|p| p.credential.clone()).collect();
        let pk = passkeys_for(&state, &headers)?;
        let checked = pk.finish_discoverable(&entry.state, &input.credential, &user.name, &creds);
        state.metrics.second_step(Method::WebAuthn, checked.is_ok());
        let (cred_id, updated) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                state.metrics.login_failure.inc();
                tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user.name, method = "webauthn", "login failed");
                audit(
                    &state,
                    NewEvent::now(EventKind::MfaFailure)
                        .user(user.name.clone())
                        .ip(ip)
                        .user_agent(ua.clone())
                        .detail("method", Method::WebAuthn.as_str())
                        .detail("reason", "wrong"),
                )
                .await;
                regulate(&state, reservation, ip, now).await;
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
            }
        };
        let stored = set
            .passkeys
            .iter()
            .find(|p| p.credential_id == cred_id)
            .map(|p| p.credential.clone())
            .unwrap_or_default();
        let event = NewEvent::now(EventKind::MfaSuccess)
            .user(user.name.clone())
            .ip(ip)
            .user_agent(ua.clone())
            .detail("method", Method::WebAuthn.as_str())
            .detail("passkey_only", "true");
        crate::server::factors::change(
            &state,
            &user.name,
            FactorChange::UsePasskey {
                credential_id: cred_id,
                credential: updated.unwrap_or(stored),
            },
            Some(event),
        )
        .await?
        .map_err(|r| ApiError::new(StatusCode::UNAUTHORIZED, r.to_string()))?;
        let rd = crate::server::signin::redirect::bounded_rd(input.rd);
        let s = SignIn {
            user: &user,
            remember: false,
            ip,
            ua,
            rd: &rd,
        };
        let created = crate::server::signin::session::create(
            &state,
            &s,
            Methods::of(&[Method::WebAuthn]),
            credentials,
            now,
        )
        .await?;
        reservation.succeed(now).await;
        Ok(signed_in(
            &state, &headers, ip, &user.name, &created, false, &rd,
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}
