//! OpenID Connect grants as every backend keeps them: what a user granted a
//! client at the authorization endpoint ([`Authorization`]), the one-use
//! code that carries it to the token endpoint ([`CodeGrant`]), the grant a
//! redeemed code becomes ([`GrantId`]: its access tokens and its family of
//! rotating refresh tokens), remembered consents, the back-channel logout
//! notices a session's end queues, and the sealed signing keys.
//!
//! The rules a write applies are pure functions here ([`CodeGrant::check`],
//! the events), so that every backend decides and audits the same way.
//!
//! # Invariants
//!
//! - Only hashes of codes and tokens are stored ([`TokenHash`]); the
//!   secrets themselves leave the server once, in the answer that issues them.
//! - A grant belongs to one gatehouse session: when the session ends (for
//!   any reason), every token of its grants dies in the same write, and one
//!   [`LogoutNotice`] per client that received tokens in it is queued.
//! - A code is redeemed at most once. A second redemption refuses and
//!   revokes the grant the first one made.
//! - A refresh token is used at most once: a use rotates it (the old one is
//!   kept as *retired* until it would have expired), and presenting a
//!   retired one revokes the whole grant.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::method::{Method, Methods};
use super::token::{PublicId, TokenHash};
use super::{EventKind, NewEvent};

/// How long an authorization code lives.
pub const CODE_TTL_MS: u64 = 60_000;

/// Codes a session holds at once (pending, or spent and kept until they
/// expire for replay detection); past it, those that expire first are
/// dropped.
pub const MAX_CODES_PER_SESSION: usize = 16;

/// Retired refresh tokens a grant remembers (for reuse detection); older
/// ones are forgotten, and presenting one is then only "unknown".
pub const MAX_RETIRED_REFRESH: usize = 64;

/// Logout notices waiting in all; past it the oldest are dropped (and
/// logged), so an unreachable client cannot grow the store without bound.
pub const MAX_LOGOUT_NOTICES: usize = 10_000;

/// Longest stored scope list, and longest scope, client id, redirect URI
/// and nonce (the endpoints refuse longer ones before they reach a store).
pub const MAX_SCOPES: usize = 32;
pub const MAX_SCOPE: usize = 64;
pub const MAX_CLIENT_ID: usize = 128;
pub const MAX_URI: usize = 2048;
pub const MAX_NONCE: usize = 512;

/// The id of one grant: a redeemed code and every token issued from it.
/// Random, made by the caller so that any backend can store it as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GrantId(pub [u8; 16]);

impl GrantId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        GrantId(bytes)
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({self})")
    }
}

/// Which secret an [`OidcSecret`] is: its hash is separated by kind, so
/// that one kind presented as another is never found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Code,
    Access,
    Refresh,
}

impl SecretKind {
    fn label(self) -> &'static [u8] {
        match self {
            SecretKind::Code => b"gatehouse oidc code\0",
            SecretKind::Access => b"gatehouse oidc access token\0",
            SecretKind::Refresh => b"gatehouse oidc refresh token\0",
        }
    }
}

/// A code or token: 256 bits from the operating system's CSPRNG, handed
/// out once (unpadded base64url); the store keeps [`OidcSecret::hash`].
/// `Debug` never prints it.
pub struct OidcSecret([u8; 32]);

impl OidcSecret {
    pub fn generate() -> OidcSecret {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        OidcSecret(bytes)
    }

    /// The form handed out.
    pub fn expose(&self) -> String {
        B64.encode(self.0)
    }

    pub fn hash(&self, kind: SecretKind) -> TokenHash {
        let mut h = Sha256::new();
        h.update(kind.label());
        h.update(self.0);
        TokenHash(h.finalize().into())
    }

    /// The hash of a presented secret, or `None` when it is not one of
    /// ours (any other shape).
    pub fn hash_presented(presented: &str, kind: SecretKind) -> Option<TokenHash> {
        if presented.len() != 43 {
            return None;
        }
        let mut out = [0u8; 32];
        match B64.decode_slice(presented.as_bytes(), &mut out) {
            Ok(32) => Some(OidcSecret(out).hash(kind)),
            _ => None,
        }
    }
}

