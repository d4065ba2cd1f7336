//! Sessions as the domain knows them: what a sign-in asks for, what a
//! session is, what creating one returns, and why one ends.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::method::Methods;
use super::token::{PublicId, SessionToken};
use super::{EventKind, NewEvent};

/// What a caller asks for when creating a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user: String,
    /// Remember-me sessions have no idle deadline, only the absolute one.
    pub remember_me: bool,
    /// Sliding idle lifetime for ordinary sessions.
    pub idle_ttl_ms: u64,
    /// Lifetime from creation, whatever the activity.
    pub absolute_ttl_ms: u64,
    /// Most sessions one user may hold; creating one more evicts the oldest.
    pub max_per_user: usize,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub now_ms: u64,
    /// How the sign-in was done.
    pub methods: Methods,
}

/// A session as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: PublicId,
    pub user: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// `None` for remember-me sessions.
    pub idle_deadline_ms: Option<u64>,
    pub absolute_deadline_ms: u64,
    pub remember_me: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// How the session was signed in (a step-up adds to them).
    #[serde(skip)]
    pub methods: Methods,
    /// When a second factor was last done in this session.
    #[serde(skip)]
    pub second_factor_ms: Option<u64>,
}

impl Session {
    /// Its `session.created` event, the same on every backend.
    pub fn created_event(&self) -> NewEvent {
        NewEvent::at(EventKind::SessionCreated, self.created_ms * 1000)
            .user(self.user.clone())
            .ip(self.ip)
            .user_agent(self.user_agent.clone())
            .session(self.id)
            .detail("remember_me", self.remember_me.to_string())
            .detail("methods", self.methods.names())
    }

    /// The earlier of the two deadlines: the session is invalid from then on.
    pub fn deadline_ms(&self) -> u64 {
        match self.idle_deadline_ms {
            Some(i) => i.min(self.absolute_deadline_ms),
            None => self.absolute_deadline_ms,
        }
    }
}

/// The result of creating a session. The token is returned here once.
#[derive(Debug)]
pub struct CreatedSession {
    pub token: SessionToken,
    pub session: Session,
    /// Sessions of the same user removed to stay within the cap.
    pub evicted: Vec<PublicId>,
}

/// Why a session was revoked, recorded in the audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    ByUser,
    ByAdmin,
    RevokeOthers,
    /// The user was removed from the config or their password hash changed.
    UserChanged,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::ByUser => "user",
            RevokeReason::ByAdmin => "admin",
            RevokeReason::RevokeOthers => "revoke_others",
            RevokeReason::UserChanged => "user_changed",
        }
    }
}

/// Who ends a session, why, from where and when: recorded in the audit
/// event of every revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Why the session ends.
    pub reason: RevokeReason,
    /// The admin acting on another user's sessions, if any.
    pub actor: Option<String>,
    /// The client address of the request that asked for it.
    pub ip: Option<IpAddr>,
    /// When, in milliseconds since the epoch.
    pub now_ms: u64,
}

impl Revocation {
    /// A revocation for `reason` at `now_ms`, with no actor and no address.
    pub fn new(reason: RevokeReason, now_ms: u64) -> Self {
        Revocation {
            reason,
            actor: None,
            ip: None,
            now_ms,
        }
    }
}
