//! `cargo bench --bench compare -- [--quick|--full] [--only 1,2,...]`
//!
//! Measures gatehouse's store against SQLite (rusqlite, bundled) and JSONL
//! files in one run, on data generated from one event stream, and writes
//! `bench-results/report.md` and `bench-results/report.json`.
//!
//! This file owns the orchestration: the modes, the figures and the targets.
//! `compare/data.rs` owns the event stream, `compare/sqlite.rs` the SQLite
//! competitor, `compare/jsonl.rs` the JSONL scans, `compare/stats.rs` latency
//! summaries and `compare/report.rs` the output. All data lives in a temporary
//! directory (under `$GATEHOUSE_BENCH_DIR` if set, else the system temp dir)
//! that is removed at the end.
//!
//! Figures: 1 durable append, 2 newest-100 query, 3 deep pagination,
//! 4 session create/validate/revoke, 5 expiry sweep, 8 bytes on disk.
//! Figures 6 and 7 (HTTP) are placeholders until the server exists.

#[path = "compare/data.rs"]
mod data;
#[path = "compare/jsonl.rs"]
mod jsonl;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/sqlite.rs"]
mod sqlite;
#[path = "compare/stats.rs"]
mod stats;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{
    EventFilter, NewEvent, NewSession, Op, OpOutput, RevokeReason, SessionToken, Store,
    StoreOptions, Writer, WriterConfig, now_us,
};
use tokio::runtime::Runtime;

use data::{EventStream, GenEvent, HEAVY_USER, Rng, USERS, user_name};
use jsonl::Jsonl;
use report::{Better, Report, Unit};
use sqlite::{AuditRow, Sql, SqlOp, SqlOut, SqlWriter, Sync as SqlSync};
use stats::{Lat, fmt_rate, fmt_us, group, median, sample, sample2, short};

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
    let only: Option<Vec<u8>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let want = |f: u8| only.as_ref().is_none_or(|o| o.contains(&f));
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
        command: format!(
            "cargo bench --bench compare -- --{}{}",
            p.mode,
            only.as_ref()
                .map(|o| {
                    let list: Vec<String> = o.iter().map(|f| f.to_string()).collect();
                    format!(" --only {}", list.join(","))
                })
                .unwrap_or_default()
        ),
        machine: machine_facts(),
        ..Default::default()
    };
    for (k, v) in &rep.machine {
        println!("{k}: {v}");
    }
    println!("data dir: {}", tmp.path().display());
    println!("| # | figure | gatehouse | competitor | ratio |");

    if want(1) {
        append_figures(&p, &rt, tmp.path(), &mut rep);
    }
    if want(1) || want(4) {
        redb_mode_diagnostics(tmp.path(), &mut rep);
    }
    if want(2) || want(3) || want(8) {
        event_figures(&p, tmp.path(), &mut rep, &want);
    }
    if want(4) || want(5) {
        session_figures(&p, &rt, tmp.path(), &mut rep);
    }
    targets(&mut rep);
    drop(rt);
    drop(tmp);
    rep.total_seconds = t_start.elapsed().as_secs_f64();
    rep.machine
        .push(("load average at end (1, 5, 15 min)".into(), loadavg()));

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    rep.write(&out).expect("write report");
    println!("\n{}", rep.markdown());
    println!("written: {}/report.md and report.json", out.display());
}

/// The first three fields of /proc/loadavg: other work on the box shows here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine_facts() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1_048_576.0))
        .unwrap_or_else(|| "unknown".into());
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_else(|| "unknown".into())
    };
    vec![
        ("date".into(), cmd("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        (
            "nproc".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "unknown".into()),
        ),
        ("CPU".into(), cpu),
        ("memory".into(), mem),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().into(),
        ),
        ("redb".into(), "4.6 (gatehouse store, 64 MiB cache)".into()),
        (
            "SQLite".into(),
            format!("{} (rusqlite, bundled)", rusqlite::version()),
        ),
        ("grep".into(), cmd("grep", &["--version"])),
        ("load average at start (1, 5, 15 min)".into(), loadavg()),
    ]
}

// ------------------------------------------------------------------ helpers

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Job<T> = Arc<dyn Fn(usize) -> BoxFut<T> + Send + Sync>;

/// `conc` tasks each run `job` back to back until `dur` has passed. Returns
/// operations done, elapsed time (until the last task finished) and latencies.
fn closed_loop(rt: &Runtime, conc: usize, dur: Duration, job: Job<()>) -> (u64, Duration, Lat) {
    rt.block_on(async move {
        let start = Instant::now();
        let deadline = start + dur;
        let mut hs = Vec::with_capacity(conc);
        for t in 0..conc {
            let job = job.clone();
            hs.push(tokio::spawn(async move {
                let mut lats = Vec::new();
                let mut i = t;
                while Instant::now() < deadline {
                    let s = Instant::now();
                    job(i).await;
                    lats.push(s.elapsed());
                    i += conc;
                }
                lats
            }));
        }
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.await.expect("task"));
        }
        let el = start.elapsed();
        (all.len() as u64, el, Lat::of(&mut all))
    })
}

