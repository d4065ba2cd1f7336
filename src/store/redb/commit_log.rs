//! The commit log: where a batch of audit appends becomes durable.
//!
//! A redb commit writes every page it dirtied (the event's bucket, the id
//! and kind indexes, the chain head, redb's own trees: about eight pages at
//! scattered offsets) before its one `fdatasync`. A batch of appends made
//! only of [`Op::Append`](super::Op) (and session touches, which may be
//! lost) is instead committed to redb without a sync (`Durability::None`)
//! and written here as one record at the end of this file, which is synced
//! once: one sequential write per acknowledgement, as a write-ahead log does.
//! The record is written and its sync started (on the sync thread,
//! `log_sync.rs`) before the database work of the batch, which runs while
//! the disk syncs; the batch is acknowledged once both are done, and a
//! record whose batch then fails is taken back ([`CommitLog::retract`]).
//! Every other batch commits durably, which makes everything before it
//! durable too, and so does a checkpoint ([`CHECKPOINT_BYTES`],
//! [`CHECKPOINT_AFTER`], or the writer going idle). After a durable commit
//! the log starts again at offset 0.
//!
//! **The file** is `<database>-log`, mode 0600. It is created filled with
//! zeros to twice a checkpoint's worth and never truncated: records
//! overwrite it in place, so that a sync flushes data and no file size. Each record:
//!
//! | field | bytes |
//! | --- | --- |
//! | magic `GHL1` | 4 |
//! | sequence number | 8, little-endian |
//! | salt | 8 |
//! | payload length | 4, little-endian |
//! | SHA-256 of the four fields above and the payload, first 16 bytes | 16 |
//! | payload: a [`LoggedBatch`] (postcard) | length |
//!
//! **Reading** starts at offset 0 and stops at the first record that is torn,
//! damaged, whose sequence number is not one more than the previous
//! record's, or whose salt is not the first record's. Every reset draws a
//! new salt, so records left behind by an earlier round end the read too.
//!
//! **Invariant:** every acknowledged append is either durable in redb or in
//! a record of this file that a read returns. A batch carries the chain head
//! after it: at open, batches whose head is not past the database's are
//! already durable and skipped; the others are applied again, and each must
//! end on exactly its logged head (same ids, same hashes), or the log does
//! not continue this database and the open fails rather than guess.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::encode;
use super::log_sync::Syncer;
use crate::store::chain::ChainHead;

/// A checkpoint is due once the log holds this many bytes.
pub const CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// A checkpoint is due this long after the first record since the last one.
pub const CHECKPOINT_AFTER: Duration = Duration::from_millis(250);
/// The writer checkpoints when no write has come for this long.
pub const IDLE_CHECKPOINT: Duration = Duration::from_millis(50);
/// The log is filled with zeros up to this size when it is created, so that
/// a record's sync flushes its data and no change of the file's size: a
/// checkpoint's worth, with room for the batch that makes it due.
const PREALLOCATED: u64 = 2 * CHECKPOINT_BYTES;
/// The most the log holds: past it (checkpoints failing while records
/// still write) batches commit durably instead, so the log and its replay
/// stay bounded.
const MAX_LOG_BYTES: u64 = 64 * CHECKPOINT_BYTES;
/// The largest record a read accepts: a batch of the writer's largest size
/// with every field at its stored bound is far smaller.
const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

const MAGIC: [u8; 4] = *b"GHL1";
const HEADER: usize = 4 + 8 + 8 + 4 + 16;
/// The header fields the checksum covers.
const SUMMED: usize = 4 + 8 + 8 + 4;

/// One appended event as redb stores it: the output of `chain::extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub id: u64,
    /// The `audit_by_kind` code.
    pub kind: u8,
    /// Empty for none.
    pub user: String,
    /// The stored record's bytes (`EventRecord::to_bytes`).
    pub record: Vec<u8>,
}

/// The appends of one batch, and the chain head they end on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedBatch {
    pub after: ChainHead,
    pub events: Vec<LoggedEvent>,
}

/// The open log of a writable store. Owned by the writer thread (through
/// the store's mutex); nothing else writes the file.
pub struct CommitLog {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    offset: u64,
    /// The next record's sequence number.
    next_seq: u64,
    /// The salt of this round's records (see the module's notes).
    salt: u64,
    /// When the first record since the last reset was written.
    since: Option<Instant>,
    /// Syncs the file beside the writer (`log_sync.rs`).
    syncer: Syncer,
    /// The length of the record written at `offset` whose sync was started
    /// and not yet confirmed by [`CommitLog::finish`].
    unconfirmed: Option<u64>,
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish()
    }
}

/// The log file of the database at `db`.
pub fn path_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-log");
    PathBuf::from(name)
}

