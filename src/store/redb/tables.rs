//! Every redb table of the current schema, in one place.
//!
//! Layouts (keys sort as listed; all values are postcard through `codec`):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | bytes (schema version, chain state) |
//! | `sessions` | SHA-256 of the cookie token | session record |
//! | `sessions_by_user` | (user, created ms, token hash) | () |
//! | `sessions_by_expiry` | (deadline ms, token hash) | () |
//! | `audit_events` | event id | user name (empty: none) |
//! | `audit_by_user` | (user name, id of the bucket's first event) | bucket of event records (`bucket.rs`) |
//! | `audit_by_kind` | (kind code, event id) | () |
//! | `bans` | `u:<user>` or `i:<ip>` | ban record |
//! | `factors` | user name | the user's `FactorSet` (TOTP sealed, recovery codes hashed) |
//! | `passkeys_by_credential` | authenticator credential id | user name |
//! | `pending_signins` | SHA-256 of the pending cookie token | pending record |
//! | `pending_by_expiry` | (deadline ms, hash) | () |
//! | `access_tokens` | SHA-256 of the access token (domain separated) | token record |
//! | `access_tokens_by_user` | (user, created ms, token hash) | () |
//! | `access_tokens_by_expiry` | (expires ms, token hash) | () |
//! | `oidc_codes` | SHA-256 of an authorization code | code record (its grant, spent by which grant) |
//! | `oidc_codes_by_expiry` | (expires ms, code hash) | () |
//! | `oidc_grants` | grant id | grant record (authorization, its tokens' hashes) |
//! | `oidc_grants_by_expiry` | (expiry of its last token, grant id) | () |
//! | `oidc_grants_by_session` | (session public id, grant id) | () |
//! | `oidc_grants_by_user` | (user, client, grant id) | () |
//! | `oidc_tokens` | SHA-256 of an OIDC access or refresh token | token record (kind, grant, times, retired) |
//! | `oidc_consents` | (user, client) | consent record |
//! | `oidc_subjects` | user | the user's `sub` |
//! | `oidc_logouts` | notice id | logout notice record |
//! | `oidc_logouts_due` | (not before ms, notice id) | () |
//! | `oidc_signing_keys` | `kid` | sealed signing key record |
//!
//! Invariant: every row of `sessions` has exactly one entry in each of its two
//! indexes, and every index entry points at an existing row. Every event has
//! exactly one row in `audit_events` (its time order), one record in a bucket
//! of its user in `audit_by_user` (where the record itself lives), and one
//! entry in `audit_by_kind`. Every row of `access_tokens` has exactly one
//! entry in each of its two indexes, and every index entry points at a row
//! with the same user, creation time and expiry. Every passkey in a
//! `factors` row has exactly one `passkeys_by_credential` entry naming its
//! user, and every entry names a user whose row holds it; every pending
//! sign-in has exactly one `pending_by_expiry` entry and the reverse. Every
//! function that writes one of them writes the others in the same
//! transaction.
//!
//! The OpenID Connect tables (schema 9): every code has one
//! `oidc_codes_by_expiry` entry; every grant one entry in each of its three
//! indexes, and every token hash its record lists (live access tokens, the
//! current refresh token, the retired ones) has an `oidc_tokens` row naming
//! the grant, and no row names a grant that is gone. A grant's session
//! exists while the grant does: every path that removes a session row
//! removes its grants (`oidc.rs`). Every logout notice has one
//! `oidc_logouts_due` entry and the reverse.

use redb::TableDefinition;

pub use gatehouse_migrations::META;

/// Raw SHA-256 of a session token.
pub type HashKey = [u8; 32];

pub const SESSIONS: TableDefinition<HashKey, &[u8]> = TableDefinition::new("sessions");
pub const SESSIONS_BY_USER: TableDefinition<(&str, u64, HashKey), ()> =
    TableDefinition::new("sessions_by_user");
pub const SESSIONS_BY_EXPIRY: TableDefinition<(u64, HashKey), ()> =
    TableDefinition::new("sessions_by_expiry");
