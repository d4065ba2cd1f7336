//! Reading the trail: query pages and filters, tail and follow, sessions
//! and stats.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::store::{EventKind, NewEvent, NewSession};

use super::harness::*;

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
            methods: gatehouse::store::Methods::PASSWORD,
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
    assert!(
        out.contains(&format!(
            "schema      version {}",
            gatehouse_migrations::LATEST
        )),
        "{out}"
    );
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
fn crafted_names_are_escaped_in_tables_and_exact_in_json() {
    let live = Live::start();
    let names = [
        "a\u{200b}\u{200b}dmin",
        "admin\u{202e}1.2.3.4",
        "ad\u{2028}min",
        "ad  min",
    ];
    live.append(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                NewEvent::at(EventKind::LoginFailure, 1_767_225_600_000_000 + i as u64)
                    .user(*n)
                    .user_agent(Some("curl/8 \u{feff}x".into()))
            })
            .collect(),
    );
    let o = live.auditctl(&["query"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    for shown in [
        "a\\u{200b}\\u{200b}dmin",
        "admin\\u{202e}1.2.3.4",
        "ad\\u{2028}min",
        "ad\\u{20}\\u{20}min",
    ] {
        assert!(table.contains(shown), "{shown} not in {table}");
    }
    for hidden in ['\u{200b}', '\u{202e}', '\u{2028}', '\u{feff}'] {
        assert!(!table.contains(hidden), "{hidden:?} in {table}");
    }
    // JSON keeps the exact text.
    let o = live.auditctl(&["query", "--json"]);
    let got: Vec<String> = json_lines(&o)
        .iter()
        .map(|v| v["user"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.reverse();
    assert_eq!(got, want);
    assert_eq!(json_lines(&o)[0]["user_agent"], "curl/8 \u{feff}x");
    live.shutdown();
}

/// `auditctl tokens --user NAME`: a user's live tokens, read-only beside
/// the writer, never the token; `verify` counts them.
#[test]
fn tokens_of_a_user_are_listed_without_the_secret() {
    let live = Live::start();
    let now = gatehouse::store::now_ms();
    let created = live.rt.block_on(async {
        let out = live
            .writer
            .submit(gatehouse::store::Op::CreateToken {
                new: Box::new(gatehouse::store::NewAccessToken {
                    user: "alice".into(),
                    name: "deploy \u{1b}[31mred".into(),
                    domains: vec!["git.example.com".into()],
                    expires_ms: now + 86_400_000,
                    max_per_user: 5,
                    ip: None,
                    now_ms: now,
                    two_factor: false,
                }),
                session: None,
            })
            .await
            .unwrap();
        match out {
            gatehouse::store::OpOutput::TokenCreated(Ok(c)) => c,
            other => panic!("{other:?}"),
        }
    });
    let secret = created.token.expose();
    let o = live.auditctl(&["tokens", "--user", "alice"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("USER"), "{out}");
    assert!(
        out.contains("git.example.com") && out.contains(&created.info.hint),
        "{out}"
    );
    assert!(!out.contains(&secret[14..]), "the token itself: {out}");
    assert!(
        !out.contains('\u{1b}'),
        "control characters are escaped: {out}"
    );
    let o = live.auditctl(&["tokens", "--user", "alice", "--json"]);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], created.info.id.to_string());
    assert_eq!(lines[0]["domains"][0], "git.example.com");
    let o = live.auditctl(&["tokens", "--user", "bob"]);
    assert_eq!(o.status.code(), Some(1));
    let o = live.auditctl(&["verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("tokens      1"), "{}", stdout(&o));
    live.shutdown();
}