/// `conc` tasks share `total` jobs. Returns each job's output (in no order),
/// elapsed time and latencies.
fn fixed_loop<T: Send + 'static>(
    rt: &Runtime,
    conc: usize,
    total: usize,
    job: Job<T>,
) -> (Vec<T>, Duration, Lat) {
    rt.block_on(async move {
        let start = Instant::now();
        let mut hs = Vec::with_capacity(conc);
        for t in 0..conc {
            let job = job.clone();
            hs.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut lats = Vec::new();
                let mut i = t;
                while i < total {
                    let s = Instant::now();
                    out.push(job(i).await);
                    lats.push(s.elapsed());
                    i += conc;
                }
                (out, lats)
            }));
        }
        let mut outs = Vec::with_capacity(total);
        let mut lats = Vec::with_capacity(total);
        for h in hs {
            let (o, l) = h.await.expect("task");
            outs.extend(o);
            lats.extend(l);
        }
        let el = start.elapsed();
        (outs, el, Lat::of(&mut lats))
    })
}

/// Open loop: `per_ms` operations started every millisecond for `secs`
/// seconds, each timed from its start to its acknowledgement.
fn open_loop(rt: &Runtime, per_ms: usize, secs: u64, job: Job<()>) -> Lat {
    rt.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut hs = Vec::new();
        let mut i = 0;
        for _ in 0..secs * 1_000 {
            tick.tick().await;
            for _ in 0..per_ms {
                let job = job.clone();
                let n = i;
                i += 1;
                hs.push(tokio::spawn(async move {
                    let s = Instant::now();
                    job(n).await;
                    s.elapsed()
                }));
            }
        }
        let mut lats = Vec::with_capacity(hs.len());
        for h in hs {
            lats.push(h.await.expect("task"));
        }
        Lat::of(&mut lats)
    })
}

/// A file's length (0 when it does not exist).
fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The disk space a file occupies: its allocated blocks. redb grows its file
/// by doubling (up to 4 GiB regions) with `set_len`, which leaves the
/// not-yet-written tail sparse, so the length overstates what the disk holds.
fn disk_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// redb page cache of the store under test: the same memory as SQLite's
/// `cache_size` in `compare/sqlite.rs`, so neither side wins by caching more.
const STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn open_store(p: &Path) -> Store {
    let opts = StoreOptions {
        cache_bytes: STORE_CACHE_BYTES,
    };
    Store::open(p, &opts).expect("open store")
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[{}] {}", clock(), msg.as_ref());
}

