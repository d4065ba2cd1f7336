//! Credentials on the forward-auth check for clients that only speak HTTP
//! authentication: parsing `Authorization` (`Bearer TOKEN`, or
//! `Basic base64(user:secret)`), and a bounded, short-lived cache of Basic
//! password checks so that each distinct credential costs one argon2 check
//! a minute at most.
//!
//! The cache is keyed by HMAC-SHA-256 of the credential under a key drawn
//! at start and never stored, so neither a password nor a plain hash of one
//! sits in memory after the check. It holds at most its capacity; when full
//! of live entries it stops adding (the next check of a new credential is
//! hashed again, through the bounded hashing pool), so its size never
//! depends on what clients send.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Longest `Authorization` value looked at.
const MAX_HEADER: usize = 2048;
/// Longest cache life of a checked Basic credential.
pub const MAX_TTL_MS: u64 = 60_000;

/// What an `Authorization` header carries.
#[derive(PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Bearer TOKEN`.
    Bearer(&'a str),
    /// `Basic base64(user:secret)`: the secret is an access token or, where
    /// allowed, the user's password.
    Basic { user: String, secret: String },
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
        }
    }
}

/// The credential in an `Authorization` value, or `None` for anything
/// malformed (the check then answers as for no credential).
pub fn parse(value: &str) -> Option<Credential<'_>> {
    if value.len() > MAX_HEADER {
        return None;
    }
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty() && !rest.contains(' ')).then_some(Credential::Bearer(rest));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = B64.decode(rest).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, secret) = text.split_once(':')?;
    if user.is_empty() || secret.is_empty() || user.chars().any(char::is_control) {
        return None;
    }
    Some(Credential::Basic {
        user: user.to_string(),
        secret: secret.to_string(),
    })
}

/// What a Basic password check found, as the cache keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The right password of a user for whom a password alone is enough.
    Right,
    /// A wrong password, or an unknown user.
    Wrong,
    /// The right password of a user who has a second factor, or must have
    /// one: the sign-in form would ask for a second step, which Basic
    /// cannot give, so the password alone is refused (an access token is
    /// the way for scripts).
    NeedsSecondFactor,
}

/// Results of Basic password checks, for a minute at most.
pub struct BasicCache {
    key: [u8; 32],
    capacity: usize,
    ttl_ms: u64,
    entries: Mutex<HashMap<[u8; 32], (Checked, u64)>>,
}

impl BasicCache {
    /// A cache of at most `capacity` results, each kept `ttl_ms` (at most
    /// [`MAX_TTL_MS`]).
    pub fn new(capacity: usize, ttl_ms: u64) -> BasicCache {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        BasicCache {
            key,
            capacity,
            ttl_ms: ttl_ms.min(MAX_TTL_MS),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, user: &str, secret: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The cached result for this credential at `now_ms`, if still fresh.
    pub fn get(&self, user: &str, secret: &str, now_ms: u64) -> Option<Checked> {
        let tag = self.tag(user, secret);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&tag)
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(ok, _)| *ok)
    }

    /// Remembers a check's result. Expired entries are dropped first; a
    /// cache full of live ones keeps what it has.
    pub fn put(&self, user: &str, secret: &str, ok: Checked, now_ms: u64) {
        let tag = self.tag(user, secret);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&tag) {
            entries.retain(|_, (_, expires)| *expires > now_ms);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(tag, (ok, now_ms.saturating_add(self.ttl_ms)));
    }

    /// Forgets every result (a reload that changed passwords).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn authorization_values() {
        assert_eq!(parse("Bearer abc"), Some(Credential::Bearer("abc")));
        assert_eq!(parse("bearer  abc "), Some(Credential::Bearer("abc")));
        let basic = format!("Basic {}", B64.encode("alice:s3cret:with:colons"));
        assert_eq!(
            parse(&basic),
            Some(Credential::Basic {
                user: "alice".into(),
                secret: "s3cret:with:colons".into()
            })
        );
        for bad in [
            "",
            "Bearer",
            "Bearer a b",
            "Token abc",
            "Basic !!!",
            &format!("Basic {}", B64.encode("nocolon")),
            &format!("Basic {}", B64.encode(":pw")),
            &format!("Basic {}", B64.encode("user:")),
            &format!("Basic {}", B64.encode("a\nb:pw")),
            &format!("Bearer {}", "x".repeat(3000)),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let d = format!("{:?}", parse(&basic).unwrap());
        assert!(!d.contains("s3cret"), "{d}");
    }

    #[test]
    fn the_cache_is_short_lived_keyed_and_bounded() {
        let c = BasicCache::new(3, 120_000);
        assert_eq!(c.ttl_ms, MAX_TTL_MS, "at most a minute");
        c.put("alice", "pw", Checked::Right, 1_000);
        assert_eq!(c.get("alice", "pw", 1_001), Some(Checked::Right));
        assert_eq!(c.get("alice", "other", 1_001), None);
        assert_eq!(
            c.get("alic", "epw", 1_001),
            None,
            "user and secret are separated"
        );
        assert_eq!(c.get("alice", "pw", 1_000 + MAX_TTL_MS), None, "expired");
        c.put("b", "x", Checked::Wrong, 2_000);
        c.put("c", "x", Checked::NeedsSecondFactor, 2_000);
        c.put("d", "x", Checked::Wrong, 2_000);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("c", "x", 2_001), Some(Checked::NeedsSecondFactor));
        // Full of live entries: a new one is not kept.
        assert_eq!(c.get("d", "x", 2_001), None);
        // Once they expire, there is room again.
        c.put("e", "x", Checked::Right, 2_000 + MAX_TTL_MS);
        assert_eq!(c.get("e", "x", 2_001 + MAX_TTL_MS), Some(Checked::Right));
        assert!(c.len() <= 3);
        c.clear();
        assert!(c.is_empty());
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(v in "(?s).{0,120}", b in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = parse(&v);
            let _ = parse(&format!("Basic {}", B64.encode(&b)));
        }
    }
}
