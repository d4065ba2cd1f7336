//! Reload, idle timeout, graceful shutdown, first start, a key file that
//! others can read.

use std::io::{Read, Write};
use std::time::Duration;

use gatehouse::server::Exit;
use reqwest::StatusCode;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_users_and_keeps_sessions() {
    let s = TestServer::start(&config_text("", "")).await;
    let alice = client();
    let bob = client();
    login(&alice, &s, "alice", ALICE_PW, &[]).await;
    login(&bob, &s, "bob", BOB_PW, &[]).await;

    // A broken file is refused and the old users stay.
    let path = s.dir.join("gatehouse.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}\nbogus = [")).unwrap();
    let err = s.reloader.reload().await.unwrap_err().to_string();
    assert!(err.contains("gatehouse.toml:"), "{err}");
    assert_eq!(
        bob.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // Without bob: his session is refused, alice's survives.
    let without_bob = good
        .split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, without_bob).unwrap();
    assert_eq!(s.reloader.reload().await.unwrap().users, 1);
    assert_eq!(
        bob.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        alice
            .get(s.at("/auth/verify"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_stops_the_server_once_connections_close() {
    let mut s = TestServer::start(&config_text("idle_timeout_secs = 1", "")).await;
    // An open connection holds the server up past the timeout.
    let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        std::net::TcpStream::connect(s.addr).is_ok(),
        "still serving while a connection is open"
    );
    drop(conn);
    // Health checks are no activity: polling them does not keep the server up.
    let addr = s.addr;
    let poller = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok(mut c) = tokio::net::TcpStream::connect(addr).await {
            let _ = c
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(s.wait().await, Exit::Idle);
    poller.abort();
    assert!(std::net::TcpStream::connect(s.addr).is_err());
    assert!(s.dir.join("heartbeat").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    let s = TestServer::start(&config_text("", "")).await;
    let addr = s.addr;
    // Send a request head and half of its body, then ask for shutdown.
    let body = format!("username=bob&password={BOB_PW}");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..5]).await.unwrap();
    // Make sure the server has read the head before shutdown begins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "waits for the request in flight");
    conn.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 303"), "{out}");
    assert_eq!(stopping.await.unwrap(), Exit::Shutdown);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_an_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let ov = gatehouse::config::Overrides {
        config: Some(tmp.path().join("gatehouse.toml")),
        data_dir: Some(tmp.path().join("data")),
        bind: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    // Cheap hashing for the generated admin.
    std::fs::write(
        tmp.path().join("gatehouse.toml"),
        "[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let config = gatehouse::config::Config::load(&ov).unwrap();
    let server = gatehouse::server::Server::bind(config, ov).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let pw_file = tmp.path().join("data/admin-password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pw_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(tmp.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "a new data dir is owner-only");
    }
    let pw = std::fs::read_to_string(&pw_file).unwrap();
    let toml = std::fs::read_to_string(tmp.path().join("gatehouse.toml")).unwrap();
    assert!(toml.contains("memory_kib = 64") && toml.contains("name = \"admin\""));
    assert!(!toml.contains(pw.trim()));
    let r = client()
        .post(format!("http://{addr}/login"))
        .form(&[("username", "admin"), ("password", pw.trim())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    tx.send(()).unwrap();
    h.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_the_data_dir_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let tmp = tempfile::tempdir().unwrap();
    // A data dir other users may enter, made by the operator beforehand.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = TestServer::start_in(tmp.path(), &config_text("", "")).await;
    let heartbeat = tmp.path().join(gatehouse::server::tasks::HEARTBEAT_FILE);
    let socket = tmp.path().join(gatehouse::server::ops::admin::SOCKET_FILE);
    // Both appear shortly after start (bounded wait).
    for _ in 0..400 {
        if heartbeat.exists() && socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(mode(&tmp.path().join("gatehouse.redb")), 0o600);
    assert_eq!(mode(&heartbeat), 0o600);
    assert_eq!(mode(&socket), 0o600);
    // No other file is left readable by others (the config file is the
    // operator's, written by this test).
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let p = e.unwrap().path();
        if p.ends_with("gatehouse.toml") {
            continue;
        }
        assert_eq!(mode(&p) & 0o077, 0, "{}", p.display());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_other_users_can_read_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // A first start makes the key (0600).
    TestServer::start_in(tmp.path(), &config_text("", ""))
        .await
        .stop()
        .await;
    let key = tmp.path().join(gatehouse::identity::secret_box::KEY_FILE);
    let ov = gatehouse::config::Overrides {
        config: Some(tmp.path().join("gatehouse.toml")),
        data_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    };
    let bind = || async {
        let config = gatehouse::config::Config::load(&ov).unwrap();
        gatehouse::server::Server::bind(config, ov.clone()).await
    };
    // Loosened by hand (or restored by a tool that ignores modes): refused,
    // and the message names the file and the command that fixes it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Err(e) = bind().await else {
        panic!("started with a world-readable key file");
    };
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("chmod 600 {}", key.display())),
        "{shown}"
    );
    // After the fix, it starts.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = bind().await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    h.await.unwrap().unwrap();
}

/// A sign-in whose password was checked against a hash that a reload then
/// replaced gets no session: the store learns the new credentials before
/// the reload ends the user's sessions, and refuses the session the
/// checked password would make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_checked_against_a_replaced_password_gets_no_session() {
    let s = TestServer::start(&config_text("", "")).await;
    let path = s.dir.join("gatehouse.toml");
    let (alice_hash, _) = hashes();
    // alice's sign-in is held in the hashing pool, checking the old hash.
    s.gate.close();
    let c = client();
    let held = {
        let c = c.clone();
        let url = s.at("/login");
        tokio::spawn(async move {
            c.post(url)
                .header("accept", "application/json")
                .form(&[("username", "alice"), ("password", ALICE_PW)])
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::timeout(Duration::from_secs(60), s.gate.wait_held(1))
        .await
        .expect("the sign-in reaches the hashing pool");
    // Her password changes meanwhile.
    let new_hash = gatehouse::server::password::hash_password("a-new-secret-pw", &cheap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(alice_hash.as_str(), &new_hash, 1)).unwrap();
    s.reloader.reload().await.unwrap();
    s.gate.open();
    let answer = held.await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "no session came of it"
    );
    // The new password signs in.
    let fresh = client();
    let r = login(&fresh, &s, "alice", "a-new-secret-pw", &[]).await;
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    assert_eq!(
        fresh
            .get(s.at("/auth/verify"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn a_snapshot_an_interrupted_backup_left_is_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // A server killed during `auditctl backup` left its snapshot behind.
    let abandoned = tmp.path().join(".admin-snapshot.4242.redb");
    std::fs::write(&abandoned, vec![0u8; 4096]).unwrap();
    let unrelated = tmp.path().join("admin-snapshot-notes.txt");
    std::fs::write(&unrelated, "keep me").unwrap();
    let s = TestServer::start_in(tmp.path(), &config_text("", "")).await;
    assert!(!abandoned.exists(), "the abandoned snapshot is still there");
    assert!(unrelated.exists(), "a file that is no snapshot was removed");
    s.stop().await;
}
