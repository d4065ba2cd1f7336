//! The store's traits on [`Distributed`]: the live state's to Redis, the
//! audit reads and retention to PostgreSQL, plain appends through the
//! outbox (see the module documentation of `super`).

use super::Distributed;
use crate::domain::{
    AccessTokenInfo, Applied, Ban, BanSubject, CreatedAccessToken, CreatedSession, EnrollerId,
    Event, EventFilter, EventId, EventPage, FactorChange, FactorRefusal, FactorSet, Method,
    NewAccessToken, NewBan, NewEvent, NewSession, PendingSignIn, PublicId, RegulationSettings,
    Revocation, Session, SessionToken, TokenHash, TokenRefusal,
};
use crate::store::ceremonies::{Busy, Entry as Ceremony, Purpose};
use crate::store::contract::{
    AuditStore, BanStore, CeremonyStore, FactorStore, RegulationStore, SessionStore, TokenStore,
};
use crate::store::credentials::CredentialCheck;
use crate::store::error::{QueryError, StoreError, WriteError};
use crate::store::regulation::{AtLimit, Lease};
use crate::store::reports::{AuditCounts, PruneReport, SweepReport};

/// Implements trait methods by handing each call to the field `$to`:
/// `async name(args) -> T;` awaits it, `fn name(args) -> T;` returns it.
macro_rules! to {
    ($to:ident;) => {};
    ($to:ident; async $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; $($rest:tt)*) => {
        async fn $name(&self, $($arg: $ty),*) -> $out {
            self.$to.$name($($arg),*).await
        }
        to!($to; $($rest)*);
    };
    ($to:ident; fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; $($rest:tt)*) => {
        #[inline]
        fn $name(&self, $($arg: $ty),*) -> $out {
            self.$to.$name($($arg),*)
        }
        to!($to; $($rest)*);
    };
}

impl SessionStore for Distributed {
    to! { redis;
        async create_session(new: NewSession, login: NewEvent, check: Option<CredentialCheck>)
            -> Result<CreatedSession, WriteError>;
        async session_by_hash(hash: TokenHash, now_ms: u64) -> Result<Option<Session>, StoreError>;
        fn session_by_hash_now(hash: TokenHash, now_ms: u64)
            -> Option<Result<Option<Session>, StoreError>>;
        async sessions_of(user: &str, now_ms: u64) -> Result<Vec<Session>, StoreError>;
        async all_sessions(now_ms: u64, limit: usize) -> Result<Vec<Session>, StoreError>;
        async session_count() -> Result<u64, StoreError>;
        async revoke_by_token(hash: TokenHash, how: Revocation) -> Result<Option<PublicId>, WriteError>;
        async revoke_session(user: &str, id: PublicId, how: Revocation) -> Result<bool, WriteError>;
        async revoke_user(user: &str, keep: Option<PublicId>, how: Revocation)
            -> Result<Vec<PublicId>, WriteError>;
        fn touch(hash: TokenHash, now_ms: u64) -> Result<(), WriteError>;
        async set_credentials(changes: Vec<(String, Option<CredentialCheck>)>) -> Result<(), WriteError>;
        async sweep(now_ms: u64, limit: usize) -> Result<SweepReport, WriteError>;
    }
}

impl FactorStore for Distributed {
    to! { redis;
        async factors(user: &str) -> Result<FactorSet, StoreError>;
        async passkey_owner(credential_id: &[u8]) -> Result<Option<String>, StoreError>;
        async change_factors(user: &str, change: FactorChange, event: Option<NewEvent>, now_ms: u64)
            -> Result<Result<Applied, FactorRefusal>, WriteError>;
        async create_pending(pending: PendingSignIn, max_per_user: usize) -> Result<SessionToken, WriteError>;
        async pending(hash: TokenHash, now_ms: u64) -> Result<Option<PendingSignIn>, StoreError>;
        async end_pending(hash: TokenHash, now_ms: u64) -> Result<Option<PendingSignIn>, WriteError>;
        async complete_sign_in(hash: TokenHash, new: NewSession, login: NewEvent, check: Option<CredentialCheck>)
            -> Result<Option<CreatedSession>, WriteError>;
        async step_up(hash: TokenHash, method: Method, event: NewEvent, now_ms: u64)
            -> Result<Option<CreatedSession>, WriteError>;
    }
}

