//! The redb backend: gatehouse's only code that knows redb.
//!
//! [`Store`] owns the database file; it implements the store's interface
//! through [`RedbBackend`] (a `Store` and its [`Writer`]).
//!
//! - Reads (`session`, `sessions_of`, `query_events`, `ban`...) run on the
//!   calling thread in their own read transaction: no lock, no write, no fsync.
//! - Writes are [`Op`]s applied in batches by [`Writer`], one write transaction
//!   and one durable commit per batch. [`Store::apply`] runs a single op
//!   synchronously for tools and tests that own the file.
//! - Every handle opens the file in redb's exclusive mode
//!   (`ConcurrencyMode::ExclusiveWriter`): a writable handle holds the whole
//!   file for itself, read-only handles share it with each other. It is the
//!   one mode whose durable commit syncs once (the shared modes force a
//!   two-phase commit, two `fdatasync`s) and whose read transactions take no
//!   file lock. While a server holds the file, `auditctl` reads through the
//!   server's admin socket (`server/admin_stream.rs`).
//!
//! No redb type leaves this module: errors carry redb's message as a string.

mod apply;
mod backend;
mod backup;
mod bans;
mod bucket;
mod check;
mod codec;
mod commit_log;
mod counts;
mod error;
mod events;
mod export;
mod factors;
#[cfg(any(test, feature = "test-util"))]
pub mod faults;
mod log_sync;
mod oidc;
mod oidc_check;
mod oidc_ops;
mod oidc_reads;
mod oidc_state;
mod ops;
mod prune;
mod reads;
mod records;
mod sessions;
pub(crate) mod tables;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod tokens;
mod txn;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};

pub use backend::RedbBackend;
pub(crate) use backup::sync_dir;
pub use backup::{BACKUP_CHUNK_ROWS, BackupError, BackupReport};
pub use events::MAX_SCAN;
pub use export::{ChainRow, LiveState};
pub use oidc::{MAX_GRANT_ACCESS_TOKENS, MAX_GRANTS_PER_SESSION};
pub use oidc_ops::{OidcOp, OidcOutput};
pub use ops::{Op, OpOutput};
pub use writer::{Histogram, Writer, WriterConfig, WriterStats, WriterTask};

use crate::store::error::{OpenError, StoreError};
use error::open_error;
use tables::*;

/// Default size of redb's page cache: memory stays flat whatever the data size.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes of redb page cache.
    pub cache_bytes: usize,
    /// Whether the backend answers the `_now` lookups (sessions, tokens,
    /// bans) on the spot from its cached snapshot, as it normally does.
    /// Off, it answers them `None`, as a network store does on a cache
    /// miss, so that every caller takes its awaited path: what the tests
    /// of that path run the server with.
    pub spot_reads: bool,
    /// Whether batches of audit appends become durable through the commit
    /// log (`commit_log.rs`: one sequential write and sync) instead of a
    /// durable redb commit. Off, every batch commits durably.
    pub commit_log: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            spot_reads: true,
            commit_log: true,
        }
    }
}

enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
}

