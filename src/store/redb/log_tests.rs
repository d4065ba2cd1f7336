//! The commit log with a real store: what a crash leaves (the database file
//! and its log as they are on disk while appends wait for a checkpoint) is
//! opened again with every acknowledged append, in the same chain.

use super::commit_log::{self, CommitLog};
use super::tests::temp_store;
use super::*;
use crate::store::*;

fn append(store: &Store, user: &str, n: u64) -> Vec<u64> {
    let ops = (0..n)
        .map(|i| {
            Op::Append(
                NewEvent::at(EventKind::LoginFailure, 1_700_000_000_000_000 + i)
                    .user(user.to_string())
                    .detail("n", i.to_string()),
            )
        })
        .collect();
    store
        .apply_batch(ops)
        .into_iter()
        .map(|r| match r.unwrap() {
            OpOutput::Appended(id) => id.0,
            other => panic!("append answered {other:?}"),
        })
        .collect()
}

/// The files as a crash would leave them now: copied while the store is
/// open, so the database holds only what its last durable commit made.
fn crash_image(store: &Store, to: &std::path::Path) -> std::path::PathBuf {
    let db = to.join("g.redb");
    std::fs::copy(store.path(), &db).unwrap();
    std::fs::copy(commit_log::path_of(store.path()), commit_log::path_of(&db)).unwrap();
    db
}

#[test]
fn appends_only_in_the_log_are_back_after_a_crash_in_the_same_chain() {
    let (_dir, store) = temp_store();
    let durable = append(&store, "alice", 3);
    store.checkpoint(true).unwrap();
    let mut logged = append(&store, "alice", 5);
    logged.extend(append(&store, "bob", 4));
    assert!(store.log_is_dirty(), "appends alone go through the log");
    let image = tempfile::tempdir().unwrap();
    let db = crash_image(&store, image.path());

    let reopened = Store::open(&db, &StoreOptions::default()).unwrap();
    let ids: Vec<u64> = reopened
        .events_after(EventId(0), 100)
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    let mut want = durable.clone();
    want.extend(&logged);
    assert_eq!(ids, want, "every acknowledged append, once, in order");
    let report = reopened.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        reopened.check().unwrap().chain_head,
        store.check().unwrap().chain_head,
        "the replayed chain ends where the original did"
    );
    // Opened again, nothing is applied twice.
    reopened.close().unwrap();
    let again = Store::open_read_only(&db, &StoreOptions::default()).unwrap();
    assert_eq!(
        again.events_after(EventId(0), 100).unwrap().len(),
        want.len()
    );
}