impl TokenStore for Distributed {
    to! { redis;
        async create_token(new: NewAccessToken, session: Option<TokenHash>)
            -> Result<Result<CreatedAccessToken, TokenRefusal>, WriteError>;
        async token_by_hash(hash: TokenHash, now_ms: u64) -> Result<Option<AccessTokenInfo>, StoreError>;
        fn token_by_hash_now(hash: TokenHash, now_ms: u64)
            -> Option<Result<Option<AccessTokenInfo>, StoreError>>;
        async tokens_of(user: &str, now_ms: u64) -> Result<Vec<AccessTokenInfo>, StoreError>;
        async token_count() -> Result<u64, StoreError>;
        async revoke_token(user: &str, id: PublicId, how: Revocation) -> Result<bool, WriteError>;
        async revoke_user_tokens(user: &str, how: Revocation) -> Result<Vec<PublicId>, WriteError>;
        fn touch_token(hash: TokenHash, now_ms: u64, ip: Option<std::net::IpAddr>)
            -> Result<(), WriteError>;
    }
}

impl BanStore for Distributed {
    to! { redis;
        async ban(subject: &BanSubject, now_ms: u64) -> Result<Option<Ban>, StoreError>;
        fn ban_now(subject: &BanSubject, now_ms: u64) -> Option<Result<Option<Ban>, StoreError>>;
        async bans(now_ms: u64) -> Result<Vec<Ban>, StoreError>;
        async add_ban(ban: NewBan) -> Result<(), WriteError>;
        async lift_ban(subject: &BanSubject, reason: &str, actor: Option<&str>, now_ms: u64)
            -> Result<bool, WriteError>;
    }
}

impl RegulationStore for Distributed {
    to! { redis;
        async reserve(limits: &RegulationSettings, subjects: &[BanSubject], configured: bool, now_ms: u64)
            -> Result<Result<Lease, AtLimit>, StoreError>;
        async fail(limits: &RegulationSettings, lease: Lease, now_ms: u64)
            -> Result<Vec<(BanSubject, u64)>, StoreError>;
        async succeed(limits: &RegulationSettings, lease: Lease, now_ms: u64) -> Result<(), StoreError>;
        fn release(limits: &RegulationSettings, lease: Lease, now_ms: u64) -> ();
        async first_replay(limits: &RegulationSettings, user: &str, step: u64) -> Result<bool, StoreError>;
    }
}

impl CeremonyStore for Distributed {
    to! { redis;
        async put_ceremony(purpose: Purpose, user: String, by: Option<EnrollerId>, state: Vec<u8>, now_ms: u64)
            -> Result<SessionToken, StoreError>;
        async put_anonymous_ceremony(ip: Option<std::net::IpAddr>, quota: usize, state: Vec<u8>, now_ms: u64)
            -> Result<Result<SessionToken, Busy>, StoreError>;
        async take_ceremony(hash: TokenHash, purpose: Purpose, now_ms: u64)
            -> Result<Option<Ceremony>, StoreError>;
    }
}

impl AuditStore for Distributed {
    /// Through the outbox, so that the chain has one writer; answers once
    /// the event is chained.
    async fn append(&self, event: NewEvent) -> Result<EventId, WriteError> {
        self.append_chained(event).await
    }

    async fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, QueryError> {
        AuditStore::query_events(&self.audit, filter, limit, cursor).await
    }

    async fn events_after(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        AuditStore::events_after(&self.audit, after, limit).await
    }

    async fn oldest_events(&self, below: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        AuditStore::oldest_events(&self.audit, below, limit).await
    }

    async fn prune(&self, through: EventId, limit: usize) -> Result<PruneReport, WriteError> {
        AuditStore::prune(&self.audit, through, limit).await
    }

    async fn audit_counts(&self, top: usize) -> Result<AuditCounts, StoreError> {
        AuditStore::audit_counts(&self.audit, top).await
    }

    /// Chains the outbox up to its newest entry at the call.
    /// The outbox chained, and every invalidation heard by this node's
    /// cache, so that its on-the-spot answers agree with Redis too.
    async fn settle(&self) -> Result<(), StoreError> {
        self.flush().await?;
        self.redis.settle_invalidations().await
    }
}
