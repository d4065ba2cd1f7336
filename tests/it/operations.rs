//! Operator tasks against a running server: `auditctl backup` records its
//! event through the admin socket, and audit retention archives then prunes.

use std::io::Read;
use std::time::Duration;

use gatehouse::store::{EventKind, NewEvent, Op, Store, StoreOptions};

use crate::harness::{ALICE_PW, TestServer, client, config_text, login};

async fn audit(s: &TestServer, c: &reqwest::Client, query: &str) -> serde_json::Value {
    let r = c
        .get(s.at(&format!("/api/v1/audit?{query}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_is_recorded_by_the_server() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();
    assert_eq!(login(&c, &s, "alice", ALICE_PW, &[]).await.status(), 303);
    let dest = s.dir.join("snap.redb");
    let dir = s.dir.clone();
    let dest2 = dest.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditctl"))
            .arg("--data-dir")
            .arg(&dir)
            .arg("backup")
            .arg(&dest2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("through the running server"), "{stdout}");
    let page = audit(&s, &c, "kind=backup.created").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert!(events[0].to_string().contains("snap.redb"), "{page}");
    // The snapshot itself opens and verifies.
    let snap = Store::open_read_only(&dest, &StoreOptions::default()).unwrap();
    assert!(snap.check().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_then_prunes_old_events() {
    let tmp = tempfile::tempdir().unwrap();
    let day_us = 86_400_000_000u64;
    let now = gatehouse::store::now_us();
    {
        let store =
            Store::open(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
        for i in 0..30u64 {
            let ev = NewEvent::at(EventKind::LoginFailure, now - 10 * day_us + i).user("mallory");
            store.apply(Op::Append(ev)).unwrap();
        }
        store.close().unwrap();
    }
    let s = TestServer::start_in(
        tmp.path(),
        &config_text("audit_retention_days = 7\nretention_interval_secs = 1", ""),
    )
    .await;
    let c = client();
    assert_eq!(login(&c, &s, "alice", ALICE_PW, &[]).await.status(), 303);
    // The first pass runs at start; wait (bounded) for its record.
    let mut pruned = serde_json::Value::Null;
    for _ in 0..100 {
        pruned = audit(&s, &c, "kind=retention.pruned").await;
        if !pruned["events"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned.to_string().contains("30"), "{pruned}");
    let old = audit(&s, &c, "user=mallory").await;
    assert!(old["events"].as_array().unwrap().is_empty(), "{old}");
    // Recent events stay.
    let recent = audit(&s, &c, "user=alice").await;
    assert!(!recent["events"].as_array().unwrap().is_empty());
    s.stop().await;

    // Nothing was lost: all 30 events are in the archive.
    let mut lines = 0;
    for entry in std::fs::read_dir(tmp.path().join("archive")).unwrap() {
        let mut text = String::new();
        zstd::Decoder::new(std::fs::File::open(entry.unwrap().path()).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        lines += text.lines().filter(|l| l.contains("mallory")).count();
    }
    assert_eq!(lines, 30);
    let store =
        Store::open_read_only(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.events_pruned, 30);
}
