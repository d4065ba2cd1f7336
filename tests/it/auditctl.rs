//! End-to-end tests of the `auditctl` binary against a database that a live
//! writer (this test process, standing in for the server: `Store::open` and
//! `Writer::spawn`) is writing while `auditctl` reads it read-only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{
    EventKind, NewEvent, NewSession, Op, Store, StoreOptions, Writer, WriterConfig, WriterTask,
    now_us,
};

/// Upper bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(30);
const DAY_US: u64 = 86_400_000_000;

/// The stand-in server: owns the file for writing, like `gatehouse serve`.
struct Live {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Store,
    writer: Writer,
    task: Option<WriterTask>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    load: Option<tokio::task::JoinHandle<()>>,
}

impl Live {
    fn start() -> Live {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store =
            Store::open(dir.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
        let (writer, task) = {
            let _g = rt.enter();
            Writer::spawn(store.clone(), WriterConfig::default())
        };
        Live {
            dir,
            rt,
            store,
            writer,
            task: Some(task),
            stop: Arc::new(AtomicBool::new(false)),
            written: Arc::new(AtomicU64::new(0)),
            load: None,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Appends events through the writer, in order, and waits until all are
    /// durable: the queue is FIFO, so when the last is acknowledged all are.
    fn append(&self, mut events: Vec<NewEvent>) {
        let Some(last) = events.pop() else { return };
        let w = self.writer.clone();
        self.rt.block_on(async move {
            for ev in events {
                let mut op = Op::Append(ev);
                // Queued without waiting for each commit; a full queue waits.
                while let Err(e) = w.submit_nowait(op.clone()) {
                    assert!(matches!(e, gatehouse::store::WriteError::Busy), "{e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    op = op.clone();
                }
            }
            w.append(last).await.unwrap();
        });
    }

    /// Starts a background load: one event for `user` about every millisecond
    /// until the test ends (bounded to 200,000 events).
    fn start_load(&mut self, user: &'static str) {
        let (w, stop, written) = (self.writer.clone(), self.stop.clone(), self.written.clone());
        self.load = Some(self.rt.spawn(async move {
            for i in 0..200_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ev = NewEvent::now(EventKind::LoginSuccess)
                    .user(user)
                    .detail("n", i.to_string());
                if w.append(ev).await.is_err() {
                    break;
                }
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    fn wait_for_load(&self, at_least: u64) {
        let start = Instant::now();
        while self.written.load(Ordering::Relaxed) < at_least {
            assert!(start.elapsed() < WAIT, "background load did not progress");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `auditctl --data-dir <dir> ARGS` and waits for it.
    fn auditctl(&self, args: &[&str]) -> Output {
        auditctl_in(self.data_dir(), args)
    }

    /// Stops the load and the writer and closes the file, like a server
    /// stopping; returns the data directory, which lives on.
    fn shutdown(mut self) -> tempfile::TempDir {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(load) = self.load.take() {
            self.rt.block_on(load).unwrap();
        }
        let task = self.task.take().unwrap();
        let Live {
            dir,
            rt,
            store,
            writer,
            ..
        } = self;
        rt.block_on(async move {
            drop(writer);
            task.shutdown().await.unwrap();
        });
        store.close().unwrap();
        dir
    }
}

fn cmd(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditctl"));
    c.arg("--data-dir")
        .arg(data_dir)
        .env("TZ", "UTC")
        .env_remove("GATEHOUSE_DATA_DIR")
        .stdin(Stdio::null());
    c
}

fn auditctl_in(data_dir: &Path, args: &[&str]) -> Output {
    cmd(data_dir).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The cursor in a "more results: ... --cursor C" line on stderr.
fn next_cursor(o: &Output) -> Option<String> {
    let err = stderr(o);
    let line = err.lines().find(|l| l.starts_with("more results:"))?;
    Some(line.rsplit(' ').next()?.trim_matches('\'').to_string())
}

/// 2026-01-01T00:00:00Z in microseconds.
const JAN_1: u64 = 1_767_225_600_000_000;

/// 250 events of alice (failures from 192.0.2.1, every third a success from
/// 192.0.2.2) and 100 of bob, one second apart from 2026-01-01.
fn seed(live: &Live) {
    let mut evs = Vec::new();
    for i in 0..250u64 {
        let (kind, ip) = if i % 3 == 0 {
            (EventKind::LoginSuccess, "192.0.2.2")
        } else {
            (EventKind::LoginFailure, "192.0.2.1")
        };
        evs.push(
            NewEvent::at(kind, JAN_1 + i * 1_000_000)
                .user("alice")
                .ip(Some(ip.parse().unwrap()))
                .detail("i", i.to_string()),
        );
    }
    for i in 0..100u64 {
        evs.push(NewEvent::at(EventKind::LoginFailure, JAN_1 + i * 1_000_000 + 500).user("bob"));
    }
    // Ids follow append order: append in time order so each id keeps its time.
    evs.sort_by_key(|e| e.at_us);
    live.append(evs);
}

#[test]
fn query_pages_through_cursors_while_the_server_writes() {
    let mut live = Live::start();
    seed(&live);
    live.start_load("carol");
    live.wait_for_load(5);
    let mut cursor: Option<String> = None;
    let mut ids: Vec<u64> = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = vec!["query", "--user", "alice", "--limit", "100", "--json"];
        if let Some(c) = cursor.as_deref() {
            args.extend(["--cursor", c]);
        }
        let o = live.auditctl(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        for v in json_lines(&o) {
            assert_eq!(v["user"], "alice");
            ids.push(v["id"].as_str().unwrap().parse().unwrap());
        }
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        cursor = next_cursor(&o);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 250);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    // The table form: header, aligned columns, UTC times as TZ says.
    let o = live.auditctl(&["query", "--user", "bob", "--limit", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("TIME (UTC)") && lines[0].contains("KIND"),
        "{out}"
    );
    assert!(lines[1].starts_with("2026-01-01 00:01:39"), "{out}");
    let kind_col = lines[0].find("KIND").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[kind_col..].starts_with("login.failure")),
        "{out}"
    );
    assert!(stderr(&o).contains("more results: auditctl --data-dir"));
    live.shutdown();
}

#[test]
fn filters_narrow_the_results() {
    let live = Live::start();
    seed(&live);
    let count = |args: &[&str]| {
        let mut all = vec!["query", "--json", "--limit", "1000"];
        all.extend_from_slice(args);
        let o = live.auditctl(&all);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "{}",
            stderr(&o)
        );
        json_lines(&o)
    };
    assert_eq!(
        count(&["--user", "alice", "--kind", "login.success"]).len(),
        84
    );
    assert_eq!(
        count(&["--user", "alice", "--outcome", "failure"]).len(),
        166
    );
    assert_eq!(count(&["--outcome", "failure"]).len(), 266);
    assert_eq!(count(&["--ip", "192.0.2.2"]).len(), 84);
    assert_eq!(
        count(&["--kind", "login.success", "--kind", "login.failure"]).len(),
        350
    );
    let window = count(&[
        "--user",
        "alice",
        "--since",
        "2026-01-01T00:01:00Z",
        "--until",
        "2026-01-01T00:02:00Z",
    ]);
    assert_eq!(window.len(), 60);
    assert_eq!(window[0]["time"], "2026-01-01T00:01:59Z");
    assert_eq!(window[59]["details"]["i"], "60");
    assert_eq!(count(&["--since", "2026-01-02"]).len(), 0);
    // Nothing found: exit 1, with a note on stderr for people.
    let o = live.auditctl(&["query", "--user", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no matching events"));
    // JSON fields for jq.
    let o = live.auditctl(&["query", "--user", "alice", "--limit", "1", "--json"]);
    let v = &json_lines(&o)[0];
    for field in ["id", "time", "time_us", "kind", "user", "ip", "details"] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    assert_eq!(v["ip"], "192.0.2.2");
    live.shutdown();
}

#[test]
fn tail_follow_prints_new_events_and_exits_on_interrupt() {
    let live = Live::start();
    seed(&live);
    let mut child = cmd(live.data_dir())
        .args(["tail", "-n", "2", "--follow", "--json", "--user", "dave"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Append events for dave until the follower prints one (bounded).
    let start = Instant::now();
    let seen = loop {
        live.append(vec![NewEvent::now(EventKind::LoginFailure).user("dave")]);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("tail --follow printed nothing");
        }
    };
    let v: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(v["user"], "dave");
    assert_eq!(v["kind"], "login.failure");
    // Other users' events are filtered out.
    live.append(vec![NewEvent::now(EventKind::LoginFailure).user("erin")]);
    // Ctrl-C ends it cleanly.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("tail --follow did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().all(|l| !l.contains("erin")), "{rest:?}");
    live.shutdown();
}

#[test]
fn tail_shows_the_last_events_oldest_first() {
    let live = Live::start();
    seed(&live);
    let o = live.auditctl(&["tail", "-n", "3", "--user", "alice", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_lines(&o);
    let is: Vec<&str> = v
        .iter()
        .map(|e| e["details"]["i"].as_str().unwrap())
        .collect();
    assert_eq!(is, ["247", "248", "249"]);
    live.shutdown();
}

fn read_zst_lines(path: &Path) -> Vec<serde_json::Value> {
    let dec = zstd::stream::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    BufReader::new(dec)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
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
    assert!(out.contains("did not record a backup.created"), "{out}");
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

/// A closed copy of a seeded database, for damaging.
fn seeded_copy() -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let live = Live::start();
    seed(&live);
    let copy_dir = tempfile::tempdir().unwrap();
    let o = live.auditctl(&[
        "backup",
        copy_dir.path().join("gatehouse.redb").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    live.shutdown();
    let db = copy_dir.path().join("gatehouse.redb");
    let store = Store::open_read_only(&db, &StoreOptions::default()).unwrap();
    let mut ids: Vec<u64> = store
        .query_events(&Default::default(), 1_000, None)
        .unwrap()
        .events
        .iter()
        .map(|e| e.id.0)
        .collect();
    ids.reverse();
    drop(store);
    (copy_dir, db, ids)
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
    let o = auditctl_in(&dir, &["verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("pruned 1500"), "{}", stdout(&o));
    let o = auditctl_in(&dir, &["query", "--user", "old"]);
    assert_eq!(o.status.code(), Some(1));
    let o = auditctl_in(&dir, &["query", "--kind", "retention.pruned", "--json"]);
    assert_eq!(json_lines(&o)[0]["details"]["pruned"], "1500");
}

#[test]
fn sessions_and_stats() {
    let live = Live::start();
    seed(&live);
    live.rt
        .block_on(live.writer.create_session(NewSession {
            user: "alice".into(),
            remember_me: true,
            idle_ttl_ms: 3_600_000,
            absolute_ttl_ms: 86_400_000,
            max_per_user: 5,
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("Mozilla/5.0 \u{1b}[31mred".into()),
            now_ms: gatehouse::store::now_ms(),
        }))
        .unwrap();
    let o = live.auditctl(&["sessions", "--user", "alice"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("USER"), "{out}");
    assert!(
        out.contains("192.0.2.7") && out.contains("Mozilla/5.0"),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "control characters are escaped: {out}"
    );
    let o = live.auditctl(&["sessions", "--user", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    let o = live.auditctl(&["sessions", "--json"]);
    assert_eq!(json_lines(&o)[0]["user"], "alice");

    // The data directory from the environment, as the server's service file sets it.
    let o = Command::new(env!("CARGO_BIN_EXE_auditctl"))
        .env("GATEHOUSE_DATA_DIR", live.data_dir())
        .env("TZ", "UTC")
        .args(["sessions", "--user", "alice", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["ip"], "192.0.2.7");

    let o = live.auditctl(&["stats", "--top", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("schema      version 2"), "{out}");
    assert!(
        out.contains("login.failure") && out.contains("266"),
        "{out}"
    );
    assert!(
        out.contains("alice") && out.contains("top users (2 of 2 users"),
        "{out}"
    );
    live.shutdown();
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_code() {
    let live = Live::start();
    seed(&live);
    let cases: &[(&[&str], &str)] = &[
        (&["query", "--since", "yesterday"], "invalid time"),
        (&["query", "--until", "2026-13-40"], "invalid time"),
        (&["query", "--cursor", "not-a-cursor"], "invalid cursor"),
        (&["query", "--kind", "login.nope"], "unknown event kind"),
        (&["query", "--limit", "0"], "--limit"),
        (&["query", "--outcome", "maybe"], "unknown outcome"),
        (&["query", "--ip", "300.1.1.1"], "--ip"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["prune", "--older-than", "soon"], "invalid span"),
    ];
    for (args, needle) in cases {
        let o = live.auditctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // A cursor from another query is refused too.
    let o = live.auditctl(&["query", "--user", "alice", "--limit", "1"]);
    let c = next_cursor(&o).unwrap();
    let o = live.auditctl(&["query", "--user", "bob", "--cursor", &c]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different query"), "{}", stderr(&o));
    live.shutdown();

    // No database.
    let empty = tempfile::tempdir().unwrap();
    let o = auditctl_in(empty.path(), &["query"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--data-dir"), "{}", stderr(&o));

    // A file held by a process that excludes readers.
    let (dir, db, _) = seeded_copy();
    let hold = gatehouse::store::testing::hold_exclusive(&db).unwrap();
    let o = auditctl_in(dir.path(), &["query"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    drop(hold);

    // A file from a newer version.
    gatehouse::store::testing::set_schema_version(&db, 99).unwrap();
    let o = auditctl_in(dir.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("newer"), "{}", stderr(&o));
}
