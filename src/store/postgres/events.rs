//! Appending to the chain and reading it back. Every read is a keyset scan
//! on the primary key or one of the two indexes, newest or oldest first,
//! and stops at its limit.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Outboxed, PgAudit, id_of, pg_error, sql_id};
use crate::domain::{Event, EventFilter, EventId, EventKind, EventPage, MAX_LIMIT};
use crate::store::chain::{self, ChainHash, ChainHead, ChainWalk, EventRecord};
use crate::store::cursor;
use crate::store::error::{QueryError, StoreError};
use crate::store::reports::{AuditCounts, CheckReport, StoreStats};

/// Rows a verification reads per query.
const WALK_BATCH: i64 = 10_000;

/// Problems a verification lists at most (it counts them all).
const MAX_PROBLEMS: usize = 20;

/// What a verification of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgCheck {
    /// Events stored.
    pub events: u64,
    /// Events ever appended, as the head counts them.
    pub appended: u64,
    /// Events removed by retention, as the anchor counts them.
    pub pruned: u64,
    /// Hex SHA-256 of the newest event, as the head records it.
    pub chain_head: String,
    /// The first event at which the chain breaks, if it does.
    pub first_bad_event: Option<u64>,
    /// Problems found, counted.
    pub problem_count: usize,
    /// Up to [`MAX_PROBLEMS`] of them, in the order found.
    pub problems: Vec<String>,
}

impl PgCheck {
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    /// As the store's report, for tools that print either: the live-state
    /// counts, which PostgreSQL does not hold, are zero.
    pub fn into_report(self) -> CheckReport {
        CheckReport {
            events: self.events,
            events_appended: self.appended,
            events_pruned: self.pruned,
            chain_head: self.chain_head,
            first_bad_event: self.first_bad_event,
            problem_count: self.problem_count,
            problems: self.problems,
            ..CheckReport::default()
        }
    }

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

fn hash_of(bytes: &[u8], what: &str) -> Result<ChainHash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table: "chain",
        reason: format!("{what} is {} bytes, not 32", bytes.len()),
    })
}

pub(super) fn event_of(row: &tokio_postgres::Row) -> Result<Event, StoreError> {
    let id = id_of(row.get(0));
    let user: &str = row.get(1);
    let record: &[u8] = row.get(2);
    EventRecord::event(id, user, record).map_err(|reason| StoreError::Corrupt {
        table: "events",
        reason,
    })
}

