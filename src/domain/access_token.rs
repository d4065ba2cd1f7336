//! Personal access tokens, for clients that cannot fill a sign-in form
//! (scripts, CI, `git`, scrapers): 256 bits from the OS CSPRNG behind a
//! recognisable prefix, so that secret scanners can spot a leaked one. Like
//! a session token, it is shown once and stored only as its SHA-256
//! ([`TokenHash`]); `Debug` never prints it.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use super::token::{PublicId, TokenHash};
use super::{EventKind, NewEvent};

/// What every access token starts with.
pub const PREFIX: &str = "gatehouse_pat_";
/// Characters after the prefix: 256 bits in unpadded base64url.
const BODY: usize = 43;

/// An access token.
#[derive(Clone)]
pub struct AccessToken([u8; 32]);

impl AccessToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> AccessToken {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        AccessToken(bytes)
    }

    /// Parses the shown form; anything else is `None`, without saying why.
    pub fn parse(s: &str) -> Option<AccessToken> {
        let body = s.strip_prefix(PREFIX)?;
        if body.len() != BODY {
            return None;
        }
        let mut out = [0u8; 32];
        match B64.decode_slice(body.as_bytes(), &mut out) {
            Ok(32) => Some(AccessToken(out)),
            _ => None,
        }
    }

    /// The form shown to its owner, once.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", B64.encode(self.0))
    }

    /// The first characters after the prefix, to tell tokens apart in a
    /// list; 36 bits, far too few to guess the rest from.
    pub fn hint(&self) -> String {
        self.expose()[..PREFIX.len() + 6].to_string()
    }

    /// SHA-256 of the token: what the store keeps and looks up. Domain
    /// separated from session tokens, so the two can never collide.
    pub fn hash(&self) -> TokenHash {
        let mut h = Sha256::new();
        h.update(PREFIX.as_bytes());
        h.update(self.0);
        TokenHash(h.finalize().into())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Most domains in a token's scope.
pub const MAX_TOKEN_DOMAINS: usize = 32;
/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME: usize = 64;
/// Longest domain in a scope, in bytes (a DNS name is at most 253).
pub const MAX_TOKEN_DOMAIN: usize = 253;
/// Most recent client addresses remembered per token: a use from any other
/// address is recorded as `token.used` (then remembered in place of the
/// oldest).
pub const TOKEN_RECENT_IPS: usize = 8;

/// A token to create, as its owner asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    pub user: String,
    /// The owner's label for it ("CI deploy", "laptop git").
    pub name: String,
    /// Host names (`*.example.com` for subdomains) it may reach; empty:
    /// every app its user may reach.
    pub domains: Vec<String>,
    /// When it stops working, in ms since the epoch.
    pub expires_ms: u64,
    /// Most live tokens its user may hold; creating one more is refused
    /// (never an eviction: scripts would break without warning).
    pub max_per_user: usize,
    /// The address of the request that asked for it.
    pub ip: Option<IpAddr>,
    pub now_ms: u64,
    /// The session asking for it had done a second factor. Stored only
    /// when that session, checked inside the write, still has one.
    pub two_factor: bool,
}

/// An access token as listed and checked: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessTokenInfo {
    /// Random id shown in lists and used to revoke it; never the token.
    pub id: PublicId,
    pub user: String,
    pub name: String,
    /// The start of the token as shown ([`AccessToken::hint`]).
    pub hint: String,
    pub domains: Vec<String>,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// The last recorded use (touches are coalesced like sessions').
    pub last_used_ms: Option<u64>,
    /// The most recent distinct client addresses, newest last.
    pub recent_ips: Vec<IpAddr>,
    /// Made by a session that had done a second factor: only such tokens
    /// pass a `two_factor` rule with `allow_tokens` (schema 7; older
    /// tokens are one-factor).
    pub two_factor: bool,
}

impl AccessTokenInfo {
    /// Its `token.created` event, the same on every backend: the user, the
    /// token by id and name (never any part of the secret), the address
    /// that asked, its expiry and scope (`*` for none).
    pub fn created_event(&self, ip: Option<IpAddr>) -> NewEvent {
        let domains = if self.domains.is_empty() {
            "*".to_string()
        } else {
            self.domains.join(",")
        };
        NewEvent::at(
            EventKind::TokenCreated,
            self.created_ms.saturating_mul(1000),
        )
        .user(self.user.clone())
        .detail("token", self.id.to_string())
        .detail("name", self.name.clone())
        .ip(ip)
        .detail("expires_ms", self.expires_ms.to_string())
        .detail("domains", domains)
    }

