//! This node's share of chaining: one slot holding the node's lead, if it
//! has one, shared by the background task and by every call that must see
//! the outbox chained (an append, a settle).
//!
//! Invariants:
//! - Whoever chains holds the slot's lock, so one node never runs two
//!   chaining steps at once (two nodes cannot either: only one leads).
//! - Only the background task keeps a lead. A call that finds the slot
//!   empty takes the lead for its own chaining and drops it when done, so
//!   a node without a running task never keeps the other nodes from
//!   leading.
//! - A call that cannot lead waits for the leader with a backoff bounded
//!   by the leader's own idle pause ([`IDLE`]): it never spins and never
//!   waits longer than the leader's loop needs to come round.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::store::error::StoreError;
use crate::store::outbox::{BACKOFF, Chainer, IDLE, LEAD_RETRY, Leader, StreamId};

/// The first pause of a call waiting for another node's leader.
const FIRST_WAIT: Duration = Duration::from_millis(2);

/// The node's chainer and its lead.
pub(super) struct Chain {
    chainer: Chainer,
    /// The background task's lead, while it has one.
    slot: Mutex<Option<Leader>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chainer", &self.chainer)
            .finish_non_exhaustive()
    }
}

fn chain_error(e: crate::store::outbox::ChainError) -> StoreError {
    match e {
        crate::store::outbox::ChainError::Store(e) => e,
        other => StoreError::Io(other.to_string()),
    }
}

impl Chain {
    pub(super) fn new(chainer: Chainer) -> Chain {
        Chain {
            chainer,
            slot: Mutex::new(None),
        }
    }

    /// Whether every outbox entry up to `mark` has left the outbox.
    async fn past(&self, mark: StreamId) -> Result<bool, StoreError> {
        let oldest = self
            .chainer
            .outbox()
            .oldest_id()
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(oldest.is_none_or(|o| o > mark))
    }

    /// Returns once every outbox entry up to `mark` is chained (or set
    /// aside as unreadable): chaining it as the leader when this node
    /// leads or can, else waiting for the node that does.
    pub(super) async fn through(&self, mark: StreamId) -> Result<(), StoreError> {
        let mut wait = FIRST_WAIT;
        loop {
            {
                let slot = self.slot.lock().await;
                if self.past(mark).await? {
                    return Ok(());
                }
                let borrowed = slot.as_ref().filter(|l| !l.is_lost());
                let taken = match borrowed {
                    Some(_) => None,
                    None => self.chainer.lead().await.map_err(chain_error)?,
                };
                if let Some(leader) = borrowed.or(taken.as_ref()) {
                    while !self.past(mark).await? {
                        self.chainer.step(leader).await.map_err(chain_error)?;
                    }
                    return Ok(());
                }
            }
            // Another node leads: its loop comes round within IDLE.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(IDLE);
        }
    }

    /// The background loop: leads when it can, and while leading moves
    /// batches as they come; a failure drops the lead and is tried again
    /// after [`BACKOFF`] (a restarted Redis or PostgreSQL is picked up by
    /// itself). Ends at `stop`, releasing the lead.
    async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = {
                let mut slot = self.slot.lock().await;
                match slot.as_ref().filter(|l| !l.is_lost()) {
                    None => match self.chainer.lead().await {
                        Ok(Some(l)) => {
                            tracing::info!("this node now chains the audit outbox");
                            *slot = Some(l);
                            Duration::ZERO
                        }
                        Ok(None) => {
                            *slot = None;
                            LEAD_RETRY
                        }
                        Err(e) => {
                            *slot = None;
                            tracing::warn!(error = %e, "cannot try to lead the audit chain");
                            BACKOFF
                        }
                    },
                    Some(l) => match self.chainer.step(l).await {
                        Ok(0) => IDLE,
                        Ok(_) => Duration::ZERO,
                        Err(e) => {
                            tracing::warn!(error = %e, "chaining the audit outbox failed; trying again");
                            *slot = None;
                            BACKOFF
                        }
                    },
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        *self.slot.lock().await = None;
    }
}

/// This node's chainer, running until [`DistributedTask::shutdown`].
/// Dropping it stops the loop at its next pause (the lead is released
/// when the last handle of the node is dropped).
pub struct DistributedTask {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl DistributedTask {
    pub(super) fn spawn(chain: std::sync::Arc<Chain>) -> DistributedTask {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            // A dropped sender stops the loop as a sent stop does.
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move { chain.run(stopped).await });
        DistributedTask {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the chainer after its current step and releases the lead.
    /// Nothing is lost: what is still in the outbox is chained by the next
    /// leader.
    pub async fn shutdown(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| format!("the chainer task failed: {e}"))
    }
}

impl Drop for DistributedTask {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
