//! A whole chain moved into an empty database (`gatehouse migrate
//! --to-distributed`): the events of a redb file with their ids and record
//! bytes unchanged, and its head and anchor, so the chain continues here
//! and one verification covers what was chained before and after.
//!
//! Invariants: the import is one transaction, so a failed or interrupted
//! one leaves the database as it was; it refuses a database that holds any
//! event or has ever chained one; and it walks the chain as it inserts,
//! refusing rows that do not link from the anchor to the head as given.

use std::net::IpAddr;

use super::{PgAudit, pg_error, sql_id};
use crate::domain::EventId;
use crate::store::chain::{ChainAnchor, ChainHead, ChainWalk, EventRecord};
use crate::store::error::StoreError;
use crate::store::redb::ChainRow;

/// Rows inserted per statement.
pub const IMPORT_BATCH: usize = 5_000;

impl PgAudit {
    /// Imports the chain ending at `head`, anchored at `anchor`, whose rows
    /// `next(after)` gives in id order (up to [`IMPORT_BATCH`] after the
    /// id `after`; none when done). `progress` hears the number of events
    /// imported so far after each batch. Answers how many were imported.
    pub async fn import_chain(
        &self,
        head: ChainHead,
        anchor: ChainAnchor,
        mut next: impl FnMut(EventId) -> Result<Vec<ChainRow>, StoreError>,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        let refuse = |reason: String| StoreError::Storage(reason);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let row = tx
            .query_one(
                "SELECT appended, pruned, (SELECT count(*) FROM events) FROM chain \
                 WHERE singleton FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let (appended, pruned, rows): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if appended != 0 || pruned != 0 || rows != 0 {
            return Err(refuse(format!(
                "the PostgreSQL database {} already holds an audit chain ({appended} events \
                 appended); migrate into a new, empty database",
                self.name()
            )));
        }
        let mut walk = ChainWalk::from(anchor.hash);
        let (mut after, mut count) = (EventId(anchor.pruned_through), 0u64);
        loop {
            let batch = next(after)?;
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            let (mut ids, mut users, mut kinds, mut ips, mut records) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::<Option<IpAddr>>::with_capacity(n),
                Vec::with_capacity(n),
            );
            for r in batch {
                let rec: EventRecord = postcard::from_bytes(&r.record)
                    .map_err(|e| refuse(format!("event {}: {e}", r.id.0)))?;
                if r.id <= after || !walk.links(&rec.link) {
                    return Err(refuse(format!(
                        "the file's chain is broken at event {}; run `auditctl verify` on it \
                         first",
                        r.id.0
                    )));
                }
                walk.step(r.id.0, &r.user, &r.record);
                after = r.id;
                ids.push(sql_id(r.id.0));
                users.push(r.user);
                kinds.push(i16::from(r.kind));
                ips.push(r.ip);
                records.push(r.record);
            }
            tx.execute(
                "INSERT INTO events (id, user_name, kind, ip, record) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::SMALLINT[], $4::INET[], \
                 $5::BYTEA[])",
                &[&ids, &users, &kinds, &ips, &records],
            )
            .await
            .map_err(pg_error)?;
            count += n as u64;
            progress(count);
        }
        let ends_on_head = if count == 0 {
            head.appended == anchor.pruned
        } else {
            walk.expected == head.hash && after.0 == head.last_id
        };
        if !ends_on_head || count + anchor.pruned != head.appended {
            return Err(refuse(format!(
                "the file's events do not end on its chain head (event {}, {} appended); run \
                 `auditctl verify` on it first",
                head.last_id, head.appended
            )));
        }
        tx.execute(
            "UPDATE chain SET last_id = $1, head_hash = $2, appended = $3, anchor_hash = $4, \
             pruned_through = $5, pruned = $6 WHERE singleton",
            &[
                &sql_id(head.last_id),
                &head.hash.as_slice(),
                &(head.appended as i64),
                &anchor.hash.as_slice(),
                &sql_id(anchor.pruned_through),
                &(anchor.pruned as i64),
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(count)
    }
}
