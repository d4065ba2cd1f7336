//! The built-in proxy (`[[apps]]`) around a real server: upstreams written
//! here (a streaming HTTP app with a WebSocket echo, one that accepts and
//! never answers, one that is down), reached through gatehouse on port 0.
//! Every wait is bounded by a test timeout; no assertion reads the clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::harness::{ALICE_PW, BOB_PW, TestServer, client, config_text, login, token_of};

/// Every wait of a test step.
const STEP: Duration = Duration::from_secs(20);

/// The streaming upstream: `/h` answers with what it received (path, host,
/// headers), `/echo` streams the request body back as it arrives, `/big`
/// streams `n` MiB, `/sse` sends one event, waits for the test, then a
/// second; an upgrade to WebSocket echoes every message.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// Lets `/sse` send its second event.
    sse_next: Arc<Notify>,
}

pub(crate) async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sse_next = Arc::new(Notify::new());
    let notify = sse_next.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let notify = notify.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(req, notify.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, sse_next }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(text: String) -> UpBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

async fn answer(
    req: Request<Incoming>,
    sse_next: Arc<Notify>,
) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_string();
    if req.headers().contains_key("upgrade") {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        tokio::spawn(async move {
            let Ok(io) = hyper::upgrade::on(req).await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(io),
                Role::Server,
                Some(WebSocketConfig::default()),
            )
            .await;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let r = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(full(String::new()))
            .unwrap();
        return Ok(r);
    }
    if path.ends_with("/echo") {
        return Ok(Response::new(req.into_body().boxed()));
    }
    if path.ends_with("/big") {
        let mib: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("mib="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let stream = futures_util::stream::iter(
            (0..mib).map(move |_| Ok::<_, hyper::Error>(Frame::data(chunk.clone()))),
        );
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    if path.ends_with("/sse") {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(1);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(Bytes::from("data: one\n\n")))).await;
            sse_next.notified().await;
            let _ = tx.send(Ok(Frame::data(Bytes::from("data: two\n\n")))).await;
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        return Ok(r);
    }
    let mut text = format!(
        "path={}\nhost={}\n",
        req.uri().path_and_query().map_or("", |p| p.as_str()),
        req.headers()
            .get("host")
            .map_or("", |h| h.to_str().unwrap_or(""))
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    Ok(Response::new(full(text)))
}

/// An upstream that accepts connections and never answers; they stay open.
/// Counts the connections it accepted.
async fn hanging() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, accepted)
}

/// An address where nothing listens.
async fn down() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

struct Setup {
    s: TestServer,
    up: Upstream,
    /// Connections the hanging upstream accepted.
    hung: Arc<AtomicUsize>,
}

async fn setup() -> Setup {
    let up = upstream().await;
    let (hang, hung) = hanging().await;
    let down = down().await;
    let apps = format!(
        "[proxy]\nconnect_timeout_secs = 1\nresponse_timeout_secs = 1\nbody_idle_secs = 10\n\n\
         [[apps]]\nname = \"up\"\npath_prefix = \"/up/\"\nstrip_prefix = true\nupstream = \"http://{a}\"\n\n\
         [[apps]]\nname = \"hosted\"\nhost = \"app.test\"\nupstream = \"http://{a}\"\n\n\
         [[apps]]\nname = \"hang\"\npath_prefix = \"/hang/\"\nupstream = \"http://{hang}\"\nmax_connections = 1\n\n\
         [[apps]]\nname = \"down\"\npath_prefix = \"/down/\"\nupstream = \"http://{down}\"\n",
        a = up.addr
    );
    let s = TestServer::start(&config_text("", &apps)).await;
    Setup { s, up, hung }
}

/// A client signed in as `user`, and its session token.
async fn signed_in(s: &TestServer, user: &str, pw: &str) -> (reqwest::Client, String) {
    let c = client();
    let r = login(&c, s, user, pw, &[]).await;
    let token = token_of(&r).expect("signed in");
    (c, token)
}

