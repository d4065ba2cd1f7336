//! The redb backend's [`FactorStore`]: second factors and pending sign-ins.

use std::future::{Future, ready};

use super::RedbBackend;
use crate::domain::{
    Applied, CreatedSession, FactorChange, FactorRefusal, FactorSet, Method, NewEvent, NewSession,
    PendingSignIn, SessionToken, TokenHash,
};
use crate::store::contract::FactorStore;
use crate::store::credentials::CredentialCheck;
use crate::store::error::{StoreError, WriteError};
use crate::store::redb::ops::{Op, OpOutput};
use crate::store::redb::writer::unreachable_output;

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
