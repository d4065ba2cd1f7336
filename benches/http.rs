//! HTTP and whole-process benchmarks.
//!
//! - Figure 6: `GET /auth/verify` with a valid session cookie under load,
//!   against a plain axum handler returning a constant (same runtime shape,
//!   own port, measured one after the other).
//! - Figure 7: a login flood (200 concurrent wrong-password logins, real
//!   argon2 cost) against the machine's argon2 limit, and the latency of
//!   `/auth/verify` and `/healthz` during the flood versus idle.
//! - Figure 8: peak RSS of a server process (this binary re-executed in a
//!   server mode) holding many sessions and events, during a sweep and audit
//!   queries, against the file size.
//!
//! `cargo bench --bench http -- [--quick|--full]` (quick by default). Writes
//! `bench-results/http.md` and `bench-results/http.json` and prints the table.
//! Everything runs on loopback and every load is bounded in time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::config::{Argon2Settings, Config, Overrides};
use gatehouse::server::Server;
use gatehouse::server::password::hash_password;
use gatehouse::store::{EventKind, NewEvent, NewSession, Op, Store, StoreOptions, now_ms, now_us};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "bench-password-123";

// ------------------------------------------------------------------ settings

#[derive(Clone, Copy)]
struct Params {
    full: bool,
    /// Figure 8: `cache_mib` of the server (`--cache-mib N`; default 32, the server's default).
    cache_mib: u64,
    /// Figure 6: seconds per wrk run.
    load_secs: u64,
    /// Figure 7: seconds of flood (raised regulation limit).
    flood_secs: u64,
    /// Figure 7: seconds of flood with the default regulation.
    default_flood_secs: u64,
    /// Figure 8.
    sessions: u64,
    events: u64,
}

impl Params {
    fn new(full: bool) -> Params {
        if full {
            Params {
                full,
                cache_mib: 32,
                load_secs: 10,
                flood_secs: 15,
                default_flood_secs: 5,
                sessions: 1_000_000,
                events: 10_000_000,
            }
        } else {
            Params {
                full,
                cache_mib: 32,
                load_secs: 5,
                flood_secs: 8,
                default_flood_secs: 3,
                sessions: 100_000,
                events: 1_000_000,
            }
        }
    }
}

/// One line of the table, with the raw numbers for the JSON file.
struct Row {
    figure: String,
    gatehouse: String,
    competitor: String,
    ratio: Option<f64>,
}

fn row(
    figure: impl Into<String>,
    g: impl Into<String>,
    c: impl Into<String>,
    ratio: Option<f64>,
) -> Row {
    Row {
        figure: figure.into(),
        gatehouse: g.into(),
        competitor: c.into(),
        ratio,
    }
}

fn cheap() -> Argon2Settings {
    Argon2Settings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

/// A config for user `alice` (admin) with the given password hash.
fn config_text(hash: &str, argon_cheap: bool, extra: &str, sections: &str) -> String {
    let argon = if argon_cheap {
        "[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n"
    } else {
        ""
    };
    // Every load comes from loopback, one client address as far as the
    // per-client connection cap knows: lift it.
    let per_ip = "max_connections_per_ip = 1000000\n";
    let sections = if sections.contains("[limits]\n") {
        sections.replacen("[limits]\n", &format!("[limits]\n{per_ip}"), 1)
    } else {
        format!("{sections}\n[limits]\n{per_ip}")
    };
    format!(
        "bind = \"127.0.0.1:0\"\nmetrics = true\nshutdown_grace_secs = 2\n{extra}\n{argon}\n{sections}\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nadmin = true\n"
    )
}

// ------------------------------------------------------------------ main

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-child") {
        serve_child(Path::new(&args[i + 1]));
        return;
    }
    let full = args.iter().any(|a| a == "--full");
    let mut p = Params::new(full);
    if let Some(n) = args
        .iter()
        .position(|a| a == "--cache-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
    {
        p.cache_mib = n;
    }
    let mode = if full { "full" } else { "quick" };
    let started = Instant::now();
    eprintln!(
        "http bench ({mode}); machine: {}",
        machine().replace('\n', "; ")
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    raw.insert("mode".into(), json!(mode));
    raw.insert("machine".into(), json!(machine()));
    raw.insert("loadavg_start".into(), json!(loadavg()));

    // `--only 6,8` runs a subset (for profiling) and writes no files.
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let run = |n: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == n));
    if run("6") {
        let f6 = rt.block_on(fig6(&p, &mut rows));
        raw.insert("fig6".into(), f6);
    }
    if run("7") {
        let f7 = rt.block_on(fig7(&p, &mut rows));
        raw.insert("fig7".into(), f7);
    }
    if run("8") {
        let f8 = rt.block_on(fig8(&p, &mut rows));
        raw.insert("fig8".into(), f8);
    }
    raw.insert("loadavg_end".into(), json!(loadavg()));
    raw.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));

    let md = table(&rows, mode);
    println!("{md}");
    if only.is_some() {
        eprintln!("--only: results not written");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    std::fs::create_dir_all(&dir).expect("bench-results dir");
    std::fs::write(dir.join("http.md"), &md).expect("write http.md");
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|r| json!({"figure": r.figure, "gatehouse": r.gatehouse, "competitor": r.competitor, "ratio": r.ratio}))
        .collect();
    raw.insert("table".into(), json!(rows_json));
    std::fs::write(
        dir.join("http.json"),
        serde_json::to_string_pretty(&Value::Object(raw)).unwrap(),
    )
    .expect("write http.json");
    eprintln!(
        "wrote {} and http.json in {:.0} s",
        dir.join("http.md").display(),
        started.elapsed().as_secs_f64()
    );
}

