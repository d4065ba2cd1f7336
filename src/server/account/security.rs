//! The security page (`/account/security`): a signed-in user's factors,
//! and the plain forms that enroll, remove and regenerate them. Removing or
//! regenerating needs a second factor within `[second_factor]
//! recent_secs`; an older session is sent to the second-step page first,
//! which brings it back here. So does adding one for a user who has a
//! factor; a user with none yet whose sign-in is older than `recent_secs`
//! types the current password into the form instead (see `proof`).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::identity::totp::TotpSecret;
use crate::server::authed::Authed;
use crate::server::client::ClientIp;
use crate::server::factors::enroll::{
    confirm_totp, enrolling, enrolling_or_new, regenerate, remove_totp, session_enroller,
};
use crate::server::factors::proof::{Needs, ProofInput, needs, prove};
use crate::server::factors::{factors_of, recent};
use crate::server::pages;
use crate::server::respond::{ApiError, see_other, user_agent};
use crate::server::signin::redirect::next_page;
use crate::server::signin::step::CodeInput;
use crate::server::state::AppState;
use crate::store::{OidcStore, now_ms};

const HERE: &str = "/account/security";

/// `GET /account/security`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let me = match crate::server::authed::lookup(&state, &headers).await {
        Ok(Some(me)) => me,
        Ok(None) => return see_other("/login?rd=%2Faccount%2Fsecurity"),
        Err(e) => return e.into_response(),
    };
    let notice = query
        .as_deref()
        .and_then(|q| q.strip_prefix("notice="))
        .and_then(pages::factors::Notice::from_code);
    show(&state, &headers, &me, notice, None).await
}

/// The "Connected apps" section: the apps `user` allowed or signed in to,
/// when the provider has clients (a failed read leaves the section out).
async fn connected_apps(state: &AppState, user: &str, now: u64) -> Option<maud::Markup> {
    if state.with_policy(|p| p.clients().is_empty()) {
        return None;
    }
    let apps = match state.store.connected_apps(user, now).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing connected apps failed");
            return None;
        }
    };
    let names: Vec<String> = state.with_policy(|p| {
        apps.iter()
            .map(|a| {
                p.client(&a.client)
                    .map_or_else(|| a.client.clone(), |c| c.name.clone())
            })
            .collect()
    });
    let rows: Vec<pages::oidc::AppRow<'_>> = apps
        .iter()
        .zip(&names)
        .map(|(a, name)| pages::oidc::AppRow {
            id: &a.client,
            name,
            consented: a.consent.is_some(),
            sessions: a.sessions.len(),
            last_issued_ms: a.last_issued_ms,
        })
        .collect();
    Some(pages::oidc::connected_apps(&rows, now))
}

/// The page, with `refused` (an attempt to add a factor) said on it.
async fn show(
    state: &AppState,
    headers: &HeaderMap,
    me: &Authed,
    notice: Option<pages::factors::Notice>,
    refused: Option<&ApiError>,
) -> Response {
    let set = match factors_of(state, &me.user.name).await {
        Ok(set) => set,
        Err(e) => return e.into_response(),
    };
    let now = now_ms();
    let mut res = pages::factors::security(
        refused.map_or(StatusCode::OK, |e| e.status),
        &pages::factors::SecurityView {
            user: &me.user.name,
            set: &set,
            required: crate::server::factors::required_for(&state.config, &me.user),
            recent: recent(&state.config, me, now),
            password_to_add: needs(&state.config, me, &set, now) == Needs::Password,
            notice,
            error: refused.map(|e| e.message.as_str()),
            passkeys: crate::server::factors::passkeys::available(state, headers),
            apps: connected_apps(state, &me.user.name, now).await,
        },
    );
    if let Some(s) = refused.and_then(|e| e.retry_after) {
        res.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, s.into());
    }
    res
}