fn clock() -> String {
    let s = now_us() / 1_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

// ------------------------------------------------------------------ figure 1

fn append_figures(p: &Params, rt: &Runtime, dir: &Path, rep: &mut Report) {
    let mut stream = EventStream::new(1);
    let pool: Vec<GenEvent> = (0..8_192).map(|_| stream.next_event()).collect();
    let gh_pool: Arc<Vec<NewEvent>> = Arc::new(pool.iter().map(|e| e.to_new_event()).collect());
    let sql_pool: Arc<Vec<AuditRow>> = Arc::new(pool.iter().map(AuditRow::from).collect());
    let dur = Duration::from_secs_f64(p.append_secs);

    let gh_job = |w: Writer| -> Job<()> {
        let pool = gh_pool.clone();
        Arc::new(move |i| {
            let w = w.clone();
            let mut ev = pool[i % pool.len()].clone();
            ev.at_us = now_us();
            Box::pin(async move {
                w.append(ev).await.expect("append");
            })
        })
    };
    let sql_job = |w: SqlWriter| -> Job<()> {
        let pool = sql_pool.clone();
        Arc::new(move |i| {
            let w = w.clone();
            let mut row = pool[i % pool.len()].clone();
            row.at_us = now_us();
            Box::pin(async move {
                w.submit(SqlOp::Append(row)).await;
            })
        })
    };
    let run_gh = |name: &str, conc: usize, open: Option<(usize, u64)>| {
        let path = dir.join(format!("append-{name}.redb"));
        let store = open_store(&path);
        let (w, task) = Writer::spawn(store.clone(), WriterConfig::default());
        let out = match open {
            None => {
                let (n, el, lat) = closed_loop(rt, conc, dur, gh_job(w.clone()));
                (n as f64 / el.as_secs_f64(), lat)
            }
            Some((per_ms, secs)) => (f64::NAN, open_loop(rt, per_ms, secs, gh_job(w.clone()))),
        };
        let st = w.stats();
        let commits = st.commits.load(Ordering::Relaxed).max(1);
        let ops = st.ops.load(Ordering::Relaxed);
        drop(w);
        rt.block_on(task.shutdown()).expect("writer shutdown");
        drop(store);
        let _ = std::fs::remove_file(&path);
        (out.0, out.1, ops as f64 / commits as f64)
    };
    let run_sql =
        |name: &str, sync: SqlSync, batch: usize, conc: usize, open: Option<(usize, u64)>| {
            let path = dir.join(format!("append-{name}.sqlite"));
            let sql = Sql::open(&path, sync);
            let (w, h) = SqlWriter::spawn(sql, batch);
            let out = match open {
                None => {
                    let (n, el, lat) = closed_loop(rt, conc, dur, sql_job(w.clone()));
                    (n as f64 / el.as_secs_f64(), lat)
                }
                Some((per_ms, secs)) => (f64::NAN, open_loop(rt, per_ms, secs, sql_job(w.clone()))),
            };
            drop(w);
            drop(h.join().expect("sqlite writer"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            out
        };

    // Each configuration runs `ROUNDS` times, the systems taking turns, and
    // the median round is reported: the box is shared, and taking turns
    // exposes both to the same bursts of outside load.
    const ROUNDS: usize = 3;
    let mut gh_best = 0.0f64;
    for conc in [1usize, 16, 256] {
        progress(format!(
            "figure 1: durable append, {conc} concurrent writers, {ROUNDS} rounds"
        ));
        let (mut gh, mut full, mut one, mut normal) = (vec![], vec![], vec![], vec![]);
        let (mut gh_p99, mut full_p99, mut gh_batch) = (vec![], vec![], vec![]);
        for r in 0..ROUNDS {
            let (rate, lat, batch) = run_gh(&format!("gh-{conc}-{r}"), conc, None);
            gh.push(rate);
            gh_p99.push(lat.p99_us);
            gh_batch.push(batch);
            let (rate, lat) = run_sql(
                &format!("full-{conc}-{r}"),
                SqlSync::Full,
                1_024,
                conc,
                None,
            );
            full.push(rate);
            full_p99.push(lat.p99_us);
            one.push(run_sql(&format!("one-{conc}-{r}"), SqlSync::Full, 1, conc, None).0);
            normal.push(
                run_sql(
                    &format!("normal-{conc}-{r}"),
                    SqlSync::Normal,
                    1_024,
                    conc,
                    None,
                )
                .0,
            );
        }
        let (gh, full, one, normal) = (median(gh), median(full), median(one), median(normal));
        gh_best = gh_best.max(gh);
        let m = format!("durable append, {conc} concurrent writers (median of {ROUNDS})");
        let rate = Unit::Rate("events".into());
        rep.row(
            1,
            &m,
            Some(gh),
            "SQLite FULL, batching writer",
            Some(full),
            rate.clone(),
            Better::Higher,
            format!(
                "gatehouse mean batch {:.1}; p99 ack gatehouse {}, SQLite {}",
                median(gh_batch),
                fmt_us(median(gh_p99)),
                fmt_us(median(full_p99))
            ),
        );
        rep.row(
            1,
            &m,
            Some(gh),
            "SQLite FULL, one transaction per event",
            Some(one),
            rate.clone(),
            Better::Higher,
            "",
        );
        rep.row(
            1,
            &m,
            Some(gh),
            "SQLite NORMAL (not durable), batching writer",
            Some(normal),
            rate,
            Better::Higher,
            "",
        );
        if conc == 256 {
            rep.gh_append_256 = Some((gh, full));
        }
    }
    rep.gh_append_best = Some(gh_best);

    let per_s = p.latency_per_ms * 1_000;
    progress(format!("figure 1: ack latency at {per_s} events/s offered"));
    let open = Some((p.latency_per_ms, p.latency_secs));
    let (mut gh_l, mut sql_l) = (vec![], vec![]);
    for r in 0..2 {
        let (_, lat, _) = run_gh(&format!("lat-{r}"), 1, open);
        gh_l.push(lat);
        sql_l.push(run_sql(&format!("lat-{r}"), SqlSync::Full, 1_024, 1, open).1);
    }
    let p50 = |v: &[Lat]| median(v.iter().map(|l| l.p50_us).collect());
    let p99 = |v: &[Lat]| median(v.iter().map(|l| l.p99_us).collect());
    for (q, g, s) in [
        ("p50", p50(&gh_l), p50(&sql_l)),
        ("p99", p99(&gh_l), p99(&sql_l)),
    ] {
        rep.row(
            1,
            format!(
                "single-event ack latency {q} at {} events/s offered (median of 2 runs)",
                group(per_s as u64)
            ),
            Some(g),
            "SQLite FULL, batching writer",
            Some(s),
            Unit::Micros,
            Better::Lower,
            "",
        );
    }
}

// ------------------------------------------------------------------ figures 2, 3, 8

/// Ids of a user's newest `limit` events in gatehouse.
fn gh_newest(
    store: &Store,
    user: &str,
    limit: usize,
    cursor: Option<&str>,
) -> (Vec<u64>, Option<String>) {
    let f = EventFilter {
        user: Some(user.into()),
        ..Default::default()
    };
    let page = store.query_events(&f, limit, cursor).expect("query");
    (
        page.events.iter().map(|e| e.id.0).collect(),
        page.next_cursor,
    )
}

fn event_figures(p: &Params, dir: &Path, rep: &mut Report, want: &dyn Fn(u8) -> bool) {
    let gh_path = dir.join("events.redb");
    let sql_path = dir.join("events.sqlite");
    let store = open_store(&gh_path);
    let mut sql = Sql::open(&sql_path, SqlSync::Full);
    let mut js = Jsonl::create(&dir.join("events.jsonl"));
    let mut stream = EventStream::new(42);
    let mut have = 0usize;
    let (mut gh_fill, mut sql_fill, mut js_fill) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut p50_by_size: Vec<(usize, [f64; 5])> = Vec::new();
    let rg = jsonl::installed("rg");
    if !rg {
        rep.note("ripgrep (`rg`) is not installed: its scan is skipped; `grep -F` stands for the external-tool scan.");
    }

    for &size in &p.event_sizes {
        progress(format!(
            "filling the event stores to {} events",
            short(size)
        ));
        while have < size {
            let n = 1_000.min(size - have);
            let evs: Vec<GenEvent> = (0..n).map(|_| stream.next_event()).collect();
            let ops: Vec<Op> = evs.iter().map(|e| Op::Append(e.to_new_event())).collect();
            let t = Instant::now();
            let res = store.apply_batch(ops);
            gh_fill += t.elapsed();
            assert!(res.iter().all(|r| r.is_ok()), "gatehouse batch failed");
            let t = Instant::now();
            sql.fill(&evs);
            sql_fill += t.elapsed();
            let t = Instant::now();
            js.append(&evs);
            js_fill += t.elapsed();
            have += n;
            if have % 1_000_000 == 0 {
                progress(format!("  {} events", short(have)));
            }
        }
        js.flush();
        let label = short(size);
        if size == p.event_sizes[0] || size == *p.event_sizes.last().expect("sizes") {
            rep.row(
                1,
                format!("bulk durable append, 1,000-event batches, 0 to {label} events"),
                Some(have as f64 / gh_fill.as_secs_f64()),
                "SQLite FULL, 1,000-row transactions",
                Some(have as f64 / sql_fill.as_secs_f64()),
                Unit::Rate("events".into()),
                Better::Higher,
                format!(
                    "JSONL buffered write: {}",
                    fmt_rate(have as f64 / js_fill.as_secs_f64(), "events")
                ),
            );
        }

        if want(2) {
            progress(format!("figure 2: newest 100 of one user at {label}"));
            let p50s = query_figure(p, size, &store, &sql, &js, rg, rep);
            p50_by_size.push((size, p50s));
        }
        if want(3) && p.deep_at.contains(&size) {
            progress(format!("figure 3: deep pagination at {label}"));
            deep_figure(size, &store, &sql, rep);
        }
        if want(8) {
            sql.checkpoint();
            let sql_files = [
                sql_path.clone(),
                PathBuf::from(format!("{}-wal", sql_path.display())),
            ];
            let sql_b: u64 = sql_files.iter().map(|f| disk_bytes(f)).sum();
            let sql_len: u64 = sql_files.iter().map(|f| file_bytes(f)).sum();
            let (gh_b, gh_len) = (disk_bytes(&gh_path), file_bytes(&gh_path));
            let js_b = js.bytes();
            let per = |b: u64| b as f64 / have as f64;
            let mb = |b: u64| b / 1_000_000;
            let on_disk = format!("bytes on disk per event at {label}");
            let rows = [
                (
                    on_disk.clone(),
                    gh_b,
                    "SQLite (after WAL checkpoint)",
                    sql_b,
                    format!(
                        "blocks allocated: gatehouse {} MB, SQLite {} MB",
                        mb(gh_b),
                        mb(sql_b)
                    ),
                ),
                (on_disk, gh_b, "JSONL", js_b, String::new()),
                (
                    format!(
                        "file length per event at {label} (includes never-written, sparse space)"
                    ),
                    gh_len,
                    "SQLite (after WAL checkpoint)",
                    sql_len,
                    format!(
                        "lengths: gatehouse {} MB, SQLite {} MB",
                        mb(gh_len),
                        mb(sql_len)
                    ),
                ),
            ];
            for (what, ours, who, theirs, note) in rows {
                rep.row(
                    8,
                    what,
                    Some(per(ours)),
                    who,
                    Some(per(theirs)),
                    Unit::BytesPerEvent,
                    Better::Lower,
                    note,
                );
            }
            if size == 1_000_000 {
                rep.bytes_1m = Some((per(gh_b), per(sql_b)));
            }
        }
    }

    // Growth: how each method's p50 moves from the smallest to the largest size.
    if p50_by_size.len() >= 2 {
        let (s0, a) = p50_by_size[0];
        for &(s1, b) in &p50_by_size[1..] {
            let names = [
                "SQLite keyset",
                "JSONL naive",
                "JSONL streaming",
                "grep -F | tail",
            ];
            for (k, name) in names.iter().enumerate() {
                rep.row(
                    2,
                    format!(
                        "newest-100 p50 growth, {} to {} events (x)",
                        short(s0),
                        short(s1)
                    ),
                    Some(b[0] / a[0]),
                    *name,
                    Some(b[k + 1] / a[k + 1]),
                    Unit::Factor,
                    Better::Lower,
                    "",
                );
            }
            if s1 == 1_000_000 && s0 == 100_000 {
                rep.flat = Some((a[0], b[0]));
            }
        }
    }
    store.close().expect("close the event store");
    if want(8) && have <= 2_000_000 {
        let sql_b = disk_bytes(&sql_path);
        redb_diagnostics(&gh_path, have, sql_b, rep);
    }
}

/// Figure 2 at one size. Returns the p50s of gatehouse, SQLite keyset, naive,
/// streaming and grep.
fn query_figure(
    p: &Params,
    size: usize,
    store: &Store,
    sql: &Sql,
    js: &Jsonl,
    rg: bool,
    rep: &mut Report,
) -> [f64; 5] {
    let label = short(size);
    let mut rng = Rng::new(size as u64);
    let users: Vec<String> = (0..p.fast_iters)
        .map(|_| user_name(rng.below(USERS)))
        .collect();

    // Same answers everywhere, or the comparison means nothing.
    for u in users.iter().take(3) {
        let (g, _) = gh_newest(store, u, 100, None);
        let s: Vec<u64> = sql
            .page(u, None, 100)
            .expect("sql")
            .iter()
            .map(|e| e.id as u64)
            .collect();
        let j: Vec<u64> = jsonl::streaming(&js.path, u, 100)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(g.len(), 100.min(g.len().max(s.len())));
        assert_eq!(g, s, "gatehouse and SQLite disagree for {u}");
        assert_eq!(g, j, "gatehouse and JSONL disagree for {u}");
    }
    if size == p.event_sizes[0] {
        let u = &users[0];
        rep.note(format!(
            "SQLite keyset plan: {}",
            sql.plan(sqlite::KEYSET_SQL, &[u, &i64::MAX, &i64::MAX, &100i64])
        ));
        rep.note(format!(
            "SQLite `id < ?` plan: {}",
            sql.plan(sqlite::KEYSET_BY_ID_SQL, &[u, &i64::MAX, &100i64])
        ));
    }

    // Warm up, then measure.
    for u in users.iter().take(200) {
        gh_newest(store, u, 100, None);
        sql.page(u, None, 100).expect("sql");
    }
    let (gh, sq) = sample2(
        users.len(),
        |i| gh_newest(store, &users[i], 100, None),
        |i| sql.page(&users[i], None, 100).expect("sql"),
    );
    let by_id_n = (users.len() / 4).max(50);
    let sq_id = sample(by_id_n, |i| {
        sql.page_by_id(&users[i], None, 100).expect("sql")
    });
    // The monitoring account always fills a page: the same 100 rows at every size.
    let (gh_full, sq_full) = sample2(
        users.len() / 4,
        |_| gh_newest(store, HEAVY_USER, 100, None),
        |_| sql.page(HEAVY_USER, None, 100).expect("sql"),
    );
    let (n_naive, n_stream, n_grep) = p.scan_iters(size);
    let _ = jsonl::streaming(&js.path, &users[0], 100);
    let naive = sample(n_naive, |i| jsonl::naive(&js.path, &users[i], 100));
    let streaming = sample(n_stream, |i| jsonl::streaming(&js.path, &users[i], 100));
    let grep = sample(n_grep, |i| {
        jsonl::external("grep", &js.path, &users[i], 100)
    });
    let rgl = rg.then(|| sample(n_grep, |i| jsonl::external("rg", &js.path, &users[i], 100)));

    let m = |q: &str| format!("newest-100 of one user, {q}, {label} events");
    let n = |l: &Lat| format!("{} samples", l.n);
    rep.row(
        2,
        m("p50"),
        Some(gh.p50_us),
        "SQLite keyset (user, ts) index",
        Some(sq.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&gh),
    );
    rep.row(
        2,
        m("p99"),
        Some(gh.p99_us),
        "SQLite keyset (user, ts) index",
        Some(sq.p99_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        2,
        m("p50"),
        Some(gh.p50_us),
        "SQLite `id < ? ORDER BY id`",
        Some(sq_id.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&sq_id),
    );
    rep.row(
        2,
        m("p50"),
        Some(gh.p50_us),
        "JSONL naive (read all, parse all)",
        Some(naive.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&naive),
    );
    rep.row(
        2,
        m("p99"),
        Some(gh.p99_us),
        "JSONL naive (read all, parse all)",
        Some(naive.p99_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        2,
        m("p50"),
        Some(gh.p50_us),
        "JSONL streaming substring scan",
        Some(streaming.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&streaming),
    );
    rep.row(
        2,
        m("p50"),
        Some(gh.p50_us),
        "grep -F | tail -n 100 (process)",
        Some(grep.p50_us),
        Unit::Micros,
        Better::Lower,
        n(&grep),
    );
    rep.row(
        2,
        format!("newest-100 of `{HEAVY_USER}` (always a full page), p50, {label} events"),
        Some(gh_full.p50_us),
        "SQLite keyset (user, ts) index",
        Some(sq_full.p50_us),
        Unit::Micros,
        Better::Lower,
        format!(
            "p99 gatehouse {}, SQLite {}",
            fmt_us(gh_full.p99_us),
            fmt_us(sq_full.p99_us)
        ),
    );
    rep.full_page.push((size, gh_full.p50_us));
    if let Some(r) = rgl {
        rep.row(
            2,
            m("p50"),
            Some(gh.p50_us),
            "rg -F | tail -n 100 (process)",
            Some(r.p50_us),
            Unit::Micros,
            Better::Lower,
            n(&r),
        );
    }
    if size == 1_000_000 {
        rep.newest_1m = Some((gh.p50_us, gh.p99_us, sq.p50_us));
    }
    if size == p.event_sizes[0] {
        rep.newest_first = Some((gh.p50_us, gh.p99_us));
    }
    [
        gh.p50_us,
        sq.p50_us,
        naive.p50_us,
        streaming.p50_us,
        grep.p50_us,
    ]
}

/// Figure 3 at one size: page 1 and page 1,000 of the heavy user.
fn deep_figure(size: usize, store: &Store, sql: &Sql, rep: &mut Report) {
    const PAGE: usize = 100;
    const DEPTH: usize = 1_000;
    let label = short(size);
    let u = HEAVY_USER;

    // Walk to page 1,000 with cursors, timing the walk.
    let t = Instant::now();
    let mut cursor: Option<String> = None;
    let mut gh_last_ids = Vec::new();
    for _ in 0..DEPTH - 1 {
        let (_, next) = gh_newest(store, u, PAGE, cursor.as_deref());
        cursor = Some(next.expect("heavy user has 1,000 pages"));
    }
    let (ids, _) = gh_newest(store, u, PAGE, cursor.as_deref());
    gh_last_ids.extend(ids);
    let gh_walk = t.elapsed();
    let t = Instant::now();
    let mut below: Option<(i64, i64)> = None;
    for _ in 0..DEPTH - 1 {
        let page = sql.page(u, below, PAGE).expect("sql");
        let last = page.last().expect("full page");
        below = Some((last.ts, last.id));
    }
    let sql_page: Vec<u64> = sql
        .page(u, below, PAGE)
        .expect("sql")
        .iter()
        .map(|e| e.id as u64)
        .collect();
    let sql_walk = t.elapsed();
    let off: Vec<u64> = sql
        .page_offset(u, (DEPTH - 1) * PAGE, PAGE)
        .expect("sql")
        .iter()
        .map(|e| e.id as u64)
        .collect();
    assert_eq!(gh_last_ids, sql_page, "page 1,000 differs (keyset)");
    assert_eq!(gh_last_ids, off, "page 1,000 differs (offset)");

    let c = cursor.expect("cursor");
    let (gh1, sq1) = sample2(
        500,
        |_| gh_newest(store, u, PAGE, None),
        |_| sql.page(u, None, PAGE).expect("sql"),
    );
    let (gh1000, sq1000) = sample2(
        500,
        |_| gh_newest(store, u, PAGE, Some(&c)),
        |_| sql.page(u, below, PAGE).expect("sql"),
    );
    let off1000 = sample(30, |_| {
        sql.page_offset(u, (DEPTH - 1) * PAGE, PAGE).expect("sql")
    });
    let m = |w: &str| format!("{w} of `{u}` ({label} events), p50");
    rep.row(
        3,
        m("page 1"),
        Some(gh1.p50_us),
        "SQLite keyset",
        Some(sq1.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        3,
        m("page 1,000"),
        Some(gh1000.p50_us),
        "SQLite keyset",
        Some(sq1000.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        3,
        m("page 1,000"),
        Some(gh1000.p50_us),
        "SQLite OFFSET 99,900",
        Some(off1000.p50_us),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.row(
        3,
        format!("walk pages 1 to 1,000 with cursors ({label} events), total"),
        Some(gh_walk.as_secs_f64() * 1e6),
        "SQLite keyset",
        Some(sql_walk.as_secs_f64() * 1e6),
        Unit::Micros,
        Better::Lower,
        "",
    );
    rep.note(format!(
        "figure 3 at {label}: gatehouse page 1,000 / page 1 = {:.2}x; SQLite keyset {:.2}x; SQLite OFFSET page 1,000 / keyset page 1 = {:.0}x",
        gh1000.p50_us / gh1.p50_us,
        sq1000.p50_us / sq1.p50_us,
        off1000.p50_us / sq1.p50_us
    ));
}

/// Diagnostic for figures 1 and 4: what redb's `SingleWriter` mode (the mode
/// the server opens its file in, so that `auditctl` can read beside it) costs
/// against `ExclusiveWriter`, on raw redb with one small table: durable
/// commits of one row, and read transactions that look up one key.
fn redb_mode_diagnostics(dir: &Path, rep: &mut Report) {
    use redb::{ConcurrencyMode, ReadableDatabase, TableDefinition};
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
    progress("figures 1 and 4: redb SingleWriter vs ExclusiveWriter");
    let modes = [
        ("SingleWriter", ConcurrencyMode::SingleWriter),
        ("ExclusiveWriter", ConcurrencyMode::ExclusiveWriter),
    ];
    let (mut commits, mut reads): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        (vec![vec![]; 2], vec![vec![]; 2]);
    for round in 0..3 {
        for (m, (name, mode)) in modes.iter().enumerate() {
            let path = dir.join(format!("mode-{name}-{round}.redb"));
            let mut b = redb::Builder::new();
            b.set_concurrency_mode(*mode);
            let db = b.create(&path).expect("create redb");
            let n = 200u64;
            let t = Instant::now();
            for i in 0..n {
                let w = db.begin_write().expect("write");
                w.open_table(T)
                    .expect("table")
                    .insert(i, [7u8; 150].as_slice())
                    .expect("insert");
                w.commit().expect("commit");
            }
            commits[m].push(n as f64 / t.elapsed().as_secs_f64());
            let n = 100_000u64;
            let t = Instant::now();
            for i in 0..n {
                let r = db.begin_read().expect("read");
                let t = r.open_table(T).expect("table");
                std::hint::black_box(t.get(i % 200).expect("get").map(|g| g.value().len()));
            }
            reads[m].push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            drop(db);
            let _ = std::fs::remove_file(&path);
        }
    }
    let c: Vec<f64> = commits.into_iter().map(median).collect();
    let r: Vec<f64> = reads.into_iter().map(median).collect();
    rep.note(format!(
        "redb mode diagnostic (raw redb, median of 3 alternating rounds): durable one-row commits \
         {} in SingleWriter vs {} in ExclusiveWriter ({:.2}x); read transaction + one get {} vs {} ({:.2}x). \
         SingleWriter forces redb's two-phase commit (two fdatasyncs per commit) and registers every \
         read transaction with fcntl byte-range locks",
        fmt_rate(c[0], "commits"),
        fmt_rate(c[1], "commits"),
        c[1] / c[0],
        fmt_us(r[0]),
        fmt_us(r[1]),
        r[0] / r[1],
    ));
}

/// Where gatehouse's bytes go: redb's own accounting of the closed file, then
/// the size after `Database::compact` (a diagnostic, not something the server
/// does).
fn redb_diagnostics(path: &Path, events: usize, sql_bytes: u64, rep: &mut Report) {
    progress("figure 8: redb storage accounting and compaction");
    let mut b = redb::Builder::new();
    b.set_concurrency_mode(redb::ConcurrencyMode::SingleWriter);
    let mut db = b.open(path).expect("open redb file");
    let before = file_bytes(path);
    {
        let w = db.begin_write().expect("write txn");
        let st = w.stats().expect("stats");
        let mb = |x: u64| x as f64 / 1e6;
        rep.note(format!(
            "redb accounting at {} events: file {:.0} MB; allocated pages {:.0} MB ({} leaf + {} branch pages of {} B); \
             stored key/value bytes {:.0} MB; B-tree metadata {:.0} MB; fragmented (unused space inside pages) {:.0} MB",
            short(events),
            mb(before),
            mb(st.allocated_pages() * st.page_size() as u64),
            st.leaf_pages(),
            st.branch_pages(),
            st.page_size(),
            mb(st.stored_bytes()),
            mb(st.metadata_bytes()),
            mb(st.fragmented_bytes()),
        ));
        w.abort().expect("abort");
    }
    {
        use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
        let r = db.begin_read().expect("read txn");
        let mut per = Vec::new();
        for h in r.list_tables().expect("tables") {
            let t = r.open_untyped_table(h).expect("table");
            let st = t.stats().expect("table stats");
            let used = st.stored_bytes() + st.metadata_bytes();
            let total = used + st.fragmented_bytes();
            if total > 1_000_000 {
                per.push(format!(
                    "{} {:.0} MB stored+meta, {:.0} MB unused in pages ({:.0}% full)",
                    t.name(),
                    used as f64 / 1e6,
                    st.fragmented_bytes() as f64 / 1e6,
                    100.0 * used as f64 / total as f64
                ));
            }
        }
        rep.note(format!(
            "redb tables at {} events: {}",
            short(events),
            per.join("; ")
        ));
    }
    let t = Instant::now();
    db.compact().expect("compact");
    let took = t.elapsed();
    drop(db);
    let after = disk_bytes(path);
    rep.row(
        8,
        format!(
            "bytes per event at {} after redb compact() (diagnostic)",
            short(events)
        ),
        Some(after as f64 / events as f64),
        "SQLite (after WAL checkpoint)",
        Some(sql_bytes as f64 / events as f64),
        Unit::BytesPerEvent,
        Better::Lower,
        format!("compaction took {:.1} s", took.as_secs_f64()),
    );
}

// ------------------------------------------------------------------ figures 4, 5

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
    }
}

fn session_figures(p: &Params, rt: &Runtime, dir: &Path, rep: &mut Report) {
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
        |i: usize| n_live > 0 && i % (total / n_live) == 0 && i / (total / n_live) < n_live;
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
        4,
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
        "figure 4: validate at {} live sessions",
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
        4,
        format!("validate by token, one thread, {lbl} live sessions{scale}"),
        Some(gh_rate),
        "SQLite point query",
        Some(sq_rate),
        Unit::Rate("validations".into()),
        Better::Higher,
        "includes SHA-256 of the token",
    );
    rep.row(
        4,
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
        "figure 4: create and revoke {} sessions, {CONC} callers",
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
        4,
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
        4,
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
    progress(format!("figure 5: sweep {} expired sessions", short(n_exp)));
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
        5,
        format!("sweep {lbl} expired sessions, 1,000 per commit, total{scale}"),
        Some(gh_sweep.as_secs_f64() * 1e6),
        "SQLite FULL, same batches",
        Some(sql_sweep.as_secs_f64() * 1e6),
        Unit::Micros,
        Better::Lower,
        "each removal also appends a session.expired event",
    );
    rep.row(
        5,
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
        5,
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

// ------------------------------------------------------------------ targets

fn targets(rep: &mut Report) {
    if let Some((p50, p99, _)) = rep.newest_1m {
        rep.target(
            "newest-100 for one user under 100 us in-process (p50 at 1M)",
            format!("p50 {}, p99 {}", fmt_us(p50), fmt_us(p99)),
            p50 < 100.0,
        );
    }
    if let Some((a, b)) = rep.flat {
        rep.target(
            "newest-100 no slower at 1M than at 100k (p50 within 10%)",
            format!("{} at 100k, {} at 1M ({:.2}x)", fmt_us(a), fmt_us(b), b / a),
            b <= a * 1.10,
        );
    }
    if let (Some(&(s0, a)), Some(&(s1, b))) = (rep.full_page.first(), rep.full_page.get(1)) {
        rep.target(
            format!(
                "newest-100 of `{HEAVY_USER}` (always 100 rows) no slower at {} than at {} (p50 within 10%)",
                short(s1),
                short(s0)
            ),
            format!("{} vs {} ({:.2}x)", fmt_us(a), fmt_us(b), b / a),
            b <= a * 1.10,
        );
    }
    if let Some(best) = rep.gh_append_best {
        rep.target(
            "durable append at least 50k events/s with group commit (best of 1/16/256 writers)",
            fmt_rate(best, "events"),
            best >= 50_000.0,
        );
    }
    if let Some((g, _, s)) = rep.newest_1m {
        rep.target(
            "newest-100 at least 5x faster than SQLite keyset (p50 at 1M)",
            format!("{:.2}x ({} vs {})", s / g, fmt_us(g), fmt_us(s)),
            s / g >= 5.0,
        );
    }
    if let Some((g, s)) = rep.gh_append_256 {
        rep.target(
            "durable append at least 2x SQLite FULL with batching (256 writers)",
            format!(
                "{:.2}x ({} vs {})",
                g / s,
                fmt_rate(g, "events"),
                fmt_rate(s, "events")
            ),
            g / s >= 2.0,
        );
    }
    if let Some((g, s)) = rep.bytes_1m {
        rep.target(
            "file no larger than SQLite's (1M events)",
            format!("{g:.0} vs {s:.0} bytes/event"),
            g <= s,
        );
    }
}

/// Validates the picked sessions in turn until `stop` is set, asserting each
/// is live, and returns the latency distribution: the reader that runs beside
/// a sweep, for either store.
fn validate_until(stop: &AtomicBool, picks: &[usize], validate: impl Fn(usize) -> bool) -> Lat {
    let mut lats = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let live = validate(picks[i % picks.len()]);
        lats.push(t.elapsed());
        assert!(live);
        i += 1;
    }
    Lat::of(&mut lats)
}
