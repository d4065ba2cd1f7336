//! Oversized and malformed input gets a 4xx with a short reason.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_headers_are_bounded() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();

    let big = "a".repeat(20 * 1024);
    let r = c
        .post(s.at("/login"))
        .form(&[("username", "bob"), ("password", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = c
        .post(s.at("/login"))
        .body("x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = c
        .post(s.at("/login"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let msg: serde_json::Value = r.json().await.unwrap();
    assert!(!msg["error"].as_str().unwrap().is_empty());

    let r = c
        .post(s.at("/login"))
        .form(&[("username", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let long_name = "u".repeat(500);
    let r = c
        .post(s.at("/login"))
        .form(&[("username", long_name.as_str()), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A request head larger than the limit.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    let out = raw(s.addr, huge.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let s = TestServer::start(&config_text("", "[limits]\nheader_read_timeout_secs = 1\n")).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    // The server closes the connection (possibly with a 408) instead of waiting forever.
    let done = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut out)).await;
    assert!(done.is_ok(), "connection still open");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_after_a_kept_alive_request_is_cut_off() {
    let s = TestServer::start(&config_text("", "[limits]\nheader_read_timeout_secs = 1\n")).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The next head arrives a header line at a time, never complete: the
    // trickle keeps the socket busy, but no request ever starts.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for i in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let line = format!("X-Slow-{i}: y\r\n");
        if conn.write_all(line.as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a trickled head kept its connection open for 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let s = TestServer::start(&config_text("", "[limits]\nmax_connections = 1\n")).await;
    // One client holds the only slot with a half-sent request.
    let mut first = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    first.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The next one waits in the backlog and is not served meanwhile.
    let second = tokio::spawn(raw(
        s.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "served past the connection cap");
    // Once the slot frees, it is served.
    drop(first);
    let out = second.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_pool_answers_503_and_verify_does_not_wait() {
    // One hashing slot, no queue, and a deliberately slow hash for carol.
    let slow = gatehouse::server::password::hash_password(
        "carol-pw",
        &gatehouse::config::Argon2Settings {
            memory_kib: 65_536,
            iterations: 4,
            parallelism: 1,
        },
    )
    .unwrap();
    let mut text = config_text("", "[limits]\nhash_workers = 1\nhash_queue = 0\n");
    text.push_str(&format!(
        "\n[[users]]\nname = \"carol\"\npassword_hash = \"{slow}\"\n"
    ));
    let s = TestServer::start(&text).await;
    let bob = client();
    login(&bob, &s, "bob", BOB_PW, &[]).await;

    let logins: Vec<_> = (0..6)
        .map(|_| {
            let c = client();
            let url = s.at("/login");
            tokio::spawn(async move {
                c.post(url)
                    .form(&[("username", "carol"), ("password", "carol-pw")])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Session checks are answered while the logins hash.
    assert_eq!(
        bob.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let mut busy = 0;
    let mut ok = 0;
    for l in logins {
        let r = l.await.unwrap();
        match r.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.headers()["retry-after"], "1");
                busy += 1;
            }
            StatusCode::SEE_OTHER => ok += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1, "at least the first login hashes");
    assert!(
        busy >= 1,
        "six simultaneous slow logins on one slot: some are refused"
    );
}

/// Connects from `local` (any address of 127/8 works on Linux loopback).
async fn connect_from(local: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// One request on an open connection; the answer's first line, or `None`
/// when the server closed the connection instead.
async fn ask(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    // Writing to a connection the server closed may fail, or be accepted
    // by the kernel and answered with a reset.
    if conn.write_all(req).await.is_err() {
        return None;
    }
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(crate::child::WAIT, conn.read(&mut buf))
        .await
        .expect("neither answered nor closed")
        .unwrap_or(0);
    (n > 0).then(|| {
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let cap = 4;
    // 127.0.0.1 is not a trusted proxy here: it is counted like any client.
    // The head timeout is long, so only the cap can close a connection.
    let s = TestServer::start(&config_text(
        "",
        &format!(
            "[limits]\nmax_connections = 64\nmax_connections_per_ip = {cap}\n\
             header_read_timeout_secs = 600\n"
        ),
    ))
    .await;
    let extra = 6;
    let mut conns = Vec::new();
    for _ in 0..cap + extra {
        conns.push(connect_from("127.0.0.1", s.addr).await);
    }
    // Connections are accepted in order: the first `cap` are served, each
    // later one was closed by the server at once.
    let mut served = 0;
    let mut closed = 0;
    for (i, c) in conns.iter_mut().enumerate() {
        match ask(c).await {
            Some(line) => {
                assert!(i < cap, "connection {i} served beyond the cap");
                assert!(line.starts_with("HTTP/1.1 200"), "{line}");
                served += 1;
            }
            None => {
                assert!(i >= cap, "connection {i} closed within the cap");
                closed += 1;
            }
        }
    }
    assert_eq!((served, closed), (cap, extra));
    // Another client is served while the first holds its whole share.
    let mut other = connect_from("127.0.0.2", s.addr).await;
    let line = ask(&mut other).await.expect("another address was refused");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // The refusals are counted (asked from a third address: 127.0.0.1 is full).
    let mut m = connect_from("127.0.0.3", s.addr).await;
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    tokio::time::timeout(crate::child::WAIT, m.read_to_end(&mut body))
        .await
        .unwrap()
        .unwrap();
    let r = String::from_utf8_lossy(&body);
    let refused = format!("gatehouse_connections_refused_total{{reason=\"per_ip\"}} {extra}");
    assert!(r.contains(&refused), "{r}");
    // Once the first client lets go, its count falls and it is served again.
    conns.truncate(0);
    drop(other);
    let mut again = false;
    for _ in 0..400 {
        let mut c = connect_from("127.0.0.1", s.addr).await;
        if ask(&mut c).await.is_some() {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(again, "the first client's count never fell");
}
