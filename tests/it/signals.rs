//! The real binary: SIGHUP reloads the users, SIGTERM stops it cleanly
//! (exit 0, `server.stopped` recorded, database closed), a second signal
//! exits at once, a bad config is a clear error.

use std::process::Stdio;
use std::time::Duration;

use gatehouse::store::{EventFilter, EventKind, Store, StoreOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::config_text;

/// Starts `gatehouse serve` on `dir` and returns it with its port once it listens.
async fn start(dir: &std::path::Path) -> (Child, u16) {
    std::fs::write(dir.join("gatehouse.toml"), config_text("", "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["fields"]["message"] == "gatehouse listening" {
                let addr: std::net::SocketAddr =
                    v["fields"]["addr"].as_str().unwrap().parse().unwrap();
                return addr.port();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .unwrap();
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, port) = start(tmp.path()).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Closed cleanly: a read-only open needs no repair, and the last event says so.
    let store =
        Store::open_read_only(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let page = store
        .query_events(&EventFilter::default(), 1, None)
        .unwrap();
    assert_eq!(page.events[0].kind, EventKind::ServerStopped);
    assert!(!tmp.path().join("admin.sock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, port) = start(tmp.path()).await;
    // A request in flight (head half sent) holds the drain open.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    signal(&child, "-INT");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    drop(conn);
}

#[tokio::test]
async fn bad_config_names_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.toml");
    std::fs::write(
        &path,
        "bind = \"127.0.0.1:0\"\n\n[session]\nidle_secs = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(tmp.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("g.toml:4:"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[tokio::test]
async fn hash_password_reads_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("gatehouse.toml"), config_text("", "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["hash-password", "--data-dir"])
        .arg(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"pass phrase\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let phc = String::from_utf8(out.stdout).unwrap();
    // The config's (cheap) cost is used.
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    assert!(gatehouse::server::password::verify_blocking(
        "pass phrase",
        phc.trim()
    ));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pass phrase"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_users() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, port) = start(tmp.path()).await;
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let bob = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = bob
        .post(url("/login"))
        .form(&[("username", "bob"), ("password", crate::harness::BOB_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let verify = || async { bob.get(url("/auth/verify")).send().await.unwrap().status() };
    assert_eq!(verify().await, 200);
    // Bob leaves the config file; a SIGHUP makes the server read it again.
    let path = tmp.path().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let without_bob = text.split("[[users]]\nname = \"bob\"").next().unwrap();
    std::fs::write(&path, without_bob).unwrap();
    signal(&child, "-HUP");
    let mut refused = false;
    for _ in 0..400 {
        if verify().await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "bob's session outlived the reload");
    // Still running, and it stops cleanly.
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let store =
        Store::open_read_only(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let reloads = store
        .query_events(
            &EventFilter {
                kinds: vec![EventKind::ConfigReloaded],
                ..EventFilter::default()
            },
            10,
            None,
        )
        .unwrap();
    assert_eq!(reloads.events.len(), 1);
}
