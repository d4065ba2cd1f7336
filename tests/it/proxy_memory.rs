//! The built-in proxy's memory under large bodies: a real `gatehouse serve`
//! process passes 1 GiB up (echoed back) and 1 GiB down between a signed-in
//! client and the streaming upstream of `apps.rs`, and its peak resident
//! memory (`VmHWM`) grows by less than 64 MiB: no body is held whole.

use std::convert::Infallible;

use axum::body::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Request;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant, timeout};

use crate::apps::upstream;
use crate::child::{Proc, form_login, plain_client};
use crate::harness::{BOB_PW, config_text};

/// Every wait of one step: a generous hang guard, not a speed claim.
const STEP: Duration = Duration::from_secs(60);
const CHUNK: usize = 256 << 10;
const GIB: usize = 1 << 30;

/// The `field` (`VmHWM`: peak resident memory, `VmRSS`: resident now) of
/// process `pid`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_gigabyte_each_way_leaves_the_servers_peak_memory_flat() {
    let up = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = config_text(
        "",
        &format!(
            "[[apps]]\nname = \"up\"\npath_prefix = \"/up/\"\nupstream = \"http://{}\"\n",
            up.addr
        ),
    );
    std::fs::write(tmp.path().join("gatehouse.toml"), config).unwrap();
    let server = Proc::start(tmp.path()).await.expect("gatehouse starts");
    let pid = server.child.id().unwrap();
    let c = plain_client();
    let token = form_login(&c, &server.url, "bob", BOB_PW, false)
        .await
        .expect("bob signs in");
    let cookie = format!("gatehouse_session={token}");
    // Warm up the proxy's pools and buffers before the baseline.
    let r = c
        .get(server.at("/up/big?mib=4"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 4 << 20);
    let before = status_kib(pid, "VmHWM");

    // Up: 1 GiB in 256 KiB chunks, sent as fast as gatehouse takes them
    // (the channel holds one) while the echo is read back through it.
    let started = Instant::now();
    let addr = server.url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let req = Request::post("/up/echo")
        .header("host", &addr)
        .header("cookie", &cookie)
        .body(body)
        .unwrap();
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let res = timeout(STEP, async {
        tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        sender.send_request(req).await.unwrap()
    })
    .await
    .expect("the echo's head comes back");
    assert_eq!(res.status(), 200);
    let mut echoed = res.into_body();
    let sending = tokio::spawn(async move {
        for _ in 1..GIB / CHUNK {
            tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        }
    });
    let mut received = 0usize;
    while let Some(f) = timeout(STEP, echoed.frame()).await.unwrap() {
        received += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    sending.await.unwrap();
    assert_eq!(received, GIB);
    let up_secs = started.elapsed().as_secs_f64();

    // Down: 1 GiB, read as it comes.
    let started = Instant::now();
    let mut r = c
        .get(server.at("/up/big?mib=1024"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut n = 0usize;
    while let Some(chunk) = timeout(STEP, r.chunk()).await.unwrap().unwrap() {
        n += chunk.len();
    }
    assert_eq!(n, GIB);
    let down_secs = started.elapsed().as_secs_f64();

    let after = status_kib(pid, "VmHWM");
    let grew = after.saturating_sub(before);
    eprintln!(
        "proxy memory: VmHWM {before} KiB before, {after} KiB after 1 GiB up (echoed, {up_secs:.1} s) \
         and 1 GiB down ({down_secs:.1} s): grew {grew} KiB"
    );
    assert!(
        grew < 64 * 1024,
        "gatehouse's peak memory grew by {grew} KiB moving 1 GiB each way"
    );
    server.kill().await;
}

/// Memory per idle proxied WebSocket, on 1,000 of them (the issue's
/// target: at most 64 KiB each): each is opened through a real `gatehouse
/// serve` process to the echoing upstream, carries one message each way,
/// and is then left open while the server's resident memory is read.
#[tokio::test]
async fn a_thousand_idle_websockets_cost_the_server_under_64_kib_each() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const SOCKETS: usize = 1_000;
    let up = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = config_text(
        "",
        &format!(
            "[limits]\nmax_connections = 4096\nmax_connections_per_ip = 4096\n\n\
             [proxy]\nmax_upgraded = 2048\n\n\
             [[apps]]\nname = \"up\"\npath_prefix = \"/up/\"\nupstream = \"http://{}\"\n",
            up.addr
        ),
    );
    std::fs::write(tmp.path().join("gatehouse.toml"), config).unwrap();
    let server = Proc::start(tmp.path()).await.expect("gatehouse starts");
    let pid = server.child.id().unwrap();
    let c = plain_client();
    let token = form_login(&c, &server.url, "bob", BOB_PW, false)
        .await
        .expect("bob signs in");
    let addr = server.url.trim_start_matches("http://").to_string();
    let open = || async {
        let mut req = format!("ws://{addr}/up/ws").into_client_request().unwrap();
        let h = req.headers_mut();
        h.insert(
            "cookie",
            format!("gatehouse_session={token}").parse().unwrap(),
        );
        h.insert("origin", server.url.parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut ws, _) = timeout(STEP, tokio_tungstenite::client_async(req, tcp))
            .await
            .expect("the upgrade is answered")
            .expect("the upgrade is accepted");
        ws.send(Message::text("ping")).await.unwrap();
        let echo = timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echo, Message::text("ping"));
        ws
    };
    // Warm up: the runtime's and the allocator's first growth is not the
    // sockets'.
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(open().await);
    }
    let before = status_kib(pid, "VmRSS");
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        sockets.push(open().await);
    }
    let after = status_kib(pid, "VmRSS");
    let per = after.saturating_sub(before) as f64 / SOCKETS as f64;
    eprintln!(
        "proxy memory: VmRSS {before} KiB with 20 WebSockets open, {after} KiB with {} more: \
         {per:.1} KiB each",
        SOCKETS
    );
    assert!(
        per <= 64.0,
        "each idle proxied WebSocket costs {per:.1} KiB of the server's memory"
    );
    drop(sockets);
    drop(warm);
    server.kill().await;
}
