//! Schema 7: factors added only by their own sign-in, tokens that know how
//! their session was signed in, and a cap on pending sign-ins per user.
//!
//! Frozen. Changes:
//! - `factors`: an unconfirmed TOTP enrollment now names the session or
//!   pending sign-in that began it (a trailing field of the enrollment).
//!   Enrollments in progress at the upgrade are dropped: nobody can be
//!   named as their owner, and the person enrolling starts again. Rows
//!   without one are unchanged.
//! - `access_tokens`: every record gains a trailing `two_factor` flag, set
//!   when the session that made the token had done a second factor. Tokens
//!   made before this version are recorded as one-factor.
//! - `pending_by_user`: `(user, created ms, hash)` -> `()`, an index of
//!   pending sign-ins by user so that each user's count can be capped,
//!   filled from the pending sign-ins stored at the upgrade.

use std::net::IpAddr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::MigrationError;

const FACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("factors");
const ACCESS_TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("access_tokens");
const PENDING: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("pending_signins");
const PENDING_BY_USER: TableDefinition<(&str, u64, [u8; 32]), ()> =
    TableDefinition::new("pending_by_user");

/// A user's factors as schema 6 stored them. With no enrollment in
/// progress, schema 7 stores the same bytes.
#[derive(Serialize, Deserialize)]
struct FactorsV6 {
    totp: Option<TotpV6>,
    totp_enrollment: Option<EnrollmentV6>,
    recovery: Vec<[u8; 32]>,
    passkeys: Vec<PasskeyV6>,
}

#[derive(Serialize, Deserialize)]
struct TotpV6 {
    sealed: Vec<u8>,
    enrolled_ms: u64,
    last_step: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct EnrollmentV6 {
    sealed: Vec<u8>,
    started_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct PasskeyV6 {
    id: [u8; 16],
    name: String,
    credential_id: Vec<u8>,
    credential: Vec<u8>,
    created_ms: u64,
    last_used_ms: Option<u64>,
}

#[derive(Deserialize)]
struct TokenV6 {
    public_id: [u8; 16],
    user: String,
    name: String,
    hint: String,
    domains: Vec<String>,
    created_ms: u64,
    expires_ms: u64,
    last_used_ms: Option<u64>,
    recent_ips: Vec<IpAddr>,
}

#[derive(Serialize)]
struct TokenV7 {
    public_id: [u8; 16],
    user: String,
    name: String,
    hint: String,
    domains: Vec<String>,
    created_ms: u64,
    expires_ms: u64,
    last_used_ms: Option<u64>,
    recent_ips: Vec<IpAddr>,
    two_factor: bool,
}

/// The fields of a schema-6 pending sign-in that its index needs.
#[derive(Deserialize)]
struct PendingV6 {
    user: String,
    _enroll: bool,
    _remember_me: bool,
    created_ms: u64,
}

fn corrupt(table: &'static str) -> impl Fn(postcard::Error) -> MigrationError {
    move |e| MigrationError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

pub fn apply(tx: &WriteTransaction) -> Result<(), MigrationError> {
    drop_enrollments(tx)?;
    flag_tokens(tx)?;
    index_pending(tx)
}

fn drop_enrollments(tx: &WriteTransaction) -> Result<(), MigrationError> {
    let mut factors = tx.open_table(FACTORS)?;
    // Collected first: one row per user with factors, far fewer than
    // sessions, and rows are rewritten in place.
    let mut rewrite = Vec::new();
    for row in factors.iter()? {
        let (k, v) = row?;
        let mut set: FactorsV6 = postcard::from_bytes(v.value()).map_err(corrupt("factors"))?;
        if set.totp_enrollment.take().is_some() {
            let bytes = postcard::to_stdvec(&set).map_err(corrupt("factors"))?;
            rewrite.push((k.value().to_string(), bytes));
        }
    }
    for (user, bytes) in rewrite {
        factors.insert(user.as_str(), bytes.as_slice())?;
    }
    Ok(())
}

/// Token records rewritten per pass.
const CHUNK: usize = 4_096;

fn flag_tokens(tx: &WriteTransaction) -> Result<(), MigrationError> {
    let mut tokens = tx.open_table(ACCESS_TOKENS)?;
    // Keys in order, a chunk at a time, each pass after the last key of
    // the one before.
    let mut after: Option<[u8; 32]> = None;
    loop {
        let range = match after {
            None => tokens.range(..)?,
            Some(k) => tokens.range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))?,
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in range.take(CHUNK) {
            let (k, v) = row?;
            chunk.push((k.value(), v.value().to_vec()));
        }
        let Some(last) = chunk.last().map(|(k, _)| *k) else {
            return Ok(());
        };
        for (key, bytes) in chunk {
            let old: TokenV6 = postcard::from_bytes(&bytes).map_err(corrupt("access_tokens"))?;
            let new = TokenV7 {
                public_id: old.public_id,
                user: old.user,
                name: old.name,
                hint: old.hint,
                domains: old.domains,
                created_ms: old.created_ms,
                expires_ms: old.expires_ms,
                last_used_ms: old.last_used_ms,
                recent_ips: old.recent_ips,
                two_factor: false,
            };
            let out = postcard::to_stdvec(&new).map_err(corrupt("access_tokens"))?;
            tokens.insert(key, out.as_slice())?;
        }
        after = Some(last);
    }
}

fn index_pending(tx: &WriteTransaction) -> Result<(), MigrationError> {
    let pending = tx.open_table(PENDING)?;
    let mut by_user = tx.open_table(PENDING_BY_USER)?;
    for row in pending.iter()? {
        let (k, v) = row?;
        let p: PendingV6 = postcard::from_bytes(v.value()).map_err(corrupt("pending_signins"))?;
        by_user.insert((p.user.as_str(), p.created_ms, k.value()), ())?;
    }
    Ok(())
}
