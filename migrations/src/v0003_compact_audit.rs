//! Version 3: audit records stored in per-user buckets, smaller records, and a
//! fixed-width kind index.
//!
//! Frozen. The three audit tables of versions 1-2 (`events`, `events_by_user`,
//! `events_by_kind`) are replaced by:
//! - `audit_events`: event id -> user name (empty for none): the time order;
//! - `audit_by_user`: `(user name, id of the bucket's first event)` -> bucket:
//!   the user's records, oldest first, each `varint(id - first id)
//!   varint(len) record`; a bucket grows by appending until one more record
//!   would take it past `3968 - user name length` bytes;
//! - `audit_by_kind`: `(kind code, event id)` -> `()`.
//!
//! Records: the kind is a one-byte code ([`KIND_CODES`]) instead of its name;
//! the user is the bucket's key; the 32-byte hash of the previous event becomes
//! an 8-byte `link` (the first 8 bytes of the previous chain hash). The chain
//! hash stays 256 bits, now over the previous hash, the id, the user and the
//! record: `h(i) = SHA-256(h(i-1) || id as big-endian u64 || user length as
//! big-endian u32 || user || record)`. The link says where a break is; the
//! head says whether there is one.
//!
//! Every event is rewritten in one pass, oldest first. The chain is re-hashed
//! from the anchor (whose stored hash stays the starting value), and a break in
//! the old chain stays a break: the event after it gets a link that cannot
//! match, and a head that did not match the newest event still does not. The
//! upgrade never launders tampering into a valid chain.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{META, MigrationError};

const OLD_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const OLD_BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_user");
const OLD_BY_KIND: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_kind");
const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("audit_events");
const BY_USER: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit_by_user");
const BY_KIND: TableDefinition<(u8, u64), ()> = TableDefinition::new("audit_by_kind");
const CHAIN_HEAD_KEY: &str = "chain_head";
const CHAIN_ANCHOR_KEY: &str = "chain_anchor";

/// Event kind names and their one-byte codes as of version 3. Code 0 is never
/// assigned, so a zeroed byte is not a valid kind.
pub const KIND_CODES: [(&str, u8); 15] = [
    ("login.success", 1),
    ("login.failure", 2),
    ("login.rejected", 3),
    ("logout", 4),
    ("session.created", 5),
    ("session.revoked", 6),
    ("session.expired", 7),
    ("session.evicted", 8),
    ("ban.added", 9),
    ("ban.lifted", 10),
    ("server.started", 11),
    ("server.stopped", 12),
    ("backup.created", 13),
    ("config.reloaded", 14),
    ("retention.pruned", 15),
];

/// Events rewritten per read of the old table.
const CHUNK: usize = 4_096;

#[derive(Deserialize)]
struct EventRecordV2 {
    kind: String,
    user: Option<String>,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    session: Option<String>,
    details: Vec<(String, String)>,
    prev_hash: [u8; 32],
}

#[derive(Serialize)]
struct EventRecordV3 {
    kind: u8,
    link: [u8; 8],
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    session: Option<String>,
    details: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize, Default)]
struct ChainHead {
    last_id: u64,
    hash: [u8; 32],
    appended: u64,
}

#[derive(Deserialize, Default)]
struct ChainAnchor {
    hash: [u8; 32],
    #[allow(dead_code)]
    pruned_through: u64,
    #[allow(dead_code)]
    pruned: u64,
}

fn corrupt(table: &'static str, reason: String) -> MigrationError {
    MigrationError::Corrupt { table, reason }
}

fn code_of(kind: &str) -> Option<u8> {
    KIND_CODES.iter().find(|(n, _)| *n == kind).map(|&(_, c)| c)
}

fn link_of(hash: &[u8; 32]) -> [u8; 8] {
    hash[..8].try_into().expect("8 of 32 bytes")
}

fn v2_hash(id: u64, stored: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(id.to_be_bytes());
    h.update(stored);
    h.finalize().into()
}

