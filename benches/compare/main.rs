//! `cargo bench --bench compare -- [--quick|--full|--smoke] [--only 1,2,...]`
//!
//! Measures gatehouse's store against SQLite (rusqlite, bundled) and JSONL
//! files in one run, on data generated from one event stream, and writes
//! `bench-results/report.md` and `bench-results/report.json`.
//!
//! Figures (numbers shared with `cargo bench --bench http`, see
//! `gatehouse_benches::figure`): 1 durable append (`append.rs`), 2 newest-100
//! query and 3 deep pagination (`query.rs`), 9 bytes on disk (`events.rs`,
//! which also fills the event stores for 2 and 3), 4 session
//! create/validate/revoke and 5 expiry sweep (`sessions.rs`). Figures 6-8
//! are the HTTP bench's.
//!
//! This file owns the modes and the run; `loops.rs` the load loops and store
//! helpers, `data.rs` the event stream, `sqlite.rs` the SQLite competitor,
//! `jsonl.rs` the JSONL scans and `report.rs` the rows and the targets. All
//! data lives in a temporary directory (under `$GATEHOUSE_BENCH_DIR` if set,
//! else the system temp dir) that is removed at the end.

mod append;
mod data;
mod events;
mod jsonl;
mod loops;
mod outbox;
mod pgchain;
mod query;
mod report;
mod sessions;
mod sqlite;

use std::path::PathBuf;
use std::time::Instant;

use gatehouse_benches::figure::{self, Only};
use gatehouse_benches::machine::{self, command_line, loadavg};
use gatehouse_benches::report::TABLE_HEAD;

use report::Report;

/// What one mode measures, and how hard.
struct Params {
    mode: &'static str,
    /// Dataset sizes for the query figures, filled incrementally.
    event_sizes: Vec<usize>,
    /// Size at which deep pagination and bytes per event are compared.
    deep_at: Vec<usize>,
    /// Samples of the indexed queries (gatehouse, SQLite) per size.
    fast_iters: usize,
    /// Seconds of each closed-loop append run.
    append_secs: f64,
    /// Seconds and rate of the open-loop ack latency run.
    latency_secs: u64,
    latency_per_ms: usize,
    /// Sessions that expire before the sweep, and sessions that stay live.
    sessions_expiring: usize,
    sessions_live: usize,
    /// Sessions created (then revoked) through the writers.
    create_n: usize,
    validate_iters: usize,
}

impl Params {
    fn quick() -> Self {
        Params {
            mode: "quick",
            event_sizes: vec![100_000, 1_000_000],
            deep_at: vec![1_000_000],
            fast_iters: 2_000,
            append_secs: 1.0,
            latency_secs: 2,
            latency_per_ms: 2,
            sessions_expiring: 100_000,
            sessions_live: 10_000,
            create_n: 20_000,
            validate_iters: 100_000,
        }
    }

    fn full() -> Self {
        Params {
            mode: "full",
            event_sizes: vec![100_000, 1_000_000, 10_000_000],
            deep_at: vec![1_000_000, 10_000_000],
            fast_iters: 5_000,
            append_secs: 3.0,
            latency_secs: 5,
            latency_per_ms: 2,
            sessions_expiring: 1_000_000,
            sessions_live: 100_000,
            create_n: 50_000,
            validate_iters: 300_000,
        }
    }

    /// A seconds-long pass over every figure at toy sizes, to check the
    /// harness itself (`--smoke`); its numbers mean nothing.
    fn smoke() -> Self {
        Params {
            mode: "smoke",
            event_sizes: vec![20_000, 50_000],
            deep_at: vec![],
            fast_iters: 200,
            append_secs: 0.5,
            latency_secs: 1,
            latency_per_ms: 2,
            sessions_expiring: 5_000,
            sessions_live: 1_000,
            create_n: 2_000,
            validate_iters: 5_000,
        }
    }

    /// Samples of each scan at `size` events: (naive, streaming, external grep).
    fn scan_iters(&self, size: usize) -> (usize, usize, usize) {
        match size {
            0..=200_000 => (10, 30, 30),
            200_001..=2_000_000 => (3, 10, 10),
            _ => (1, 3, 3),
        }
    }
}

fn main() {
    let t_start = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--full");
    let only = Only::from_args(&args, "compare");
    let want = |f: u8| only.wants(f);
    let p = if full {
        Params::full()
    } else if args.iter().any(|a| a == "--smoke") {
        Params::smoke()
    } else {
        Params::quick()
    };

    let parent = std::env::var_os("GATEHOUSE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-bench-")
        .tempdir_in(&parent)
        .expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut rep = Report {
        mode: p.mode.into(),
        command: format!("cargo bench --bench compare -- --{}{}", p.mode, only.arg()),
        machine: machine_facts(),
        ..Default::default()
    };
    for (k, v) in &rep.machine {
        println!("{k}: {v}");
    }
    println!("data dir: {}", tmp.path().display());
    println!("{TABLE_HEAD}");

    if want(figure::APPEND) {
        append::figures(&p, &rt, tmp.path(), &mut rep);
    }
    if want(figure::APPEND) || want(figure::SESSIONS) {
        append::redb_mode_diagnostics(tmp.path(), &mut rep);
    }
    if want(figure::NEWEST_100) || want(figure::DEEP_PAGES) || want(figure::BYTES_ON_DISK) {
        events::figures(&p, tmp.path(), &mut rep, &want);
    }
    if want(figure::SESSIONS) || want(figure::SWEEP) {
        sessions::figures(&p, &rt, tmp.path(), &mut rep);
    }
    if want(figure::POSTGRES_CHAIN) {
        pgchain::figures(&p, &rt, tmp.path(), &mut rep);
        outbox::figures(&p, &rt, tmp.path(), &mut rep);
    }
    report::targets(&mut rep);
    drop(rt);
    drop(tmp);
    rep.total_seconds = t_start.elapsed().as_secs_f64();
    rep.machine
        .push(("load average at end (1, 5, 15 min)".into(), loadavg()));

    let path = rep.write().expect("write report");
    println!("\n{}", rep.markdown());
    println!("written: {} and report.json", path.display());
}

/// The machine, and the versions of what is compared.
fn machine_facts() -> Vec<(String, String)> {
    let mut facts = machine::facts();
    facts.extend([
        ("redb".into(), "5.0 (gatehouse store, 64 MiB cache)".into()),
        (
            "SQLite".into(),
            format!("{} (rusqlite, bundled)", rusqlite::version()),
        ),
        ("grep".into(), command_line("grep", &["--version"])),
        ("load average at start (1, 5, 15 min)".into(), loadavg()),
    ]);
    facts
}
