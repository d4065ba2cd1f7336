//! The OpenID Connect provider's state: authorization codes, grants (their
//! access tokens and rotating refresh tokens), consents, stable subjects,
//! back-channel logout notices and the sealed signing keys.
//!
//! Shaped like [`super::SessionStore`] so that the distributed backend can
//! keep it the same way: every record is found by a hash or a small key
//! (never a scan), every write is one atomic change with its audit event,
//! and a grant is tied to the session it was issued in.
//!
//! # The contract (besides the store-wide one)
//!
//! - **Codes once.** [`OidcStore::redeem_code`] checks the stored code with
//!   [`CodeGrant::check`] inside the write and marks it spent in the same
//!   change that stores the grant. A spent code presented again is
//!   [`CodeRefusal::Replayed`], and the grant it made is revoked in that
//!   write (with `oidc.revoked`, reason `code_replayed`). A spent code is
//!   remembered until it would have expired.
//! - **Refresh tokens once.** [`OidcStore::refresh_grant`] retires the
//!   presented token and stores the new pair in one change; a retired token
//!   presented again revokes the whole grant (`oidc.refresh_reused`).
//! - **Grants die with their session.** Whatever ends a session (sign-out,
//!   revocation, expiry, eviction, a credential change, a removed user)
//!   deletes every grant issued in it in the same write, and queues one
//!   [`LogoutNotice`] per client that received tokens in it. A code whose
//!   session ended is refused ([`CodeRefusal::SessionEnded`]).
//! - **A removed user leaves nothing.** `set_credentials` with `None`
//!   drops the user's subject and consents with their sessions.
//! - **Swept.** `sweep` also removes expired codes and grants past the
//!   expiry of all their tokens.

use std::future::Future;

use std::net::IpAddr;

use crate::domain::oidc::{
    CodeGrant, CodeRedemption, CodeRefusal, ConnectedApp, Consent, GrantId, Issued, LogoutAttempt,
    LogoutNotice, NewTokens, OidcToken, RefreshRefusal, RefreshRequest, StoredSigningKey,
};
use crate::domain::{NewEvent, Revocation, TokenHash};
use crate::store::error::{StoreError, WriteError};

/// The OpenID Connect provider's state. See the module documentation.
pub trait OidcStore: Send + Sync {
    /// `user`'s `sub`: the stored one, or `fresh` stored now when there is
    /// none (the caller makes it random). Stable until the user is removed.
    fn oidc_subject(
        &self,
        user: &str,
        fresh: String,
    ) -> impl Future<Output = Result<String, WriteError>> + Send;

    /// Stores a code's grant under the code's hash, with `oidc.authorized`
    /// ([`CodeGrant::authorized_event`]), unless its session has ended at
    /// the event's time (then `Ok(false)`, nothing stored).
    fn put_code(
        &self,
        code: TokenHash,
        grant: CodeGrant,
        event: NewEvent,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;

    /// Redeems a code: checks it, stores the grant `grant` with the
    /// tokens' hashes, marks the code spent and appends `oidc.token`
    /// ([`Issued::token_event`]), all in one change. `tokens.refresh` is
    /// stored only when the code's scopes hold `offline_access` (the caller
    /// hands it out only then). A refusal writes nothing, except a replay
    /// (see the module documentation). The client is checked first: a
    /// spent code presented by another client is
    /// [`CodeRefusal::WrongClient`] and revokes nothing.
    fn redeem_code(
        &self,
        code: TokenHash,
        req: CodeRedemption,
        grant: GrantId,
        tokens: NewTokens,
    ) -> impl Future<Output = Result<Result<Issued, CodeRefusal>, WriteError>> + Send;

    /// Rotates a refresh token: retires `presented`, stores `req.tokens`
    /// (whose `refresh` is always `Some`) in the same grant, with
    /// `oidc.refreshed`. A retired token revokes the grant
    /// (`oidc.refresh_reused`) and is refused. A token whose session is
    /// past its deadline (not yet swept) is [`RefreshRefusal::Expired`].
    fn refresh_grant(
        &self,
        presented: TokenHash,
        req: RefreshRequest,
    ) -> impl Future<Output = Result<Result<Issued, RefreshRefusal>, WriteError>> + Send;

    /// The live access or refresh token with this hash at `now_ms` (a
    /// retired refresh token is not live, nor any token of a session past
    /// its deadline, even before the sweep).
    fn oidc_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<OidcToken>, StoreError>> + Send;

    /// RFC 7009 revocation by `client`: a refresh token revokes its grant,
    /// an access token only itself; with `oidc.revoked` (reason `client`).
    /// A token of another client, or none, changes nothing: `Ok(false)`.
    fn revoke_oidc_token(
        &self,
        hash: TokenHash,
        client: &str,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;

    /// `user`'s remembered consent for `client`.
    fn consent(
        &self,
        user: &str,
        client: &str,
    ) -> impl Future<Output = Result<Option<Consent>, StoreError>> + Send;

    /// Remembers a consent (replacing an earlier one), with `event`
    /// ([`Consent::event`]).
    fn give_consent(
        &self,
        consent: Consent,
        event: NewEvent,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Withdraws `user`'s consent for `client` and revokes every grant of
    /// theirs to it (each with `oidc.revoked`, reason `user` or `admin` from
    /// `how.reason`), and
    /// `oidc.consent` when a consent was held. Returns whether anything was
    /// held.
    fn disconnect_app(
        &self,
        user: &str,
        client: &str,
        how: Revocation,
    ) -> impl Future<Output = Result<bool, WriteError>> + Send;

    /// The apps `user` is connected to (a consent or a live grant), by
    /// client id.
    fn connected_apps(
        &self,
        user: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<ConnectedApp>, StoreError>> + Send;

    /// Up to `limit` logout notices due at `now_ms`, in due order (by
    /// `not_before_ms`, then by id: first queued, first sent).
    fn logouts_due(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LogoutNotice>, StoreError>> + Send;

    /// Records one send of notice `id` with its `oidc.logout_sent` event
    /// (none for [`LogoutAttempt::Done`] of a notice not wanted: `event`
    /// is then `None`).
    fn logout_attempted(
        &self,
        id: u64,
        attempt: LogoutAttempt,
        event: Option<NewEvent>,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Every stored signing key, the current one (no `retired_ms`) first.
    fn signing_keys(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredSigningKey>, StoreError>> + Send;

    /// Makes `key` the current signing key when `expect_current` is the
    /// current key's kid (`None`: there is none), retiring that one with
    /// `publish_until_ms`, and removing retired keys whose
    /// `publish_until_ms` is before `now_ms`. Returns the keys after, as
    /// [`OidcStore::signing_keys`]. When `expect_current` is not current
    /// (another node rotated first), changes nothing and returns the keys.
    fn add_signing_key(
        &self,
        key: StoredSigningKey,
        expect_current: Option<String>,
        publish_until_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<StoredSigningKey>, WriteError>> + Send;
}
