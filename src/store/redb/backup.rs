//! Consistent snapshot backups: every table copied from ONE read transaction
//! into a new database file beside the destination, fsynced, checked
//! (integrity and hash chain), then atomically renamed into place.
//!
//! The live file is never copied byte for byte: a copy taken while the server
//! commits is usually corrupt. A read transaction is a snapshot, so the server
//! keeps writing while the backup runs and the copy reflects one instant.

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, Value,
};

use super::tables::*;
use super::{Store, StoreOptions};
use crate::store::error::StoreError;
use crate::store::reports::CheckReport;

/// Rows copied per write transaction of the new file.
pub const BACKUP_CHUNK_ROWS: usize = 10_000;

/// The name of every table a backup copies, from their definitions. A table
/// in the file that is not listed here makes the backup fail rather than
/// silently leave it out.
fn known_tables() -> [&'static str; 29] {
    [
        META.name(),
        SESSIONS.name(),
        SESSIONS_BY_USER.name(),
        SESSIONS_BY_EXPIRY.name(),
        EVENTS.name(),
        EVENTS_BY_USER.name(),
        EVENTS_BY_KIND.name(),
        BANS.name(),
        FACTORS.name(),
        PASSKEYS_BY_CREDENTIAL.name(),
        PENDING.name(),
        PENDING_BY_EXPIRY.name(),
        PENDING_BY_USER.name(),
        ACCESS_TOKENS.name(),
        ACCESS_TOKENS_BY_USER.name(),
        ACCESS_TOKENS_BY_EXPIRY.name(),
        OIDC_CODES.name(),
        OIDC_CODES_BY_EXPIRY.name(),
        OIDC_CODES_BY_SESSION.name(),
        OIDC_GRANTS.name(),
        OIDC_GRANTS_BY_EXPIRY.name(),
        OIDC_GRANTS_BY_SESSION.name(),
        OIDC_GRANTS_BY_USER.name(),
        OIDC_TOKENS.name(),
        OIDC_CONSENTS.name(),
        OIDC_SUBJECTS.name(),
        OIDC_LOGOUTS.name(),
        OIDC_LOGOUTS_DUE.name(),
        OIDC_SIGNING_KEYS.name(),
    ]
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Where the snapshot now is.
    pub path: PathBuf,
    /// Size of the snapshot file in bytes.
    pub bytes: u64,
    /// Rows copied, all tables together (indexes and meta included).
    pub rows: u64,
    /// The check run on the reopened snapshot: counts and chain head.
    pub check: CheckReport,
}

/// Why a backup failed. The destination is left untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write the backup at {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("backup failed: {0}")]
    Store(#[from] StoreError),
    /// The new file did not pass the check; it was removed.
    #[error(
        "the backup did not pass its check ({problems} problems, first: {first}); nothing was written to the destination"
    )]
    CheckFailed { problems: usize, first: String },
    /// The source holds a table this build does not know how to copy.
    #[error(
        "the database holds table {0:?}, unknown to this build; upgrade gatehouse before backing it up"
    )]
    UnknownTable(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `DEST` plus a suffix, in the same directory so the final rename is atomic.
fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "gatehouse-backup".into());
    name.push(format!(".{}.redb.tmp", std::process::id()));
    dest.with_file_name(name)
}

/// Fsyncs a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Copies one table from the snapshot in chunks of [`BACKUP_CHUNK_ROWS`] rows,
/// one write transaction each. Intermediate commits are not durable; the
/// caller's final commit is.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &Database,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let table = src.open_table(def)?;
    let mut rows = table.iter()?;
    let mut copied = 0u64;
    loop {
        let mut txn = dst.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut n = 0usize;
        {
            let mut out = txn.open_table(def)?;
            for row in rows.by_ref() {
                let (k, v) = row?;
                out.insert(k.value(), v.value())?;
                n += 1;
                if n == BACKUP_CHUNK_ROWS {
                    break;
                }
            }
        }
        txn.commit()?;
        copied += n as u64;
        if n < BACKUP_CHUNK_ROWS {
            return Ok(copied);
        }
    }
}

fn copy_all(src: &ReadTransaction, dst: &Database) -> Result<u64, BackupError> {
    for t in src.list_tables().map_err(StoreError::from)? {
        if !known_tables().contains(&t.name()) {
            return Err(BackupError::UnknownTable(t.name().to_string()));
        }
    }
    let mut rows = 0;
    rows += copy_table(src, dst, META)?;
    rows += copy_table(src, dst, SESSIONS)?;
    rows += copy_table(src, dst, SESSIONS_BY_USER)?;
    rows += copy_table(src, dst, SESSIONS_BY_EXPIRY)?;
    rows += copy_table(src, dst, EVENTS)?;
    rows += copy_table(src, dst, EVENTS_BY_USER)?;
    rows += copy_table(src, dst, EVENTS_BY_KIND)?;
    rows += copy_table(src, dst, BANS)?;
    // Second factors as stored: TOTP secrets sealed with a key that lives
    // beside the database, never in it, so the copy holds none readable.
    rows += copy_table(src, dst, FACTORS)?;
    rows += copy_table(src, dst, PASSKEYS_BY_CREDENTIAL)?;
    rows += copy_table(src, dst, PENDING)?;
    rows += copy_table(src, dst, PENDING_BY_EXPIRY)?;
    rows += copy_table(src, dst, PENDING_BY_USER)?;
    // Tokens are stored only as hashes: the copy holds no live token.
    rows += copy_table(src, dst, ACCESS_TOKENS)?;
    rows += copy_table(src, dst, ACCESS_TOKENS_BY_USER)?;
    rows += copy_table(src, dst, ACCESS_TOKENS_BY_EXPIRY)?;
    // The OpenID Connect state: codes and tokens as hashes, signing keys
    // sealed with the key beside the database.
    rows += copy_table(src, dst, OIDC_CODES)?;
    rows += copy_table(src, dst, OIDC_CODES_BY_EXPIRY)?;
    rows += copy_table(src, dst, OIDC_CODES_BY_SESSION)?;
    rows += copy_table(src, dst, OIDC_GRANTS)?;
    rows += copy_table(src, dst, OIDC_GRANTS_BY_EXPIRY)?;
    rows += copy_table(src, dst, OIDC_GRANTS_BY_SESSION)?;
    rows += copy_table(src, dst, OIDC_GRANTS_BY_USER)?;
    rows += copy_table(src, dst, OIDC_TOKENS)?;
    rows += copy_table(src, dst, OIDC_CONSENTS)?;
    rows += copy_table(src, dst, OIDC_SUBJECTS)?;
    rows += copy_table(src, dst, OIDC_LOGOUTS)?;
    rows += copy_table(src, dst, OIDC_LOGOUTS_DUE)?;
    rows += copy_table(src, dst, OIDC_SIGNING_KEYS)?;
    // One durable commit seals everything the chunks wrote.
    let txn = dst.begin_write().map_err(StoreError::from)?;
    txn.commit().map_err(StoreError::from)?;
    Ok(rows)
}

