//! The one step that turns a checked credential into a session: admit it
//! (a session at once, or a pending sign-in for a second step), record it,
//! settle the attempt's reservation, and answer with the cookie. The password
//! form, the second steps and passkeys all end here.

use std::net::IpAddr;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::UserEntry;
use crate::identity::signin::{self, AfterPassword, Factors};
use crate::server::cookie::{clear_host_only_cookie, cookie, cookie_hash, session_cookie};
use crate::server::factors::pending::{clear_pending, pending_cookie, pending_name};
use crate::server::factors::{factors_of, required_for};
use crate::server::guard::reservation::Reservation;
use crate::server::respond::{ApiError, see_other};
use crate::server::signin::redirect::{next_page, safe_redirect};
use crate::server::state::AppState;
use crate::store::{
    AuditStore, CreatedSession, CredentialCheck, EventKind, FactorStore, Method, Methods, NewEvent,
    NewSession, PendingSignIn, Revocation, RevokeReason, SessionStore, TokenHash, WriteError,
    now_ms,
};

/// A sign-in whose password was right.
pub struct SignIn<'a> {
    pub user: &'a UserEntry,
    pub remember: bool,
    pub ip: Option<IpAddr>,
    pub ua: Option<String>,
    /// Where to go afterwards, as the client sent it (checked on use).
    pub rd: &'a str,
}

/// Where a correct password leads: a session at once, or a pending
/// sign-in (a second step, or enrollment first). The reservation is settled
/// as a success only when a session is created: a right password does not
/// clear the failures of second steps, so guessing codes between correct
/// passwords still ends in a ban.
pub async fn after_password(
    state: &AppState,
    headers: &HeaderMap,
    s: SignIn<'_>,
    credentials: CredentialCheck,
    reservation: Reservation<'_>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let set = factors_of(state, &s.user.name).await?;
    let ttl = state.config.second_factor.pending_secs.saturating_mul(1000);
    let required = required_for(&state.config, s.user);
    let outcome = signin::after_password(
        &s.user.name,
        Factors::from(&set),
        required,
        s.remember,
        now,
        ttl,
    );
    let pending = match outcome {
        AfterPassword::Session(_) => {
            let created = create(state, &s, Methods::PASSWORD, credentials, now).await?;
            reservation.succeed(now).await;
            return Ok(signed_in(
                state,
                headers,
                s.ip,
                &s.user.name,
                &created,
                s.remember,
                s.rd,
            ));
        }
        AfterPassword::Pending(p) => p,
    };
    drop(reservation);
    let enroll = matches!(pending.need, signin::Need::Enrollment);
    let token = state
        .store
        .create_pending(
            PendingSignIn {
                user: s.user.name.clone(),
                enroll,
                remember_me: s.remember,
                created_ms: now,
                expires_ms: pending.expires_ms,
                ip: s.ip,
                user_agent: s.ua.clone(),
            },
            state.config.second_factor.max_pending_per_user,
        )
        .await
        .map_err(|e| ApiError::internal("starting the second step failed", &e))?;
    tracing::info!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(s.ip), user = ?s.user.name, enroll, "password accepted, second step pending");
    let methods: Vec<&str> = set.methods().iter().map(|m| m.as_str()).collect();
    let rd = safe_redirect(&state.config, headers, s.rd).unwrap_or_default();
    let next = next_page(enroll, &rd);
    let mut res = if crate::server::respond::wants_json(headers) {
        #[derive(Serialize)]
        struct Pending<'a> {
            second_factor_required: bool,
            enrollment_required: bool,
            methods: Vec<&'a str>,
            expires_ms: u64,
            next: &'a str,
        }
        Json(Pending {
            second_factor_required: true,
            enrollment_required: enroll,
            methods,
            expires_ms: pending.expires_ms,
            next: &next,
        })
        .into_response()
    } else {
        see_other(&next)
    };
    res.headers_mut()
        .append(header::SET_COOKIE, pending_cookie(&state.config, &token));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Creates a session for a sign-in done with `methods`, with its
/// `login.success` event; refused (nothing created, a 401) when the user's
/// credentials changed since the password was checked.
pub(crate) async fn create(
    state: &AppState,
    s: &SignIn<'_>,
    methods: Methods,
    credentials: CredentialCheck,
    now: u64,
) -> Result<CreatedSession, ApiError> {
    let created = state
        .store
        .create_session(
            new_session(state, s, methods, now),
            login_event(s, methods),
            Some(credentials),
        )
        .await;
    created.map_err(|e| credentials_error(state, s, e))
}

/// The session a sign-in creates.
fn new_session(state: &AppState, s: &SignIn<'_>, methods: Methods, now: u64) -> NewSession {
    let c = &state.config.session;
    NewSession {
        user: s.user.name.clone(),
        remember_me: s.remember,
        idle_ttl_ms: c.idle_ms,
        absolute_ttl_ms: if s.remember {
            c.remember_me_ms
        } else {
            c.absolute_ms
        },
        max_per_user: c.max_per_user,
        ip: s.ip,
        user_agent: s.ua.clone(),
        now_ms: now,
        methods,
    }
}

