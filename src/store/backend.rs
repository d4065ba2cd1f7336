//! [`Backend`]: the store the server and the tools hold. One variant per
//! backend; each method delegates with a `match`, so a call costs a branch,
//! never a boxed future or a virtual call. A new backend is a new variant
//! here and in [`BackendConfig`]: redb (one file), and distributed (Redis
//! for the live state, PostgreSQL for the audit trail,
//! [`super::distributed`]).

use std::path::{Path, PathBuf};

use super::ceremonies::{Busy, Entry as Ceremony, Purpose};
use super::contract::{
    AuditStore, BanStore, CeremonyStore, FactorStore, RegulationStore, SessionStore, StoreCheck,
    TokenStore,
};
use super::credentials::CredentialCheck;
use super::distributed::{Distributed, DistributedConfig, DistributedTask};
use super::error::{OpenError, QueryError, StoreError, WriteError};
use super::redb::{
    BackupError, BackupReport, RedbBackend, Store, StoreOptions, Writer, WriterConfig, WriterStats,
    WriterTask,
};
use super::regulation::{AtLimit, Lease};
use super::reports::{AuditCounts, CheckReport, PruneReport, StoreStats, SweepReport};
use crate::domain::{
    AccessTokenInfo, Applied, Ban, BanSubject, CreatedAccessToken, CreatedSession, EnrollerId,
    Event, EventFilter, EventId, EventPage, FactorChange, FactorRefusal, FactorSet, Method,
    NewAccessToken, NewBan, NewEvent, NewSession, PendingSignIn, PublicId, RegulationSettings,
    Revocation, Session, SessionToken, TokenHash, TokenRefusal,
};

/// The name of the database file in a data directory.
pub const DB_FILE_NAME: &str = "gatehouse.redb";

/// Which backend to open, and where.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// One redb file.
    Redb {
        /// The database file.
        path: PathBuf,
        /// Page cache and other open options.
        options: StoreOptions,
        /// Queue and batch bounds of the writer thread.
        writer: WriterConfig,
    },
    /// Redis and PostgreSQL, shared by several nodes. Its `Debug` and
    /// `Display` never show a password.
    Distributed(DistributedConfig),
}

impl BackendConfig {
    /// The redb file at `path`, with default options.
    pub fn redb(path: impl Into<PathBuf>) -> Self {
        BackendConfig::Redb {
            path: path.into(),
            options: StoreOptions::default(),
            writer: WriterConfig::default(),
        }
    }

    /// The database of a data directory: `<dir>/gatehouse.redb`.
    pub fn in_data_dir(dir: &Path) -> Self {
        Self::redb(dir.join(DB_FILE_NAME))
    }

    /// Parses a database spec: `redb:PATH`, `redb://PATH` or a plain file
    /// path. Other schemes name backends this build does not have.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if let Some(path) = spec
            .strip_prefix("redb://")
            .or_else(|| spec.strip_prefix("redb:"))
        {
            return if path.is_empty() {
                Err("redb: needs a file path".into())
            } else {
                Ok(Self::redb(path))
            };
        }
        match spec.split_once("://") {
            Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => Err(format!(
                "unsupported database {scheme:?}: this build stores data in redb files \
                 (give a file path or redb:PATH)"
            )),
            _ if spec.is_empty() => Err("empty database path".into()),
            _ => Ok(Self::redb(spec)),
        }
    }

    /// Sets the redb page cache size (nothing for the distributed backend).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        match &mut self {
            BackendConfig::Redb { options, .. } => options.cache_bytes = bytes,
            BackendConfig::Distributed(_) => {}
        }
        self
    }

    /// Whether the `_now` lookups are answered on the spot (see
    /// [`StoreOptions::spot_reads`]); on by default. The distributed
    /// backend answers on the spot from its cache of lookups, always.
    pub fn with_spot_reads(mut self, on: bool) -> Self {
        match &mut self {
            BackendConfig::Redb { options, .. } => options.spot_reads = on,
            BackendConfig::Distributed(_) => {}
        }
        self
    }

    /// The file where the data lives; an empty path for a backend on the
    /// network (see [`BackendConfig`]'s `Display` to name it).
    pub fn location(&self) -> &Path {
        match self {
            BackendConfig::Redb { path, .. } => path,
            BackendConfig::Distributed(_) => Path::new(""),
        }
    }

    /// The same checking, on a shared store, that every node uses the key
    /// file with `fingerprint` (a file has no other node to agree with).
    pub fn with_key_fingerprint(self, fingerprint: &str) -> Self {
        match self {
            BackendConfig::Distributed(d) => {
                BackendConfig::Distributed(d.with_key_fingerprint(fingerprint))
            }
            redb => redb,
        }
    }
}