/// The upstream's report of the headers it got, by name (lower case).
fn reported(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn signed_in_requests_reach_the_app_with_identity_and_without_gatehouse_credentials() {
    let Setup { s, .. } = setup().await;
    let (c, token) = signed_in(&s, "alice", ALICE_PW).await;
    let mut h = HeaderMap::new();
    h.insert("remote-user", HeaderValue::from_static("mallory"));
    h.insert("remote_user", HeaderValue::from_static("mallory"));
    h.insert("remote_groups", HeaderValue::from_static("root"));
    h.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
    h.insert(
        "cookie",
        HeaderValue::from_str(&format!(
            "app=1; gatehouse_session={token}; gatehouse_session_pending=x"
        ))
        .unwrap(),
    );
    let r = client()
        .get(s.at("/up/a/b?q=1"))
        .headers(h)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("path=/a/b?q=1\n"), "{text}");
    let got = reported(&text);
    let all = |name: &str| -> Vec<&str> {
        got.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(all("remote-user"), ["alice"]);
    assert_eq!(all("remote-groups"), ["admin"]);
    assert_eq!(all("remote-email"), ["alice@example.com"]);
    assert!(all("remote_user").is_empty(), "{text}");
    assert!(all("remote_groups").is_empty(), "{text}");
    assert_eq!(all("cookie"), ["app=1"]);
    assert!(!text.contains(&token));
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("host"), [s.addr.to_string().as_str()]);
    // The cookie jar's client works the same way.
    let r = c.get(s.at("/up/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("remote-user: alice"));
}

/// One request written as is, with no client resolving its dot segments:
/// the status and body of the answer.
async fn raw_get(s: &TestServer, target: &str, token: &str) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(target)
        .header("host", s.addr.to_string())
        .header("cookie", format!("gatehouse_session={token}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = res.status();
    let body = timeout(STEP, res.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn a_path_goes_to_the_app_its_resolved_spelling_names() {
    let Setup { s, .. } = setup().await;
    let (_, token) = signed_in(&s, "bob", BOB_PW).await;
    // Decided as `/up/a/b`, so it must be the app of `/up/` that serves
    // it, and with the path that was decided, not `/hang/../up/...`.
    for target in [
        "/hang/../up/a/b?q=1",
        "/hang/%2e%2e/up/a/%62?q=1",
        "//up/./a/b?q=1",
    ] {
        let (status, text) = raw_get(&s, target, &token).await;
        assert_eq!(status, 200, "{target}: {text}");
        assert!(text.starts_with("path=/a/b?q=1\n"), "{target}: {text}");
    }
    // Another spelling of the reserved prefix reaches no app.
    let (status, _) = raw_get(&s, "/up/../.gatehouse/login", &token).await;
    assert_eq!(status, 404);
}

/// A browser (`Accept: text/html`) asking for `path` without a session is
/// sent to the sign-in page, which brings it back to `path` (`encoded`).
pub(crate) async fn sent_to_sign_in(
    c: &reqwest::Client,
    s: &TestServer,
    path: &str,
    encoded: &str,
) {
    let r = c
        .get(s.at(path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/login?rd="), "{to}");
    assert!(to.contains(encoded), "{to}");
}

#[tokio::test]
async fn not_signed_in_browsers_go_to_sign_in_and_others_get_the_challenge() {
    let Setup { s, .. } = setup().await;
    let c = client();
    sent_to_sign_in(&c, &s, "/up/x?y=1", "%2Fup%2Fx%3Fy%3D1").await;
    let r = c.get(s.at("/up/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // A host app sends browsers to gatehouse's pages on its own host.
    let r = c
        .get(s.at("/anything"))
        .header("host", "app.test")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("/.gatehouse/login?rd=http%3A%2F%2Fapp.test%2Fanything"),
        "{to}"
    );
    let r = c
        .get(s.at("/.gatehouse/login"))
        .header("host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<form"));
    // gatehouse's own routes stay where they were, and the host app's
    // `/healthz` is the app's.
    assert_eq!(c.get(s.at("/healthz")).send().await.unwrap().status(), 200);
    let (_, token) = signed_in(&s, "bob", BOB_PW).await;
    let r = c
        .get(s.at("/healthz"))
        .header("host", "app.test")
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("path=/healthz\nhost=app.test\n"), "{text}");
    assert!(text.contains("remote-user: bob"));
}

#[tokio::test]
async fn bodies_stream_both_ways_without_being_held_whole() {
    let Setup { s, up, .. } = setup().await;
    let (c, token) = signed_in(&s, "bob", BOB_PW).await;

    // Upload: each chunk comes back through gatehouse before the next is
    // sent, so no side can be holding the body whole.
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let req = Request::post("/up/echo")
        .header("host", s.addr.to_string())
        .header("cookie", format!("gatehouse_session={token}"))
        .body(body)
        .unwrap();
    let res = timeout(STEP, async {
        // The head comes once the upstream has it: send a first chunk.
        let chunk = Bytes::from(vec![b'u'; 256 << 10]);
        tx.send(Ok(Frame::data(chunk))).await.unwrap();
        sender.send_request(req).await.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let chunks = 128; // 32 MiB in 256 KiB chunks
    let mut received = 0usize;
    for i in 1..=chunks {
        while received < i * (256 << 10) {
            let f = timeout(STEP, body.frame()).await.unwrap().unwrap().unwrap();
            if let Some(d) = f.data_ref() {
                received += d.len();
            }
        }
        if i < chunks {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'u'; 256 << 10]))))
                .await
                .unwrap();
        }
    }
    drop(tx);
    while let Some(f) = timeout(STEP, body.frame()).await.unwrap() {
        received += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(received, chunks * (256 << 10));

    // Download: 64 MiB, read as it comes.
    let mut r = c.get(s.at("/up/big?mib=64")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut n = 0usize;
    while let Some(chunk) = timeout(STEP, r.chunk()).await.unwrap().unwrap() {
        n += chunk.len();
    }
    assert_eq!(n, 64 << 20);

    // Server-sent events arrive one by one: the second is produced only
    // after the first has been read through gatehouse.
    let mut r = c.get(s.at("/up/sse")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first = timeout(STEP, r.chunk()).await.unwrap().unwrap().unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    up.sse_next.notify_one();
    let second = timeout(STEP, r.chunk()).await.unwrap().unwrap().unwrap();
    assert_eq!(&second[..], b"data: two\n\n");
}

#[tokio::test]
async fn failing_upstreams_get_bounded_502_and_504_counted_per_app() {
    let Setup { s, hung, .. } = setup().await;
    let (c, _) = signed_in(&s, "bob", BOB_PW).await;
    let r = timeout(
        STEP,
        c.get(s.at("/down/x")).header("accept", "text/html").send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("down"));
    // Accepts and never answers: the response bound. Its one connection
    // is given up with the request, so the next request connects again.
    let r = timeout(STEP, c.get(s.at("/hang/a")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(hung.load(Ordering::SeqCst), 1);
    let r = timeout(STEP, c.get(s.at("/hang/b")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(hung.load(Ordering::SeqCst), 2);
    // Two at once with one connection allowed: the second waits for the
    // slot within the bounds, and both end.
    let (a, b) = tokio::join!(
        timeout(STEP, c.get(s.at("/hang/c")).send()),
        timeout(STEP, c.get(s.at("/hang/d")).send()),
    );
    assert_eq!(a.unwrap().unwrap().status(), 504);
    assert_eq!(b.unwrap().unwrap().status(), 504);
    let m = crate::harness::metrics_text(&s).await;
    assert!(
        m.contains(
            "gatehouse_proxy_upstream_failures_total{app=\"down\",outcome=\"bad_gateway\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_proxy_upstream_failures_total{app=\"hang\",outcome=\"timeout\"} 4"),
        "{m}"
    );
}

/// A WebSocket to the `up` app through gatehouse, with `cookie` and
/// `origin` when given.
async fn ws_connect(
    s: &TestServer,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    let cookie = cookie.map(|c| format!("gatehouse_session={c}"));
    let mut headers = Vec::new();
    headers.extend(cookie.as_deref().map(|c| ("cookie", c)));
    headers.extend(origin.map(|o| ("origin", o)));
    ws_connect_with(s, &headers).await
}

/// A WebSocket to the `up` app through gatehouse, with these headers.
async fn ws_connect_with(
    s: &TestServer,
    headers: &[(&'static str, &str)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut req = format!("ws://{}/up/ws", s.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    timeout(STEP, tokio_tungstenite::client_async(req, tcp))
        .await
        .unwrap()
        .map(|(ws, _)| ws)
}

/// The status of a refused WebSocket handshake.
fn refused_with(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("not an HTTP refusal: {other}"),
    }
}

#[tokio::test]
async fn websockets_echo_and_need_a_session_and_the_apps_origin() {
    let Setup { s, .. } = setup().await;
    let (_, token) = signed_in(&s, "bob", BOB_PW).await;
    let own = format!("http://{}", s.addr);
    let mut ws = ws_connect(&s, Some(&token), Some(&own)).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    let m = timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("hello"));
    ws.send(Message::binary(vec![1u8; 100_000])).await.unwrap();
    let m = timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::binary(vec![1u8; 100_000]));
    ws.close(None).await.unwrap();

    let e = ws_connect(&s, None, Some(&own)).await.expect_err("refused");
    assert_eq!(refused_with(e), 401);
    let e = ws_connect(&s, Some(&token), Some("http://evil.test"))
        .await
        .expect_err("refused");
    assert_eq!(refused_with(e), 403);
}

#[tokio::test]
async fn a_revoked_sessions_websocket_is_closed_with_1008_and_recorded() {
    let Setup { s, .. } = setup().await;
    let (_, token) = signed_in(&s, "bob", BOB_PW).await;
    let mut ws = ws_connect(&s, Some(&token), None).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap(),
        Message::text("ping")
    );
    let (admin, _) = signed_in(&s, "alice", ALICE_PW).await;
    let r = admin
        .post(s.at("/api/v1/sessions/revoke-all?user=bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The store's notice cuts it, long before `ws_recheck_secs` (30).
    let closed = close_frame(&mut ws).await;
    assert_eq!(closed.code, CloseCode::Policy);
    let events = closed_events(&s, &admin).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user"], "bob");
    assert_eq!(events[0]["details"]["app"], "up");
    assert_eq!(events[0]["details"]["reason"], "session_ended");
    assert!(events[0]["session"].is_string());
}

/// The `proxy.closed` events, newest first, as an admin reads them.
async fn closed_events(s: &TestServer, admin: &reqwest::Client) -> Vec<Value> {
    let v = crate::api::get_json(admin, s, "/api/v1/audit?kind=proxy.closed").await;
    v["events"].as_array().cloned().unwrap_or_default()
}

/// The close frame `ws` receives next, ignoring messages.
async fn close_frame(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    timeout(STEP, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame")
}

#[tokio::test]
async fn a_revoked_access_tokens_websocket_is_closed_with_1008_and_recorded() {
    let Setup { s, .. } = setup().await;
    let (bob, _) = signed_in(&s, "bob", BOB_PW).await;
    let r = bob
        .post(s.at("/api/v1/tokens"))
        .json(&serde_json::json!({"name": "notebook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let bearer = format!("Bearer {}", made["token"].as_str().unwrap());
    let mut ws = ws_connect_with(&s, &[("authorization", &bearer)])
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap(),
        Message::text("ping")
    );
    let id = made["id"].as_str().unwrap();
    let r = bob
        .delete(s.at(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The store's notice cuts it, long before `ws_recheck_secs` (30).
    let closed = close_frame(&mut ws).await;
    assert_eq!(closed.code, CloseCode::Policy);
    assert_eq!(closed.reason.as_str(), "access token ended");
    let (admin, _) = signed_in(&s, "alice", ALICE_PW).await;
    let events = closed_events(&s, &admin).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user"], "bob");
    assert_eq!(events[0]["details"]["reason"], "token_ended");
}

#[tokio::test]
async fn the_drain_closes_websockets_with_1001() {
    let Setup { s, .. } = setup().await;
    let (_, token) = signed_in(&s, "bob", BOB_PW).await;
    let mut ws = ws_connect(&s, Some(&token), None).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(
        timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap(),
        Message::text("x")
    );
    let stop = tokio::spawn(s.stop());
    let closed = timeout(STEP, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame");
    assert_eq!(closed.code, CloseCode::Away);
    timeout(STEP, stop).await.unwrap().unwrap();
}