fn login_event(s: &SignIn<'_>, methods: Methods) -> NewEvent {
    NewEvent::now(EventKind::LoginSuccess)
        .user(s.user.name.clone())
        .ip(s.ip)
        .user_agent(s.ua.clone())
        .detail("methods", methods.names())
}

/// The answer to a failed session creation. A password that matched a
/// hash a reload has since replaced gets no session: not a guess, so not
/// counted and not a `login failed` line (fail2ban counts those).
fn credentials_error(state: &AppState, s: &SignIn<'_>, e: WriteError) -> ApiError {
    match e {
        WriteError::CredentialsChanged => {
            state.metrics.login_failure.inc();
            tracing::info!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(s.ip), user = ?s.user.name, "login refused: credentials changed during the check");
            let store = state.store.clone();
            let ev = NewEvent::now(EventKind::LoginFailure)
                .user(s.user.name.clone())
                .ip(s.ip)
                .user_agent(s.ua.clone())
                .detail("reason", "credentials_changed");
            tokio::spawn(async move {
                if let Err(e) = store.append(ev).await {
                    tracing::error!(error = %e, "audit append failed");
                }
            });
            ApiError::new(StatusCode::UNAUTHORIZED, crate::server::guard::FAILED)
        }
        e => ApiError::internal("creating a session failed", &e),
    }
}

/// Ends the pending sign-in `hash` and creates its session, done with the
/// password and `method`. `Ok(None)`: it ended meanwhile (expired, or
/// completed by a parallel request).
pub async fn complete(
    state: &AppState,
    hash: TokenHash,
    s: &SignIn<'_>,
    method: Method,
) -> Result<Option<CreatedSession>, ApiError> {
    let now = now_ms();
    let (_, credentials) = state.user_for_login(&s.user.name);
    let methods = Methods::PASSWORD.with(method);
    state
        .store
        .complete_sign_in(
            hash,
            new_session(state, s, methods, now),
            login_event(s, methods),
            Some(credentials),
        )
        .await
        .map_err(|e| credentials_error(state, s, e))
}

/// The answer that signs a browser in with `created`: the session cookie
/// (the pending one cleared), then a 303 to `rd` or, for JSON clients, the
/// user and session. The session the request came with, if any and not
/// this one, ends in the background: a token planted before sign-in never
/// becomes an authenticated one.
pub fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    user: &str,
    created: &CreatedSession,
    remember: bool,
    rd: &str,
) -> Response {
    signed_in_with(state, headers, ip, user, created, remember, rd, None)
}

/// [`signed_in`] after a recovery code, with the count of codes left: JSON
/// clients get it as `recovery_codes_left`, browsers a page that says it
/// (and where to make new ones) before going on to `rd`.
#[allow(clippy::too_many_arguments)]
pub fn signed_in_with(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    user: &str,
    created: &CreatedSession,
    remember: bool,
    rd: &str,
    recovery_left: Option<usize>,
) -> Response {
    if let Some(old) = cookie_hash(state, headers).filter(|h| *h != created.token.hash()) {
        let store = state.store.clone();
        let how = Revocation::new(RevokeReason::Logout, now_ms());
        tokio::spawn(async move {
            if let Err(e) = store.revoke_by_token(old, how).await {
                tracing::warn!(error = %e, "ending the replaced session failed");
            }
        });
    }
    state.metrics.login_success.inc();
    tracing::info!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user, methods = %created.session.methods.names(), "login succeeded");
    let s = &state.config.session;
    let max_age = remember.then_some(s.remember_me_ms / 1000);
    let target = safe_redirect(&state.config, headers, rd).unwrap_or_else(|| "/".into());
    let mut res = if crate::server::respond::wants_json(headers) {
        #[derive(Serialize)]
        struct LoginOk<'a> {
            user: &'a str,
            session: String,
            methods: Vec<Method>,
            redirect: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_codes_left: Option<usize>,
        }
        Json(LoginOk {
            user,
            session: created.session.id.to_string(),
            methods: created.session.methods.iter().collect(),
            redirect: &target,
            recovery_codes_left: recovery_left,
        })
        .into_response()
    } else if let Some(left) = recovery_left {
        crate::server::pages::factors::recovery_used(user, left, &target)
    } else {
        see_other(&target)
    };
    let h = res.headers_mut();
    if let Some(stale) = clear_host_only_cookie(&state.config) {
        h.append(header::SET_COOKIE, stale);
    }
    h.append(
        header::SET_COOKIE,
        session_cookie(&state.config, &created.token, max_age),
    );
    if cookie(headers, &pending_name(&state.config)).is_some() {
        h.append(header::SET_COOKIE, clear_pending(&state.config));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
