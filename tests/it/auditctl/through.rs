//! `auditctl` through a running server's admin socket: the same output and
//! exit codes as from the file, a clear error when the socket does not
//! answer, and `tail --follow` carried across a server's stop and start.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use gatehouse::store::{EventKind, NewEvent, NewSession, Op, Store, StoreOptions};

use super::harness::*;

/// What a run printed and how it exited, for comparing two runs.
fn seen(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), stdout(o), stderr(o))
}

#[test]
fn answers_through_the_server_match_answers_from_the_file() {
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
            user_agent: Some("Firefox".into()),
            now_ms: gatehouse::store::now_ms(),
            methods: gatehouse::store::Methods::PASSWORD,
        }))
        .unwrap();
    let commands: &[&[&str]] = &[
        &["query", "--user", "alice", "--limit", "7"],
        &["query", "--user", "alice", "--limit", "1000", "--json"],
        &[
            "query",
            "--kind",
            "login.success",
            "--ip",
            "192.0.2.2",
            "--json",
        ],
        &["query", "--user", "nobody"],
        &["query", "--cursor", "not-a-cursor"],
        &["tail", "-n", "5"],
        &["tail", "-n", "3", "--json", "--user", "bob"],
        &["sessions", "--user", "alice"],
        &["sessions", "--json"],
        &["tokens", "--user", "alice"],
        &["verify"],
        &["stats", "--top", "3"],
    ];
    let through: Vec<_> = commands.iter().map(|a| seen(&live.auditctl(a))).collect();
    // The cursor of a page through the server continues from the file.
    let first = live.auditctl(&["query", "--user", "alice", "--limit", "100", "--json"]);
    let cursor = next_cursor(&first).unwrap();
    let export = live.data_dir().join("through.jsonl");
    let o = live.auditctl(&["export", "--user", "bob", "-o", export.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let dir = live.shutdown();
    let direct: Vec<_> = commands
        .iter()
        .map(|a| seen(&auditctl_in(dir.path(), a)))
        .collect();
    for ((args, t), d) in commands.iter().zip(&through).zip(&direct) {
        if args[0] == "stats" {
            // The file's length is the one line that may differ: closing
            // the file can change it.
            let strip = |s: &str| {
                s.lines()
                    .filter(|l| !l.starts_with("file size"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!((t.0, strip(&t.1)), (d.0, strip(&d.1)), "{args:?}");
        } else {
            assert_eq!(t, d, "{args:?}");
        }
    }
    assert_eq!(through[3].0, Some(1), "nothing found is exit 1 either way");
    assert_eq!(through[4].0, Some(2), "a bad cursor is exit 2 either way");
    assert!(through[4].2.contains("hint:"), "{}", through[4].2);
    let o = auditctl_in(
        dir.path(),
        &[
            "query", "--user", "alice", "--json", "--limit", "1000", "--cursor", &cursor,
        ],
    );
    // 250 seeded events and the session's `session.created`, less the first page.
    assert_eq!(json_lines(&o).len(), 151);
    let export_direct = dir.path().join("direct.jsonl");
    let o = auditctl_in(
        dir.path(),
        &[
            "export",
            "--user",
            "bob",
            "-o",
            export_direct.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&export).unwrap(),
        std::fs::read(&export_direct).unwrap()
    );
}

#[test]
fn a_held_file_whose_socket_does_not_answer_is_a_clear_error() {
    let (dir, db, _) = seeded_copy();
    let _hold = gatehouse::store::testing::hold_exclusive(&db).unwrap();
    // Something listens on the socket and never answers.
    let _mute = std::os::unix::net::UnixListener::bind(dir.path().join("admin.sock")).unwrap();
    let dest = dir.path().join("x.redb");
    for args in [
        &["query"][..],
        &["verify"],
        &["backup", dest.to_str().unwrap()],
    ] {
        let o = auditctl_in(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("did not answer"), "{}", stderr(&o));
    }
    // The failed backup left nothing behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("x.redb"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// `auditctl tail -n 0 --follow --json --user dave` running on a data dir,
/// and what it prints.
struct Follower {
    child: Child,
    printed: Receiver<serde_json::Value>,
    reader: std::thread::JoinHandle<()>,
}

impl Follower {
    fn start(data_dir: &Path) -> Follower {
        let mut child = cmd(data_dir)
            .args(["tail", "-n", "0", "--follow", "--json", "--user", "dave"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, printed) = std::sync::mpsc::channel::<serde_json::Value>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            printed,
            reader,
        }
    }

    /// Appends dave's event `n` with `append` until the follower prints it
    /// (bounded): an event appended before the follower has read where the
    /// trail ends is not printed (`-n 0`), one appended after it is. Fails
    /// at once, with what the follower said, if it ends.
    fn until_printed(&mut self, append: &dyn Fn(NewEvent), n: u32) {
        let start = Instant::now();
        loop {
            append(
                NewEvent::now(EventKind::LoginFailure)
                    .user("dave")
                    .detail("n", n.to_string()),
            );
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                match self
                    .printed
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(v) if v["details"]["n"].as_str() == Some(n.to_string().as_str()) => {
                        return;
                    }
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        let status = self.exited();
                        let mut err = String::new();
                        let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                        panic!("tail --follow ended ({status:?}) before event {n}: {err}");
                    }
                }
            }
            assert!(start.elapsed() < WAIT, "event {n} was not printed");
        }
    }

    /// The follower's exit status, once it has exited (bounded).
    fn exited(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < WAIT, "tail --follow did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the follower as Ctrl-C does; it exits 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.exited();
        assert!(status.success(), "{status:?}");
        self.reader.join().unwrap();
    }
}

/// Appends one event to the file as a tool that owns it does: open, append,
/// close.
fn append_to_file(db: &Path, e: NewEvent) {
    let store = Store::open(db, &StoreOptions::default()).unwrap();
    store.apply(Op::Append(e)).unwrap();
    store.close().unwrap();
}

#[test]
fn follow_carries_on_across_a_server_stop_and_start() {
    let live = Live::start();
    let mut follower = Follower::start(live.data_dir());
    // Through the server.
    follower.until_printed(&|e| live.append(vec![e]), 1);
    // From the file, while no server runs.
    let dir = live.shutdown();
    let db = dir.path().join("gatehouse.redb");
    follower.until_printed(&|e| append_to_file(&db, e), 2);
    // Through a server again: the follower never kept it from starting.
    let live = Live::start_in(dir);
    follower.until_printed(&|e| live.append(vec![e]), 3);
    follower.stop();
    live.shutdown();
}

/// A server stopping resets the connections still queued on its socket and
/// cuts those it accepted: a follower that connects just then finds the
/// server gone, and carries on from the file once it is free.
#[test]
fn follow_carries_on_when_a_stopping_server_resets_its_connection() {
    let live = Live::start();
    let mut follower = Follower::start(live.data_dir());
    follower.until_printed(&|e| live.append(vec![e]), 1);
    let dir = live.shutdown();
    let db = dir.path().join("gatehouse.redb");
    // Another server takes the file, and the follower connects to its
    // socket.
    let holder = Store::open(&db, &StoreOptions::default()).unwrap();
    let socket = dir.path().join(gatehouse::admin_wire::SOCKET_FILE);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (tx, accepted) = std::sync::mpsc::channel();
    let l = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = tx.send(l.accept().map(|(c, _)| c));
    });
    let mut conn = accepted
        .recv_timeout(WAIT)
        .expect("the follower did not connect")
        .unwrap();
    // The server stops before answering: the rest of the request is left
    // unread, so closing the connection resets it.
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.read_exact(&mut [0u8; 1]).unwrap();
    std::fs::remove_file(&socket).unwrap();
    drop(conn);
    drop(listener);
    holder.close().unwrap();
    follower.until_printed(&|e| append_to_file(&db, e), 2);
    follower.stop();
}
