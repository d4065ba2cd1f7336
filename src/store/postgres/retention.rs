//! Retention: the oldest events archived, then removed in bounded batches
//! with the chain's anchor moved past them in the same transaction, so a
//! verification still covers what remains. As on redb, each removed event
//! must link to the anchor (or to the one removed before it): a broken
//! chain is neither archived nor pruned, and the error names the event.

use super::{PgAudit, id_of, pg_error, sql_id};
use crate::domain::{Event, EventId};
use crate::store::chain::{ChainWalk, EventRecord};
use crate::store::error::StoreError;
use crate::store::reports::PruneReport;

fn chain_broken(id: u64) -> StoreError {
    StoreError::Corrupt {
        table: "events",
        reason: format!(
            "hash chain broken at event {id}; refusing to prune past it (run `auditctl verify`)"
        ),
    }
}

/// Walks `rows` (id, user, record; oldest first) from `anchor`: the
/// anchor after them, or the first event that does not link.
fn walk_rows(anchor: [u8; 32], rows: &[tokio_postgres::Row]) -> Result<ChainWalk, StoreError> {
    let mut walk = ChainWalk::from(anchor);
    for r in rows {
        let id = id_of(r.get(0));
        let user: &str = r.get(1);
        let record: &[u8] = r.get(2);
        match postcard::from_bytes::<EventRecord>(record) {
            Ok(rec) if walk.links(&rec.link) => walk.step(id, user, record),
            _ => return Err(chain_broken(id)),
        }
    }
    Ok(walk)
}

fn anchor_of(row: &tokio_postgres::Row, col: usize) -> Result<[u8; 32], StoreError> {
    let b: &[u8] = row.get(col);
    b.try_into().map_err(|_| StoreError::Corrupt {
        table: "chain",
        reason: "the anchor hash is not 32 bytes".into(),
    })
}

impl PgAudit {
    /// The oldest events with ids below `below`, oldest first, at most
    /// `limit`: what the next prune would remove. Fails if they do not
    /// chain from the anchor.
    pub async fn oldest_events(
        &self,
        below: EventId,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        let anchor = client
            .query_one("SELECT anchor_hash FROM chain WHERE singleton", &[])
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                "SELECT id, user_name, record FROM events WHERE id < $1 ORDER BY id LIMIT $2",
                &[&sql_id(below.0), &(limit as i64)],
            )
            .await
            .map_err(pg_error)?;
        walk_rows(anchor_of(&anchor, 0)?, &rows)?;
        rows.iter().map(super::events::event_of).collect()
    }

    /// Removes up to `limit` (at least 1) of the oldest events with ids at
    /// or below `through`, and moves the anchor to the newest removed, in
    /// one transaction that holds the chain's row.
    pub async fn prune(&self, through: EventId, limit: usize) -> Result<PruneReport, StoreError> {
        let limit = limit.max(1);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let chain = tx
            .query_one(
                "SELECT anchor_hash, pruned FROM chain WHERE singleton FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let pruned_before = chain.get::<_, i64>(1);
        let mut rows = tx
            .query(
                "SELECT id, user_name, record FROM events WHERE id <= $1 ORDER BY id LIMIT $2",
                &[&sql_id(through.0), &(limit as i64 + 1)],
            )
            .await
            .map_err(pg_error)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let Some(last) = rows.last() else {
            return Ok(PruneReport::default());
        };
        let last_stored: i64 = last.get(0);
        let walk = walk_rows(anchor_of(&chain, 0)?, &rows)?;
        let first_stored: i64 = rows[0].get(0);
        let removed = tx
            .execute(
                "DELETE FROM events WHERE id >= $1 AND id <= $2",
                &[&first_stored, &last_stored],
            )
            .await
            .map_err(pg_error)?;
        if removed != rows.len() as u64 {
            // An event appeared inside the range after it was read: the
            // head's lock makes this a bug, never a race; keep everything.
            return Err(StoreError::Storage(format!(
                "prune read {} events but would remove {removed}",
                rows.len()
            )));
        }
        tx.execute(
            "UPDATE chain SET anchor_hash = $1, pruned_through = $2, pruned = $3 WHERE singleton",
            &[
                &walk.expected.as_slice(),
                &last_stored,
                &(pruned_before + removed as i64),
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(PruneReport {
            pruned: removed,
            through: Some(EventId(id_of(last_stored))),
            more,
        })
    }
}
