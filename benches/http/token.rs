//! Figure 10: `GET /auth/verify` with `Authorization: Bearer <access token>`
//! against the same check with the session cookie, on one server in the
//! same run (target: at least 0.9x). Runs alternate, cookie then token
//! twice, so that a drift of the shared machine weighs on both alike.

use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::VERIFY_TOKEN;
use gatehouse_benches::http_client::{Conn, get_req_with, login};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::ratio;
use gatehouse_benches::wrk::{CONNECTIONS, THREADS, load, load_with};
use serde_json::{Value, json};

use crate::servers::{cheap, config_text, start_gatehouse};
use crate::{PASSWORD, Params, line};

/// Creates an access token for the session `cookie`; returns it.
async fn make_token(addr: std::net::SocketAddr, cookie: &str) -> String {
    let body = json!({"name": "bench"}).to_string();
    let req = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: gatehouse_session={cookie}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut c = Conn::new(addr);
    let st = c.send(req.as_bytes()).await.expect("token request");
    assert_eq!(st, 201, "creating the bench token: {}", c.head);
    let v: Value = serde_json::from_slice(&c.body).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    eprintln!(
        "figure {VERIFY_TOKEN}: /auth/verify with a Bearer token vs the session cookie ({} s each, twice)",
        p.load_secs
    );
    let hash = hash_password(PASSWORD, &cheap()).expect("hash");
    let gh = start_gatehouse(&config_text(&hash, true, "", "")).await;
    let cookie = login(gh.addr, "alice", PASSWORD).await;
    let token = make_token(gh.addr, &cookie).await;
    let bearer = format!("Authorization: Bearer {token}");
    // Sanity: the token alone is accepted, as alice.
    let mut c = Conn::new(gh.addr);
    let st = c
        .send(&get_req_with("/auth/verify", None, &[&bearer]))
        .await
        .expect("verify request");
    assert_eq!(st, 200, "verify with the bench token: {}", c.head);
    assert_eq!(c.header("remote-user"), Some("alice"), "{}", c.head);

    let _ = load(gh.addr, "/auth/verify", &cookie, 1).await;
    let _ = load_with(gh.addr, "/auth/verify", "", &[&bearer], 1).await;
    let mut cookie_runs = Vec::new();
    let mut token_runs = Vec::new();
    for _ in 0..2 {
        cookie_runs.push(load(gh.addr, "/auth/verify", &cookie, p.load_secs).await);
        token_runs.push(load_with(gh.addr, "/auth/verify", "", &[&bearer], p.load_secs).await);
    }
    gh.stop().await;
    let mean = |runs: &[gatehouse_benches::wrk::Load],
                f: fn(&gatehouse_benches::wrk::Load) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len() as f64
    };
    let (c_rps, t_rps) = (mean(&cookie_runs, |l| l.rps), mean(&token_runs, |l| l.rps));
    let (c_p99, t_p99) = (
        mean(&cookie_runs, |l| l.p99_us),
        mean(&token_runs, |l| l.p99_us),
    );
    let tool = cookie_runs[0].tool;
    lines.push(line(
        VERIFY_TOKEN,
        format!(
            "verify req/s with Bearer token vs cookie ({tool}, {THREADS} threads, {CONNECTIONS} conns, 2 x {} s; target >= 0.9x)",
            p.load_secs
        ),
        format!("{t_rps:.0}"),
        format!("{c_rps:.0} (session cookie)"),
        ratio(t_rps, c_rps),
    ));
    lines.push(line(
        VERIFY_TOKEN,
        "verify latency p99, Bearer token vs cookie",
        fmt_us(t_p99),
        fmt_us(c_p99),
        ratio(c_p99, t_p99),
    ));
    eprintln!(
        "  token {t_rps:.0} req/s p99 {} | cookie {c_rps:.0} req/s p99 {}",
        fmt_us(t_p99),
        fmt_us(c_p99)
    );
    json!({
        "tool": tool, "secs": p.load_secs, "threads": THREADS, "connections": CONNECTIONS,
        "token": token_runs.iter().map(|l| json!({"rps": l.rps, "p50_us": l.p50_us, "p99_us": l.p99_us})).collect::<Vec<_>>(),
        "cookie": cookie_runs.iter().map(|l| json!({"rps": l.rps, "p50_us": l.p50_us, "p99_us": l.p99_us})).collect::<Vec<_>>(),
        "ratio_rps": t_rps / c_rps,
    })
}
