//! The redb backend behind the store's interface: a [`Store`] (the file)
//! and, when writable, its [`Writer`] (the group-commit thread).
//!
//! Writes are [`Op`]s submitted to the writer; each method awaits its
//! durable commit. A touch is queued without waiting. Reads of one session
//! or one ban, and a user's sessions, run on the caller's thread (each a
//! few B-tree lookups, the hot path from a cached snapshot); reads that scan
//! (audit pages, counts, checks, stats, every session) run on the blocking
//! pool, so they need a Tokio runtime and never hold an async worker.

mod audit;
mod factors;
mod in_process;
mod oidc;
mod tokens;

use std::future::{Future, ready};
use std::sync::Arc;

use super::ops::{Op, OpOutput};
use super::writer::unreachable_output;
use super::{Store, Writer};
use crate::domain::{
    CreatedSession, NewEvent, NewSession, PublicId, Revocation, Session, TokenHash,
};
use crate::store::ceremonies::Ceremonies;
use crate::store::contract::SessionStore;
use crate::store::credentials::{CredentialCheck, Credentials, HeldCheck};
use crate::store::error::{StoreError, WriteError};
use crate::store::regulation::Regulator;
use crate::store::reports::SweepReport;

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
    /// Answer the `_now` lookups ([`super::StoreOptions::spot_reads`]).
    spot_reads: bool,
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
            spot_reads: true,
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
            spot_reads: true,
        }
    }

    /// This backend, answering the `_now` lookups only when `spot_reads`
    /// ([`super::StoreOptions::spot_reads`]).
    pub fn with_spot_reads(mut self, spot_reads: bool) -> Self {
        self.spot_reads = spot_reads;
        self
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
        self.spot_reads
            .then(|| self.store.session_by_hash(hash, now_ms))
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

    /// In process: later writes are submitted after this returns, and the
    /// writer reads the table when it applies them. Removed users' OpenID
    /// Connect subjects and consents are deleted by a write.
    async fn set_credentials(
        &self,
        changes: Vec<(String, Option<CredentialCheck>)>,
    ) -> Result<(), WriteError> {
        let removed: Vec<String> = changes
            .iter()
            .filter(|(_, check)| check.is_none())
            .map(|(user, _)| user.clone())
            .collect();
        self.credentials.set(changes);
        if removed.is_empty() {
            return Ok(());
        }
        // A removed user's subject and consents go, so that a later holder
        // of the name is a new subject with no consent.
        let op = Op::Oidc(Box::new(super::oidc_ops::OidcOp::ForgetUsers(removed)));
        match self.submit(op).await? {
            OpOutput::Oidc(_) => Ok(()),
            other => unreachable_output("set_credentials", other),
        }
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
