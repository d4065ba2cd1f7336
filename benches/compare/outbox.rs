//! Figure 11, the outbox: chaining from the Redis outbox into PostgreSQL
//! as a node's chainer does it (read a batch from the stream, chain it,
//! acknowledge it) against a plain batched `INSERT` of the same rows; and
//! the outbox under a sign-in flood on one node with its chainer running:
//! sign-ins per second against the redb backend under the same flood, and
//! the outbox's depth and lag while it lasts. Runs when both services are
//! there (`source .ci/services` starts them; see [`services`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::domain::{EventKind, Methods, NewEvent, NewSession};
use gatehouse::store::distributed::{CHAIN_BATCH, Distributed, DistributedConfig};
use gatehouse::store::outbox::{Chainer, DEFAULT_MAX_ENTRIES, Outbox};
use gatehouse::store::postgres::PgAudit;
use gatehouse::store::{Backend, BackendConfig, SessionStore, now_ms};
use gatehouse_benches::figure::POSTGRES_CHAIN;
use gatehouse_benches::stats::{Better, nearest_rank};
use tokio::runtime::Runtime;

use crate::Params;
use crate::report::{Report, Unit};

/// Concurrent sign-ins of the flood: as many callers as the HTTP figures'
/// connections.
const CALLERS: usize = 64;

/// Sign-ins per user of the flood before the oldest is dropped.
const MAX_PER_USER: usize = 20;

/// Users the flood signs in.
const USERS: usize = 1_000;

fn sign_in_event(user: &str) -> NewEvent {
    NewEvent::now(EventKind::LoginSuccess)
        .user(user.to_string())
        .ip(Some(std::net::IpAddr::from([203, 0, 113, 7])))
        .detail("methods", "password")
}

fn new_session(i: usize) -> NewSession {
    NewSession {
        user: format!("flood{}", i % USERS),
        remember_me: false,
        idle_ttl_ms: 30 * 60_000,
        absolute_ttl_ms: 12 * 3_600_000,
        max_per_user: MAX_PER_USER,
        ip: Some(std::net::IpAddr::from([203, 0, 113, 7])),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0".into()),
        now_ms: now_ms(),
        methods: Methods::PASSWORD,
    }
}

