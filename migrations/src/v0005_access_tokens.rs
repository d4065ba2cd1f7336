//! Schema 5: personal access tokens, and the audit kinds that record them
//! (`token.created` 17, `token.revoked` 18, `token.expired` 19, `token.used`
//! 20). Three new tables, empty at upgrade; no existing row is rewritten.
//!
//! Frozen. New tables as of version 5:
//! - `access_tokens`: SHA-256 of the token (domain separated from session
//!   tokens) -> postcard token record
//! - `access_tokens_by_user`: `(user, created ms, token hash)` -> `()`
//! - `access_tokens_by_expiry`: `(expires ms, token hash)` -> `()`
//!
//! The token itself is never stored, so a copied file holds no live token.

use redb::{TableDefinition, WriteTransaction};

use crate::MigrationError;

const ACCESS_TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("access_tokens");
const ACCESS_TOKENS_BY_USER: TableDefinition<(&str, u64, [u8; 32]), ()> =
    TableDefinition::new("access_tokens_by_user");
const ACCESS_TOKENS_BY_EXPIRY: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("access_tokens_by_expiry");

/// The kind names and codes schema 5 adds.
pub const NEW_KIND_CODES: [(&str, u8); 4] = [
    ("token.created", 17),
    ("token.revoked", 18),
    ("token.expired", 19),
    ("token.used", 20),
];

pub fn apply(txn: &WriteTransaction) -> Result<(), MigrationError> {
    txn.open_table(ACCESS_TOKENS)?;
    txn.open_table(ACCESS_TOKENS_BY_USER)?;
    txn.open_table(ACCESS_TOKENS_BY_EXPIRY)?;
    Ok(())
}