pub const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("audit_events");
pub const EVENTS_BY_USER: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new(EVENT_RECORDS);
/// Name of the table that holds the event records (in buckets), for errors.
pub const EVENT_RECORDS: &str = "audit_by_user";
pub const EVENTS_BY_KIND: TableDefinition<(u8, u64), ()> = TableDefinition::new("audit_by_kind");
pub const BANS: TableDefinition<&str, &[u8]> = TableDefinition::new("bans");
/// Schema 5. Access tokens are stored only as their hash: a copied file
/// holds no live token.
pub const ACCESS_TOKENS: TableDefinition<HashKey, &[u8]> = TableDefinition::new("access_tokens");
pub const ACCESS_TOKENS_BY_USER: TableDefinition<(&str, u64, HashKey), ()> =
    TableDefinition::new("access_tokens_by_user");
pub const ACCESS_TOKENS_BY_EXPIRY: TableDefinition<(u64, HashKey), ()> =
    TableDefinition::new("access_tokens_by_expiry");

/// `meta` key of the audit chain head (last event id and its hash).
pub const CHAIN_HEAD_KEY: &str = "chain_head";
/// `meta` key of the audit chain anchor (hash that the oldest kept event links to).
pub const CHAIN_ANCHOR_KEY: &str = "chain_anchor";
pub const FACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("factors");
pub const PASSKEYS_BY_CREDENTIAL: TableDefinition<&[u8], &str> =
    TableDefinition::new("passkeys_by_credential");
pub const PENDING: TableDefinition<HashKey, &[u8]> = TableDefinition::new("pending_signins");
pub const PENDING_BY_EXPIRY: TableDefinition<(u64, HashKey), ()> =
    TableDefinition::new("pending_by_expiry");
/// Pending sign-ins by `(user, created ms, hash)`: each user's, oldest
/// first, so that their number can be capped (schema 7).
pub const PENDING_BY_USER: TableDefinition<(&str, u64, HashKey), ()> =
    TableDefinition::new("pending_by_user");

/// A grant's id (`GrantId`) or a session's public id.
pub type IdKey = [u8; 16];

/// Schema 9: the OpenID Connect provider's state (see the table above).
pub const OIDC_CODES: TableDefinition<HashKey, &[u8]> = TableDefinition::new("oidc_codes");
pub const OIDC_CODES_BY_EXPIRY: TableDefinition<(u64, HashKey), ()> =
    TableDefinition::new("oidc_codes_by_expiry");
/// A session's codes, oldest expiry first: the bound per session.
pub const OIDC_CODES_BY_SESSION: TableDefinition<(IdKey, u64, HashKey), ()> =
    TableDefinition::new("oidc_codes_by_session");
pub const OIDC_GRANTS: TableDefinition<IdKey, &[u8]> = TableDefinition::new("oidc_grants");
pub const OIDC_GRANTS_BY_EXPIRY: TableDefinition<(u64, IdKey), ()> =
    TableDefinition::new("oidc_grants_by_expiry");
pub const OIDC_GRANTS_BY_SESSION: TableDefinition<(IdKey, IdKey), ()> =
    TableDefinition::new("oidc_grants_by_session");
pub const OIDC_GRANTS_BY_USER: TableDefinition<(&str, &str, IdKey), ()> =
    TableDefinition::new("oidc_grants_by_user");
pub const OIDC_TOKENS: TableDefinition<HashKey, &[u8]> = TableDefinition::new("oidc_tokens");
pub const OIDC_CONSENTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("oidc_consents");
pub const OIDC_SUBJECTS: TableDefinition<&str, &str> = TableDefinition::new("oidc_subjects");
pub const OIDC_LOGOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("oidc_logouts");
pub const OIDC_LOGOUTS_DUE: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("oidc_logouts_due");
pub const OIDC_SIGNING_KEYS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("oidc_signing_keys");
/// `meta` key of the next logout notice id (big-endian u64), so that ids
/// keep increasing when the table empties.
pub const OIDC_NEXT_LOGOUT_KEY: &str = "oidc_next_logout";
