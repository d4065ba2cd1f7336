//! Connections at their limits: a request body that never finishes, a
//! connection still open when the grace period ends, and the admin socket's
//! clients (a huge request, one that never finishes, a reply past the
//! client's cap). Every wait is bounded; nothing asserts how fast.

use std::time::Duration;

use gatehouse::server::Exit;
use gatehouse::server::ops::admin::{MAX_REPLY, SOCKET_FILE};
use gatehouse::store::{EventFilter, EventKind, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::WAIT;
use crate::harness::*;

/// Reads until the peer closes (bounded); what arrived.
async fn read_to_close(conn: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(WAIT, conn.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "never closed: {}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).into_owned()
}

/// A `/healthz` on a fresh connection; its answer (empty when closed).
async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_the_request_timeout_and_frees_its_slot() {
    // One connection slot, and a head deadline far beyond the test: only
    // the request timeout can end the trickle.
    let s = TestServer::start(&config_text(
        "",
        "[limits]\nmax_connections = 1\nrequest_timeout_secs = 1\nheader_read_timeout_secs = 600\n",
    ))
    .await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    // One byte of the body at a time, never all of it, until the answer.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..600 {
        if conn.write_all(b"u").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // The connection ends, and its slot (the only one) serves the next.
    read_to_close(&mut conn).await;
    let out = healthz(s.addr).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_open_past_the_grace_period_is_closed_and_the_server_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let text = config_text("", "").replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 1");
    assert!(text.contains("shutdown_grace_secs = 1"));
    let s = TestServer::start_in(tmp.path(), &text).await;
    // A request in flight that never completes: its body stops halfway.
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
    )
    .await
    .unwrap();
    // The head is parsed before shutdown begins: a request is in flight.
    let mut up = false;
    for _ in 0..400 {
        let m = metrics_text(&s).await;
        // This metrics request and the stuck one.
        if m.lines().any(|l| l == "gatehouse_open_connections 2") {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the stuck connection never showed up");
    let stopping = tokio::spawn(s.stop());
    // The drain gives up on it after the grace period and closes it.
    let rest = read_to_close(&mut conn).await;
    assert!(
        !rest.contains(" 303 "),
        "the cut request was answered: {rest}"
    );
    let exit = tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
    assert_eq!(exit, Exit::Shutdown);
    // Stopped cleanly all the same: the file opens read-only (no repair
    // needed) and the trail ends with `server.stopped`.
    let store =
        Store::open_read_only(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let page = store
        .query_events(&EventFilter::default(), 1, None)
        .unwrap();
    assert_eq!(page.events[0].kind, EventKind::ServerStopped);
}

/// A client of the admin socket.
async fn admin_conn(s: &TestServer) -> tokio::net::UnixStream {
    let path = s.dir.join(SOCKET_FILE);
    for _ in 0..400 {
        if let Ok(c) = tokio::net::UnixStream::connect(&path).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the admin socket never answered");
}

/// The admin socket still serves an ordinary request.
async fn admin_still_answers(s: &TestServer) {
    let dir = s.dir.clone();
    let reply = tokio::task::spawn_blocking(move || {
        gatehouse::server::ops::admin::request(&dir, "GET", "/bans")
    })
    .await
    .unwrap()
    .unwrap()
    .expect("no server on the socket");
    assert_eq!(
        (reply.status, reply.body.as_str(), reply.cut),
        (200, "no bans in force\n", false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_cuts_off_a_client_that_never_finishes() {
    let s = TestServer::start(&config_text("", "")).await;
    // Half a request, then nothing.
    let mut stuck = admin_conn(&s).await;
    stuck.write_all(b"GET /bans HTTP/1.1\r\n").await.unwrap();
    // A whole request whose reply is not read, on a connection kept open.
    let mut deaf = admin_conn(&s).await;
    deaf.write_all(b"GET /bans HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    admin_still_answers(&s).await;
    // Both are closed by the server's per-connection timeout.
    let out = read_to_close(&mut stuck).await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    let out = read_to_close(&mut deaf).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    admin_still_answers(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_refuses_a_huge_request() {
    let s = TestServer::start(&config_text("", "")).await;
    let mut c = admin_conn(&s).await;
    let head = format!(
        "POST /bans/lift?user={} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "u".repeat(1024),
        "b".repeat(4 << 20)
    );
    // The server may close before it has read everything.
    let _ = c.write_all(head.as_bytes()).await;
    let out = read_to_close(&mut c).await;
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 431") || out.starts_with("HTTP/1.1 400"),
        "{out}"
    );
    admin_still_answers(&s).await;
    s.stop().await;
}

/// The admin client reads at most its cap and says when a reply was cut:
/// the library marks it, and `gatehouse bans list` prints the whole lines
/// it read, then fails naming the cut (exit 1), never passing a part off as
/// the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_client_reads_at_most_its_cap_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // Something on the socket that answers ban lines without end and never
    // closes, to two clients.
    let listener = std::os::unix::net::UnixListener::bind(tmp.path().join(SOCKET_FILE)).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for _ in 0..2 {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let line = "ip 203.0.113.7\t900s left\ttoo many failed logins\n";
            let chunk = line.repeat(16 * 1024 / line.len());
            // Until the client hangs up (bounded: about 64 MiB).
            for _ in 0..4096 {
                if c.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    let dir = tmp.path().to_path_buf();
    let reply = tokio::task::spawn_blocking(move || {
        gatehouse::server::ops::admin::request(&dir, "GET", "/bans")
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.cut);
    assert!(
        !reply.body.is_empty() && reply.body.len() as u64 <= MAX_REPLY,
        "{}",
        reply.body.len()
    );
    assert!(reply.body.ends_with("too many failed logins\n"));
    let e = reply.clone().into_result().unwrap_err().to_string();
    assert!(e.contains("was cut"), "{e}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["bans", "--data-dir"])
        .arg(tmp.path())
        .arg("list")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("was cut after the lines shown"), "{stderr}");
    assert_eq!(out.stdout, reply.body.as_bytes());
    server.join().unwrap();
}