impl CommitLog {
    /// Opens (creating, mode 0600) the log beside `db` and reads its records.
    /// The next record continues their sequence and goes after them; call
    /// [`CommitLog::reset`] once they are durable in the database.
    pub fn open(db: &Path) -> std::io::Result<(CommitLog, Vec<LoggedBatch>)> {
        let path = path_of(db);
        super::create_private_file(&path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let Records { batches, end, last } = read_records(&file)?;
        let size = file.metadata()?.len();
        if size < PREALLOCATED {
            // Zeros end a read as no record does (no magic).
            let zeros = vec![0u8; (PREALLOCATED - size) as usize];
            file.write_all_at(&zeros, size)?;
            file.sync_all()?;
        }
        let syncer = Syncer::spawn(file.try_clone()?)?;
        Ok((
            CommitLog {
                file,
                syncer,
                unconfirmed: None,
                path,
                offset: end,
                next_seq: last.map_or(1, |(seq, _)| seq + 1),
                salt: last.map_or_else(new_salt, |(_, salt)| salt),
                since: None,
            },
            batches,
        ))
    }

    /// The records of the log beside `db`, without opening it for writing;
    /// none when there is no log.
    pub fn read(db: &Path) -> std::io::Result<Vec<LoggedBatch>> {
        match File::open(path_of(db)) {
            Ok(f) => Ok(read_records(&f)?.batches),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `batch` as the next record and syncs it. When this returns
    /// `Ok`, the batch survives a crash of the process or the machine.
    #[cfg(test)]
    pub fn append(&mut self, batch: &LoggedBatch) -> std::io::Result<()> {
        self.write(batch)?;
        self.finish()
    }

    /// Writes `batch` as the next record and starts its sync on the sync
    /// thread, so that the caller can work meanwhile. The record counts only
    /// once [`CommitLog::finish`] returns `Ok`; until then the caller either
    /// finishes it or takes it back with [`CommitLog::retract`]. A record
    /// that is neither may still be read after a crash (a batch that was
    /// never acknowledged but is whole, which a replay may apply).
    pub fn write(&mut self, batch: &LoggedBatch) -> std::io::Result<()> {
        if self.unconfirmed.is_some() {
            return Err(std::io::Error::other(
                "the previous commit log record is not finished",
            ));
        }
        let payload = encode(batch);
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| std::io::Error::other("commit log record too large"))?;
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&MAGIC);
        rec.extend_from_slice(&self.next_seq.to_le_bytes());
        rec.extend_from_slice(&self.salt.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        let sum = checksum(&rec, &payload);
        rec.extend_from_slice(&sum);
        rec.extend_from_slice(&payload);
        self.file.write_all_at(&rec, self.offset)?;
        self.syncer.start()?;
        self.unconfirmed = Some(rec.len() as u64);
        Ok(())
    }

    /// Waits for the sync of the record [`CommitLog::write`] wrote. On `Ok`
    /// the record is durable and the next one goes after it; on `Err` the
    /// next one overwrites it, with the same sequence number.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let Some(len) = self.unconfirmed.take() else {
            return Err(std::io::Error::other("no commit log record to finish"));
        };
        self.syncer.wait()?;
        self.offset += len;
        self.next_seq += 1;
        self.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Takes back the record [`CommitLog::write`] wrote (its batch did not
    /// reach the database): once its sync is over, its magic is zeroed and
    /// synced, so that no read returns it, and the next record goes in its
    /// place. On `Err` the record may still be read after a crash.
    pub fn retract(&mut self) -> std::io::Result<()> {
        if self.unconfirmed.take().is_none() {
            return Ok(());
        }
        // Its result does not matter: the record is unwritten either way.
        let _ = self.syncer.wait();
        self.file.write_all_at(&[0u8; 4], self.offset)?;
        self.file.sync_data()
    }

    /// Whether records were written since the last reset.
    pub fn is_dirty(&self) -> bool {
        self.since.is_some()
    }

    /// Whether the log holds [`MAX_LOG_BYTES`] or more: no record more
    /// until a checkpoint succeeds.
    pub fn is_full(&self) -> bool {
        self.offset >= MAX_LOG_BYTES
    }

    /// Whether a checkpoint is due by size or age.
    pub fn checkpoint_due(&self) -> bool {
        self.offset >= CHECKPOINT_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= CHECKPOINT_AFTER)
    }

    /// Starts the log again at offset 0, once everything in it is durable in
    /// the database. Nothing is written: the next record overwrites the
    /// first, and its sequence number ends a read before the older ones.
    pub fn reset(&mut self) {
        debug_assert!(self.unconfirmed.is_none(), "reset with a record in flight");
        self.offset = 0;
        self.since = None;
        self.salt = new_salt();
    }
}

fn new_salt() -> u64 {
    // Only needs to differ from the previous round's; a clock fallback
    // keeps the log working if the system's generator fails.
    getrandom::u64().unwrap_or_else(|_| crate::store::now_us())
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(&header[..SUMMED]);
    h.update(payload);
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Reads records from offset 0 up to the first that is missing, torn,
/// damaged, out of sequence or of another round.
fn read_records(file: &File) -> std::io::Result<Records> {
    let size = file.metadata()?.len();
    let mut batches = Vec::new();
    let (mut offset, mut last) = (0u64, None::<(u64, u64)>);
    let mut head = [0u8; HEADER];
    while offset + HEADER as u64 <= size {
        file.read_exact_at(&mut head, offset)?;
        if head[..4] != MAGIC {
            break;
        }
        let seq = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
        let salt = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[20..24].try_into().expect("4 bytes"));
        if last.is_some_and(|(l, s)| seq != l + 1 || salt != s) || len > MAX_PAYLOAD {
            break;
        }
        let end = offset + HEADER as u64 + u64::from(len);
        if end > size {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        file.read_exact_at(&mut payload, offset + HEADER as u64)?;
        if checksum(&head, &payload) != head[SUMMED..] {
            break;
        }
        let Ok(batch) = postcard::from_bytes::<LoggedBatch>(&payload) else {
            break;
        };
        batches.push(batch);
        last = Some((seq, salt));
        offset = end;
    }
    Ok(Records {
        batches,
        end: offset,
        last,
    })
}

/// What a read of the log found.
struct Records {
    batches: Vec<LoggedBatch>,
    /// The offset after the last record read.
    end: u64,
    /// The last record's sequence number and salt.
    last: Option<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u64) -> LoggedBatch {
        LoggedBatch {
            after: ChainHead {
                last_id: n,
                hash: [n as u8; 32],
                appended: n,
            },
            events: vec![LoggedEvent {
                id: n,
                kind: 1,
                user: format!("user{n}"),
                record: vec![n as u8; 40 + n as usize],
            }],
        }
    }

    #[test]
    fn records_read_back_in_order_and_continue_their_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.redb");
        let (mut log, got) = CommitLog::open(&db).unwrap();
        assert!(got.is_empty());
        for n in 1..=3 {
            log.append(&batch(n)).unwrap();
        }
        drop(log);
        let (mut log, got) = CommitLog::open(&db).unwrap();
        assert_eq!(got, vec![batch(1), batch(2), batch(3)]);
        log.append(&batch(4)).unwrap();
        assert_eq!(CommitLog::read(&db).unwrap().len(), 4);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path_of(&db))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_reset_hides_the_older_records_behind_the_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.redb");
        let (mut log, _) = CommitLog::open(&db).unwrap();
        for n in 1..=5 {
            log.append(&batch(n)).unwrap();
        }
        log.reset();
        assert_eq!(
            CommitLog::read(&db).unwrap().len(),
            5,
            "a reset writes nothing"
        );
        log.append(&batch(1)).unwrap();
        // The record now at offset 0 is of a new round; the old second
        // record no longer follows it.
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1)]);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.redb");
        let (mut log, _) = CommitLog::open(&db).unwrap();
        for n in 1..=3 {
            log.append(&batch(n)).unwrap();
        }
        drop(log);
        let p = path_of(&db);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, PREALLOCATED, "created at its full size");
        let len = |n| HEADER + encode(&batch(n)).len();
        let end = len(1) + len(2) + len(3);
        // Torn: the last record's end never written.
        let mut torn = bytes.clone();
        torn[end - 3..end].fill(0);
        std::fs::write(&p, &torn).unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1), batch(2)]);
        // Cut short: a file that ends inside the last record.
        std::fs::write(&p, &bytes[..end - 3]).unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1), batch(2)]);
        // Damaged: one byte of the second record's payload flipped.
        let mut damaged = bytes.clone();
        damaged[len(1) + HEADER + 2] ^= 0x40;
        std::fs::write(&p, &damaged).unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1)]);
        // A new record after a damaged one goes where the read stopped.
        let (mut log, got) = CommitLog::open(&db).unwrap();
        assert_eq!(got, vec![batch(1)]);
        log.append(&batch(9)).unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1), batch(9)]);
    }

    #[test]
    fn a_retracted_record_is_never_read_and_the_next_takes_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.redb");
        let (mut log, _) = CommitLog::open(&db).unwrap();
        log.append(&batch(1)).unwrap();
        log.write(&batch(2)).unwrap();
        assert!(
            log.write(&batch(3)).is_err(),
            "one record in flight at a time"
        );
        log.retract().unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1)]);
        log.write(&batch(3)).unwrap();
        log.finish().unwrap();
        assert_eq!(CommitLog::read(&db).unwrap(), vec![batch(1), batch(3)]);
        assert!(log.finish().is_err(), "nothing left to finish");
    }

    #[test]
    fn no_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            CommitLog::read(&dir.path().join("none.redb"))
                .unwrap()
                .is_empty()
        );
    }
}
