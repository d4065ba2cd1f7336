//! Helpers shared by every gatehouse benchmark (`cargo bench`): the suite's
//! figure numbers, machine facts, latency statistics and ratios, the printed
//! and written report, a small HTTP/1.1 client, the wrk driver, and the
//! services the distributed figures run on.
//!
//! The bench targets themselves are `store.rs` (criterion), `compare/` (the
//! store against SQLite and JSON Lines) and `http/` (the server against a
//! plain axum handler). Whatever two of them need lives here, once.

pub mod figure;
pub mod http_client;
pub mod machine;
pub mod report;
pub mod services;
pub mod stats;
pub mod wrk;
