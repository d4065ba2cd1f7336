//! Store tests against a real file: sessions, expiry, events, pagination,
//! restart, bad bytes, and the writer.

use super::*;

pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("g.redb"), &StoreOptions::default()).unwrap();
    (dir, store)
}

pub(crate) fn new_session(user: &str, now_ms: u64) -> NewSession {
    NewSession {
        user: user.into(),
        remember_me: false,
        idle_ttl_ms: 1_000,
        absolute_ttl_ms: 10_000,
        max_per_user: 3,
        ip: Some("127.0.0.1".parse().unwrap()),
        user_agent: Some("test".into()),
        now_ms,
    }
}

fn create(store: &Store, new: NewSession) -> CreatedSession {
    match store.apply(Op::CreateSession(new)).unwrap() {
        OpOutput::Created(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_lifecycle() {
    let (_d, store) = temp_store();
    let c = create(&store, new_session("alice", 1_000));
    let s = store.session(&c.token, 1_500).unwrap().unwrap();
    assert_eq!(s.user, "alice");
    // Idle deadline passes without a touch: invalid at once, before any sweep.
    assert!(store.session(&c.token, 2_000).unwrap().is_none());
    // A touch before the deadline slides it.
    let c2 = create(&store, new_session("alice", 3_000));
    store
        .apply(Op::Touch {
            hash: c2.token.hash(),
            now_ms: 3_900,
        })
        .unwrap();
    assert!(store.session(&c2.token, 4_500).unwrap().is_some());
    // The absolute deadline holds whatever the touches.
    assert!(store.session(&c2.token, 13_000).unwrap().is_none());
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn writer_commits_and_acknowledges() {
    let (_d, store) = temp_store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
        let mut handles = Vec::new();
        for i in 0..50u64 {
            let w = writer.clone();
            handles.push(tokio::spawn(async move {
                w.append(
                    NewEvent::at(EventKind::LoginFailure, 1_000 + i).user(format!("u{}", i % 5)),
                )
                .await
                .unwrap()
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        drop(writer);
        task.shutdown().await.unwrap();
    });
    let page = store
        .query_events(
            &EventFilter {
                user: Some("u1".into()),
                ..Default::default()
            },
            100,
            None,
        )
        .unwrap();
    assert_eq!(page.events.len(), 10);
    assert!(store.check().unwrap().is_ok());
}
