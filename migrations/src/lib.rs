//! Numbered, append-only schema steps for the gatehouse database.
//!
//! Each step lives in its own module, defines the tables exactly as they were at
//! its version, and never changes after it has shipped: a database written by any
//! past release must upgrade through the same code it would have met then. The
//! current table definitions used by the server live in `gatehouse::store::tables`;
//! this crate only knows enough to move a file from one version to the next.
//!
//! The schema version is stored in the `meta` table under [`VERSION_KEY`] as a
//! big-endian `u32`. A file without it is empty (version 0). All pending steps run
//! in one write transaction, so an upgrade either completes or leaves the file as
//! it was.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

mod v0001_initial;
mod v0002_kind_index_and_bans;
mod v0003_compact_audit;
mod v0004_access_denied_kind;
mod v0005_access_tokens;
mod v0006_second_factors;
mod v0007_bound_enrollment;
mod v0008_proxy_closed_kind;
mod v0009_oidc;

pub mod postgres;

pub use v0003_compact_audit::KIND_CODES;
pub use v0004_access_denied_kind::NEW_KIND_CODES as KIND_CODES_V4;
pub use v0005_access_tokens::NEW_KIND_CODES as KIND_CODES_V5;
pub use v0006_second_factors::NEW_KIND_CODES as KIND_CODES_V6;
pub use v0008_proxy_closed_kind::NEW_KIND_CODES as KIND_CODES_V8;
pub use v0009_oidc::NEW_KIND_CODES as KIND_CODES_V9;

/// The `meta` table: small named values (schema version, audit chain state).
/// Its definition is the one table every version shares.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Key under which the schema version is stored in [`META`].
pub const VERSION_KEY: &str = "schema_version";

/// The newest schema this build understands.
pub const LATEST: u32 = 9;

/// One schema step: from `version - 1` to `version`.
struct Step {
    version: u32,
    name: &'static str,
    apply: fn(&WriteTransaction) -> Result<(), MigrationError>,
}

/// Every step, in order. Append only.
const STEPS: &[Step] = &[
    Step {
        version: 1,
        name: "initial sessions and audit tables",
        apply: v0001_initial::apply,
    },
    Step {
        version: 2,
        name: "audit index by kind, bans table",
        apply: v0002_kind_index_and_bans::apply,
    },
    Step {
        version: 3,
        name: "one-byte audit kinds, 8-byte chain links, fixed-width kind index",
        apply: v0003_compact_audit::apply,
    },
    Step {
        version: 4,
        name: "audit kind access.denied",
        apply: v0004_access_denied_kind::apply,
    },
    Step {
        version: 5,
        name: "access tokens and their audit kinds",
        apply: v0005_access_tokens::apply,
    },
    Step {
        version: 6,
        name: "second factors, pending sign-ins, session methods",
        apply: v0006_second_factors::apply,
    },
    Step {
        version: 7,
        name: "enrollments bound to their sign-in, tokens' two-factor flag, pending sign-ins by user",
        apply: v0007_bound_enrollment::apply,
    },
    Step {
        version: 8,
        name: "audit kind proxy.closed",
        apply: v0008_proxy_closed_kind::apply,
    },
    Step {
        version: 9,
        name: "OpenID Connect codes, grants, tokens, consents, subjects, logout notices and signing keys; audit kinds oidc.*",
        apply: v0009_oidc::apply,
    },
];

/// Why a schema could not be read or upgraded.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The file was written by a newer gatehouse.
    #[error(
        "database schema version {found} is newer than this build supports (version {supported}); \
         upgrade gatehouse or restore a backup made by this version"
    )]
    Newer { found: u32, supported: u32 },
    /// The stored version is not a valid version number.
    #[error("database schema version is unreadable ({0} bytes instead of 4)")]
    BadVersion(usize),
    /// A stored record could not be decoded while upgrading.
    #[error("record in table {table} could not be decoded during upgrade: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// redb failed.
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MigrationError {
            fn from(e: $t) -> Self { MigrationError::Storage(e.into()) }
        }
    )*};
}
storage_from!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// Version found in the file (0 for a new file).
    pub from: u32,
    /// Version the file is at now.
    pub to: u32,
}

/// Reads the schema version from a write transaction (0 when absent).
pub fn version_in(txn: &WriteTransaction) -> Result<u32, MigrationError> {
    let meta = txn.open_table(META)?;
    let v = meta.get(VERSION_KEY)?.map(|g| g.value().to_vec());
    decode_version(v)
}

/// Reads the schema version of a database opened read-only (0 when absent).
pub fn version_of(db: &impl ReadableDatabase) -> Result<u32, MigrationError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let v = meta.get(VERSION_KEY)?.map(|g| g.value().to_vec());
    decode_version(v)
}

fn decode_version(raw: Option<Vec<u8>>) -> Result<u32, MigrationError> {
    match raw {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 4] = b
                .as_slice()
                .try_into()
                .map_err(|_| MigrationError::BadVersion(b.len()))?;
            Ok(u32::from_be_bytes(arr))
        }
    }
}

/// Brings the database to [`LATEST`] in one write transaction.
pub fn migrate(db: &Database) -> Result<Upgrade, MigrationError> {
    migrate_to(db, LATEST)
}

/// Brings the database to `target` (at most [`LATEST`]) in one write transaction.
/// Tests use a lower target to write fixtures of an older version.
pub fn migrate_to(db: &Database, target: u32) -> Result<Upgrade, MigrationError> {
    let target = target.min(LATEST);
    let txn = db.begin_write()?;
    let from = version_in(&txn)?;
    if from > LATEST {
        return Err(MigrationError::Newer {
            found: from,
            supported: LATEST,
        });
    }
    if from >= target {
        txn.abort()?;
        return Ok(Upgrade { from, to: from });
    }
    for step in STEPS
        .iter()
        .filter(|s| s.version > from && s.version <= target)
    {
        (step.apply)(&txn)?;
    }
    txn.open_table(META)?
        .insert(VERSION_KEY, target.to_be_bytes().as_slice())?;
    txn.commit()?;
    Ok(Upgrade { from, to: target })
}

/// The steps this build knows, as `(version, name)`, for diagnostics.
pub fn steps() -> impl Iterator<Item = (u32, &'static str)> {
    STEPS.iter().map(|s| (s.version, s.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn new_file_goes_to_latest_and_is_idempotent() {
        let (_d, db) = temp_db();
        assert_eq!(
            migrate(&db).unwrap(),
            Upgrade {
                from: 0,
                to: LATEST
            }
        );
        assert_eq!(
            migrate(&db).unwrap(),
            Upgrade {
                from: LATEST,
                to: LATEST
            }
        );
        assert_eq!(version_of(&db).unwrap(), LATEST);
    }

    #[test]
    fn newer_file_is_refused_naming_both_versions() {
        let (_d, db) = temp_db();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(VERSION_KEY, 99u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
        let err = migrate(&db).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("99") && msg.contains(&LATEST.to_string()),
            "{msg}"
        );
    }

    #[test]
    fn steps_are_numbered_without_gaps() {
        let versions: Vec<u32> = steps().map(|(v, _)| v).collect();
        assert_eq!(versions, (1..=LATEST).collect::<Vec<_>>());
    }
}
