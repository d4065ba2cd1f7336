//! Figures 4 and 5: sessions. Bulk create, validate by token, create and
//! revoke through the writers with 64 concurrent callers (figure 4), then
//! the expiry sweep with a reader validating live sessions beside it
//! (figure 5); gatehouse and SQLite each hold the same sessions.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{
    Methods, NewSession, Op, OpOutput, RevokeReason, SessionToken, Writer, WriterConfig,
};
use gatehouse_benches::figure::{SESSIONS, SWEEP};
use gatehouse_benches::report::{fmt_us, short};
use gatehouse_benches::stats::{Better, sample, sample2};
use tokio::runtime::Runtime;

use crate::Params;
use crate::data::Rng;
use crate::loops::{Job, fixed_loop, open_store, progress, validate_until};
use crate::report::{Report, Unit};
use crate::sqlite::{self, Sql, SqlOp, SqlOut, SqlWriter, Sync as SqlSync};

const T0_MS: u64 = 1_800_000_000_000;
const MAX_PER_USER: usize = 20;

fn new_session(i: usize, users: usize, expiring: bool) -> NewSession {
    let created = T0_MS - 600_000 + (i as u64 % 300_000);
    NewSession {
        user: format!("s{:06}", i % users),
        remember_me: !expiring,
        idle_ttl_ms: 30 * 60_000,
        absolute_ttl_ms: if expiring {
            12 * 3_600_000
        } else {
            30 * 86_400_000
        },
        max_per_user: MAX_PER_USER,
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, (i >> 8) as u8, i as u8))),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0".into()),
        now_ms: created,
        methods: Methods::PASSWORD,
    }
}

