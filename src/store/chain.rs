//! The audit hash chain, independent of where events are stored.
//!
//! An event's hash is SHA-256 over the previous event's hash (the anchor's
//! for the oldest kept event; zero before anything was pruned), its id (8
//! bytes, big-endian), its user name (4-byte big-endian length, then the
//! UTF-8 bytes; empty for none) and its stored record bytes. Each record
//! carries the first 8 bytes of the previous hash as its link, which
//! locates a break; the full hash at the head detects one. The format is
//! part of the stored data: the fixed vectors below pin it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{
    Event, EventId, MAX_DETAIL_KEY, MAX_DETAIL_VALUE, MAX_DETAILS, MAX_USER, MAX_USER_AGENT,
    NewEvent, truncate,
};

/// A chain hash.
pub type ChainHash = [u8; 32];

/// The stored link to a previous chain hash.
pub type Link = [u8; 8];

/// The hash the oldest event links to before anything was pruned.
pub const GENESIS: ChainHash = [0; 32];

/// Hash of one event as it is chained, from the previous hash, the event's
/// id, its user name (empty for none) and its stored record.
pub fn chain_hash(prev: &ChainHash, id: u64, user: &str, record: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update((user.len() as u32).to_be_bytes());
    h.update(user.as_bytes());
    h.update(record);
    h.finalize().into()
}

/// The stored link to a previous chain hash: its first 8 bytes.
pub fn link_of(hash: &ChainHash) -> Link {
    let mut link = [0; 8];
    link.copy_from_slice(&hash[..8]);
    link
}

/// One event as it is chained and stored: every backend hashes these
/// bytes ([`EventRecord::to_bytes`]), so one verification checks them all.
/// The timestamp is not in it (it is the high bits of the id), nor is the
/// user (the hash covers it beside the record; a backend keys by it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `EventKind::code`: one byte instead of the name.
    pub kind: u8,
    /// First 8 bytes of the previous event's chain hash (or of the anchor for
    /// the oldest kept event). It locates a break; the 256-bit chain hash,
    /// which covers the whole previous hash, detects one.
    pub link: [u8; 8],
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Public id of the session concerned.
    pub session: Option<String>,
    pub details: Vec<(String, String)>,
}

impl EventRecord {
    /// The record's bytes as chained and stored (postcard): part of the
    /// stored format, pinned by the fixed vectors below.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encoding of an in-memory record")
    }

    /// The event stored as `id`, `user` (empty for none) and these record
    /// bytes; the error says what is wrong with them.
    pub fn event(id: u64, user: &str, bytes: &[u8]) -> Result<Event, String> {
        super::record_read::event(id, user, bytes)
    }
}

/// `meta[chain_head]`: the newest event and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChainHead {
    pub last_id: u64,
    pub hash: [u8; 32],
    /// Events appended since the database was created (pruned ones included).
    pub appended: u64,
}

/// `meta[chain_anchor]`: what the oldest kept event links back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChainAnchor {
    pub hash: [u8; 32],
    /// Id of the last event removed by retention (0 when none was).
    pub pruned_through: u64,
    /// Events removed by retention so far.
    pub pruned: u64,
}

/// An event made ready to store by [`extend`]: its id, its user (empty for
/// none), its record and bytes, and the chain's head after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub id: EventId,
    pub user: String,
    pub record: EventRecord,
    pub bytes: Vec<u8>,
    pub head: ChainHead,
}

/// Extends the chain whose newest event is `head` by `ev`, the one rule
/// every backend follows: the event is bounded ([`sanitize`]); its id is
/// its time in microseconds with the low bits free (`EventId::from_micros`),
/// moved past the head's when not above it, so ids only grow; its record
/// links to the head's hash, and the new head hashes it.
pub fn extend(head: &ChainHead, ev: NewEvent) -> Linked {
    let ev = sanitize(ev);
    let mut id = EventId::from_micros(ev.at_us).0;
    if id <= head.last_id {
        id = head.last_id + 1;
    }
    let user = ev.user.unwrap_or_default();
    let record = EventRecord {
        kind: ev.kind.code(),
        link: link_of(&head.hash),
        ip: ev.ip,
        user_agent: ev.user_agent,
        session: ev.session.map(|s| s.to_string()),
        details: ev.details,
    };
    let bytes = record.to_bytes();
    let next = ChainHead {
        last_id: id,
        hash: chain_hash(&head.hash, id, &user, &bytes),
        appended: head.appended + 1,
    };
    Linked {
        id: EventId(id),
        user,
        record,
        bytes,
        head: next,
    }
}

