//! Applying write operations to the file: one op, or a batch in one
//! transaction with one durable commit, or (appends) one commit made
//! durable by the commit log; checkpoints, and the log's replay at open.

use std::sync::Arc;

use redb::{Database, Durability};

use super::commit_log::LoggedBatch;
use super::ops::{Op, OpOutput};
use super::txn::Tx;
use super::{Db, Store};
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

    /// Commits `ops` without a sync, then makes them durable with one record
    /// in the commit log. If the log cannot be written, a durable commit of
    /// the database does it instead; if that fails too, the batch fails
    /// with an I/O error (the writer then reopens the file).
    fn try_logged(
        &self,
        ops: &[Op],
        log: &mut super::commit_log::CommitLog,
    ) -> Result<Vec<OpOutput>, Logged> {
        let (outs, batch) = self.commit_unsynced(ops).map_err(Logged::NotCommitted)?;
        if let Err(e) = log.append(&batch) {
            tracing::warn!(error = %e, log = %log.path().display(), "writing the commit log failed; committing durably instead");
            let db = self.writable().map_err(Logged::Failed)?;
            let Db::Rw(db) = &*db else {
                unreachable!("writable() returns a writable handle")
            };
            durable_commit(db).map_err(Logged::Failed)?;
            log.reset();
        }
        Ok(outs)
    }

    /// Applies `ops` in one transaction committed without a sync, and
    /// returns their outputs and the appends to log. On `Err` nothing was
    /// committed.
    fn commit_unsynced(&self, ops: &[Op]) -> Result<(Vec<OpOutput>, LoggedBatch), StoreError> {
        let db = self.writable()?;
        let Db::Rw(db) = &*db else {
            unreachable!("writable() returns a writable handle")
        };
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut outs = Vec::with_capacity(ops.len());
        let batch = {
            let mut tx = Tx::open(&txn)?;
            tx.logged = Some(Vec::with_capacity(ops.len()));
            for op in ops {
                outs.push(op.clone().apply(&mut tx)?);
            }
            let batch = LoggedBatch {
                after: tx.head,
                events: tx.logged.take().unwrap_or_default(),
            };
            tx.finish()?;
            batch
        };
        let committed = txn.commit();
        self.inner.committed();
        committed?;
        Ok((outs, batch))
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
