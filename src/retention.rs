//! Audit retention: removing events older than the retention period in bounded
//! batches, after appending them to a monthly archive so nothing is lost
//! silently.
//!
//! One batch (at most [`PRUNE_BATCH`] events, oldest first):
//! 1. read the oldest events below the cutoff (a read transaction);
//! 2. append them to `<archive>/audit-YYYY-MM.jsonl.zst` (UTC month of each
//!    event), one zstd frame per file per batch, and fsync the file;
//! 3. prune them through the store ([`AuditStore::prune`]): the events, their
//!    index entries and the chain anchor change in one atomic write.
//!
//! The archive is written and fsynced before the delete commits, so an event
//! is always in the database, the archive, or both. A crash between 2 and 3
//! archives that batch twice (the next pass writes it again): duplicates are
//! possible, losses are not. Archive files are JSON Lines (see [`crate::jsonl`])
//! in concatenated zstd frames: `zstdcat audit-2026-01.jsonl.zst | jq` reads
//! them. Cancelling the pass between batches is safe.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::{Event, EventId, EventKind, NewEvent};
use crate::store::{AuditStore, PruneReport, StoreError, WriteError};

/// Most events archived and removed per write transaction.
pub const PRUNE_BATCH: usize = 1_000;

/// zstd level of archive frames: fast, and still about 10x on audit JSON.
const ZSTD_LEVEL: i32 = 3;

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events removed from the database.
    pub pruned: u64,
    /// Events appended to archive files (0 without an archive directory).
    pub archived: u64,
    /// Archive files written to, in the order first written.
    pub archive_files: Vec<PathBuf>,
    /// Id of the newest event removed, if any was.
    pub through: Option<EventId>,
}

/// Why a retention pass stopped. Batches committed before the error stay done.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("cannot write the audit archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("retention: {0}")]
    Store(#[from] StoreError),
    #[error("retention: {0}")]
    Write(#[from] WriteError),
}

/// The id below which events are older than `retention` at `now_us`.
pub fn cutoff(now_us: u64, retention: Duration) -> EventId {
    let keep = u64::try_from(retention.as_micros()).unwrap_or(u64::MAX);
    EventId::from_micros(now_us.saturating_sub(keep))
}

/// The archive file holding events of the UTC month of `time_us`.
pub fn archive_path(dir: &Path, time_us: u64) -> PathBuf {
    let (y, m) = i64::try_from(time_us)
        .ok()
        .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
        .map(|ts| {
            let dt = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
            (dt.year(), dt.month())
        })
        .unwrap_or((1970, 1));
    dir.join(format!("audit-{y:04}-{m:02}.jsonl.zst"))
}

fn archive_err(path: &Path, e: impl std::fmt::Display) -> RetentionError {
    RetentionError::Archive {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Appends `frame` to `path` and fsyncs it. A failed write is cut back off so
/// the file stays a sequence of whole frames.
fn append_frame(path: &Path, frame: &[u8]) -> Result<(), RetentionError> {
    let existed = path.exists();
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    // Archived events hold names, addresses and user agents: owner-only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| archive_err(path, e))?;
    let len = f.metadata().map_err(|e| archive_err(path, e))?.len();
    if let Err(e) = f.write_all(frame).and_then(|_| f.sync_all()) {
        let _ = f.set_len(len);
        return Err(archive_err(path, e));
    }
    if !existed && let Some(dir) = path.parent() {
        crate::store::sync_dir(dir).map_err(|e| archive_err(dir, e))?;
    }
    Ok(())
}

/// Appends `events` (oldest first) to their monthly archive files, one zstd
/// frame per file, each fsynced. Returns the files written.
pub fn archive_events(dir: &Path, events: &[Event]) -> Result<Vec<PathBuf>, RetentionError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    // A new archive directory is owner-only; an existing one keeps its mode.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| archive_err(dir, e))?;
    let mut files = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let path = archive_path(dir, events[start].time_us);
        let mut end = start + 1;
        while end < events.len() && archive_path(dir, events[end].time_us) == path {
            end += 1;
        }
        let mut enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)
            .map_err(|e| archive_err(&path, e))?;
        for ev in &events[start..end] {
            crate::jsonl::write_event(&mut enc, ev).map_err(|e| archive_err(&path, e))?;
        }
        let frame = enc.finish().map_err(|e| archive_err(&path, e))?;
        append_frame(&path, &frame)?;
        files.push(path);
        start = end;
    }
    Ok(files)
}

/// Archives `events` (when an archive directory is given), noting the files
/// in `report`.
fn archive_batch(
    archive_dir: Option<&Path>,
    events: &[Event],
    report: &mut RetentionReport,
) -> Result<(), RetentionError> {
    if let Some(dir) = archive_dir {
        for f in archive_events(dir, events)? {
            if !report.archive_files.contains(&f) {
                report.archive_files.push(f);
            }
        }
        report.archived += events.len() as u64;
    }
    Ok(())
}

/// Adds one prune step to `report`.
fn record(report: &mut RetentionReport, r: PruneReport, expected: u64) {
    if r.pruned != expected {
        tracing::warn!(
            archived = expected,
            pruned = r.pruned,
            "retention removed a different number of events than it archived"
        );
    }
    report.pruned += r.pruned;
    report.through = r.through.or(report.through);
}

