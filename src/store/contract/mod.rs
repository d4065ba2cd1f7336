//! The store's interface: what every backend does, in the language of the
//! domain, as one trait per part (sessions, second factors, access tokens,
//! bans, failure counters, the audit trail, whole-store checks) so that a
//! backend holding only part of the data (sessions and bans in Redis, the
//! audit trail in PostgreSQL) implements only its part, and a composite
//! backend routes each trait to one of them.
//!
//! # The contract
//!
//! - **Durable before acknowledged.** A write method's future resolves only
//!   after the change is durable; `Err` means nothing of it was stored.
//!   [`SessionStore::touch`] (and [`TokenStore::touch_token`]) are the
//!   fire-and-forget writes: they return at once, and a dropped touch only
//!   means the deadline moves at the next.
//! - **Touches are ordered before later writes.** A touch that returned
//!   `Ok` on a handle is applied before any write submitted after it on the
//!   same handle. So an awaited write, even one that changes nothing, is a
//!   barrier: when it returns, every earlier touch of that handle is
//!   visible to every handle of the store (the conformance suite uses a
//!   no-op revocation this way on each node).
//! - **Audited together.** A session created by [`SessionStore::create_session`]
//!   is stored with its `session.created` event and the caller's sign-in
//!   event, all or nothing; every revocation, expiry, eviction, ban and lift
//!   appends its event in the same atomic change.
//! - **Credentials checked inside the write.** With a [`CredentialCheck`],
//!   creation is refused ([`WriteError::CredentialsChanged`]) when the
//!   user's credentials are no longer those checked
//!   ([`SessionStore::set_credentials`]), checked after every write
//!   submitted before it.
//! - **Read your writes.** A read that starts after a write was acknowledged
//!   sees it; a session past either deadline is invalid at once, before any
//!   sweep.
//! - **Ordered, chained audit trail.** Event ids strictly increase; each
//!   event is chained to the one before it ([`super::chain`]); pages come
//!   newest first with keyset cursors, and a page examines a bounded number
//!   of events.
//! - **Fail closed.** A backend that cannot keep one of these (a cache that
//!   lost its durability, a lost connection, a chain it cannot extend)
//!   returns an error (`StoreError::Io` for a failing medium or connection,
//!   `StoreError::Storage` otherwise); it never acknowledges a write it may
//!   have lost and never answers a session lookup it cannot vouch for: a
//!   failed lookup is "not signed in".
//!
//! # Dispatch
//!
//! The methods return `impl Future + Send`: a call builds its future on the
//! caller's stack, never a boxed one. The server and tools hold the concrete
//! [`super::Backend`] enum, whose methods `match` on the variant and await
//! it; generic code (the conformance suite) takes `B: SessionStore + ...`.
//!
//! # The hot path
//!
//! [`SessionStore::session_by_hash`] answers every forward-auth request. A
//! backend must answer it without waiting on a write and without allocating
//! beyond the returned session; the redb backend reads a cached snapshot
//! synchronously and returns an already-completed future
//! ([`std::future::Ready`]), and also answers
//! [`SessionStore::session_by_hash_now`] for callers that cannot await.
//! A backend that must wait (a network store on a cache miss) answers the
//! `_now` lookups `None`; every caller then awaits the lookup instead, and
//! never reads `None` as "not signed in".

mod guards;
mod oidc;

pub use guards::{CeremonyStore, RegulationStore};
pub use oidc::OidcStore;

use super::credentials::CredentialCheck;
use super::error::{QueryError, StoreError, WriteError};
use super::reports::{AuditCounts, CheckReport, PruneReport, StoreStats, SweepReport};
use crate::domain::{
    AccessTokenInfo, Applied, Ban, BanSubject, CreatedAccessToken, CreatedSession, Event,
    EventFilter, EventId, EventPage, FactorChange, FactorRefusal, FactorSet, Method,
    NewAccessToken, NewBan, NewEvent, NewSession, PendingSignIn, PublicId, Revocation, Session,
    SessionToken, TokenHash, TokenRefusal,
};
use std::future::Future;

