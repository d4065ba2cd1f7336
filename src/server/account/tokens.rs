//! A person's access tokens: create (shown once), list and revoke, as JSON
//! under `/api/v1/tokens` and as the `/tokens` page. Admins list and revoke
//! another user's with `?user=NAME`. Every route needs a session cookie: a
//! token cannot make or manage tokens, so a leaked one cannot mint more.

use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::server::account::sessions::{UserQuery, target};
use crate::server::authed::{Authed, lookup};
use crate::server::client::ClientIp;
use crate::server::extract::{Form, Json as JsonBody, Query};
use crate::server::pages;
use crate::server::pages::tokens::{Notice, TokensView};
use crate::server::respond::{ApiError, no_store, see_other};
use crate::server::state::AppState;
use crate::store::{
    AccessTokenInfo, CreatedAccessToken, MAX_TOKEN_DOMAINS, MAX_TOKEN_NAME, NewAccessToken,
    PublicId, TokenRefusal, TokenStore, normalize_scope_domain, now_ms,
};

/// A token as the API lists it: never the secret.
#[derive(Serialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub name: String,
    /// The start of the token as shown at creation, to tell tokens apart.
    pub prefix: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub last_used_ms: Option<u64>,
    /// Hosts it may reach; empty: every app its user may reach.
    pub domains: Vec<String>,
    /// Made by a session that had done a second factor: only such a token
    /// passes a `two_factor` rule that sets `allow_tokens`.
    pub two_factor: bool,
}

fn view(t: &AccessTokenInfo) -> TokenView {
    TokenView {
        id: t.id.to_string(),
        user: t.user.clone(),
        name: t.name.clone(),
        prefix: t.hint.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        last_used_ms: t.last_used_ms,
        domains: t.domains.clone(),
        two_factor: t.two_factor,
    }
}

/// What a person asks for, checked.
struct Wanted {
    name: String,
    days: u64,
    domains: Vec<String>,
}

/// Checks a request for a token; the errors name the field.
fn wanted(
    state: &AppState,
    name: &str,
    days: Option<u64>,
    domains: &[String],
) -> Result<Wanted, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_TOKEN_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "name: 1 to {MAX_TOKEN_NAME} bytes, no control characters"
        )));
    }
    let max = state.config.tokens.max_days;
    let days = state.config.tokens.days(days);
    if days == 0 || days > max {
        return Err(ApiError::bad_request(format!(
            "expires_in_days: from 1 to {max}"
        )));
    }
    if domains.len() > MAX_TOKEN_DOMAINS {
        return Err(ApiError::bad_request(format!(
            "domains: at most {MAX_TOKEN_DOMAINS}"
        )));
    }
    let mut scope = Vec::with_capacity(domains.len());
    for (i, d) in domains.iter().enumerate() {
        let Some(d) = normalize_scope_domain(d) else {
            return Err(ApiError::bad_request(format!(
                "domains[{i}]: a host name or *.domain"
            )));
        };
        if !scope.contains(&d) {
            scope.push(d);
        }
    }
    Ok(Wanted {
        name: name.to_string(),
        days,
        domains: scope,
    })
}

/// Creates a token for the signed-in person, from their session: refused if
/// that session ends (a sign-out, a reload) before the token is stored.
async fn create_for(
    state: &AppState,
    me: &Authed,
    w: Wanted,
    ip: Option<IpAddr>,
) -> Result<CreatedAccessToken, ApiError> {
    let now = now_ms();
    let new = NewAccessToken {
        user: me.user.name.clone(),
        name: w.name,
        domains: w.domains,
        expires_ms: now.saturating_add(w.days.saturating_mul(86_400_000)),
        max_per_user: state.config.tokens.max_per_user,
        ip,
        now_ms: now,
        two_factor: me.session.methods.two_factor(),
    };
    match state.store.create_token(new, Some(me.hash)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(TokenRefusal::AtCap)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "token limit reached ({}); revoke one first",
                state.config.tokens.max_per_user
            ),
        )),
        Ok(Err(TokenRefusal::SessionEnded)) => Err(ApiError::unauthorized()),
        Err(e) => Err(ApiError::internal("creating a token failed", &e)),
    }
}

/// `POST /api/v1/tokens` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    expires_in_days: Option<u64>,
    #[serde(default)]
    domains: Vec<String>,
}

#[derive(Serialize)]
struct Created {
    id: String,
    /// The token itself: shown this once, never again.
    token: String,
    expires_ms: u64,
}

