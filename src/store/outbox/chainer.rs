//! The chainer: one node at a time moves the outbox into the chain.

use std::future::Future;
use std::time::Duration;

use super::{Outbox, OutboxError};
use crate::store::error::StoreError;
use crate::store::postgres::{LeaderLock, Outboxed, PgAudit};

/// How often a node that is not the leader tries to become it.
pub const LEAD_RETRY: Duration = Duration::from_secs(1);

/// How long the leader waits when the outbox was empty.
pub const IDLE: Duration = Duration::from_millis(100);

/// How long the leader waits after a failure (Redis or PostgreSQL away)
/// before it tries again.
pub const BACKOFF: Duration = Duration::from_secs(1);

/// Why a chaining step failed. Nothing is lost either way: an entry leaves
/// the outbox only after its event is committed to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("the audit chain in PostgreSQL: {0}")]
    Store(#[from] StoreError),
    /// The leader's connection ended: another node may lead now.
    #[error("this node is no longer the chain's leader")]
    LostLead,
}

/// Proof that this node leads the chain: held while it lasts.
pub struct Leader {
    lock: LeaderLock,
}

impl Leader {
    /// Whether the lead ended with the leader's connection.
    pub fn is_lost(&self) -> bool {
        self.lock.is_lost()
    }
}

/// Moves the outbox into the chain, in batches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Chainer {
    outbox: Outbox,
    pg: PgAudit,
    /// Entries per chained batch (one PostgreSQL transaction).
    batch: usize,
}

impl Chainer {
    pub fn new(outbox: Outbox, pg: PgAudit, batch: usize) -> Chainer {
        Chainer {
            outbox,
            pg,
            batch: batch.max(1),
        }
    }

    /// The outbox it moves.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Becomes the leader, or `None` while another node is.
    pub async fn lead(&self) -> Result<Option<Leader>, ChainError> {
        Ok(self.pg.leader_lock().await?.map(|lock| Leader { lock }))
    }

    /// Moves one batch of the oldest entries: chained (those already in
    /// the chain skipped), then removed from the outbox. An entry that is
    /// not an event is set aside, logged, and does not hold the rest up.
    /// Returns the entries that left the outbox.
    pub async fn step(&self, leader: &Leader) -> Result<usize, ChainError> {
        if leader.is_lost() {
            return Err(ChainError::LostLead);
        }
        let entries = self.outbox.oldest(self.batch).await?;
        let n = entries.len();
        let mut batch = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for e in entries {
            match e.event {
                Ok(event) => {
                    ids.push(e.id.clone());
                    batch.push(Outboxed {
                        source: Some(e.id),
                        event,
                    });
                }
                Err(why) => {
                    tracing::warn!(entry = %e.id, reason = %why, "an outbox entry is not an event; set aside");
                    self.outbox.set_aside(&e.id, &why).await?;
                }
            }
        }
        if !batch.is_empty() {
            self.pg.append_batch(batch).await?;
            self.outbox.ack(&ids).await?;
        }
        Ok(n)
    }

    /// Steps until the outbox is empty; the entries moved.
    pub async fn flush(&self, leader: &Leader) -> Result<u64, ChainError> {
        let mut moved = 0;
        loop {
            match self.step(leader).await? {
                0 => return Ok(moved),
                n => moved += n as u64,
            }
        }
    }

    /// Runs until `shutdown`: tries to lead every [`LEAD_RETRY`], and while
    /// leading, moves batches as they come. A failure is logged and tried
    /// again after [`BACKOFF`], leading again from scratch, so a restarted
    /// PostgreSQL or Redis is picked up by itself.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut leader: Option<Leader> = None;
        loop {
            let wait = match &leader {
                None => match self.lead().await {
                    Ok(Some(l)) => {
                        tracing::info!("this node now chains the audit outbox");
                        leader = Some(l);
                        Duration::ZERO
                    }
                    Ok(None) => LEAD_RETRY,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot try to lead the audit chain");
                        BACKOFF
                    }
                },
                Some(l) => match self.step(l).await {
                    Ok(0) => IDLE,
                    Ok(_) => Duration::ZERO,
                    Err(e) => {
                        tracing::warn!(error = %e, "chaining the audit outbox failed; trying again");
                        leader = None;
                        BACKOFF
                    }
                },
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
