//! Test-only helpers that damage a database file on purpose, so that tests of
//! `verify` and of error messages can show what a tampered or foreign file
//! looks like. Compiled only for tests and with the `test-util` feature; never
//! part of a release build.

use std::path::Path;

use redb::{Database, ReadableTable};

use super::codec::{decode, encode};
use super::error::StoreError;
use super::records::EventRecord;
use super::tables::*;

fn open(path: &Path) -> Result<Database, StoreError> {
    Ok(Database::open(path)?)
}

/// Rewrites one event's details in place (its row only, as a tamperer would),
/// leaving the hash chain to notice. Returns false when there is no such event.
pub fn edit_event_details(
    path: &Path,
    id: u64,
    key: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    let found = {
        let mut t = txn.open_table(EVENTS)?;
        let rec = match t.get(id)? {
            Some(g) => Some(decode::<EventRecord>("events", g.value())?),
            None => None,
        };
        match rec {
            Some(mut rec) => {
                rec.details.push((key.to_string(), value.to_string()));
                t.insert(id, encode(&rec).as_slice())?;
                true
            }
            None => false,
        }
    };
    txn.commit()?;
    Ok(found)
}

/// Deletes one event row and its index entries (as a careful tamperer would),
/// leaving the hash chain to notice. Returns false when there is no such event.
pub fn delete_event(path: &Path, id: u64) -> Result<bool, StoreError> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    let found = {
        let mut t = txn.open_table(EVENTS)?;
        let removed = t.remove(id)?.map(|g| g.value().to_vec());
        match removed {
            Some(bytes) => {
                let rec: EventRecord = decode("events", &bytes)?;
                if let Some(u) = rec.user.as_deref() {
                    txn.open_table(EVENTS_BY_USER)?.remove((u, id))?;
                }
                txn.open_table(EVENTS_BY_KIND)?.remove((rec.kind, id))?;
                true
            }
            None => false,
        }
    };
    txn.commit()?;
    Ok(found)
}

/// A database held open in redb's exclusive-writer mode, as a tool that
/// excludes every other process would hold it. Released on drop.
pub struct ExclusiveHold {
    _db: Database,
}

/// Opens `path` in exclusive-writer mode and keeps it open.
pub fn hold_exclusive(path: &Path) -> Result<ExclusiveHold, StoreError> {
    Ok(ExclusiveHold { _db: open(path)? })
}

/// Stores `version` as the schema version, as a newer build would have.
pub fn set_schema_version(path: &Path, version: u32) -> Result<(), StoreError> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(
        gatehouse_migrations::VERSION_KEY,
        version.to_be_bytes().as_slice(),
    )?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;
    use crate::store::*;

    fn ids(store: &Store) -> Vec<u64> {
        let mut ids: Vec<u64> = store
            .query_events(&EventFilter::default(), 1_000, None)
            .unwrap()
            .events
            .iter()
            .map(|e| e.id.0)
            .collect();
        ids.reverse();
        ids
    }

    fn filled() -> (tempfile::TempDir, std::path::PathBuf, Vec<u64>) {
        let (dir, store) = temp_store();
        let ops = (0..10u64)
            .map(|i| Op::Append(NewEvent::at(EventKind::LoginSuccess, 1_000 + i).user("alice")))
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
        let ids = ids(&store);
        let path = store.path().to_path_buf();
        store.close().unwrap();
        (dir, path, ids)
    }

    #[test]
    fn check_names_the_event_after_an_edited_one() {
        let (_d, path, ids) = filled();
        assert!(edit_event_details(&path, ids[4], "reason", "forged").unwrap());
        let store = Store::open_read_only(&path, &StoreOptions::default()).unwrap();
        let r = store.check().unwrap();
        assert!(!r.is_ok());
        assert_eq!(r.first_bad_event, Some(ids[5]), "{r:?}");
    }

    #[test]
    fn check_names_the_event_after_a_deleted_one() {
        let (_d, path, ids) = filled();
        assert!(delete_event(&path, ids[2]).unwrap());
        let store = Store::open_read_only(&path, &StoreOptions::default()).unwrap();
        let r = store.check().unwrap();
        assert_eq!(r.first_bad_event, Some(ids[3]), "{r:?}");
    }

    #[test]
    fn deleting_the_newest_event_is_seen_at_the_head() {
        let (_d, path, ids) = filled();
        assert!(delete_event(&path, ids[9]).unwrap());
        let store = Store::open_read_only(&path, &StoreOptions::default()).unwrap();
        let r = store.check().unwrap();
        assert!(!r.is_ok());
        assert_eq!(r.first_bad_event, Some(ids[8]), "{r:?}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_d, path, _) = filled();
        set_schema_version(&path, 99).unwrap();
        let err = Store::open_read_only(&path, &StoreOptions::default()).unwrap_err();
        assert!(matches!(err, OpenError::Newer { found: 99, .. }), "{err}");
    }
}
