//! Version 1: sessions with user and expiry indexes; audit events with a user index.
//!
//! Frozen. Table layouts as of version 1:
//! - `sessions`: token hash `[u8; 32]` -> postcard session record
//! - `sessions_by_user`: `(user, created_ms, token hash)` -> `()`
//! - `sessions_by_expiry`: `(deadline_ms, token hash)` -> `()`
//! - `events`: event id `u64` -> postcard event record
//! - `events_by_user`: `(user, event id)` -> `()`
//! - `meta`: name -> bytes

use redb::{TableDefinition, WriteTransaction};

use crate::{META, MigrationError};

const SESSIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("sessions");
const SESSIONS_BY_USER: TableDefinition<(&str, u64, [u8; 32]), ()> =
    TableDefinition::new("sessions_by_user");
const SESSIONS_BY_EXPIRY: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("sessions_by_expiry");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_user");

pub(crate) fn apply(txn: &WriteTransaction) -> Result<(), MigrationError> {
    txn.open_table(META)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(SESSIONS_BY_USER)?;
    txn.open_table(SESSIONS_BY_EXPIRY)?;
    txn.open_table(EVENTS)?;
    txn.open_table(EVENTS_BY_USER)?;
    Ok(())
}
