//! The signed-in request: [`Authed`], the extractor that finds the session
//! of the request's cookie and its user.
//!
//! A session check is one store read plus, at most once per touch
//! interval, a fire-and-forget touch. It never waits for a write or for
//! hashing. Handlers await the read (for redb, an already-completed read of
//! a cached snapshot; for a network store, a round trip on a cache miss).
//! The forward-auth answer made before the router reads on the spot
//! ([`lookup_with_now`]) and leaves the request to the router's awaited
//! path when the store cannot answer without waiting.

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

/// A store read: the record, none, or a failure.
pub type Read<T> = Result<Option<T>, StoreError>;

/// Looks up the request's session: one read, awaited (for redb, an
/// already-completed read of the cached snapshot). Refuses sessions of
/// users no longer in the config. Slides the idle deadline (fire and
/// forget) when the last recorded use is older than the touch interval.
pub async fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Authed>, ApiError> {
    lookup_with(state, headers, |session, hash, user, _| Authed {
        session,
        hash,
        user: user.clone(),
    })
    .await
}

/// [`lookup`], handing the session, its hash, the user's current entry and
/// the policy it belongs to to `f` instead of cloning the entry. `f` runs
/// under the policy read lock, so it must be short and must not reach for
/// the policy again.
pub async fn lookup_with<T>(
    state: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(Session, TokenHash, &UserEntry, &Policy) -> T,
) -> Result<Option<T>, ApiError> {
    let Some(hash) = cookie_hash(state, headers) else {
        return Ok(None);
    };
    let now = now_ms();
    let found = state.store.session_by_hash(hash, now).await;
    settle(state, hash, now, found, f)
}

/// [`lookup_with`] answered on the spot, for the forward-auth answer made
/// before the router: the session read from `awaited` when the caller has
/// awaited it already, else from `SessionStore::session_by_hash_now`.
/// `None` when the store cannot answer without waiting: the caller awaits
/// [`session_read`] and asks again with its result.
pub fn lookup_with_now<T>(
    state: &AppState,
    headers: &HeaderMap,
    awaited: Option<&Read<Session>>,
    f: impl FnOnce(Session, TokenHash, &UserEntry, &Policy) -> T,
) -> Option<Result<Option<T>, ApiError>> {
    let Some(hash) = cookie_hash(state, headers) else {
        return Some(Ok(None));
    };
    let now = now_ms();
    let found = match awaited {
        Some(read) => copy_read(read),
        None => state.store.session_by_hash_now(hash, now)?,
    };
    Some(settle(state, hash, now, found, f))
}

/// The request's session read, awaited: what [`lookup_with_now`] takes as
/// `awaited`. `None` when the request carries no session cookie.
pub async fn session_read(state: &AppState, headers: &HeaderMap) -> Option<Read<Session>> {
    let hash = cookie_hash(state, headers)?;
    Some(state.store.session_by_hash(hash, now_ms()).await)
}

/// A read handed on a second time (a check asked again after a password
/// was hashed). A failure keeps its message, not its source.
pub fn copy_read<T: Clone>(read: &Read<T>) -> Read<T> {
    match read {
        Ok(v) => Ok(v.clone()),
        Err(e) => Err(StoreError::Storage(e.to_string())),
    }
}

/// The lookup's end, however the session was read.
fn settle<T>(
    state: &AppState,
    hash: TokenHash,
    now: u64,
    found: Read<Session>,
    f: impl FnOnce(Session, TokenHash, &UserEntry, &Policy) -> T,
) -> Result<Option<T>, ApiError> {
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
        lookup(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}
