//! `GET /metrics` (Prometheus text format, encoded by `prometheus-client`),
//! served only when `metrics = true`. At a scrape the counters' values are read
//! into one collector ([`Scrape`]) that `prometheus-client` encodes.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{BanStore, Histogram, StoreCheck, WriterStats, now_ms};

/// One metric family as it stands at a scrape.
#[derive(Debug)]
struct Family {
    /// The name; for a counter, without the `_total` the encoder adds.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, String)>, Sample)>,
}

/// One sample's value.
#[derive(Debug)]
enum Sample {
    Counter(u64),
    Gauge(u64),
    /// Sum (already scaled), count, and (upper bound, count in that bucket).
    Histogram(f64, u64, Vec<(f64, u64)>),
}

/// Every family of one scrape, read from the server's atomics and the store
/// just before encoding: the hot path only ever touches plain atomics.
#[derive(Debug, Default)]
struct Scrape(Vec<Family>);

impl Scrape {
    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: Vec<(Vec<(&'static str, String)>, u64)>,
    ) {
        self.0.push(Family {
            name,
            help,
            kind: MetricType::Counter,
            samples: samples
                .into_iter()
                .map(|(l, v)| (l, Sample::Counter(v)))
                .collect(),
        });
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.0.push(Family {
            name,
            help,
            kind: MetricType::Gauge,
            samples: vec![(Vec::new(), Sample::Gauge(v))],
        });
    }

    /// A histogram of `h` (bounds and sums in raw units) divided by `scale`.
    fn histogram(&mut self, name: &'static str, help: &'static str, h: &Histogram, scale: f64) {
        let buckets = h
            .bounds
            .iter()
            .zip(h.counts.iter())
            .map(|(b, c)| (*b as f64 / scale, c.load(Relaxed)))
            .collect();
        self.0.push(Family {
            name,
            help,
            kind: MetricType::Histogram,
            samples: vec![(
                Vec::new(),
                Sample::Histogram(
                    h.sum.load(Relaxed) as f64 / scale,
                    h.count.load(Relaxed),
                    buckets,
                ),
            )],
        });
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut m = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, sample) in &f.samples {
                if labels.is_empty() {
                    encode_sample(&mut m, sample)?;
                } else {
                    encode_sample(&mut m.encode_family(labels)?, sample)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_sample(m: &mut MetricEncoder, s: &Sample) -> Result<(), std::fmt::Error> {
    match s {
        Sample::Counter(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
        Sample::Gauge(v) => m.encode_gauge(&(*v as i64)),
        Sample::Histogram(sum, count, buckets) => {
            m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
        }
    }
}

/// `[(key, value)]`.
fn label(key: &'static str, value: &str) -> Vec<(&'static str, String)> {
    vec![(key, value.to_string())]
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.config.metrics {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "metrics are disabled"));
    }
    let m = &state.metrics;
    let mut x = Scrape::default();
    x.counter(
        "gatehouse_login_attempts",
        "Login attempts by outcome.",
        vec![
            (label("outcome", "success"), m.login_success.get()),
            (label("outcome", "failure"), m.login_failure.get()),
            (label("outcome", "banned"), m.login_rejected.get()),
            (label("outcome", "busy"), m.login_busy.get()),
        ],
    );
    x.counter(
        "gatehouse_verify_requests",
        "Forward-auth checks by result.",
        vec![
            (label("result", "ok"), m.verify_ok.get()),
            (label("result", "denied"), m.verify_denied.get()),
            (label("result", "error"), m.verify_error.get()),
        ],
    );
    let denied = m
        .access_denied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((rule, policy), n)| {
            let rule = crate::access::rule_label(*rule);
            (vec![("rule", rule), ("policy", policy.to_string())], *n)
        })
        .collect();
    x.counter(
        "gatehouse_access_denied",
        "Forward-auth checks refused by an access rule, by rule index and policy.",
        denied,
    );
    let apps = &state.config.proxy.apps;
    let failed = m
        .proxy_failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((app, outcome), n)| {
            let name = apps.get(*app).map_or_else(String::new, |a| a.name.clone());
            (vec![("app", name), ("outcome", outcome.to_string())], *n)
        })
        .collect();
    x.counter(
        "gatehouse_proxy_upstream_failures",
        "Proxied requests whose app failed (bad_gateway: 502) or did not answer in time (timeout: 504), by app.",
        failed,
    );
    let ws_closed = m
        .proxy_ws_closed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(reason, n)| (vec![("reason", reason.to_string())], *n))
        .collect();
    x.counter(
        "gatehouse_proxy_websockets_closed",
        "WebSockets the proxy closed itself, by reason (session_ended, shutdown, idle).",
        ws_closed,
    );
    x.histogram(
        "gatehouse_verify_duration_seconds",
        "Time to answer a forward-auth check.",
        &m.verify_micros,
        1e6,
    );
    let steps = crate::store::Method::ALL
        .into_iter()
        .filter(|m| m.is_second_factor())
        .flat_map(|method| {
            let i = method as usize;
            [
                ("success", m.second_step_ok[i].get()),
                ("failure", m.second_step_failed[i].get()),
            ]
            .map(|(result, n)| {
                (
                    vec![
                        ("method", method.as_str().to_string()),
                        ("result", result.to_string()),
                    ],
                    n,
                )
            })
        })
        .collect();
    x.counter(
        "gatehouse_second_factor_attempts",
        "Second steps of sign-ins and step-ups, by method and result.",
        steps,
    );
    x.counter(
        "gatehouse_bans_added",
        "Bans added by regulation since start.",
        vec![(Vec::new(), m.bans_added.get())],
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
    x.gauge(
        "gatehouse_sessions",
        "Session rows in the store (live and not yet swept).",
        stats.sessions,
    );
    x.gauge("gatehouse_active_bans", "Bans in force.", bans);
    x.gauge(
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
    x.counter(
        "gatehouse_writer_ops",
        "Write operations committed (audit events, sessions, bans).",
        vec![(Vec::new(), ws.ops.load(Relaxed))],
    );
    x.counter(
        "gatehouse_writer_commits",
        "Write batches by result.",
        vec![
            (label("result", "ok"), ws.commits.load(Relaxed)),
            (label("result", "failed"), ws.failed_commits.load(Relaxed)),
        ],
    );
    x.counter(
        "gatehouse_writer_dropped",
        "Fire-and-forget writes dropped because the queue was full.",
        vec![(Vec::new(), ws.dropped.load(Relaxed))],
    );
    x.histogram(
        "gatehouse_writer_batch_size",
        "Operations per commit.",
        &ws.batch_size,
        1.0,
    );
    x.histogram(
        "gatehouse_writer_commit_duration_seconds",
        "Time from begin to durable commit.",
        &ws.commit_micros,
        1e6,
    );
    x.gauge(
        "gatehouse_writer_queue_depth",
        "Writes waiting for the writer.",
        state.store.queue_depth() as u64,
    );
    if let Some(o) = state.store.outbox_status().await {
        x.gauge(
            "gatehouse_outbox_depth",
            "Audit events waiting in the outbox to be chained (distributed store).",
            o.depth,
        );
        x.gauge(
            "gatehouse_outbox_lag_milliseconds",
            "How long the oldest event waiting in the outbox has waited (distributed store).",
            o.lag_ms,
        );
    }
    x.gauge(
        "gatehouse_hashing_in_use",
        "Password hashing slots busy.",
        state.hasher.in_use() as u64,
    );
    x.gauge(
        "gatehouse_open_connections",
        "Open client connections.",
        state.activity.open_connections() as u64,
    );
    x.counter(
        "gatehouse_connections_refused",
        "Connections closed at once because their client had too many open.",
        vec![(label("reason", "per_ip"), m.conn_refused_per_ip.get())],
    );
    let mut registry = Registry::default();
    registry.register_collector(Box::new(x));
    let mut out = String::with_capacity(4096);
    prometheus_text::encode(&mut out, &registry)
        .map_err(|e| ApiError::internal("encoding metrics failed", &e))?;
    let mut res = (StatusCode::OK, out).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