impl fmt::Debug for OidcSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OidcSecret(<redacted>)")
    }
}

/// What a signed-in user granted one client, at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The client's configured id.
    pub client: String,
    pub user: String,
    /// The gatehouse session the user was signed in with (the `sid`).
    pub session: PublicId,
    /// Granted scopes, in request order, each once.
    pub scopes: Vec<String>,
    /// When the session's user signed in (`auth_time`), in ms.
    pub auth_time_ms: u64,
    /// How the session was signed in (`amr`, `acr`).
    pub methods: Methods,
}

impl Authorization {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// An authorization code's grant, stored under the code's hash until
/// redeemed or [`CODE_TTL_MS`] passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub auth: Authorization,
    /// The `redirect_uri` the code was sent to, exactly as given.
    pub redirect_uri: String,
    /// The PKCE `S256` challenge, if the client sent one.
    pub code_challenge: Option<String>,
    /// Passed through into the ID token.
    pub nonce: Option<String>,
    pub expires_ms: u64,
}

/// What the token endpoint presents with a code.
#[derive(Debug, Clone)]
pub struct CodeRedemption {
    /// The authenticated (or, for a public client, named) client.
    pub client: String,
    /// The `redirect_uri` parameter, if given.
    pub redirect_uri: Option<String>,
    /// The PKCE `code_verifier`, if given.
    pub code_verifier: Option<String>,
    pub ip: Option<IpAddr>,
    pub now_ms: u64,
}

/// Why a code was not redeemed. Every one is `invalid_grant` on the wire;
/// the variant is for the audit trail and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// No such code (never issued, or swept after expiry).
    Unknown,
    Expired,
    /// Issued to another client.
    WrongClient,
    /// `redirect_uri` missing or not the one the code was sent to.
    WrongRedirectUri,
    /// The code has a challenge and no verifier came, or the reverse.
    VerifierMissing,
    /// `S256(code_verifier)` is not the challenge.
    VerifierWrong,
    /// Redeemed before: the grant it made was revoked.
    Replayed,
    /// The session it was issued in has ended.
    SessionEnded,
}

impl CodeRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeRefusal::Unknown => "unknown_code",
            CodeRefusal::Expired => "expired",
            CodeRefusal::WrongClient => "wrong_client",
            CodeRefusal::WrongRedirectUri => "wrong_redirect_uri",
            CodeRefusal::VerifierMissing => "verifier_missing",
            CodeRefusal::VerifierWrong => "verifier_wrong",
            CodeRefusal::Replayed => "replayed",
            CodeRefusal::SessionEnded => "session_ended",
        }
    }
}