struct Inner {
    /// The open database. `None` only while [`Store::reopen`] replaces a
    /// handle that an I/O error made unusable: redb then fails every later
    /// read and write with "previous I/O error" until the file is closed and
    /// opened again. Each operation clones the `Arc` under the read lock (an
    /// uncontended atomic, never held across I/O), so a reopen waits for no
    /// reader and no reader waits for a reopen.
    db: RwLock<Option<Arc<Db>>>,
    path: PathBuf,
    read_only: bool,
    opts: StoreOptions,
    /// Bumped after every commit made through this handle (before the writer
    /// acknowledges it), and on reopen.
    generation: AtomicU64,
    /// The `sessions` table of one read snapshot, shared by session lookups
    /// while `generation` is unchanged. Beginning a read transaction and
    /// opening its tables costs more than the lookup itself; the
    /// forward-auth hot path reuses the snapshot instead. Only a writable handle caches: this
    /// process makes every commit, so a snapshot taken at the current
    /// generation is the latest state, and a lookup that starts after a write
    /// was acknowledged always sees it.
    sessions_snapshot: Mutex<Option<SessionsSnapshot>>,
    /// The OpenID Connect token lookups' tables of one read snapshot, kept
    /// like `sessions_snapshot` (apart from it, so that the forward-auth
    /// snapshot opens no table it does not need).
    oidc_snapshot: Mutex<Option<oidc_reads::OidcSnapshot>>,
    /// What the file is opened through for writing, at open and at every
    /// reopen.
    medium: Medium,
    /// The generation after each commit, for whoever must see a change
    /// soon (the proxy re-checks the sessions of open WebSockets). A
    /// `watch` holds one value: it never queues, and a slow reader only
    /// misses generations in between.
    commits: tokio::sync::watch::Sender<u64>,
    /// The commit log of a writable handle opened with
    /// `StoreOptions::commit_log`; only the writer thread locks it, so the
    /// lock is never contended.
    log: Mutex<Option<commit_log::CommitLog>>,
}

/// What a writable file is opened through: the file itself or, in tests, a
/// backend that fails writes on demand ([`faults`]).
#[derive(Clone, Default)]
enum Medium {
    #[default]
    File,
    #[cfg(any(test, feature = "test-util"))]
    Faulty(Arc<faults::Faults>),
}

/// The hot path's tables of one read snapshot: `sessions`,
/// `access_tokens` and `bans` (for Basic passwords answered from the
/// cache), opened together so that all answer from the same commit.
struct SessionsSnapshot {
    generation: u64,
    table: Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>,
    tokens: Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>,
    bans: Arc<redb::ReadOnlyTable<&'static str, &'static [u8]>>,
}

impl Inner {
    fn new(db: Db, path: &Path, read_only: bool, opts: &StoreOptions) -> Self {
        Inner {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            read_only,
            opts: opts.clone(),
            generation: AtomicU64::new(0),
            sessions_snapshot: Mutex::new(None),
            oidc_snapshot: Mutex::new(None),
            medium: Medium::File,
            commits: tokio::sync::watch::Sender::new(0),
            log: Mutex::new(None),
        }
    }

    /// Marks the cached snapshot stale and drops it: a snapshot kept alive
    /// would stop redb from reusing the pages that later commits free.
    fn committed(&self) {
        let generation = self.generation.fetch_add(1, Ordering::Release) + 1;
        let stale = self
            .sessions_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(stale);
        let stale = self
            .oidc_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(stale);
        // After the snapshot is dropped: a reader woken by this sees the
        // commit.
        self.commits.send_replace(generation);
    }
}

/// A handle on the database file. Cheap to clone; all clones share one file.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

/// Creates `path` as an empty file only its owner may read and write
/// (mode 0600), unless it exists already (an existing file keeps its mode).
/// redb would create a missing file with the process umask (often 0644),
/// and the audit trail holds names, addresses and user agents. An empty
/// file is what redb initialises as a new database.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long [`Store::open`] waits for a file another process holds: a
/// reader (`auditctl` with no server running) holds it for one command or
/// one look of `tail --follow`.
pub const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Exclusive mode for every handle: one `fdatasync` per durable commit and
/// no file lock per read transaction. Durability stays `Immediate` and
/// two-phase commit off (redb's defaults): a commit is durable when
/// acknowledged, and a torn commit is told by its checksum at the next open.
fn builder(opts: &StoreOptions) -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_cache_size(opts.cache_bytes)
        .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter);
    b
}

impl Store {
    /// Opens (creating if needed) the database for writing and upgrades its
    /// schema. Only one process may do this at a time.
    pub fn open(path: impl AsRef<Path>, opts: &StoreOptions) -> Result<Store, OpenError> {
        Self::open_through(path.as_ref(), opts, Medium::File)
    }

    /// [`Store::open`] through a storage backend that fails writes and
    /// syncs when `faults` says so, at open and at every reopen: full disks
    /// and failing devices, in-process.
    #[cfg(any(test, feature = "test-util"))]
    pub fn open_with_faults(
        path: impl AsRef<Path>,
        opts: &StoreOptions,
        faults: Arc<faults::Faults>,
    ) -> Result<Store, OpenError> {
        Self::open_through(path.as_ref(), opts, Medium::Faulty(faults))
    }