impl PgAudit {
    /// The chain's head: its newest event and hash, and the events ever
    /// appended.
    pub async fn head(&self) -> Result<ChainHead, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT last_id, head_hash, appended FROM chain WHERE singleton",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(ChainHead {
            last_id: id_of(row.get(0)),
            hash: hash_of(row.get(1), "the head hash")?,
            appended: row.get::<_, i64>(2) as u64,
        })
    }

    /// Chains `batch` in one transaction, in its order: each event gets the
    /// next id from its own time (`NewEvent::at_us`, the time of the change
    /// it records) and links to the one before. An entry whose `source` is
    /// already chained, or repeats an earlier one in the batch, is skipped:
    /// its place in the answer is `None`. Concurrent batches (two nodes'
    /// chainers in a handover) take turns on the head's row lock.
    pub async fn append_batch(
        &self,
        batch: Vec<Outboxed>,
    ) -> Result<Vec<Option<EventId>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let row = tx
            .query_one(
                "SELECT last_id, head_hash, appended FROM chain WHERE singleton FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let mut head = ChainHead {
            last_id: id_of(row.get(0)),
            hash: hash_of(row.get(1), "the head hash")?,
            appended: row.get::<_, i64>(2) as u64,
        };
        let sources: Vec<&str> = batch.iter().filter_map(|o| o.source.as_deref()).collect();
        let mut seen: HashSet<String> = if sources.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "SELECT source FROM events WHERE source = ANY($1)",
                &[&sources],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
        };
        let n = batch.len();
        let (mut ids, mut users, mut kinds, mut ips, mut records, mut srcs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::<Option<IpAddr>>::with_capacity(n),
            Vec::with_capacity(n),
            Vec::<Option<String>>::with_capacity(n),
        );
        let mut out = Vec::with_capacity(n);
        for o in batch {
            if let Some(s) = &o.source
                && !seen.insert(s.clone())
            {
                out.push(None);
                continue;
            }
            let linked = chain::extend(&head, o.event);
            head = linked.head;
            out.push(Some(linked.id));
            ids.push(sql_id(linked.id.0));
            users.push(linked.user);
            kinds.push(i16::from(linked.record.kind));
            ips.push(linked.record.ip);
            records.push(linked.bytes);
            srcs.push(o.source);
        }
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO events (id, user_name, kind, ip, record, source) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::SMALLINT[], $4::INET[], \
                 $5::BYTEA[], $6::TEXT[])",
                &[&ids, &users, &kinds, &ips, &records, &srcs],
            )
            .await
            .map_err(pg_error)?;
            tx.execute(
                "UPDATE chain SET last_id = $1, head_hash = $2, appended = $3 WHERE singleton",
                &[
                    &sql_id(head.last_id),
                    &head.hash.as_slice(),
                    &(head.appended as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(out)
    }

    /// One page of events matching `filter`, newest first: `limit` clamped
    /// to `1..=MAX_LIMIT`, `cursor` a `next_cursor` of the same filter, as
    /// the redb backend pages them.
    pub async fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, QueryError> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let Some(w) = cursor::window(filter, cursor)? else {
            return Ok(EventPage {
                events: Vec::new(),
                next_cursor: None,
            });
        };
        let kinds: Option<Vec<i16>> = w
            .kinds
            .map(|ks| ks.iter().map(|k| i16::from(k.code())).collect());
        let (lo, hi) = (sql_id(w.lo), sql_id(w.hi));
        let fetch = limit as i64 + 1;
        let mut sql =
            String::from("SELECT id, user_name, record FROM events WHERE id >= $1 AND id < $2");
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&lo, &hi];
        if let Some(u) = &filter.user {
            params.push(u);
            sql.push_str(&format!(" AND user_name = ${}", params.len()));
        }
        if let Some(k) = &kinds {
            params.push(k);
            sql.push_str(&format!(" AND kind = ANY(${})", params.len()));
        }
        if let Some(ip) = &filter.ip {
            params.push(ip);
            sql.push_str(&format!(" AND ip = ${}", params.len()));
        }
        params.push(&fetch);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await.map_err(pg_error)?;
        let mut events = rows.iter().map(event_of).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| cursor::encode(e.id.0, filter))
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// Events with ids above `after`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        after: EventId,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if after.0 == u64::MAX {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, user_name, record FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                &[&sql_id(after.0), &(limit.min(MAX_LIMIT * 10) as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(event_of).collect()
    }

    /// The id the chain gave the event of the outbox entry `source`, once
    /// it is chained (`None` before, or when it never was: an entry set
    /// aside as unreadable). One lookup on the `source` column's unique
    /// index.
    pub async fn id_of_source(&self, source: &str) -> Result<Option<EventId>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id FROM events WHERE source = $1", &[&source])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| EventId(id_of(r.get(0)))))
    }

    /// Events per kind and the `top` busiest users, counted on the two
    /// indexes.
    pub async fn audit_counts(&self, top: usize) -> Result<AuditCounts, StoreError> {
        let client = self.client().await?;
        let mut counts = AuditCounts::default();
        for r in client
            .query("SELECT kind, count(*) FROM events GROUP BY kind", &[])
            .await
            .map_err(pg_error)?
        {
            let n = r.get::<_, i64>(1) as u64;
            match u8::try_from(r.get::<_, i16>(0))
                .ok()
                .and_then(EventKind::from_code)
            {
                Some(k) => counts.by_kind.push((k, n)),
                None => counts.unknown_kinds += n,
            }
        }
        counts
            .by_kind
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let users = client
            .query_one(
                "SELECT count(DISTINCT user_name) FILTER (WHERE user_name <> ''), \
                 count(*) FILTER (WHERE user_name = '') FROM events",
                &[],
            )
            .await
            .map_err(pg_error)?;
        counts.users = users.get::<_, i64>(0) as u64;
        counts.without_user = users.get::<_, i64>(1) as u64;
        counts.top_users = client
            .query(
                "SELECT user_name, count(*) AS n FROM events WHERE user_name <> '' \
                 GROUP BY user_name ORDER BY n DESC, user_name COLLATE \"C\" LIMIT $1",
                &[&(top as i64)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect();
        Ok(counts)
    }

    /// Facts for `auditctl stats`: the schema version, the events present,
    /// the oldest and newest, and the bytes of the events table with its
    /// indexes (as `file_bytes`). The live-state counts are zero: that
    /// state is not kept here.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT version FROM gatehouse_schema), count(*), min(id), max(id), \
                 pg_total_relation_size('events') FROM events",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(StoreStats {
            schema_version: row.get::<_, Option<i32>>(0).unwrap_or(0).max(0) as u32,
            events: row.get::<_, i64>(1) as u64,
            oldest_event: row.get::<_, Option<i64>>(2).map(|i| EventId(id_of(i))),
            newest_event: row.get::<_, Option<i64>>(3).map(|i| EventId(id_of(i))),
            file_bytes: row.get::<_, i64>(4) as u64,
            sessions: 0,
            bans: 0,
            tokens: 0,
        })
    }

    /// Walks the whole chain from its anchor, oldest first, as `auditctl
    /// verify` does on a file: each record must link to the hash before
    /// it, and the last hash must be the head's.
    pub async fn check(&self) -> Result<PgCheck, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT last_id, head_hash, appended, anchor_hash, pruned FROM chain WHERE singleton",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let head_hash = hash_of(row.get(1), "the head hash")?;
        let appended = row.get::<_, i64>(2) as u64;
        let pruned = row.get::<_, i64>(4) as u64;
        let mut walk = ChainWalk::from(hash_of(row.get(3), "the anchor hash")?);
        let mut report = PgCheck {
            events: 0,
            appended,
            pruned,
            chain_head: chain::hex(&head_hash),
            first_bad_event: None,
            problem_count: 0,
            problems: Vec::new(),
        };
        // The smallest stored value is u64 id 0, which no event has
        // (`chain::extend` gives the first event id 1 at the least).
        let mut after = i64::MIN;
        loop {
            let rows = client
                .query(
                    "SELECT id, user_name, record FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&after, &WALK_BATCH],
                )
                .await
                .map_err(pg_error)?;
            for r in &rows {
                let stored: i64 = r.get(0);
                let id = id_of(stored);
                let user: &str = r.get(1);
                let record: &[u8] = r.get(2);
                after = stored;
                report.events += 1;
                match postcard::from_bytes::<EventRecord>(record) {
                    Ok(rec) => {
                        if !walk.links(&rec.link) && report.first_bad_event.is_none() {
                            report.first_bad_event = Some(id);
                            report.problem(format!(
                                "hash chain broken at event {id}: an event before it was \
                                 changed, removed or reordered"
                            ));
                        }
                    }
                    Err(e) => {
                        report.first_bad_event.get_or_insert(id);
                        report.problem(format!("event {id}: unreadable record: {e}"));
                    }
                }
                walk.step(id, user, record);
            }
            if (rows.len() as i64) < WALK_BATCH {
                break;
            }
        }
        if report.first_bad_event.is_none() && report.events > 0 && walk.expected != head_hash {
            report.first_bad_event = Some(id_of(after));
            report.problem(format!(
                "hash chain head does not match the newest event {}: events after it were \
                 removed or it was changed",
                id_of(after)
            ));
        }
        if appended != pruned + report.events {
            report.problem(format!(
                "event count mismatch: {appended} appended, {pruned} pruned, {} present",
                report.events
            ));
        }
        Ok(report)
    }
}
