//! The distributed backend: several gatehouse nodes on one Redis and one
//! PostgreSQL. It owns the composition, not the parts:
//!
//! - live state (sessions, access tokens, bans, failure counters, passkey
//!   ceremonies, second factors, pending sign-ins) is the Redis state's
//!   ([`RedisState`]); every change is one script that writes the state and
//!   adds its audit events to the outbox stream in the same atomic step;
//! - the audit trail is read from PostgreSQL ([`PgAudit`]), the chain's
//!   only store;
//! - a plain event ([`AuditStore::append`]) goes through the outbox too,
//!   so the chain has one writer, the chainer ([`Chainer`]), and the
//!   events of one node are chained in the order they were recorded;
//! - [`DistributedTask`] runs this node's chainer in the background: it
//!   tries to lead (one leader among the nodes, a PostgreSQL advisory
//!   lock) and, while leading, moves the outbox into the chain.
//!
//! Invariants:
//! - Audit reads lag the state by the outbox: an event is readable once
//!   chained. [`AuditStore::settle`] waits for every event recorded before
//!   it; [`AuditStore::append`] returns only once its own event is chained
//!   (it must answer the id the chain gave it).
//! - A node chains only as the leader: its task's lead and an append's or
//!   a settle's chaining share one slot ([`chain`]), so one node never
//!   moves the outbox from two places at once; a node that does not lead
//!   waits for the leader, polling with a bounded backoff.
//! - No secret leaves this module in a message: the URLs are named without
//!   their passwords ([`DistributedConfig`]'s `Debug` and `Display`).
//!
//! Backups are the services' own.
//!
//! [`AuditStore::append`]: crate::store::contract::AuditStore::append
//! [`AuditStore::settle`]: crate::store::contract::AuditStore::settle

mod chain;
mod check;
mod config;
mod delegate;
mod health;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use chain::DistributedTask;
pub use config::{DEFAULT_PREFIX, DistributedConfig, redact_postgres};
pub use health::{StoreHealth, StoreState};

use std::sync::Arc;

use crate::store::error::{OpenError, StoreError, WriteError};
use crate::store::outbox::{Chainer, Outbox};
use crate::store::postgres::PgAudit;
use crate::store::redis::RedisState;
use crate::store::redis::Replicas;

/// Outbox entries chained per PostgreSQL transaction.
pub const CHAIN_BATCH: usize = 500;

/// One node's handle on the distributed store. Cheap to clone (one
/// reference count); every clone shares the node's chain slot.
#[derive(Clone, Debug)]
pub struct Distributed(Arc<Parts>);

/// What a node holds.
#[derive(Debug)]
pub struct Parts {
    redis: RedisState,
    audit: PgAudit,
    outbox: Outbox,
    chain: Arc<chain::Chain>,
    /// The last health probe (`/healthz`), shared by this node's callers.
    probes: health::Probes,
}

/// The audit outbox of a deployment as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Events waiting to be chained.
    pub depth: u64,
    /// How long the oldest of them has waited, in milliseconds (0 when
    /// none waits), by the Redis clock that stamped it and this node's.
    pub lag_ms: u64,
}

impl Distributed {
    /// The outbox's depth and the age of its oldest entry: two reads of
    /// Redis, bounded like every other.
    pub async fn outbox_status(
        &self,
        now_ms: u64,
    ) -> Result<OutboxStatus, crate::store::outbox::OutboxError> {
        let depth = self.outbox.depth().await?;
        let lag_ms = self
            .outbox
            .oldest_id()
            .await?
            .map_or(0, |id| now_ms.saturating_sub(id.ms));
        Ok(OutboxStatus { depth, lag_ms })
    }
}

