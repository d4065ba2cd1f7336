//! Audit events: append (with hash chain, user bucket and indexes, in the
//! caller's write transaction), lookups of single events, and keyset-paginated
//! queries that scan newest first and stop as soon as the page is full.

use redb::{AccessGuard, ReadTransaction, ReadableTable};

use super::bucket::{self, Entry};
use super::commit_log::LoggedEvent;
use super::tables::*;
use super::txn::Tx;
use crate::domain::*;
use crate::store::chain;
use crate::store::chain::EventRecord;
use crate::store::cursor;
use crate::store::error::{QueryError, StoreError};
use crate::store::record_read;

/// Most events one page may examine before it returns what it has, with a
/// cursor to continue: a filter that matches rarely never turns one request
/// into a scan of the whole table.
pub const MAX_SCAN: usize = 20_000;

impl Tx<'_> {
    /// Appends an event: assigns the next id (never below the chain head),
    /// links it to the previous event's hash, adds it to its user's newest
    /// bucket (or starts one) and writes its index entries.
    pub fn append_event(&mut self, ev: NewEvent) -> Result<EventId, StoreError> {
        let linked = chain::extend(&self.head, ev);
        let id = linked.id.0;
        self.store_linked(&linked.user, id, linked.record.kind, &linked.bytes)?;
        self.head = linked.head;
        Ok(linked.id)
    }

    /// Appends an event that [`Tx::append_event`] made before a crash, from
    /// the commit log: the same rows, and the head moved by the same rule.
    /// Whether the log continues this chain is the caller's check, on the
    /// head a batch ends on.
    pub fn append_logged(&mut self, ev: &LoggedEvent) -> Result<(), StoreError> {
        if ev.id <= self.head.last_id {
            return Err(StoreError::Corrupt {
                table: "commit log",
                reason: format!("event {} does not follow {}", ev.id, self.head.last_id),
            });
        }
        self.store_linked(&ev.user, ev.id, ev.kind, &ev.record)?;
        self.head = chain::ChainHead {
            last_id: ev.id,
            hash: chain::chain_hash(&self.head.hash, ev.id, &ev.user, &ev.record),
            appended: self.head.appended + 1,
        };
        Ok(())
    }

    /// Stores an event already linked onto this transaction's head (its
    /// record was logged before the database work started) and moves the
    /// head to `after`, the head the event ends on.
    pub fn append_prelinked(
        &mut self,
        ev: &LoggedEvent,
        after: chain::ChainHead,
    ) -> Result<EventId, StoreError> {
        if ev.id <= self.head.last_id || after.last_id != ev.id {
            return Err(StoreError::Corrupt {
                table: "commit log",
                reason: format!("event {} does not follow {}", ev.id, self.head.last_id),
            });
        }
        self.store_linked(&ev.user, ev.id, ev.kind, &ev.record)?;
        self.head = after;
        Ok(EventId(ev.id))
    }

    fn store_linked(
        &mut self,
        user: &str,
        id: u64,
        kind: u8,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.add_to_bucket(user, id, bytes)?;
        self.events.insert(id, user)?;
        self.events_by_kind.insert((kind, id), ())?;
        Ok(())
    }

    fn add_to_bucket(&mut self, user: &str, id: u64, record: &[u8]) -> Result<(), StoreError> {
        let newest = self
            .events_by_user
            .range((user, 0)..=(user, u64::MAX))?
            .next_back()
            .transpose()?
            .map(|(k, v)| (k.value().1, v.value().to_vec()));
        if let Some((first, mut buf)) = newest {
            // Ids only grow, so the new event belongs after every stored one.
            let offset = id.checked_sub(first).ok_or_else(|| StoreError::Corrupt {
                table: EVENT_RECORDS,
                reason: format!("bucket {first} of {user:?} starts after the new event {id}"),
            })?;
            if buf.len() + bucket::entry_len(offset, record.len()) <= bucket::capacity(user) {
                bucket::push(&mut buf, offset, record);
                self.events_by_user.insert((user, first), buf.as_slice())?;
                return Ok(());
            }
        }
        let mut buf = Vec::with_capacity(bucket::entry_len(0, record.len()));
        bucket::push(&mut buf, 0, record);
        self.events_by_user.insert((user, id), buf.as_slice())?;
        Ok(())
    }
}

/// Builds the public event from its id, user (empty: none) and stored record.
pub(crate) fn to_event(id: u64, user: &str, bytes: &[u8]) -> Result<Event, StoreError> {
    EventRecord::event(id, user, bytes).map_err(|reason| StoreError::Corrupt {
        table: EVENT_RECORDS,
        reason,
    })
}

