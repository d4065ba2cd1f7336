//! The redb backend's [`TokenStore`]: access tokens.

use std::future::{Future, ready};

use super::RedbBackend;
use crate::domain::{
    AccessTokenInfo, CreatedAccessToken, NewAccessToken, PublicId, Revocation, TokenHash,
    TokenRefusal,
};
use crate::store::contract::TokenStore;
use crate::store::error::{StoreError, WriteError};
use crate::store::redb::ops::{Op, OpOutput};
use crate::store::redb::writer::unreachable_output;

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
        self.spot_reads
            .then(|| self.store.token_by_hash(hash, now_ms))
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
