//! Per-user event buckets: the value format of `audit_by_user`.
//!
//! A user's events are stored together, oldest first, in buckets of about one
//! page: the key is `(user, id of the bucket's first event)`, the value a run
//! of entries `varint(id - first id) varint(len) record`. Appending rewrites
//! the user's last bucket (a B-tree insert rewrites its page anyway) until it
//! is full, then starts the next one. So a user's newest events are a few
//! adjacent values (one range scan answers "newest 100 of alice"), and full
//! buckets fill their page, where one index entry per event would leave redb's
//! leaves half empty (it splits a full leaf in the middle).
//!
//! Invariants, checked by `check.rs`: entries are in strictly increasing id
//! order; the first entry's offset is 0 (its id is the key's); every id of a
//! bucket is below the next bucket's first id; an event without a user lives
//! under the empty user name.

use super::tables::EVENT_RECORDS;
use crate::store::error::StoreError;

/// Most bytes a bucket grows to by appending (a single larger event still gets
/// a bucket of its own). With the key and redb's per-entry overhead one full
/// bucket fits a 4 KiB page.
pub(crate) fn capacity(user: &str) -> usize {
    3_968usize.saturating_sub(user.len())
}

/// Appends one entry: the id as an offset from the bucket's first id, then
/// the record, length-prefixed.
pub(crate) fn push(buf: &mut Vec<u8>, offset: u64, record: &[u8]) {
    put_varint(buf, offset);
    put_varint(buf, record.len() as u64);
    buf.extend_from_slice(record);
}

/// Bytes `push` adds for a record of `len` bytes at `offset`.
pub(crate) fn entry_len(offset: u64, len: usize) -> usize {
    varint_len(offset) + varint_len(len as u64) + len
}

/// One entry of a bucket: its event id and the byte range of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: u64,
    pub start: usize,
    pub end: usize,
}

/// Parses every entry of the bucket keyed `first`, oldest first, checking the
/// invariants above that one bucket can break on its own.
pub(crate) fn parse(first: u64, bytes: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    parse_into(first, bytes, &mut out)?;
    Ok(out)
}

/// `parse` into a caller's buffer (cleared first), so a scan over many
/// buckets allocates once.
pub(crate) fn parse_into(first: u64, bytes: &[u8], out: &mut Vec<Entry>) -> Result<(), StoreError> {
    out.clear();
    let mut at = 0usize;
    let corrupt = |why: &str| StoreError::Corrupt {
        table: EVENT_RECORDS,
        reason: format!("bucket {first}: {why}"),
    };
    if bytes.is_empty() {
        return Err(corrupt("empty"));
    }
    let mut prev: Option<u64> = None;
    while at < bytes.len() {
        let offset = get_varint(bytes, &mut at).ok_or_else(|| corrupt("bad id offset"))?;
        let len = get_varint(bytes, &mut at).ok_or_else(|| corrupt("bad length"))?;
        let id = first
            .checked_add(offset)
            .ok_or_else(|| corrupt("id out of range"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("record runs past the end"))?;
        match prev {
            None if offset != 0 => return Err(corrupt("first entry is not the key's id")),
            Some(p) if p >= id => return Err(corrupt("ids out of order")),
            _ => {}
        }
        prev = Some(id);
        out.push(Entry { id, start: at, end });
        at = end;
    }
    Ok(())
}

/// Re-encodes `entries` of `bytes` (in order) as a new bucket keyed by the
/// first one's id. `None` when no entry is kept.
pub(crate) fn rebuild(bytes: &[u8], entries: &[Entry]) -> Option<(u64, Vec<u8>)> {
    let first = entries.first()?.id;
    let mut buf = Vec::with_capacity(bytes.len());
    for e in entries {
        push(&mut buf, e.id - first, &bytes[e.start..e.end]);
    }
    Some((first, buf))
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    // Record lengths under 128 bytes: one byte, the common case.
    let first = *bytes.get(*at)?;
    if first < 0x80 {
        *at += 1;
        return Some(u64::from(first));
    }
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut at = 0;
            assert_eq!(get_varint(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
        }
    }

    proptest! {
        /// Entries pushed come back in order with their records, and entry_len
        /// predicts the growth exactly.
        #[test]
        fn round_trip(first in 0u64..u64::MAX / 2, gaps in proptest::collection::vec((1u64..1 << 40, proptest::collection::vec(any::<u8>(), 0..300)), 1..40)) {
            let mut buf = Vec::new();
            let mut id = first;
            let mut want = Vec::new();
            for (i, (gap, rec)) in gaps.iter().enumerate() {
                if i > 0 {
                    id += gap;
                }
                let before = buf.len();
                push(&mut buf, id - first, rec);
                prop_assert_eq!(buf.len() - before, entry_len(id - first, rec.len()));
                want.push((id, rec.clone()));
            }
            let got = parse(first, &buf).unwrap();
            let got: Vec<(u64, Vec<u8>)> = got.iter().map(|e| (e.id, buf[e.start..e.end].to_vec())).collect();
            prop_assert_eq!(&got, &want);
            let entries = parse(first, &buf).unwrap();
            let (k, rebuilt) = rebuild(&buf, &entries[1..]).map_or((0, Vec::new()), |x| x);
            if entries.len() > 1 {
                prop_assert_eq!(k, entries[1].id);
                let again = parse(k, &rebuilt).unwrap();
                prop_assert_eq!(again.len(), entries.len() - 1);
            }
        }

        /// Damaged buckets are errors, never panics.
        #[test]
        fn damaged_never_panics(first in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(first, &bytes);
        }
    }
}
