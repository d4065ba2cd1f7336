//! What an access token opens: `userinfo` (GET and POST), introspection
//! (RFC 7662, confidential clients only) and revocation (RFC 7009).

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::client_auth::{OAuthError, Presented, authenticate};
use crate::domain::oidc::{OidcSecret, OidcToken, OidcTokenKind, SecretKind};
use crate::server::client::ClientIp;
use crate::server::state::AppState;
use crate::store::{OidcStore, now_ms};

/// A `401` with a Bearer challenge (RFC 6750 §3).
fn bearer_error(error: &'static str, description: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response();
    let challenge = format!("Bearer realm=\"gatehouse\", error=\"{error}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    super::no_cache(r)
}

#[derive(Deserialize, Default)]
struct BearerForm {
    access_token: Option<String>,
}

/// The access token of a request: `Authorization: Bearer`, or (POST) the
/// form's `access_token`, not both (RFC 6750 §2).
fn presented_token(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, (&'static str, &'static str)> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let form = if *method == Method::POST && !body.is_empty() {
        serde_urlencoded::from_bytes::<BearerForm>(body)
            .map_err(|_| ("invalid_request", "the form could not be read"))?
            .access_token
    } else {
        None
    };
    match (header, form) {
        (Some(_), Some(_)) => Err(("invalid_request", "send the token once")),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(("invalid_request", "no access token")),
    }
}

/// The live access token `presented`, if it is one.
async fn live_access(state: &AppState, presented: &str) -> Result<Option<OidcToken>, Response> {
    let Some(hash) = OidcSecret::hash_presented(presented, SecretKind::Access) else {
        return Ok(None);
    };
    match state.store.oidc_token(hash, now_ms()).await {
        // A client removed from the config opens nothing any more.
        Ok(t) => Ok(t.filter(|t| {
            t.kind == OidcTokenKind::Access
                && state.with_policy(|p| p.client(&t.auth.client).is_some())
        })),
        Err(e) => Err(OAuthError::server_error("token lookup failed", &e).into_response()),
    }
}

/// `GET|POST /oidc/userinfo`.
pub async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let res = async {
        let presented =
            presented_token(&method, &headers, &body).map_err(|(e, d)| bearer_error(e, d))?;
        let Some(token) = live_access(&state, &presented).await? else {
            return Err(bearer_error(
                "invalid_token",
                "the access token is not valid",
            ));
        };
        let user = &token.auth.user;
        let Some((entry, groups)) = state.with_policy(|p| {
            p.user(user)
                .map(|e| (e.clone(), p.group_list(user).to_vec()))
        }) else {
            return Err(bearer_error(
                "invalid_token",
                "the access token is not valid",
            ));
        };
        let sub = state
            .store
            .oidc_subject(user, super::token::random_subject())
            .await
            .map_err(|e| {
                OAuthError::server_error("the subject could not be read", &e).into_response()
            })?;
        let info = crate::oidc::claims::userinfo(&sub, &token.auth, Some(&entry), &groups);
        Ok(super::no_cache(Json(info).into_response()))
    }
    .await
    .unwrap_or_else(|r| r);
    super::discovery::with_cors(&state, &headers, res)
}

/// The form of introspection and revocation.
#[derive(Deserialize, Default)]
struct TokenParam {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn read_form(body: &[u8]) -> Result<TokenParam, OAuthError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::new("invalid_request", "the form could not be read"))
}

/// The live token a presented string is, access or refresh (the hint says
/// which to try first).
async fn any_token(
    state: &AppState,
    presented: &str,
    hint: Option<&str>,
) -> Result<Option<(crate::domain::TokenHash, OidcToken)>, OAuthError> {
    let order = if hint == Some("refresh_token") {
        [SecretKind::Refresh, SecretKind::Access]
    } else {
        [SecretKind::Access, SecretKind::Refresh]
    };
    let now = now_ms();
    for kind in order {
        let Some(hash) = OidcSecret::hash_presented(presented, kind) else {
            return Ok(None);
        };
        let found = state
            .store
            .oidc_token(hash, now)
            .await
            .map_err(|e| OAuthError::server_error("token lookup failed", &e))?;
        let want = match kind {
            SecretKind::Refresh => OidcTokenKind::Refresh,
            _ => OidcTokenKind::Access,
        };
        if let Some(t) = found.filter(|t| t.kind == want) {
            return Ok(Some((hash, t)));
        }
    }
    Ok(None)
}

/// `POST /oidc/introspect` (RFC 7662): a confidential client asks about a
/// token issued to it; any other token is `{"active": false}`.
pub async fn introspect(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let res: Result<Response, OAuthError> = async {
        let form = read_form(&body)?;
        let client = authenticate(
            &state,
            &headers,
            Presented::of(&form.client_id, &form.client_secret),
            ip,
            true,
        )
        .await?;
        let Some(presented) = form.token.as_deref() else {
            return Err(OAuthError::new("invalid_request", "token is missing"));
        };
        let found = any_token(&state, presented, form.token_type_hint.as_deref()).await?;
        let Some((_, t)) = found.filter(|(_, t)| t.auth.client == client.id) else {
            return Ok(super::no_cache(Json(serde_json::json!({"active": false})).into_response()));
        };
        let sub = state
            .store
            .oidc_subject(&t.auth.user, super::token::random_subject())
            .await
            .map_err(|e| OAuthError::server_error("the subject could not be read", &e))?;
        let kind = match t.kind {
            OidcTokenKind::Access => "access_token",
            OidcTokenKind::Refresh => "refresh_token",
        };
        Ok(super::no_cache(
            Json(serde_json::json!({
                "active": true,
                "scope": t.auth.scopes.join(" "),
                "client_id": t.auth.client,
                "username": t.auth.user,
                "token_type": if t.kind == OidcTokenKind::Access { "Bearer" } else { "refresh_token" },
                "exp": t.expires_ms / 1000,
                "iat": t.issued_ms / 1000,
                "sub": sub,
                "aud": t.auth.client,
                "iss": state.oidc.issuer.clone().unwrap_or_default(),
                "sid": t.auth.session.to_string(),
                "gatehouse_token_kind": kind,
            }))
            .into_response(),
        ))
    }
    .await;
    res.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /oidc/revoke` (RFC 7009): a refresh token revokes its grant, an
/// access token itself. Unknown tokens and other clients' tokens are
/// answered `200` too, and change nothing.
pub async fn revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let res = revoke_inner(&state, &headers, ip, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    super::discovery::with_cors(&state, &headers, res)
}

async fn revoke_inner(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let form = read_form(body)?;
    let client = authenticate(
        state,
        headers,
        Presented::of(&form.client_id, &form.client_secret),
        ip,
        false,
    )
    .await?;
    let Some(presented) = form.token.as_deref() else {
        return Err(OAuthError::new("invalid_request", "token is missing"));
    };
    if let Some((hash, _)) = any_token(state, presented, form.token_type_hint.as_deref()).await? {
        state
            .store
            .revoke_oidc_token(hash, &client.id, ip, now_ms())
            .await
            .map_err(|e| OAuthError::server_error("revoking the token failed", &e))?;
    }
    Ok(super::no_cache(StatusCode::OK.into_response()))
}