fn table(rows: &[Row], mode: &str) -> String {
    let mut s = format!(
        "Mode: {mode}. Machine: {}. Load average at the end: {}.\n\n",
        machine().replace('\n', ", "),
        loadavg()
    );
    s.push_str("| figure | gatehouse | competitor | ratio |\n| --- | --- | --- | --- |\n");
    for r in rows {
        let ratio = r
            .ratio
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.figure, r.gatehouse, r.competitor, ratio
        ));
    }
    s
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{} cores\n{cpu}\nLinux {kernel}", cores())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ------------------------------------------------------------------ in-process servers

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

async fn start_gatehouse(config: &str) -> Running {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join("gatehouse.toml"), config).unwrap();
    let ov = Overrides {
        config: Some(dir.join("gatehouse.toml")),
        data_dir: Some(dir.clone()),
        ..Overrides::default()
    };
    let config = Config::load(&ov).expect("bench config");
    let server = Server::bind(config, ov).await.expect("server bind");
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = server
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    Running {
        addr,
        stop: tx,
        handle,
        _dir: tmp,
    }
}

/// The competitor: a plain axum handler returning a constant.
async fn start_plain() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use axum::routing::get;
    let app = axum::Router::new().route("/auth/verify", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}

// ------------------------------------------------------------------ a tiny HTTP/1.1 client

/// Load clients and probes run on their own runtime (own worker threads), so
/// that they never queue behind the in-process server's tasks or the other
/// way round; they still share the machine's cores with it.
fn clients() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
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
async fn on_clients<F: std::future::Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    clients().spawn(f).await.expect("client task")
}