/// The bucket a lookup read last: its value as redb holds it (no copy) and
/// its entries.
struct Cached<'t> {
    user: String,
    value: AccessGuard<'t, &'static [u8]>,
    entries: Vec<Entry>,
}

/// Finds single events by id in one snapshot (read or write). Keeps the last
/// bucket it read, so walking the trail in time order reads each bucket once
/// per run of its user's events.
pub(crate) struct Lookup<'t, E, U> {
    events: &'t E,
    by_user: &'t U,
    cached: Option<Cached<'t>>,
    /// Buffers of the previous bucket, reused for the next one.
    spare: (String, Vec<Entry>),
}

impl<'t, E, U> Lookup<'t, E, U>
where
    E: ReadableTable<u64, &'static str>,
    U: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    pub fn new(events: &'t E, by_user: &'t U) -> Self {
        Lookup {
            events,
            by_user,
            cached: None,
            spare: (String::new(), Vec::new()),
        }
    }

    /// The user (empty: none) and stored record of event `id`, if both exist.
    /// Pass `user` when the caller already read it from `events`.
    pub fn find(
        &mut self,
        id: u64,
        user: Option<&str>,
    ) -> Result<Option<(&str, &[u8])>, StoreError> {
        let read;
        let user = match user {
            Some(u) => u,
            None => match self.events.get(id)? {
                Some(g) => {
                    read = g;
                    read.value()
                }
                None => return Ok(None),
            },
        };
        let hit = self.cached.as_ref().is_some_and(|c| {
            c.user == user
                && c.entries.first().is_some_and(|e| e.id <= id)
                && c.entries.last().is_some_and(|e| e.id >= id)
        });
        if !hit {
            if let Some(old) = self.cached.take() {
                self.spare = (old.user, old.entries);
            }
            let by_user: &'t U = self.by_user;
            let Some(row) = by_user.range((user, 0)..=(user, id))?.next_back() else {
                return Ok(None);
            };
            let (k, value) = row?;
            let (mut name, mut entries) = std::mem::take(&mut self.spare);
            bucket::parse_into(k.value().1, value.value(), &mut entries)?;
            user.clone_into(&mut name);
            self.cached = Some(Cached {
                user: name,
                value,
                entries,
            });
        }
        let Some(c) = self.cached.as_ref() else {
            return Ok(None);
        };
        Ok(c.entries.binary_search_by_key(&id, |e| e.id).ok().map(|i| {
            let e = &c.entries[i];
            (c.user.as_str(), &c.value.value()[e.start..e.end])
        }))
    }
}

/// Ids in `[lo, hi)`, newest first, from one source: boxed so the planner can
/// pick the index at run time.
type IdIter<'a> = Box<dyn Iterator<Item = Result<u64, redb::StorageError>> + 'a>;

/// Merges several newest-first id streams into one newest-first stream.
struct MergeDesc<'a> {
    heads: Vec<(Option<u64>, IdIter<'a>)>,
    primed: bool,
}

impl Iterator for MergeDesc<'_> {
    type Item = Result<u64, redb::StorageError>;
    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for (head, it) in self.heads.iter_mut() {
                match it.next() {
                    Some(Ok(id)) => *head = Some(id),
                    Some(Err(e)) => return Some(Err(e)),
                    None => *head = None,
                }
            }
        }
        let (idx, id) = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, (h, _))| h.map(|id| (i, id)))
            .max_by_key(|&(_, id)| id)?;
        let (head, it) = &mut self.heads[idx];
        match it.next() {
            Some(Ok(next)) => *head = Some(next),
            Some(Err(e)) => return Some(Err(e)),
            None => *head = None,
        }
        Some(Ok(id))
    }
}

/// Collects one page from the events a plan offers, newest first.
struct Collect<'f> {
    filter: &'f EventFilter,
    kinds: Option<&'f [EventKind]>,
    /// The plan does not guarantee the kind: check it per event.
    check_kind: bool,
    /// The plan alone decides a match (no per-event filter is left), so a
    /// further event proves a next page without being read.
    index_decides: bool,
    limit: usize,
    scanned: usize,
    out: Vec<Event>,
    next_cursor: Option<u64>,
    agents: record_read::Agents,
}

