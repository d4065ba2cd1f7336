//! Figure 6: `GET /auth/verify` with a valid session cookie under load,
//! against a plain axum handler returning a constant, and `/healthz` on the
//! same gatehouse stack (a route that reads no session).

use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::VERIFY;
use gatehouse_benches::http_client::{Conn, get_req, login};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::ratio;
use gatehouse_benches::wrk::{self, CONNECTIONS, THREADS, load};
use serde_json::{Value, json};

use crate::servers::{cheap, config_text, start_gatehouse, start_plain};
use crate::{PASSWORD, Params, line};

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    eprintln!(
        "figure {VERIFY}: /auth/verify vs a plain axum handler ({} s each)",
        p.load_secs
    );
    if !wrk::available() {
        eprintln!(
            "  wrk not found; install it with `apt-get install -y wrk` for the reference figures. \
             Using the built-in client ({CONNECTIONS} keep-alive connections)."
        );
    }
    let hash = hash_password(PASSWORD, &cheap()).expect("hash");
    let gh = start_gatehouse(&config_text(&hash, true, "", "")).await;
    let cookie = login(gh.addr, "alice", PASSWORD).await;
    // Sanity: the cookie is accepted.
    let mut c = Conn::new(gh.addr);
    let st = c
        .send(&get_req("/auth/verify", Some(&cookie)))
        .await
        .expect("verify request");
    assert_eq!(st, 200, "verify with the bench cookie: {}", c.head);
    let (plain_addr, plain_stop) = start_plain().await;

    // Warm up both, then measure one after the other.
    let _ = load(gh.addr, "/auth/verify", &cookie, 1).await;
    let g = load(gh.addr, "/auth/verify", &cookie, p.load_secs).await;
    let h = load(gh.addr, "/healthz", &cookie, p.load_secs).await;
    let _ = load(plain_addr, "/auth/verify", &cookie, 1).await;
    let b = load(plain_addr, "/auth/verify", &cookie, p.load_secs).await;
    let _ = plain_stop.send(());
    gh.stop().await;

    let tool = g.tool;
    lines.push(line(
        VERIFY,
        format!(
            "verify req/s ({tool}, {THREADS} threads, {CONNECTIONS} conns, {} s)",
            p.load_secs
        ),
        format!("{:.0}", g.rps),
        format!("{:.0} (plain axum)", b.rps),
        ratio(g.rps, b.rps),
    ));
    lines.push(line(
        VERIFY,
        "/healthz req/s (same gatehouse stack, no session read)",
        format!("{:.0}", h.rps),
        format!("{:.0} (plain axum)", b.rps),
        ratio(h.rps, b.rps),
    ));
    lines.push(line(
        VERIFY,
        "verify latency p50",
        fmt_us(g.p50_us),
        fmt_us(b.p50_us),
        ratio(g.p50_us, b.p50_us),
    ));
    lines.push(line(
        VERIFY,
        "verify latency p99",
        fmt_us(g.p99_us),
        fmt_us(b.p99_us),
        ratio(g.p99_us, b.p99_us),
    ));
    eprintln!(
        "  verify {:.0} req/s p99 {} | plain {:.0} req/s p99 {}",
        g.rps,
        fmt_us(g.p99_us),
        b.rps,
        fmt_us(b.p99_us)
    );
    json!({
        "tool": tool, "secs": p.load_secs, "threads": THREADS, "connections": CONNECTIONS,
        "verify": {"rps": g.rps, "p50_us": g.p50_us, "p99_us": g.p99_us},
        "plain": {"rps": b.rps, "p50_us": b.p50_us, "p99_us": b.p99_us},
        "healthz": {"rps": h.rps, "p50_us": h.p50_us, "p99_us": h.p99_us},
        "ratio_rps": g.rps / b.rps,
    })
}