    fn open_through(path: &Path, opts: &StoreOptions, medium: Medium) -> Result<Store, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Other {
                store: path.display().to_string(),
                reason: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        create_private_file(path).map_err(|e| OpenError::Other {
            store: path.display().to_string(),
            reason: format!("cannot create the file: {e}"),
        })?;
        // A reader's hold is short; a writer's (another server) is not,
        // and is reported once the wait is over.
        let deadline = std::time::Instant::now() + OPEN_WAIT;
        let db = loop {
            match open_rw(path, opts, &medium) {
                Err(OpenError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r?,
            }
        };
        // The log is for the real file only: a faulty medium's tests fail
        // redb's own writes and syncs, which the log would bypass.
        let log = match (&medium, opts.commit_log) {
            (Medium::File, true) => {
                let (mut log, batches) =
                    commit_log::CommitLog::open(path).map_err(|e| OpenError::Other {
                        store: path.display().to_string(),
                        reason: format!("cannot open the commit log: {e}"),
                    })?;
                apply::recover(&db, &batches, log.path()).map_err(|e| OpenError::Other {
                    store: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                log.reset();
                Some(log)
            }
            _ => None,
        };
        let mut inner = Inner::new(Db::Rw(db), path, false, opts);
        inner.medium = medium;
        inner.log = Mutex::new(log);
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Closes the database handle and opens the file again (redb repairs it
    /// if the last commit did not complete). The writer calls this after an
    /// I/O error, which leaves a redb handle failing every later operation:
    /// without it a full disk would stop the server for good, even after
    /// space returns. Only the owner of write transactions (the writer
    /// thread) may call it. On failure the store stays closed and every
    /// operation fails with [`StoreError::Io`] until a later call succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::Storage("the store is open read-only".into()));
        }
        // The cached snapshot belongs to the failed handle.
        self.inner.committed();
        let old = self
            .inner
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut old) = old {
            // Readers hold clones only for the length of one read; wait for
            // them (bounded) so that the file lock is released by `close`.
            let mut closed = false;
            for _ in 0..2_000 {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        let r = match db {
                            Db::Rw(db) => db.close(),
                            Db::Ro(db) => db.close(),
                        };
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "closing the failed database handle");
                        }
                        closed = true;
                        break;
                    }
                    Err(still_shared) => {
                        old = still_shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
            if !closed {
                // The last reader closes it on drop; the open below then
                // fails as locked and is retried by the next call.
                tracing::warn!("the failed database handle is still in use");
            }
        }
        let db = open_rw(&self.inner.path, &self.inner.opts, &self.inner.medium)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(log) = log.as_mut() {
                let batches = commit_log::CommitLog::read(&self.inner.path)
                    .map_err(|e| StoreError::Io(format!("reading the commit log: {e}")))?;
                apply::recover(&db, &batches, log.path())?;
                log.reset();
            }
        }
        *self.inner.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Db::Rw(db)));
        self.inner.committed();
        tracing::info!(path = %self.inner.path.display(), "database reopened");
        Ok(())
    }
}

