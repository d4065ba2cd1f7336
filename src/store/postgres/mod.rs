//! The audit trail in PostgreSQL: one chained `events` table that every
//! node's events reach, in the same record bytes and chain as the redb
//! backend ([`crate::store::chain`]), so one verification covers both and a
//! chain moved from a redb file continues here.
//!
//! What this module owns:
//! - [`PgAudit::connect`]: a bounded connection pool, and the schema steps
//!   of `migrations/sql/postgres/` applied at open under an advisory lock
//!   ([`schema`]);
//! - [`PgAudit::append_batch`]: the one way events enter the table. A batch
//!   locks the chain's one-row head, skips entries whose outbox source is
//!   already chained, extends the chain with [`crate::store::chain::extend`],
//!   inserts, and moves the head, in one transaction;
//! - keyset reads ([`events`]): pages newest first with the same cursors as
//!   redb, events after an id, and the chain walk of a verification.
//!
//! - retention ([`retention`]): archive and prune under the head's lock.
//!
//! The chainer (`crate::store::outbox`) feeds `append_batch` from the
//! outbox that the Redis state's scripts write; the distributed backend
//! (`crate::store::distributed`) reads the trail here, and so does
//! `auditctl --db postgres://`.
//!
//! Event ids are u64s stored as BIGINT with the top bit flipped ([`sql_id`]),
//! which keeps their order and their range.

mod events;
mod import;
mod retention;
mod schema;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use std::sync::Arc;

use crate::domain::{Event, EventFilter, EventId, EventPage, NewEvent};
use crate::store::contract::AuditStore;
use crate::store::error::{OpenError, QueryError, StoreError, WriteError};
use crate::store::reports::{AuditCounts, PruneReport};

pub use events::PgCheck;
pub use import::IMPORT_BATCH;

/// Connections a node holds to PostgreSQL at most: the chainer's one
/// writer and a few readers (audit pages, follows, verifications).
pub const MAX_CONNECTIONS: usize = 8;

/// Longest time one SQL statement may run before the server cancels it.
pub const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// Longest wait for a new connection.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The advisory lock of the chain's leader (see
/// `crate::store::outbox::Chainer`): the one after the schema's.
pub const LEADER_LOCK: i64 = gatehouse_migrations::postgres::SCHEMA_LOCK + 1;

/// The audit trail in one PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgAudit {
    /// At most [`MAX_CONNECTIONS`]; a caller past them waits for one.
    pool: Pool,
    /// For a connection outside the pool: the leader's, whose session
    /// holds the leader lock for as long as it lives.
    config: tokio_postgres::Config,
    /// The TLS of that connection, as the pool's (`None`: plain TCP).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The database as the operator named it, without its password.
    name: String,
}

impl std::fmt::Debug for PgAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's password never reaches a log line.
        f.debug_struct("PgAudit").field("name", &self.name).finish()
    }
}

/// One event to chain, and the outbox entry it came from (`None` for an
/// event appended directly, such as a migration's).
#[derive(Debug, Clone)]
pub struct Outboxed {
    pub source: Option<String>,
    pub event: NewEvent,
}

impl PgAudit {
    /// Connects to `url` (`postgres://user:password@host:port/db`; with
    /// `sslmode=require`, `verify-ca` or `verify-full` over verified TLS,
    /// against `sslrootcert=` or the system's roots: `crate::store::tls`)
    /// and brings the schema up to date. Refuses a database whose schema is
    /// newer than this build's.
    pub async fn connect(url: &str) -> Result<PgAudit, OpenError> {
        let target = crate::store::tls::pg_target(url).map_err(|reason| OpenError::Other {
            store: "postgres".into(),
            reason,
        })?;
        let (mut config, tls) = (target.config, target.tls);
        if config.get_options().is_none() {
            // No statement runs unbounded; the longest is a verification's
            // batch of WALK_BATCH rows.
            config.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        let name = describe(&config);
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), recycling),
            None => Manager::from_config(config.clone(), NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .build()
            .map_err(|e| OpenError::Other {
                store: name.clone(),
                reason: e.to_string(),
            })?;
        let audit = PgAudit {
            pool,
            config,
            tls,
            name,
        };
        let mut client = audit.client().await.map_err(|e| audit.open_error(e))?;
        schema::apply(&mut client).await.map_err(|e| match e {
            schema::SchemaError::Newer { found, supported } => OpenError::Newer {
                store: audit.name.clone(),
                found,
                supported,
            },
            schema::SchemaError::Store(e) => audit.open_error(e),
        })?;
        Ok(audit)
    }