/// `CALLERS` closed loops of sign-ins (a session and its `login.success`)
/// on `store` for `secs`; the sign-ins made per second.
async fn flood<S: SessionStore + 'static>(store: Arc<S>, secs: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..CALLERS {
        let store = store.clone();
        set.spawn(async move {
            let mut done = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let s = new_session(i);
                let e = sign_in_event(&s.user);
                store.create_session(s, e, None).await.expect("a sign-in");
                done += 1;
                i += CALLERS;
            }
            done
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.expect("a flood caller");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

pub fn figures(p: &Params, rt: &Runtime, dir: &std::path::Path, rep: &mut Report) {
    let (Some(redis), Some(pg_url)) = gatehouse_benches::services::urls() else {
        rep.note(
            "figure 11, the outbox: skipped; it needs Redis and PostgreSQL \
             (`source .ci/services`, or GATEHOUSE_BENCH_REDIS_URL and GATEHOUSE_BENCH_POSTGRES_URL)",
        );
        return;
    };
    rt.block_on(async {
        chaining(p, &redis, &pg_url, rep).await;
        lag(p, &redis, &pg_url, dir, rep).await;
    });
}

/// Chaining from the outbox against a plain batched `INSERT`, chunk by
/// chunk alternately; filling the outbox is not timed.
async fn chaining(p: &Params, redis: &str, pg_url: &str, rep: &mut Report) {
    let n = p.create_n * 5;
    let chunk = 5_000.min(n);
    let chained_url =
        gatehouse_benches::services::fresh_database(pg_url, "gh_bench_outbox_chain").await;
    let pg = PgAudit::connect(&chained_url).await.expect("connect");
    let plain =
        gatehouse_benches::services::plain_events_table(pg_url, "gh_bench_outbox_plain").await;
    let outbox = Outbox::connect(
        redis,
        &gatehouse_benches::services::fresh_prefix("chain"),
        DEFAULT_MAX_ENTRIES,
    )
    .await
    .expect("the bench Redis");
    let chainer = Chainer::new(outbox.clone(), pg, CHAIN_BATCH);
    let leader = chainer
        .lead()
        .await
        .expect("lead")
        .expect("the only chainer of its database leads");
    let (mut chained, mut inserted) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0usize;
    while done < n {
        let m = chunk.min(n - done);
        let events: Vec<NewEvent> = (done..done + m)
            .map(|i| sign_in_event(&format!("user{}", i % 50)))
            .collect();
        let mut sources = Vec::with_capacity(m);
        for e in &events {
            sources.push(outbox.push(e).await.expect("push to the outbox"));
        }
        let t = Instant::now();
        let moved = chainer.flush(&leader).await.expect("chain the outbox");
        chained += t.elapsed();
        assert_eq!(moved as usize, m, "every pushed entry chained");
        // The same rows, with records of the same size, in batches of the
        // chainer's size.
        let records: Vec<Vec<u8>> = events
            .iter()
            .map(|e| {
                gatehouse::store::chain::EventRecord {
                    kind: e.kind.code(),
                    link: [0; 8],
                    ip: e.ip,
                    user_agent: None,
                    session: None,
                    details: e.details.clone(),
                }
                .to_bytes()
            })
            .collect();
        for (b, part) in events.chunks(CHAIN_BATCH).enumerate() {
            let base = done + b * CHAIN_BATCH;
            let ids: Vec<i64> = (0..part.len()).map(|i| (base + i) as i64).collect();
            let users: Vec<String> = part.iter().map(|e| e.user.clone().unwrap()).collect();
            let kinds: Vec<i16> = part.iter().map(|e| i16::from(e.kind.code())).collect();
            let ips: Vec<Option<std::net::IpAddr>> = part.iter().map(|e| e.ip).collect();
            let recs = &records[b * CHAIN_BATCH..b * CHAIN_BATCH + part.len()];
            let srcs = &sources[b * CHAIN_BATCH..b * CHAIN_BATCH + part.len()];
            let t = Instant::now();
            plain
                .execute(
                    "INSERT INTO events SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], \
                     $3::SMALLINT[], $4::INET[], $5::BYTEA[], $6::TEXT[])",
                    &[&ids, &users, &kinds, &ips, &recs, &srcs],
                )
                .await
                .expect("plain insert");
            inserted += t.elapsed();
        }
        done += m;
    }
    rep.row(
        POSTGRES_CHAIN,
        format!("chaining {n} events from the Redis outbox, batches of {CHAIN_BATCH}"),
        Some(n as f64 / chained.as_secs_f64()),
        "plain batched INSERT, same rows and indexes",
        Some(n as f64 / inserted.as_secs_f64()),
        Unit::Rate("events".into()),
        Better::Higher,
        "chaining includes reading the stream and acknowledging it; both durable",
    );
}

/// Samples of the outbox's depth and lag every 50 ms until `stop`.
async fn sample(d: Distributed, stop: Arc<AtomicBool>) -> (Vec<u64>, Vec<u64>) {
    let (mut depth, mut lag) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        if let Ok(s) = d.outbox_status(now_ms()).await {
            depth.push(s.depth);
            lag.push(s.lag_ms);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (depth, lag)
}

/// The sign-in flood on one distributed node (its chainer running) and on
/// the redb backend, alternately; the outbox sampled during the first.
async fn lag(p: &Params, redis: &str, pg_url: &str, dir: &std::path::Path, rep: &mut Report) {
    let secs = p.append_secs * 5.0;
    let db = gatehouse_benches::services::fresh_database(pg_url, "gh_bench_outbox_lag").await;
    let config = DistributedConfig::new(redis, db)
        .with_prefix(gatehouse_benches::services::fresh_prefix("lag"));
    let (d, task) = Distributed::open(&config)
        .await
        .expect("the bench services");
    let (redb, redb_task) = Backend::connect(&BackendConfig::redb(dir.join("outbox-lag.redb")))
        .await
        .unwrap();
    let redb = Arc::new(redb);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(d.clone(), stop.clone()));
    let on_distributed = flood(Arc::new(d.clone()), secs).await;
    stop.store(true, Ordering::Relaxed);
    let (mut depths, mut lags) = sampler.await.unwrap();
    // What waits when the flood ends, and how long until it is chained.
    let t = Instant::now();
    loop {
        match d.outbox_status(now_ms()).await {
            Ok(s) if s.depth == 0 => break,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        assert!(t.elapsed() < Duration::from_secs(600), "the outbox drains");
    }
    let drain = t.elapsed();
    let on_redb = flood(redb.clone(), secs).await;
    depths.sort_unstable();
    lags.sort_unstable();
    let q = |v: &[u64], f: f64| nearest_rank(v, f).unwrap_or(0) as f64;
    rep.row(
        POSTGRES_CHAIN,
        format!("sign-ins (session + login.success), {CALLERS} callers, {secs:.0} s"),
        Some(on_distributed),
        "redb backend, same flood",
        Some(on_redb),
        Unit::Rate("sign-ins".into()),
        Better::Higher,
        "one node; its chainer runs beside the flood",
    );
    rep.row(
        POSTGRES_CHAIN,
        "outbox lag during that flood, p50 (age of the oldest waiting entry)",
        Some(q(&lags, 0.5) * 1000.0),
        "-",
        None,
        Unit::Micros,
        Better::Lower,
        format!(
            "p99 {:.0} ms, max {:.0} ms; depth p50 {:.0}, max {:.0}; {} samples every 50 ms; \
             drained {:.0} ms after the flood",
            q(&lags, 0.99),
            q(&lags, 1.0),
            q(&depths, 0.5),
            q(&depths, 1.0),
            lags.len(),
            drain.as_secs_f64() * 1000.0
        ),
    );
    task.shutdown().await.ok();
    drop(redb);
    redb_task.shutdown().await.ok();
}
