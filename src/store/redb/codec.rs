//! Encoding of stored values. redb hands back raw bytes; decoding them is the
//! only place a stored value can turn out to be damaged, so it returns an error
//! naming the table instead of panicking.

use serde::{Serialize, de::DeserializeOwned};

use crate::store::error::StoreError;

/// Encodes a record for storage. Encoding owned, well-formed records cannot fail
/// with postcard's std serializer except on allocation failure.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encoding of an in-memory record")
}

/// Decodes a stored record, or reports which table holds a corrupt value.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::EventRecord;
    use crate::store::redb::records::SessionRecord;
    use proptest::prelude::*;

    fn all_kinds(bytes: &[u8]) {
        use crate::store::chain::{ChainAnchor, ChainHead};
        use crate::store::redb::records::BanRecord;
        let _ = decode::<SessionRecord>("sessions", bytes);
        let _ = decode::<EventRecord>("events", bytes);
        let _ = decode::<BanRecord>("bans", bytes);
        let _ = decode::<ChainHead>("meta", bytes);
        let _ = decode::<ChainAnchor>("meta", bytes);
    }

    fn valid_event() -> Vec<u8> {
        encode(&EventRecord {
            kind: 2,
            link: [9; 8],
            ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some("curl/8".into()),
            session: Some("l-MK7ZLO7NltevKMi9pK2w".into()),
            details: vec![("reason".into(), "banned".into())],
        })
    }

    proptest! {
        /// Random bytes never panic the decoder: they decode or yield `Corrupt`.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            all_kinds(&bytes);
        }

        /// A valid record with bytes changed, cut or appended (including
        /// huge length prefixes): decoded or `Corrupt`, never a panic or a
        /// huge allocation.
        #[test]
        fn damaged_records_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut b = valid_event();
            for (at, v) in edits {
                let i = at % b.len();
                b[i] = v;
            }
            b.truncate(cut % (b.len() + 1));
            b.extend_from_slice(&tail);
            all_kinds(&b);
        }
    }

    #[test]
    fn truncated_record_is_an_error() {
        let rec = EventRecord {
            kind: 1,
            link: [7; 8],
            ip: None,
            user_agent: None,
            session: None,
            details: vec![],
        };
        let bytes = encode(&rec);
        let err = decode::<EventRecord>("events", &bytes[..bytes.len() - 5]).unwrap_err();
        assert!(err.to_string().contains("events"), "{err}");
    }
}
