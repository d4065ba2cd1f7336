//! The store: sessions, audit events and bans, behind one interface and
//! several possible backends.
//!
//! - [`contract`]: the interface, as async traits in the language of the
//!   domain ([`SessionStore`], [`BanStore`], [`AuditStore`],
//!   [`StoreCheck`]); what every backend must keep, and how a backend that
//!   cannot keep an invariant fails closed.
//! - [`Backend`]: the concrete store the server and the tools hold, an enum
//!   with one variant per backend that delegates with a `match` (no boxed
//!   future per call); [`BackendConfig`] says which backend and where.
//! - [`redb`](self::redb): the redb backend (one file, a group-commit writer
//!   thread); no redb type leaves that module.
//! - [`distributed`]: the distributed backend, several nodes on one Redis
//!   ([`redis`](self::redis), the live state) and one PostgreSQL
//!   ([`postgres`], the audit trail), the outbox between them
//!   ([`outbox`]).
//! - Shared by all backends: the hash chain ([`chain`]), keyset cursors,
//!   credential checks, the reports and the errors.
//!
//! The conformance suite (`conformance.rs`, tests only) specifies the
//! behaviour once, as a model test any backend is run through.

mod backend;
mod backend_oidc;
pub mod ceremonies;
pub mod chain;
#[cfg(test)]
pub(crate) mod conformance;
pub mod contract;
pub(crate) mod credentials;
mod cursor;
pub mod distributed;
mod error;
pub mod migrate;
pub mod outbox;
pub mod postgres;
pub(crate) mod record_read;
pub mod redb;
pub mod redis;
pub mod regulation;
mod reports;
pub mod tls;

pub use backend::{Backend, BackendConfig, BackendTask};
pub use backend_oidc::NO_OIDC;
pub use ceremonies::{Busy, CEREMONY_MS, Entry as Ceremony, Purpose};
pub use contract::{
    AuditStore, BanStore, CeremonyStore, FactorStore, OidcStore, RegulationStore, SessionStore,
    StoreCheck, TokenStore,
};
pub use credentials::{CredentialCheck, Credentials};
pub use error::{CursorError, OpenError, QueryError, StoreError, WriteError};
pub use regulation::{AtLimit, Lease};
pub use reports::{AuditCounts, CheckReport, PruneReport, StoreStats, SweepReport};

pub(crate) use self::redb::sync_dir;
#[cfg(any(test, feature = "test-util"))]
pub use self::redb::testing;
pub use self::redb::{BackupError, BackupReport, Histogram, WriterStats};
/// The redb backend's file handle, writer and write operations, for the
/// benchmarks and file-level tests that drive the file directly.
pub use self::redb::{Op, OpOutput, Store, StoreOptions, Writer, WriterConfig, WriterTask};
pub use crate::domain::*;
