//! A person's own sessions: who am I, list, revoke one, revoke the others,
//! as JSON under `/api/v1/` and as a small HTML page at `/sessions`.
//! Admins may name another user with `?user=NAME`.

use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::server::authed::{Authed, lookup};
use crate::server::client::ClientIp;
use crate::server::cookie::{clear_cookie, clear_host_only_cookie, cookie_hash};
use crate::server::extract::{Form, Query};
use crate::server::pages;
use crate::server::pages::sessions::Notice;
use crate::server::respond::{ApiError, no_store, see_other, wants_json};
use crate::server::state::AppState;
use crate::store::{OidcStore, PublicId, Revocation, RevokeReason, Session, SessionStore, now_ms};

/// A session as the API shows it.
#[derive(Serialize)]
pub struct SessionView {
    pub id: String,
    pub user: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    pub idle_deadline_ms: Option<u64>,
    pub absolute_deadline_ms: u64,
    pub remember_me: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// How it was signed in: `password`, `totp`, `webauthn`, `recovery_code`.
    pub methods: Vec<crate::store::Method>,
    /// When a second factor was last done in it.
    pub second_factor_ms: Option<u64>,
    /// True for the session making this request.
    pub current: bool,
}

fn view(s: &Session, current: &PublicId) -> SessionView {
    SessionView {
        id: s.id.to_string(),
        user: s.user.clone(),
        created_ms: s.created_ms,
        last_seen_ms: s.last_seen_ms,
        idle_deadline_ms: s.idle_deadline_ms,
        absolute_deadline_ms: s.absolute_deadline_ms,
        remember_me: s.remember_me,
        ip: s.ip,
        user_agent: s.user_agent.clone(),
        methods: s.methods.iter().collect(),
        second_factor_ms: s.second_factor_ms,
        current: s.id == *current,
    }
}

/// `?user=NAME`: an admin acting on another user.
#[derive(Deserialize)]
pub struct UserQuery {
    user: Option<String>,
}

/// The user a request acts on: oneself, or (admins only) `?user=`.
pub(crate) fn target(me: &Authed, q: &UserQuery) -> Result<(String, bool), ApiError> {
    match q.user.as_deref() {
        None => Ok((me.user.name.clone(), false)),
        Some(u) if u == me.user.name => Ok((u.to_string(), false)),
        Some(_) if !me.is_admin() => Err(ApiError::forbidden()),
        Some(u) => Ok((u.to_string(), true)),
    }
}

#[derive(Serialize)]
struct WhoAmI {
    user: String,
    admin: bool,
    session: SessionView,
}

/// `GET /api/v1/session`.
pub async fn whoami(me: Authed) -> Response {
    let session = view(&me.session, &me.session.id);
    no_store(Json(WhoAmI {
        user: me.user.name.clone(),
        admin: me.is_admin(),
        session,
    }))
}

#[derive(Serialize)]
struct List {
    sessions: Vec<SessionView>,
}

/// `GET /api/v1/sessions`: newest first.
pub async fn list(
    State(state): State<AppState>,
    me: Authed,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let (user, _) = target(&me, &q)?;
    let sessions = state
        .store
        .sessions_of(&user, now_ms())
        .await
        .map_err(|e| ApiError::internal("listing sessions failed", &e))?;
    Ok(no_store(Json(List {
        sessions: sessions.iter().map(|s| view(s, &me.session.id)).collect(),
    })))
}

/// A revocation by `me`, as an admin acting on another user or not.
pub(crate) fn revocation(me: &Authed, by_admin: bool, ip: Option<IpAddr>) -> Revocation {
    Revocation {
        reason: if by_admin {
            RevokeReason::ByAdmin
        } else {
            RevokeReason::ByUser
        },
        actor: Some(me.user.name.clone()),
        ip,
        now_ms: now_ms(),
    }
}

async fn revoke_id(
    state: &AppState,
    me: &Authed,
    user: String,
    by_admin: bool,
    id: &str,
    ip: Option<IpAddr>,
) -> Result<bool, ApiError> {
    let id: PublicId = id
        .parse()
        .map_err(|_| ApiError::bad_request("malformed session id"))?;
    let how = revocation(me, by_admin, ip);
    state
        .store
        .revoke_session(&user, id, how)
        .await
        .map_err(|e| ApiError::internal("revoking a session failed", &e))
}

/// `DELETE /api/v1/sessions/{id}`: 204, or 404 when no such session of the user.
pub async fn revoke_one(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    id: Result<Path<String>, PathRejection>,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    // An id that is not even UTF-8 is as malformed as any other.
    let Path(id) = id.map_err(|_| ApiError::bad_request("malformed session id"))?;
    let (user, by_admin) = target(&me, &q)?;
    if revoke_id(&state, &me, user, by_admin, &id, ip).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"))
    }
}

#[derive(Serialize)]
struct Revoked {
    revoked: usize,
}

async fn revoke_user(
    state: &AppState,
    me: &Authed,
    user: String,
    keep: Option<PublicId>,
    reason: RevokeReason,
    ip: Option<IpAddr>,
) -> Result<usize, ApiError> {
    let how = Revocation {
        reason,
        actor: Some(me.user.name.clone()),
        ip,
        now_ms: now_ms(),
    };
    match state.store.revoke_user(&user, keep, how).await {
        Ok(ids) => Ok(ids.len()),
        Err(e) => Err(ApiError::internal("revoking sessions failed", &e)),
    }
}

/// `POST /api/v1/sessions/revoke-others`: every session of mine but this one.
pub async fn revoke_others(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    let user = me.user.name.clone();
    let n = revoke_user(
        &state,
        &me,
        user,
        Some(me.session.id),
        RevokeReason::RevokeOthers,
        ip,
    )
    .await?;
    Ok(Json(Revoked { revoked: n }).into_response())
}

