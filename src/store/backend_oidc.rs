//! [`OidcStore`] for [`Backend`]: the redb backend keeps the OpenID Connect
//! provider's state; the distributed backend does not yet, and answers
//! every call with an error naming why (the server refuses `[oidc]`
//! clients on it at start, so this is a second line only).

use std::net::IpAddr;
use std::sync::Arc;

use super::backend::Backend;
use super::contract::OidcStore;
use super::error::{StoreError, WriteError};
use crate::domain::oidc::{
    CodeGrant, CodeRedemption, CodeRefusal, ConnectedApp, Consent, GrantId, Issued, LogoutAttempt,
    LogoutNotice, NewTokens, OidcToken, RefreshRefusal, RefreshRequest, StoredSigningKey,
};
use crate::domain::{NewEvent, Revocation, TokenHash};

/// Why the distributed backend answers no OpenID Connect call.
pub const NO_OIDC: &str = "the OpenID Connect provider needs the redb store; the distributed store does not keep its state yet";

fn unsupported() -> StoreError {
    StoreError::Storage(NO_OIDC.into())
}

fn unsupported_write() -> WriteError {
    WriteError::Failed(Arc::new(unsupported()))
}

/// Each method: the redb backend's, or the error above (`$err`: a read's
/// or a write's).
macro_rules! redb_only {
    () => {};
    ($err:ident async $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; $($rest:tt)*) => {
        async fn $name(&self, $($arg: $ty),*) -> $out {
            match self {
                Backend::Redb(b) => b.$name($($arg),*).await,
                Backend::Distributed(_) => {
                    let _ = ($($arg),*);
                    Err($err())
                }
            }
        }
        redb_only!($($rest)*);
    };
}

impl OidcStore for Backend {
    redb_only! {
        unsupported_write async oidc_subject(user: &str, fresh: String) -> Result<String, WriteError>;
        unsupported_write async put_code(code: TokenHash, grant: CodeGrant, event: NewEvent)
            -> Result<bool, WriteError>;
        unsupported_write async redeem_code(code: TokenHash, req: CodeRedemption, grant: GrantId, tokens: NewTokens)
            -> Result<Result<Issued, CodeRefusal>, WriteError>;
        unsupported_write async refresh_grant(presented: TokenHash, req: RefreshRequest)
            -> Result<Result<Issued, RefreshRefusal>, WriteError>;
        unsupported async oidc_token(hash: TokenHash, now_ms: u64) -> Result<Option<OidcToken>, StoreError>;
        unsupported_write async revoke_oidc_token(hash: TokenHash, client: &str, ip: Option<IpAddr>, now_ms: u64)
            -> Result<bool, WriteError>;
        unsupported async consent(user: &str, client: &str) -> Result<Option<Consent>, StoreError>;
        unsupported_write async give_consent(consent: Consent, event: NewEvent) -> Result<(), WriteError>;
        unsupported_write async disconnect_app(user: &str, client: &str, how: Revocation)
            -> Result<bool, WriteError>;
        unsupported async connected_apps(user: &str, now_ms: u64) -> Result<Vec<ConnectedApp>, StoreError>;
        unsupported async logouts_due(now_ms: u64, limit: usize) -> Result<Vec<LogoutNotice>, StoreError>;
        unsupported_write async logout_attempted(id: u64, attempt: LogoutAttempt, event: Option<NewEvent>)
            -> Result<(), WriteError>;
        unsupported async signing_keys() -> Result<Vec<StoredSigningKey>, StoreError>;
        unsupported_write async add_signing_key(key: StoredSigningKey, expect_current: Option<String>, publish_until_ms: u64, now_ms: u64)
            -> Result<Vec<StoredSigningKey>, WriteError>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::distributed::testing::{fresh_config, services, two_nodes};

    /// On the distributed store every call fails, naming why; nothing is
    /// answered as if it were empty.
    #[test]
    fn the_distributed_store_refuses_naming_why() {
        if !services() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = fresh_config().await.expect("checked above");
            let [node, _] = two_nodes(&config).await;
            let b = Backend::Distributed(node);
            let read = b.signing_keys().await.unwrap_err();
            assert!(read.to_string().contains(NO_OIDC), "{read}");
            let hash = crate::domain::SessionToken::generate().hash();
            assert!(
                b.oidc_token(hash, 0)
                    .await
                    .unwrap_err()
                    .to_string()
                    .contains(NO_OIDC)
            );
            let write = b.oidc_subject("alice", "s".into()).await.unwrap_err();
            assert!(
                matches!(&write, WriteError::Failed(e) if e.to_string().contains(NO_OIDC)),
                "{write}"
            );
        });
    }
}
