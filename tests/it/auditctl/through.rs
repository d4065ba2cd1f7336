//! `auditctl` through a running server's admin socket: the same output and
//! exit codes as from the file, a clear error when the socket does not
//! answer, and `tail --follow` carried across a server's stop and start.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use gatehouse::store::{EventKind, NewEvent, NewSession};

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

#[test]
fn follow_carries_on_across_a_server_stop_and_start() {
    let live = Live::start();
    let mut child = cmd(live.data_dir())
        .args(["tail", "-n", "0", "--follow", "--json", "--user", "dave"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    // Appends dave's event `n` until the follower prints it (bounded).
    let until_printed = |append: &dyn Fn(NewEvent), n: u32| {
        let start = Instant::now();
        loop {
            append(
                NewEvent::now(EventKind::LoginFailure)
                    .user("dave")
                    .detail("n", n.to_string()),
            );
            let deadline = Instant::now() + Duration::from_millis(500);
            while let Ok(v) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                if v["details"]["n"].as_str() == Some(n.to_string().as_str()) {
                    return;
                }
            }
            assert!(start.elapsed() < WAIT, "event {n} was not printed");
        }
    };
    // Through the server.
    until_printed(&|e| live.append(vec![e]), 1);
    // From the file, while no server runs.
    let dir = live.shutdown();
    let db = dir.path().join("gatehouse.redb");
    until_printed(
        &|e| {
            let store =
                gatehouse::store::Store::open(&db, &gatehouse::store::StoreOptions::default())
                    .unwrap();
            store.apply(gatehouse::store::Op::Append(e)).unwrap();
            store.close().unwrap();
        },
        2,
    );
    // Through a server again: the follower never kept it from starting.
    let live = Live::start_in(dir);
    until_printed(&|e| live.append(vec![e]), 3);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
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
        assert!(start.elapsed() < WAIT, "tail --follow did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    live.shutdown();
}
