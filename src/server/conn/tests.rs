//! The connection layer with a test dispatch on a loopback port: response
//! bodies that outlive the deadline, clients that stop reading, upgraded
//! streams and the drain. The deadline is shortened to a fraction of a
//! second; every wait is bounded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::config::{Config, Overrides};
use crate::server::conn::*;
use crate::server::lifecycle::Server;

/// The shortened per-connection deadline.
const LIMIT: Duration = Duration::from_millis(200);

/// The bound of every wait on the client side.
const WAIT: Duration = Duration::from_secs(20);

/// A body fed through a channel, so a test decides when each frame comes.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// `/hot` on the hot path; `/slow` streams a frame, waits five deadlines,
/// then sends the last; `/endless` streams without end; `/upgrade` echoes
/// over an upgraded stream (`/upgrade-stubborn`: ignoring the drain).
#[derive(Clone)]
struct TestDispatch;

fn slow_body() -> Body {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"first-")).await;
        tokio::time::sleep(LIMIT * 5).await;
        let _ = tx.send(Bytes::from_static(b"last")).await;
    });
    Body::new(ChannelBody(rx))
}

fn endless_body() -> Body {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        while tx.send(chunk.clone()).await.is_ok() {}
    });
    Body::new(ChannelBody(rx))
}

/// Answers `101` and adopts an echo of the upgraded stream; unless
/// `stubborn`, it says `bye` and ends when the server drains.
fn upgrade(mut req: Request<Incoming>, stubborn: bool) -> AppResponse {
    let on = hyper::upgrade::on(&mut req);
    let handle = req.extensions().get::<ConnHandle>().unwrap().clone();
    let draining = handle.draining();
    let adopted = handle.adopt(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        let mut draining = std::pin::pin!(draining);
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if io.write_all(&buf[..n]).await.is_err() { return },
                },
                _ = &mut draining, if !stubborn => {
                    let _ = io.write_all(b"bye").await;
                    return;
                }
            }
        }
    });
    assert!(adopted);
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("echo"));
    res
}

impl Dispatch for TestDispatch {
    type Future = Pin<Box<dyn Future<Output = Result<AppResponse, Infallible>> + Send>>;

    fn answer_hot(&self, req: &Request<Incoming>, _peer: SocketAddr) -> Option<AppResponse> {
        (req.uri().path() == "/hot").then(|| "hot".into_response())
    }

    fn route(&mut self, req: Request<Incoming>) -> Self::Future {
        assert!(req.extensions().get::<ConnectInfo<SocketAddr>>().is_some());
        let res = match req.uri().path() {
            "/slow" => slow_body().into_response(),
            "/endless" => endless_body().into_response(),
            "/upgrade" => upgrade(req, false),
            "/upgrade-stubborn" => upgrade(req, true),
            _ => StatusCode::NOT_FOUND.into_response(),
        };
        Box::pin(async move { Ok(res) })
    }
}

/// A connection layer serving [`TestDispatch`] on a loopback port.
struct Served {
    addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    accept: tokio::task::JoinHandle<Connections<TestDispatch>>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let ov = Overrides {
        config: Some(config),
        data_dir: Some(dir.path().to_path_buf()),
        ..Overrides::default()
    };
    let server = Server::bind(Config::load(&ov).unwrap(), ov).await.unwrap();
    let state = server.state().clone();
    let mut conns = Connections::new(&state, TestDispatch);
    conns.head_timeout = LIMIT;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let accept = tokio::spawn(async move {
        conns
            .accept_until(&listener, async {
                let _ = stopped.await;
            })
            .await;
        conns
    });
    Served {
        addr,
        state,
        stop,
        accept,
        _dir: dir,
    }
}

impl Served {
    /// Stops accepting; the connections are still running.
    async fn stop_accepting(self) -> (Connections<TestDispatch>, AppState) {
        self.stop.send(()).unwrap();
        (self.accept.await.unwrap(), self.state)
    }

    /// Waits, a bounded number of times, until no connection is open.
    async fn until_closed(&self) {
        for _ in 0..800 {
            if self.state.activity.open_connections() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("a connection was never closed");
    }
}

/// Reads until `needle` has arrived; everything read so far.
async fn read_until(conn: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !out.windows(needle.len()).any(|w| w == needle) {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("never arrived");
    out
}

/// Whether the server closes `conn` (reads until the end, bounded).
async fn closes(conn: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_streaming_past_the_deadline_is_not_cut_off() {
    let s = serve().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Chunked: the last frame arrives five deadlines after the head, then
    // the terminating chunk.
    let out = read_until(&mut conn, b"\r\n0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first-") && text.contains("last"), "{text}");
    // Once the body has ended, the idle deadline applies again.
    assert!(closes(&mut conn).await, "kept open after the body ended");
    s.until_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_body_is_closed_after_the_deadline() {
    let s = serve().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read: the socket buffers fill, hyper stops asking for frames,
    // and the connection gives its slot back.
    s.until_closed().await;
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_answers_are_served_and_the_connection_closes_when_idle() {
    let s = serve().await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /hot HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let out = read_until(&mut conn, b"hot").await;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert!(closes(&mut conn).await);
    s.until_closed().await;
}

/// Sends an upgrade request and reads the `101`.
async fn upgraded(addr: SocketAddr, path: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let head = read_until(&mut conn, b"\r\n\r\n").await;
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_stream_keeps_its_slot_and_ends_in_the_drain() {
    let s = serve().await;
    let mut conn = upgraded(s.addr, "/upgrade").await;
    conn.write_all(b"ping").await.unwrap();
    read_until(&mut conn, b"ping").await;
    // Well past the deadline: the stream is in flight, not idle, and still
    // holds its connection's slot.
    tokio::time::sleep(LIMIT * 4).await;
    assert_eq!(s.state.activity.open_connections(), 1);
    conn.write_all(b"pong").await.unwrap();
    read_until(&mut conn, b"pong").await;
    let (conns, state) = s.stop_accepting().await;
    assert_eq!(conns.open(), 1, "the upgraded stream left its connection");
    // The drain signals the stream, which says goodbye and ends; the drain
    // does not wait for the grace period.
    let drained = tokio::spawn(conns.drain(Duration::from_secs(600)));
    read_until(&mut conn, b"bye").await;
    assert!(closes(&mut conn).await);
    tokio::time::timeout(WAIT, drained).await.unwrap().unwrap();
    assert_eq!(state.activity.open_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_stream_still_open_after_the_grace_period_is_dropped() {
    let s = serve().await;
    let mut conn = upgraded(s.addr, "/upgrade-stubborn").await;
    conn.write_all(b"ping").await.unwrap();
    read_until(&mut conn, b"ping").await;
    let (conns, state) = s.stop_accepting().await;
    tokio::time::timeout(WAIT, conns.drain(LIMIT))
        .await
        .expect("the drain outlived its grace period");
    assert!(closes(&mut conn).await, "the stream outlived the drain");
    assert_eq!(state.activity.open_connections(), 0);
}
