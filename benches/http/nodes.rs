//! Figure 13: several nodes. `GET /auth/verify` on a node of the
//! distributed backend (Redis and PostgreSQL, answered from the node's
//! cache) against a node on redb, one after the other, twice; two
//! distributed nodes loaded together against one; and sign-ins per second
//! (cheap argon2, so that the store is what is measured) on redb, on one
//! distributed node and on two together; and how long after a sign-out
//! on one node the other refuses the session. Needs Redis and PostgreSQL:
//! `GATEHOUSE_BENCH_REDIS_URL` and `GATEHOUSE_BENCH_POSTGRES_URL`, or the
//! `GATEHOUSE_TEST_*` URLs that `source .ci/services` exports; skipped with
//! a message without them. Every server runs in this process, on the
//! machine's cores with the load generator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::SEVERAL_NODES;
use gatehouse_benches::http_client::{Conn, clients, closed_load, get_req, login, login_req};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::ratio;
use gatehouse_benches::wrk::{CONNECTIONS, Load, load};
use serde_json::{Value, json};

use crate::servers::{cheap, config_text, start_beside, start_gatehouse};
use crate::{PASSWORD, Params, line};

/// Concurrent sign-in connections per node.
const SIGN_IN_CONNS: usize = 16;

/// Revocations measured from B to A.
const REVOCATIONS: usize = 50;

/// Alternating rounds of the verify comparison.
const ROUNDS: usize = 2;

/// Sign-ins acknowledged per second on `addrs` loaded together (summed),
/// and the share of answers that were sign-ins.
async fn sign_ins(addrs: &[SocketAddr], secs: u64) -> (f64, f64) {
    let mut statuses = std::collections::BTreeMap::new();
    // Spawned at once, so that the nodes are loaded together.
    let runs: Vec<_> = addrs
        .iter()
        .map(|&a| {
            clients().spawn(closed_load(
                a,
                login_req("alice", PASSWORD),
                SIGN_IN_CONNS,
                secs,
                None,
            ))
        })
        .collect();
    let (mut per_s, mut signed, mut answers) = (0.0, 0.0, 0.0);
    for r in runs {
        let r = r.await.expect("a sign-in load");
        let n = r.lat_us.len() as f64;
        let ok = *r.by_status.get(&200).unwrap_or(&0) as f64;
        per_s += r.rps * ok / n.max(1.0);
        signed += ok;
        answers += n;
        for (k, v) in r.by_status {
            *statuses.entry(k).or_insert(0u64) += v;
        }
    }
    eprintln!(
        "  sign-in answers on {} node(s) by status: {statuses:?}",
        addrs.len()
    );
    (per_s, signed / answers.max(1.0))
}

