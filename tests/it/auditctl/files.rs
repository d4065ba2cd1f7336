//! Whole-file commands: export, backup and restore, verify, prune.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use gatehouse::store::{EventKind, NewEvent, NewSession, Store, StoreOptions, now_us};

use super::harness::*;

/// The permission bits of a file.
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn export_round_trips_through_zstd() {
    let mut live = Live::start();
    seed(&live);
    live.start_load("carol");
    live.wait_for_load(5);
    let out = live.data_dir().join("alice.jsonl.zst");
    let o = live.auditctl(&[
        "export",
        "--user",
        "alice",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("exported 250 events"), "{}", stderr(&o));
    let lines = read_zst_lines(&out);
    assert_eq!(lines.len(), 250);
    let is: Vec<u64> = lines
        .iter()
        .map(|v| v["details"]["i"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(is, (0..250).collect::<Vec<_>>(), "oldest first, complete");
    assert!(!live.data_dir().join("alice.jsonl.zst.partial").exists());
    // Exported events name people: owner-only, whatever the umask. So is
    // the database the stand-in server created.
    assert_eq!(mode(&out), 0o600);
    assert_eq!(mode(&live.data_dir().join("gatehouse.redb")), 0o600);
    // zstdcat and jq read it, when they are installed.
    if Command::new("zstdcat").arg("--version").output().is_ok() {
        let o = Command::new("zstdcat").arg(&out).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 250);
    }
    // Plain JSON Lines with a time window.
    let plain = live.data_dir().join("window.jsonl");
    let o = live.auditctl(&[
        "export",
        "--since",
        "2026-01-01T00:00:10Z",
        "--until",
        "2026-01-01T00:00:20Z",
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&plain).unwrap().lines().count(), 20);
    assert_eq!(mode(&plain), 0o600);
    live.shutdown();
}

#[test]
fn backup_during_writes_verifies_and_restores() {
    let mut live = Live::start();
    seed(&live);
    let session = live
        .rt
        .block_on(live.writer.create_session(NewSession {
            user: "alice".into(),
            remember_me: false,
            idle_ttl_ms: 3_600_000,
            absolute_ttl_ms: 86_400_000,
            max_per_user: 5,
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("Firefox".into()),
            now_ms: gatehouse::store::now_ms(),
            methods: gatehouse::store::Methods::PASSWORD,
        }))
        .unwrap();
    live.start_load("carol");
    live.wait_for_load(20);
    let dest = live.data_dir().join("backups").join("snap.redb");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let o = live.auditctl(&["backup", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("backup written") && out.contains("chain head"),
        "{out}"
    );
    // The stand-in serves only the streams: it records no event.
    assert!(
        out.contains("did not record") && out.contains("backup.created"),
        "{out}"
    );
    // After its check, the reminder of what a restore needs besides it.
    let reminder = out
        .lines()
        .find(|l| l.starts_with("to restore, keep three things together"))
        .unwrap_or_else(|| panic!("no reminder: {out}"));
    for thing in ["this snapshot", "secrets.key", "gatehouse.toml"] {
        assert!(reminder.contains(thing), "{reminder}");
    }
    assert!(
        out.find("check       ok").unwrap() < out.find("to restore").unwrap(),
        "{out}"
    );
    // The copy holds the whole audit trail: owner-only, whatever the umask.
    assert_eq!(mode(&dest), 0o600);
    live.wait_for_load(live.written.load(Ordering::Relaxed) + 10);

    // The snapshot is complete and consistent on its own.
    let snap = Store::open_read_only(&dest, &StoreOptions::default()).unwrap();
    let report = snap.check().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.events >= 351, "{report:?}");
    assert_eq!(report.sessions, 1);
    let snap_events = report.events;
    drop(snap);
    let o = auditctl_in(
        Path::new("/nonexistent"),
        &["--db", dest.to_str().unwrap(), "verify"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // Restore: stop the server, copy the snapshot into a data dir, start.
    let _data = live.shutdown();
    let restored = tempfile::tempdir().unwrap();
    let db = restored.path().join("gatehouse.redb");
    std::fs::copy(&dest, &db).unwrap();
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let check = store.check().unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.events, snap_events);
    let alice = store
        .query_events(
            &gatehouse::store::EventFilter {
                user: Some("alice".into()),
                kinds: vec![EventKind::LoginFailure, EventKind::LoginSuccess],
                ..Default::default()
            },
            1_000,
            None,
        )
        .unwrap();
    assert_eq!(alice.events.len(), 250);
    assert!(
        store
            .session(&session.token, gatehouse::store::now_ms())
            .unwrap()
            .is_some()
    );
    store
        .apply(gatehouse::store::Op::Append(NewEvent::now(
            EventKind::ServerStarted,
        )))
        .unwrap();
    assert!(store.check().unwrap().is_ok());
}

#[test]
fn backup_records_its_event_when_no_server_runs() {
    let live = Live::start();
    seed(&live);
    let dir = live.shutdown();
    let dest = dir.path().join("snap.redb");
    let o = auditctl_in(dir.path(), &["backup", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("recorded a backup.created event"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_passes_then_names_the_first_bad_event() {
    let (dir, db, ids) = seeded_copy();
    let o = auditctl_in(dir.path(), &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("verify: OK"));
    assert!(stdout(&o).contains("chain head"));

    gatehouse::store::testing::edit_event_details(&db, ids[100], "i", "forged").unwrap();
    let o = auditctl_in(dir.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!("first bad event {}", ids[101])),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("hash chain broken"), "{}", stdout(&o));

    let (dir, db, ids) = seeded_copy();
    gatehouse::store::testing::delete_event(&db, ids[7]).unwrap();
    let o = auditctl_in(dir.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("first bad event {}", ids[8])),
        "{}",
        stderr(&o)
    );
}

#[test]
fn prune_archives_old_events_and_verify_still_passes() {
    let live = Live::start();
    let now = now_us();
    let mut evs: Vec<NewEvent> = (0..1_500u64)
        .map(|i| {
            NewEvent::at(EventKind::LoginFailure, now - 100 * DAY_US + i * 1_000_000).user("old")
        })
        .collect();
    evs.extend(
        (0..20u64).map(|i| NewEvent::at(EventKind::LoginSuccess, now - DAY_US + i).user("new")),
    );
    live.append(evs);
    // While the server runs, pruning by hand is refused with a reason.
    let o = live.auditctl(&["prune", "--older-than", "30d"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    let keep = live.shutdown();
    let dir = keep.path().to_path_buf();

    let o = auditctl_in(&dir, &["prune", "--older-than", "30d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pruned 1500 events"), "{}", stdout(&o));
    let archived: Vec<_> = std::fs::read_dir(dir.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!archived.is_empty());
    let lines: usize = archived.iter().map(|p| read_zst_lines(p).len()).sum();
    assert_eq!(lines, 1_500);
    assert_eq!(mode(&dir.join("archive")), 0o700);
    for p in &archived {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    let o = auditctl_in(&dir, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("pruned 1500"), "{}", stdout(&o));
    let o = auditctl_in(&dir, &["query", "--user", "old"]);
    assert_eq!(o.status.code(), Some(1));
    let o = auditctl_in(&dir, &["query", "--kind", "retention.pruned", "--json"]);
    assert_eq!(json_lines(&o)[0]["details"]["pruned"], "1500");
}