/// `POST /api/v1/tokens`: `201 {"id", "token", "expires_ms"}`.
pub async fn create(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let w = wanted(&state, &body.name, body.expires_in_days, &body.domains)?;
    let c = create_for(&state, &me, w, ip).await?;
    Ok(no_store((
        StatusCode::CREATED,
        Json(Created {
            id: c.info.id.to_string(),
            token: c.token.expose(),
            expires_ms: c.info.expires_ms,
        }),
    )))
}

#[derive(Serialize)]
struct List {
    tokens: Vec<TokenView>,
}

/// `GET /api/v1/tokens[?user=NAME]`: newest first.
pub async fn list(
    State(state): State<AppState>,
    me: Authed,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let (user, _) = target(&me, &q)?;
    let tokens = state
        .store
        .tokens_of(&user, now_ms())
        .await
        .map_err(|e| ApiError::internal("listing tokens failed", &e))?;
    Ok(no_store(Json(List {
        tokens: tokens.iter().map(view).collect(),
    })))
}

async fn revoke_id(
    state: &AppState,
    me: &Authed,
    user: &str,
    by_admin: bool,
    id: &str,
    ip: Option<IpAddr>,
) -> Result<bool, ApiError> {
    let id: PublicId = id
        .parse()
        .map_err(|_| ApiError::bad_request("malformed token id"))?;
    let how = crate::server::account::sessions::revocation(me, by_admin, ip);
    state
        .store
        .revoke_token(user, id, how)
        .await
        .map_err(|e| ApiError::internal("revoking a token failed", &e))
}

/// `DELETE /api/v1/tokens/{id}[?user=NAME]`: 204, or 404 when the user has
/// no such token.
pub async fn revoke(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    id: Result<Path<String>, PathRejection>,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::bad_request("malformed token id"))?;
    let (user, by_admin) = target(&me, &q)?;
    if revoke_id(&state, &me, &user, by_admin, &id, ip).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such token"))
    }
}

/// Where a visitor to the page goes: the sign-in page, then back here.
const SIGN_IN_FIRST: &str = "/login?rd=%2Ftokens";

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

/// Renders the page for `me`, with a new token or an error when there is one.
async fn render(
    state: &AppState,
    me: &Authed,
    status: StatusCode,
    notice: Option<Notice>,
    created: Option<&CreatedAccessToken>,
    error: Option<&str>,
) -> Response {
    let now = now_ms();
    let tokens = match state.store.tokens_of(&me.user.name, now).await {
        Ok(t) => t,
        Err(e) => return ApiError::internal("listing tokens failed", &e).into_response(),
    };
    let shown = created.map(|c| c.token.expose());
    pages::tokens::page(
        status,
        &TokensView {
            user: &me.user.name,
            tokens: &tokens,
            now_ms: now,
            notice,
            created: created.map(|c| &c.info).zip(shown.as_deref()),
            error,
            max_days: state.config.tokens.max_days,
            default_days: state.config.tokens.days(None),
        },
    )
}

/// `GET /tokens`: the HTML page.
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
    let notice = q.notice.as_deref().and_then(Notice::from_code);
    render(&state, &me, StatusCode::OK, notice, None, None).await
}

/// The page's create form: the scope is one text field, host names
/// separated by spaces or commas.
#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    domains: String,
}

/// `POST /tokens`: creates a token and shows it, once, on the page itself
/// (no redirect: the token must not travel in a URL or be reloaded).
pub async fn page_create(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    Form(f): Form<CreateForm>,
) -> Response {
    let days = match f.days.trim() {
        "" => Ok(None),
        d => d.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "expires_in_days: from 1 to {}",
                state.config.tokens.max_days
            ))
        }),
    };
    let domains: Vec<String> = f
        .domains
        .split([',', ' ', '\n', '\r', '\t'])
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    let result = match days.and_then(|d| wanted(&state, &f.name, d, &domains)) {
        Ok(w) => create_for(&state, &me, w, ip).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(c) => render(&state, &me, StatusCode::OK, None, Some(&c), None).await,
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => e.into_response(),
        Err(e) => {
            let message = pages::tokens::error_text(&e.message);
            render(&state, &me, e.status, None, None, Some(&message)).await
        }
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    id: String,
}

/// `POST /tokens/revoke`: form post from the page.
pub async fn page_revoke(
    State(state): State<AppState>,
    me: Authed,
    ClientIp(ip): ClientIp,
    Form(f): Form<RevokeForm>,
) -> Result<Response, ApiError> {
    let user = me.user.name.clone();
    revoke_id(&state, &me, &user, false, &f.id, ip).await?;
    Ok(see_other("/tokens?notice=revoked"))
}
