//! Distinct requests each sent once on many keep-alive connections (the
//! load figure 14 needs: a code can be spent only once, so the closed loop
//! of `closed_load`, which repeats one request, does not fit), and the
//! in-process server's CPU time over such a run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gatehouse_benches::http_client::{Conn, on_clients};
use gatehouse_benches::stats::percentile_us;
use serde_json::{Value, json};

/// What a run of distinct requests saw.
pub struct Each {
    /// Answers per second over the run.
    pub rps: f64,
    /// Seconds the run took.
    pub secs: f64,
    pub lat_us: Vec<u32>,
    /// Answers by status (0: the connection failed).
    pub by_status: std::collections::BTreeMap<u16, u64>,
    /// What `keep` took from each 2xx or 3xx answer, in no order.
    pub kept: Vec<String>,
    /// Requests never sent (the deadline came first).
    pub unsent: usize,
    /// Server CPU time over the run, in microseconds.
    pub server_cpu_us: f64,
}

/// Sends each of `reqs` once, on `conns` keep-alive connections, until all
/// are answered or `deadline`.
pub async fn each_once(
    addr: SocketAddr,
    reqs: Vec<Vec<u8>>,
    conns: usize,
    deadline: Instant,
    keep: fn(&Conn) -> Option<String>,
) -> Each {
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = server_cpu_us();
    let start = Instant::now();
    let task_reqs = reqs.clone();
    let task_next = next.clone();
    let (lat_us, by_status, kept) = on_clients(async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let (reqs, next) = (task_reqs.clone(), task_next.clone());
            set.spawn(async move {
                let mut c = Conn::new(addr);
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = reqs.get(i) else { break };
                    let t = Instant::now();
                    let st = match tokio::time::timeout_at(deadline.into(), c.send(req)).await {
                        Ok(Ok(st)) => st,
                        Ok(Err(_)) => 0,
                        Err(_) => break,
                    };
                    let lat = t.elapsed().as_micros() as u32;
                    let kept = (200..400).contains(&st).then(|| keep(&c)).flatten();
                    out.push((st, lat, kept));
                }
                out
            });
        }
        let mut lat_us = Vec::new();
        let mut by_status = std::collections::BTreeMap::new();
        let mut kept = Vec::new();
        while let Some(r) = set.join_next().await {
            for (st, lat, k) in r.expect("load connection task") {
                lat_us.push(lat);
                *by_status.entry(st).or_insert(0u64) += 1;
                kept.extend(k);
            }
        }
        (lat_us, by_status, kept)
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    let server_cpu_us = server_cpu_us() - cpu0;
    Each {
        rps: lat_us.len() as f64 / secs,
        secs,
        unsent: reqs.len().saturating_sub(lat_us.len()),
        lat_us,
        by_status,
        kept,
        server_cpu_us,
    }
}

/// CPU time of this process's threads other than the load clients'
/// (`bench-client`), in microseconds: the in-process server's, from the
/// scheduler's run time of each thread (`/proc/self/task/*/schedstat`, in
/// nanoseconds). CPU time, unlike wall time, does not grow when other
/// work on the shared machine preempts the server.
pub fn server_cpu_us() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "bench-client" {
            continue;
        }
        ns += run_ns(&t.path().join("schedstat")).unwrap_or(0);
    }
    ns as f64 / 1e3
}

/// The first field of a `schedstat` file: nanoseconds run on a CPU.
pub fn run_ns(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The run's raw numbers for the JSON results.
pub fn each_json(e: &Each) -> Value {
    json!({
        "rps": e.rps, "secs": e.secs, "answers": e.lat_us.len(), "unsent": e.unsent,
        "p50_us": percentile_us(&e.lat_us, 0.50), "p99_us": percentile_us(&e.lat_us, 0.99),
        "by_status": e.by_status, "server_cpu_us": e.server_cpu_us,
    })
}

/// Answers of `status` per second over the run.
pub fn ok_rate(e: &Each, status: u16) -> f64 {
    let ok = e.by_status.get(&status).copied().unwrap_or(0) as f64;
    ok / e.secs
}

/// Server CPU per answer of `status`, in microseconds.
pub fn cpu_per(e: &Each, status: u16) -> f64 {
    let ok = e.by_status.get(&status).copied().unwrap_or(0) as f64;
    e.server_cpu_us / ok
}