/// The store as an operator names it, for messages: a redb file's path,
/// or the services without their passwords.
impl std::fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendConfig::Redb { path, .. } => write!(f, "{}", path.display()),
            BackendConfig::Distributed(c) => write!(f, "{c}"),
        }
    }
}

/// The store, whichever backend holds it. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A redb file and its writer thread.
    Redb(RedbBackend),
    /// This node's handle on Redis and PostgreSQL.
    Distributed(Distributed),
}

/// What must be stopped when a writable backend is no longer used: the redb
/// writer thread, or the distributed node's chainer. Dropping it without
/// [`BackendTask::shutdown`] leaves the thread to end when the last handle
/// is dropped (the chainer stops at its next pause).
pub enum BackendTask {
    /// The redb writer thread.
    Redb(WriterTask),
    /// The chainer of the distributed backend's node.
    Distributed(DistributedTask),
}

impl BackendTask {
    /// Stops accepting writes, makes durable every write already accepted,
    /// and waits for that to finish.
    pub async fn shutdown(self) -> Result<(), String> {
        match self {
            BackendTask::Redb(t) => t.shutdown().await,
            BackendTask::Distributed(t) => t.shutdown().await,
        }
    }

    /// [`BackendTask::shutdown`] for callers outside a runtime.
    pub fn shutdown_blocking(self) -> Result<(), String> {
        match self {
            BackendTask::Redb(t) => t.shutdown_blocking(),
            BackendTask::Distributed(t) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("a runtime to stop the chainer: {e}"))?
                .block_on(t.shutdown()),
        }
    }
}

impl Backend {
    /// Opens the store for reading and writing (creating and upgrading it as
    /// needed) and starts its writer. Only one process may do this at a time.
    pub fn open(config: &BackendConfig) -> Result<(Backend, BackendTask), OpenError> {
        match config {
            BackendConfig::Redb {
                path,
                options,
                writer,
            } => {
                let store = Store::open(path, options)?;
                let (w, task) = Writer::spawn(store.clone(), *writer);
                Ok((
                    Backend::Redb(RedbBackend::new(store, w).with_spot_reads(options.spot_reads)),
                    BackendTask::Redb(task),
                ))
            }
            BackendConfig::Distributed(c) => Err(needs_async(c)),
        }
    }

    /// [`Backend::open`] from async code: a redb file is opened on the
    /// blocking pool (an open may wait for another process's lock); the
    /// distributed backend connects to its services and starts its node's
    /// chainer.
    pub async fn connect(config: &BackendConfig) -> Result<(Backend, BackendTask), OpenError> {
        if let BackendConfig::Distributed(c) = config {
            let (d, task) = Distributed::open(c).await?;
            return Ok((Backend::Distributed(d), BackendTask::Distributed(task)));
        }
        let owned = config.clone();
        tokio::task::spawn_blocking(move || Backend::open(&owned))
            .await
            .unwrap_or_else(|e| {
                Err(OpenError::Other {
                    store: config.to_string(),
                    reason: format!("the opening task failed: {e}"),
                })
            })
    }

