//! Retention on the store side: removing the oldest audit events in bounded
//! batches, with their index entries, in one write transaction, while moving
//! the hash-chain anchor forward so that [`Store::check`] still verifies the
//! events that remain.
//!
//! Pruning never hides tampering: each removed event must link to the anchor
//! (or to the event removed before it). If the chain is already broken among
//! the events to remove, nothing is removed and the error names the event.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::Store;
use super::bucket;
use super::check::read_head;
use super::codec::{decode, encode};
use super::events::{Lookup, to_event};
use super::tables::*;
use super::txn::Tx;
use crate::domain::{Event, EventId};
use crate::store::chain::ChainWalk;
use crate::store::chain::{ChainAnchor, EventRecord};
use crate::store::error::StoreError;
use crate::store::reports::PruneReport;

fn chain_broken(id: u64) -> StoreError {
    StoreError::Corrupt {
        table: EVENT_RECORDS,
        reason: format!(
            "hash chain broken at event {id}; refusing to prune past it (run `auditctl verify`)"
        ),
    }
}

impl Tx<'_> {
    /// Removes up to `limit` of the oldest events with ids at or below
    /// `through`, with their records and index entries, and moves the chain
    /// anchor to the newest one removed.
    pub fn prune_events(
        &mut self,
        through: EventId,
        limit: usize,
    ) -> Result<PruneReport, StoreError> {
        let limit = limit.max(1);
        let mut rows: Vec<(u64, String)> = self
            .events
            .range(..=through.0)?
            .take(limit + 1)
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_string())))
            .collect::<Result<_, _>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let Some(&(last_id, _)) = rows.last() else {
            return Ok(PruneReport::default());
        };
        let anchor: ChainAnchor = match self.meta.get(CHAIN_ANCHOR_KEY)? {
            Some(g) => decode("meta", g.value())?,
            None => ChainAnchor::default(),
        };
        let mut walk = ChainWalk::from(anchor.hash);
        let mut kinds = Vec::with_capacity(rows.len());
        {
            let mut lookup = Lookup::new(&self.events, &self.events_by_user);
            for (id, user) in &rows {
                let Some((_, record)) = lookup.find(*id, Some(user))? else {
                    return Err(chain_broken(*id));
                };
                let rec: EventRecord = decode(EVENT_RECORDS, record)?;
                if !walk.links(&rec.link) {
                    return Err(chain_broken(*id));
                }
                walk.step(*id, user, record);
                kinds.push(rec.kind);
            }
        }
        // Ids ascend, so the last one seen per user is that user's newest removed.
        let mut newest_of: BTreeMap<&str, u64> = BTreeMap::new();
        for ((id, user), kind) in rows.iter().zip(kinds) {
            self.events.remove(*id)?;
            self.events_by_kind.remove((kind, *id))?;
            newest_of.insert(user, *id);
        }
        for (user, newest) in newest_of {
            self.drop_oldest_records(user, newest)?;
        }
        let anchor = ChainAnchor {
            hash: walk.expected,
            pruned_through: last_id,
            pruned: anchor.pruned + rows.len() as u64,
        };
        self.meta
            .insert(CHAIN_ANCHOR_KEY, encode(&anchor).as_slice())?;
        Ok(PruneReport {
            pruned: rows.len() as u64,
            through: Some(EventId(last_id)),
            more,
        })
    }

    /// Removes the records of `user` with ids up to `through` from the front
    /// of their buckets: whole buckets go, a partly kept one is re-keyed by
    /// its first kept event.
    fn drop_oldest_records(&mut self, user: &str, through: u64) -> Result<(), StoreError> {
        loop {
            let oldest = self
                .events_by_user
                .range((user, 0)..=(user, through))?
                .next()
                .transpose()?
                .map(|(k, v)| (k.value().1, v.value().to_vec()));
            let Some((first, bytes)) = oldest else {
                return Ok(());
            };
            let entries = bucket::parse(first, &bytes)?;
            let keep = entries.partition_point(|e| e.id <= through);
            self.events_by_user.remove((user, first))?;
            if let Some((key, rest)) = bucket::rebuild(&bytes, &entries[keep..]) {
                self.events_by_user.insert((user, key), rest.as_slice())?;
                return Ok(());
            }
        }
    }
}