#[test]
fn a_durable_write_makes_the_log_durable_and_a_checkpoint_empties_it() {
    let (_dir, store) = temp_store();
    append(&store, "alice", 2);
    assert!(store.log_is_dirty());
    store
        .apply(Op::CreateSession(super::tests::new_session("alice", 1_000)))
        .unwrap();
    // `apply` commits durably, but only `apply_batch` (the writer's way)
    // knows to start the log again.
    store
        .apply_batch(vec![Op::CreateSession(super::tests::new_session(
            "bob", 1_000,
        ))])
        .into_iter()
        .for_each(|r| drop(r.unwrap()));
    assert!(!store.log_is_dirty());
    append(&store, "alice", 2);
    store.checkpoint(false).unwrap();
    assert!(store.log_is_dirty(), "not due yet: size and age are small");
    store.checkpoint(true).unwrap();
    assert!(!store.log_is_dirty());
    let image = tempfile::tempdir().unwrap();
    let db = crash_image(&store, image.path());
    Store::open(&db, &StoreOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let r = Store::open_read_only(&db, &StoreOptions::default()).unwrap();
    // Four appends and the two sessions' `session.created`.
    assert_eq!(r.events_after(EventId(0), 100).unwrap().len(), 6);
}

#[test]
fn a_reader_refuses_a_file_whose_log_holds_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.redb");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    append(&store, "alice", 3);
    store.close().unwrap();
    // A cleanly closed file, then appends that only reach the log.
    let clean = dir.path().join("clean.redb");
    std::fs::copy(&path, &clean).unwrap();
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    append(&store, "alice", 2);
    std::fs::copy(commit_log::path_of(&path), commit_log::path_of(&clean)).unwrap();
    // A reader cannot apply the log, and says so instead of answering
    // without the logged appends.
    assert!(matches!(
        Store::open_read_only(&clean, &StoreOptions::default()),
        Err(OpenError::NeedsRepair(_))
    ));
    Store::open(&clean, &StoreOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let r = Store::open_read_only(&clean, &StoreOptions::default()).unwrap();
    assert_eq!(r.events_after(EventId(0), 100).unwrap().len(), 5);
}

#[test]
fn a_log_that_does_not_continue_the_database_stops_the_open() {
    let (_dir, store) = temp_store();
    append(&store, "alice", 3);
    let image = tempfile::tempdir().unwrap();
    let db = crash_image(&store, image.path());
    // Another database's file beside this log: a restored backup, say.
    let (_other_dir, other) = temp_store();
    append(&other, "mallory", 1);
    other.checkpoint(true).unwrap();
    drop(other);
    std::fs::copy(_other_dir.path().join("g.redb"), &db).unwrap();
    let err = Store::open(&db, &StoreOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not continue this database") && msg.contains("-log"),
        "{msg}"
    );
    // Nothing was applied: the database still holds its one event.
    std::fs::remove_file(commit_log::path_of(&db)).unwrap();
    let s = Store::open(&db, &StoreOptions::default()).unwrap();
    assert_eq!(s.events_after(EventId(0), 100).unwrap().len(), 1);
}

#[test]
fn without_the_log_option_every_batch_commits_durably() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        commit_log: false,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path().join("g.redb"), &opts).unwrap();
    append(&store, "alice", 3);
    assert!(!store.log_is_dirty());
    assert!(!commit_log::path_of(store.path()).exists());
    let _ = CommitLog::read(store.path()).unwrap();
}

/// A logged batch whose database part fails after its record was written
/// (here a touch of a damaged session row) takes the record back: the log
/// never replays a batch that was answered with an error. The writer then
/// retries each operation alone, so the append is stored once, durably.
#[test]
fn a_batch_that_fails_after_its_record_was_written_takes_it_back() {
    let (_dir, store) = temp_store();
    let created = match store
        .apply(Op::CreateSession(super::tests::new_session("alice", 1_000)))
        .unwrap()
    {
        OpOutput::Created(c) => c,
        other => panic!("create answered {other:?}"),
    };
    {
        let db = store.db().unwrap();
        let Db::Rw(db) = &*db else { unreachable!() };
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::SESSIONS)
            .unwrap()
            .insert(created.token.hash().0, [0xffu8, 0xff, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    store.checkpoint(true).unwrap();
    let before = store.events_after(EventId(0), 100).unwrap().len();
    let results = store.apply_batch(vec![
        Op::Append(NewEvent::at(EventKind::LoginFailure, 1_700_000_000_000_000).user("alice")),
        Op::Touch {
            hash: created.token.hash(),
            now_ms: 2_000,
        },
    ]);
    assert!(matches!(results[0], Ok(OpOutput::Appended(_))));
    assert!(results[1].is_err(), "the damaged row fails the touch");
    assert!(
        CommitLog::read(store.path()).unwrap().is_empty(),
        "the failed batch's record was taken back"
    );
    let image = tempfile::tempdir().unwrap();
    let db = crash_image(&store, image.path());
    let reopened = Store::open(&db, &StoreOptions::default()).unwrap();
    assert_eq!(
        reopened.events_after(EventId(0), 100).unwrap().len(),
        before + 1,
        "the append, once"
    );
}