pub fn figures(p: &Params, rt: &Runtime, dir: &Path, rep: &mut Report) {
    let n_exp = p.sessions_expiring;
    let n_live = p.sessions_live;
    let total = n_exp + n_live;
    let users = (total / 5).max(1);
    let store = open_store(&dir.join("sessions.redb"));
    let mut sql = Sql::open(&dir.join("sessions.sqlite"), SqlSync::Full);

    // Fill: live sessions are every 11th, so both kinds spread over users.
    progress(format!(
        "filling {} sessions ({} expiring, {} live)",
        short(total),
        short(n_exp),
        short(n_live)
    ));
    let is_live =
        |i: usize| n_live > 0 && i.is_multiple_of(total / n_live) && i / (total / n_live) < n_live;
    let mut gh_exp = Vec::with_capacity(n_exp);
    let mut gh_live = Vec::with_capacity(n_live);
    let mut sql_exp = Vec::with_capacity(n_exp);
    let mut sql_live = Vec::with_capacity(n_live);
    let (mut gh_t, mut sql_t) = (Duration::ZERO, Duration::ZERO);
    let mut i = 0;
    while i < total {
        let n = 1_000.min(total - i);
        let news: Vec<(bool, NewSession)> = (i..i + n)
            .map(|k| (is_live(k), new_session(k, users, !is_live(k))))
            .collect();
        let ops: Vec<Op> = news
            .iter()
            .map(|(_, s)| Op::CreateSession(s.clone()))
            .collect();
        let t = Instant::now();
        let res = store.apply_batch(ops);
        gh_t += t.elapsed();
        for ((live, _), r) in news.iter().zip(res) {
            match r.expect("create") {
                OpOutput::Created(c) => {
                    assert!(c.evicted.is_empty());
                    if *live {
                        gh_live.push(c.token)
                    } else {
                        gh_exp.push(c.token)
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let t = Instant::now();
        sql.begin();
        for (live, s) in &news {
            let tok = sql.create_session(s).expect("create");
            if *live {
                sql_live.push(tok)
            } else {
                sql_exp.push(tok)
            }
        }
        sql.commit();
        sql_t += t.elapsed();
        i += n;
    }
    rep.row(
        SESSIONS,
        format!(
            "session create, bulk 1,000 per commit (0 to {})",
            short(total)
        ),
        Some(total as f64 / gh_t.as_secs_f64()),
        "SQLite FULL, 1,000 per transaction",
        Some(total as f64 / sql_t.as_secs_f64()),
        Unit::Rate("sessions".into()),
        Better::Higher,
        "each create also checks the user's cap and appends a session.created event",
    );

    // Validate at T0: every session live.
    progress(format!(
        "figure {SESSIONS}: validate at {} live sessions",
        short(total)
    ));
    let mut rng = Rng::new(9);
    let picks: Vec<usize> = (0..p.validate_iters)
        .map(|_| rng.below(total as u64) as usize)
        .collect();
    let gh_tok = |k: usize| {
        if k < n_live {
            &gh_live[k]
        } else {
            &gh_exp[k - n_live]
        }
    };
    let sql_tok = |k: usize| {
        if k < n_live {
            &sql_live[k]
        } else {
            &sql_exp[k - n_live]
        }
    };
    for &k in picks.iter().take(1_000) {
        assert!(store.session(gh_tok(k), T0_MS).expect("validate").is_some());
        assert!(sql.session(sql_tok(k), T0_MS).expect("validate").is_some());
    }
    let (gh_v, sq_v) = sample2(
        picks.len(),
        |i| store.session(gh_tok(picks[i]), T0_MS).expect("validate"),
        |i| sql.session(sql_tok(picks[i]), T0_MS).expect("validate"),
    );
    // One thread back to back: the rate is the inverse of the mean latency.
    let gh_rate = 1e6 / gh_v.mean_us;
    let sq_rate = 1e6 / sq_v.mean_us;
    let lbl = short(total);
    let scale = if total < 1_000_000 {
        " (quick mode: 1M in --full)"
    } else {
        ""
    };
    rep.row(
        SESSIONS,
        format!("validate by token, one thread, {lbl} live sessions{scale}"),
        Some(gh_rate),
        "SQLite point query",
        Some(sq_rate),
        Unit::Rate("validations".into()),
        Better::Higher,
        "includes SHA-256 of the token",
    );
    rep.row(
        SESSIONS,
        format!("validate by token p99, {lbl} live sessions"),
        Some(gh_v.p99_us),
        "SQLite point query",
        Some(sq_v.p99_us),
        Unit::Micros,
        Better::Lower,
        format!(
            "p50 gatehouse {}, SQLite {}",
            fmt_us(gh_v.p50_us),
            fmt_us(sq_v.p50_us)
        ),
    );

    // Create and revoke through the writers, 64 concurrent callers.
    const CONC: usize = 64;
    let (w, task) = Writer::spawn(store.clone(), WriterConfig::default());
    let (sw, sh) = SqlWriter::spawn(sql, 1_024);
    progress(format!(
        "figure {SESSIONS}: create and revoke {} sessions, {CONC} callers",
        short(p.create_n)
    ));
    let base = total;
    let job: Job<SessionToken> = {
        let w = w.clone();
        Arc::new(move |k| {
            let w = w.clone();
            Box::pin(async move {
                let mut s = new_session(base + k, users, false);
                s.now_ms = T0_MS;
                w.create_session(s).await.expect("create").token
            })
        })
    };
    let (gh_new, gh_c_el, gh_c_lat) = fixed_loop(rt, CONC, p.create_n, job);
    let job: Job<[u8; 32]> = {
        let sw = sw.clone();
        Arc::new(move |k| {
            let sw = sw.clone();
            Box::pin(async move {
                let mut s = new_session(base + k, users, false);
                s.now_ms = T0_MS;
                match sw.submit(SqlOp::Create(s)).await {
                    SqlOut::Created(t) => t,
                    other => panic!("unexpected {other:?}"),
                }
            })
        })
    };
    let (sql_new, sql_c_el, sql_c_lat) = fixed_loop(rt, CONC, p.create_n, job);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    rep.row(
        SESSIONS,
        format!("session create via writer, {CONC} concurrent callers"),
        Some(rate(p.create_n, gh_c_el)),
        "SQLite FULL, batching writer",
        Some(rate(p.create_n, sql_c_el)),
        Unit::Rate("sessions".into()),
        Better::Higher,
        format!(
            "p99 gatehouse {}, SQLite {}",
            fmt_us(gh_c_lat.p99_us),
            fmt_us(sql_c_lat.p99_us)
        ),
    );

    let gh_new = Arc::new(gh_new);
    let job: Job<()> = {
        let w = w.clone();
        let toks = gh_new.clone();
        Arc::new(move |k| {
            let w = w.clone();
            let hash = toks[k].hash();
            Box::pin(async move {
                let out = w
                    .submit(Op::RevokeByToken {
                        hash,
                        reason: RevokeReason::Logout,
                        ip: None,
                        now_ms: T0_MS,
                    })
                    .await
                    .expect("revoke");
                assert!(matches!(out, OpOutput::RevokedOne(Some(_))));
            })
        })
    };
    let (_, gh_r_el, _) = fixed_loop(rt, CONC, gh_new.len(), job);
    let sql_new = Arc::new(sql_new);
    let job: Job<()> = {
        let sw = sw.clone();
        let toks = sql_new.clone();
        Arc::new(move |k| {
            let sw = sw.clone();
            let hash = sqlite::sha256(&toks[k]);
            Box::pin(async move {
                assert!(matches!(
                    sw.submit(SqlOp::Revoke(hash, T0_MS)).await,
                    SqlOut::Revoked(true)
                ));
            })
        })
    };
    let (_, sql_r_el, _) = fixed_loop(rt, CONC, sql_new.len(), job);
    rep.row(
        SESSIONS,
        format!("session revoke by token via writer, {CONC} concurrent callers"),
        Some(rate(gh_new.len(), gh_r_el)),
        "SQLite FULL, batching writer",
        Some(rate(sql_new.len(), sql_r_el)),
        Unit::Rate("sessions".into()),
        Better::Higher,
        "each revoke also appends a logout event",
    );

    // Figure 5: sweep every expired session at T1 while a reader validates
    // live sessions.
    let t1 = T0_MS + 3_600_000;
    progress(format!(
        "figure {SWEEP}: sweep {} expired sessions",
        short(n_exp)
    ));
    let live_picks: Vec<usize> = (0..20_000)
        .map(|_| rng.below(n_live.max(1) as u64) as usize)
        .collect();
    let gh_base = sample(live_picks.len(), |i| {
        store
            .session(&gh_live[live_picks[i]], t1)
            .expect("validate")
    });
    let gh_live = Arc::new(gh_live);
    let (gh_sweep, gh_during) = {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, stop, toks, picks) = (
                store.clone(),
                stop.clone(),
                gh_live.clone(),
                live_picks.clone(),
            );
            std::thread::spawn(move || {
                validate_until(&stop, &picks, |i| {
                    store.session(&toks[i], t1).expect("validate").is_some()
                })
            })
        };
        let t = Instant::now();
        let mut swept = 0;
        loop {
            let r = rt.block_on(w.sweep(t1, 1_000)).expect("sweep");
            swept += r.expired;
            if !r.more {
                break;
            }
        }
        let el = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(swept, n_exp, "gatehouse swept every expired session");
        (el, reader.join().expect("reader"))
    };
    drop(w);
    rt.block_on(task.shutdown()).expect("writer shutdown");

    let sql_read = Sql::open(&dir.join("sessions.sqlite"), SqlSync::Full);
    let sq_base = sample(live_picks.len(), |i| {
        sql_read
            .session(&sql_live[live_picks[i]], t1)
            .expect("validate")
    });
    let sql_live = Arc::new(sql_live);
    let (sql_sweep, sql_during) = {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, toks, picks) = (stop.clone(), sql_live.clone(), live_picks.clone());
            let path = dir.join("sessions.sqlite");
            std::thread::spawn(move || {
                let r = Sql::open(&path, SqlSync::Full);
                validate_until(&stop, &picks, |i| {
                    r.session(&toks[i], t1).expect("validate").is_some()
                })
            })
        };
        let t = Instant::now();
        let mut swept = 0;
        loop {
            match rt.block_on(sw.submit(SqlOp::Sweep(t1, 1_000))) {
                SqlOut::Swept(n, more) => {
                    swept += n;
                    if !more {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let el = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(swept, n_exp, "SQLite swept every expired session");
        (el, reader.join().expect("reader"))
    };
    drop(sw);
    drop(sh.join().expect("sqlite writer"));
    drop(sql_read);

    let lbl = short(n_exp);
    let scale = if n_exp < 1_000_000 {
        " (quick mode: 1M in --full)"
    } else {
        ""
    };
    rep.row(
        SWEEP,
        format!("sweep {lbl} expired sessions, 1,000 per commit, total{scale}"),
        Some(gh_sweep.as_secs_f64() * 1e6),
        "SQLite FULL, same batches",
        Some(sql_sweep.as_secs_f64() * 1e6),
        Unit::Micros,
        Better::Lower,
        "each removal also appends a session.expired event",
    );
    rep.row(
        SWEEP,
        "validate p99 of live sessions during the sweep",
        Some(gh_during.p99_us),
        "SQLite (reader connection)",
        Some(sql_during.p99_us),
        Unit::Micros,
        Better::Lower,
        format!(
            "idle p99 gatehouse {}, SQLite {}; {} / {} samples",
            fmt_us(gh_base.p99_us),
            fmt_us(sq_base.p99_us),
            gh_during.n,
            sql_during.n
        ),
    );
    rep.row(
        SWEEP,
        "validate p50 of live sessions during the sweep",
        Some(gh_during.p50_us),
        "SQLite (reader connection)",
        Some(sql_during.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    drop(store);
}