    /// The database as named in messages: user, host, port and database,
    /// never the password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the chain leader's lock on a connection of its own, or `None`
    /// while another session holds it. The lock lasts as long as the
    /// returned value: dropping it ends the connection, and PostgreSQL
    /// releases a session's locks when the session ends, a dead node's
    /// too (once its TCP connection is gone).
    pub async fn leader_lock(&self) -> Result<Option<LeaderLock>, StoreError> {
        let (client, task) = match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(pg_error)?;
                (client, tokio::spawn(leader_connection(conn)))
            }
            None => {
                let (client, conn) = self.config.connect(NoTls).await.map_err(pg_error)?;
                (client, tokio::spawn(leader_connection(conn)))
            }
        };
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(held.then_some(LeaderLock {
            client,
            _task: AbortOnDrop(task),
        }))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => StoreError::Io(other.to_string()),
        })
    }

    /// One round trip to the database (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .simple_query("")
            .await
            .map(drop)
            .map_err(pg_error)
    }

    fn open_error(&self, e: StoreError) -> OpenError {
        OpenError::Other {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }
}

/// Drives the leader's connection until it ends.
async fn leader_connection<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio_postgres::tls::TlsStream + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "the chain leader's connection ended");
    }
}

/// The chain leader's lock: a PostgreSQL session of its own.
pub struct LeaderLock {
    client: tokio_postgres::Client,
    _task: AbortOnDrop,
}

impl LeaderLock {
    /// Whether the session ended (and the lock with it).
    pub fn is_lost(&self) -> bool {
        self.client.is_closed()
    }
}

/// Ends the connection's task when the lock is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `user@host:port/db` of a connection config.
fn describe(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

/// A PostgreSQL failure as the store's: a lost or refused connection is
/// I/O (the pool opens a new one), anything the server refused is not.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() {
        StoreError::Storage(e.to_string())
    } else {
        // The cause of a connection error (a refused certificate, a
        // timeout) is in its source, not its message.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        StoreError::Io(text)
    }
}

/// A u64 event id as stored: the BIGINT with the same order.
pub(crate) fn sql_id(id: u64) -> i64 {
    (id ^ (1 << 63)) as i64
}

/// A stored BIGINT id back to the u64.
pub(crate) fn id_of(stored: i64) -> u64 {
    (stored as u64) ^ (1 << 63)
}

/// The audit half of the store's contract, so generic code and the
/// comparison with redb take either. `append` chains one event by itself;
/// the chainer appends in batches.
impl AuditStore for PgAudit {
    async fn append(&self, event: NewEvent) -> Result<EventId, WriteError> {
        let ids = self
            .append_batch(vec![Outboxed {
                source: None,
                event,
            }])
            .await
            .map_err(|e| WriteError::Failed(Arc::new(e)))?;
        ids.into_iter().flatten().next().ok_or_else(|| {
            WriteError::Failed(Arc::new(StoreError::Storage("nothing chained".into())))
        })
    }

    async fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, QueryError> {
        PgAudit::query_events(self, filter, limit, cursor).await
    }

    async fn events_after(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        PgAudit::events_after(self, after, limit).await
    }

    async fn oldest_events(&self, below: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        PgAudit::oldest_events(self, below, limit).await
    }

    async fn prune(&self, through: EventId, limit: usize) -> Result<PruneReport, WriteError> {
        PgAudit::prune(self, through, limit)
            .await
            .map_err(|e| WriteError::Failed(Arc::new(e)))
    }

    async fn audit_counts(&self, top: usize) -> Result<AuditCounts, StoreError> {
        PgAudit::audit_counts(self, top).await
    }
}
