//! Applying write operations to the file: one op, or a batch in one
//! transaction with one durable commit, or (appends) one commit made
//! durable by the commit log; checkpoints, and the log's replay at open.

use std::sync::Arc;

use redb::{Database, Durability};

use super::commit_log::{CommitLog, LoggedBatch, LoggedEvent};
use super::ops::{Op, OpOutput};
use super::txn::Tx;
use super::{Db, Store};
use crate::store::chain::{self, ChainHead};
use crate::store::error::StoreError;

impl Store {
    /// Applies a batch of operations in one write transaction, durable when
    /// this returns: through the commit log when the batch is only appends
    /// (and touches) and the store has a log, else by a durable commit. If
    /// the batch cannot commit as a whole, each operation is retried alone
    /// so that one bad operation fails only itself.
    pub fn apply_batch(&self, ops: Vec<Op>) -> Vec<Result<OpOutput, Arc<StoreError>>> {
        if ops.iter().all(Op::loggable) && ops.iter().any(|op| matches!(op, Op::Append(_))) {
            let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(log) = log.as_mut().filter(|l| !l.is_full()) {
                match self.try_logged(&ops, log) {
                    Ok(outs) => return outs.into_iter().map(Ok).collect(),
                    Err(Logged::Failed(e)) => {
                        let e = Arc::new(e);
                        return ops.iter().map(|_| Err(e.clone())).collect();
                    }
                    // Nothing committed: the durable path below retries
                    // each op alone, so one bad op fails only itself.
                    Err(Logged::NotCommitted(e)) => {
                        tracing::warn!(error = %e, ops = ops.len(), "logged batch failed before its commit");
                    }
                }
            }
        }
        let results = self.apply_durably(ops);
        if results.iter().any(|r| r.is_ok()) {
            // Something committed durably, and with it every earlier
            // non-durable commit.
            self.log_is_durable();
        }
        results
    }

    fn apply_durably(&self, ops: Vec<Op>) -> Vec<Result<OpOutput, Arc<StoreError>>> {
        if ops.len() == 1 {
            let op = ops.into_iter().next().expect("one op");
            return vec![self.apply(op).map_err(Arc::new)];
        }
        match self.try_batch(&ops) {
            Ok(outs) => outs.into_iter().map(Ok).collect(),
            Err(e) => {
                tracing::warn!(error = %e, ops = ops.len(), "batch failed, retrying each operation alone");
                ops.into_iter()
                    .map(|op| self.apply(op).map_err(Arc::new))
                    .collect()
            }
        }
    }

    fn try_batch(&self, ops: &[Op]) -> Result<Vec<OpOutput>, StoreError> {
        let db = self.writable()?;
        let Db::Rw(db) = &*db else {
            unreachable!("writable() returns a writable handle")
        };
        let txn = db.begin_write()?;
        let mut outs = Vec::with_capacity(ops.len());
        {
            let mut tx = Tx::open(&txn)?;
            for op in ops {
                outs.push(op.clone().apply(&mut tx)?);
            }
            tx.finish()?;
        }
        let committed = txn.commit();
        self.inner.committed();
        committed?;
        Ok(outs)
    }

    /// Commits `ops` without a sync and makes them durable with one record
    /// in the commit log. The appends are linked onto the chain first (ids,
    /// hashes, stored bytes: all the record holds), so the record is written
    /// and its sync started before the database work, which then runs while
    /// the disk syncs. The batch is acknowledged only once both are done, so
    /// a read that starts after the acknowledgement sees it.
    ///
    /// If the database part fails, the record is taken back and nothing is
    /// stored. If the log cannot be written or synced, a durable commit of
    /// the database makes the batch durable instead; if that fails too (or
    /// the record cannot be taken back), the batch fails with an I/O error
    /// (the writer then reopens the file).
    fn try_logged(&self, ops: &[Op], log: &mut CommitLog) -> Result<Vec<OpOutput>, Logged> {
        let db = self.writable().map_err(Logged::NotCommitted)?;
        let Db::Rw(db) = &*db else {
            unreachable!("writable() returns a writable handle")
        };
        let mut txn = db
            .begin_write()
            .map_err(|e| Logged::NotCommitted(e.into()))?;
        txn.set_durability(Durability::None)
            .map_err(|e| Logged::NotCommitted(StoreError::Storage(e.to_string())))?;
        let (written, applied) = {
            let (meta, head) = Tx::open_head(&txn).map_err(Logged::NotCommitted)?;
            let (batch, heads) = link(head, ops);
            let written = log.write(&batch);
            // From here on the disk syncs the record while this thread
            // works: opening the other tables is part of that work.
            let mut tx = match Tx::open_rest(&txn, meta, head) {
                Ok(tx) => tx,
                Err(e) => {
                    if written.is_ok() {
                        log.retract().map_err(|r| retract_failed(log, r))?;
                    }
                    return Err(Logged::NotCommitted(e));
                }
            };
            let applied = apply_linked(&mut tx, ops, &batch, &heads)
                .and_then(|outs| tx.finish().map(|()| outs));
            (written, applied)
        };
        let committed = applied.and_then(|outs| txn.commit().map(|()| outs).map_err(Into::into));
        self.inner.committed();
        let outs = match committed {
            Ok(outs) => outs,
            Err(e) => {
                if written.is_ok() {
                    log.retract().map_err(|r| retract_failed(log, r))?;
                }
                return Err(Logged::NotCommitted(e));
            }
        };
        if let Err(e) = written.and_then(|()| log.finish()) {
            tracing::warn!(error = %e, log = %log.path().display(), "writing the commit log failed; committing durably instead");
            durable_commit(db).map_err(Logged::Failed)?;
            log.reset();
        }
        Ok(outs)
    }