/// `ev` within the stored bounds: user names, user agents and details
/// truncated, the empty user name taken as none (it is the bucket of
/// events without a user).
pub fn sanitize(mut ev: NewEvent) -> NewEvent {
    ev.user = ev
        .user
        .filter(|u| !u.is_empty())
        .map(|u| truncate(u, MAX_USER));
    ev.user_agent = ev.user_agent.map(|u| truncate(u, MAX_USER_AGENT));
    ev.details.truncate(MAX_DETAILS);
    for (k, v) in ev.details.iter_mut() {
        *k = truncate(std::mem::take(k), MAX_DETAIL_KEY);
        *v = truncate(std::mem::take(v), MAX_DETAIL_VALUE);
    }
    ev
}

/// Lower-case hex of bytes, for reports.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Walks a chain forward from an anchor, one event at a time, as both a
/// verification and a prune do: each event must link to the hash before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainWalk {
    /// The hash the next event must link to.
    pub expected: ChainHash,
}

impl ChainWalk {
    /// A walk starting at `anchor` (the hash the oldest kept event links to).
    pub fn from(anchor: ChainHash) -> Self {
        ChainWalk { expected: anchor }
    }

    /// Whether an event stored with `link` follows the events walked so far.
    pub fn links(&self, link: &Link) -> bool {
        *link == link_of(&self.expected)
    }

    /// Moves past one event.
    pub fn step(&mut self, id: u64, user: &str, record: &[u8]) {
        self.expected = chain_hash(&self.expected, id, user, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_hex(s: &str) -> ChainHash {
        let mut out = [0; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Fixed vectors: a change of the format breaks every stored chain.
    #[test]
    fn hashes_are_pinned() {
        let a = chain_hash(&GENESIS, 1, "", b"");
        assert_eq!(
            hex(&a),
            "5430dfc9c0a729db4f9409f336f5398b88bac9fe70f1d82890ecde22eac0e97a"
        );
        let record = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = chain_hash(&a, 7_228_665_413_140_299_776, "alice", &record);
        assert_eq!(
            hex(&b),
            "c5712d344b47536842028b13c3c6b72aaa13d86a61a97d49739266984b7816fd"
        );
        let c = chain_hash(&b, 7_228_665_413_140_299_777, "é", b"\x02record");
        assert_eq!(
            hex(&c),
            "04f4dd4978eea7208b844b02f190dd906bc5d3e7eb4b8a14e62b1d311ca532b4"
        );
        assert_eq!(c, from_hex(&hex(&c)));
    }

    /// The one rule of extending a chain: bounded, ids only grow, linked to
    /// the head, hashed over exactly the stored bytes, which are pinned.
    #[test]
    fn extend_links_bounds_and_orders() {
        use crate::domain::EventKind;
        let head = ChainHead {
            last_id: EventId::from_micros(2_000_000).0,
            hash: chain_hash(&GENESIS, 1, "", b""),
            appended: 4,
        };
        // An event older than the head gets the next id, not its own.
        let ev = NewEvent::at(EventKind::LoginSuccess, 1_000_000)
            .user("alice")
            .detail("k".repeat(MAX_DETAIL_KEY + 9), "v");
        let linked = extend(&head, ev);
        assert_eq!(linked.id.0, head.last_id + 1);
        assert_eq!(linked.user, "alice");
        assert_eq!(linked.record.link, link_of(&head.hash));
        assert_eq!(linked.record.details[0].0.len(), MAX_DETAIL_KEY);
        assert_eq!(linked.bytes, linked.record.to_bytes());
        assert_eq!(
            linked.head,
            ChainHead {
                last_id: linked.id.0,
                hash: chain_hash(&head.hash, linked.id.0, "alice", &linked.bytes),
                appended: 5,
            }
        );
        // A newer event keeps its own time as its id; the empty name is none.
        let later = extend(
            &linked.head,
            NewEvent::at(EventKind::LoginFailure, 9_000_000).user(""),
        );
        assert_eq!(later.id, EventId::from_micros(9_000_000));
        assert_eq!(later.user, "");
        assert_eq!(hex(&later.bytes), "0215c84baa009a246600000000");
    }

    #[test]
    fn the_link_is_the_first_eight_bytes() {
        let h = from_hex("5430dfc9c0a729db4f9409f336f5398b88bac9fe70f1d82890ecde22eac0e97a");
        assert_eq!(
            link_of(&h),
            [0x54, 0x30, 0xdf, 0xc9, 0xc0, 0xa7, 0x29, 0xdb]
        );
    }

    /// The user is length-prefixed: moving bytes between the user and the
    /// record changes the hash.
    #[test]
    fn user_and_record_cannot_trade_bytes() {
        assert_ne!(
            chain_hash(&GENESIS, 1, "ab", b"c"),
            chain_hash(&GENESIS, 1, "a", b"bc")
        );
    }

    #[test]
    fn a_walk_accepts_only_the_next_link() {
        let mut w = ChainWalk::from(GENESIS);
        assert!(w.links(&link_of(&GENESIS)));
        w.step(1, "", b"");
        assert!(!w.links(&link_of(&GENESIS)));
        assert!(w.links(&link_of(&chain_hash(&GENESIS, 1, "", b""))));
    }
}
