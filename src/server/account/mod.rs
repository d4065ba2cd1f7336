//! What a signed-in person manages: sessions (and signing out), access
//! tokens, and second factors (the security page and `/api/v1/mfa`).
//! Uses the core, [`guard`](super::guard), [`factors`](super::factors) and
//! [`signin`](super::signin) (a pending sign-in that enrolls ends there).

pub mod mfa;
pub mod passkeys;
pub mod security;
pub mod sessions;
pub mod tokens;
