//! The redb backend's [`OidcStore`]: each write one [`OidcOp`] through the
//! writer, each read from the file on the caller's thread (point gets and
//! short ranges; the signing keys and a user's connected apps are bounded
//! by what they hold).

use std::future::{Future, ready};
use std::net::IpAddr;

use super::RedbBackend;
use crate::domain::oidc::{
    CodeGrant, CodeRedemption, CodeRefusal, ConnectedApp, Consent, GrantId, Issued, LogoutAttempt,
    LogoutNotice, NewTokens, OidcToken, RefreshRefusal, RefreshRequest, StoredSigningKey,
};
use crate::domain::{NewEvent, Revocation, TokenHash};
use crate::store::contract::OidcStore;
use crate::store::error::{StoreError, WriteError};
use crate::store::redb::oidc_ops::{OidcOp, OidcOutput};
use crate::store::redb::ops::{Op, OpOutput};
use crate::store::redb::writer::unreachable_output;

impl RedbBackend {
    async fn submit_oidc(&self, op: OidcOp) -> Result<OidcOutput, WriteError> {
        let name = op.name();
        match self.submit(Op::Oidc(Box::new(op))).await? {
            OpOutput::Oidc(out) => Ok(out),
            other => unreachable_output(name, other),
        }
    }
}

fn mismatched<T>(op: &str, out: OidcOutput) -> Result<T, WriteError> {
    unreachable_output(op, OpOutput::Oidc(out))
}

impl OidcStore for RedbBackend {
    async fn oidc_subject(&self, user: &str, fresh: String) -> Result<String, WriteError> {
        // Read first: a user's subject is written once and read at every
        // sign-in of theirs.
        let stored = self
            .store
            .oidc_subject_of(user)
            .map_err(|e| WriteError::Failed(std::sync::Arc::new(e)))?;
        if let Some(sub) = stored {
            return Ok(sub);
        }
        let op = OidcOp::Subject {
            user: user.to_string(),
            fresh,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::Subject(s) => Ok(s),
            other => mismatched("oidc_subject", other),
        }
    }

    async fn put_code(
        &self,
        code: TokenHash,
        grant: CodeGrant,
        event: NewEvent,
    ) -> Result<bool, WriteError> {
        let op = OidcOp::PutCode {
            code,
            grant: Box::new(grant),
            event,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::CodeStored(b) => Ok(b),
            other => mismatched("put_code", other),
        }
    }

    async fn redeem_code(
        &self,
        code: TokenHash,
        req: CodeRedemption,
        grant: GrantId,
        tokens: NewTokens,
    ) -> Result<Result<Issued, CodeRefusal>, WriteError> {
        let op = OidcOp::Redeem {
            code,
            req,
            grant,
            tokens,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::Redeemed(r) => Ok(r),
            other => mismatched("redeem_code", other),
        }
    }

    async fn refresh_grant(
        &self,
        presented: TokenHash,
        req: RefreshRequest,
    ) -> Result<Result<Issued, RefreshRefusal>, WriteError> {
        match self.submit_oidc(OidcOp::Refresh { presented, req }).await? {
            OidcOutput::Refreshed(r) => Ok(r),
            other => mismatched("refresh_grant", other),
        }
    }

    fn oidc_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<OidcToken>, StoreError>> + Send {
        ready(self.store.oidc_token(hash, now_ms))
    }

    async fn revoke_oidc_token(
        &self,
        hash: TokenHash,
        client: &str,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<bool, WriteError> {
        let op = OidcOp::Revoke {
            hash,
            client: client.to_string(),
            ip,
            now_ms,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::Done(b) => Ok(b),
            other => mismatched("revoke_oidc_token", other),
        }
    }

    fn consent(
        &self,
        user: &str,
        client: &str,
    ) -> impl Future<Output = Result<Option<Consent>, StoreError>> + Send {
        ready(self.store.oidc_consent(user, client))
    }

    async fn give_consent(&self, consent: Consent, event: NewEvent) -> Result<(), WriteError> {
        match self
            .submit_oidc(OidcOp::GiveConsent { consent, event })
            .await?
        {
            OidcOutput::Done(_) => Ok(()),
            other => mismatched("give_consent", other),
        }
    }

    async fn disconnect_app(
        &self,
        user: &str,
        client: &str,
        how: Revocation,
    ) -> Result<bool, WriteError> {
        let op = OidcOp::Disconnect {
            user: user.to_string(),
            client: client.to_string(),
            how,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::Done(b) => Ok(b),
            other => mismatched("disconnect_app", other),
        }
    }

    fn connected_apps(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<ConnectedApp>, StoreError>> + Send {
        ready(self.store.connected_apps(user, now_ms))
    }

    fn logouts_due(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LogoutNotice>, StoreError>> + Send {
        ready(self.store.logouts_due(now_ms, limit))
    }

    async fn logout_attempted(
        &self,
        id: u64,
        attempt: LogoutAttempt,
        event: Option<NewEvent>,
    ) -> Result<(), WriteError> {
        let op = OidcOp::LogoutAttempted { id, attempt, event };
        match self.submit_oidc(op).await? {
            OidcOutput::Done(_) => Ok(()),
            other => mismatched("logout_attempted", other),
        }
    }

    fn signing_keys(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredSigningKey>, StoreError>> + Send {
        ready(self.store.signing_keys())
    }

    async fn add_signing_key(
        &self,
        key: StoredSigningKey,
        expect_current: Option<String>,
        publish_until_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredSigningKey>, WriteError> {
        let op = OidcOp::AddSigningKey {
            key,
            expect_current,
            publish_until_ms,
            now_ms,
        };
        match self.submit_oidc(op).await? {
            OidcOutput::Keys(k) => Ok(k),
            other => mismatched("add_signing_key", other),
        }
    }
}