impl CodeGrant {
    /// Whether `req` may redeem this code, checked inside the write against
    /// the stored code (the one rule every backend applies). The client is
    /// checked first, so another client learns nothing about the code.
    pub fn check(&self, req: &CodeRedemption) -> Result<(), CodeRefusal> {
        if self.auth.client != req.client {
            return Err(CodeRefusal::WrongClient);
        }
        if req.now_ms >= self.expires_ms {
            return Err(CodeRefusal::Expired);
        }
        if req.redirect_uri.as_deref() != Some(self.redirect_uri.as_str()) {
            return Err(CodeRefusal::WrongRedirectUri);
        }
        match (&self.code_challenge, &req.code_verifier) {
            (None, None) => Ok(()),
            (Some(challenge), Some(verifier)) => {
                if pkce_s256(verifier)
                    .as_bytes()
                    .ct_eq(challenge.as_bytes())
                    .into()
                {
                    Ok(())
                } else {
                    Err(CodeRefusal::VerifierWrong)
                }
            }
            _ => Err(CodeRefusal::VerifierMissing),
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, the PKCE `S256` transform (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// The hashes of fresh tokens a redemption or a refresh stores (the caller
/// makes the tokens, and hands them out only once the write succeeded).
#[derive(Debug, Clone)]
pub struct NewTokens {
    pub access: TokenHash,
    pub access_expires_ms: u64,
    /// With `offline_access` granted and allowed.
    pub refresh: Option<(TokenHash, u64)>,
}

/// What a successful redemption or refresh stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub grant: GrantId,
    pub auth: Authorization,
    /// The code's nonce (a refresh carries none).
    pub nonce: Option<String>,
}

/// A refresh at the token endpoint.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    pub client: String,
    /// A narrower set of the grant's scopes, if asked (`scope`).
    pub scopes: Option<Vec<String>>,
    pub tokens: NewTokens,
    pub ip: Option<IpAddr>,
    pub now_ms: u64,
}

/// Why a refresh token was not accepted (`invalid_grant` on the wire,
/// `invalid_scope` for [`RefreshRefusal::ScopeWidened`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    Expired,
    WrongClient,
    /// A retired token was presented: the grant was revoked.
    Reused,
    /// `scope` asked for a scope the grant does not hold.
    ScopeWidened,
}

impl RefreshRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshRefusal::Unknown => "unknown_token",
            RefreshRefusal::Expired => "expired",
            RefreshRefusal::WrongClient => "wrong_client",
            RefreshRefusal::Reused => "reused",
            RefreshRefusal::ScopeWidened => "scope_widened",
        }
    }
}

/// Which of a grant's tokens a hash names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OidcTokenKind {
    Access,
    Refresh,
}

/// A live token as userinfo, introspection and revocation see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcToken {
    pub kind: OidcTokenKind,
    pub grant: GrantId,
    pub auth: Authorization,
    pub issued_ms: u64,
    pub expires_ms: u64,
}

/// A consent a user gave a client (`consent = "explicit"`), remembered
/// until withdrawn or the user is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub user: String,
    pub client: String,
    pub scopes: Vec<String>,
    pub granted_ms: u64,
}

impl Consent {
    /// Whether this consent covers every scope in `asked`.
    pub fn covers(&self, asked: &[String]) -> bool {
        asked.iter().all(|a| self.scopes.contains(a))
    }
}

/// One app a user's account is connected to, for the account page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    pub client: String,
    pub consent: Option<Consent>,
    /// The live sessions that issued its live grants.
    pub sessions: Vec<PublicId>,
    /// When it last received tokens, in ms (0: only a consent).
    pub last_issued_ms: u64,
}

/// A back-channel logout waiting to be sent: `session` ended, and `client`
/// had received tokens in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutNotice {
    /// Increasing, assigned by the store.
    pub id: u64,
    pub client: String,
    pub user: String,
    pub session: PublicId,
    pub queued_ms: u64,
    /// Sends tried so far.
    pub attempts: u32,
    /// Not sent before this time.
    pub not_before_ms: u64,
}

/// What became of one send of a [`LogoutNotice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutAttempt {
    /// Delivered, or not wanted (the client has no back-channel URI now):
    /// the notice is removed.
    Done,
    /// Try again at this time.
    Retry { not_before_ms: u64 },
    /// Out of tries: the notice is removed.
    GaveUp,
}

/// A signing key, sealed with `secrets.key` by the server (no backend sees
/// it in the clear).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSigningKey {
    /// The JWK `kid`.
    pub kid: String,
    /// The sealed PKCS#8 document.
    pub sealed: Vec<u8>,
    pub created_ms: u64,
    /// When a newer key took over signing; `None` for the current key.
    pub retired_ms: Option<u64>,
    /// A retired key is published until then (the last token it signed has
    /// expired), and removed after.
    pub publish_until_ms: Option<u64>,
}

impl fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .field("created_ms", &self.created_ms)
            .field("retired_ms", &self.retired_ms)
            .field("publish_until_ms", &self.publish_until_ms)
            .finish()
    }
}