impl Store {
    /// The oldest events with ids below `below`, oldest first, at most `limit`:
    /// what the next prune step would remove, for archiving it first. Fails
    /// if they do not link to the chain anchor, as the prune itself would.
    pub fn oldest_events(&self, below: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.read()?;
        let (_, anchor) = read_head(&txn)?;
        let events = txn.open_table(EVENTS)?;
        let by_user = txn.open_table(EVENTS_BY_USER)?;
        let mut lookup = Lookup::new(&events, &by_user);
        let mut walk = ChainWalk::from(anchor.hash);
        let mut out = Vec::new();
        for row in events.range(..below.0)?.take(limit) {
            let (k, v) = row?;
            let (id, user) = (k.value(), v.value());
            let Some((_, record)) = lookup.find(id, Some(user))? else {
                return Err(chain_broken(id));
            };
            let rec: EventRecord = decode(EVENT_RECORDS, record)?;
            if !walk.links(&rec.link) {
                return Err(chain_broken(id));
            }
            walk.step(id, user, record);
            out.push(to_event(id, user, record)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::redb::tests::temp_store;
    use crate::store::*;

    fn append(store: &Store, n: u64, start_us: u64) {
        let ops = (0..n)
            .map(|i| {
                let ev = NewEvent::at(EventKind::LoginSuccess, start_us + i * 10);
                Op::Append(if i % 3 == 0 {
                    ev
                } else {
                    ev.user(format!("u{}", i % 4))
                })
            })
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
    }

    fn prune(store: &Store, through: EventId, limit: usize) -> PruneReport {
        match store.apply(Op::Prune { through, limit }).unwrap() {
            OpOutput::Pruned(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prune_in_batches_keeps_check_passing() {
        let (_d, store) = temp_store();
        append(&store, 100, 1_000);
        let cutoff = EventId::from_micros(1_000 + 60 * 10);
        let through = EventId(cutoff.0 - 1);
        let first = prune(&store, through, 25);
        assert_eq!((first.pruned, first.more), (25, true));
        assert!(store.check().unwrap().is_ok(), "{:?}", store.check());
        let mut total = first.pruned;
        loop {
            let r = prune(&store, through, 25);
            total += r.pruned;
            if !r.more {
                break;
            }
        }
        assert_eq!(total, 60);
        let report = store.check().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.events, report.events_pruned), (40, 60));
        // Nothing older than the cutoff is left, in the table or an index.
        assert!(store.oldest_events(cutoff, 10).unwrap().is_empty());
        let page = store
            .query_events(&EventFilter::default(), 1_000, None)
            .unwrap();
        assert_eq!(page.events.len(), 40);
        // New events still chain on.
        append(&store, 5, 5_000);
        assert!(store.check().unwrap().is_ok());
    }

    #[test]
    fn prune_everything_then_append() {
        let (_d, store) = temp_store();
        append(&store, 10, 1_000);
        let r = prune(&store, EventId(u64::MAX), 1_000);
        assert_eq!((r.pruned, r.more), (10, false));
        assert!(store.check().unwrap().is_ok(), "{:?}", store.check());
        append(&store, 3, 9_000);
        let report = store.check().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events, 3);
    }

    #[test]
    fn a_broken_chain_is_neither_archived_nor_pruned() {
        let (dir, store) = temp_store();
        append(&store, 20, 1_000);
        let ids: Vec<EventId> = store
            .oldest_events(EventId(u64::MAX), 100)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let path = store.path().to_path_buf();
        store.close().unwrap();
        testing::edit_event_details(&path, ids[3].0, "forged", "yes").unwrap();
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let err = store.oldest_events(EventId(u64::MAX), 100).unwrap_err();
        assert!(err.to_string().contains(&ids[4].to_string()), "{err}");
        let err = store
            .apply(Op::Prune {
                through: ids[10],
                limit: 100,
            })
            .unwrap_err();
        assert!(err.to_string().contains("refusing to prune"), "{err}");
        let archive = dir.path().join("archive");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
        let backend = crate::store::redb::RedbBackend::new(store.clone(), writer);
        let r = rt.block_on(crate::retention::run_retention(
            &backend,
            Some(&archive),
            std::time::Duration::from_secs(1),
            10_000_000,
        ));
        assert!(r.is_err());
        drop(backend);
        task.shutdown_blocking().unwrap();
        assert!(!archive.exists() || std::fs::read_dir(&archive).unwrap().next().is_none());
        assert_eq!(store.check().unwrap().events, 20);
    }

    #[test]
    fn prune_of_nothing_is_a_no_op() {
        let (_d, store) = temp_store();
        assert_eq!(prune(&store, EventId(5), 10), PruneReport::default());
        assert!(store.check().unwrap().is_ok());
    }
}
