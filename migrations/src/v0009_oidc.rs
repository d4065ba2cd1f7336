//! Schema 9: the OpenID Connect provider's state, and the audit kinds that
//! record it (`oidc.authorized` 28, `oidc.token` 29, `oidc.refreshed` 30,
//! `oidc.refresh_reused` 31, `oidc.revoked` 32, `oidc.consent` 33,
//! `oidc.logout_sent` 34). New tables, empty at upgrade; no existing row is
//! rewritten.
//!
//! Frozen. New tables as of version 9 (values are postcard records):
//! - `oidc_codes`: SHA-256 of the authorization code -> code record
//! - `oidc_codes_by_expiry`: `(expires ms, code hash)` -> `()`
//! - `oidc_codes_by_session`: `(session public id, expires ms, code hash)` -> `()`
//! - `oidc_grants`: grant id -> grant record
//! - `oidc_grants_by_expiry`: `(expires ms, grant id)` -> `()`
//! - `oidc_grants_by_session`: `(session public id, grant id)` -> `()`
//! - `oidc_grants_by_user`: `(user, client, grant id)` -> `()`
//! - `oidc_tokens`: SHA-256 of an access or refresh token -> token record
//! - `oidc_consents`: `(user, client)` -> consent record
//! - `oidc_subjects`: user -> `sub`
//! - `oidc_logouts`: notice id -> logout notice record
//! - `oidc_logouts_due`: `(not before ms, notice id)` -> `()`
//! - `oidc_signing_keys`: `kid` -> sealed signing key record
//!
//! Only hashes of codes and tokens are stored, so a copied file holds no
//! live one.

use redb::{TableDefinition, WriteTransaction};

use crate::MigrationError;

type Hash = [u8; 32];
type Id = [u8; 16];

const CODES: TableDefinition<Hash, &[u8]> = TableDefinition::new("oidc_codes");
const CODES_BY_EXPIRY: TableDefinition<(u64, Hash), ()> =
    TableDefinition::new("oidc_codes_by_expiry");
const CODES_BY_SESSION: TableDefinition<(Id, u64, Hash), ()> =
    TableDefinition::new("oidc_codes_by_session");
const GRANTS: TableDefinition<Id, &[u8]> = TableDefinition::new("oidc_grants");
const GRANTS_BY_EXPIRY: TableDefinition<(u64, Id), ()> =
    TableDefinition::new("oidc_grants_by_expiry");
const GRANTS_BY_SESSION: TableDefinition<(Id, Id), ()> =
    TableDefinition::new("oidc_grants_by_session");
const GRANTS_BY_USER: TableDefinition<(&str, &str, Id), ()> =
    TableDefinition::new("oidc_grants_by_user");
const TOKENS: TableDefinition<Hash, &[u8]> = TableDefinition::new("oidc_tokens");
const CONSENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("oidc_consents");
const SUBJECTS: TableDefinition<&str, &str> = TableDefinition::new("oidc_subjects");
const LOGOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("oidc_logouts");
const LOGOUTS_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("oidc_logouts_due");
const SIGNING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("oidc_signing_keys");

/// The kind names and codes schema 9 adds.
pub const NEW_KIND_CODES: [(&str, u8); 7] = [
    ("oidc.authorized", 28),
    ("oidc.token", 29),
    ("oidc.refreshed", 30),
    ("oidc.refresh_reused", 31),
    ("oidc.revoked", 32),
    ("oidc.consent", 33),
    ("oidc.logout_sent", 34),
];

pub fn apply(txn: &WriteTransaction) -> Result<(), MigrationError> {
    txn.open_table(CODES)?;
    txn.open_table(CODES_BY_EXPIRY)?;
    txn.open_table(CODES_BY_SESSION)?;
    txn.open_table(GRANTS)?;
    txn.open_table(GRANTS_BY_EXPIRY)?;
    txn.open_table(GRANTS_BY_SESSION)?;
    txn.open_table(GRANTS_BY_USER)?;
    txn.open_table(TOKENS)?;
    txn.open_table(CONSENTS)?;
    txn.open_table(SUBJECTS)?;
    txn.open_table(LOGOUTS)?;
    txn.open_table(LOGOUTS_DUE)?;
    txn.open_table(SIGNING_KEYS)?;
    Ok(())
}
