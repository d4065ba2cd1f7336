//! Storage faults injected in-process ([`super::faults`]): a failed write
//! fails only itself, the writer reopens the file, and everything
//! acknowledged before the fault is still there after it.

use std::sync::Arc;
use std::time::Duration;

use super::faults::Faults;
use super::{RedbBackend, Store, StoreOptions, Writer, WriterConfig, WriterTask};
use crate::domain::*;
use crate::store::contract::{AuditStore, SessionStore, StoreCheck};
use crate::store::{StoreError, WriteError};

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    backend: RedbBackend,
    task: WriterTask,
    faults: Arc<Faults>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let faults = Faults::new();
    let store = Store::open_with_faults(
        dir.path().join("g.redb"),
        &StoreOptions::default(),
        faults.clone(),
    )
    .unwrap();
    let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
    Rig {
        _dir: dir,
        backend: RedbBackend::new(store.clone(), writer),
        store,
        task,
        faults,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn is_io(e: &WriteError) -> bool {
    matches!(e, WriteError::Failed(e) if e.is_io())
}

fn new_session(user: &str, now_ms: u64) -> NewSession {
    NewSession {
        user: user.into(),
        remember_me: false,
        idle_ttl_ms: 1_000,
        absolute_ttl_ms: 10_000,
        max_per_user: 10,
        ip: None,
        user_agent: None,
        now_ms,
        methods: Methods::PASSWORD,
    }
}

/// A sweep whose commit fails (the disk is full) changes nothing; once the
/// disk has room the next sweep, as the sweeper's next tick sends it,
/// removes every expired session, and nothing acknowledged is lost.
#[test]
fn a_failed_sweep_is_retried_on_the_next_tick() {
    let r = rig();
    runtime().block_on(async {
        let mut tokens = Vec::new();
        for i in 0..5u64 {
            let login = NewEvent::at(EventKind::LoginSuccess, 1_000_000 + i).user("alice");
            let c = r
                .backend
                .create_session(new_session("alice", 1_000 + i), login, None)
                .await
                .unwrap();
            tokens.push(c.token);
        }
        let before = r.backend.events_after(EventId(0), 100).await.unwrap();
        assert_eq!(before.len(), 10);

        r.faults.fail_now();
        let err = r.backend.sweep(20_000, 1_000).await.unwrap_err();
        assert!(is_io(&err), "{err}");
        assert!(r.faults.injected() > 0);

        r.faults.heal();
        // The next tick. The writer reopens the file before applying it.
        let swept = r.backend.sweep(20_000, 1_000).await.unwrap();
        assert_eq!((swept.expired, swept.more), (5, false));

        let after = r.backend.events_after(EventId(0), 100).await.unwrap();
        assert_eq!(after[..10], before[..]);
        let expired = after
            .iter()
            .filter(|e| e.kind == EventKind::SessionExpired)
            .count();
        assert_eq!((after.len(), expired), (15, 5));
        for t in &tokens {
            assert!(r.store.session(t, 1_500).unwrap().is_none());
        }
        let report = r.backend.check().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.sessions, report.events), (0, 15));
    });
    drop(r.backend);
    r.task.shutdown_blocking().unwrap();
}

/// An I/O error part-way through a commit (the first write lands, the rest
/// fail) leaves a handle redb refuses to use; the writer reopens the file,
/// redb rolls back the partial commit, and every write acknowledged before
/// the fault is still there, with an intact chain that new events extend.
#[test]
fn the_store_reopens_after_an_io_error_mid_commit() {
    let r = rig();
    runtime().block_on(async {
        let mut acked = Vec::new();
        for i in 0..20u64 {
            let ev = NewEvent::at(EventKind::LoginFailure, 1_000 + i).user(format!("u{}", i % 3));
            acked.push(r.backend.append(ev).await.unwrap());
        }
        r.faults.fail_after(1);
        let lost = NewEvent::at(EventKind::LoginFailure, 5_000).user("mallory");
        let err = r.backend.append(lost).await.unwrap_err();
        assert!(is_io(&err), "{err}");

        // While the disk stays full, reads fail as I/O errors (the handle is
        // closed until a reopen succeeds) or answer from the old state:
        // never from the failed commit.
        match r.store.events_after(EventId(0), 100) {
            Ok(evs) => assert_eq!(evs.len(), 20),
            Err(e) => assert!(matches!(e, StoreError::Io(_)), "{e}"),
        }

        r.faults.heal();
        // The writer retries the reopen on its own once a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let events = loop {
            match r.store.events_after(EventId(0), 100) {
                Ok(evs) => break evs,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.is_io(), "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("still failing after the disk healed: {e}"),
            }
        };
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, acked);
        assert!(events.iter().all(|e| e.user.as_deref() != Some("mallory")));

        let next = r
            .backend
            .append(NewEvent::at(EventKind::Logout, 9_000).user("u1"))
            .await
            .unwrap();
        assert!(next > *acked.last().unwrap());
        let report = r.backend.check().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events, 21);
    });
    drop(r.backend);
    r.task.shutdown_blocking().unwrap();
}

/// While the disk stays full every write fails as I/O, as does every
/// reopen the writer tries between them; once it has room, the next write
/// reopens the file first and succeeds, with everything before it kept.
#[test]
fn writes_fail_fast_until_the_disk_heals() {
    let r = rig();
    runtime().block_on(async {
        let id = r
            .backend
            .append(NewEvent::at(EventKind::ServerStarted, 1_000))
            .await
            .unwrap();
        r.faults.fail_now();
        for at in [2_000, 3_000, 4_000] {
            let err = r
                .backend
                .append(NewEvent::at(EventKind::ServerStopped, at))
                .await
                .unwrap_err();
            assert!(is_io(&err), "{err}");
        }
        r.faults.heal();
        let next = r
            .backend
            .append(NewEvent::at(EventKind::ServerStarted, 5_000))
            .await
            .unwrap();
        let evs = r.backend.events_after(EventId(0), 10).await.unwrap();
        assert_eq!(evs.iter().map(|e| e.id).collect::<Vec<_>>(), [id, next]);
        assert!(r.backend.check().await.unwrap().is_ok());
    });
    drop(r.backend);
    r.task.shutdown_blocking().unwrap();
}
