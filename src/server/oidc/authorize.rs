//! The authorization endpoint and the consent form.
//!
//! `GET|POST /oidc/authorize` checks the request ([`super::params`]), then
//! uses the gatehouse session: a signed-in user is not asked again; anyone
//! else goes through the sign-in page (bans, second factors and all) and
//! comes back. A password-only session is stepped up through the second
//! step when the client or `acr_values` asks for two factors. A user the
//! client's `subjects` do not name gets the 403 page. Then consent (asked
//! once for an explicit client, remembered), then a one-use code in the
//! redirect, with `state` and `iss`.
//!
//! `POST /oidc/consent` answers the consent page (behind the cross-site
//! guard); `POST /account/apps/disconnect` withdraws consent and revokes an
//! app's grants from the account page.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::params::{AuthError, AuthRequest, RawAuthRequest, read, redirect_with};
use crate::config::oidc::ConsentMode;
use crate::domain::oidc::{Authorization, CODE_TTL_MS, CodeGrant, Consent, OidcSecret, SecretKind};
use crate::domain::{Revocation, RevokeReason, Session};
use crate::server::authed::{Authed, lookup_with};
use crate::server::client::ClientIp;
use crate::server::extract::Form;
use crate::server::pages;
use crate::server::respond::{ApiError, see_other};
use crate::server::signin::redirect::next_page;
use crate::server::state::AppState;
use crate::store::{OidcStore, now_ms};

/// `GET /oidc/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    match read(q.as_deref().unwrap_or("")) {
        Ok(raw) => run(&state, &headers, ip, raw, false).await,
        Err(e) => answer_error(&state, e),
    }
}

/// `POST /oidc/authorize`: the same request as a form (OpenID Connect Core
/// §3.1.2.1).
pub async fn authorize_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return answer_error(&state, AuthError::Page("The request is not UTF-8.".into()));
    };
    match read(text) {
        Ok(raw) => run(&state, &headers, ip, raw, false).await,
        Err(e) => answer_error(&state, e),
    }
}

/// An error answer: our page, or a redirect to the checked URI.
fn answer_error(state: &AppState, e: AuthError) -> Response {
    match e {
        AuthError::Page(m) => pages::oidc::error(&m),
        AuthError::Redirect {
            redirect_uri,
            error,
            description,
            state: st,
        } => {
            let issuer = state.oidc.issuer.as_deref().unwrap_or("");
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &st {
                params.push(("state", s.as_str()));
            }
            see_other(&redirect_with(&redirect_uri, issuer, &params))
        }
    }
}

/// The signed-in session, its user and groups.
struct Who {
    session: Session,
    user: crate::config::UserEntry,
    groups: Vec<String>,
}

/// Runs a request: `consented` when it comes from the consent page's Allow.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    raw: RawAuthRequest,
    consented: bool,
) -> Response {
    let issuer = match super::issuer(state) {
        Ok(i) => i.to_string(),
        Err(e) => return e.into_response(),
    };
    let req = match state.with_policy(|p| raw.check(p)) {
        Ok(r) => r,
        Err(e) => return answer_error(state, e),
    };
    let found = lookup_with(state, headers, |session, _, user, policy| Who {
        groups: policy.group_list(&user.name).to_vec(),
        user: user.clone(),
        session,
    })
    .await;
    let now = now_ms();
    let who = match found {
        Ok(Some(w)) => w,
        Ok(None) => return sign_in(state, &req, now, "login_required"),
        Err(e) => return e.into_response(),
    };
    let s = &who.session;
    let stale = req.prompt_login
        || req.auth_after_ms.is_some_and(|a| s.created_ms < a)
        || req
            .max_age
            .is_some_and(|m| now.saturating_sub(s.created_ms) > m.saturating_mul(1000));
    if stale {
        return sign_in(state, &req, now, "login_required");
    }
    if !req.client.admits(&who.user.name, &who.groups) {
        return pages::oidc::not_allowed(&who.user.name, &req.client.name);
    }
    if req.two_factor && !s.methods.two_factor() {
        if req.prompt_none {
            return answer_error(
                state,
                req.error("interaction_required", "a second factor is needed"),
            );
        }
        return see_other(&next_page(false, &req.rd()));
    }
    if req.client.consent == ConsentMode::Explicit && !consented {
        let held = match state.store.consent(&who.user.name, &req.client.id).await {
            Ok(c) => c,
            Err(e) => return ApiError::internal("consent lookup failed", &e).into_response(),
        };
        let covered = held.is_some_and(|c| c.covers(&req.scopes));
        if req.prompt_consent || !covered {
            if req.prompt_none {
                return answer_error(
                    state,
                    req.error("consent_required", "the user has not allowed this app yet"),
                );
            }
            return pages::oidc::consent(&pages::oidc::ConsentView {
                user: &who.user.name,
                app: &req.client.name,
                app_origin: &crate::config::oidc::form_target(&req.redirect_uri),
                scopes: &req.scopes,
                request: req.rd().split_once('?').map_or("", |(_, q)| q),
            });
        }
    }
    issue_code(state, &req, &who, &issuer, ip, now).await
}

