//! The redb backend behind the store's interface: a [`Store`] (the file)
//! and, when writable, its [`Writer`] (the group-commit thread).
//!
//! Writes are [`Op`]s submitted to the writer; each method awaits its
//! durable commit. A touch is queued without waiting. Reads of one session
//! or one ban, and a user's sessions, run on the caller's thread (each a
//! few B-tree lookups, the hot path from a cached snapshot); reads that scan
//! (audit pages, counts, checks, stats, every session) run on the blocking
//! pool, so they need a Tokio runtime and never hold an async worker.

use std::future::{Future, ready};
use std::sync::Arc;

use super::ops::{Op, OpOutput};
use super::writer::unreachable_output;
use super::{Store, Writer};
use crate::domain::{
    AccessTokenInfo, Applied, Ban, BanSubject, CreatedAccessToken, CreatedSession, EnrollerId,
    Event, EventFilter, EventId, EventPage, FactorChange, FactorRefusal, FactorSet, Method,
    NewAccessToken, NewBan, NewEvent, NewSession, PendingSignIn, PublicId, RegulationSettings,
    Revocation, Session, SessionToken, TokenHash, TokenRefusal,
};
use crate::store::ceremonies::{Busy, Ceremonies, Entry as Ceremony, Purpose};
use crate::store::contract::{
    AuditStore, BanStore, FactorStore, SessionStore, StoreCheck, TokenStore,
};
use crate::store::contract::{CeremonyStore, RegulationStore};
use crate::store::credentials::{CredentialCheck, Credentials, HeldCheck};
use crate::store::error::{QueryError, StoreError, WriteError};
use crate::store::regulation::{AtLimit, Lease, Regulator};
use crate::store::reports::{AuditCounts, CheckReport, PruneReport, StoreStats, SweepReport};

/// The redb store behind the interface. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RedbBackend {
    /// The database file.
    store: Store,
    /// The writer thread's queue; `None` for a read-only open, whose writes
    /// all fail.
    writer: Option<Writer>,
    /// The failure counters: in this process, as one node holds the file.
    regulator: Arc<Regulator>,
    /// Passkey ceremonies in flight, in this process too.
    ceremonies: Arc<Ceremonies>,
    /// The current credentials of users a reload changed, which the writer
    /// checks a session-creating write against.
    credentials: Credentials,
}

impl RedbBackend {
    /// A writable backend: `writer` must have been spawned on `store`.
    pub fn new(store: Store, writer: Writer) -> Self {
        RedbBackend {
            store,
            writer: Some(writer),
            regulator: Default::default(),
            ceremonies: Default::default(),
            credentials: Default::default(),
        }
    }

    /// A backend that only reads `store`.
    pub fn read_only(store: Store) -> Self {
        RedbBackend {
            store,
            writer: None,
            regulator: Default::default(),
            ceremonies: Default::default(),
            credentials: Default::default(),
        }
    }

    /// `check` bound to this backend's credentials, as a write carries it.
    fn held(&self, check: Option<CredentialCheck>) -> Option<Box<HeldCheck>> {
        check.map(|check| {
            Box::new(HeldCheck {
                table: self.credentials.clone(),
                check,
            })
        })
    }

    /// The database file.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The writer, unless the backend is read-only.
    pub fn writer(&self) -> Option<&Writer> {
        self.writer.as_ref()
    }

    async fn submit(&self, op: Op) -> Result<OpOutput, WriteError> {
        match &self.writer {
            Some(w) => w.submit(op).await,
            None => Err(WriteError::Failed(Arc::new(StoreError::Storage(
                "the store is open read-only".into(),
            )))),
        }
    }

    /// Runs a scanning read on the blocking pool.
    fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Storage(format!("read task failed: {e}")).into())
                })
        }
    }
}

