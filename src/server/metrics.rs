//! Counters and the `GET /metrics` endpoint (Prometheus text format, encoded
//! by `prometheus-client`), served only when `metrics = true`.
//!
//! The hot paths touch only plain atomics (`Counter`, the store's
//! `Histogram`); at a scrape their values are read into one collector
//! ([`Scrape`]) that `prometheus-client` encodes, so recording a metric never
//! takes a lock.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use crate::store::Histogram;

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
    /// Proxied requests whose upstream failed, by app index (`[[apps]]`
    /// order) and outcome (`bad_gateway`, `timeout`). Bounded by the apps;
    /// touched only on a failure.
    pub proxy_failed: std::sync::Mutex<std::collections::BTreeMap<(usize, &'static str), u64>>,
    /// WebSockets the proxy closed itself, by reason (`session_ended`,
    /// `shutdown`, `idle`).
    pub proxy_ws_closed: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Connections closed at accept: their client had
    /// `limits.max_connections_per_ip` open already.
    pub conn_refused_per_ip: Counter,
    /// Second steps by method (`Method as usize`) that passed.
    pub second_step_ok: [Counter; 4],
    /// Second steps by method that failed (a wrong, replayed or malformed
    /// code, a refused passkey).
    pub second_step_failed: [Counter; 4],
}

impl Metrics {
    /// Counts a second step with `method`.
    pub fn second_step(&self, method: crate::store::Method, ok: bool) {
        let i = method as usize;
        if ok {
            self.second_step_ok[i].inc();
        } else {
            self.second_step_failed[i].inc();
        }
    }
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
            proxy_failed: Default::default(),
            proxy_ws_closed: Default::default(),
            conn_refused_per_ip: Counter::default(),
            second_step_ok: Default::default(),
            second_step_failed: Default::default(),
            verify_micros: Histogram::new(&[
                25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000,
            ]),
        }
    }
}
