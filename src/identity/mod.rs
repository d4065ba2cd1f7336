//! Who someone is, with no HTTP and no storage: second factors (TOTP,
//! recovery codes, passkeys), the sealing of secrets at rest, the sign-in
//! state machine, and the credentials non-browser clients send (`basic`).
//! Every function takes plain values and returns decisions, so each is
//! tested without a server; `server::factors` and `server::bearer` put them
//! on HTTP, and the store keeps what they decide.

pub mod basic;
pub mod recovery;
pub mod secret_box;
pub mod signin;
#[cfg(feature = "test-util")]
pub mod soft_passkey;
pub mod totp;
pub mod webauthn;