/// The `amr` values (RFC 8176) of a session's methods: `pwd`, `otp`,
/// `hwk` for a passkey, `swk` for a recovery code (a software-held secret),
/// and `mfa` when more than one factor was used.
pub fn amr(methods: Methods) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = methods
        .iter()
        .map(|m| match m {
            Method::Password => "pwd",
            Method::Totp => "otp",
            Method::WebAuthn => "hwk",
            Method::Recovery => "swk",
        })
        .collect();
    if out.len() > 1 {
        out.push("mfa");
    }
    out
}

/// `acr` for two factors.
pub const ACR_2FA: &str = "urn:gatehouse:2fa";
/// `acr` for one.
pub const ACR_1FA: &str = "urn:gatehouse:1fa";

/// The `acr` of a session's methods.
pub fn acr(methods: Methods) -> &'static str {
    if methods.two_factor() {
        ACR_2FA
    } else {
        ACR_1FA
    }
}

fn grant_event(kind: EventKind, auth: &Authorization, ip: Option<IpAddr>, at_ms: u64) -> NewEvent {
    NewEvent::at(kind, at_ms * 1000)
        .user(auth.user.clone())
        .ip(ip)
        .session(auth.session)
        .detail("client", auth.client.clone())
}

impl CodeGrant {
    /// `oidc.authorized`: a code was issued.
    pub fn authorized_event(&self, ip: Option<IpAddr>, now_ms: u64) -> NewEvent {
        grant_event(EventKind::OidcAuthorized, &self.auth, ip, now_ms)
            .detail("scopes", self.auth.scopes.join(" "))
    }
}

impl Issued {
    /// `oidc.token`: a code was redeemed.
    pub fn token_event(&self, refresh: bool, ip: Option<IpAddr>, now_ms: u64) -> NewEvent {
        grant_event(EventKind::OidcToken, &self.auth, ip, now_ms)
            .detail("grant", self.grant.to_string())
            .detail("refresh_token", refresh.to_string())
    }

    /// `oidc.refreshed`: a refresh token was rotated.
    pub fn refreshed_event(&self, ip: Option<IpAddr>, now_ms: u64) -> NewEvent {
        grant_event(EventKind::OidcRefreshed, &self.auth, ip, now_ms)
            .detail("grant", self.grant.to_string())
    }
}

/// `oidc.refresh_reused`: a retired refresh token came back, and its grant
/// was revoked.
pub fn refresh_reused_event(
    auth: &Authorization,
    grant: GrantId,
    ip: Option<IpAddr>,
    now_ms: u64,
) -> NewEvent {
    grant_event(EventKind::OidcRefreshReused, auth, ip, now_ms).detail("grant", grant.to_string())
}

/// `oidc.revoked`: a grant (or one access token of it) was revoked;
/// `reason` is `client` (RFC 7009), `code_replayed`, `user` (withdrawn on
/// the account page), `admin`, or `grant_cap` (the session's oldest grant,
/// past the most one session keeps).
pub fn revoked_event(
    auth: &Authorization,
    grant: GrantId,
    reason: &str,
    ip: Option<IpAddr>,
    now_ms: u64,
) -> NewEvent {
    grant_event(EventKind::OidcRevoked, auth, ip, now_ms)
        .detail("grant", grant.to_string())
        .detail("reason", reason.to_string())
}

impl Consent {
    /// `oidc.consent`: given (`granted`) or withdrawn.
    pub fn event(&self, granted: bool, ip: Option<IpAddr>, now_ms: u64) -> NewEvent {
        NewEvent::at(EventKind::OidcConsent, now_ms * 1000)
            .user(self.user.clone())
            .ip(ip)
            .detail("client", self.client.clone())
            .detail("granted", granted.to_string())
            .detail("scopes", self.scopes.join(" "))
    }
}

