//! Crash durability of the real server: `gatehouse serve` runs as a child
//! process under steady load (logins, session checks, logouts, the expiry
//! sweeper, now and then an `auditctl backup`) and is killed with SIGKILL at
//! random moments, then restarted. After every restart:
//!
//! - `/healthz` answers again;
//! - every acknowledged login (a `303` with a session cookie) still holds a
//!   session that `/auth/verify` accepts, and its `login.success` event is in
//!   the audit trail;
//! - `auditctl verify` passes (indexes and hash chain);
//! - a backup that reported success is a complete, checked snapshot, and one
//!   that failed left nothing at its destination.
//!
//! `GATEHOUSE_CRASH_CYCLES` sets the number of kill/restart cycles (default
//! 12; the long mode in `docs/reliability.md` uses 200).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{Store, StoreOptions, now_us};
use reqwest::StatusCode;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::child::*;
use crate::harness::{ALICE_PW, BOB_PW};

/// The load: logins, checks and logouts from a few concurrent clients until
/// `stop`, recording acknowledged alice sessions into `acked`.
async fn load(url: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>, seed: u64) {
    let c = plain_client();
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<String> = Vec::new();
    for i in 0u64..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match i % 5 {
            // bob: an ordinary session, soon idle-expired (sweeper work),
            // sometimes logged out at once (a `logout` event).
            0 => {
                if let Some(t) = form_login(&c, &url, "bob", BOB_PW, false).await
                    && rng.below(2) == 0
                {
                    let _ = c
                        .post(format!("{url}/logout"))
                        .header("cookie", format!("gatehouse_session={t}"))
                        .send()
                        .await;
                }
            }
            // A failed login: a `login.failure` event.
            1 if rng.below(3) == 0 => {
                let _ = form_login(&c, &url, "alice", "wrong password", false).await;
            }
            _ => match form_login(&c, &url, "alice", ALICE_PW, true).await {
                Some(t) => {
                    acked.lock().await.push(t.clone());
                    mine.push(t);
                }
                // Refused (busy) or the server is gone.
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
        // A forward-auth check of one of this client's sessions: the hot
        // path runs all the time, as behind a proxy.
        if !mine.is_empty() {
            let t = &mine[rng.below(mine.len() as u64) as usize];
            if let Some(s) = verify_status(&c, &url, t).await {
                assert_eq!(s, StatusCode::OK, "an acknowledged session was refused");
            }
        }
    }
}

/// How a backup taken while the server was killed ended.
#[derive(Default)]
struct BackupTally {
    ok: usize,
    failed_cleanly: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logins_survive_sigkill_of_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(dir.join("gatehouse.toml"), crash_config()).unwrap();
    let db = dir.join("gatehouse.redb");

    let mut rng = Rng(now_us() | 1);
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut checked_upto = 0usize;
    let mut tally = BackupTally::default();
    let mut max_restart = Duration::ZERO;
    let mut early_kills = 0;
    let cycles = cycles(12);
    let mut server = Proc::start(&dir).await.expect("first start");
    wait_healthy(&server).await;

    for cycle in 0..cycles {
        // Load for a random while, then SIGKILL.
        let stop = Arc::new(AtomicBool::new(false));
        let drivers: Vec<_> = (0..3)
            .map(|k| {
                tokio::spawn(load(
                    server.url.clone(),
                    stop.clone(),
                    acked.clone(),
                    rng.next() ^ k,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + rng.below(1200))).await;
        // Every third cycle the kill lands while `auditctl backup` runs.
        let backup = if cycle % 3 == 1 {
            let dest = backups.join(format!("snap-{cycle}.redb"));
            let child = Command::new(env!("CARGO_BIN_EXE_auditctl"))
                .arg("--data-dir")
                .arg(&dir)
                .arg("backup")
                .arg(&dest)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            Some((child, dest))
        } else {
            None
        };
        server.kill().await;
        stop.store(true, Ordering::Relaxed);
        for d in drivers {
            tokio::time::timeout(WAIT, d)
                .await
                .expect("a load driver hung after the kill")
                .unwrap();
        }
        if let Some((child, dest)) = backup {
            check_backup(child, &dest, &mut tally).await;
        }

        // Every fourth cycle the restart itself is killed early, while it
        // opens (and repairs) the file, before it listens.
        if cycle % 4 == 3 {
            let mut early = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                .args(["serve", "--data-dir"])
                .arg(&dir)
                .args(["--bind", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
            early.start_kill().unwrap();
            tokio::time::timeout(WAIT, early.wait())
                .await
                .expect("killed server not reaped")
                .unwrap();
            early_kills += 1;
        }

        // Restart; it must come back by itself.
        let start = Instant::now();
        server = match Proc::start(&dir).await {
            Ok(p) => p,
            Err(log) => panic!("cycle {cycle}: restart failed:\n{log}"),
        };
        wait_healthy(&server).await;
        max_restart = max_restart.max(start.elapsed());

        // auditctl beside the running server: integrity and chain.
        let (code, out, err) = auditctl(&dir, &["verify"]).await;
        assert_eq!(code, Some(0), "cycle {cycle}: verify failed:\n{out}\n{err}");

        // Every session acknowledged since the last cycle, and a sample of
        // the older ones, is there with its login.success event: read
        // through the running server, which holds the file.
        let acked_now = acked.lock().await.clone();
        let logged = login_success_ids_through(&dir, "alice").await;
        let c = plain_client();
        let mut sample: Vec<&String> = acked_now[checked_upto..].iter().collect();
        for _ in 0..16.min(checked_upto) {
            sample.push(&acked_now[rng.below(checked_upto as u64) as usize]);
        }
        for t in &sample {
            let id = session_id(&c, &server.url, t)
                .await
                .unwrap_or_else(|| panic!("cycle {cycle}: an acknowledged session was lost"));
            assert!(
                logged.contains(&id),
                "cycle {cycle}: login.success of an acknowledged session was lost"
            );
        }
        // ...and the forward-auth check accepts them.
        for t in sample {
            assert_eq!(
                verify_status(&c, &server.url, t).await,
                Some(StatusCode::OK),
                "cycle {cycle}: /auth/verify refused an acknowledged session"
            );
        }
        checked_upto = acked_now.len();
        if cycles > 20 && (cycle + 1) % 20 == 0 {
            eprintln!(
                "crash_server: {} of {cycles} cycles, {checked_upto} sessions so far",
                cycle + 1
            );
        }
    }

    // The end: every session ever acknowledged verifies.
    let all = acked.lock().await.clone();
    let c = plain_client();
    for t in &all {
        assert_eq!(
            verify_status(&c, &server.url, t).await,
            Some(StatusCode::OK)
        );
    }
    // Every live session of alice has its login.success event.
    let logged = login_success_ids_through(&dir, "alice").await;
    let live = session_ids_through(&dir, "alice").await;
    assert!(live.len() >= all.len(), "{} of {}", live.len(), all.len());
    assert!(live.is_subset(&logged), "a login.success was lost");
    let (code, out, _) = auditctl(&dir, &["verify"]).await;
    assert_eq!(code, Some(0), "{out}");
    server.kill().await;
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let events = store.stats().unwrap().events;
    store.close().unwrap();
    eprintln!(
        "crash_server: {cycles} cycles ({early_kills} more kills during start-up), {events} events, \
         {} acknowledged sessions checked, backups during kills: {} complete + {} failed cleanly, \
         slowest restart {:?}, lost=0",
        all.len(),
        tally.ok,
        tally.failed_cleanly,
        max_restart
    );
    assert!(!all.is_empty(), "no login was acknowledged");
}

/// A backup racing a kill either completed (a full, checked snapshot) or
/// failed and left nothing at its destination.
async fn check_backup(child: Child, dest: &PathBuf, tally: &mut BackupTally) {
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("auditctl backup hung after the server died")
        .unwrap();
    if out.status.success() {
        let snap = Store::open_read_only(dest, &StoreOptions::default()).unwrap();
        let report = snap.check().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        snap.close().unwrap();
        tally.ok += 1;
    } else {
        assert!(
            !dest.exists(),
            "a failed backup left a file at its destination: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tally.failed_cleanly += 1;
    }
}
