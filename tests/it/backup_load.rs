//! Backups under load: `auditctl backup` runs again and again while writers
//! append audit events as fast as the group-commit writer takes them. Every
//! snapshot opens, passes the full check (indexes and hash chain), and holds
//! every event acknowledged before its backup began.
//!
//! `GATEHOUSE_BACKUP_SNAPSHOTS` sets the number of snapshots (default 5; the
//! long mode in `docs/reliability.md` uses 50, in rounds of 5 on a fresh
//! database each).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse::store::{EventId, EventKind, NewEvent, Store, StoreOptions, Writer, WriterConfig};
use tokio::sync::Mutex;

use crate::child::{WAIT, auditctl};

fn snapshots() -> usize {
    std::env::var("GATEHOUSE_BACKUP_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Every event id in a database, oldest first.
fn all_event_ids(store: &Store) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut after = EventId(0);
    for _ in 0..1_000_000 {
        let page = store.events_after(after, 1000).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        ids.extend(page.iter().map(|e| e.id.0));
    }
    ids
}

/// Snapshots per round: each round starts from an empty database, so that
/// a long mode grows in rounds, not in the size of one ever-growing file.
const PER_ROUND: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_under_load_are_complete_and_checked() {
    let n = snapshots();
    let mut total = 0;
    for round in 0..n.div_ceil(PER_ROUND) {
        total += round_of_backups(round, PER_ROUND.min(n - round * PER_ROUND)).await;
    }
    eprintln!(
        "backup_load: {n} snapshots under load in all, {total} events acknowledged, missing=0"
    );
}

/// One database, writers at full speed, `n` snapshots; returns the number
/// of events acknowledged.
async fn round_of_backups(round: usize, n: usize) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let store = Store::open(dir.join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
    // The backups go through the admin socket, as a running server's do.
    let socket = crate::standin::AdminSocket::serve(
        &tokio::runtime::Handle::current(),
        &store,
        &writer,
        &dir,
    );
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Writers at full speed: appends and sessions (which append too).
    let load: Vec<_> = (0..32u32)
        .map(|w| {
            let writer = writer.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                for i in 0u64..10_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let ev = NewEvent::now(if i % 3 == 0 {
                        EventKind::LoginFailure
                    } else {
                        EventKind::LoginSuccess
                    })
                    .user(format!("user{w}"))
                    .detail("n", i.to_string());
                    let id = writer.append(ev).await.unwrap();
                    acked.lock().await.push(id.0);
                }
            })
        })
        .collect();

    let mut sizes = Vec::new();
    for k in 0..n {
        // Let some writes land between snapshots.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before: Vec<u64> = acked.lock().await.clone();
        let dest = dir.join(format!("snap-{k}.redb"));
        let (code, out, err) = auditctl(&dir, &["backup", dest.to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "backup {k} failed:\n{out}\n{err}");
        let snap = Store::open_read_only(&dest, &StoreOptions::default()).unwrap();
        let report = snap.check().unwrap();
        assert!(report.is_ok(), "snapshot {k}: {:?}", report.problems);
        let present = all_event_ids(&snap);
        let missing = before.iter().filter(|id| !present.contains(id)).count();
        assert_eq!(
            missing, 0,
            "snapshot {k} lacks {missing} events acknowledged before it began"
        );
        sizes.push(report.events);
        snap.close().unwrap();
    }

    stop.store(true, Ordering::Relaxed);
    for l in load {
        tokio::time::timeout(WAIT, l).await.unwrap().unwrap();
    }
    let written = acked.lock().await.len();
    socket.stop().await;
    drop(writer);
    task.shutdown().await.unwrap();
    assert!(store.check().unwrap().is_ok());
    store.close().unwrap();
    // Snapshots taken later hold more: the load really ran during them.
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(n < 2 || sizes.last() > sizes.first(), "{sizes:?}");
    eprintln!(
        "backup_load: round {round}: {n} snapshots under load (events per snapshot {sizes:?}), \
         {written} events acknowledged, every snapshot checked, missing=0"
    );
    written
}
