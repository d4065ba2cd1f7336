//! `auditctl --db postgres://...` on the audit trail of the distributed
//! backend, chained here as a node's chainer chains it: the same commands
//! and output as on a file for what PostgreSQL holds, a clear refusal for
//! what it does not, and a tampered row found.

use std::process::Command;

use gatehouse::store::postgres::testing::fresh_database;
use gatehouse::store::postgres::{Outboxed, PgAudit};
use gatehouse::store::{EventKind, NewEvent};

use super::harness::{DAY_US, json_lines, stderr, stdout};

fn auditctl(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_auditctl"))
        .arg("--db")
        .arg(url)
        .args(args)
        .env("TZ", "UTC")
        .env_remove("GATEHOUSE_DATA_DIR")
        .env_remove("GATEHOUSE_REDIS_URL")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditctl_reads_verifies_and_prunes_the_trail_in_postgres() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let pg = PgAudit::connect(&url).await.unwrap();
    // Ten days ago, and now: alice's sign-ins, bob's failures.
    let now = gatehouse::store::now_us();
    let mut batch = Vec::new();
    for i in 0..30u64 {
        let at = if i < 10 {
            now - 10 * DAY_US + i
        } else {
            now - 1_000 + i
        };
        let (user, kind) = if i % 3 == 0 {
            ("bob", EventKind::LoginFailure)
        } else {
            ("alice", EventKind::LoginSuccess)
        };
        batch.push(Outboxed {
            source: Some(format!("1-{i}")),
            event: NewEvent::at(kind, at)
                .user(user)
                .ip(Some("192.0.2.9".parse().unwrap())),
        });
    }
    pg.append_batch(batch).await.unwrap();
    let url_ = url.clone();
    // The binary blocks: off the test's runtime threads.
    let run = move |args: &'static [&'static str]| {
        let url = url_.clone();
        tokio::task::spawn_blocking(move || auditctl(&url, args))
    };

    let o = run(&["query", "--user", "bob", "--json", "--since", "30d"])
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bob = json_lines(&o);
    assert_eq!(bob.len(), 10);
    assert!(
        bob.iter()
            .all(|e| e["user"] == "bob" && e["kind"] == "login.failure")
    );

    let o = run(&["verify"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("events      30 (appended 30, pruned 0)"),
        "{text}"
    );
    assert!(text.contains("verify: OK"), "{text}");
    assert!(!text.contains("sessions"), "{text}");

    let o = run(&["stats"]).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("events      30"), "{text}");
    assert!(text.contains("login.success"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.jsonl");
    let out_s = out.to_string_lossy().into_owned();
    let o = tokio::task::spawn_blocking({
        let url = url.clone();
        let out_s = out_s.clone();
        move || auditctl(&url, &["export", "--output", &out_s])
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 30);

    // What PostgreSQL does not hold is refused, saying why.
    for args in [&["sessions"][..], &["backup", "/tmp/x.redb"][..]] {
        let o = tokio::task::spawn_blocking({
            let url = url.clone();
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                auditctl(&url, &args)
            }
        })
        .await
        .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains("Redis") || e.contains("pg_dump"), "{e}");
    }

    // Retention: the ten old events archived and removed; still verified.
    let archive = dir.path().join("archive");
    let archive_s = archive.to_string_lossy().into_owned();
    let o = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            auditctl(
                &url,
                &["prune", "--older-than", "5d", "--archive-dir", &archive_s],
            )
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pruned 10 events"), "{}", stdout(&o));
    assert_eq!(std::fs::read_dir(&archive).unwrap().count(), 1);
    let o = run(&["verify"]).await.unwrap();
    assert!(o.status.success(), "{}", stdout(&o));
    // 20 kept, and the event that records the prune itself.
    assert!(
        stdout(&o).contains("events      21 (appended 31, pruned 10)"),
        "{}",
        stdout(&o)
    );

    // A row changed behind the chain's back: verify fails, naming it.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE events SET user_name = 'mallory' WHERE id = (SELECT min(id) FROM events)",
            &[],
        )
        .await
        .unwrap();
    let o = run(&["verify"]).await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("verify: FAILED"), "{}", stdout(&o));
    assert!(stderr(&o).contains("first bad event"), "{}", stderr(&o));
}