/// Revocations measured: a session signed in on A and checked twice on A
/// (the second answer from A's cache) is signed out on B; the time from
/// B's answer to A's first refusal, polling A without pause. Sorted.
async fn revocations(a: SocketAddr, b: SocketAddr) -> Vec<f64> {
    let mut delays = Vec::with_capacity(REVOCATIONS);
    let (mut on_a, mut on_b) = (Conn::new(a), Conn::new(b));
    for _ in 0..REVOCATIONS {
        let cookie = login(a, "alice", PASSWORD).await;
        let verify = get_req("/auth/verify", Some(&cookie));
        for _ in 0..2 {
            assert_eq!(on_a.send(&verify).await.expect("verify on A"), 200);
        }
        let logout = format!(
            "POST /logout HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: gatehouse_session={cookie}\r\n\
             Accept: application/json\r\nContent-Length: 0\r\n\r\n"
        );
        let st = on_b.send(logout.as_bytes()).await.expect("sign-out on B");
        assert!((200..400).contains(&st), "sign-out on B: {}", on_b.head);
        let t = Instant::now();
        loop {
            let st = on_a.send(&verify).await.expect("verify on A");
            if st == 401 {
                break;
            }
            assert_eq!(st, 200, "verify on A: {}", on_a.head);
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "A never refused a session signed out on B"
            );
        }
        delays.push(t.elapsed().as_secs_f64() * 1e6);
    }
    delays.sort_by(f64::total_cmp);
    delays
}

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    let (Some(redis), Some(pg)) = gatehouse_benches::services::urls() else {
        eprintln!(
            "figure {SEVERAL_NODES}: skipped; it needs Redis and PostgreSQL (`source .ci/services`, \
             or GATEHOUSE_BENCH_REDIS_URL and GATEHOUSE_BENCH_POSTGRES_URL)"
        );
        return json!({"skipped": "no Redis or PostgreSQL"});
    };
    eprintln!(
        "figure {SEVERAL_NODES}: several nodes on Redis and PostgreSQL ({} s per run)",
        p.load_secs
    );
    let hash = hash_password(PASSWORD, &cheap()).expect("hash");
    let db = gatehouse_benches::services::fresh_database(&pg, "gh_bench_nodes").await;
    let prefix = format!("gh_bench_nodes_{}", std::process::id());
    // `GATEHOUSE_BENCH_REDIS_DURABILITY=everysec` measures a Redis that
    // fsyncs its AOF once a second (it must be configured so).
    let durability = std::env::var("GATEHOUSE_BENCH_REDIS_DURABILITY")
        .map(|d| format!("redis_durability = \"{d}\"\n"))
        .unwrap_or_default();
    let storage = format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"{redis}\"\n\
         postgres_url = \"{db}\"\nprefix = \"{prefix}\"\n{durability}"
    );
    // Sign-ins wait for a hashing slot rather than being turned away (503)
    // past the default queue of 8, and attempts in flight stay below the
    // failure limit (each counts until it succeeds), so that every
    // connection signs in.
    let limits = format!(
        "[regulation]\nmax_failures = 1000000\n\n[limits]\nhash_queue = {}\n",
        2 * SIGN_IN_CONNS
    );
    let single = start_gatehouse(&config_text(&hash, true, "", &limits)).await;
    let both_sections = format!("{storage}\n{limits}");
    let a = start_gatehouse(&config_text(&hash, true, "", &both_sections)).await;
    let b = start_beside(Some(&a), &config_text(&hash, true, "", &both_sections)).await;
    let single_cookie = login(single.addr, "alice", PASSWORD).await;
    let cookie = login(a.addr, "alice", PASSWORD).await;
    for addr in [a.addr, b.addr] {
        let mut c = Conn::new(addr);
        let st = c
            .send(&get_req("/auth/verify", Some(&cookie)))
            .await
            .expect("verify request");
        assert_eq!(st, 200, "node A's session on {addr}: {}", c.head);
    }

    // One node: redb and distributed alternately, after a warm-up of each.
    let _ = load(single.addr, "/auth/verify", &single_cookie, 1).await;
    let _ = load(a.addr, "/auth/verify", &cookie, 1).await;
    let (mut on_redb, mut on_dist): (Vec<Load>, Vec<Load>) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        on_redb.push(load(single.addr, "/auth/verify", &single_cookie, p.load_secs).await);
        on_dist.push(load(a.addr, "/auth/verify", &cookie, p.load_secs).await);
    }
    let mean = |v: &[Load], f: fn(&Load) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (r_rps, d_rps) = (mean(&on_redb, |l| l.rps), mean(&on_dist, |l| l.rps));
    let (r_p99, d_p99) = (mean(&on_redb, |l| l.p99_us), mean(&on_dist, |l| l.p99_us));

    // Two distributed nodes loaded together, each with the load of one.
    let _ = load(b.addr, "/auth/verify", &cookie, 1).await;
    let (la, lb) = tokio::join!(
        load(a.addr, "/auth/verify", &cookie, p.load_secs),
        load(b.addr, "/auth/verify", &cookie, p.load_secs)
    );
    let both = la.rps + lb.rps;

    let revoked = revocations(a.addr, b.addr).await;

    // Sign-ins per second.
    let secs = p.load_secs;
    let (s_redb, share_redb) = sign_ins(&[single.addr], secs).await;
    let (s_one, share_one) = sign_ins(&[a.addr], secs).await;
    let (s_two, share_two) = sign_ins(&[a.addr, b.addr], secs).await;
    single.stop().await;
    a.stop().await;
    b.stop().await;

    let tool = on_dist[0].tool;
    lines.push(line(
        SEVERAL_NODES,
        format!(
            "verify req/s, one distributed node against redb ({tool}, {CONNECTIONS} conns, \
             {ROUNDS}x{} s alternated; target >= 0.8x)",
            p.load_secs
        ),
        format!("{d_rps:.0}"),
        format!("{r_rps:.0} (redb node)"),
        ratio(d_rps, r_rps),
    ));
    lines.push(line(
        SEVERAL_NODES,
        "verify latency p99, one distributed node against redb",
        fmt_us(d_p99),
        fmt_us(r_p99),
        ratio(d_p99, r_p99),
    ));
    lines.push(line(
        SEVERAL_NODES,
        "verify req/s, two distributed nodes loaded together (sum)",
        format!("{both:.0} ({:.0} + {:.0})", la.rps, lb.rps),
        format!("{d_rps:.0} (one distributed node)"),
        ratio(both, d_rps),
    ));
    lines.push(line(
        SEVERAL_NODES,
        format!("sign-ins/s, one distributed node ({SIGN_IN_CONNS} conns, cheap argon2)"),
        format!("{s_one:.0}"),
        format!("{s_redb:.0} (redb node)"),
        ratio(s_one, s_redb),
    ));
    lines.push(line(
        SEVERAL_NODES,
        format!("sign-ins/s, two distributed nodes together ({SIGN_IN_CONNS} conns each)"),
        format!("{s_two:.0}"),
        format!("{s_one:.0} (one distributed node)"),
        ratio(s_two, s_one),
    ));
    let q = |f: f64| gatehouse_benches::stats::nearest_rank(&revoked, f).unwrap_or(0.0);
    lines.push(line(
        SEVERAL_NODES,
        format!(
            "a sign-out on B refused on A, p50 of {REVOCATIONS} (aim: within 1 s; max {})",
            fmt_us(q(1.0))
        ),
        fmt_us(q(0.5)),
        "1 s (the issue's aim)",
        None,
    ));
    eprintln!(
        "  verify: distributed {d_rps:.0} req/s p99 {} | redb {r_rps:.0} req/s p99 {} | two nodes {both:.0}",
        fmt_us(d_p99),
        fmt_us(r_p99)
    );
    eprintln!(
        "  sign-ins/s: redb {s_redb:.0} ({:.0}% signed in) | one node {s_one:.0} ({:.0}%) | \
         two nodes {s_two:.0} ({:.0}%)",
        share_redb * 100.0,
        share_one * 100.0,
        share_two * 100.0
    );
    json!({
        "secs": p.load_secs, "rounds": ROUNDS, "tool": tool,
        "verify_redb": on_redb.iter().map(|l| json!({"rps": l.rps, "p50_us": l.p50_us, "p99_us": l.p99_us})).collect::<Vec<_>>(),
        "verify_distributed": on_dist.iter().map(|l| json!({"rps": l.rps, "p50_us": l.p50_us, "p99_us": l.p99_us})).collect::<Vec<_>>(),
        "verify_two_nodes": {"a": la.rps, "b": lb.rps},
        "revocation_us": {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)},
        "sign_ins_per_s": {"redb": s_redb, "one_node": s_one, "two_nodes": s_two},
        "sign_in_share": {"redb": share_redb, "one_node": share_one, "two_nodes": share_two},
    })
}