/// Opens (creating if needed) the file for writing and upgrades its schema.
fn open_rw(path: &Path, opts: &StoreOptions, medium: &Medium) -> Result<Database, OpenError> {
    {
        let db = match medium {
            Medium::File => builder(opts).create(path),
            #[cfg(any(test, feature = "test-util"))]
            Medium::Faulty(f) => faults::CountdownBackend::open(path, f.clone())
                .and_then(|b| builder(opts).create_with_backend(b)),
        }
        .map_err(|e| open_error(path, e))?;
        match gatehouse_migrations::migrate(&db) {
            Ok(up) if up.from != up.to => {
                tracing::info!(from = up.from, to = up.to, "database schema upgraded");
            }
            Ok(_) => {}
            Err(gatehouse_migrations::MigrationError::Newer { found, supported }) => {
                return Err(OpenError::Newer {
                    store: path.display().to_string(),
                    found,
                    supported,
                });
            }
            Err(e) => {
                return Err(OpenError::Other {
                    store: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(db)
    }
}

impl Store {
    /// Opens an existing database read-only. Never writes to the file.
    /// Fails with [`OpenError::Locked`] while a writer (a running server)
    /// holds it, and keeps a writer from opening it while open.
    pub fn open_read_only(path: impl AsRef<Path>, opts: &StoreOptions) -> Result<Store, OpenError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(OpenError::Missing(path.display().to_string()));
        }
        let db = builder(opts)
            .open_read_only(path)
            .map_err(|e| open_error(path, e))?;
        let found = gatehouse_migrations::version_of(&db).map_err(|e| OpenError::Other {
            store: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let supported = gatehouse_migrations::LATEST;
        if found > supported {
            return Err(OpenError::Newer {
                store: path.display().to_string(),
                found,
                supported,
            });
        }
        if found < supported {
            return Err(OpenError::NeedsUpgrade {
                store: path.display().to_string(),
                found,
                supported,
            });
        }
        // Acknowledged appends still only in the commit log (the server
        // stopped without a checkpoint): a writer must apply them first, or
        // this handle would read a trail without them.
        let store = Store {
            inner: Arc::new(Inner::new(Db::Ro(db), path, true, opts)),
        };
        let logged = commit_log::CommitLog::read(path).map_err(|e| OpenError::Other {
            store: path.display().to_string(),
            reason: format!("cannot read the commit log: {e}"),
        })?;
        if let Some(last) = logged.last() {
            let head = store.chain_head().map_err(|e| OpenError::Other {
                store: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if last.after.last_id > head.last_id {
                return Err(OpenError::NeedsRepair(path.display().to_string()));
            }
        }
        Ok(store)
    }

    /// The newest event and the chain's hash after it.
    fn chain_head(&self) -> Result<crate::store::chain::ChainHead, StoreError> {
        use redb::ReadableTable;
        let r = self.read()?;
        let meta = r.open_table(META)?;
        Ok(match meta.get(CHAIN_HEAD_KEY)? {
            Some(g) => codec::decode("meta", g.value())?,
            None => Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Changes after every commit made through this handle, once the
    /// commit is visible to reads (see `Inner::commits`).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The current database handle (see [`Inner::db`]).
    fn db(&self) -> Result<Arc<Db>, StoreError> {
        self.inner
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Io("the database is closed after an I/O error; reopening".into())
            })
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(match &*self.db()? {
            Db::Rw(db) => db.begin_read()?,
            Db::Ro(db) => db.begin_read()?,
        })
    }

    fn writable(&self) -> Result<Arc<Db>, StoreError> {
        let db = self.db()?;
        match &*db {
            Db::Rw(_) => Ok(db),
            Db::Ro(_) => Err(StoreError::Storage("the store is open read-only".into())),
        }
    }

    /// Applies a batch of operations in one write transaction with one durable
    /// commit. If the batch cannot commit as a whole, each operation is retried
    /// Closes the database, flushing it and releasing the file lock. Fails
    /// (and leaves closing to the last handle's drop) if other clones remain.
    pub fn close(self) -> Result<(), StoreError> {
        self.inner.committed();
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => match inner.db.into_inner().unwrap_or_else(|p| p.into_inner()) {
                None => Ok(()),
                Some(db) => match Arc::try_unwrap(db) {
                    Ok(Db::Rw(db)) => Ok(db.close()?),
                    Ok(Db::Ro(db)) => Ok(db.close()?),
                    // A read in progress on another thread holds it; it
                    // closes when that read ends.
                    Err(_) => Ok(()),
                },
            },
            Err(arc) => Err(StoreError::Storage(format!(
                "store still in use by {} other handles; it closes when the last one is dropped",
                Arc::strong_count(&arc) - 1
            ))),
        }
    }
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod fixture_v8_tests;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tests;
