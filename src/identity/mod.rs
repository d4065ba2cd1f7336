//! Who someone is, with no HTTP and no storage: second factors (TOTP,
//! recovery codes), the sealing of secrets at rest, and the sign-in state
//! machine. Every function takes plain values and returns decisions, so
//! each is tested exhaustively without a server.
//!
//! Not wired into the server yet: the second-factor flow (pages, API,
//! storage tables, passkeys) builds on these pieces.

pub mod recovery;
pub mod secret_box;
pub mod signin;
pub mod totp;
