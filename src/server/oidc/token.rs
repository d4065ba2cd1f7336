//! The token endpoint (`POST /oidc/token`): `authorization_code` and
//! `refresh_token` grants. Parameters it does not know are ignored (RFC
//! 6749 §3.2); errors are RFC 6749 §5.2 JSON.
//!
//! Tokens are made here and stored as hashes by the one write that checks
//! the code (or rotates the refresh token), so they are handed out only
//! once that write succeeded.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::client_auth::{OAuthError, Presented, authenticate};
use crate::config::oidc::OidcClient;
use crate::domain::oidc::{
    CodeRedemption, GrantId, Issued, NewTokens, OidcSecret, RefreshRefusal, RefreshRequest,
    SecretKind,
};
use crate::oidc::claims::{IdClaims, Who};
use crate::server::client::ClientIp;
use crate::server::state::AppState;
use crate::store::{OidcStore, now_ms};

/// The form, as sent. Unknown parameters are ignored; one sent twice makes
/// it unreadable (`invalid_request`).
#[derive(Deserialize, Default)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oidc/token`.
pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let res = match exchange(&state, &headers, ip, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    super::discovery::with_cors(&state, &headers, res)
}

async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let form: TokenForm = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::new(
            "invalid_request",
            "the form could not be read (a parameter is malformed or sent twice)",
        )
    })?;
    let client = authenticate(
        state,
        headers,
        Presented::of(&form.client_id, &form.client_secret),
        ip,
        false,
    )
    .await?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => by_code(state, &client, form, ip).await,
        Some("refresh_token") => by_refresh(state, &client, form, ip).await,
        None => Err(OAuthError::new("invalid_request", "grant_type is missing")),
        Some(_) => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        )),
    }
}

/// Fresh tokens for `client`: a refresh token when the grant holds
/// `offline_access` (which the authorization endpoint grants only to
/// clients whose scopes include it).
fn fresh(
    client: &OidcClient,
    offline: bool,
    now: u64,
) -> (OidcSecret, Option<OidcSecret>, NewTokens) {
    let access = OidcSecret::generate();
    let refresh = offline.then(OidcSecret::generate);
    let tokens = NewTokens {
        access: access.hash(SecretKind::Access),
        access_expires_ms: now + client.access_token_ms,
        refresh: refresh
            .as_ref()
            .map(|r| (r.hash(SecretKind::Refresh), now + client.refresh_token_ms)),
    };
    (access, refresh, tokens)
}

async fn by_code(
    state: &AppState,
    client: &OidcClient,
    form: TokenForm,
    ip: Option<IpAddr>,
) -> Result<Response, OAuthError> {
    let Some(code) = form.code.as_deref() else {
        return Err(OAuthError::new("invalid_request", "code is missing"));
    };
    if form
        .code_verifier
        .as_ref()
        .is_some_and(|v| !(43..=128).contains(&v.len()))
    {
        return Err(OAuthError::new(
            "invalid_grant",
            "code_verifier must be 43 to 128 characters",
        ));
    }
    let Some(hash) = OidcSecret::hash_presented(code, SecretKind::Code) else {
        return Err(OAuthError::new("invalid_grant", "the code is not valid"));
    };
    let now = now_ms();
    // The grant's scopes are known only once the code is read; the refresh
    // token is made anyway and stored only when `offline_access` was granted.
    let (access, refresh, tokens) = fresh(client, client.allows_scope("offline_access"), now);
    let req = CodeRedemption {
        client: client.id.clone(),
        redirect_uri: form.redirect_uri,
        code_verifier: form.code_verifier,
        ip,
        now_ms: now,
    };
    let issued = state
        .store
        .redeem_code(hash, req, GrantId::generate(), tokens)
        .await
        .map_err(|e| OAuthError::server_error("redeeming the code failed", &e))?
        .map_err(|r| {
            OAuthError::new(
                "invalid_grant",
                format!("the code cannot be used ({})", r.as_str()),
            )
        })?;
    let refresh = refresh.filter(|_| issued.auth.has_scope("offline_access"));
    answer(state, client, &issued, &access, refresh.as_ref(), now).await
}

async fn by_refresh(
    state: &AppState,
    client: &OidcClient,
    form: TokenForm,
    ip: Option<IpAddr>,
) -> Result<Response, OAuthError> {
    let Some(presented) = form.refresh_token.as_deref() else {
        return Err(OAuthError::new(
            "invalid_request",
            "refresh_token is missing",
        ));
    };
    let Some(hash) = OidcSecret::hash_presented(presented, SecretKind::Refresh) else {
        return Err(OAuthError::new(
            "invalid_grant",
            "the refresh token is not valid",
        ));
    };
    let scopes = form.scope.as_deref().map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    if scopes
        .as_ref()
        .is_some_and(|s| s.len() > crate::domain::oidc::MAX_SCOPES)
    {
        return Err(OAuthError::new("invalid_scope", "too many scopes"));
    }
    let now = now_ms();
    let (access, refresh, tokens) = fresh(client, true, now);
    let req = RefreshRequest {
        client: client.id.clone(),
        scopes,
        tokens,
        ip,
        now_ms: now,
    };
    let issued = state
        .store
        .refresh_grant(hash, req)
        .await
        .map_err(|e| OAuthError::server_error("refreshing failed", &e))?
        .map_err(|r| match r {
            RefreshRefusal::ScopeWidened => OAuthError::new(
                "invalid_scope",
                "a refresh may not ask for more than was granted",
            ),
            other => OAuthError::new(
                "invalid_grant",
                format!("the refresh token cannot be used ({})", other.as_str()),
            ),
        })?;
    answer(state, client, &issued, &access, refresh.as_ref(), now).await
}

/// The token response (OpenID Connect Core §3.1.3.3).
async fn answer(
    state: &AppState,
    client: &OidcClient,
    issued: &Issued,
    access: &OidcSecret,
    refresh: Option<&OidcSecret>,
    now: u64,
) -> Result<Response, OAuthError> {
    let issuer = state
        .oidc
        .issuer
        .clone()
        .ok_or_else(|| OAuthError::new("invalid_request", "no issuer is configured"))?;
    let user = &issued.auth.user;
    let sub = state
        .store
        .oidc_subject(user, random_subject())
        .await
        .map_err(|e| OAuthError::server_error("the subject could not be read", &e))?;
    let (entry, groups) =
        state.with_policy(|p| (p.user(user).cloned(), p.group_list(user).to_vec()));
    let who = Who {
        sub: &sub,
        entry: entry.as_ref(),
        groups: &groups,
    };
    let claims = IdClaims::new(
        &issuer,
        &who,
        &issued.auth,
        issued.nonce.clone(),
        now,
        client.id_token_ms,
    );
    let keys = state
        .oidc
        .keys(&state.store, &state.secrets)
        .await
        .map_err(|e| OAuthError::server_error("the signing keys are not available", &e))?;
    let id_token = keys
        .current()
        .sign("JWT", &claims)
        .map_err(|e| OAuthError::server_error("signing the ID token failed", &e))?;
    let mut body = serde_json::json!({
        "access_token": access.expose(),
        "token_type": "Bearer",
        "expires_in": client.access_token_ms / 1000,
        "id_token": id_token,
        "scope": issued.auth.scopes.join(" "),
    });
    if let Some(r) = refresh {
        body["refresh_token"] = r.expose().into();
    }
    Ok(super::no_cache(Json(body).into_response()))
}

/// A new `sub`: 128 random bits, base64url.
pub fn random_subject() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
