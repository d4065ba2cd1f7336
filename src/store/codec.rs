//! Encoding of stored values. redb hands back raw bytes; decoding them is the
//! only place a stored value can turn out to be damaged, so it returns an error
//! naming the table instead of panicking.

use serde::{Serialize, de::DeserializeOwned};

use super::error::StoreError;

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
    use crate::store::records::{EventRecord, SessionRecord};
    use proptest::prelude::*;

    proptest! {
        /// Random bytes never panic the decoder: they decode or yield `Corrupt`.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<SessionRecord>("sessions", &bytes);
            let _ = decode::<EventRecord>("events", &bytes);
        }
    }

    #[test]
    fn truncated_record_is_an_error() {
        let rec = EventRecord {
            kind: "login.success".into(),
            user: Some("alice".into()),
            ip: None,
            user_agent: None,
            session: None,
            details: vec![],
            prev_hash: [7; 32],
        };
        let bytes = encode(&rec);
        let err = decode::<EventRecord>("events", &bytes[..bytes.len() - 5]).unwrap_err();
        assert!(err.to_string().contains("events"), "{err}");
    }
}