/// `POST /account/security/totp`, with the form field `password` when the
/// page asks for it: a fresh secret and its QR code. A session that must
/// do a second factor first goes to the second step; a missing or wrong
/// password shows the page again, saying so.
pub async fn begin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let input: ProofInput = match crate::server::extract::optional_json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let set = match factors_of(&state, &me.user.name).await {
        Ok(set) => set,
        Err(e) => return e.into_response(),
    };
    if set.totp.is_some() {
        return see_other(HERE);
    }
    if needs(&state.config, &me, &set, now_ms()) == Needs::SecondFactor {
        return see_other(&next_page(false, HERE));
    }
    let ua = user_agent(&headers);
    if let Err(e) = prove(&state, &me, &set, input.password, ip, &ua).await {
        return show(&state, &headers, &me, None, Some(&e)).await;
    }
    match enrolling_or_new(&state, &me.user.name, session_enroller(&me)).await {
        Ok(secret) => enroll_page(&me, &secret, StatusCode::OK, None),
        Err(e) if e.status == StatusCode::CONFLICT => see_other(HERE),
        Err(e) => e.into_response(),
    }
}

/// The enrollment page of the security page's flow.
fn enroll_page(
    me: &Authed,
    secret: &TotpSecret,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    pages::factors::enroll_totp(
        status,
        &pages::factors::EnrollView {
            user: &me.user.name,
            secret,
            action: "/account/security/totp/confirm",
            rd: "",
            error,
            required: false,
            passkeys: false,
        },
    )
}

/// `POST /account/security/totp/confirm`.
pub async fn confirm(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    req: Request,
) -> Response {
    let ua = user_agent(req.headers());
    let input: CodeInput = match crate::server::extract::json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    match confirm_totp(
        &state,
        &me.user.name,
        session_enroller(&me),
        &input.code,
        ip,
        ua,
    )
    .await
    {
        Ok(Some(codes)) => pages::factors::recovery_codes(codes.shown(), HERE, Some(&me.user.name)),
        Ok(None) => see_other("/account/security?notice=totp-enrolled"),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            match enrolling(&state, &me.user.name, session_enroller(&me)).await {
                Ok(Some(secret)) => enroll_page(&me, &secret, e.status, Some(&e.message)),
                _ => see_other(HERE),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// A session without a recent second factor goes to the second step first.
fn step_up_first(state: &AppState, me: &Authed) -> Option<Response> {
    (!recent(&state.config, me, now_ms())).then(|| see_other(&next_page(false, HERE)))
}

/// `POST /account/security/totp/remove`.
pub async fn remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = step_up_first(&state, &me) {
        return r;
    }
    match remove_totp(&state, &me.user.name, ip, user_agent(&headers)).await {
        Ok(()) => see_other("/account/security?notice=totp-removed"),
        Err(e) if e.status == StatusCode::NOT_FOUND => see_other(HERE),
        Err(e) => e.into_response(),
    }
}

/// `POST /account/security/recovery`: new codes, shown once.
pub async fn new_codes(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = step_up_first(&state, &me) {
        return r;
    }
    match regenerate(&state, &me.user.name, ip, user_agent(&headers)).await {
        Ok(codes) => pages::factors::recovery_codes(codes.shown(), HERE, Some(&me.user.name)),
        Err(e) if e.status == StatusCode::CONFLICT => see_other(HERE),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct RenameForm {
    name: String,
}

/// `POST /account/security/passkeys/{id}/rename`.
pub async fn rename_passkey(
    State(state): State<AppState>,
    me: Authed,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::server::extract::Form(f): crate::server::extract::Form<RenameForm>,
) -> Response {
    match crate::server::factors::enroll::rename(&state, &me.user.name, &id, &f.name).await {
        Ok(()) => see_other("/account/security?notice=passkey-renamed"),
        Err(e) => e.into_response(),
    }
}

/// `POST /account/security/passkeys/{id}/remove`.
pub async fn remove_passkey(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = step_up_first(&state, &me) {
        return r;
    }
    match crate::server::factors::enroll::remove_passkey(
        &state,
        &me.user.name,
        &id,
        ip,
        user_agent(&headers),
    )
    .await
    {
        Ok(()) => see_other("/account/security?notice=passkey-removed"),
        Err(e) if e.status == StatusCode::NOT_FOUND => see_other(HERE),
        Err(e) => e.into_response(),
    }
}
