//! The sign-in flow: the password form, the second steps (TOTP, recovery
//! codes, passkeys), step-up, enrollment of a pending sign-in and `rd`
//! redirects, all ending in one step that makes the session ([`session`]).
//! Uses the core, [`guard`](super::guard) and [`factors`](super::factors).

pub mod enroll;
pub mod form;
pub mod passkeys;
pub mod redirect;
pub mod session;
pub mod step;
