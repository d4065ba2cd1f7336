//! Audit events: append (with hash chain and indexes, in the caller's write
//! transaction) and keyset-paginated queries that scan an index newest first
//! and stop as soon as the page is full.

use redb::ReadTransaction;
use sha2::{Digest, Sha256};

use super::codec::{decode, encode};
use super::cursor;
use super::error::{QueryError, StoreError};
use super::records::{ChainHead, EventRecord};
use super::tables::*;
use super::txn::Tx;
use super::types::*;

/// Most index entries one page may examine before it returns what it has, with
/// a cursor to continue: a filter that matches rarely never turns one request
/// into a scan of the whole table.
pub const MAX_SCAN: usize = 20_000;

/// Hash of one event as it is chained: SHA-256 over the previous hash (the
/// anchor's for the oldest kept event), the id and the stored bytes.
pub(crate) fn chain_hash(prev: &[u8; 32], id: u64, stored: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update(stored);
    h.finalize().into()
}

/// The stored link to a previous chain hash: its first 8 bytes.
pub(crate) fn link_of(hash: &[u8; 32]) -> [u8; 8] {
    let mut link = [0; 8];
    link.copy_from_slice(&hash[..8]);
    link
}

fn sanitize(mut ev: NewEvent) -> NewEvent {
    ev.user = ev.user.map(|u| truncate(u, MAX_USER));
    ev.user_agent = ev.user_agent.map(|u| truncate(u, MAX_USER_AGENT));
    ev.details.truncate(MAX_DETAILS);
    for (k, v) in ev.details.iter_mut() {
        *k = truncate(std::mem::take(k), MAX_DETAIL_KEY);
        *v = truncate(std::mem::take(v), MAX_DETAIL_VALUE);
    }
    ev
}

impl Tx<'_> {
    /// Appends an event: assigns the next id (never below the chain head), links
    /// it to the previous event's hash, and writes its index entries.
    pub fn append_event(&mut self, ev: NewEvent) -> Result<EventId, StoreError> {
        let ev = sanitize(ev);
        let mut id = EventId::from_micros(ev.at_us).0;
        if id <= self.head.last_id {
            id = self.head.last_id + 1;
        }
        let rec = EventRecord {
            kind: ev.kind.code(),
            link: link_of(&self.head.hash),
            user: ev.user,
            ip: ev.ip,
            user_agent: ev.user_agent,
            session: ev.session.map(|s| s.to_string()),
            details: ev.details,
        };
        let bytes = encode(&rec);
        self.events.insert(id, bytes.as_slice())?;
        if let Some(user) = rec.user.as_deref() {
            self.events_by_user.insert((user, id), ())?;
        }
        self.events_by_kind.insert((rec.kind, id), ())?;
        self.head = ChainHead {
            last_id: id,
            hash: chain_hash(&self.head.hash, id, &bytes),
            appended: self.head.appended + 1,
        };
        Ok(EventId(id))
    }
}

pub(crate) fn to_event(id: u64, bytes: &[u8]) -> Result<Event, StoreError> {
    let rec: EventRecord = decode("events", bytes)?;
    let kind = EventKind::from_code(rec.kind).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        reason: format!("event {id}: unknown kind code {}", rec.kind),
    })?;
    Ok(Event {
        id: EventId(id),
        time_us: EventId(id).micros(),
        kind,
        user: rec.user,
        ip: rec.ip,
        user_agent: rec.user_agent,
        session: rec.session,
        details: rec.details,
    })
}

/// The kinds a query must match, after combining `kinds` and `outcome`.
/// `None` means every kind; an empty list means nothing can match.
fn wanted_kinds(filter: &EventFilter) -> Option<Vec<EventKind>> {
    let mut kinds: Vec<EventKind> = if filter.kinds.is_empty() {
        match filter.outcome {
            None => return None,
            Some(_) => EventKind::ALL.to_vec(),
        }
    } else {
        filter.kinds.clone()
    };
    if let Some(o) = filter.outcome {
        kinds.retain(|k| k.outcome() == Some(o));
    }
    kinds.sort();
    kinds.dedup();
    Some(kinds)
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

/// Runs an audit query against one read snapshot. `limit` is clamped to
/// `1..=MAX_LIMIT`.
pub(crate) fn query(
    txn: &ReadTransaction,
    filter: &EventFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<EventPage, QueryError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let lo = filter
        .since_us
        .map(|t| EventId::from_micros(t).0)
        .unwrap_or(0);
    let mut hi = filter
        .until_us
        .map(|t| EventId::from_micros(t).0)
        .unwrap_or(u64::MAX);
    if let Some(c) = cursor {
        hi = hi.min(cursor::decode(c, filter)?);
    }
    let empty = EventPage {
        events: Vec::new(),
        next_cursor: None,
    };
    if lo >= hi {
        return Ok(empty);
    }
    let kinds = wanted_kinds(filter);
    if kinds.as_ref().is_some_and(|k| k.is_empty()) {
        return Ok(empty);
    }

    let events = txn.open_table(EVENTS).map_err(StoreError::from)?;
    let by_user = txn.open_table(EVENTS_BY_USER).map_err(StoreError::from)?;
    let by_kind = txn.open_table(EVENTS_BY_KIND).map_err(StoreError::from)?;

    // Plan: the user index when a user is given (kinds checked per row), else the
    // kind index (merged across kinds), else the events table itself.
    let user_plan = filter.user.is_some();
    let ids: IdIter<'_> = if let Some(user) = filter.user.as_deref() {
        Box::new(
            by_user
                .range((user, lo)..(user, hi))?
                .rev()
                .map(|r| r.map(|(k, _)| k.value().1)),
        )
    } else if let Some(kinds) = &kinds {
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

    let mut out: Vec<Event> = Vec::with_capacity(limit.min(128));
    let mut scanned = 0usize;
    for id in ids {
        let id = id?;
        scanned += 1;
        let Some(bytes) = events.get(id)? else {
            continue;
        };
        let ev = to_event(id, bytes.value())?;
        if event_matches(&ev, filter, kinds.as_deref(), user_plan) {
            if out.len() == limit {
                // A further match exists, so there is a next page.
                let last = out.last().map(|e| e.id.0).unwrap_or(id);
                return Ok(EventPage {
                    events: out,
                    next_cursor: Some(cursor::encode(last, filter)),
                });
            }
            out.push(ev);
        }
        if scanned >= MAX_SCAN {
            // Budget spent: continue below the last examined id next time.
            return Ok(EventPage {
                events: out,
                next_cursor: Some(cursor::encode(id, filter)),
            });
        }
    }
    Ok(EventPage {
        events: out,
        next_cursor: None,
    })
}

fn event_matches(
    ev: &Event,
    filter: &EventFilter,
    kinds: Option<&[EventKind]>,
    user_plan: bool,
) -> bool {
    // The kind index guarantees the kind unless the user index (or the table) was scanned.
    if user_plan && kinds.is_some_and(|k| !k.contains(&ev.kind)) {
        return false;
    }
    filter.ip.is_none_or(|ip| ev.ip == Some(ip))
}
