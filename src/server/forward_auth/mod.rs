//! The hot path: `/auth/verify`, which a reverse proxy asks before each
//! request to a protected app, with sessions, Bearer tokens and Basic
//! credentials, and the identity headers of an allowed request. Uses the
//! core, [`guard`](super::guard) (Basic) and [`pages`](super::pages) (the
//! 403 page); never [`signin`](super::signin) or [`account`](super::account).

pub mod answers;
pub mod asked;
pub mod bearer;
pub mod verify;
