//! Schema 6: second factors.
//!
//! Frozen. Adds:
//! - `factors`: user name -> that user's enrolled factors (postcard; TOTP
//!   secrets sealed, recovery codes hashed, passkeys public);
//! - `passkeys_by_credential`: authenticator credential id -> user name, so
//!   that a passkey sign-in, which names only its credential, finds its user;
//! - `pending_signins`: SHA-256 of a pending cookie -> a sign-in waiting for
//!   its second step;
//! - `pending_by_expiry`: (deadline ms, hash) -> (), their TTL index;
//! - the audit kinds `mfa.*` (codes 21 to 26).
//!
//! Every session row gains two trailing fields: the methods it was signed in
//! with (one byte, bit 0 the password) and when a second factor was last done
//! in it (none). Sessions of version 5 were all signed in with a password.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::MigrationError;

const SESSIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("sessions");
const FACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("factors");
const PASSKEYS_BY_CREDENTIAL: TableDefinition<&[u8], &str> =
    TableDefinition::new("passkeys_by_credential");
const PENDING: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("pending_signins");
const PENDING_BY_EXPIRY: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("pending_by_expiry");

/// The kind names and codes schema 6 adds. Codes 17 to 20 belong to the
/// access-token kinds.
pub const NEW_KIND_CODES: [(&str, u8); 6] = [
    ("mfa.enrolled", 21),
    ("mfa.removed", 22),
    ("mfa.success", 23),
    ("mfa.failure", 24),
    ("mfa.recovery_used", 25),
    ("mfa.reset", 26),
];

/// Sessions rewritten per pass.
const CHUNK: usize = 4_096;

#[derive(Deserialize)]
struct SessionV5Old {
    public_id: [u8; 16],
    user: String,
    created_ms: u64,
    last_seen_ms: u64,
    idle_ttl_ms: Option<u64>,
    absolute_deadline_ms: u64,
    remember_me: bool,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
}

#[derive(Serialize)]
struct SessionV5 {
    public_id: [u8; 16],
    user: String,
    created_ms: u64,
    last_seen_ms: u64,
    idle_ttl_ms: Option<u64>,
    absolute_deadline_ms: u64,
    remember_me: bool,
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    methods: u8,
    second_factor_ms: Option<u64>,
}

pub fn apply(tx: &WriteTransaction) -> Result<(), MigrationError> {
    tx.open_table(FACTORS)?;
    tx.open_table(PASSKEYS_BY_CREDENTIAL)?;
    tx.open_table(PENDING)?;
    tx.open_table(PENDING_BY_EXPIRY)?;
    let mut sessions = tx.open_table(SESSIONS)?;
    // Keys in order, a chunk at a time: each pass rewrites the rows after
    // the last key of the one before.
    let mut after: Option<[u8; 32]> = None;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        let range = match after {
            None => sessions.range(..)?,
            Some(k) => {
                sessions.range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))?
            }
        };
        for row in range.take(CHUNK) {
            let (k, v) = row?;
            chunk.push((k.value(), v.value().to_vec()));
        }
        let Some(last) = chunk.last().map(|(k, _)| *k) else {
            return Ok(());
        };
        for (key, bytes) in chunk {
            let old: SessionV5Old =
                postcard::from_bytes(&bytes).map_err(|e| MigrationError::Corrupt {
                    table: "sessions",
                    reason: e.to_string(),
                })?;
            let new = SessionV5 {
                public_id: old.public_id,
                user: old.user,
                created_ms: old.created_ms,
                last_seen_ms: old.last_seen_ms,
                idle_ttl_ms: old.idle_ttl_ms,
                absolute_deadline_ms: old.absolute_deadline_ms,
                remember_me: old.remember_me,
                ip: old.ip,
                user_agent: old.user_agent,
                methods: 1,
                second_factor_ms: None,
            };
            let out = postcard::to_stdvec(&new).map_err(|e| MigrationError::Corrupt {
                table: "sessions",
                reason: e.to_string(),
            })?;
            sessions.insert(key, out.as_slice())?;
        }
        after = Some(last);
    }
}
