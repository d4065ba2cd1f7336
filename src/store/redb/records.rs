//! The stored shape of each value. Field order is the postcard layout: append
//! fields only together with a schema step in `migrations/`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// Random id shown to people and used to revoke; never the token.
    pub public_id: [u8; 16],
    pub user: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// Sliding idle lifetime; `None` for remember-me sessions.
    pub idle_ttl_ms: Option<u64>,
    pub absolute_deadline_ms: u64,
    pub remember_me: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// `Methods` bits (schema 5).
    pub methods: u8,
    /// When a second factor was last done in the session (schema 5).
    pub second_factor_ms: Option<u64>,
}

impl SessionRecord {
    /// Idle deadline, when the session has one.
    pub fn idle_deadline_ms(&self) -> Option<u64> {
        self.idle_ttl_ms
            .map(|ttl| self.last_seen_ms.saturating_add(ttl))
    }

    /// The instant the session stops being valid: the earlier of its deadlines.
    /// This is the key of its `sessions_by_expiry` entry.
    pub fn deadline_ms(&self) -> u64 {
        match self.idle_deadline_ms() {
            Some(idle) => idle.min(self.absolute_deadline_ms),
            None => self.absolute_deadline_ms,
        }
    }
}

/// A row of `bans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BanRecord {
    pub created_ms: u64,
    pub until_ms: u64,
    pub reason: String,
}

/// A row of `access_tokens` (schema 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessTokenRecord {
    /// Random id shown to people and used to revoke; never the token.
    pub public_id: [u8; 16],
    pub user: String,
    pub name: String,
    /// The first characters of the token as shown, to tell tokens apart.
    pub hint: String,
    /// Scope: host names or `*.` suffixes; empty: every app.
    pub domains: Vec<String>,
    pub created_ms: u64,
    /// The key of its `access_tokens_by_expiry` entry.
    pub expires_ms: u64,
    pub last_used_ms: Option<u64>,
    /// The most recent distinct client addresses, newest last, at most
    /// `TOKEN_RECENT_IPS`.
    pub recent_ips: Vec<IpAddr>,
    /// Made by a session that had done a second factor (schema 7).
    pub two_factor: bool,
}

/// A row of `pending_signins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingRecord {
    pub user: String,
    pub enroll: bool,
    pub remember_me: bool,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// What a user granted a client, as code and grant records hold it
/// (schema 9; `Authorization` in the domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuthRecord {
    pub client: String,
    pub user: String,
    /// The session's public id.
    pub session: [u8; 16],
    pub scopes: Vec<String>,
    pub auth_time_ms: u64,
    /// `Methods` bits.
    pub methods: u8,
}

/// A row of `oidc_codes` (schema 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CodeRecord {
    pub auth: AuthRecord,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// The key of its `oidc_codes_by_expiry` entry.
    pub expires_ms: u64,
    /// The grant its redemption made, once redeemed.
    pub spent: Option<[u8; 16]>,
}

/// A row of `oidc_grants` (schema 9). Every hash here has its
/// `oidc_tokens` row naming this grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantRecord {
    pub auth: AuthRecord,
    pub created_ms: u64,
    pub last_issued_ms: u64,
    /// Live access tokens: hash and expiry, oldest first, at most
    /// `MAX_GRANT_ACCESS_TOKENS`.
    pub access: Vec<([u8; 32], u64)>,
    /// The current refresh token: hash and expiry.
    pub refresh: Option<([u8; 32], u64)>,
    /// Rotated-out refresh tokens kept for reuse detection, oldest first,
    /// at most `MAX_RETIRED_REFRESH`.
    pub retired: Vec<([u8; 32], u64)>,
    /// The latest expiry of all the above: the key of its
    /// `oidc_grants_by_expiry` entry.
    pub expires_ms: u64,
}

/// A row of `oidc_tokens` (schema 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OidcTokenRecord {
    /// 0: access, 1: refresh.
    pub kind: u8,
    pub grant: [u8; 16],
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// A refresh token rotated out: presenting it revokes the grant.
    pub retired: bool,
    /// An access token issued for fewer scopes than its grant holds.
    pub scopes: Option<Vec<String>>,
}

/// A row of `oidc_consents` (schema 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsentRecord {
    pub scopes: Vec<String>,
    pub granted_ms: u64,
}

/// A row of `oidc_logouts` (schema 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogoutRecord {
    pub client: String,
    pub user: String,
    pub session: [u8; 16],
    pub queued_ms: u64,
    pub attempts: u32,
    /// The key of its `oidc_logouts_due` entry.
    pub not_before_ms: u64,
}

/// A row of `oidc_signing_keys` (schema 9), keyed by `kid`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SigningKeyRecord {
    /// Sealed with `secrets.key` by the server.
    pub sealed: Vec<u8>,
    pub created_ms: u64,
    pub retired_ms: Option<u64>,
    pub publish_until_ms: Option<u64>,
}
