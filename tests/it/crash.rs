//! Crash durability of the store: a child process writes through the group-commit
//! writer and reports each acknowledged write; the parent kills it with SIGKILL
//! at a random moment, reopens the file and checks that every acknowledged event
//! and session is there and that every index and the hash chain agree.
//!
//! `GATEHOUSE_CRASH_CYCLES` sets the number of cycles (default 20; the long mode
//! documented in the README uses 200).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use gatehouse::store::*;

use crate::child::{Rng, cycles};

#[test]
fn acknowledged_writes_survive_sigkill() {
    crash_cycles(false);
}

/// Appends alone: each batch becomes durable through the commit log only
/// (no session write makes it durable in the file), so most kills land
/// while acknowledged appends are in the log and not yet in the file.
#[test]
fn acknowledged_appends_in_the_commit_log_survive_sigkill() {
    crash_cycles(true);
}

fn crash_cycles(appends_only: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gatehouse.redb");
    let mut rng = Rng(now_us() | 1);
    let mut acked_events: Vec<u64> = Vec::new();
    let mut acked_sessions: Vec<String> = Vec::new();
    let cycles = cycles(20);
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GATEHOUSE_CRASH_DB", &db)
            .env(
                "GATEHOUSE_CRASH_APPENDS_ONLY",
                if appends_only { "1" } else { "" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = 20 + (rng.next() % 400) as usize;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(id) = line.strip_prefix("E ") {
                acked_events.push(id.parse().unwrap());
                seen += 1;
            } else if let Some(s) = line.strip_prefix("S ") {
                acked_sessions.push(s.to_string());
                seen += 1;
            }
        }
        child.kill().unwrap();
        // Lines the child flushed before it died were acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("E ") {
                acked_events.push(id.parse().unwrap());
            } else if let Some(s) = line.strip_prefix("S ") {
                acked_sessions.push(s.to_string());
            }
        }
        child.wait().unwrap();

        if appends_only && cycle == 0 {
            // The appends went through the log (created at its full size).
            let log = std::fs::metadata(format!("{}-log", db.display())).unwrap();
            assert!(log.len() > 0, "no commit log beside {}", db.display());
        }
        let store = Store::open(&db, &StoreOptions::default()).unwrap();
        let report = store.check().unwrap();
        assert!(report.is_ok(), "cycle {cycle}: {:?}", report.problems);
        for id in &acked_events {
            let got = store.events_after(EventId(id - 1), 1).unwrap();
            assert_eq!(
                got.first().map(|e| e.id.0),
                Some(*id),
                "cycle {cycle}: event {id} lost"
            );
        }
        for s in &acked_sessions {
            let token = SessionToken::parse(s).unwrap();
            assert!(
                store.session(&token, now_ms()).unwrap().is_some(),
                "cycle {cycle}: session lost"
            );
        }
        store.close().unwrap();
    }
    eprintln!(
        "crash: {cycles} cycles, {} acknowledged events and {} sessions checked, 0 lost",
        acked_events.len(),
        acked_sessions.len()
    );
    assert!(!acked_events.is_empty());
}

/// The writing side, run in a child process by the test above.
#[test]
#[ignore]
fn child_process() {
    let Ok(path) = std::env::var("GATEHOUSE_CRASH_DB") else {
        return;
    };
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    // Optional prefill, to measure recovery time of a large file after a kill.
    let prefill: u64 = std::env::var("GATEHOUSE_CRASH_PREFILL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for chunk in 0..prefill / 10_000 {
        let ops = (0..10_000u64)
            .map(|i| {
                Op::Append(
                    NewEvent::at(EventKind::LoginSuccess, 1_000_000 + chunk * 10_000 + i)
                        .user(format!("user{}", i % 1000))
                        .ip(Some("192.0.2.1".parse().unwrap()))
                        .user_agent(Some("Mozilla/5.0 (X11; Linux x86_64)".into())),
                )
            })
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
    }
    let appends_only = std::env::var("GATEHOUSE_CRASH_APPENDS_ONLY").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (writer, _task) = Writer::spawn(store, WriterConfig::default());
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..8u32 {
            let writer = writer.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let line = if !appends_only && i % 10 == 0 {
                        let c = writer
                            .create_session(NewSession {
                                user: format!("user{w}"),
                                remember_me: true,
                                idle_ttl_ms: 0,
                                absolute_ttl_ms: 86_400_000,
                                max_per_user: 1_000_000,
                                ip: None,
                                user_agent: Some("crash".into()),
                                now_ms: now_ms(),
                                methods: Methods::PASSWORD,
                            })
                            .await
                            .unwrap();
                        format!("S {}", c.token.expose())
                    } else if !appends_only && i % 7 == 0 {
                        // Short-lived sessions give the sweeper work mid-crash.
                        writer
                            .create_session(NewSession {
                                user: format!("short{w}"),
                                remember_me: false,
                                idle_ttl_ms: 1,
                                absolute_ttl_ms: 1,
                                max_per_user: 1_000_000,
                                ip: None,
                                user_agent: None,
                                now_ms: now_ms(),
                                methods: Methods::PASSWORD,
                            })
                            .await
                            .unwrap();
                        writer.sweep(now_ms() + 10, 1_000).await.unwrap();
                        continue;
                    } else {
                        let id = writer
                            .append(NewEvent::now(EventKind::LoginFailure).user(format!("user{w}")))
                            .await
                            .unwrap();
                        format!("E {}", id.0)
                    };
                    let mut o = out.lock().unwrap();
                    writeln!(o, "{line}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}