/// Sessions: created by a sign-in, looked up by token hash on every
/// request, listed per user, revoked, touched and swept.
pub trait SessionStore: Send + Sync {
    /// Creates a session for `new.user` and appends its `session.created`
    /// event and `login` (given the new session's public id) in one durable
    /// change, after removing the user's expired sessions and, past
    /// `new.max_per_user`, the oldest ones (each with its event). With a
    /// `check`, creates nothing and fails with
    /// [`WriteError::CredentialsChanged`] when it no longer holds.
    fn create_session(
        &self,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> impl Future<Output = Result<CreatedSession, WriteError>> + Send;

    /// The live session whose token hashes to `hash` at `now_ms`, if any.
    /// The hot path: see the module documentation.
    fn session_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// The same lookup answered on the spot, for callers that cannot wait
    /// (the forward-auth answer is made synchronously, before the router):
    /// `Some` when the backend can answer without waiting on anything (the
    /// redb backend, from its cached read snapshot), `None` when it would
    /// have to wait (a network backend), and the caller awaits
    /// [`SessionStore::session_by_hash`] instead.
    fn session_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<Session>, StoreError>> {
        let _ = (hash, now_ms);
        None
    }

    /// A user's live sessions, newest first.
    fn sessions_of(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send;

    /// Live sessions of every user, by user then newest first, at most `limit`.
    fn all_sessions(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send;

    /// Sessions stored, expired ones not yet swept included.
    fn session_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Revokes the session holding this token (a logout, or a sign-in that
    /// replaces it). Returns its public id if it existed.
    fn revoke_by_token(
        &self,
        hash: TokenHash,
        how: Revocation,
    ) -> impl Future<Output = Result<Option<PublicId>, WriteError>> + Send;

    /// Revokes one session of `user` by public id. Returns false when `user`
    /// has no such session: another user's id is "not found", never revoked.
    fn revoke_session(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;

    /// Revokes every session of `user` except `keep` ("sign out the others"
    /// when given, "sign out everywhere" when not). Returns the revoked ids.
    fn revoke_user(
        &self,
        user: &str,
        keep: Option<PublicId>,
        how: Revocation,
    ) -> impl Future<Output = Result<Vec<PublicId>, WriteError>> + Send;

    /// Slides a live session's idle deadline to `now_ms` plus its idle
    /// lifetime, fire and forget. Fails at once with [`WriteError::Busy`]
    /// when the backend cannot take it without waiting. A touch that
    /// returned `Ok` is applied before any write submitted after it.
    fn touch(&self, hash: TokenHash, now_ms: u64) -> Result<(), WriteError>;

    /// Records the current credentials of each user given (`None`: the
    /// user was removed), before the writes that follow: a
    /// session-creating write whose [`CredentialCheck`] is not its user's
    /// current one creates nothing. A user never given holds every check.
    fn set_credentials(
        &self,
        changes: Vec<(String, Option<CredentialCheck>)>,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Removes up to `limit` sessions past their deadline, up to `limit`
    /// ran-out bans and, for a backend that also implements [`TokenStore`],
    /// up to `limit` expired access tokens, each with its event (and, for
    /// one that implements [`OidcStore`], up to `limit` expired codes and
    /// up to `limit` grants whose tokens all expired), in one
    /// durable change; of each kind, the earliest to end first. A failed
    /// sweep changed nothing and the next one removes the same entries.
    fn sweep(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<SweepReport, WriteError>> + Send;
}

/// Second factors and the sign-ins waiting for one.
///
/// - **One pure rule.** A change is applied by [`FactorSet::apply`] to the
///   stored set inside the write, so a refusal (a replayed TOTP step, a
///   spent recovery code) is decided against the latest state and writes
///   nothing; concurrent uses of one code or step succeed at most once.
/// - **Pending is not signed in.** A pending sign-in is found only by its
///   own token, through [`FactorStore::pending`]; no session lookup ever
///   sees it, and [`FactorStore::complete_sign_in`] turns it into a session
///   at most once.
pub trait FactorStore: Send + Sync {
    /// `user`'s factors; the default when nothing is stored.
    fn factors(&self, user: &str) -> impl Future<Output = Result<FactorSet, StoreError>> + Send;

    /// The user owning the passkey with this credential id.
    fn passkey_owner(
        &self,
        credential_id: &[u8],
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Applies `change` to `user`'s factors and, when made, appends `event`
    /// (a spent recovery code gets its `remaining` count) in one durable
    /// change. `Ok(Err(_))`: refused, nothing written. The user's own
    /// refusals ([`FactorSet::apply`]) come first; then a passkey whose
    /// credential id another user holds is refused with
    /// [`FactorRefusal::PasskeyExists`].
    fn change_factors(
        &self,
        user: &str,
        change: FactorChange,
        event: Option<NewEvent>,
        now_ms: u64,
    ) -> impl Future<Output = Result<Result<Applied, FactorRefusal>, WriteError>> + Send;

    /// Stores a pending sign-in; its token is returned once. When its user
    /// then holds more than `max_per_user` pending sign-ins, the oldest are
    /// removed in the same change.
    fn create_pending(
        &self,
        pending: PendingSignIn,
        max_per_user: usize,
    ) -> impl Future<Output = Result<SessionToken, WriteError>> + Send;

    /// The live pending sign-in holding this token.
    fn pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PendingSignIn>, StoreError>> + Send;

    /// Ends a pending sign-in (sign-in abandoned).
    fn end_pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PendingSignIn>, WriteError>> + Send;

    /// Ends the pending sign-in `hash` of `new.user` and creates its session
    /// with `login`, as [`SessionStore::create_session`] does, in one
    /// durable change. `Ok(None)`: it was gone, expired or another user's,
    /// and nothing was created.
    fn complete_sign_in(
        &self,
        hash: TokenHash,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> impl Future<Output = Result<Option<CreatedSession>, WriteError>> + Send;

    /// Step-up: the live session `hash` passed `method`. It moves to a new
    /// token (the old one ends in the same change), keeps its public id and
    /// creation time, records the method and the time, and `event` is
    /// appended. `Ok(None)`: no such live session.
    fn step_up(
        &self,
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<CreatedSession>, WriteError>> + Send;
}

/// Personal access tokens: created by a signed-in user, looked up by hash
/// on the forward-auth check, listed per user, touched, revoked, and
/// expired by [`SessionStore::sweep`]. Stored only as their hash.
pub trait TokenStore: Send + Sync {
    /// Creates a token and appends `token.created` in one durable change,
    /// after removing the user's expired tokens (each with
    /// `token.expired`). Refused, storing nothing, when the user already
    /// holds `new.max_per_user` live tokens, or when `session` is given and
    /// is no longer live at the write (checked after every write submitted
    /// before it, so a reload's revocation of the user wins).
    fn create_token(
        &self,
        new: NewAccessToken,
        session: Option<TokenHash>,
    ) -> impl Future<Output = Result<Result<CreatedAccessToken, TokenRefusal>, WriteError>> + Send;

    /// The live token whose hash is `hash` at `now_ms`, if any. The hot
    /// path, kept to the same cost as [`SessionStore::session_by_hash`].
    fn token_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<AccessTokenInfo>, StoreError>> + Send;

    /// The same lookup answered on the spot, like
    /// [`SessionStore::session_by_hash_now`]: `None` when the backend would
    /// have to wait.
    fn token_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<AccessTokenInfo>, StoreError>> {
        let _ = (hash, now_ms);
        None
    }

    /// A user's live tokens, newest first.
    fn tokens_of(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<AccessTokenInfo>, StoreError>> + Send;

    /// Tokens stored, expired ones not yet swept included.
    fn token_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Revokes one token of `user` by public id, with `token.revoked`.
    /// Returns false when `user` has no such token.
    fn revoke_token(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;

    /// Revokes every token of `user`, each with `token.revoked`. Returns
    /// the revoked ids.
    fn revoke_user_tokens(
        &self,
        user: &str,
        how: Revocation,
    ) -> impl Future<Output = Result<Vec<PublicId>, WriteError>> + Send;

    /// Records a use of a live token at `now_ms` from `ip`, fire and forget
    /// (coalesced like [`SessionStore::touch`]): its last use moves forward,
    /// and a use from an address not among its recent ones appends
    /// `token.used`. Fails at once with [`WriteError::Busy`] when the
    /// backend cannot take it without waiting.
    fn touch_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), WriteError>;
}

/// Bans on a user or a client network.
pub trait BanStore: Send + Sync {
    /// The ban on `subject` in force at `now_ms`, if any.
    fn ban(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Ban>, StoreError>> + Send;

    /// The same lookup answered on the spot, like
    /// [`SessionStore::session_by_hash_now`], for the forward-auth check
    /// answering a Basic password from its cache: `None` when the backend
    /// would have to wait (the check then takes the awaited path).
    fn ban_now(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> Option<Result<Option<Ban>, StoreError>> {
        let _ = (subject, now_ms);
        None
    }

    /// Every ban in force at `now_ms`.
    fn bans(&self, now_ms: u64) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send;

    /// Adds (or replaces) a ban and appends `ban.added`.
    fn add_ban(&self, ban: NewBan) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Lifts the ban on `subject` and appends `ban.lifted`. Returns false
    /// (and appends nothing) when there was none.
    fn lift_ban(
        &self,
        subject: &BanSubject,
        reason: &str,
        actor: Option<&str>,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;
}

/// The audit trail: append-only, chained, queried newest first.
pub trait AuditStore: Send + Sync {
    /// Appends an event; its id is assigned from its time, above every id
    /// before it.
    fn append(&self, event: NewEvent) -> impl Future<Output = Result<EventId, WriteError>> + Send;

    /// One page of events matching `filter`, newest first. `limit` is
    /// clamped to `1..=MAX_LIMIT`; `cursor` is the `next_cursor` of a
    /// previous page of the same filter.
    fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<EventPage, QueryError>> + Send;

    /// Events with ids above `after`, oldest first, at most `limit`: for
    /// following the trail and streaming exports.
    fn events_after(
        &self,
        after: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// The oldest events with ids below `below`, oldest first, at most
    /// `limit`: what the next prune would remove, to archive it first.
    /// Fails if they do not chain from the anchor.
    fn oldest_events(
        &self,
        below: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// Removes up to `limit` of the oldest events with ids at or below
    /// `through`, moving the chain anchor past them in the same change.
    /// Refuses to remove events whose chain is broken.
    fn prune(
        &self,
        through: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<PruneReport, WriteError>> + Send;

    /// Events per kind and the `top` busiest users.
    fn audit_counts(
        &self,
        top: usize,
    ) -> impl Future<Output = Result<AuditCounts, StoreError>> + Send;

    /// Returns once every event recorded before the call, through any
    /// handle of the store, is readable by this trait's reads. At once for
    /// a backend that writes its trail in the change itself (redb); once
    /// the outbox is chained for one that moves events there afterwards
    /// (the distributed backend), whose audit reads otherwise lag. A
    /// backend whose on-the-spot lookups answer from a per-node cache also
    /// waits here until that cache has heard every invalidation made
    /// before the call.
    fn settle(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Whole-store facts and verification.
pub trait StoreCheck: Send + Sync {
    /// Counts and facts about the stored data.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send;

    /// Verifies that every index agrees with its table and that the audit
    /// chain is intact from its anchor to its head. Problems are reported,
    /// not returned as errors; `Err` means the check itself could not run.
    fn check(&self) -> impl Future<Output = Result<CheckReport, StoreError>> + Send;
}