    /// Opens an existing store read-only; fails as locked while a server
    /// holds it (read through the server then, `crate::admin_wire`).
    /// Every write fails.
    pub fn open_read_only(config: &BackendConfig) -> Result<Backend, OpenError> {
        match config {
            BackendConfig::Redb { path, options, .. } => Ok(Backend::Redb(
                RedbBackend::read_only(Store::open_read_only(path, options)?)
                    .with_spot_reads(options.spot_reads),
            )),
            BackendConfig::Distributed(c) => Err(OpenError::Other {
                store: c.to_string(),
                reason: "the tools do not open the distributed store yet; read its audit \
                         trail with `auditctl --db postgres://...`"
                    .into(),
            }),
        }
    }

    /// The redb backend, when that is what this is (backups, writer metrics).
    pub fn as_redb(&self) -> Option<&RedbBackend> {
        match self {
            Backend::Redb(b) => Some(b),
            Backend::Distributed(_) => None,
        }
    }

    /// A notice that changes after each commit of this process, once the
    /// commit is visible to reads: whoever holds a session for long (an
    /// open WebSocket) looks it up again then, so an ended session is seen
    /// within a moment. Holds one value, never a queue. On the distributed
    /// backend, after each session or token removal of any node.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        match self {
            Backend::Redb(b) => b.store().commits(),
            Backend::Distributed(d) => d.removals(),
        }
    }

    /// The database file, for a backend that keeps its data in one (redb):
    /// where backups are made beside it. `None` for a network backend.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Backend::Redb(b) => Some(b.store().path()),
            Backend::Distributed(_) => None,
        }
    }

    /// Whether every write fails.
    pub fn is_read_only(&self) -> bool {
        match self {
            Backend::Redb(b) => b.writer().is_none(),
            Backend::Distributed(_) => false,
        }
    }

    /// Counters of the write queue, for metrics, when the backend has one.
    pub fn writer_stats(&self) -> Option<&WriterStats> {
        match self {
            Backend::Redb(b) => b.writer().map(Writer::stats),
            Backend::Distributed(_) => None,
        }
    }

    /// The distributed backend's audit outbox (`None` on redb, or when
    /// Redis does not answer, which `/metrics` shows as absent gauges).
    pub async fn outbox_status(&self) -> Option<crate::store::distributed::OutboxStatus> {
        match self {
            Backend::Redb(_) => None,
            Backend::Distributed(d) => match d.outbox_status(crate::domain::now_ms()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit outbox's depth failed");
                    None
                }
            },
        }
    }

    /// The shared store's health for `/healthz` (`None` on redb: a local
    /// file has no service to lose, and the heartbeat covers the writer).
    pub async fn health(&self) -> Option<crate::store::distributed::StoreHealth> {
        match self {
            Backend::Redb(_) => None,
            Backend::Distributed(d) => Some(d.health().await),
        }
    }

    /// Whether every answer comes from this process (redb): `/healthz`
    /// can then be answered on the spot.
    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Redb(_))
    }

    /// Writes waiting in the write queue (0 without one).
    pub fn queue_depth(&self) -> usize {
        match self {
            Backend::Redb(b) => b.writer().map_or(0, Writer::queue_depth),
            Backend::Distributed(_) => 0,
        }
    }

    /// Writes a consistent snapshot of the whole store to `dest` and checks
    /// it (see [`Store::backup_to`]). The distributed backend's services
    /// are backed up by their own tools.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, BackupError> {
        match self {
            Backend::Redb(b) => b.store().backup_to(dest),
            Backend::Distributed(_) => Err(BackupError::Store(StoreError::Storage(
                "the distributed store is backed up with Redis's and PostgreSQL's own tools".into(),
            ))),
        }
    }

    /// Closes the store after its task was shut down, reporting what closing
    /// found. Fails if other handles remain (it then closes with the last).
    pub fn close(self) -> Result<(), StoreError> {
        match self {
            Backend::Redb(b) => {
                let store = b.store().clone();
                drop(b);
                store.close()
            }
            // Its connections close with the last handle.
            Backend::Distributed(_) => Ok(()),
        }
    }
}