/// Sends the browser to sign in and come back, or answers `error` to the
/// client for `prompt=none`.
fn sign_in(state: &AppState, req: &AuthRequest, now: u64, error: &'static str) -> Response {
    if req.prompt_none {
        return answer_error(state, req.error(error, "the user is not signed in"));
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("rd", &req.again_after_sign_in(now));
    if let Some(h) = &req.login_hint {
        q.append_pair("login_hint", h);
    }
    see_other(&format!("/login?{}", q.finish()))
}

async fn issue_code(
    state: &AppState,
    req: &AuthRequest,
    who: &Who,
    issuer: &str,
    ip: Option<std::net::IpAddr>,
    now: u64,
) -> Response {
    let code = OidcSecret::generate();
    let grant = CodeGrant {
        auth: Authorization {
            client: req.client.id.clone(),
            user: who.user.name.clone(),
            session: who.session.id,
            scopes: req.scopes.clone(),
            auth_time_ms: who.session.created_ms,
            methods: who.session.methods,
        },
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        nonce: req.nonce.clone(),
        expires_ms: now + CODE_TTL_MS,
    };
    let event = grant.authorized_event(ip, now);
    match state
        .store
        .put_code(code.hash(SecretKind::Code), grant, event)
        .await
    {
        Ok(true) => {}
        Ok(false) => return sign_in(state, req, now, "login_required"),
        Err(e) => return ApiError::internal("storing the code failed", &e).into_response(),
    }
    let shown = code.expose();
    let mut params = vec![("code", shown.as_str())];
    if let Some(s) = &req.state {
        params.push(("state", s.as_str()));
    }
    see_other(&redirect_with(&req.redirect_uri, issuer, &params))
}

/// The consent page's answer.
#[derive(Deserialize)]
pub struct ConsentInput {
    request: String,
    decision: String,
}

/// `POST /oidc/consent`.
pub async fn consent(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    headers: HeaderMap,
    Form(input): Form<ConsentInput>,
) -> Response {
    let raw = match read(&input.request) {
        Ok(r) => r,
        Err(e) => return answer_error(&state, e),
    };
    let req = match state.with_policy(|p| raw.clone().check(p)) {
        Ok(r) => r,
        Err(e) => return answer_error(&state, e),
    };
    if input.decision != "allow" {
        return answer_error(&state, req.error("access_denied", "the user denied access"));
    }
    let now = now_ms();
    let c = Consent {
        user: me.user.name.clone(),
        client: req.client.id.clone(),
        scopes: req.scopes.clone(),
        granted_ms: now,
    };
    let event = c.event(true, ip, now);
    if let Err(e) = state.store.give_consent(c, event).await {
        return ApiError::internal("storing the consent failed", &e).into_response();
    }
    run(&state, &headers, ip, raw, true).await
}

#[derive(Deserialize)]
pub struct DisconnectInput {
    client: String,
}

/// `POST /account/apps/disconnect`: withdraws consent and revokes every
/// grant of the signed-in user to the app.
pub async fn disconnect(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    me: Authed,
    Form(input): Form<DisconnectInput>,
) -> Response {
    let mut how = Revocation::new(RevokeReason::ByUser, now_ms());
    how.ip = ip;
    match state
        .store
        .disconnect_app(&me.user.name, &input.client, how)
        .await
    {
        Ok(_) => see_other("/account/security#apps"),
        Err(e) => ApiError::internal("disconnecting the app failed", &e).into_response(),
    }
}
