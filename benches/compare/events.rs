//! The event stores for figures 2, 3 and 9: one generated stream loaded
//! into gatehouse, SQLite and a JSONL file in steps up to each size, the bulk
//! append rate of that fill (figure 1), the query figures at each size
//! (`query.rs`), and figure 9, bytes on disk per event, with redb's own
//! accounting of where they go.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatehouse::store::Op;
use gatehouse_benches::figure::{APPEND, BYTES_ON_DISK, DEEP_PAGES, NEWEST_100};
use gatehouse_benches::report::{fmt_rate, short};
use gatehouse_benches::stats::Better;

use crate::Params;
use crate::data::{EventStream, GenEvent};
use crate::jsonl::{self, Jsonl};
use crate::loops::{disk_bytes, file_bytes, open_store, progress};
use crate::query::{deep_figure, query_figure};
use crate::report::{Report, Unit};
use crate::sqlite::{Sql, Sync as SqlSync};

pub fn figures(p: &Params, dir: &Path, rep: &mut Report, want: &dyn Fn(u8) -> bool) {
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
            if have.is_multiple_of(1_000_000) {
                progress(format!("  {} events", short(have)));
            }
        }
        js.flush();
        let label = short(size);
        if size == p.event_sizes[0] || size == *p.event_sizes.last().expect("sizes") {
            rep.row(
                APPEND,
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

        if want(NEWEST_100) {
            progress(format!(
                "figure {NEWEST_100}: newest 100 of one user at {label}"
            ));
            let p50s = query_figure(p, size, &store, &sql, &js, rg, rep);
            p50_by_size.push((size, p50s));
        }
        if want(DEEP_PAGES) && p.deep_at.contains(&size) {
            progress(format!("figure {DEEP_PAGES}: deep pagination at {label}"));
            deep_figure(size, &store, &sql, rep);
        }
        if want(BYTES_ON_DISK) {
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
                    BYTES_ON_DISK,
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
                    NEWEST_100,
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
    if want(BYTES_ON_DISK) && have <= 2_000_000 {
        let sql_b = disk_bytes(&sql_path);
        redb_diagnostics(&gh_path, have, sql_b, rep);
    }
}

/// Where gatehouse's bytes go: redb's own accounting of the closed file, then
/// the size after `Database::compact` (a diagnostic, not something the server
/// does).
fn redb_diagnostics(path: &Path, events: usize, sql_bytes: u64, rep: &mut Report) {
    progress(format!(
        "figure {BYTES_ON_DISK}: redb storage accounting and compaction"
    ));
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
    db.compact(redb::CompactionMode::Balanced).expect("compact");
    let took = t.elapsed();
    drop(db);
    let after = disk_bytes(path);
    rep.row(
        BYTES_ON_DISK,
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
