//! Counters and the `GET /metrics` endpoint (Prometheus text format, written
//! by hand), served only when `metrics = true`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::store::{BanStore, Histogram, StoreCheck, WriterStats, now_ms};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The server's own counters.
#[derive(Debug)]
pub struct Metrics {
    pub login_success: Counter,
    pub login_failure: Counter,
    /// Refused before hashing: a ban, or the failure limit reached with
    /// attempts in flight (the same answer; exported as `outcome="banned"`).
    pub login_rejected: Counter,
    /// Refused because the hashing pool was full.
    pub login_busy: Counter,
    pub bans_added: Counter,
    pub verify_ok: Counter,
    pub verify_denied: Counter,
    pub verify_error: Counter,
    /// Microseconds per verify.
    pub verify_micros: Histogram,
    /// Forward-auth checks refused by an access rule, by rule (`None`: the
    /// default policy) and policy. Bounded by the number of rules.
    pub access_denied:
        std::sync::Mutex<std::collections::BTreeMap<(Option<usize>, &'static str), u64>>,
    /// Connections closed at accept: their client had
    /// `limits.max_connections_per_ip` open already.
    pub conn_refused_per_ip: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            login_success: Counter::default(),
            login_failure: Counter::default(),
            login_rejected: Counter::default(),
            login_busy: Counter::default(),
            bans_added: Counter::default(),
            verify_ok: Counter::default(),
            verify_denied: Counter::default(),
            verify_error: Counter::default(),
            access_denied: Default::default(),
            conn_refused_per_ip: Counter::default(),
            verify_micros: Histogram::new(&[
                25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000,
            ]),
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

#[allow(clippy::too_many_arguments)] // one call per field of the text format
/// Writes one histogram; `scale` divides values (microseconds to seconds).
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    counts: &[AtomicU64],
    sum: u64,
    count: u64,
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0;
    for (i, b) in bounds.iter().enumerate() {
        cum += counts[i].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / scale);
    }
    cum += counts[bounds.len()].load(Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(out, "{name}_sum {}", sum as f64 / scale);
    let _ = writeln!(out, "{name}_count {count}");
}

/// Writes a histogram of the writer (a different type with the same fields).
macro_rules! store_histogram {
    ($out:expr, $name:expr, $help:expr, $h:expr, $scale:expr $(,)?) => {
        histogram(
            $out,
            $name,
            $help,
            $h.bounds,
            &$h.counts,
            $h.sum.load(Relaxed),
            $h.count.load(Relaxed),
            $scale,
        )
    };
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.config.metrics {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "metrics are disabled"));
    }
    let m = &state.metrics;
    let mut out = String::with_capacity(4096);
    counter(
        &mut out,
        "gatehouse_login_attempts_total",
        "Login attempts by outcome.",
        &[
            ("{outcome=\"success\"}", m.login_success.get()),
            ("{outcome=\"failure\"}", m.login_failure.get()),
            ("{outcome=\"banned\"}", m.login_rejected.get()),
            ("{outcome=\"busy\"}", m.login_busy.get()),
        ],
    );
    counter(
        &mut out,
        "gatehouse_verify_requests_total",
        "Forward-auth checks by result.",
        &[
            ("{result=\"ok\"}", m.verify_ok.get()),
            ("{result=\"denied\"}", m.verify_denied.get()),
            ("{result=\"error\"}", m.verify_error.get()),
        ],
    );
    let denied: Vec<(String, u64)> = m
        .access_denied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((rule, policy), n)| {
            let rule = rule.map_or("default".to_string(), |r| r.to_string());
            (format!("{{rule=\"{rule}\",policy=\"{policy}\"}}"), *n)
        })
        .collect();
    let denied: Vec<(&str, u64)> = denied.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    counter(
        &mut out,
        "gatehouse_access_denied_total",
        "Forward-auth checks refused by an access rule, by rule index and policy.",
        &denied,
    );
    let h = &m.verify_micros;
    histogram(
        &mut out,
        "gatehouse_verify_duration_seconds",
        "Time to answer a forward-auth check.",
        h.bounds,
        &h.counts,
        h.sum.load(Relaxed),
        h.count.load(Relaxed),
        1e6,
    );
    counter(
        &mut out,
        "gatehouse_bans_added_total",
        "Bans added by regulation since start.",
        &[("", m.bans_added.get())],
    );
    let now = now_ms();
    let stats = state
        .store
        .stats()
        .await
        .map_err(|e| ApiError::internal("reading store stats failed", &e))?;
    let bans = state
        .store
        .bans(now)
        .await
        .map_err(|e| ApiError::internal("reading store stats failed", &e))?
        .len() as u64;
    gauge(
        &mut out,
        "gatehouse_sessions",
        "Session rows in the store (live and not yet swept).",
        stats.sessions,
    );
    gauge(&mut out, "gatehouse_active_bans", "Bans in force.", bans);
    gauge(
        &mut out,
        "gatehouse_audit_events",
        "Audit events stored.",
        stats.events,
    );
    // A store without a write queue reports empty counters.
    let no_queue;
    let ws = match state.store.writer_stats() {
        Some(ws) => ws,
        None => {
            no_queue = WriterStats::default();
            &no_queue
        }
    };
    counter(
        &mut out,
        "gatehouse_writer_ops_total",
        "Write operations committed (audit events, sessions, bans).",
        &[("", ws.ops.load(Relaxed))],
    );
    counter(
        &mut out,
        "gatehouse_writer_commits_total",
        "Write batches by result.",
        &[
            ("{result=\"ok\"}", ws.commits.load(Relaxed)),
            ("{result=\"failed\"}", ws.failed_commits.load(Relaxed)),
        ],
    );
    counter(
        &mut out,
        "gatehouse_writer_dropped_total",
        "Fire-and-forget writes dropped because the queue was full.",
        &[("", ws.dropped.load(Relaxed))],
    );
    store_histogram!(
        &mut out,
        "gatehouse_writer_batch_size",
        "Operations per commit.",
        &ws.batch_size,
        1.0,
    );
    store_histogram!(
        &mut out,
        "gatehouse_writer_commit_duration_seconds",
        "Time from begin to durable commit.",
        &ws.commit_micros,
        1e6,
    );
    gauge(
        &mut out,
        "gatehouse_writer_queue_depth",
        "Writes waiting for the writer.",
        state.store.queue_depth() as u64,
    );
    gauge(
        &mut out,
        "gatehouse_hashing_in_use",
        "Password hashing slots busy.",
        state.hasher.in_use() as u64,
    );
    gauge(
        &mut out,
        "gatehouse_open_connections",
        "Open client connections.",
        state.activity.open_connections() as u64,
    );
    counter(
        &mut out,
        "gatehouse_connections_refused_total",
        "Connections closed at once because their client had too many open.",
        &[("{reason=\"per_ip\"}", m.conn_refused_per_ip.get())],
    );
    let mut res = (StatusCode::OK, out).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
