//! How redb's errors become the store's: I/O errors stay I/O errors (the
//! writer reopens the file after one), everything else is carried as its
//! message.

use std::path::Path;

use crate::store::error::{OpenError, QueryError, StoreError};

pub(super) fn open_error(path: &Path, e: redb::DatabaseError) -> OpenError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            OpenError::Locked(path.display().to_string())
        }
        redb::DatabaseError::RepairAborted => OpenError::NeedsRepair(path.display().to_string()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::NotFound =>
        {
            OpenError::Missing(path.display().to_string())
        }
        other => OpenError::Other {
            store: path.display().to_string(),
            reason: other.to_string(),
        },
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            // `Backend`: a storage backend's failure that is not an
            // `io::Error` (none of ours): a failing device all the same.
            redb::StorageError::Io(_)
            | redb::StorageError::Backend(_)
            | redb::StorageError::PreviousIo => StoreError::Io(e.to_string()),
            other => StoreError::Storage(other.to_string()),
        }
    }
}

/// The errors that wrap a [`redb::StorageError`] keep its I/O classification.
macro_rules! storage_from {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(s) => s.into(),
                    other => StoreError::Storage(other.to_string()),
                }
            }
        }
    )*};
}
storage_from!(
    TableError,
    TransactionError,
    CommitError,
    DatabaseError,
    CompactionError
);

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(_) | redb::Error::Backend(_) | redb::Error::PreviousIo => {
                StoreError::Io(e.to_string())
            }
            other => StoreError::Storage(other.to_string()),
        }
    }
}

impl From<gatehouse_migrations::MigrationError> for StoreError {
    fn from(e: gatehouse_migrations::MigrationError) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<redb::StorageError> for QueryError {
    fn from(e: redb::StorageError) -> Self {
        QueryError::Store(e.into())
    }
}