impl Collect<'_> {
    /// Called before an event is read: true when the page is already done.
    fn done_before(&mut self, id: u64) -> bool {
        if self.index_decides && self.out.len() == self.limit {
            self.next_cursor = Some(self.out.last().map_or(id, |e| e.id.0));
            return true;
        }
        false
    }

    /// Offers one event (its id was examined). True when the page is done.
    /// The filters look at the record's head; the rest is decoded only for
    /// an event the page keeps.
    fn offer(&mut self, id: u64, user: &str, record: &[u8]) -> Result<bool, StoreError> {
        let corrupt = |reason| StoreError::Corrupt {
            table: EVENT_RECORDS,
            reason,
        };
        let h = record_read::head(id, record).map_err(corrupt)?;
        let kind_ok = !self.check_kind || self.kinds.is_none_or(|k| k.contains(&h.kind));
        if kind_ok && self.filter.ip.is_none_or(|ip| h.ip == Some(ip)) {
            if self.out.len() == self.limit {
                // A further match exists, so there is a next page.
                self.next_cursor = Some(self.out.last().map_or(id, |e| e.id.0));
                return Ok(true);
            }
            let ev = record_read::finish(id, user, record, h, &mut self.agents).map_err(corrupt)?;
            self.out.push(ev);
        }
        Ok(self.budget_spent(id))
    }

    /// Counts one examined id; true when the scan budget is spent (the next
    /// page then continues below it).
    fn budget_spent(&mut self, id: u64) -> bool {
        self.scanned += 1;
        if self.scanned >= MAX_SCAN {
            self.next_cursor = Some(id);
            return true;
        }
        false
    }
}

/// Runs an audit query against one read snapshot. `limit` is clamped to
/// `1..=MAX_LIMIT`.
pub(crate) fn query(
    txn: &ReadTransaction,
    filter: &EventFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<EventPage, QueryError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let Some(cursor::Window { lo, hi, kinds }) = cursor::window(filter, cursor)? else {
        return Ok(EventPage {
            events: Vec::new(),
            next_cursor: None,
        });
    };

    let by_user = txn.open_table(EVENTS_BY_USER).map_err(StoreError::from)?;

    // Plan: the user's buckets when a user is given (kinds checked per event),
    // else the kind index (merged across kinds), else the time order itself.
    let user_plan = filter.user.is_some();
    let mut c = Collect {
        filter,
        kinds: kinds.as_deref(),
        check_kind: user_plan,
        index_decides: filter.ip.is_none() && !(user_plan && kinds.is_some()),
        limit,
        scanned: 0,
        out: Vec::with_capacity(limit.min(128)),
        next_cursor: None,
        agents: record_read::Agents::default(),
    };
    if let Some(user) = filter.user.as_deref() {
        // Room for a typical full bucket's entries from the start.
        let mut entries = Vec::with_capacity(128);
        'buckets: for row in by_user.range((user, 0)..(user, hi))?.rev() {
            let (k, v) = row?;
            let first = k.value().1;
            let bytes = v.value();
            bucket::parse_into(first, bytes, &mut entries)?;
            for e in entries.iter().rev() {
                if e.id >= hi {
                    continue;
                }
                if e.id < lo
                    || c.done_before(e.id)
                    || c.offer(e.id, user, &bytes[e.start..e.end])?
                {
                    break 'buckets;
                }
            }
            if first <= lo {
                break;
            }
        }
    } else {
        // Only these plans need the other tables.
        let events = txn.open_table(EVENTS).map_err(StoreError::from)?;
        let by_kind = txn.open_table(EVENTS_BY_KIND).map_err(StoreError::from)?;
        let ids: IdIter<'_> = if let Some(kinds) = &kinds {
            let mut heads = Vec::with_capacity(kinds.len());
            for k in kinds {
                let it: IdIter<'_> = Box::new(
                    by_kind
                        .range((k.code(), lo)..(k.code(), hi))?
                        .rev()
                        .map(|r| r.map(|(k, _)| k.value().1)),
                );
                heads.push((None, it));
            }
            Box::new(MergeDesc {
                heads,
                primed: false,
            })
        } else {
            Box::new(
                events
                    .range(lo..hi)?
                    .rev()
                    .map(|r| r.map(|(k, _)| k.value())),
            )
        };
        let mut lookup = Lookup::new(&events, &by_user);
        for id in ids {
            let id = id?;
            if c.done_before(id) {
                break;
            }
            let done = match lookup.find(id, None)? {
                Some((user, record)) => c.offer(id, user, record)?,
                // An index entry without its event: `check` reports it.
                None => c.budget_spent(id),
            };
            if done {
                break;
            }
        }
    }
    Ok(EventPage {
        next_cursor: c.next_cursor.map(|id| cursor::encode(id, filter)),
        events: c.out,
    })
}
