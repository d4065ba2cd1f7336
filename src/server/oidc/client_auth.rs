//! Who is calling the token, introspection and revocation endpoints:
//! `client_secret_basic`, `client_secret_post`, or `none` for a public
//! client (which then proves itself with PKCE). Secrets are checked in
//! constant time, and a failure counts toward a ban like a wrong password
//! (per client and per address), is logged as `login failed` (the line
//! fail2ban reads) and audited as `login.failure` with `via = oidc`.
//!
//! The errors are RFC 6749 §5.2 JSON ([`OAuthError`]).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::oidc::OidcClient;
use crate::domain::{BanSubject, EventKind, NewEvent};
use crate::server::guard::{admit, audit, regulate};
use crate::server::state::AppState;
use crate::store::now_ms;

/// An RFC 6749 error answer.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// `invalid_client`: 401, with a Basic challenge when Basic was tried.
    pub fn invalid_client(basic: bool) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed".into(),
            challenge: basic.then_some("Basic realm=\"gatehouse\""),
            retry_after: None,
        }
    }

    pub fn server_error(what: &str, e: &dyn std::fmt::Display) -> OAuthError {
        tracing::error!(error = %e, "{what}");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: what.to_string(),
            challenge: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if let Some(c) = self.challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        super::no_cache(r)
    }
}

/// The client credentials a request carries.
#[derive(Default)]
pub struct Presented<'a> {
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
}

impl<'a> Presented<'a> {
    /// The `client_id` and `client_secret` of a form.
    pub fn of(client_id: &'a Option<String>, client_secret: &'a Option<String>) -> Self {
        Presented {
            client_id: client_id.as_deref(),
            client_secret: client_secret.as_deref(),
        }
    }
}

/// The ban subject of a client: a name no user can have (user names hold
/// no spaces).
fn subject(id: &str) -> BanSubject {
    BanSubject::User(format!("oidc client {id}"))
}

/// Authenticates the calling client. `confidential_only`: public clients
/// are refused (introspection).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: Presented<'_>,
    ip: Option<IpAddr>,
    confidential_only: bool,
) -> Result<Arc<OidcClient>, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(read_basic(v).ok_or_else(|| OAuthError::invalid_client(true))?),
    };
    let used_basic = basic.is_some();
    let (id, secret) = match (basic, body.client_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::new(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some((id, secret)), None) => {
            if body.client_id.is_some_and(|b| b != id) {
                return Err(OAuthError::new(
                    "invalid_request",
                    "client_id differs from the authenticated client",
                ));
            }
            (id, Some(secret))
        }
        (None, secret) => match body.client_id {
            Some(id) => (id.to_string(), secret.map(str::to_string)),
            None => return Err(OAuthError::invalid_client(false)),
        },
    };
    if id.len() > crate::domain::oidc::MAX_CLIENT_ID
        || secret.as_ref().is_some_and(|s| s.len() > 256)
    {
        return Err(OAuthError::invalid_client(used_basic));
    }
    let client = state.with_policy(|p| p.client(&id).cloned());
    let Some(secret) = secret else {
        // `none`: only a public client, and nothing to check here.
        return match client {
            Some(c) if c.is_public() && !confidential_only => Ok(c),
            _ => Err(OAuthError::invalid_client(used_basic)),
        };
    };
    let now = now_ms();
    let mut subjects = vec![subject(&id)];
    subjects.extend(ip.map(BanSubject::ip));
    let label = format!("oidc client {id}");
    let reservation = admit(state, &subjects, client.is_some(), &label, ip, &None, now)
        .await
        .map_err(|e| OAuthError {
            status: e.status,
            error: "invalid_client",
            description: e.message,
            challenge: None,
            retry_after: e.retry_after,
        })?;
    match client {
        Some(c) if c.secret_matches(&secret) && !(confidential_only && c.is_public()) => {
            reservation.succeed(now).await;
            Ok(c)
        }
        _ => {
            tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?label, "login failed");
            audit(
                state,
                NewEvent::now(EventKind::LoginFailure)
                    .user(label)
                    .ip(ip)
                    .detail("via", "oidc"),
            )
            .await;
            regulate(state, reservation, ip, now).await;
            Err(OAuthError::invalid_client(used_basic))
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn read_basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = B64.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let un = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((un(id)?, un(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let v =
            HeaderValue::from_str(&format!("Basic {}", B64.encode("my%20app:a%2Bb+c"))).unwrap();
        assert_eq!(read_basic(&v), Some(("my app".into(), "a+b c".into())));
        assert_eq!(read_basic(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(read_basic(&HeaderValue::from_static("Basic !!")), None);
    }
}
