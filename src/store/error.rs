//! Error types of the store's interface, one per kind of operation, shared
//! by every backend. No backend type appears in them: a backend's own errors
//! are carried as their message, classified as I/O or not.

use std::sync::Arc;

/// Opening (and upgrading) the database failed. Each variant names the
/// store as the operator gave it (a redb file's path), for messages.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file does not exist (read-only opens never create one).
    #[error("no database at {0}")]
    Missing(String),
    /// Another process holds the file in a mode that excludes this open.
    #[error(
        "database {0} is locked by another process (a gatehouse server already runs on it, \
         or it was opened by an incompatible tool)"
    )]
    Locked(String),
    /// The file was written by a newer gatehouse.
    #[error(
        "database {store} has schema version {found}, newer than this build supports ({supported}); \
         upgrade gatehouse"
    )]
    Newer {
        store: String,
        found: u32,
        supported: u32,
    },
    /// A read-only open found an older schema that only a writer can upgrade.
    #[error(
        "database {store} has schema version {found}; this build needs {supported}. \
         Start `gatehouse serve` once to upgrade it"
    )]
    NeedsUpgrade {
        store: String,
        found: u32,
        supported: u32,
    },
    /// The file was not closed cleanly and a read-only open cannot repair it.
    #[error("database {0} needs recovery after an unclean shutdown; start `gatehouse serve` once")]
    NeedsRepair(String),
    #[error("cannot open database {store}: {reason}")]
    Other { store: String, reason: String },
}

/// A read or a write inside the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend reported an error other than I/O (a closed database, a bug).
    #[error("storage error: {0}")]
    Storage(String),
    /// Reading or writing the file failed (a full disk, a failing device).
    /// The redb backend then refuses every later operation on that handle, so
    /// its writer reopens the file before the next batch.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl StoreError {
    /// Whether the database handle must be reopened before it works again.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}

/// A pagination cursor could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("invalid cursor: not a cursor issued by this server")]
    Malformed,
    #[error("invalid cursor: it belongs to a different query (filters changed)")]
    Mismatch,
}

/// An audit query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A write submitted to the writer did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The writer has shut down (the server is stopping).
    #[error("the store is shutting down")]
    Closed,
    /// The writer queue is full and the caller asked not to wait.
    #[error("the store is busy")]
    Busy,
    /// A checked session creation was refused: the user's credentials
    /// changed after the password was checked. Nothing was stored.
    #[error("the user's credentials changed; no session was created")]
    CredentialsChanged,
    /// The batch holding this write failed to commit; nothing of it was stored.
    #[error("write failed: {0}")]
    Failed(Arc<StoreError>),
}