/// Implements trait methods by handing each call to the variant's backend,
/// by name: `async name(args) -> T;` awaits it, `fn name(args) -> T;` (the
/// methods that answer on the spot) returns it.
macro_rules! delegate {
    () => {};
    (async $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; $($rest:tt)*) => {
        async fn $name(&self, $($arg: $ty),*) -> $out {
            match self {
                Backend::Redb(b) => b.$name($($arg),*).await,
                Backend::Distributed(d) => d.$name($($arg),*).await,
            }
        }
        delegate!($($rest)*);
    };
    (fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; $($rest:tt)*) => {
        #[inline]
        fn $name(&self, $($arg: $ty),*) -> $out {
            match self {
                Backend::Redb(b) => b.$name($($arg),*),
                Backend::Distributed(d) => d.$name($($arg),*),
            }
        }
        delegate!($($rest)*);
    };
}

impl SessionStore for Backend {
    delegate! {
        async create_session(new: NewSession, login: NewEvent, check: Option<CredentialCheck>)
            -> Result<CreatedSession, WriteError>;
        async session_by_hash(hash: TokenHash, now_ms: u64) -> Result<Option<Session>, StoreError>;
        fn session_by_hash_now(hash: TokenHash, now_ms: u64)
            -> Option<Result<Option<Session>, StoreError>>;
        async sessions_of(user: &str, now_ms: u64) -> Result<Vec<Session>, StoreError>;
        async all_sessions(now_ms: u64, limit: usize) -> Result<Vec<Session>, StoreError>;
        async session_count() -> Result<u64, StoreError>;
        async revoke_by_token(hash: TokenHash, how: Revocation) -> Result<Option<PublicId>, WriteError>;
        async revoke_session(user: &str, id: PublicId, how: Revocation) -> Result<bool, WriteError>;
        async revoke_user(user: &str, keep: Option<PublicId>, how: Revocation)
            -> Result<Vec<PublicId>, WriteError>;
        fn touch(hash: TokenHash, now_ms: u64) -> Result<(), WriteError>;
        async set_credentials(changes: Vec<(String, Option<CredentialCheck>)>) -> Result<(), WriteError>;
        async sweep(now_ms: u64, limit: usize) -> Result<SweepReport, WriteError>;
    }
}

impl FactorStore for Backend {
    delegate! {
        async factors(user: &str) -> Result<FactorSet, StoreError>;
        async passkey_owner(credential_id: &[u8]) -> Result<Option<String>, StoreError>;
        async change_factors(user: &str, change: FactorChange, event: Option<NewEvent>, now_ms: u64)
            -> Result<Result<Applied, FactorRefusal>, WriteError>;
        async create_pending(pending: PendingSignIn, max_per_user: usize) -> Result<SessionToken, WriteError>;
        async pending(hash: TokenHash, now_ms: u64) -> Result<Option<PendingSignIn>, StoreError>;
        async end_pending(hash: TokenHash, now_ms: u64) -> Result<Option<PendingSignIn>, WriteError>;
        async complete_sign_in(hash: TokenHash, new: NewSession, login: NewEvent, check: Option<CredentialCheck>)
            -> Result<Option<CreatedSession>, WriteError>;
        async step_up(hash: TokenHash, method: Method, event: NewEvent, now_ms: u64)
            -> Result<Option<CreatedSession>, WriteError>;
    }
}

impl TokenStore for Backend {
    delegate! {
        async create_token(new: NewAccessToken, session: Option<TokenHash>)
            -> Result<Result<CreatedAccessToken, TokenRefusal>, WriteError>;
        async token_by_hash(hash: TokenHash, now_ms: u64) -> Result<Option<AccessTokenInfo>, StoreError>;
        fn token_by_hash_now(hash: TokenHash, now_ms: u64)
            -> Option<Result<Option<AccessTokenInfo>, StoreError>>;
        async tokens_of(user: &str, now_ms: u64) -> Result<Vec<AccessTokenInfo>, StoreError>;
        async token_count() -> Result<u64, StoreError>;
        async revoke_token(user: &str, id: PublicId, how: Revocation) -> Result<bool, WriteError>;
        async revoke_user_tokens(user: &str, how: Revocation) -> Result<Vec<PublicId>, WriteError>;
        fn touch_token(hash: TokenHash, now_ms: u64, ip: Option<std::net::IpAddr>)
            -> Result<(), WriteError>;
    }
}