impl SessionStore for RedbBackend {
    async fn create_session(
        &self,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Result<CreatedSession, WriteError> {
        let op = Op::CreateSessionAudited {
            new: Box::new(new),
            event: login,
            check: self.held(check),
        };
        match self.submit(op).await? {
            OpOutput::Created(c) => Ok(c),
            OpOutput::CredentialsChanged => Err(WriteError::CredentialsChanged),
            other => unreachable_output("create_session", other),
        }
    }

    fn session_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send {
        // Answered now, on the caller's thread: the future is already done
        // and lives on the caller's stack.
        ready(self.store.session_by_hash(hash, now_ms))
    }

    #[inline]
    fn session_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<Session>, StoreError>> {
        Some(self.store.session_by_hash(hash, now_ms))
    }

    fn sessions_of(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send {
        // Bounded by the per-user session cap.
        ready(self.store.sessions_of(user, now_ms))
    }

    fn all_sessions(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send {
        self.blocking(move |s| s.all_sessions(now_ms, limit))
    }

    fn session_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(self.store.session_rows())
    }

    async fn revoke_by_token(
        &self,
        hash: TokenHash,
        how: Revocation,
    ) -> Result<Option<PublicId>, WriteError> {
        let op = Op::RevokeByToken {
            hash,
            reason: how.reason,
            ip: how.ip,
            now_ms: how.now_ms,
        };
        match self.submit(op).await? {
            OpOutput::RevokedOne(id) => Ok(id),
            other => unreachable_output("revoke_by_token", other),
        }
    }

    async fn revoke_session(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> Result<bool, WriteError> {
        let op = Op::RevokeById {
            user: user.to_string(),
            id,
            reason: how.reason,
            actor: how.actor,
            ip: how.ip,
            now_ms: how.now_ms,
        };
        match self.submit(op).await? {
            OpOutput::RevokedOne(done) => Ok(done.is_some()),
            other => unreachable_output("revoke_session", other),
        }
    }

    async fn revoke_user(
        &self,
        user: &str,
        keep: Option<PublicId>,
        how: Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        let op = Op::RevokeUser {
            user: user.to_string(),
            keep,
            reason: how.reason,
            actor: how.actor,
            ip: how.ip,
            now_ms: how.now_ms,
        };
        match self.submit(op).await? {
            OpOutput::Revoked(ids) => Ok(ids),
            other => unreachable_output("revoke_user", other),
        }
    }

    #[inline]
    /// In process: later writes are submitted after this returns, and the
    /// writer reads the table when it applies them.
    async fn set_credentials(
        &self,
        changes: Vec<(String, Option<CredentialCheck>)>,
    ) -> Result<(), WriteError> {
        self.credentials.set(changes);
        Ok(())
    }

    fn touch(&self, hash: TokenHash, now_ms: u64) -> Result<(), WriteError> {
        match &self.writer {
            Some(w) => w.touch(hash, now_ms),
            None => Err(WriteError::Closed),
        }
    }

    async fn sweep(&self, now_ms: u64, limit: usize) -> Result<SweepReport, WriteError> {
        match self.submit(Op::Sweep { now_ms, limit }).await? {
            OpOutput::Swept(r) => Ok(r),
            other => unreachable_output("sweep", other),
        }
    }
}

impl FactorStore for RedbBackend {
    fn factors(&self, user: &str) -> impl Future<Output = Result<FactorSet, StoreError>> + Send {
        ready(self.store.factors_of(user))
    }

    fn passkey_owner(
        &self,
        credential_id: &[u8],
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        ready(self.store.passkey_owner(credential_id))
    }

    async fn change_factors(
        &self,
        user: &str,
        change: FactorChange,
        event: Option<NewEvent>,
        now_ms: u64,
    ) -> Result<Result<Applied, FactorRefusal>, WriteError> {
        let op = Op::ChangeFactors {
            user: user.to_string(),
            change: Box::new(change),
            event,
            now_ms,
        };
        match self.submit(op).await? {
            OpOutput::Factors(r) => Ok(r),
            other => unreachable_output("change_factors", other),
        }
    }

    async fn create_pending(
        &self,
        pending: PendingSignIn,
        max_per_user: usize,
    ) -> Result<SessionToken, WriteError> {
        match self
            .submit(Op::CreatePending(Box::new(pending), max_per_user))
            .await?
        {
            OpOutput::PendingCreated(t) => Ok(t),
            other => unreachable_output("create_pending", other),
        }
    }

    fn pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PendingSignIn>, StoreError>> + Send {
        ready(self.store.pending(hash, now_ms))
    }

    async fn end_pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, WriteError> {
        match self.submit(Op::TakePending { hash, now_ms }).await? {
            OpOutput::Pending(p) => Ok(p),
            other => unreachable_output("end_pending", other),
        }
    }

    async fn complete_sign_in(
        &self,
        hash: TokenHash,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Result<Option<CreatedSession>, WriteError> {
        let op = Op::CompletePending {
            hash,
            new: Box::new(new),
            event: login,
            check: self.held(check),
        };
        match self.submit(op).await? {
            OpOutput::Completed(c) => Ok(c),
            OpOutput::CredentialsChanged => Err(WriteError::CredentialsChanged),
            other => unreachable_output("complete_sign_in", other),
        }
    }

    async fn step_up(
        &self,
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    ) -> Result<Option<CreatedSession>, WriteError> {
        let op = Op::StepUp {
            hash,
            method,
            event,
            now_ms,
        };
        match self.submit(op).await? {
            OpOutput::Completed(c) => Ok(c),
            other => unreachable_output("step_up", other),
        }
    }
}

impl TokenStore for RedbBackend {
    async fn create_token(
        &self,
        new: NewAccessToken,
        session: Option<TokenHash>,
    ) -> Result<Result<CreatedAccessToken, TokenRefusal>, WriteError> {
        let op = Op::CreateToken {
            new: Box::new(new),
            session,
        };
        match self.submit(op).await? {
            OpOutput::TokenCreated(r) => Ok(r),
            other => unreachable_output("create_token", other),
        }
    }

    fn token_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<AccessTokenInfo>, StoreError>> + Send {
        ready(self.store.token_by_hash(hash, now_ms))
    }

    #[inline]
    fn token_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<AccessTokenInfo>, StoreError>> {
        Some(self.store.token_by_hash(hash, now_ms))
    }

    fn tokens_of(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<AccessTokenInfo>, StoreError>> + Send {
        // Bounded by the per-user token cap.
        ready(self.store.tokens_of(user, now_ms))
    }

    fn token_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(self.store.token_rows())
    }

    async fn revoke_token(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> Result<bool, WriteError> {
        let op = Op::RevokeToken {
            user: user.to_string(),
            id,
            how,
        };
        match self.submit(op).await? {
            OpOutput::TokenRevoked(done) => Ok(done),
            other => unreachable_output("revoke_token", other),
        }
    }

    async fn revoke_user_tokens(
        &self,
        user: &str,
        how: Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        let op = Op::RevokeUserTokens {
            user: user.to_string(),
            how,
        };
        match self.submit(op).await? {
            OpOutput::TokensRevoked(ids) => Ok(ids),
            other => unreachable_output("revoke_user_tokens", other),
        }
    }

    #[inline]
    fn touch_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), WriteError> {
        match &self.writer {
            Some(w) => w.touch_token(hash, now_ms, ip),
            None => Err(WriteError::Closed),
        }
    }
}

impl BanStore for RedbBackend {
    fn ban(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Ban>, StoreError>> + Send {
        ready(self.store.ban(subject, now_ms))
    }

    #[inline]
    fn ban_now(
        &self,
        subject: &BanSubject,
        now_ms: u64,
    ) -> Option<Result<Option<Ban>, StoreError>> {
        Some(self.store.ban_hot(subject, now_ms))
    }

    fn bans(&self, now_ms: u64) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send {
        ready(self.store.bans(now_ms))
    }

    async fn add_ban(&self, ban: NewBan) -> Result<(), WriteError> {
        let op = Op::AddBan {
            subject: ban.subject,
            until_ms: ban.until_ms,
            reason: ban.reason,
            ip: ban.ip,
            now_ms: ban.now_ms,
        };
        match self.submit(op).await? {
            OpOutput::BanAdded => Ok(()),
            other => unreachable_output("add_ban", other),
        }
    }

    async fn lift_ban(
        &self,
        subject: &BanSubject,
        reason: &str,
        actor: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, WriteError> {
        let op = Op::LiftBan {
            subject: subject.clone(),
            reason: reason.to_string(),
            actor: actor.map(str::to_string),
            now_ms,
        };
        match self.submit(op).await? {
            OpOutput::BanLifted(lifted) => Ok(lifted),
            other => unreachable_output("lift_ban", other),
        }
    }
}

impl AuditStore for RedbBackend {
    async fn append(&self, event: NewEvent) -> Result<EventId, WriteError> {
        match self.submit(Op::Append(event)).await? {
            OpOutput::Appended(id) => Ok(id),
            other => unreachable_output("append", other),
        }
    }

    fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<EventPage, QueryError>> + Send {
        let filter = filter.clone();
        let cursor = cursor.map(str::to_string);
        self.blocking(move |s| s.query_events(&filter, limit, cursor.as_deref()))
    }

    fn events_after(
        &self,
        after: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.blocking(move |s| s.events_after(after, limit))
    }

    fn oldest_events(
        &self,
        below: EventId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.blocking(move |s| s.oldest_events(below, limit))
    }

    async fn prune(&self, through: EventId, limit: usize) -> Result<PruneReport, WriteError> {
        match self.submit(Op::Prune { through, limit }).await? {
            OpOutput::Pruned(r) => Ok(r),
            other => unreachable_output("prune", other),
        }
    }

    fn audit_counts(
        &self,
        top: usize,
    ) -> impl Future<Output = Result<AuditCounts, StoreError>> + Send {
        self.blocking(move |s| s.audit_counts(top))
    }
}

/// In process: the counters answer at once, so no future ever waits.
impl RegulationStore for RedbBackend {
    async fn reserve(
        &self,
        limits: &RegulationSettings,
        subjects: &[BanSubject],
        configured: bool,
        now_ms: u64,
    ) -> Result<Result<Lease, AtLimit>, StoreError> {
        Ok(self.regulator.reserve(limits, subjects, configured, now_ms))
    }

    async fn fail(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Result<Vec<(BanSubject, u64)>, StoreError> {
        Ok(self.regulator.fail(limits, lease, now_ms))
    }

    async fn succeed(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.regulator.succeed(limits, lease, now_ms);
        Ok(())
    }

    fn release(&self, limits: &RegulationSettings, lease: Lease, now_ms: u64) {
        self.regulator.release(limits, lease, now_ms);
    }

    async fn first_replay(
        &self,
        limits: &RegulationSettings,
        user: &str,
        step: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.regulator.first_replay(limits, user, step))
    }
}

/// In process: answered at once, so no future ever waits.
impl CeremonyStore for RedbBackend {
    async fn put_ceremony(
        &self,
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<SessionToken, StoreError> {
        Ok(self.ceremonies.put(purpose, user, by, state, now_ms))
    }

    async fn put_anonymous_ceremony(
        &self,
        ip: Option<std::net::IpAddr>,
        quota: usize,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<Result<SessionToken, Busy>, StoreError> {
        Ok(self.ceremonies.put_anonymous(ip, quota, state, now_ms))
    }

    async fn take_ceremony(
        &self,
        hash: TokenHash,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<Option<Ceremony>, StoreError> {
        Ok(self.ceremonies.take(hash, purpose, now_ms))
    }
}

impl StoreCheck for RedbBackend {
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send {
        self.blocking(|s| s.stats())
    }

    fn check(&self) -> impl Future<Output = Result<CheckReport, StoreError>> + Send {
        self.blocking(|s| s.check())
    }
}
