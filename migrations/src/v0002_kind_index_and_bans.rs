//! Version 2: an audit index by event kind (backfilled from existing events) and
//! the `bans` table.
//!
//! Frozen. New tables as of version 2:
//! - `events_by_kind`: `(kind, event id)` -> `()`
//! - `bans`: subject key (`u:<user>` or `i:<ip>`) -> postcard ban record

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Deserialize;

use crate::MigrationError;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_BY_KIND: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_kind");
const BANS: TableDefinition<&str, &[u8]> = TableDefinition::new("bans");

/// The event record as it was written at versions 1 and 2. Only `kind` is read;
/// the other fields are declared so the layout is on record.
#[derive(Deserialize)]
#[allow(dead_code)]
struct EventRecordV1 {
    kind: String,
    user: Option<String>,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    session: Option<String>,
    details: Vec<(String, String)>,
    prev_hash: [u8; 32],
}

pub(crate) fn apply(txn: &WriteTransaction) -> Result<(), MigrationError> {
    txn.open_table(BANS)?;
    let events = txn.open_table(EVENTS)?;
    let mut by_kind = txn.open_table(EVENTS_BY_KIND)?;
    for row in events.iter()? {
        let (id, bytes) = row?;
        let rec: EventRecordV1 =
            postcard::from_bytes(bytes.value()).map_err(|e| MigrationError::Corrupt {
                table: "events",
                reason: format!("event {}: {e}", id.value()),
            })?;
        by_kind.insert((rec.kind.as_str(), id.value()), ())?;
    }
    Ok(())
}
