//! The OpenID Connect provider's parts that know neither HTTP nor storage:
//! the signing keys and their JWKS ([`keys`]), and the claims of ID tokens,
//! userinfo answers and logout tokens ([`claims`]). The endpoints are in
//! `server::oidc`; the state they keep is behind
//! [`crate::store::OidcStore`].

pub mod claims;
pub mod keys;
