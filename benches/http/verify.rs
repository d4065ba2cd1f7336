//! Figure 6: `GET /auth/verify` with a valid session cookie under load,
//! against a plain axum handler returning a constant, and `/healthz` on the
//! same gatehouse stack (a route that reads no session).

use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::VERIFY;
use gatehouse_benches::http_client::{Conn, get_req, get_req_with, login};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::ratio;
use gatehouse_benches::wrk::{self, CONNECTIONS, THREADS, load, load_with};
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

    // Access rules: 100 rules, the request matching only the last, against
    // the same server with no rules, both asked about the same original URL
    // by a trusted proxy.
    // As Caddy, Traefik and the shipped nginx file send it.
    let original = [
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: app99.example.com",
        "X-Forwarded-Uri: /notes?x=1",
    ];
    let trusted = "trusted_proxies = [\"127.0.0.1\"]";
    let none = start_gatehouse(&config_text(&hash, true, trusted, "")).await;
    let none_cookie = login(none.addr, "alice", PASSWORD).await;
    let ruled = start_gatehouse(&config_text(&hash, true, trusted, &hundred_rules())).await;
    let ruled_cookie = login(ruled.addr, "alice", PASSWORD).await;
    let mut c = Conn::new(ruled.addr);
    let st = c
        .send(&get_req_with(
            "/auth/verify",
            Some(&ruled_cookie),
            &original,
        ))
        .await
        .expect("verify request");
    assert_eq!(st, 200, "verify under the last rule: {}", c.head);
    let mut c = Conn::new(ruled.addr);
    let st = c
        .send(&get_req_with(
            "/auth/verify",
            Some(&ruled_cookie),
            &[
                "X-Forwarded-Method: GET",
                "X-Forwarded-Proto: https",
                "X-Forwarded-Host: app3.example.com",
                "X-Forwarded-Uri: /",
            ],
        ))
        .await
        .expect("verify request");
    assert_eq!(st, 403, "an earlier rule denies: {}", c.head);
    let _ = load_with(none.addr, "/auth/verify", &none_cookie, &original, 1).await;
    let n = load_with(
        none.addr,
        "/auth/verify",
        &none_cookie,
        &original,
        p.load_secs,
    )
    .await;
    let _ = load_with(ruled.addr, "/auth/verify", &ruled_cookie, &original, 1).await;
    let r = load_with(
        ruled.addr,
        "/auth/verify",
        &ruled_cookie,
        &original,
        p.load_secs,
    )
    .await;
    none.stop().await;
    ruled.stop().await;
    lines.push(line(
        VERIFY,
        "verify req/s, 100 rules, match on the last (target >= 0.9x of no rules)",
        format!("{:.0}", r.rps),
        format!("{:.0} (no rules)", n.rps),
        ratio(r.rps, n.rps),
    ));
    lines.push(line(
        VERIFY,
        "verify req/s, 100 rules, against the plain handler",
        format!("{:.0}", r.rps),
        format!("{:.0} (plain axum)", b.rps),
        ratio(r.rps, b.rps),
    ));
    eprintln!(
        "  100 rules {:.0} req/s p99 {} | no rules {:.0} req/s p99 {}",
        r.rps,
        fmt_us(r.p99_us),
        n.rps,
        fmt_us(n.p99_us)
    );

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
        "rules_100": {"rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us},
        "rules_none": {"rps": n.rps, "p50_us": n.p50_us, "p99_us": n.p99_us},
        "ratio_rules": r.rps / n.rps,
    })
}

/// 100 rules for `appN.example.com`, N = 0..99, of mixed shapes (paths,
/// methods, networks, subjects); only the last lets alice's request to
/// `app99.example.com` through.
fn hundred_rules() -> String {
    let mut s = String::new();
    for n in 0..99 {
        let extra = match n % 4 {
            0 => "paths = ['^/admin(/|$)', '^/api/v[0-9]+/secret']\n",
            1 => "methods = [\"POST\", \"DELETE\"]\n",
            2 => "networks = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
            _ => "subjects = [\"group:ops\", \"user:carol\"]\n",
        };
        let policy = if n == 3 { "deny" } else { "one_factor" };
        let extra = if n == 3 { "" } else { extra };
        s.push_str(&format!(
            "[[rules]]\ndomains = [\"app{n}.example.com\", \"*.app{n}.example.com\"]\n{extra}policy = \"{policy}\"\n\n"
        ));
    }
    s.push_str("[[rules]]\ndomains = [\"app99.example.com\"]\nsubjects = [\"user:alice\"]\npolicy = \"one_factor\"\n\n");
    s.push_str("[access]\ndefault_policy = \"deny\"\n");
    s
}
