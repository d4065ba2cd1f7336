//! The kinds of audit event and the outcome each records.
//!
//! Every kind's name (stored in archives, shown and filtered on) and its
//! one-byte code (stored in event records and the kind index, schema 3,
//! `gatehouse_migrations::KIND_CODES`) come from the one table in
//! [`event_kinds!`]: the enum, [`EventKind::ALL`], `as_str`, `code`,
//! `from_code` and `FromStr` are all generated from it, so they cannot
//! disagree. Names and codes, once shipped, never change; a new kind takes
//! the next free code and an old code is never reused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares the event kinds from one table of `Variant = "name", code;`
/// rows, in code order.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $code:literal;)+) => {
        /// The kinds of audit event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)+
        }

        impl EventKind {
            /// Every kind, in code order.
            pub const ALL: [EventKind; [$($code),+].len()] = [$(EventKind::$variant),+];

            /// The kind's stored and displayed name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }

            /// The one-byte code stored in event records and the kind index.
            pub fn code(self) -> u8 {
                match self {
                    $(EventKind::$variant => $code,)+
                }
            }

            /// The kind stored as `code`, if this build knows it.
            pub fn from_code(code: u8) -> Option<EventKind> {
                match code {
                    $($code => Some(EventKind::$variant),)+
                    _ => None,
                }
            }

            /// The kind named `name`, if this build knows it.
            fn from_name(name: &str) -> Option<EventKind> {
                match name {
                    $($name => Some(EventKind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// A password was accepted and a session created.
    LoginSuccess = "login.success", 1;
    /// A password was refused.
    LoginFailure = "login.failure", 2;
    /// A sign-in was refused before hashing (a ban or the failure limit).
    LoginRejected = "login.rejected", 3;
    /// A user ended their own session.
    Logout = "logout", 4;
    /// A session was created.
    SessionCreated = "session.created", 5;
    /// A session was ended by its user, an admin or a credential change.
    SessionRevoked = "session.revoked", 6;
    /// A session passed its idle or absolute deadline and was removed.
    SessionExpired = "session.expired", 7;
    /// A session was removed to keep its user within the session cap.
    SessionEvicted = "session.evicted", 8;
    /// A user or a client network was banned.
    BanAdded = "ban.added", 9;
    /// A ban was lifted or ran out.
    BanLifted = "ban.lifted", 10;
    /// The server started.
    ServerStarted = "server.started", 11;
    /// The server stopped.
    ServerStopped = "server.stopped", 12;
    /// A backup was written.
    BackupCreated = "backup.created", 13;
    /// The users were reloaded.
    ConfigReloaded = "config.reloaded", 14;
    /// Retention removed old events.
    RetentionPruned = "retention.pruned", 15;
    /// An access rule refused a signed-in user (at most one a user, rule
    /// and minute). Schema 4.
    AccessDenied = "access.denied", 16;
    /// A user created a personal access token. Schema 5.
    TokenCreated = "token.created", 17;
    /// An access token was revoked by its user, an admin or a credential
    /// change. Schema 5.
    TokenRevoked = "token.revoked", 18;
    /// An access token passed its expiry and was removed by the sweep.
    /// Schema 5.
    TokenExpired = "token.expired", 19;
    /// An access token was used from an address it had not been used from
    /// recently (not every use: its last-used time covers those). Schema 5.
    TokenUsed = "token.used", 20;
    /// A second factor was enrolled (details: `method`). Schema 6.
    MfaEnrolled = "mfa.enrolled", 21;
    /// A second factor was removed by its user (details: `method`).
    MfaRemoved = "mfa.removed", 22;
    /// A second step passed (details: `method`).
    MfaSuccess = "mfa.success", 23;
    /// A second step failed (details: `method`, `reason`).
    MfaFailure = "mfa.failure", 24;
    /// A recovery code was spent (details: `remaining`).
    MfaRecoveryUsed = "mfa.recovery_used", 25;
    /// An administrator removed every factor of a user.
    MfaReset = "mfa.reset", 26;
    /// The built-in proxy closed a WebSocket (details: `app`, `reason`:
    /// `session_ended`, `shutdown` or `idle`). Schema 8.
    ProxyClosed = "proxy.closed", 27;
    /// An OpenID Connect client was given an authorization code (details:
    /// `client`, `scopes`). Schema 9.
    OidcAuthorized = "oidc.authorized", 28;
    /// A client redeemed a code for tokens (details: `client`, `grant`,
    /// `refresh_token`). Schema 9.
    OidcToken = "oidc.token", 29;
    /// A client rotated a refresh token (details: `client`, `grant`).
    /// Schema 9.
    OidcRefreshed = "oidc.refreshed", 30;
    /// A retired refresh token was presented and its grant revoked
    /// (details: `client`, `grant`). Schema 9.
    OidcRefreshReused = "oidc.refresh_reused", 31;
    /// A grant or a token was revoked (details: `client`, `grant`,
    /// `reason`). Schema 9.
    OidcRevoked = "oidc.revoked", 32;
    /// A user gave or withdrew consent (details: `client`, `granted`,
    /// `scopes`). Schema 9.
    OidcConsent = "oidc.consent", 33;
    /// A back-channel logout token was sent (details: `client`, `outcome`,
    /// `attempt`, `error`). Schema 9.
    OidcLogoutSent = "oidc.logout_sent", 34;
}

impl EventKind {
    /// The outcome this kind records, if it is a success or failure at all.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            EventKind::LoginSuccess | EventKind::MfaSuccess => Some(Outcome::Success),
            EventKind::LoginFailure | EventKind::LoginRejected | EventKind::MfaFailure => {
                Some(Outcome::Failure)
            }
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::from_name(s).ok_or_else(|| format!("unknown event kind {s:?}"))
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    /// From its name, as [`Serialize`] writes it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether an event records a success or a failure, for the outcome filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            _ => Err(format!(
                "unknown outcome {s:?} (expected success or failure)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (name, code) pair, written out: shipped pairs never change.
    const FROZEN: [(&str, u8); 34] = [
        ("login.success", 1),
        ("login.failure", 2),
        ("login.rejected", 3),
        ("logout", 4),
        ("session.created", 5),
        ("session.revoked", 6),
        ("session.expired", 7),
        ("session.evicted", 8),
        ("ban.added", 9),
        ("ban.lifted", 10),
        ("server.started", 11),
        ("server.stopped", 12),
        ("backup.created", 13),
        ("config.reloaded", 14),
        ("retention.pruned", 15),
        ("access.denied", 16),
        ("token.created", 17),
        ("token.revoked", 18),
        ("token.expired", 19),
        ("token.used", 20),
        ("mfa.enrolled", 21),
        ("mfa.removed", 22),
        ("mfa.success", 23),
        ("mfa.failure", 24),
        ("mfa.recovery_used", 25),
        ("mfa.reset", 26),
        ("proxy.closed", 27),
        ("oidc.authorized", 28),
        ("oidc.token", 29),
        ("oidc.refreshed", 30),
        ("oidc.refresh_reused", 31),
        ("oidc.revoked", 32),
        ("oidc.consent", 33),
        ("oidc.logout_sent", 34),
    ];

    #[test]
    fn names_and_codes_are_frozen() {
        let ours: Vec<(&str, u8)> = EventKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.code()))
            .collect();
        assert_eq!(ours, FROZEN);
    }

    /// The stored kind codes are the ones schema 3 wrote plus those schemas 4
    /// to 6, 8 and 9 added, and they round-trip.
    #[test]
    fn kind_codes_match_the_schema() {
        let mut schema = gatehouse_migrations::KIND_CODES.to_vec();
        schema.extend(gatehouse_migrations::KIND_CODES_V4);
        schema.extend(gatehouse_migrations::KIND_CODES_V5);
        schema.extend(gatehouse_migrations::KIND_CODES_V6);
        schema.extend(gatehouse_migrations::KIND_CODES_V8);
        schema.extend(gatehouse_migrations::KIND_CODES_V9);
        schema.sort_by_key(|&(_, c)| c);
        let ours: Vec<(&str, u8)> = EventKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.code()))
            .collect();
        assert_eq!(ours, schema);
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code(0), None);
        assert_eq!(EventKind::from_code(35), None);
        assert_eq!(EventKind::from_code(255), None);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        }
        assert!("login.bogus".parse::<EventKind>().is_err());
    }
}
