//! The OpenID Connect provider's parts that know neither HTTP nor storage:
//! the signing keys and their JWKS ([`keys`]), and the claims of ID tokens,
//! userinfo answers and logout tokens ([`claims`]), the discovery document,
//! and the provider's shared state ([`provider`]). The endpoints are in
//! `server::oidc`; the state they keep is behind
//! [`crate::store::OidcStore`].

pub mod claims;
pub mod keys;
pub mod provider;

use crate::config::oidc::KNOWN_SCOPES;
use crate::domain::oidc::{ACR_1FA, ACR_2FA};

/// The discovery document of `issuer` (OpenID Connect Discovery 1.0 §3,
/// RFC 8414).
pub fn discovery_document(issuer: &str) -> String {
    let at = |path: &str| format!("{issuer}{path}");
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": at("/oidc/authorize"),
        "token_endpoint": at("/oidc/token"),
        "userinfo_endpoint": at("/oidc/userinfo"),
        "jwks_uri": at("/oidc/jwks"),
        "end_session_endpoint": at("/oidc/logout"),
        "revocation_endpoint": at("/oidc/revoke"),
        "introspection_endpoint": at("/oidc/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": KNOWN_SCOPES,
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid", "amr", "acr",
            "preferred_username", "name", "email", "email_verified", "groups"
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "acr_values_supported": [ACR_1FA, ACR_2FA],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
    .to_string()
}