    /// Makes every commit durable in the database and starts the commit log
    /// again, when the log holds anything. The writer calls it when a
    /// checkpoint is due and when it goes idle; `force` skips the check of
    /// size and age.
    pub fn checkpoint(&self, force: bool) -> Result<(), StoreError> {
        let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        let Some(log) = log.as_mut() else {
            return Ok(());
        };
        if !log.is_dirty() || !(force || log.checkpoint_due()) {
            return Ok(());
        }
        let db = self.writable()?;
        let Db::Rw(db) = &*db else {
            unreachable!("writable() returns a writable handle")
        };
        durable_commit(db)?;
        log.reset();
        Ok(())
    }

    /// Whether the commit log holds records not yet made durable in the
    /// database by a checkpoint.
    pub fn log_is_dirty(&self) -> bool {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| l.is_dirty())
    }

    fn log_is_durable(&self) {
        if let Some(log) = self
            .inner
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            log.reset();
        }
    }

    /// Applies one operation in its own durable transaction.
    pub fn apply(&self, op: Op) -> Result<OpOutput, StoreError> {
        let db = self.writable()?;
        let Db::Rw(db) = &*db else {
            unreachable!("writable() returns a writable handle")
        };
        let txn = db.begin_write()?;
        let out = {
            let mut tx = Tx::open(&txn)?;
            let out = op.apply(&mut tx)?;
            tx.finish()?;
            out
        };
        let committed = txn.commit();
        self.inner.committed();
        committed?;
        Ok(out)
    }
}

/// How a batch through the commit log failed.
enum Logged {
    /// Before its commit: nothing was written.
    NotCommitted(StoreError),
    /// After it: the batch is in the database, not yet durable, and the
    /// durable commit that should have made it so failed too.
    Failed(StoreError),
}

/// An empty durable commit: everything committed before it becomes durable.
fn durable_commit(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    txn.commit()?;
    Ok(())
}

/// A record that could not be taken back may be replayed after a crash
/// although its batch failed: an I/O error, and the writer reopens.
fn retract_failed(log: &CommitLog, e: std::io::Error) -> Logged {
    tracing::error!(error = %e, log = %log.path().display(), "taking back a commit log record failed");
    Logged::Failed(StoreError::Io(format!("commit log: {e}")))
}

/// Links the appends of `ops` onto the chain from `head`, in order: the
/// record the commit log takes, and the head after each event.
fn link(mut head: ChainHead, ops: &[Op]) -> (LoggedBatch, Vec<ChainHead>) {
    let mut events = Vec::with_capacity(ops.len());
    let mut heads = Vec::with_capacity(ops.len());
    for op in ops {
        if let Op::Append(ev) = op {
            let linked = chain::extend(&head, ev.clone());
            head = linked.head;
            heads.push(head);
            events.push(LoggedEvent {
                id: linked.id.0,
                kind: linked.record.kind,
                user: linked.user,
                record: linked.bytes,
            });
        }
    }
    (
        LoggedBatch {
            after: head,
            events,
        },
        heads,
    )
}

/// Applies `ops` in order, each append as the event [`link`] made of it.
fn apply_linked(
    tx: &mut Tx<'_>,
    ops: &[Op],
    batch: &LoggedBatch,
    heads: &[ChainHead],
) -> Result<Vec<OpOutput>, StoreError> {
    let mut linked = batch.events.iter().zip(heads);
    ops.iter()
        .map(|op| match op {
            Op::Append(_) => {
                let (ev, head) = linked.next().ok_or_else(|| {
                    StoreError::Storage("internal error: an append was not linked".into())
                })?;
                Ok(OpOutput::Appended(tx.append_prelinked(ev, *head)?))
            }
            other => other.clone().apply(tx),
        })
        .collect()
}

/// Applies again, in one durable commit, the logged batches the database
/// does not hold yet (those whose head is past its own). Each must end on
/// exactly its logged head: otherwise the log belongs to another history
/// of this file (a restored backup, say), and nothing is applied.
pub(super) fn recover(
    db: &Database,
    batches: &[LoggedBatch],
    log: &std::path::Path,
) -> Result<usize, StoreError> {
    let txn = db.begin_write()?;
    let mut replayed = 0;
    {
        let mut tx = Tx::open(&txn)?;
        let start = tx.head.last_id;
        for batch in batches.iter().filter(|b| b.after.last_id > start) {
            let before = tx.head.last_id;
            let follows = batch.events.first().is_some_and(|e| e.id > before);
            if follows {
                for ev in &batch.events {
                    tx.append_logged(ev)?;
                }
            }
            if !follows || tx.head != batch.after {
                return Err(StoreError::Corrupt {
                    table: "commit log",
                    reason: format!(
                        "the log does not continue this database (its batch ending at event {} does not \
                         chain onto the database's last event, {}); if the database was restored from a \
                         backup or made anew, move {} away",
                        batch.after.last_id,
                        before,
                        log.display()
                    ),
                });
            }
            replayed += batch.events.len();
        }
        tx.finish()?;
    }
    txn.commit()?;
    if replayed > 0 {
        tracing::info!(
            events = replayed,
            "acknowledged appends replayed from the commit log"
        );
    }
    Ok(replayed)
}
