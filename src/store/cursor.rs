//! Opaque keyset cursors. A cursor names the id below which the next page
//! starts, and carries a tag binding it to the query's filters, so a forged,
//! truncated or reused-with-other-filters cursor is a clear error.
//!
//! Layout (then unpadded base64url): version byte `1`, id (8 bytes, big-endian),
//! tag (first 8 bytes of SHA-256 over a domain string, the filter fingerprint
//! and the id). The time window is not part of the fingerprint: relative times
//! such as `--since 2h` move between calls and a position stays valid in any
//! window.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::CursorError;
use crate::domain::{EventFilter, EventId, EventKind};

const VERSION: u8 = 1;
const LEN: usize = 17;

fn tag(id: u64, filter: &EventFilter) -> [u8; 8] {
    let mut kinds: Vec<EventKind> = filter.kinds.clone();
    kinds.sort();
    kinds.dedup();
    let mut h = Sha256::new();
    h.update(b"gatehouse-cursor-v1\0");
    h.update(filter.user.as_deref().unwrap_or("\u{0}none").as_bytes());
    h.update([0]);
    for k in kinds {
        h.update(k.as_str().as_bytes());
        h.update([0]);
    }
    h.update(format!("{:?}\0{:?}\0", filter.outcome, filter.ip).as_bytes());
    h.update(id.to_be_bytes());
    let d = h.finalize();
    d[..8].try_into().expect("8 bytes of a 32-byte digest")
}

/// Encodes a cursor pointing below `id` for this filter.
pub(crate) fn encode(id: u64, filter: &EventFilter) -> String {
    let mut b = [0u8; LEN];
    b[0] = VERSION;
    b[1..9].copy_from_slice(&id.to_be_bytes());
    b[9..].copy_from_slice(&tag(id, filter));
    B64.encode(b)
}

/// What a query of `filter` below `cursor` may match, the same for every
/// backend: ids in `[lo, hi)`, and `kinds` (`None`: any). `None` when
/// nothing can match: an empty window, the empty user name (no event has
/// it: it stands for "no user"), or no kind left by `kinds` and `outcome`.
pub(crate) struct Window {
    pub lo: u64,
    pub hi: u64,
    pub kinds: Option<Vec<EventKind>>,
}

pub(crate) fn window(
    filter: &EventFilter,
    cursor: Option<&str>,
) -> Result<Option<Window>, CursorError> {
    let lo = filter.since_us.map_or(0, |t| EventId::from_micros(t).0);
    let mut hi = filter
        .until_us
        .map_or(u64::MAX, |t| EventId::from_micros(t).0);
    if let Some(c) = cursor {
        hi = hi.min(decode(c, filter)?);
    }
    if lo >= hi || filter.user.as_deref() == Some("") {
        return Ok(None);
    }
    let kinds = filter.wanted_kinds();
    if kinds.as_ref().is_some_and(|k| k.is_empty()) {
        return Ok(None);
    }
    Ok(Some(Window { lo, hi, kinds }))
}

/// Decodes a cursor for this filter into the exclusive upper id bound.
pub(crate) fn decode(s: &str, filter: &EventFilter) -> Result<u64, CursorError> {
    if s.len() > 64 {
        return Err(CursorError::Malformed);
    }
    let mut b = [0u8; LEN + 3];
    let n = B64
        .decode_slice(s.as_bytes(), &mut b)
        .map_err(|_| CursorError::Malformed)?;
    if n != LEN || b[0] != VERSION {
        return Err(CursorError::Malformed);
    }
    let id = u64::from_be_bytes(b[1..9].try_into().expect("8 bytes"));
    if !bool::from(tag(id, filter).ct_eq(&b[9..LEN])) {
        return Err(CursorError::Mismatch);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_mismatch() {
        let f = EventFilter {
            user: Some("alice".into()),
            ..Default::default()
        };
        let c = encode(42, &f);
        assert_eq!(decode(&c, &f), Ok(42));
        let g = EventFilter {
            user: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(decode(&c, &g), Err(CursorError::Mismatch));
        let windowed = EventFilter {
            since_us: Some(5),
            ..f.clone()
        };
        assert_eq!(decode(&c, &windowed), Ok(42));
    }

    #[test]
    fn edited_cursor_is_rejected() {
        let f = EventFilter::default();
        let c = encode(1 << 40, &f);
        let mut bytes = B64.decode(&c).unwrap();
        bytes[8] ^= 1;
        assert_eq!(decode(&B64.encode(&bytes), &f), Err(CursorError::Mismatch));
        assert_eq!(decode(&c[..10], &f), Err(CursorError::Malformed));
    }

    proptest! {
        #[test]
        fn random_strings_never_panic(s in ".{0,100}") {
            let _ = decode(&s, &EventFilter::default());
        }

        /// A cursor decodes to its own id under its own filter, and an
        /// edited cursor (any byte changed) never decodes to another id.
        #[test]
        fn edited_cursors_never_move(
            id in any::<u64>(),
            user in proptest::option::of("[a-z]{1,8}"),
            at in 0usize..LEN,
            flip in 1u8..=255,
        ) {
            let f = EventFilter { user, ..Default::default() };
            let c = encode(id, &f);
            prop_assert_eq!(decode(&c, &f), Ok(id));
            let mut bytes = B64.decode(&c).unwrap();
            bytes[at] ^= flip;
            let edited = B64.encode(&bytes);
            prop_assert!(decode(&edited, &f).is_err());
            let other = EventFilter { user: Some("zz-other".into()), ..Default::default() };
            prop_assert_eq!(decode(&c, &other), Err(CursorError::Mismatch));
        }
    }
}