impl std::ops::Deref for Distributed {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Distributed {
    /// Connects to Redis (refusing one that could lose what it
    /// acknowledged beyond `config.durability`) and PostgreSQL (bringing
    /// its schema up to date). Starts nothing: see [`Distributed::start`].
    pub async fn connect(config: &DistributedConfig) -> Result<Distributed, OpenError> {
        let fail = |reason: String| OpenError::Other {
            store: crate::store::redis::redact(&config.redis_url),
            reason,
        };
        let ca = match &config.redis_ca_file {
            Some(path) => Some(crate::store::tls::read_ca_file(path).map_err(fail)?),
            None => None,
        };
        let target = crate::store::redis::Target::from_url(&config.redis_url, ca.as_deref())
            .map_err(fail)?;
        let redis = RedisState::connect_target(
            target.clone(),
            &config.redis_url,
            &config.prefix,
            config.durability,
            Replicas(config.redis_replicas),
        )
        .await?
        .with_outbox_max(config.outbox_max);
        redis
            .check_deployment(config.key_fingerprint.as_deref())
            .await?;
        let audit = PgAudit::connect(&config.postgres_url).await?;
        let outbox = Outbox::connect_target(
            target,
            Replicas(config.redis_replicas),
            &config.prefix,
            config.outbox_max,
        )
        .await
        .map_err(|e| OpenError::Other {
            store: redis.name().to_string(),
            reason: e.to_string(),
        })?;
        let chainer = Chainer::new(outbox.clone(), audit.clone(), CHAIN_BATCH);
        Ok(Distributed(Arc::new(Parts {
            redis,
            audit,
            outbox,
            chain: Arc::new(chain::Chain::new(chainer)),
            probes: health::Probes::default(),
        })))
    }

    /// [`Distributed::connect`], then this node's chainer started: what a
    /// server opens.
    pub async fn open(
        config: &DistributedConfig,
    ) -> Result<(Distributed, DistributedTask), OpenError> {
        let d = Distributed::connect(config).await?;
        let task = d.start();
        Ok((d, task))
    }

    /// Starts this node's chainer in the background, until the task is
    /// shut down.
    pub fn start(&self) -> DistributedTask {
        DistributedTask::spawn(self.chain.clone())
    }

    /// The live state.
    pub fn redis(&self) -> &RedisState {
        &self.redis
    }

    /// The audit trail.
    pub fn audit(&self) -> &PgAudit {
        &self.audit
    }

    /// Chains every entry in the outbox now (up to the newest at the call),
    /// as the leader when this node can lead, or else waiting for the
    /// leader.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.outbox.newest_id().await.map_err(outbox_store_error)? {
            None => Ok(()),
            Some(mark) => self.chain.through(mark).await,
        }
    }

    /// A notice that changes when a session or token removal reaches this
    /// node, from whichever node made it.
    pub fn removals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.redis.removals()
    }

    /// Appends `event` through the outbox and waits until it is chained:
    /// its id in the chain.
    pub(super) async fn append_chained(
        &self,
        event: crate::domain::NewEvent,
    ) -> Result<crate::domain::EventId, WriteError> {
        use crate::store::outbox::{OutboxError, StreamId};
        let source = match self.outbox.push(&event).await {
            Ok(s) => s,
            Err(OutboxError::Full(_)) => return Err(WriteError::Busy),
            Err(e) => return Err(failed(outbox_store_error(e))),
        };
        let mark = StreamId::parse(&source).ok_or_else(|| {
            failed(StoreError::Storage(format!(
                "Redis answered an unreadable stream id {source:?}"
            )))
        })?;
        // From here the event is in the outbox and will be chained whatever
        // happens to this call: a failure is "not confirmed", not "not
        // stored".
        self.chain.through(mark).await.map_err(failed)?;
        self.audit
            .id_of_source(&source)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                failed(StoreError::Storage(format!(
                    "the outbox entry {source} left the outbox unchained (set aside)"
                )))
            })
    }
}

fn failed(e: StoreError) -> WriteError {
    WriteError::Failed(Arc::new(e))
}

fn outbox_store_error(e: crate::store::outbox::OutboxError) -> StoreError {
    StoreError::Io(e.to_string())
}
