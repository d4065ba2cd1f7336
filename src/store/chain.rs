//! The audit hash chain, independent of where events are stored.
//!
//! An event's hash is SHA-256 over the previous event's hash (the anchor's
//! for the oldest kept event; zero before anything was pruned), its id (8
//! bytes, big-endian), its user name (4-byte big-endian length, then the
//! UTF-8 bytes; empty for none) and its stored record bytes. Each record
//! carries the first 8 bytes of the previous hash as its link, which
//! locates a break; the full hash at the head detects one. The format is
//! part of the stored data: the fixed vectors below pin it.

use sha2::{Digest, Sha256};

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
