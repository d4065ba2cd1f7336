//! The signed-in request: [`Authed`], the extractor that finds the session
//! of the request's cookie and its user.
//!
//! A session check is one store read answered on the spot
//! (`SessionStore::session_by_hash_now`; for redb, a cached snapshot) plus,
//! at most once per touch interval, a fire-and-forget touch. It never waits
//! for a write or for hashing.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::{Policy, UserEntry};
use crate::server::cookie::cookie_hash;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{Session, SessionStore, StoreError, TokenHash, now_ms};

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub session: Session,
    pub hash: TokenHash,
    pub user: UserEntry,
}

impl Authed {
    pub fn is_admin(&self) -> bool {
        self.user.admin
    }
}

/// Looks up the request's session: one read. Refuses sessions of users no
/// longer in the config. Slides the idle deadline (fire and forget) when the
/// last recorded use is older than the touch interval.
pub fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Authed>, ApiError> {
    lookup_with(state, headers, |session, hash, user, _| Authed {
        session,
        hash,
        user: user.clone(),
    })
}

/// [`lookup`], handing the session, its hash, the user's current entry and
/// the policy it belongs to to `f` instead of cloning the entry. `f` runs
/// under the policy read lock, so it must be short and must not reach for
/// the policy again.
pub fn lookup_with<T>(
    state: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(Session, TokenHash, &UserEntry, &Policy) -> T,
) -> Result<Option<T>, ApiError> {
    let Some(hash) = cookie_hash(state, headers) else {
        return Ok(None);
    };
    let now = now_ms();
    // Answered on the spot (the forward-auth answer is made before the
    // router, without awaiting); a backend that cannot answer without
    // waiting fails closed here.
    let found = state
        .store
        .session_by_hash_now(hash, now)
        .unwrap_or_else(|| {
            Err(StoreError::Storage(
                "this store cannot look up a session without waiting".into(),
            ))
        });
    let session = match found {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ApiError::internal("session lookup failed", &e)),
    };
    let interval = state.config.session.touch_interval_ms;
    // Remember-me sessions are touched too: their deadline does not move,
    // but `last_seen` keeps the sessions list truthful.
    let stale = now.saturating_sub(session.last_seen_ms) >= interval;
    let Some(out) = state.with_policy(|policy| {
        let user = policy.user(&session.user)?;
        Some(f(session, hash, user, policy))
    }) else {
        return Ok(None);
    };
    if stale {
        // A dropped touch (queue full) only delays the slide to the next check.
        if let Err(e) = state.store.touch(hash, now) {
            tracing::debug!(error = %e, "session touch dropped");
        }
    }
    Ok(Some(out))
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        lookup(state, &parts.headers)?.ok_or_else(ApiError::unauthorized)
    }
}
