//! Figure 14: the OpenID Connect provider, on one in-process server.
//!
//! - Code exchanges per second: codes obtained beforehand (`GET
//!   /oidc/authorize` with the session cookie, a client with implicit
//!   consent, PKCE S256), then `POST /oidc/token` (`authorization_code`,
//!   `client_secret_basic`) on 64 connections, each code once. The
//!   competitor is `/auth/verify` with the cookie on the same server in the
//!   same run. The server's CPU time per exchange is set beside one per
//!   authorization (a redb write of the code and its event, no signature)
//!   and a bare RS256 signature with the provider's own key type, timed in
//!   the same run.
//! - `userinfo` with a Bearer access token against `/auth/verify` with the
//!   cookie: same server, same load, alternated twice.
//! - Discovery and the JWKS, both served from memory, against the plain
//!   axum handler of figure 6.
//!
//! Codes live 60 s, so each round mints its codes and spends them at once;
//! the exchange stops early, at a fixed time after the first code was
//! minted, rather than present expired codes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse::oidc::keys::SigningKey;
use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::OIDC;
use gatehouse_benches::http_client::{Conn, get_req, get_req_with, login};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::{percentile_us, ratio, sample};
use gatehouse_benches::wrk::{CONNECTIONS, Load, THREADS, load, load_with};
use serde_json::{Value, json};

use crate::once::{Each, cpu_per, each_json, each_once, ok_rate, run_ns};
use crate::servers::{cheap, config_text, start_gatehouse, start_plain};
use crate::{PASSWORD, Params, line};

const CLIENT: &str = "bench";
const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const VERIFIER: &str = "bench-verifier-of-more-than-forty-three-characters-0123456789";
/// Rounds of each alternated comparison.
const ROUNDS: usize = 2;
/// An exchange round ends this long after its first code was minted, well
/// inside the codes' 60 s.
const CODE_BUDGET: Duration = Duration::from_secs(45);

