//! A person's own sessions: who am I, list, revoke one, revoke the others,
//! as JSON under `/api/v1/` and as a small HTML page at `/sessions`.
//! Admins may name another user with `?user=NAME`.

use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Authed, ClientIp, lookup};
use super::extract::{Form, Query};
use super::{ApiError, AppState, assets, escape, html};
use crate::store::{Op, OpOutput, PublicId, RevokeReason, Session, now_ms};

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
        current: s.id == *current,
    }
}

#[derive(Deserialize)]
pub struct UserQuery {
    user: Option<String>,
}

/// The user a request acts on: oneself, or (admins only) `?user=`.
fn target(me: &Authed, q: &UserQuery) -> Result<(String, bool), ApiError> {
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
        .map_err(|e| ApiError::internal("listing sessions failed", &e))?;
    Ok(no_store(Json(List {
        sessions: sessions.iter().map(|s| view(s, &me.session.id)).collect(),
    })))
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
    let op = Op::RevokeById {
        user,
        id,
        reason: if by_admin {
            RevokeReason::ByAdmin
        } else {
            RevokeReason::ByUser
        },
        actor: Some(me.user.name.clone()),
        ip,
        now_ms: now_ms(),
    };
    match state.writer.submit(op).await {
        Ok(OpOutput::RevokedOne(done)) => Ok(done.is_some()),
        Ok(_) => Err(ApiError::internal("revoke", &"unexpected writer output")),
        Err(e) => Err(ApiError::internal("revoking a session failed", &e)),
    }
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
    let op = Op::RevokeUser {
        user,
        keep,
        reason,
        actor: Some(me.user.name.clone()),
        ip,
        now_ms: now_ms(),
    };
    match state.writer.submit(op).await {
        Ok(OpOutput::Revoked(ids)) => Ok(ids.len()),
        Ok(_) => Err(ApiError::internal("revoke", &"unexpected writer output")),
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

fn no_store(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn see_other(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

/// `YYYY-MM-DD HH:MM UTC` from milliseconds since the epoch.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for any u64 day count we meet.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `GET /sessions`: the HTML page.
pub async fn page(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let me = match lookup(&state, &headers) {
        Ok(Some(me)) => me,
        Ok(None) => return see_other("/login?rd=%2Fsessions"),
        Err(e) => return e.into_response(),
    };
    let sessions = match state.store.sessions_of(&me.user.name, now_ms()) {
        Ok(s) => s,
        Err(e) => return ApiError::internal("listing sessions failed", &e).into_response(),
    };
    let mut rows = String::new();
    for s in &sessions {
        let action = if s.id == me.session.id {
            "<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out (this session)</button></form>".to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"/sessions/revoke\"><input type=\"hidden\" name=\"id\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
                escape(&s.id.to_string())
            )
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            format_utc(s.created_ms),
            format_utc(s.last_seen_ms),
            escape(&super::ip_str(s.ip)),
            escape(s.user_agent.as_deref().unwrap_or("-")),
            action
        ));
    }
    let body = assets::SESSIONS_HTML
        .replace("{{user}}", &escape(&me.user.name))
        .replace("{{rows}}", &rows);
    html(StatusCode::OK, body)
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
    Ok(see_other("/sessions"))
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
    Ok(see_other("/sessions"))
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_709_251_260_000), "2024-03-01 00:01 UTC");
    }
}
