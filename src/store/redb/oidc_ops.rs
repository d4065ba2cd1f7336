//! The OpenID Connect write operations: [`OidcOp`], one [`super::Op`]
//! variant (`Op::Oidc`) for every write of the provider's state, and what
//! each returns ([`OidcOutput`]); applied inside the writer's transaction
//! by the `Tx` methods of `oidc.rs` and `oidc_state.rs`.

use std::net::IpAddr;

use super::txn::Tx;
use crate::domain::oidc::*;
use crate::domain::*;
use crate::store::error::StoreError;

/// One OpenID Connect write, applied by the writer like every [`super::Op`].
#[derive(Debug, Clone)]
pub enum OidcOp {
    Subject {
        user: String,
        fresh: String,
    },
    PutCode {
        code: TokenHash,
        grant: Box<CodeGrant>,
        event: NewEvent,
    },
    Redeem {
        code: TokenHash,
        req: CodeRedemption,
        grant: GrantId,
        tokens: NewTokens,
    },
    Refresh {
        presented: TokenHash,
        req: RefreshRequest,
    },
    Revoke {
        hash: TokenHash,
        client: String,
        ip: Option<IpAddr>,
        now_ms: u64,
    },
    GiveConsent {
        consent: Consent,
        event: NewEvent,
    },
    Disconnect {
        user: String,
        client: String,
        how: Revocation,
    },
    LogoutAttempted {
        id: u64,
        attempt: LogoutAttempt,
        event: Option<NewEvent>,
    },
    AddSigningKey {
        key: StoredSigningKey,
        expect_current: Option<String>,
        publish_until_ms: u64,
        now_ms: u64,
    },
    /// Users removed from the configuration: their subjects and consents go.
    ForgetUsers(Vec<String>),
}

/// What an [`OidcOp`] returned.
#[derive(Debug)]
pub enum OidcOutput {
    Subject(String),
    CodeStored(bool),
    Redeemed(Result<Issued, CodeRefusal>),
    Refreshed(Result<Issued, RefreshRefusal>),
    Done(bool),
    Keys(Vec<StoredSigningKey>),
}

impl OidcOp {
    pub fn name(&self) -> &'static str {
        match self {
            OidcOp::Subject { .. } => "oidc_subject",
            OidcOp::PutCode { .. } => "oidc_put_code",
            OidcOp::Redeem { .. } => "oidc_redeem",
            OidcOp::Refresh { .. } => "oidc_refresh",
            OidcOp::Revoke { .. } => "oidc_revoke",
            OidcOp::GiveConsent { .. } => "oidc_give_consent",
            OidcOp::Disconnect { .. } => "oidc_disconnect",
            OidcOp::LogoutAttempted { .. } => "oidc_logout_attempted",
            OidcOp::AddSigningKey { .. } => "oidc_add_signing_key",
            OidcOp::ForgetUsers(_) => "oidc_forget_users",
        }
    }

    pub(crate) fn apply(self, tx: &mut Tx<'_>) -> Result<OidcOutput, StoreError> {
        Ok(match self {
            OidcOp::Subject { user, fresh } => OidcOutput::Subject(tx.oidc_subject(&user, fresh)?),
            OidcOp::PutCode { code, grant, event } => {
                OidcOutput::CodeStored(tx.put_code(code, *grant, event)?)
            }
            OidcOp::Redeem {
                code,
                req,
                grant,
                tokens,
            } => OidcOutput::Redeemed(tx.redeem_code(code, req, grant, tokens)?),
            OidcOp::Refresh { presented, req } => {
                OidcOutput::Refreshed(tx.refresh_grant(presented, req)?)
            }
            OidcOp::Revoke {
                hash,
                client,
                ip,
                now_ms,
            } => OidcOutput::Done(tx.revoke_oidc_token(hash, &client, ip, now_ms)?),
            OidcOp::GiveConsent { consent, event } => {
                tx.give_consent(consent, event)?;
                OidcOutput::Done(true)
            }
            OidcOp::Disconnect { user, client, how } => {
                OidcOutput::Done(tx.disconnect_app(&user, &client, &how)?)
            }
            OidcOp::LogoutAttempted { id, attempt, event } => {
                OidcOutput::Done(tx.logout_attempted(id, attempt, event)?)
            }
            OidcOp::AddSigningKey {
                key,
                expect_current,
                publish_until_ms,
                now_ms,
            } => OidcOutput::Keys(tx.add_signing_key(
                key,
                expect_current,
                publish_until_ms,
                now_ms,
            )?),
            OidcOp::ForgetUsers(users) => {
                for user in &users {
                    tx.forget_oidc_user(user)?;
                }
                OidcOutput::Done(true)
            }
        })
    }
}