fn v3_hash(prev: &[u8; 32], id: u64, user: &str, record: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update((user.len() as u32).to_be_bytes());
    h.update(user.as_bytes());
    h.update(record);
    h.finalize().into()
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn push_entry(buf: &mut Vec<u8>, offset: u64, record: &[u8]) {
    put_varint(buf, offset);
    put_varint(buf, record.len() as u64);
    buf.extend_from_slice(record);
}

/// Appends `record` to the newest bucket of `user`, or starts one.
fn add_to_bucket(
    by_user: &mut redb::Table<(&str, u64), &[u8]>,
    user: &str,
    id: u64,
    record: &[u8],
) -> Result<(), MigrationError> {
    let newest = by_user
        .range((user, 0)..=(user, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, v)| (k.value().1, v.value().to_vec()));
    if let Some((first, mut buf)) = newest {
        let mut entry = Vec::with_capacity(record.len() + 12);
        push_entry(&mut entry, id - first, record);
        if buf.len() + entry.len() <= 3_968usize.saturating_sub(user.len()) {
            buf.extend_from_slice(&entry);
            by_user.insert((user, first), buf.as_slice())?;
            return Ok(());
        }
    }
    let mut buf = Vec::with_capacity(record.len() + 12);
    push_entry(&mut buf, 0, record);
    by_user.insert((user, id), buf.as_slice())?;
    Ok(())
}

pub(crate) fn apply(txn: &WriteTransaction) -> Result<(), MigrationError> {
    let mut meta = txn.open_table(META)?;
    let head: Option<ChainHead> = match meta.get(CHAIN_HEAD_KEY)? {
        Some(g) => {
            Some(postcard::from_bytes(g.value()).map_err(|e| corrupt("meta", e.to_string()))?)
        }
        None => None,
    };
    let anchor: ChainAnchor = match meta.get(CHAIN_ANCHOR_KEY)? {
        Some(g) => postcard::from_bytes(g.value()).map_err(|e| corrupt("meta", e.to_string()))?,
        None => ChainAnchor::default(),
    };

    let old_events = txn.open_table(OLD_EVENTS)?;
    let mut events = txn.open_table(EVENTS)?;
    let mut by_user = txn.open_table(BY_USER)?;
    let mut by_kind = txn.open_table(BY_KIND)?;

    let mut old_expected = anchor.hash;
    let mut new_hash = anchor.hash;
    let mut last_id = None;
    loop {
        let start = last_id.map_or(0, |id: u64| id.saturating_add(1));
        if last_id == Some(u64::MAX) {
            break;
        }
        let chunk: Vec<(u64, Vec<u8>)> = old_events
            .range(start..)?
            .take(CHUNK)
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        let Some(&(end, _)) = chunk.last() else {
            break;
        };
        for (id, old_bytes) in chunk {
            let old: EventRecordV2 = postcard::from_bytes(&old_bytes)
                .map_err(|e| corrupt("events", format!("event {id}: {e}")))?;
            let kind = code_of(&old.kind).ok_or_else(|| {
                corrupt("events", format!("event {id}: unknown kind {:?}", old.kind))
            })?;
            let mut link = link_of(&new_hash);
            if old.prev_hash != old_expected {
                // Keep the break where verification will find it.
                link = link.map(|b| !b);
            }
            old_expected = v2_hash(id, &old_bytes);
            let user = old.user.unwrap_or_default();
            let rec = EventRecordV3 {
                kind,
                link,
                ip: old.ip,
                user_agent: old.user_agent,
                session: old.session,
                details: old.details,
            };
            let bytes = postcard::to_stdvec(&rec).map_err(|e| corrupt("events", e.to_string()))?;
            new_hash = v3_hash(&new_hash, id, &user, &bytes);
            events.insert(id, user.as_str())?;
            add_to_bucket(&mut by_user, &user, id, &bytes)?;
            by_kind.insert((kind, id), ())?;
        }
        last_id = Some(end);
    }
    drop(old_events);
    txn.delete_table(OLD_EVENTS)?;
    txn.delete_table(OLD_BY_USER)?;
    txn.delete_table(OLD_BY_KIND)?;

    if let (Some(mut head), Some(newest)) = (head, last_id) {
        let old_consistent = head.hash == old_expected && head.last_id == newest;
        head.hash = if old_consistent {
            new_hash
        } else if head.hash != new_hash {
            head.hash
        } else {
            head.hash.map(|b| !b)
        };
        let bytes = postcard::to_stdvec(&head).map_err(|e| corrupt("meta", e.to_string()))?;
        meta.insert(CHAIN_HEAD_KEY, bytes.as_slice())?;
    }
    Ok(())
}
