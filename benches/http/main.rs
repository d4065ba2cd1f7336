//! `cargo bench --bench http -- [--quick|--full] [--only 6,8] [--cache-mib N]`:
//! gatehouse as a server, each figure against a competitor measured in the
//! same run.
//!
//! - Figure 6 (`verify.rs`): `GET /auth/verify` with a valid session cookie
//!   under load, against a plain axum handler returning a constant (same
//!   runtime shape, own port, measured one after the other).
//! - Figure 7 (`flood.rs`): a login flood (200 concurrent wrong-password
//!   logins, real argon2 cost) against the machine's argon2 limit, and the
//!   latency of `/auth/verify` and `/healthz` during the flood versus idle.
//! - Figure 10 (`token.rs`): `GET /auth/verify` with `Authorization: Bearer`
//!   (an access token) against the same check with the session cookie, one
//!   server, the same run.
//! - Figure 12 (`proxy.rs`): a request to an app through the built-in
//!   proxy against nginx `auth_request` to gatehouse plus `proxy_pass`, and
//!   against nginx passing it on unchecked.
//! - Figure 13 (`nodes.rs`): `/auth/verify` on a node of the distributed
//!   backend against a redb node, two nodes together, and sign-ins per
//!   second on one and two nodes (needs Redis and PostgreSQL).
//! - Figure 14 (`oidc.rs`): the OpenID Connect provider. Code exchanges
//!   per second (codes minted beforehand with the session cookie, then
//!   `POST /oidc/token` with `client_secret_basic` and PKCE, each code
//!   once) and `userinfo` with a Bearer token, both against `/auth/verify`
//!   with the cookie on the same server in the same run; the server's CPU
//!   per exchange beside a bare RS256 signature; discovery and the JWKS
//!   (served from memory) against the plain axum handler of figure 6.
//! - Figure 8 (`memory.rs`): peak RSS of a server process (this binary
//!   re-executed in a server mode) holding many sessions and events, during
//!   a sweep and audit queries, against the file size.
//!
//! This file owns the modes and the output; `servers.rs` starts the servers;
//! `once.rs` sends distinct requests once each (figure 14's codes).
//! Quick mode is the default. Writes `bench-results/http.md` and
//! `bench-results/http.json` and prints the table. Everything runs on
//! loopback and every load is bounded in time.

mod flood;
mod memory;
mod nodes;
mod oidc;
mod once;
mod proxy;
mod servers;
mod token;
mod verify;

use std::path::Path;
use std::time::Instant;

use gatehouse_benches::figure::{self, Only};
use gatehouse_benches::machine::{loadavg, summary};
use gatehouse_benches::report::{self, Line};
use serde_json::{Value, json};

/// The password of the bench user `alice`.
pub const PASSWORD: &str = "bench-password-123";

/// What one mode measures, and how hard.
#[derive(Clone, Copy)]
pub struct Params {
    pub full: bool,
    /// Figure 8: `cache_mib` of the server (`--cache-mib N`; default 32, the server's default).
    pub cache_mib: u64,
    /// Figure 6: seconds per wrk run.
    pub load_secs: u64,
    /// Figure 7: seconds of flood (raised regulation limit).
    pub flood_secs: u64,
    /// Figure 7: seconds of flood with the default regulation.
    pub default_flood_secs: u64,
    /// Figure 8.
    pub sessions: u64,
    pub events: u64,
}

impl Params {
    fn new(full: bool) -> Params {
        if full {
            Params {
                full,
                cache_mib: 32,
                load_secs: 10,
                flood_secs: 15,
                default_flood_secs: 5,
                sessions: 1_000_000,
                events: 10_000_000,
            }
        } else {
            Params {
                full,
                cache_mib: 32,
                load_secs: 5,
                flood_secs: 8,
                default_flood_secs: 3,
                sessions: 100_000,
                events: 1_000_000,
            }
        }
    }
}

/// A table line of figure `figure`.
pub fn line(
    figure: u8,
    measure: impl Into<String>,
    gatehouse: impl Into<String>,
    competitor: impl Into<String>,
    ratio: Option<f64>,
) -> Line {
    Line {
        figure,
        measure: measure.into(),
        gatehouse: gatehouse.into(),
        competitor: competitor.into(),
        ratio,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-child") {
        memory::serve_child(Path::new(&args[i + 1]));
        return;
    }
    let full = args.iter().any(|a| a == "--full");
    let mut p = Params::new(full);
    if let Some(n) = args
        .iter()
        .position(|a| a == "--cache-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
    {
        p.cache_mib = n;
    }
    let mode = if full { "full" } else { "quick" };
    let started = Instant::now();
    eprintln!("http bench ({mode}); machine: {}", summary());

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut lines = Vec::new();
    let mut raw = serde_json::Map::new();
    raw.insert("mode".into(), json!(mode));
    raw.insert("machine".into(), json!(summary()));
    raw.insert("loadavg_start".into(), json!(loadavg()));

    // A subset (`--only`, for profiling) writes no files.
    let only = Only::from_args(&args, "http");
    if only.wants(figure::VERIFY) {
        let f = rt.block_on(verify::figure(&p, &mut lines));
        raw.insert("fig6".into(), f);
    }
    if only.wants(figure::LOGIN_FLOOD) {
        let f = rt.block_on(flood::figure(&p, &mut lines));
        raw.insert("fig7".into(), f);
    }
    if only.wants(figure::VERIFY_TOKEN) {
        let f = rt.block_on(token::figure(&p, &mut lines));
        raw.insert("fig10".into(), f);
    }
    if only.wants(figure::PROXY) {
        let f = rt.block_on(proxy::figure(&p, &mut lines));
        raw.insert("fig12".into(), f);
    }
    if only.wants(figure::SEVERAL_NODES) {
        let f = rt.block_on(nodes::figure(&p, &mut lines));
        raw.insert("fig13".into(), f);
    }
    if only.wants(figure::OIDC) {
        let f = rt.block_on(oidc::figure(&p, &mut lines));
        raw.insert("fig14".into(), f);
    }
    if only.wants(figure::MEMORY) {
        let f = rt.block_on(memory::figure(&p, &mut lines));
        raw.insert("fig8".into(), f);
    }
    raw.insert("loadavg_end".into(), json!(loadavg()));
    raw.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));

    let md = format!(
        "Mode: {mode}. Machine: {}. Load average at the end: {}.\n\n{}",
        summary(),
        loadavg(),
        report::table(&lines)
    );
    println!("{md}");
    if only.is_subset() {
        eprintln!("--only: results not written");
        return;
    }
    raw.insert("table".into(), json!(lines));
    let path = report::write_results("http", &md, &Value::Object(raw)).expect("write results");
    eprintln!(
        "wrote {} and http.json in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}