impl LogoutNotice {
    /// `oidc.logout_sent`: one send, with its outcome (`delivered`,
    /// `failed`, `gave_up`) and, for a failure, why (never a token).
    pub fn sent_event(&self, outcome: &str, why: Option<&str>, now_ms: u64) -> NewEvent {
        let ev = NewEvent::at(EventKind::OidcLogoutSent, now_ms * 1000)
            .user(self.user.clone())
            .session(self.session)
            .detail("client", self.client.clone())
            .detail("outcome", outcome.to_string())
            .detail("attempt", (self.attempts + 1).to_string());
        match why {
            Some(w) => ev.detail("error", w.to_string()),
            None => ev,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> CodeGrant {
        CodeGrant {
            auth: Authorization {
                client: "grafana".into(),
                user: "alice".into(),
                session: PublicId([7; 16]),
                scopes: vec!["openid".into()],
                auth_time_ms: 1_000,
                methods: Methods::PASSWORD,
            },
            redirect_uri: "https://grafana.test/cb".into(),
            // RFC 7636 appendix B.
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            nonce: None,
            expires_ms: 61_000,
        }
    }

    fn redemption() -> CodeRedemption {
        CodeRedemption {
            client: "grafana".into(),
            redirect_uri: Some("https://grafana.test/cb".into()),
            code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into()),
            ip: None,
            now_ms: 2_000,
        }
    }

    #[test]
    fn the_rfc_7636_example_verifier_redeems_and_every_binding_is_checked() {
        let g = grant();
        assert_eq!(g.check(&redemption()), Ok(()));
        let with = |f: fn(&mut CodeRedemption)| {
            let mut r = redemption();
            f(&mut r);
            g.check(&r)
        };
        assert_eq!(
            with(|r| r.client = "forgejo".into()),
            Err(CodeRefusal::WrongClient)
        );
        assert_eq!(with(|r| r.now_ms = 61_000), Err(CodeRefusal::Expired));
        assert_eq!(
            with(|r| r.redirect_uri = None),
            Err(CodeRefusal::WrongRedirectUri)
        );
        assert_eq!(
            with(|r| r.redirect_uri = Some("https://grafana.test/cb/".into())),
            Err(CodeRefusal::WrongRedirectUri)
        );
        assert_eq!(
            with(|r| r.code_verifier = None),
            Err(CodeRefusal::VerifierMissing)
        );
        assert_eq!(
            with(|r| r.code_verifier = Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl".into())),
            Err(CodeRefusal::VerifierWrong)
        );
        let mut plain = grant();
        plain.code_challenge = None;
        assert_eq!(
            plain.check(&redemption()),
            Err(CodeRefusal::VerifierMissing)
        );
        let mut r = redemption();
        r.code_verifier = None;
        assert_eq!(plain.check(&r), Ok(()));
    }

    #[test]
    fn amr_and_acr_follow_the_methods() {
        assert_eq!(amr(Methods::PASSWORD), vec!["pwd"]);
        assert_eq!(acr(Methods::PASSWORD), ACR_1FA);
        let two = Methods::PASSWORD.with(Method::Totp);
        assert_eq!(amr(two), vec!["pwd", "otp", "mfa"]);
        assert_eq!(acr(two), ACR_2FA);
        let passkey = Methods::of(&[Method::WebAuthn]);
        assert_eq!(amr(passkey), vec!["hwk"]);
        assert_eq!(acr(passkey), ACR_2FA);
    }

    #[test]
    fn a_secret_is_found_only_as_its_own_kind() {
        let s = OidcSecret::generate();
        let shown = s.expose();
        assert_eq!(
            OidcSecret::hash_presented(&shown, SecretKind::Code),
            Some(s.hash(SecretKind::Code))
        );
        assert_ne!(s.hash(SecretKind::Code), s.hash(SecretKind::Access));
        assert_eq!(
            OidcSecret::hash_presented(&shown[1..], SecretKind::Code),
            None
        );
        assert_eq!(format!("{s:?}"), "OidcSecret(<redacted>)");
    }

    #[test]
    fn a_sealed_key_is_not_shown_by_debug() {
        let k = StoredSigningKey {
            kid: "k1".into(),
            sealed: vec![42; 100],
            created_ms: 0,
            retired_ms: None,
            publish_until_ms: None,
        };
        assert!(!format!("{k:?}").contains("42"));
    }
}
