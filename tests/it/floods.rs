//! Floods and exhaustion on loopback, each bounded in time and count:
//! connections beyond the cap, a login flood beside session checks, and a
//! writer queue filled to the brim. Assertions are about behaviour (every
//! request answered, the right status, recovery afterwards), never about
//! how fast.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::store::{
    EventKind, NewEvent, Op, Store, StoreOptions, WriteError, Writer, WriterConfig,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::WAIT;
use crate::harness::*;

/// The value of a metric line `name value` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_beyond_the_cap_is_served_in_turn_and_the_server_recovers() {
    let cap = 8;
    let s = TestServer::start(&config_text(
        "",
        &format!("[limits]\nmax_connections = {cap}\nheader_read_timeout_secs = 1\n"),
    ))
    .await;

    // Idle connections take every slot and send nothing (slowloris).
    let mut idle = Vec::new();
    for _ in 0..cap {
        idle.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    // A flood far beyond the cap: each waits in the listen backlog and is
    // served once the header timeout has closed the idle ones; none is lost.
    let flood: Vec<_> = (0..200)
        .map(|_| tokio::spawn(raw_get(s.addr, "/healthz")))
        .collect();
    let mut served = 0;
    for f in flood {
        let out = tokio::time::timeout(WAIT, f).await.unwrap().unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
        served += 1;
    }
    // The idle connections were closed by the server, not by us.
    for mut c in idle {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("an idle connection was never closed")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }

    // Afterwards: ordinary use works and every slot was given back.
    let c = client();
    let r = login(&c, &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        c.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let mut open = None;
    for _ in 0..200 {
        let text = metrics_text(&s).await;
        open = metric(&text, "gatehouse_open_connections");
        // The metrics request itself holds one connection.
        if open == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(open, Some(1.0), "connection slots leaked");
    eprintln!("floods: {served} connections beyond a cap of {cap} all served; slots recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_refused_promptly_while_session_checks_go_on() {
    // One hashing slot, a short queue: most of the flood is refused at once.
    // The flood is 120 connections from loopback: no per-client cap here, so
    // that what meets it is the hashing pool and the regulation.
    let s = TestServer::start(&config_text(
        "",
        "[limits]\nhash_workers = 1\nhash_queue = 2\nmax_connections_per_ip = 1000\n\n\
         [regulation]\nmax_failures = 5\n",
    ))
    .await;
    let bob = client();
    assert_eq!(
        login(&bob, &s, "bob", BOB_PW, &[]).await.status(),
        StatusCode::SEE_OTHER
    );

    let flood: Vec<_> = (0..120)
        .map(|i| {
            let c = client();
            let url = s.at("/login");
            tokio::spawn(async move {
                // Right and wrong passwords, known and unknown users.
                let (user, pw) = match i % 3 {
                    0 => ("alice", ALICE_PW),
                    1 => ("alice", "wrong"),
                    _ => ("mallory", "guess"),
                };
                c.post(url)
                    .form(&[("username", user), ("password", pw)])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Session checks during the flood are all answered, and all accepted.
    let mut checks = 0;
    for _ in 0..50 {
        let r = bob.get(s.at("/auth/verify")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        checks += 1;
    }
    let mut seen = std::collections::BTreeMap::new();
    for f in flood {
        let r = tokio::time::timeout(WAIT, f)
            .await
            .expect("a login hung")
            .unwrap();
        let st = r.status();
        assert!(
            [
                StatusCode::SEE_OTHER,
                StatusCode::UNAUTHORIZED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(&st),
            "unexpected {st}"
        );
        if st == StatusCode::SERVICE_UNAVAILABLE || st == StatusCode::TOO_MANY_REQUESTS {
            assert!(
                r.headers().contains_key("retry-after"),
                "{st} without Retry-After"
            );
        }
        *seen.entry(st.as_u16()).or_insert(0) += 1;
    }
    // The flood came from one IP with failures: it ends up banned (429), or
    // was refused for lack of a hashing slot (503).
    assert!(
        seen.contains_key(&429) || seen.contains_key(&503),
        "{seen:?}"
    );
    // Afterwards bob's session still works.
    assert_eq!(
        bob.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );
    eprintln!("floods: 120 logins answered {seen:?}; {checks} session checks all 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_pushes_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("g.redb"), &StoreOptions::default()).unwrap();
    let cap = 16;
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterConfig {
            queue_capacity: cap,
            max_batch: 4,
            ..WriterConfig::default()
        },
    );

    // Fire-and-forget writes until the queue refuses one (bounded).
    let mut queued = 0u64;
    let mut busy = 0u64;
    for i in 0..100_000u64 {
        assert!(writer.queue_depth() <= cap, "queue beyond its capacity");
        match writer.submit_nowait(Op::Append(
            NewEvent::at(EventKind::LoginFailure, 1_000_000 + i).user("flood"),
        )) {
            Ok(()) => queued += 1,
            Err(WriteError::Busy) => {
                busy += 1;
                if busy >= 100 {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy > 0, "the queue never filled");
    assert_eq!(
        writer
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        busy
    );

    // Waiting submits from many tasks at once: each waits for room, then
    // for its commit, and all complete.
    let waiting: Vec<_> = (0..64u64)
        .map(|i| {
            let w = writer.clone();
            tokio::spawn(async move {
                w.append(NewEvent::at(EventKind::LoginSuccess, 2_000_000 + i).user("patient"))
                    .await
            })
        })
        .collect();
    let depth_max = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..50 {
        depth_max.fetch_max(writer.queue_depth(), std::sync::atomic::Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    for w in waiting {
        tokio::time::timeout(WAIT, w)
            .await
            .expect("a waiting submit never completed")
            .unwrap()
            .unwrap();
    }
    assert!(depth_max.load(std::sync::atomic::Ordering::Relaxed) <= cap);

    // Every queued fire-and-forget write was committed too (FIFO: the
    // waiting ones came after them).
    drop(writer);
    task.shutdown().await.unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.events, queued + 64);
    assert!(store.check().unwrap().is_ok());
    store.close().unwrap();
    eprintln!(
        "floods: writer queue of {cap}: {queued} queued, {busy} refused as Busy, 64 waiting submits \
         completed, lost=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_do_not_hold_the_slots() {
    let cap = 4;
    let s = TestServer::start(&config_text(
        "",
        &format!("[limits]\nmax_connections = {cap}\nheader_read_timeout_secs = 1\n"),
    ))
    .await;
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame,
    // then silence. The sockets are never read, so pings go unanswered.
    let mut idle = Vec::new();
    for _ in 0..cap {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        idle.push(c);
    }
    let out = tokio::time::timeout(WAIT, raw_get(s.addr, "/healthz"))
        .await
        .expect("idle HTTP/2 connections held every slot");
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_against_a_ban_adds_a_bounded_number_of_audit_events() {
    // A day-long window: the whole flood falls in one aggregation window.
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        tmp.path(),
        &config_text(
            "",
            "[regulation]\nmax_failures = 3\nwindow_secs = 86400\nban_secs = 86400\n",
        ),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            login(&client(), &s, "bob", "guess", &[]).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // 10,000 attempts against the stored ban, from 32 clients at once.
    const ATTEMPTS: usize = 10_000;
    const CLIENTS: usize = 32;
    let flood: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = s.at("/login");
            let n = ATTEMPTS / CLIENTS + usize::from(i < ATTEMPTS % CLIENTS);
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                for _ in 0..n {
                    let r = c
                        .post(&url)
                        .header("accept", "application/json")
                        .json(&serde_json::json!({"username": "bob", "password": "guess"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
                    assert!(r.headers().contains_key("retry-after"));
                }
                n
            })
        })
        .collect();
    let mut sent = 0;
    for f in flood {
        sent += tokio::time::timeout(WAIT, f)
            .await
            .expect("the flood hung")
            .unwrap();
    }
    assert_eq!(sent, ATTEMPTS);
    s.stop().await;

    let store =
        Store::open_read_only(tmp.path().join("gatehouse.redb"), &StoreOptions::default()).unwrap();
    let filter = gatehouse::store::EventFilter {
        kinds: vec![EventKind::LoginRejected],
        ..Default::default()
    };
    let mut rejected = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .query_events(&filter, 1_000, cursor.as_deref())
            .unwrap();
        rejected.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Every attempt matched the same subject (the user ban is checked before
    // the IP's) within one window: the first refusal is recorded at once,
    // the other 9,999 are counted and recorded as one event at shutdown.
    assert_eq!(
        rejected.len(),
        2,
        "{} login.rejected events",
        rejected.len()
    );
    let count: u64 = rejected
        .iter()
        .map(|e| {
            e.details
                .iter()
                .find(|(k, _)| k == "count")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {e:?}"))
        })
        .sum();
    assert_eq!(count, ATTEMPTS as u64);
    assert!(rejected.iter().all(|e| e.user.as_deref() == Some("bob")));
    eprintln!(
        "floods: {ATTEMPTS} attempts against a ban wrote {} login.rejected events",
        rejected.len()
    );
}