/// One keep-alive connection. Enough HTTP/1.1 for the answers gatehouse and
/// axum give here (`Content-Length` bodies).
struct Conn {
    addr: SocketAddr,
    s: Option<TcpStream>,
    buf: Vec<u8>,
    /// Head of the last answer.
    head: String,
    /// Body of the last answer.
    body: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
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
    async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
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
        let s = self.s.as_mut().unwrap();
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
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
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

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn get_req(path: &str, cookie: Option<&str>) -> Vec<u8> {
    let c = cookie
        .map(|c| format!("Cookie: gatehouse_session={c}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{c}Accept: application/json\r\n\r\n")
        .into_bytes()
}

fn login_req(user: &str, pw: &str) -> Vec<u8> {
    let body = json!({"username": user, "password": pw}).to_string();
    format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Logs in and returns the session cookie value.
async fn login(addr: SocketAddr, user: &str, pw: &str) -> String {
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

// ------------------------------------------------------------------ load

struct Load {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    tool: &'static str,
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs wrk (2 threads, 64 connections) against `url`, or the built-in
/// client when wrk is absent.
async fn load(addr: SocketAddr, path: &str, cookie: &str, secs: u64) -> Load {
    if wrk_available() {
        let url = format!("http://{addr}{path}");
        let out = tokio::process::Command::new("wrk")
            .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-H"])
            .arg(format!("Cookie: gatehouse_session={cookie}"))
            .arg(&url)
            .output()
            .await
            .expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}"))
    } else {
        let (rps, lat, _) = on_clients(builtin_load(
            addr,
            get_req(path, Some(cookie)),
            64,
            secs,
            None,
        ))
        .await;
        Load {
            rps,
            p50_us: pct(&lat, 50.0),
            p99_us: pct(&lat, 99.0),
            tool: "built-in client",
        }
    }
}

fn parse_wrk(text: &str) -> Option<Load> {
    let rps = text
        .lines()
        .find(|l| l.trim_start().starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let lat = |p: &str| -> Option<f64> {
        let l = text.lines().find(|l| l.trim_start().starts_with(p))?;
        parse_duration_us(l.split_whitespace().nth(1)?)
    };
    Some(Load {
        rps,
        p50_us: lat("50%")?,
        p99_us: lat("99%")?,
        tool: "wrk",
    })
}

fn parse_duration_us(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mul)
}

/// `conns` keep-alive connections sending `req` back to back for `secs`.
/// Returns answers/s, latencies (us) and the count per status.
async fn builtin_load(
    addr: SocketAddr,
    req: Vec<u8>,
    conns: usize,
    secs: u64,
    backoff: Option<Duration>,
) -> (f64, Vec<u32>, std::collections::BTreeMap<u16, u64>) {
    let req = Arc::new(req);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let req = req.clone();
        set.spawn(async move {
            let mut c = Conn::new(addr);
            let mut lat = Vec::new();
            let mut by = std::collections::BTreeMap::new();
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
                } else if let (Some(b), 429 | 503) = (backoff, st) {
                    // A client honouring `Retry-After` (capped).
                    if tokio::time::timeout_at(deadline.into(), tokio::time::sleep(b))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            (lat, by)
        });
    }
    let mut lat = Vec::new();
    let mut by = std::collections::BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let (l, b) = r.unwrap();
        lat.extend(l);
        for (k, v) in b {
            *by.entry(k).or_insert(0) += v;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (lat.len() as f64 / secs, lat, by)
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i] as f64
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

// ------------------------------------------------------------------ figure 6

async fn fig6(p: &Params, rows: &mut Vec<Row>) -> Value {
    eprintln!(
        "figure 6: /auth/verify vs a plain axum handler ({} s each)",
        p.load_secs
    );
    if !wrk_available() {
        eprintln!(
            "  wrk not found; install it with `apt-get install -y wrk` for the reference figures. \
             Using the built-in client (64 keep-alive connections)."
        );
    }
    let hash = hash_password(PASSWORD, &cheap()).unwrap();
    let gh = start_gatehouse(&config_text(&hash, true, "", "")).await;
    let cookie = login(gh.addr, "alice", PASSWORD).await;
    // Sanity: the cookie is accepted.
    let mut c = Conn::new(gh.addr);
    let st = c
        .send(&get_req("/auth/verify", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(st, 200, "verify with the bench cookie: {}", c.head);
    let (plain_addr, plain_stop) = start_plain().await;

    // Warm up both, then measure one after the other.
    let _ = load(gh.addr, "/auth/verify", &cookie, 1).await;
    let g = load(gh.addr, "/auth/verify", &cookie, p.load_secs).await;
    // The same server stack on a route that reads no session.
    let h = load(gh.addr, "/healthz", &cookie, p.load_secs).await;
    let _ = load(plain_addr, "/auth/verify", &cookie, 1).await;
    let b = load(plain_addr, "/auth/verify", &cookie, p.load_secs).await;
    let _ = plain_stop.send(());
    gh.stop().await;

    let tool = g.tool;
    rows.push(row(
        format!(
            "6 verify req/s ({tool}, 2 threads, 64 conns, {} s)",
            p.load_secs
        ),
        format!("{:.0}", g.rps),
        format!("{:.0} (plain axum)", b.rps),
        Some(g.rps / b.rps),
    ));
    rows.push(row(
        "6 /healthz req/s (same gatehouse stack, no session read)",
        format!("{:.0}", h.rps),
        format!("{:.0} (plain axum)", b.rps),
        Some(h.rps / b.rps),
    ));
    rows.push(row(
        "6 verify latency p50",
        fmt_us(g.p50_us),
        fmt_us(b.p50_us),
        Some(g.p50_us / b.p50_us),
    ));
    rows.push(row(
        "6 verify latency p99",
        fmt_us(g.p99_us),
        fmt_us(b.p99_us),
        Some(g.p99_us / b.p99_us),
    ));
    eprintln!(
        "  verify {:.0} req/s p99 {} | plain {:.0} req/s p99 {}",
        g.rps,
        fmt_us(g.p99_us),
        b.rps,
        fmt_us(b.p99_us)
    );
    json!({
        "tool": tool, "secs": p.load_secs, "threads": 2, "connections": 64,
        "verify": {"rps": g.rps, "p50_us": g.p50_us, "p99_us": g.p99_us},
        "plain": {"rps": b.rps, "p50_us": b.p50_us, "p99_us": b.p99_us},
        "healthz": {"rps": h.rps, "p50_us": h.p50_us, "p99_us": h.p99_us},
        "ratio_rps": g.rps / b.rps,
    })
}

// ------------------------------------------------------------------ figure 7

/// Median time of one argon2id hash with the crate's defaults.
fn single_hash_ms() -> f64 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let a = argon2::Argon2::default();
    let salt = SaltString::encode_b64(b"bench-salt-16-by").unwrap();
    let mut t = Vec::new();
    for _ in 0..9 {
        let s = Instant::now();
        let _ = a.hash_password(b"some password", &salt).unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// Sequential probes of `path` on one connection, every 5 ms, until `stop`.
async fn probe(
    addr: SocketAddr,
    path: &'static str,
    cookie: String,
    stop: Arc<AtomicBool>,
) -> Vec<u32> {
    let req = get_req(path, Some(&cookie));
    let mut c = Conn::new(addr);
    let mut lat = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), c.send(&req)).await {
            if st == 200 {
                lat.push(t.elapsed().as_micros() as u32);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat
}

struct Flood {
    secs: f64,
    by: std::collections::BTreeMap<u16, u64>,
    verify: Vec<u32>,
    health: Vec<u32>,
}

/// 200 wrong-password logins at once for `secs`, with probes running.
async fn flood(addr: SocketAddr, cookie: &str, secs: u64, backoff: Option<Duration>) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let pv = tokio::spawn(probe(
        addr,
        "/auth/verify",
        cookie.to_string(),
        stop.clone(),
    ));
    let ph = tokio::spawn(probe(addr, "/healthz", cookie.to_string(), stop.clone()));
    let t = Instant::now();
    let (_, _, by) = builtin_load(
        addr,
        login_req("alice", "wrong password"),
        200,
        secs,
        backoff,
    )
    .await;
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    Flood {
        secs,
        by,
        verify: pv.await.unwrap(),
        health: ph.await.unwrap(),
    }
}

async fn idle_probe(addr: SocketAddr, cookie: &str, secs: u64) -> (Vec<u32>, Vec<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pv = tokio::spawn(probe(
        addr,
        "/auth/verify",
        cookie.to_string(),
        stop.clone(),
    ));
    let ph = tokio::spawn(probe(addr, "/healthz", cookie.to_string(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    (pv.await.unwrap(), ph.await.unwrap())
}

fn rate(f: &Flood, st: u16) -> f64 {
    *f.by.get(&st).unwrap_or(&0) as f64 / f.secs
}

async fn fig7(p: &Params, rows: &mut Vec<Row>) -> Value {
    eprintln!("figure 7: login flood, 200 connections, real argon2 cost");
    let hash_ms = tokio::task::spawn_blocking(single_hash_ms).await.unwrap();
    let limit = cores() as f64 * 1000.0 / hash_ms;
    eprintln!("  one argon2id hash (m=19456,t=2,p=1): {hash_ms:.1} ms; limit {limit:.0}/s");
    let hash = tokio::task::spawn_blocking(|| hash_password(PASSWORD, &Argon2Settings::default()))
        .await
        .unwrap()
        .unwrap();

    // Raised regulation limit: every wrong login is hashed. Three runs:
    // clients retrying at once, clients honouring `Retry-After` (1 s), and
    // at once again with one hashing slot (`hash_workers = 1`).
    let raised = "[regulation]\nmax_failures = 1000000\nmax_tracked = 100000\n";
    let variants: [(&str, String, Option<Duration>); 3] = [
        ("at once", raised.to_string(), None),
        (
            "Retry-After honoured",
            raised.to_string(),
            Some(Duration::from_secs(1)),
        ),
        (
            "at once, hash_workers = 1",
            format!("{raised}\n[limits]\nhash_workers = 1\n"),
            None,
        ),
    ];
    let lat = |v: &Vec<u32>| json!({"n": v.len(), "p50_us": pct(v, 50.0), "p99_us": pct(v, 99.0)});
    let mut runs = Vec::new();
    let mut idle = None;
    for (name, sections, backoff) in variants {
        let gh = start_gatehouse(&config_text(&hash, false, "", &sections)).await;
        let cookie = login(gh.addr, "alice", PASSWORD).await;
        if idle.is_none() {
            idle = Some(idle_probe(gh.addr, &cookie, 2).await);
        }
        let f = flood(gh.addr, &cookie, p.flood_secs, backoff).await;
        gh.stop().await;
        eprintln!(
            "  raised limit, {name}: {:?} in {:.1} s; verify p99 {}, healthz p99 {}",
            f.by,
            f.secs,
            fmt_us(pct(&f.verify, 99.0)),
            fmt_us(pct(&f.health, 99.0))
        );
        runs.push((name, f));
    }
    let (idle_v, idle_h) = idle.unwrap();

    // Default regulation: the flooding IP and user are banned after 5 failures.
    let gd = start_gatehouse(&config_text(&hash, false, "", "")).await;
    let cookie_d = login(gd.addr, "alice", PASSWORD).await;
    let d = flood(gd.addr, &cookie_d, p.default_flood_secs, None).await;
    gd.stop().await;
    eprintln!("  default regulation: {:?} in {:.1} s", d.by, d.secs);

    rows.push(row(
        "7 argon2 limit of the machine",
        "-",
        format!("{limit:.1}/s ({} cores / {hash_ms:.1} ms a hash)", cores()),
        None,
    ));
    let mut raised_json = Vec::new();
    for (name, f) in &runs {
        rows.push(row(
            format!(
                "7 flood ({name}, max_failures raised, {} s): 401/s vs argon2 limit; 429/s, 503/s",
                p.flood_secs
            ),
            format!(
                "{:.1}/s (429: {:.0}/s, 503: {:.0}/s)",
                rate(f, 401),
                rate(f, 429),
                rate(f, 503)
            ),
            format!("{limit:.1}/s"),
            Some(rate(f, 401) / limit),
        ));
        for (path, idle, busy) in [
            ("/auth/verify", &idle_v, &f.verify),
            ("/healthz", &idle_h, &f.health),
        ] {
            rows.push(row(
                format!("7 {path} p50 / p99 during flood ({name}) vs idle"),
                format!("{} / {}", fmt_us(pct(busy, 50.0)), fmt_us(pct(busy, 99.0))),
                format!(
                    "{} / {} idle",
                    fmt_us(pct(idle, 50.0)),
                    fmt_us(pct(idle, 99.0))
                ),
                Some(pct(busy, 99.0) / pct(idle, 99.0)),
            ));
        }
        raised_json.push(json!({
            "variant": name, "max_failures": 1000000u64, "secs": f.secs, "by_status": f.by,
            "rate_401": rate(f, 401), "rate_429": rate(f, 429), "rate_503": rate(f, 503),
            "verify_flood": lat(&f.verify), "healthz_flood": lat(&f.health),
        }));
    }
    rows.push(row(
        format!(
            "7 flood, default regulation ({} s): 401/s, 429/s, 503/s",
            p.default_flood_secs
        ),
        format!(
            "{:.1}/s, {:.0}/s, {:.0}/s",
            rate(&d, 401),
            rate(&d, 429),
            rate(&d, 503)
        ),
        "-",
        None,
    ));
    json!({
        "argon2_single_hash_ms": hash_ms, "cores": cores(), "argon2_limit_per_s": limit,
        "verify_idle": lat(&idle_v), "healthz_idle": lat(&idle_h),
        "raised": raised_json,
        "default": {
            "secs": d.secs, "by_status": d.by,
            "rate_401": rate(&d, 401), "rate_429": rate(&d, 429), "rate_503": rate(&d, 503),
            "verify_flood": lat(&d.verify), "healthz_flood": lat(&d.health),
        },
    })
}

// ------------------------------------------------------------------ figure 8

const EXPIRED_SHARE: u64 = 10;

/// Fills `path` with `events` audit events over the last 30 days and
/// `sessions` sessions (one in ten already expired, for the sweep).
fn fill(path: &Path, sessions: u64, events: u64) -> (u64, u64) {
    let store = Store::open(path, &StoreOptions::default()).expect("open store for filling");
    let now = now_ms();
    let now_u = now_us();
    let span = 30 * 86_400 * 1_000_000u64;
    let start = now_u - span;
    let step = (span - 4 * 3_600 * 1_000_000) / events.max(1);
    let kinds = [
        EventKind::LoginSuccess,
        EventKind::SessionCreated,
        EventKind::LoginFailure,
        EventKind::Logout,
        EventKind::SessionExpired,
    ];
    let batch = 20_000u64;
    let t = Instant::now();
    let mut i = 0;
    while i < events {
        let n = batch.min(events - i);
        let ops = (i..i + n)
            .map(|j| {
                let ip = IpAddr::V4(Ipv4Addr::new(10, (j >> 16) as u8, (j >> 8) as u8, j as u8));
                let mut ev = NewEvent::at(kinds[(j % 5) as usize], start + j * step)
                    .user(format!("u{}", j % 10_000))
                    .ip(Some(ip))
                    .user_agent(Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()));
                if j % 5 == 2 {
                    ev = ev.detail("reason", "wrong password");
                }
                Op::Append(ev)
            })
            .collect();
        for r in store.apply_batch(ops) {
            r.expect("append");
        }
        i += n;
        if i % 1_000_000 == 0 {
            eprintln!("  filled {i} events ({:.0} s)", t.elapsed().as_secs_f64());
        }
    }
    let expired = sessions / EXPIRED_SHARE;
    let live = sessions - expired;
    let users = (live / 10).max(1);
    let mut i = 0;
    while i < sessions {
        let n = batch.min(sessions - i);
        let ops = (i..i + n)
            .map(|j| {
                let (user, at) = if j < expired {
                    // One expired session per user, so no later login removes it.
                    (format!("x{j}"), now - 3 * 3_600_000)
                } else {
                    (format!("u{}", j % users), now)
                };
                Op::CreateSession(bench_session(user, at))
            })
            .collect();
        for r in store.apply_batch(ops) {
            r.expect("create session");
        }
        i += n;
    }
    eprintln!(
        "  filled {events} events and {sessions} sessions in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    store.close().expect("close filled store");
    (live, expired)
}

/// A session as the memory figure fills them: one hour idle, one day at most.
fn bench_session(user: String, now_ms: u64) -> NewSession {
    NewSession {
        user,
        remember_me: false,
        idle_ttl_ms: 3_600_000,
        absolute_ttl_ms: 86_400_000,
        max_per_user: 32,
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
        now_ms,
    }
}

/// Adds `n` more already-expired sessions (users `y0`, `y1`, ...), so that
/// a second server run has as much to sweep as the first.
fn add_expired(path: &Path, n: u64) {
    let store = Store::open(path, &StoreOptions::default()).expect("open store for refilling");
    let at = now_ms() - 3 * 3_600_000;
    let mut i = 0;
    while i < n {
        let k = 20_000.min(n - i);
        let ops = (i..i + k)
            .map(|j| Op::CreateSession(bench_session(format!("y{j}"), at)))
            .collect();
        for r in store.apply_batch(ops) {
            r.expect("create session");
        }
        i += k;
    }
    store.close().expect("close refilled store");
}

/// Server mode: serves `dir` until standard input closes, printing the
/// bound address first.
fn serve_child(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ov = Overrides {
            config: Some(dir.join("gatehouse.toml")),
            data_dir: Some(dir.to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::load(&ov).expect("child config");
        let server = Server::bind(config, ov).await.expect("child bind");
        println!("LISTENING {}", server.local_addr().unwrap());
        let _ = server
            .run(async {
                let mut sink = Vec::new();
                let _ = tokio::io::stdin().read_to_end(&mut sink).await;
            })
            .await;
    });
}

fn proc_status(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

fn mib_kb(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut c = Conn::new(addr);
    c.send(&get_req("/metrics", None)).await.ok()?;
    let body = String::from_utf8_lossy(&c.body).into_owned();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs an audit query, following `pages` cursors; returns (events, ms).
async fn audit_pages(c: &mut Conn, cookie: &str, query: &str, pages: usize) -> (usize, f64) {
    let t = Instant::now();
    let mut cursor: Option<String> = None;
    let mut n = 0;
    for _ in 0..pages {
        let path = match &cursor {
            Some(cur) => format!("/api/v1/audit?{query}&cursor={cur}"),
            None => format!("/api/v1/audit?{query}"),
        };
        let st = c
            .send(&get_req(&path, Some(cookie)))
            .await
            .expect("audit query");
        assert_eq!(
            st,
            200,
            "audit query {path}: {}",
            String::from_utf8_lossy(&c.body)
        );
        let v: Value = serde_json::from_slice(&c.body).expect("audit json");
        n += v["events"].as_array().map_or(0, |a| a.len());
        match v["next_cursor"].as_str() {
            Some(cur) => {
                cursor = Some(url::form_urlencoded::byte_serialize(cur.as_bytes()).collect())
            }
            None => break,
        }
    }
    (n, t.elapsed().as_secs_f64() * 1e3)
}

/// What one server child measured.
struct ChildRun {
    open_secs: f64,
    sweep_secs: f64,
    rss_started: u64,
    hwm_sweep: u64,
    rss_sweep: u64,
    hwm_end: u64,
    rss_end: u64,
    queries: Vec<Value>,
}

/// Starts a server child on `dir`, waits for the start-up sweep, runs the
/// audit queries and stops it, sampling `/proc/<pid>/status` on the way.
/// `live`: the session count once the sweep is done.
async fn run_child(dir: &Path, live: u64, arena_max: Option<&str>) -> ChildRun {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(n) = arena_max {
        cmd.env("MALLOC_ARENA_MAX", n);
    }
    let mut child = cmd
        .arg("--serve-child")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start server child");
    let pid = child.id().expect("child pid");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let t_open = Instant::now();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .unwrap();
    let open_secs = t_open.elapsed().as_secs_f64();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect("child address")
        .parse()
        .unwrap();
    let (_, rss_started) = proc_status(pid);

    // Wait for the start-up sweep to remove the expired sessions.
    let t_sweep = Instant::now();
    let mut peak_during_sweep = 0;
    loop {
        let (hwm, _) = proc_status(pid);
        peak_during_sweep = peak_during_sweep.max(hwm);
        match metric(addr, "gatehouse_sessions").await {
            Some(n) if n <= live => break,
            _ if t_sweep.elapsed() > Duration::from_secs(300) => {
                eprintln!("  sweep did not finish in 300 s");
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let sweep_secs = t_sweep.elapsed().as_secs_f64();
    let (hwm_sweep, rss_sweep) = proc_status(pid);

    let cookie = login(addr, "alice", PASSWORD).await;
    let mut c = Conn::new(addr);
    let queries: [(&str, &str, usize); 5] = [
        ("newest 100 of one user", "user=u17&limit=100", 1),
        ("one user, all pages of 1000", "user=u17&limit=1000", 1000),
        (
            "one kind, 50 pages of 1000",
            "kind=login.failure&limit=1000",
            50,
        ),
        ("all, 100 pages of 1000", "limit=1000", 100),
        (
            "filter scan: ip + outcome",
            "ip=10.0.3.7&outcome=failure&limit=100",
            20,
        ),
    ];
    let mut qres = Vec::new();
    for (name, q, pages) in queries {
        let (n, ms) = audit_pages(&mut c, &cookie, q, pages).await;
        let (hwm, rss) = proc_status(pid);
        eprintln!(
            "  audit {name}: {n} events in {ms:.1} ms; VmHWM {} VmRSS {}",
            mib_kb(hwm),
            mib_kb(rss)
        );
        qres.push(json!({"query": q, "name": name, "events": n, "ms": ms, "vmhwm_kb": hwm, "vmrss_kb": rss}));
    }
    let (hwm_end, rss_end) = proc_status(pid);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    ChildRun {
        open_secs,
        sweep_secs,
        rss_started,
        hwm_sweep,
        rss_sweep,
        hwm_end,
        rss_end,
        queries: qres,
    }
}

async fn fig8(p: &Params, rows: &mut Vec<Row>) -> Value {
    eprintln!(
        "figure 8: memory with {} sessions and {} events",
        p.sessions, p.events
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let db = dir.join("gatehouse.redb");
    let (sessions, events) = (p.sessions, p.events);
    let db2 = db.clone();
    let (live, expired) = tokio::task::spawn_blocking(move || fill(&db2, sessions, events))
        .await
        .unwrap();
    let file_before = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let hash = hash_password(PASSWORD, &cheap()).unwrap();
    // Sweep at start (the first tick is immediate); default cache unless
    // `--cache-mib` says otherwise.
    let extra = format!("cache_mib = {}", p.cache_mib);
    std::fs::write(
        dir.join("gatehouse.toml"),
        config_text(&hash, true, &extra, ""),
    )
    .unwrap();

    let r = run_child(&dir, live, None).await;
    // The same with glibc limited to two malloc arenas, with as many expired
    // sessions to sweep (the first run's sign-in left one more live session).
    let db3 = db.clone();
    tokio::task::spawn_blocking(move || add_expired(&db3, expired))
        .await
        .unwrap();
    let r2 = run_child(&dir, live + 1, Some("2")).await;
    let ChildRun {
        open_secs,
        sweep_secs,
        rss_started,
        hwm_sweep,
        rss_sweep,
        hwm_end,
        rss_end,
        queries: qres,
    } = r;
    let file_after = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    let target_kb = 100 * 1024;
    rows.push(row(
        format!(
            "8 peak RSS (VmHWM), {} sessions + {} events, start, sweep, audit queries",
            p.sessions, p.events
        ),
        mib_kb(hwm_end),
        format!(
            "file {:.0} MiB; target < 100 MiB",
            file_after as f64 / 1048576.0
        ),
        Some(hwm_end as f64 / target_kb as f64),
    ));
    rows.push(row(
        "8 peak RSS, the same (sweep and queries again) with MALLOC_ARENA_MAX=2",
        mib_kb(r2.hwm_end),
        "target < 100 MiB",
        Some(r2.hwm_end as f64 / target_kb as f64),
    ));
    rows.push(row(
        "8 RSS after start / after sweep / after queries",
        format!(
            "{} / {} / {}",
            mib_kb(rss_started),
            mib_kb(rss_sweep),
            mib_kb(rss_end)
        ),
        format!("redb cache {} MiB", p.cache_mib),
        None,
    ));
    rows.push(row(
        format!("8 start-up sweep of {expired} expired sessions"),
        format!("{sweep_secs:.1} s, VmHWM {}", mib_kb(hwm_sweep)),
        "-",
        None,
    ));
    json!({
        "sessions": p.sessions, "events_filled": p.events, "live_sessions": live, "expired_sessions": expired,
        "file_bytes_before": file_before, "file_bytes_after": file_after,
        "open_secs": open_secs, "sweep_secs": sweep_secs,
        "vmrss_started_kb": rss_started, "vmhwm_sweep_kb": hwm_sweep, "vmrss_sweep_kb": rss_sweep,
        "vmhwm_end_kb": hwm_end, "vmrss_end_kb": rss_end, "queries": qres,
        "malloc_arena_max_2": {"sweep_secs": r2.sweep_secs, "vmhwm_sweep_kb": r2.hwm_sweep, "vmhwm_end_kb": r2.hwm_end, "vmrss_end_kb": r2.rss_end, "queries": r2.queries},
        "full": p.full, "cache_mib": p.cache_mib,
    })
}
