//! gatehouse: a self-hosted login, session and audit server.
//!
//! The library holds everything the two binaries share. See ARCHITECTURE.md for
//! the map.

pub mod access;
pub mod admin_wire;
pub mod config;
pub mod domain;
pub mod identity;
pub mod jsonl;
pub mod logging;
pub mod oidc;
pub mod retention;
pub mod server;
pub mod signals;
pub mod store;
pub mod terminal;
pub mod tls;
