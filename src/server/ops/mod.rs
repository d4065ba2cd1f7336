//! The operator's side: the admin socket, `/metrics`, `/healthz`, reloads,
//! the first start, and the audit API. Uses the core, [`guard`](super::guard)
//! and [`factors`](super::factors) (an admin resets a user's factors).

pub mod admin;
pub mod admin_stream;
pub mod audit;
pub mod first_start;
pub mod health;
pub mod metrics;
pub mod reload;