    /// Whether the token may be used for `host` (the original request's
    /// host, with or without a port): always when it has no scope, else when
    /// some scope entry names the host exactly or is `*.suffix` of it.
    /// Compared without regard to ASCII case; an empty host (unknown) is in
    /// no scope.
    pub fn allows_host(&self, host: &str) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        let host = bare_host(host).as_bytes();
        !host.is_empty()
            && self.domains.iter().any(|d| match d.strip_prefix("*.") {
                Some(sfx) => {
                    let s = sfx.as_bytes();
                    host.len() > s.len() + 1
                        && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
                        && host[host.len() - s.len() - 1] == b'.'
                }
                None => d.as_bytes().eq_ignore_ascii_case(host),
            })
    }

    /// Whether `ip` is one of the recent addresses.
    pub fn seen_from(&self, ip: Option<IpAddr>) -> bool {
        ip.is_none_or(|ip| self.recent_ips.contains(&ip))
    }
}

/// `host` without a port (and without the brackets of an IPv6 literal).
fn bare_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A token just created: the secret, to be shown once, and its entry.
#[derive(Debug)]
pub struct CreatedAccessToken {
    pub token: AccessToken,
    pub info: AccessTokenInfo,
}

/// Why a token was not created. Nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The user already holds `max_per_user` live tokens.
    AtCap,
    /// The session that asked for it ended before the token was stored (a
    /// sign-out, or a reload that changed the user's credentials).
    SessionEnded,
}

/// Checks a scope entry: a host name or `*.` and one, in the characters of
/// DNS names. Returns it lower-cased.
pub fn normalize_scope_domain(d: &str) -> Option<String> {
    let d = d.trim();
    let name = d.strip_prefix("*.").unwrap_or(d);
    let ok = !name.is_empty()
        && d.len() <= MAX_TOKEN_DOMAIN
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionToken;
    use proptest::prelude::*;

    #[test]
    fn round_trip_prefix_and_redaction() {
        let t = AccessToken::generate();
        let shown = t.expose();
        assert!(
            shown.starts_with(PREFIX) && shown.len() == PREFIX.len() + BODY,
            "{shown}"
        );
        let back = AccessToken::parse(&shown).unwrap();
        assert_eq!(back.hash(), t.hash());
        assert_ne!(AccessToken::generate().hash(), t.hash());
        assert!(!format!("{t:?}").contains(&shown[PREFIX.len()..]));
        assert!(shown.starts_with(&t.hint()));
        // A session token's body under the prefix is not the same key.
        let body = &shown[PREFIX.len()..];
        let as_session = SessionToken::parse(body).unwrap();
        assert_ne!(as_session.hash(), t.hash());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = AccessToken::generate().expose();
        for bad in [
            "",
            PREFIX,
            &good[PREFIX.len()..],
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen("gatehouse", "Gatehouse", 1),
            &format!("{PREFIX}{}", "!".repeat(BODY)),
        ] {
            assert!(AccessToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn random_input_never_panics(s in "(?s).{0,80}") {
            let _ = AccessToken::parse(&s);
            let _ = AccessToken::parse(&format!("{PREFIX}{s}"));
        }
    }

    fn info(domains: &[&str]) -> AccessTokenInfo {
        AccessTokenInfo {
            id: PublicId([0; 16]),
            user: "alice".into(),
            name: "ci".into(),
            hint: String::new(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            created_ms: 0,
            expires_ms: 1,
            last_used_ms: None,
            recent_ips: vec![],
            two_factor: false,
        }
    }

    #[test]
    fn scopes_match_hosts_exactly_or_by_subdomain() {
        let any = info(&[]);
        assert!(any.allows_host("anything.example") && any.allows_host(""));
        let t = info(&["git.example.com", "*.ci.example.com"]);
        for ok in [
            "git.example.com",
            "GIT.example.com:443",
            "a.ci.example.com",
            "x.y.ci.example.com:8080",
        ] {
            assert!(t.allows_host(ok), "{ok}");
        }
        for no in [
            "",
            "example.com",
            "ci.example.com",
            "evilci.example.com",
            "git.example.com.evil",
            "xgit.example.com",
            "wiki.example.com",
        ] {
            assert!(!t.allows_host(no), "{no}");
        }
    }

    #[test]
    fn scope_domains_are_checked() {
        assert_eq!(
            normalize_scope_domain(" Git.Example.com "),
            Some("git.example.com".into())
        );
        assert_eq!(
            normalize_scope_domain("*.Example.com"),
            Some("*.example.com".into())
        );
        for bad in [
            "", "*.", "*", "a..b", ".a", "a.", "a b", "a/b", "*.*.a", "ü.de",
        ] {
            assert_eq!(normalize_scope_domain(bad), None, "{bad:?}");
        }
        assert_eq!(normalize_scope_domain(&"a".repeat(300)), None);
    }
}
