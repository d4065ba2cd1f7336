//! The load shapes the figures run (closed loop, fixed count, open loop),
//! the validating reader that runs beside a sweep, and small file and store
//! helpers.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse::store::{Store, StoreOptions, now_us};
use gatehouse_benches::stats::Lat;
use tokio::runtime::Runtime;

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type Job<T> = Arc<dyn Fn(usize) -> BoxFut<T> + Send + Sync>;

/// `conc` tasks each run `job` back to back until `dur` has passed. Returns
/// operations done, elapsed time (until the last task finished) and latencies.
pub fn closed_loop(rt: &Runtime, conc: usize, dur: Duration, job: Job<()>) -> (u64, Duration, Lat) {
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
pub fn fixed_loop<T: Send + 'static>(
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
pub fn open_loop(rt: &Runtime, per_ms: usize, secs: u64, job: Job<()>) -> Lat {
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
pub fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The disk space a file occupies: its allocated blocks. redb grows its file
/// by doubling (up to 4 GiB regions) with `set_len`, which leaves the
/// not-yet-written tail sparse, so the length overstates what the disk holds.
pub fn disk_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// redb page cache of the store under test: the same memory as SQLite's
/// `cache_size` in `compare/sqlite.rs`, so neither side wins by caching more.
pub const STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;

pub fn open_store(p: &Path) -> Store {
    let opts = StoreOptions {
        cache_bytes: STORE_CACHE_BYTES,
        ..StoreOptions::default()
    };
    Store::open(p, &opts).expect("open store")
}

pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[{}] {}", clock(), msg.as_ref());
}

fn clock() -> String {
    let s = now_us() / 1_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// Validates the picked sessions in turn until `stop` is set, asserting each
/// is live, and returns the latency distribution: the reader that runs beside
/// a sweep, for either store.
pub fn validate_until(stop: &AtomicBool, picks: &[usize], validate: impl Fn(usize) -> bool) -> Lat {
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
