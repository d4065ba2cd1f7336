//! The OpenID Connect provider's endpoints: discovery and the JWKS
//! ([`discovery`]), the authorization endpoint and the consent form
//! ([`authorize`]), the token endpoint ([`token`]), userinfo,
//! introspection and revocation ([`resource`]), and logout
//! ([`logout`]: RP-initiated, and the back-channel sender task).
//!
//! [`Provider`] is the provider's part of the shared state: the issuer, the
//! discovery document made once, and the signing keys, loaded from the
//! store (or made and stored on first use) and swapped whole by a rotation.
//!
//! The room uses the core, `guard` (client secrets are regulated like
//! passwords) and `signin` (its pages send people through sign-in and the
//! second step).

pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod logout;
pub mod params;
pub mod resource;
pub mod token;

pub use crate::oidc::provider::{KEY_OVERLAP_MS, KeyOpError, Provider, load_or_make};

use std::sync::Arc;

use axum::http::StatusCode;

use crate::oidc::keys::KeyRing;
use crate::server::respond::ApiError;
use crate::server::state::AppState;

/// The keys in force, as an endpoint needs them.
pub async fn keys(state: &AppState) -> Result<Arc<KeyRing>, ApiError> {
    state
        .oidc
        .keys(&state.store, &state.secrets)
        .await
        .map_err(|e| ApiError::internal("the signing keys could not be loaded", &e))
}

/// The issuer, or the error every endpoint answers without one.
pub fn issuer(state: &AppState) -> Result<&str, ApiError> {
    state.oidc.issuer.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no OpenID Connect provider here: public_origin is not set",
        )
    })
}

/// Answers the provider's endpoints with `Cache-Control: no-store` and
/// `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_cache(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// The routes of the provider that other sites' scripts and servers call:
/// no cross-site guard (they authenticate the client instead), CORS for
/// public clients' origins.
pub fn machine_routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration).options(discovery::preflight),
        )
        .route(
            "/oidc/jwks",
            get(discovery::jwks).options(discovery::preflight),
        )
        .route(
            "/oidc/token",
            post(token::token).options(discovery::preflight),
        )
        .route(
            "/oidc/userinfo",
            get(resource::userinfo)
                .post(resource::userinfo)
                .options(discovery::preflight),
        )
        .route("/oidc/introspect", post(resource::introspect))
        .route(
            "/oidc/revoke",
            post(resource::revoke).options(discovery::preflight),
        )
        .route(
            "/oidc/authorize",
            get(authorize::authorize).post(authorize::authorize_post),
        )
        .route(
            "/oidc/logout",
            get(logout::end_session).post(logout::end_session_post),
        )
}

/// The provider's own page posts, behind the cross-site guard.
pub fn page_routes() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/oidc/consent", post(authorize::consent))
        .route("/account/apps/disconnect", post(authorize::disconnect))
}
