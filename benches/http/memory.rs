//! Figure 8: the peak RSS of a server process (this binary re-executed with
//! `--serve-child`) on a database with many sessions and events, through its
//! start-up sweep and a set of audit queries, against the 100 MiB target and
//! beside the file size.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gatehouse::config::{Config, Overrides};
use gatehouse::server::Server;
use gatehouse::server::password::hash_password;
use gatehouse::store::{
    EventKind, Methods, NewEvent, NewSession, Op, Store, StoreOptions, now_ms, now_us,
};
use gatehouse_benches::figure::MEMORY;
use gatehouse_benches::http_client::{Conn, get_req, login};
use gatehouse_benches::report::{Line, fmt_mib_kb as mib_kb};
use gatehouse_benches::stats::ratio;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::servers::{cheap, config_text};
use crate::{PASSWORD, Params, line};

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
        methods: Methods::PASSWORD,
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
pub fn serve_child(dir: &Path) {
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

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    eprintln!(
        "figure {MEMORY}: memory with {} sessions and {} events",
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
    lines.push(line(
        MEMORY,
        format!(
            "peak RSS (VmHWM), {} sessions + {} events, start, sweep, audit queries",
            p.sessions, p.events
        ),
        mib_kb(hwm_end),
        format!(
            "file {:.0} MiB; target < 100 MiB",
            file_after as f64 / 1048576.0
        ),
        ratio(hwm_end as f64, target_kb as f64),
    ));
    lines.push(line(
        MEMORY,
        "peak RSS, the same (sweep and queries again) with MALLOC_ARENA_MAX=2",
        mib_kb(r2.hwm_end),
        "target < 100 MiB",
        ratio(r2.hwm_end as f64, target_kb as f64),
    ));
    lines.push(line(
        MEMORY,
        "RSS after start / after sweep / after queries",
        format!(
            "{} / {} / {}",
            mib_kb(rss_started),
            mib_kb(rss_sweep),
            mib_kb(rss_end)
        ),
        format!("redb cache {} MiB", p.cache_mib),
        None,
    ));
    lines.push(line(
        MEMORY,
        format!("start-up sweep of {expired} expired sessions"),
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
