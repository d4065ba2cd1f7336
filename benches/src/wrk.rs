//! Load for the throughput figures: wrk when it is installed (the reference
//! tool, and its output parsed here), else the built-in closed-loop client.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::http_client::{closed_load, get_req_with, on_clients};
use crate::stats::percentile_us;

/// Threads and connections of every load run, wrk or built-in.
pub const THREADS: usize = 2;
pub const CONNECTIONS: usize = 64;

/// Throughput and latency of one load run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub tool: &'static str,
}

/// Whether `wrk` is on the `PATH`.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `GET path` with the session cookie for `secs` seconds: wrk (2 threads, 64
/// connections), or the built-in client with as many connections when wrk
/// is absent.
pub async fn load(addr: SocketAddr, path: &str, cookie: &str, secs: u64) -> Load {
    load_with(addr, path, cookie, &[], secs).await
}

/// [`load`] with `extra` header lines (`Name: value`) on every request.
pub async fn load_with(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    extra: &[&str],
    secs: u64,
) -> Load {
    if available() {
        let url = format!("http://{addr}{path}");
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.arg(format!("-t{THREADS}"))
            .arg(format!("-c{CONNECTIONS}"))
            .args([&format!("-d{secs}s"), "--latency"]);
        // An empty cookie: no `Cookie` header at all (a script's request).
        if !cookie.is_empty() {
            cmd.arg("-H")
                .arg(format!("Cookie: gatehouse_session={cookie}"));
        }
        for h in extra {
            cmd.arg("-H").arg(h);
        }
        let out = cmd.arg(&url).output().await.expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}"))
    } else {
        let run = on_clients(closed_load(
            addr,
            get_req_with(path, Some(cookie).filter(|c| !c.is_empty()), extra),
            CONNECTIONS,
            secs,
            None,
        ))
        .await;
        Load {
            rps: run.rps,
            p50_us: percentile_us(&run.lat_us, 0.50),
            p99_us: percentile_us(&run.lat_us, 0.99),
            tool: "built-in client",
        }
    }
}

/// Requests/s and the 50% and 99% latencies of wrk's `--latency` output.
pub fn parse(text: &str) -> Option<Load> {
    let rps = text
        .lines()
        .find(|l| l.trim_start().starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let lat = |p: &str| -> Option<f64> {
        let l = text.lines().find(|l| l.trim_start().starts_with(p))?;
        duration_us(l.split_whitespace().nth(1)?)
    };
    Some(Load {
        rps,
        p50_us: lat("50%")?,
        p99_us: lat("99%")?,
        tool: "wrk",
    })
}

/// wrk's durations ("812.00us", "2.23ms", "1.01s", "1.50m") in microseconds.
fn duration_us(s: &str) -> Option<f64> {
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
