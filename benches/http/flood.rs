//! Figure 7: 200 concurrent wrong-password logins at the real argon2 cost,
//! against the machine's argon2 limit (cores / the time of one hash), with
//! `/auth/verify` and `/healthz` probed during the flood and idle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::config::Argon2Settings;
use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::LOGIN_FLOOD;
use gatehouse_benches::http_client::{Conn, closed_load, get_req, login, login_req};
use gatehouse_benches::machine::cores;
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::{median, percentile_us, ratio};
use serde_json::{Value, json};

use crate::servers::{config_text, start_gatehouse};
use crate::{PASSWORD, Params, line};

/// Median time of one argon2id hash with the crate's defaults.
fn single_hash_ms() -> f64 {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let a = argon2::Argon2::default();
    let salt = SaltString::encode_b64(b"bench-salt-16-by").expect("salt");
    let t = (0..9)
        .map(|_| {
            let s = Instant::now();
            let _ = a.hash_password(b"some password", &salt).expect("hash");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(t)
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
        if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), c.send(&req)).await
            && st == 200
        {
            lat.push(t.elapsed().as_micros() as u32);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat
}

/// Probes of `/auth/verify` and `/healthz`, running until `stop`.
fn probes(
    addr: SocketAddr,
    cookie: &str,
    stop: &Arc<AtomicBool>,
) -> [tokio::task::JoinHandle<Vec<u32>>; 2] {
    ["/auth/verify", "/healthz"]
        .map(|path| tokio::spawn(probe(addr, path, cookie.to_string(), stop.clone())))
}

struct Flood {
    secs: f64,
    by: BTreeMap<u16, u64>,
    verify: Vec<u32>,
    health: Vec<u32>,
}

/// 200 wrong-password logins at once for `secs`, with probes running.
async fn flood(addr: SocketAddr, cookie: &str, secs: u64, backoff: Option<Duration>) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let [pv, ph] = probes(addr, cookie, &stop);
    let t = Instant::now();
    let run = closed_load(
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
        by: run.by_status,
        verify: pv.await.expect("verify probe"),
        health: ph.await.expect("healthz probe"),
    }
}

/// The probes alone for `secs`: (verify, healthz) latencies of an idle server.
async fn idle_probe(addr: SocketAddr, cookie: &str, secs: u64) -> (Vec<u32>, Vec<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let [pv, ph] = probes(addr, cookie, &stop);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    (
        pv.await.expect("verify probe"),
        ph.await.expect("healthz probe"),
    )
}

/// Answers per second with status `st`.
fn rate(f: &Flood, st: u16) -> f64 {
    *f.by.get(&st).unwrap_or(&0) as f64 / f.secs
}

fn p50_p99(v: &[u32]) -> String {
    format!(
        "{} / {}",
        fmt_us(percentile_us(v, 0.50)),
        fmt_us(percentile_us(v, 0.99))
    )
}

fn lat(v: &[u32]) -> Value {
    json!({"n": v.len(), "p50_us": percentile_us(v, 0.50), "p99_us": percentile_us(v, 0.99)})
}

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    eprintln!("figure {LOGIN_FLOOD}: login flood, 200 connections, real argon2 cost");
    let hash_ms = tokio::task::spawn_blocking(single_hash_ms)
        .await
        .expect("hash timing");
    let limit = cores() as f64 * 1000.0 / hash_ms;
    eprintln!("  one argon2id hash (m=19456,t=2,p=1): {hash_ms:.1} ms; limit {limit:.0}/s");
    let hash = tokio::task::spawn_blocking(|| hash_password(PASSWORD, &Argon2Settings::default()))
        .await
        .expect("hash task")
        .expect("hash");

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
            fmt_us(percentile_us(&f.verify, 0.99)),
            fmt_us(percentile_us(&f.health, 0.99))
        );
        runs.push((name, f));
    }
    let (idle_v, idle_h) = idle.expect("idle probes ran with the first variant");

    // Default regulation: the flooding IP and user are banned after 5 failures.
    let gd = start_gatehouse(&config_text(&hash, false, "", "")).await;
    let cookie_d = login(gd.addr, "alice", PASSWORD).await;
    let d = flood(gd.addr, &cookie_d, p.default_flood_secs, None).await;
    gd.stop().await;
    eprintln!("  default regulation: {:?} in {:.1} s", d.by, d.secs);

    lines.push(line(
        LOGIN_FLOOD,
        "argon2 limit of the machine",
        "-",
        format!("{limit:.1}/s ({} cores / {hash_ms:.1} ms a hash)", cores()),
        None,
    ));
    let mut raised_json = Vec::new();
    for (name, f) in &runs {
        lines.push(line(
            LOGIN_FLOOD,
            format!(
                "flood ({name}, max_failures raised, {} s): 401/s vs argon2 limit; 429/s, 503/s",
                p.flood_secs
            ),
            format!(
                "{:.1}/s (429: {:.0}/s, 503: {:.0}/s)",
                rate(f, 401),
                rate(f, 429),
                rate(f, 503)
            ),
            format!("{limit:.1}/s"),
            ratio(rate(f, 401), limit),
        ));
        for (path, idle, busy) in [
            ("/auth/verify", &idle_v, &f.verify),
            ("/healthz", &idle_h, &f.health),
        ] {
            lines.push(line(
                LOGIN_FLOOD,
                format!("{path} p50 / p99 during flood ({name}) vs idle"),
                p50_p99(busy),
                format!("{} idle", p50_p99(idle)),
                ratio(percentile_us(busy, 0.99), percentile_us(idle, 0.99)),
            ));
        }
        raised_json.push(json!({
            "variant": name, "max_failures": 1000000u64, "secs": f.secs, "by_status": f.by,
            "rate_401": rate(f, 401), "rate_429": rate(f, 429), "rate_503": rate(f, 503),
            "verify_flood": lat(&f.verify), "healthz_flood": lat(&f.health),
        }));
    }
    lines.push(line(
        LOGIN_FLOOD,
        format!(
            "flood, default regulation ({} s): 401/s, 429/s, 503/s",
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