/// `POST /api/v1/sessions/revoke-all[?user=NAME]`: every session of a user
/// (mine, this one included; another user's for admins).
pub async fn revoke_all(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let (user, by_admin) = target(&me, &q)?;
    let reason = if by_admin {
        RevokeReason::ByAdmin
    } else {
        RevokeReason::ByUser
    };
    let n = revoke_user(&state, &me, user, None, reason, ip).await?;
    Ok(Json(Revoked { revoked: n }).into_response())
}

fn notice_url(n: Notice) -> &'static str {
    match n {
        Notice::SignedOutOne => "/sessions?notice=signed-out",
        Notice::SignedOutOthers => "/sessions?notice=signed-out-others",
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

/// Where a visitor to a page goes: the sign-in page, then back here.
const SIGN_IN_FIRST: &str = "/login?rd=%2Fsessions";

/// `GET /sessions`: the HTML page.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let me = match lookup(&state, &headers).await {
        Ok(Some(me)) => me,
        Ok(None) => return see_other(SIGN_IN_FIRST),
        Err(e) => return e.into_response(),
    };
    let now = now_ms();
    let sessions = match state.store.sessions_of(&me.user.name, now).await {
        Ok(s) => s,
        Err(e) => return ApiError::internal("listing sessions failed", &e).into_response(),
    };
    let apps = apps_by_session(&state, &me.user.name, now).await;
    pages::sessions::page(&pages::sessions::SessionsView {
        user: &me.user.name,
        sessions: &sessions,
        current: me.session.id,
        now_ms: now,
        notice: q.notice.as_deref().and_then(Notice::from_code),
        apps: &apps,
    })
}

/// The OpenID Connect apps each of `user`'s sessions signed into, by
/// name (empty when the provider has no clients or the read fails).
async fn apps_by_session(
    state: &AppState,
    user: &str,
    now: u64,
) -> std::collections::HashMap<PublicId, Vec<String>> {
    let mut out: std::collections::HashMap<PublicId, Vec<String>> = Default::default();
    if state.with_policy(|p| p.clients().is_empty()) {
        return out;
    }
    let apps = match state.store.connected_apps(user, now).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing connected apps failed");
            return out;
        }
    };
    state.with_policy(|p| {
        for a in &apps {
            let name = p
                .client(&a.client)
                .map_or_else(|| a.client.clone(), |c| c.name.clone());
            for s in &a.sessions {
                out.entry(*s).or_default().push(name.clone());
            }
        }
    });
    out
}

/// `GET /logout`: asks before signing out (visitors go to the sign-in page).
pub async fn page_sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match lookup(&state, &headers).await {
        Ok(Some(me)) => pages::sessions::sign_out(&me.user.name),
        Ok(None) => see_other("/login"),
        Err(e) => e.into_response(),
    }
}

/// `GET /sessions/revoke-others`: asks before signing out the others.
pub async fn page_confirm_others(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let me = match lookup(&state, &headers).await {
        Ok(Some(me)) => me,
        Ok(None) => return see_other(SIGN_IN_FIRST),
        Err(e) => return e.into_response(),
    };
    match state.store.sessions_of(&me.user.name, now_ms()).await {
        Ok(s) => {
            let others = s.iter().filter(|s| s.id != me.session.id).count();
            if others == 0 {
                return see_other("/sessions");
            }
            pages::sessions::confirm_others(&me.user.name, others)
        }
        Err(e) => ApiError::internal("listing sessions failed", &e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    id: String,
}

/// `POST /sessions/revoke`: form post from the page.
pub async fn page_revoke(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    Form(f): Form<RevokeForm>,
) -> Result<Response, ApiError> {
    let user = me.user.name.clone();
    revoke_id(&state, &me, user, false, &f.id, ip).await?;
    Ok(see_other(notice_url(Notice::SignedOutOne)))
}

/// `POST /sessions/revoke-others`: form post from the page.
pub async fn page_revoke_others(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    let user = me.user.name.clone();
    revoke_user(
        &state,
        &me,
        user,
        Some(me.session.id),
        RevokeReason::RevokeOthers,
        ip,
    )
    .await?;
    Ok(see_other(notice_url(Notice::SignedOutOthers)))
}

/// `POST /logout`: ends the session, clears the cookie, back to the form.
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let res = if wants_json(&headers) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        crate::server::respond::see_other("/login")
    };
    sign_out(&state, &headers, ip, res).await
}

/// Ends the request's session (if any) and answers `res` with the cookie
/// cleared; the one sign-out of the page, the API and RP-initiated logout.
pub async fn sign_out(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    mut res: Response,
) -> Response {
    if let Some(hash) = cookie_hash(state, headers) {
        let how = Revocation {
            ip,
            ..Revocation::new(RevokeReason::Logout, now_ms())
        };
        if let Err(e) = state.store.revoke_by_token(hash, how).await {
            return ApiError::internal("logout failed", &e).into_response();
        }
    }
    if let Some(stale) = clear_host_only_cookie(&state.config) {
        res.headers_mut().append(header::SET_COOKIE, stale);
    }
    res.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(&state.config));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /`: the sessions page is gatehouse's home (it sends anonymous
/// visitors on to the login form).
pub async fn home() -> Response {
    see_other("/sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_urls_name_their_notice() {
        for n in [Notice::SignedOutOne, Notice::SignedOutOthers] {
            let code = notice_url(n).split_once("notice=").unwrap().1;
            assert_eq!(Notice::from_code(code), Some(n));
        }
    }
}