impl BanStore for Backend {
    delegate! {
        async ban(subject: &BanSubject, now_ms: u64) -> Result<Option<Ban>, StoreError>;
        fn ban_now(subject: &BanSubject, now_ms: u64) -> Option<Result<Option<Ban>, StoreError>>;
        async bans(now_ms: u64) -> Result<Vec<Ban>, StoreError>;
        async add_ban(ban: NewBan) -> Result<(), WriteError>;
        async lift_ban(subject: &BanSubject, reason: &str, actor: Option<&str>, now_ms: u64)
            -> Result<bool, WriteError>;
    }
}

impl AuditStore for Backend {
    delegate! {
        async append(event: NewEvent) -> Result<EventId, WriteError>;
        async query_events(filter: &EventFilter, limit: usize, cursor: Option<&str>)
            -> Result<EventPage, QueryError>;
        async events_after(after: EventId, limit: usize) -> Result<Vec<Event>, StoreError>;
        async oldest_events(below: EventId, limit: usize) -> Result<Vec<Event>, StoreError>;
        async prune(through: EventId, limit: usize) -> Result<PruneReport, WriteError>;
        async audit_counts(top: usize) -> Result<AuditCounts, StoreError>;
        async settle() -> Result<(), StoreError>;
    }
}

impl RegulationStore for Backend {
    delegate! {
        async reserve(limits: &RegulationSettings, subjects: &[BanSubject], configured: bool, now_ms: u64)
            -> Result<Result<Lease, AtLimit>, StoreError>;
        async fail(limits: &RegulationSettings, lease: Lease, now_ms: u64)
            -> Result<Vec<(BanSubject, u64)>, StoreError>;
        async succeed(limits: &RegulationSettings, lease: Lease, now_ms: u64) -> Result<(), StoreError>;
        fn release(limits: &RegulationSettings, lease: Lease, now_ms: u64) -> ();
        async first_replay(limits: &RegulationSettings, user: &str, step: u64) -> Result<bool, StoreError>;
    }
}

impl CeremonyStore for Backend {
    delegate! {
        async put_ceremony(purpose: Purpose, user: String, by: Option<EnrollerId>, state: Vec<u8>, now_ms: u64)
            -> Result<SessionToken, StoreError>;
        async put_anonymous_ceremony(ip: Option<std::net::IpAddr>, quota: usize, state: Vec<u8>, now_ms: u64)
            -> Result<Result<SessionToken, Busy>, StoreError>;
        async take_ceremony(hash: TokenHash, purpose: Purpose, now_ms: u64)
            -> Result<Option<Ceremony>, StoreError>;
    }
}

impl StoreCheck for Backend {
    delegate! {
        async stats() -> Result<StoreStats, StoreError>;
        async check() -> Result<CheckReport, StoreError>;
    }
}

/// Why [`Backend::open`] cannot open the distributed backend: it connects
/// and starts a task, which needs a runtime.
fn needs_async(c: &DistributedConfig) -> OpenError {
    OpenError::Other {
        store: c.to_string(),
        reason: "the distributed backend is opened from async code (Backend::connect)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_redb_file_or_are_refused() {
        for (spec, path) in [
            (
                "/var/lib/gatehouse/gatehouse.redb",
                "/var/lib/gatehouse/gatehouse.redb",
            ),
            ("redb:/x/g.redb", "/x/g.redb"),
            ("redb:///x/g.redb", "/x/g.redb"),
            ("g.redb", "g.redb"),
        ] {
            let c = BackendConfig::parse(spec).unwrap();
            assert_eq!(c.location(), Path::new(path), "{spec}");
        }
        for spec in ["", "redb:", "redis://localhost", "postgres://db/gatehouse"] {
            assert!(BackendConfig::parse(spec).is_err(), "{spec}");
        }
    }
}
