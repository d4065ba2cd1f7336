//! Test-only helpers that damage a database file on purpose, so that tests of
//! `verify` and of error messages can show what a tampered or foreign file
//! looks like. Compiled only for tests and with the `test-util` feature; never
//! part of a release build.

use std::path::Path;

use redb::{Database, ReadableTable};

use super::bucket;
use super::codec::{decode, encode};
use super::tables::*;
use crate::store::chain::EventRecord;
use crate::store::error::StoreError;

fn open(path: &Path) -> Result<Database, StoreError> {
    Ok(Database::open(path)?)
}

/// The bucket of `user` that holds event `id`: its key and bytes.
fn bucket_of(
    txn: &redb::WriteTransaction,
    id: u64,
) -> Result<Option<(String, u64, Vec<u8>)>, StoreError> {
    let Some(user) = txn
        .open_table(EVENTS)?
        .get(id)?
        .map(|g| g.value().to_string())
    else {
        return Ok(None);
    };
    let t = txn.open_table(EVENTS_BY_USER)?;
    let found = t
        .range((user.as_str(), 0)..=(user.as_str(), id))?
        .next_back()
        .transpose()?
        .map(|(k, v)| (k.value().1, v.value().to_vec()));
    Ok(found.map(|(first, bytes)| (user, first, bytes)))
}

/// Rewrites one event's details in place (its record only, as a tamperer
/// would), leaving the hash chain to notice. Returns false when there is no
/// such event.
pub fn edit_event_details(
    path: &Path,
    id: u64,
    key: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    let Some((user, first, bytes)) = bucket_of(&txn, id)? else {
        return Ok(false);
    };
    let entries = bucket::parse(first, &bytes)?;
    let mut buf = Vec::with_capacity(bytes.len() + 64);
    let mut found = false;
    for e in &entries {
        let record = &bytes[e.start..e.end];
        if e.id == id {
            let mut rec: EventRecord = decode(EVENT_RECORDS, record)?;
            rec.details.push((key.to_string(), value.to_string()));
            bucket::push(&mut buf, e.id - first, &encode(&rec));
            found = true;
        } else {
            bucket::push(&mut buf, e.id - first, record);
        }
    }
    txn.open_table(EVENTS_BY_USER)?
        .insert((user.as_str(), first), buf.as_slice())?;
    txn.commit()?;
    Ok(found)
}

/// Deletes one event with its record and index entries (as a careful
/// tamperer would), leaving the hash chain to notice. Returns false when
/// there is no such event.
pub fn delete_event(path: &Path, id: u64) -> Result<bool, StoreError> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    let Some((user, first, bytes)) = bucket_of(&txn, id)? else {
        return Ok(false);
    };
    let mut entries = bucket::parse(first, &bytes)?;
    let Some(at) = entries.iter().position(|e| e.id == id) else {
        return Ok(false);
    };
    let rec: EventRecord = decode(EVENT_RECORDS, &bytes[entries[at].start..entries[at].end])?;
    entries.remove(at);
    {
        let mut t = txn.open_table(EVENTS_BY_USER)?;
        t.remove((user.as_str(), first))?;
        if let Some((key, rest)) = bucket::rebuild(&bytes, &entries) {
            t.insert((user.as_str(), key), rest.as_slice())?;
        }
    }
    txn.open_table(EVENTS)?.remove(id)?;
    txn.open_table(EVENTS_BY_KIND)?.remove((rec.kind, id))?;
    txn.commit()?;
    Ok(true)
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
    use crate::store::redb::tests::temp_store;
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