fn pruned_event(report: &RetentionReport, retention: Duration, now_us: u64) -> NewEvent {
    let mut ev = NewEvent::at(EventKind::RetentionPruned, now_us)
        .detail("pruned", report.pruned.to_string())
        .detail("retention_days", (retention.as_secs() / 86_400).to_string());
    if let Some(t) = report.through {
        ev = ev.detail("through_id", t.to_string());
    }
    if report.archived > 0 {
        ev = ev.detail("archived", report.archived.to_string());
    }
    ev
}

/// One retention pass through the store's interface: archives (when
/// `archive_dir` is given) and removes every event older than `retention`
/// at `now_us`, in batches of [`PRUNE_BATCH`], each archived and fsynced
/// (on the blocking pool) before its prune is submitted. Records one
/// `retention.pruned` event when anything was removed.
pub async fn run_retention<S: AuditStore>(
    store: &S,
    archive_dir: Option<&Path>,
    retention: Duration,
    now_us: u64,
) -> Result<RetentionReport, RetentionError> {
    let cut = cutoff(now_us, retention);
    let mut report = RetentionReport::default();
    loop {
        let events = store.oldest_events(cut, PRUNE_BATCH).await?;
        let Some(through) = events.last().map(|e| e.id) else {
            break;
        };
        let n = events.len() as u64;
        let dir = archive_dir.map(Path::to_path_buf);
        let mut r = std::mem::take(&mut report);
        report = tokio::task::spawn_blocking(move || {
            archive_batch(dir.as_deref(), &events, &mut r).map(|()| r)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("retention task failed: {e}")))??;
        let pruned = store.prune(through, PRUNE_BATCH).await?;
        record(&mut report, pruned, n);
    }
    if report.pruned > 0 {
        store
            .append(pruned_event(&report, retention, now_us))
            .await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::{RedbBackend, Store, StoreOptions, Writer};
    use crate::store::{Backend, BackendConfig, EventFilter, Op, StoreCheck, WriterConfig};
    use std::io::BufRead;

    const DAY_US: u64 = 86_400_000_000;

    fn read_archive(path: &Path) -> Vec<serde_json::Value> {
        let f = std::fs::File::open(path).unwrap();
        let dec = zstd::stream::Decoder::new(f).unwrap();
        std::io::BufReader::new(dec)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn archive_path_is_by_utc_month() {
        let d = Path::new("/a");
        // 2026-01-31T23:59:59Z and 2026-02-01T00:00:00Z.
        assert_eq!(
            archive_path(d, 1_769_903_999_000_000),
            Path::new("/a/audit-2026-01.jsonl.zst")
        );
        assert_eq!(
            archive_path(d, 1_769_904_000_000_000),
            Path::new("/a/audit-2026-02.jsonl.zst")
        );
        assert_eq!(cutoff(5, Duration::from_secs(1)), EventId(0));
    }

    #[test]
    fn pass_archives_then_prunes_and_keeps_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("g.redb"), &StoreOptions::default()).unwrap();
        let now = 1_769_904_000_000_000 + 40 * DAY_US; // mid-March 2026
        // 2,500 old events across January and February, then 10 recent ones.
        let start = 1_769_904_000_000_000 - 10 * DAY_US;
        let ops = (0..2_500u64)
            .map(|i| {
                Op::Append(
                    NewEvent::at(EventKind::LoginFailure, start + i * 600_000_000)
                        .user(format!("u{}", i % 3)),
                )
            })
            .chain((0..10u64).map(|i| Op::Append(NewEvent::at(EventKind::LoginSuccess, now - i))))
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
        let archive = dir.path().join("archive");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = rt.block_on(async {
            let (writer, task) = Writer::spawn(store.clone(), WriterConfig::default());
            let backend = RedbBackend::new(store.clone(), writer);
            let r = run_retention(
                &backend,
                Some(&archive),
                Duration::from_secs(30 * 86_400),
                now,
            )
            .await
            .unwrap();
            drop(backend);
            task.shutdown().await.unwrap();
            r
        });
        assert_eq!((report.pruned, report.archived), (2_500, 2_500));
        assert_eq!(report.archive_files.len(), 2);
        let lines: Vec<_> = report
            .archive_files
            .iter()
            .flat_map(|f| read_archive(f))
            .collect();
        assert_eq!(lines.len(), 2_500);
        assert!(lines.iter().all(|l| l["kind"] == "login.failure"));
        let check = store.check().unwrap();
        assert!(check.is_ok(), "{check:?}");
        assert_eq!((check.events, check.events_pruned), (11, 2_500));
        let marker = store
            .query_events(
                &EventFilter {
                    kinds: vec![EventKind::RetentionPruned],
                    ..Default::default()
                },
                10,
                None,
            )
            .unwrap();
        assert_eq!(marker.events.len(), 1);
        // A second pass, by a tool that opens the store itself, finds
        // nothing to do.
        let path = store.path().to_path_buf();
        store.close().unwrap();
        let (backend, task) = Backend::open(&BackendConfig::redb(path)).unwrap();
        let again = rt
            .block_on(run_retention(
                &backend,
                Some(&archive),
                Duration::from_secs(30 * 86_400),
                now,
            ))
            .unwrap();
        assert_eq!(again, RetentionReport::default());
        assert_eq!(rt.block_on(backend.stats()).unwrap().events, 11);
        rt.block_on(task.shutdown()).unwrap();
    }
}
