//! A small HTTP/1.1 client for the benches: keep-alive connections on their
//! own runtime, the requests the benches send, signing in, and a closed-loop
//! load generator (the fallback when wrk is absent, and the login flood).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Load clients and probes run on their own runtime (own worker threads), so
/// that they never queue behind an in-process server's tasks or the other
/// way round; they still share the machine's cores with it.
pub fn clients() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-client")
            .enable_all()
            .build()
            .expect("client runtime")
    })
}

/// Runs `f` on the client runtime.
pub async fn on_clients<F: Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    clients().spawn(f).await.expect("client task")
}

/// One keep-alive connection. Enough HTTP/1.1 for the answers gatehouse and
/// axum give here (`Content-Length` bodies).
pub struct Conn {
    addr: SocketAddr,
    s: Option<TcpStream>,
    buf: Vec<u8>,
    /// Head of the last answer.
    pub head: String,
    /// Body of the last answer.
    pub body: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            s: None,
            buf: Vec::with_capacity(4096),
            head: String::new(),
            body: Vec::new(),
        }
    }

    /// Sends `req` and reads the answer; returns the status. Reconnects
    /// once when the connection was closed.
    pub async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        match self.try_send(req).await {
            Ok(s) => Ok(s),
            Err(_) => {
                self.s = None;
                self.try_send(req).await
            }
        }
    }

    async fn try_send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        if self.s.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.s = Some(s);
            self.buf.clear();
        }
        let s = self.s.as_mut().expect("connected above");
        s.write_all(req).await?;
        let mut tmp = [0u8; 8192];
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
                let len: usize = header_in(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let total = pos + 4 + len;
                while self.buf.len() < total {
                    let n = s.read(&mut tmp).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&tmp[..n]);
                }
                self.body.clear();
                self.body.extend_from_slice(&self.buf[pos + 4..total]);
                self.buf.drain(..total);
                let close = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("connection: close"));
                self.head = head;
                if close {
                    self.s = None;
                }
                return Ok(status);
            }
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// A header of the last answer.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.head, name)
    }
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// `GET path`, with the session cookie when given, asking for JSON.
pub fn get_req(path: &str, cookie: Option<&str>) -> Vec<u8> {
    get_req_with(path, cookie, &[])
}

/// [`get_req`] with `extra` header lines (`Name: value`).
pub fn get_req_with(path: &str, cookie: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let c = cookie
        .map(|c| format!("Cookie: gatehouse_session={c}\r\n"))
        .unwrap_or_default();
    let x: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{c}{x}Accept: application/json\r\n\r\n")
        .into_bytes()
}

/// A JSON `POST /login`.
pub fn login_req(user: &str, pw: &str) -> Vec<u8> {
    let body = serde_json::json!({"username": user, "password": pw}).to_string();
    format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Signs in and returns the session cookie's value.
pub async fn login(addr: SocketAddr, user: &str, pw: &str) -> String {
    let mut c = Conn::new(addr);
    let st = c.send(&login_req(user, pw)).await.expect("login request");
    assert_eq!(st, 200, "bench login failed: {}", c.head);
    let sc = c.header("set-cookie").expect("set-cookie").to_string();
    sc.split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("cookie value")
}

/// What a closed-loop load run saw.
pub struct LoadRun {
    /// Answers per second over the run.
    pub rps: f64,
    /// Latency of every answer, in microseconds.
    pub lat_us: Vec<u32>,
    /// Answers per status (0: the connection failed).
    pub by_status: BTreeMap<u16, u64>,
}

/// `conns` keep-alive connections sending `req` back to back for `secs`.
/// With `backoff`, a connection answered 429 or 503 waits that long before
/// its next request: a client honouring `Retry-After` (capped).
pub async fn closed_load(
    addr: SocketAddr,
    req: Vec<u8>,
    conns: usize,
    secs: u64,
    backoff: Option<Duration>,
) -> LoadRun {
    let req = Arc::new(req);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let req = req.clone();
        set.spawn(async move {
            let mut c = Conn::new(addr);
            let mut lat = Vec::new();
            let mut by = BTreeMap::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let st = match tokio::time::timeout_at(deadline.into(), c.send(&req)).await {
                    Ok(Ok(st)) => st,
                    Ok(Err(_)) => 0,
                    Err(_) => break,
                };
                lat.push(t.elapsed().as_micros() as u32);
                *by.entry(st).or_insert(0u64) += 1;
                if st == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else if let (Some(b), 429 | 503) = (backoff, st)
                    && tokio::time::timeout_at(deadline.into(), tokio::time::sleep(b))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            (lat, by)
        });
    }
    let mut lat_us = Vec::new();
    let mut by_status = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let (l, b) = r.expect("load connection task");
        lat_us.extend(l);
        for (k, v) in b {
            *by_status.entry(k).or_insert(0) += v;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    LoadRun {
        rps: lat_us.len() as f64 / secs,
        lat_us,
        by_status,
    }
}
