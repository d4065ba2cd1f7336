//! Applying write operations to the file: one op, or a batch in one
//! transaction with one durable commit.

use std::sync::Arc;

use super::ops::{Op, OpOutput};
use super::txn::Tx;
use super::{Db, Store};
use crate::store::error::StoreError;

impl Store {
    /// alone so that one bad operation fails only itself.
    pub fn apply_batch(&self, ops: Vec<Op>) -> Vec<Result<OpOutput, Arc<StoreError>>> {
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