impl Store {
    /// Writes a consistent snapshot of the whole database to `dest`.
    ///
    /// Reads every table from one read transaction (the server keeps writing
    /// meanwhile), writes a new file beside `dest`, fsyncs it, reopens it and
    /// runs [`Store::check`] on it, then renames it over `dest` and fsyncs the
    /// directory. On any failure the temporary file is removed and `dest` is
    /// left as it was.
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport, BackupError> {
        let dest = dest.as_ref();
        let tmp = temp_path(dest);
        let result = self.backup_via(dest, &tmp);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn backup_via(&self, dest: &Path, tmp: &Path) -> Result<BackupReport, BackupError> {
        let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
        if same(dest, self.path()) {
            return Err(io_err(dest, "the destination is the live database itself"));
        }
        if dest.is_dir() {
            return Err(io_err(
                dest,
                "the destination is a directory; name the file to write",
            ));
        }
        let _ = std::fs::remove_file(tmp);
        // Owner-only from the start: the copy holds the whole audit trail.
        super::create_private_file(tmp).map_err(|e| io_err(tmp, e))?;
        let snapshot = self.read()?;
        let rows = {
            let db = redb::Builder::new()
                .set_cache_size(super::DEFAULT_CACHE_BYTES)
                .create(tmp)
                .map_err(|e| io_err(tmp, e))?;
            let rows = copy_all(&snapshot, &db)?;
            db.close().map_err(StoreError::from)?;
            rows
        };
        drop(snapshot);
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(tmp, e))?;

        let copy =
            Store::open_read_only(tmp, &StoreOptions::default()).map_err(|e| io_err(tmp, e))?;
        let report = copy.check()?;
        copy.close()?;
        if !report.is_ok() {
            return Err(BackupError::CheckFailed {
                problems: report.problem_count,
                first: report.problems.first().cloned().unwrap_or_default(),
            });
        }
        std::fs::rename(tmp, dest).map_err(|e| io_err(dest, e))?;
        sync_dir(dest.parent().unwrap_or(Path::new("."))).map_err(|e| io_err(dest, e))?;
        let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport {
            path: dest.to_path_buf(),
            bytes,
            rows,
            check: report,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::redb::tests::temp_store;
    use crate::store::*;

    #[test]
    fn backup_copies_everything_and_checks() {
        let (dir, store) = temp_store();
        for i in 0..12_000u64 {
            if i % 4_000 == 0 {
                store
                    .apply(Op::CreateSession(crate::store::redb::tests::new_session(
                        "alice",
                        1_000 + i,
                    )))
                    .unwrap();
            }
        }
        let ops: Vec<Op> = (0..12_000u64)
            .map(|i| {
                Op::Append(
                    NewEvent::at(EventKind::LoginFailure, 1_000_000 + i)
                        .user(format!("u{}", i % 7)),
                )
            })
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
        let dest = dir.path().join("snap.redb");
        let report = store.backup_to(&dest).unwrap();
        assert!(report.check.is_ok(), "{:?}", report.check);
        let live = store.check().unwrap();
        assert_eq!(report.check.events, live.events);
        assert_eq!(report.check.sessions, live.sessions);
        assert_eq!(report.check.chain_head, live.chain_head);
        assert!(report.bytes > 0);
        // No temporary file is left beside the destination.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        // The snapshot opens for writing and accepts new events.
        drop(store);
        let restored = Store::open(&dest, &StoreOptions::default()).unwrap();
        restored
            .apply(Op::Append(NewEvent::at(
                EventKind::ServerStarted,
                9_000_000,
            )))
            .unwrap();
        assert!(restored.check().unwrap().is_ok());
    }

    #[test]
    fn backup_refuses_the_live_file_and_directories() {
        let (dir, store) = temp_store();
        let err = store.backup_to(store.path()).unwrap_err();
        assert!(err.to_string().contains("live database"), "{err}");
        let err = store.backup_to(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let err = store
            .backup_to(dir.path().join("no/such/dir/x.redb"))
            .unwrap_err();
        assert!(matches!(err, BackupError::Io { .. }), "{err}");
    }
}