/// The bench server's config: an issuer and one confidential client with
/// implicit consent; `max_failures` sets `[regulation]` (`None`: the
/// default). The client's attempts in flight count toward that limit, so
/// the throughput runs raise it out of reach, as figures 7 and 13 do.
fn config(hash: &str, max_failures: Option<u64>) -> String {
    let secret_hash = gatehouse::config::oidc::hash_secret(SECRET);
    let regulation = max_failures.map_or(String::new(), |m| {
        format!("[regulation]\nmax_failures = {m}\n")
    });
    let clients = format!(
        "[[oidc.clients]]\nid = \"{CLIENT}\"\nsecret_hash = \"{secret_hash}\"\n\
         redirect_uris = [\"{REDIRECT}\"]\nscopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n\
         consent = \"implicit\"\n\n{regulation}"
    );
    config_text(hash, true, "public_origin = \"http://127.0.0.1\"", &clients)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The authorization request every code comes from.
fn authorize_path() -> String {
    format!(
        "/oidc/authorize?client_id={CLIENT}&redirect_uri={}&response_type=code&state=st\
         &scope=openid+profile&code_challenge={}&code_challenge_method=S256",
        enc(REDIRECT),
        gatehouse::domain::oidc::pkce_s256(VERIFIER)
    )
}

/// `POST /oidc/token` for `code`, as the client with HTTP Basic.
fn exchange_req(code: &str) -> Vec<u8> {
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(code),
        enc(REDIRECT)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    format!(
        "POST /oidc/token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The code in the `Location` of an authorization answer.
fn code_of(c: &Conn) -> Option<String> {
    let to = url::Url::parse(c.header("location")?).ok()?;
    to.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

/// The access token of a token answer.
fn access_of(c: &Conn) -> Option<String> {
    let v: Value = serde_json::from_slice(&c.body).ok()?;
    v["access_token"].as_str().map(str::to_string)
}

/// The bench's exchange concurrency.
const EXCHANGE_CONNS: usize = CONNECTIONS;

/// One round of codes: `n` minted, then exchanged.
struct Round {
    mint: Each,
    exchange: Each,
}

async fn round(addr: SocketAddr, cookie: &str, n: usize) -> Round {
    let first = Instant::now();
    let deadline = first + CODE_BUDGET;
    let auth = get_req(&authorize_path(), Some(cookie));
    let mint = each_once(addr, vec![auth; n], EXCHANGE_CONNS, deadline, code_of).await;
    assert!(
        !mint.kept.is_empty(),
        "no code was minted: {:?}",
        mint.by_status
    );
    let reqs = mint.kept.iter().map(|c| exchange_req(c)).collect();
    let exchange = each_once(addr, reqs, EXCHANGE_CONNS, deadline, access_of).await;
    Round { mint, exchange }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

fn loads_json(runs: &[Load]) -> Value {
    json!(
        runs.iter()
            .map(|l| json!({"rps": l.rps, "p50_us": l.p50_us, "p99_us": l.p99_us}))
            .collect::<Vec<_>>()
    )
}

/// A bare RS256 signature of ID-token-sized claims with the provider's key
/// type, `n` times on this thread: the median wall time of one, and the
/// thread's CPU time per signature, in microseconds.
fn bare_signature_us(n: usize) -> (f64, f64) {
    let key = SigningKey::generate().expect("an RSA key");
    let claims = json!({
        "iss": "http://127.0.0.1", "sub": "dGhpcyBpcyBhIHN1YmplY3Q", "aud": CLIENT,
        "azp": CLIENT, "exp": 1_900_000_000u64, "iat": 1_800_000_000u64,
        "auth_time": 1_800_000_000u64, "sid": "c2Vzc2lvbi1pZA", "amr": ["pwd"],
        "acr": "urn:gatehouse:1fa", "preferred_username": "alice", "name": "alice",
    });
    let own = std::path::Path::new("/proc/thread-self/schedstat");
    let cpu0 = run_ns(own);
    let wall = sample(n, |_| key.sign("JWT", &claims).expect("sign")).p50_us;
    let cpu = match (cpu0, run_ns(own)) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e3 / n as f64,
        _ => f64::NAN,
    };
    (wall, cpu)
}

/// Checks the flow once: a code, its exchange, a replay refused, the
/// access token on `userinfo` as alice. Returns the access token.
async fn sanity(addr: SocketAddr, cookie: &str) -> String {
    let probe = round(addr, cookie, 1).await;
    assert_eq!(
        probe.exchange.by_status.get(&200),
        Some(&1),
        "one exchange: {:?}",
        probe.exchange.by_status
    );
    let mut c = Conn::new(addr);
    let st = c
        .send(&exchange_req(&probe.mint.kept[0]))
        .await
        .expect("token request");
    assert_eq!(st, 400, "a replayed code: {}", c.head);
    let access = round(addr, cookie, 1)
        .await
        .exchange
        .kept
        .pop()
        .expect("an access token");
    let st = c
        .send(&get_req_with(
            "/oidc/userinfo",
            None,
            &[&format!("Authorization: Bearer {access}")],
        ))
        .await
        .expect("userinfo request");
    assert_eq!(st, 200, "userinfo with the bench token: {}", c.head);
    let info: Value = serde_json::from_slice(&c.body).expect("userinfo JSON");
    assert_eq!(info["preferred_username"], "alice", "{info}");
    access
}

/// GETs `path` once and returns the body's length; the body must be JSON.
async fn document_len(addr: SocketAddr, path: &str) -> usize {
    let mut c = Conn::new(addr);
    let st = c
        .send(&get_req(path, None))
        .await
        .expect("document request");
    assert_eq!(st, 200, "{path}: {}", c.head);
    let _: Value = serde_json::from_slice(&c.body).expect("a JSON document");
    c.body.len()
}

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    let n = if p.full { 10_000 } else { 2_500 };
    eprintln!(
        "figure {OIDC}: OpenID Connect provider ({ROUNDS} rounds: verify {} s, {n} codes minted and exchanged, userinfo {} s)",
        p.load_secs, p.load_secs
    );
    let hash = hash_password(PASSWORD, &cheap()).expect("hash");
    let gh = start_gatehouse(&config(&hash, Some(1_000_000))).await;
    let cookie = login(gh.addr, "alice", PASSWORD).await;
    let access = sanity(gh.addr, &cookie).await;
    let bearer = format!("Authorization: Bearer {access}");

    // Warm up every path, then alternate: verify, codes, userinfo.
    let _ = load(gh.addr, "/auth/verify", &cookie, 1).await;
    let _ = load_with(gh.addr, "/oidc/userinfo", "", &[&bearer], 1).await;
    let _ = round(gh.addr, &cookie, n / 10).await;
    let mut verify_runs = Vec::new();
    let mut userinfo_runs = Vec::new();
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        verify_runs.push(load(gh.addr, "/auth/verify", &cookie, p.load_secs).await);
        rounds.push(round(gh.addr, &cookie, n).await);
        userinfo_runs.push(load_with(gh.addr, "/oidc/userinfo", "", &[&bearer], p.load_secs).await);
    }

    // Discovery and the JWKS against the plain handler, alternated.
    let disc_bytes = document_len(gh.addr, "/.well-known/openid-configuration").await;
    let jwks_bytes = document_len(gh.addr, "/oidc/jwks").await;
    let (plain_addr, plain_stop) = start_plain().await;
    let _ = load(plain_addr, "/auth/verify", "", 1).await;
    let _ = load(gh.addr, "/.well-known/openid-configuration", "", 1).await;
    let _ = load(gh.addr, "/oidc/jwks", "", 1).await;
    let (mut plain_runs, mut disc_runs, mut jwks_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain_runs.push(load(plain_addr, "/auth/verify", "", p.load_secs).await);
        disc_runs.push(
            load(
                gh.addr,
                "/.well-known/openid-configuration",
                "",
                p.load_secs,
            )
            .await,
        );
        jwks_runs.push(load(gh.addr, "/oidc/jwks", "", p.load_secs).await);
    }
    let _ = plain_stop.send(());
    gh.stop().await;

    // The same exchanges under the default `[regulation]`: the client's
    // attempts in flight count toward its failure limit.
    let regulated = start_gatehouse(&config(&hash, None)).await;
    let reg_cookie = login(regulated.addr, "alice", PASSWORD).await;
    let reg = round(regulated.addr, &reg_cookie, n / 5).await;
    regulated.stop().await;

    // A bare RS256 signature, off the async workers.
    let (sig_wall_us, sig_us) = tokio::task::spawn_blocking(move || bare_signature_us(n / 5))
        .await
        .expect("signature task");

    let tool = verify_runs[0].tool;
    let rps = |runs: &[Load]| mean(runs.iter().map(|l| l.rps));
    let p50 = |runs: &[Load]| mean(runs.iter().map(|l| l.p50_us));
    let p99 = |runs: &[Load]| mean(runs.iter().map(|l| l.p99_us));
    let (v_rps, u_rps) = (rps(&verify_runs), rps(&userinfo_runs));
    let ex_rps = mean(rounds.iter().map(|r| ok_rate(&r.exchange, 200)));
    let mint_rps = mean(rounds.iter().map(|r| ok_rate(&r.mint, 303)));
    let ex_p50 = mean(
        rounds
            .iter()
            .map(|r| percentile_us(&r.exchange.lat_us, 0.50)),
    );
    let ex_p99 = mean(
        rounds
            .iter()
            .map(|r| percentile_us(&r.exchange.lat_us, 0.99)),
    );
    let ex_cpu = mean(rounds.iter().map(|r| cpu_per(&r.exchange, 200)));
    let mint_cpu = mean(rounds.iter().map(|r| cpu_per(&r.mint, 303)));
    let not_ok: u64 = rounds
        .iter()
        .flat_map(|r| r.exchange.by_status.iter())
        .filter(|(s, _)| **s != 200)
        .map(|(_, c)| c)
        .sum();
    let unsent: usize = rounds.iter().map(|r| r.exchange.unsent).sum();

    lines.push(line(
        OIDC,
        format!(
            "code exchanges/s (POST /oidc/token, client_secret_basic, PKCE S256, {EXCHANGE_CONNS} conns, {ROUNDS} x {n} codes; {not_ok} not 200, {unsent} unsent)"
        ),
        format!("{ex_rps:.0}"),
        format!("{v_rps:.0} (/auth/verify, cookie, {tool})"),
        ratio(ex_rps, v_rps),
    ));
    lines.push(line(
        OIDC,
        "code exchange latency p50 / p99 (ratio: p99 against verify's)",
        format!("{} / {}", fmt_us(ex_p50), fmt_us(ex_p99)),
        format!(
            "{} / {}",
            fmt_us(p50(&verify_runs)),
            fmt_us(p99(&verify_runs))
        ),
        ratio(ex_p99, p99(&verify_runs)),
    ));
    lines.push(line(
        OIDC,
        "authorizations/s (GET /oidc/authorize with the cookie to a code: one redb write, no signature)",
        format!("{mint_rps:.0}"),
        format!("{v_rps:.0} (/auth/verify)"),
        ratio(mint_rps, v_rps),
    ));
    lines.push(line(
        OIDC,
        "server CPU per code exchange, against one per authorization",
        fmt_us(ex_cpu),
        format!("{} (authorization)", fmt_us(mint_cpu)),
        ratio(ex_cpu, mint_cpu),
    ));
    lines.push(line(
        OIDC,
        "bare RS256 signature of ID-token claims (SigningKey, AWS-LC, one thread): CPU each, against the server CPU of an exchange",
        format!("{} (wall p50 {})", fmt_us(sig_us), fmt_us(sig_wall_us)),
        format!("{} (exchange)", fmt_us(ex_cpu)),
        ratio(sig_us, ex_cpu),
    ));
    lines.push(line(
        OIDC,
        format!(
            "userinfo req/s with a Bearer token vs /auth/verify with the cookie ({tool}, {THREADS} threads, {CONNECTIONS} conns, {ROUNDS} x {} s, alternated)",
            p.load_secs
        ),
        format!("{u_rps:.0}"),
        format!("{v_rps:.0} (/auth/verify)"),
        ratio(u_rps, v_rps),
    ));
    lines.push(line(
        OIDC,
        "userinfo latency p99 vs /auth/verify",
        fmt_us(p99(&userinfo_runs)),
        fmt_us(p99(&verify_runs)),
        ratio(p99(&userinfo_runs), p99(&verify_runs)),
    ));
    let b_rps = rps(&plain_runs);
    for (what, bytes, runs) in [
        ("discovery", disc_bytes, &disc_runs),
        ("JWKS", jwks_bytes, &jwks_runs),
    ] {
        lines.push(line(
            OIDC,
            format!(
                "{what} req/s, from memory ({bytes} bytes of JSON; the plain handler answers 2)"
            ),
            format!("{:.0}", rps(runs)),
            format!("{b_rps:.0} (plain axum)"),
            ratio(rps(runs), b_rps),
        ));
    }
    let reg_429 = reg.exchange.by_status.get(&429).copied().unwrap_or(0);
    let reg_200 = reg.exchange.by_status.get(&200).copied().unwrap_or(0);
    lines.push(line(
        OIDC,
        format!(
            "code exchanges on {EXCHANGE_CONNS} conns under the default [regulation] (client attempts in flight count toward max_failures)"
        ),
        format!("{reg_200} of {} answered 200", reg.exchange.lat_us.len()),
        format!("{reg_429} refused 429"),
        None,
    ));
    eprintln!(
        "  exchanges {ex_rps:.0}/s p99 {} | authorizations {mint_rps:.0}/s | verify {v_rps:.0} req/s | userinfo {u_rps:.0} req/s | signature {} | CPU/exchange {}",
        fmt_us(ex_p99),
        fmt_us(sig_us),
        fmt_us(ex_cpu)
    );
    json!({
        "tool": tool, "secs": p.load_secs, "codes_per_round": n, "exchange_connections": EXCHANGE_CONNS,
        "verify": loads_json(&verify_runs),
        "userinfo": loads_json(&userinfo_runs),
        "rounds": rounds.iter().map(|r| json!({"authorize": each_json(&r.mint), "exchange": each_json(&r.exchange)})).collect::<Vec<_>>(),
        "signature_cpu_us": sig_us, "signature_wall_p50_us": sig_wall_us,
        "discovery": {"bytes": disc_bytes, "runs": loads_json(&disc_runs)},
        "jwks": {"bytes": jwks_bytes, "runs": loads_json(&jwks_runs)},
        "plain": loads_json(&plain_runs),
        "default_regulation": {"authorize": each_json(&reg.mint), "exchange": each_json(&reg.exchange)},
        "ratio_exchange_verify": ex_rps / v_rps,
        "ratio_userinfo_verify": u_rps / v_rps,
    })
}
