//! Session tokens and the identifiers derived from them: the cookie token
//! (never stored), its SHA-256 (a session's key) and the public id (shown in
//! lists, used to revoke without knowing the token).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A session token: 256 bits from the operating system's CSPRNG. It exists in
/// memory only to be handed to the client once; the store keeps its hash.
/// `Debug` never prints it.
#[derive(Clone)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// Draws a fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        SessionToken(bytes)
    }

    /// Parses the cookie form (unpadded base64url, 43 characters). Any other
    /// input is rejected without revealing why.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 43 {
            return None;
        }
        let mut out = [0u8; 32];
        match B64.decode_slice(s.as_bytes(), &mut out) {
            Ok(32) => Some(SessionToken(out)),
            _ => None,
        }
    }

    /// The cookie form of the token. Only ever sent to the client.
    pub fn expose(&self) -> String {
        B64.encode(self.0)
    }

    /// SHA-256 of the token: what the store keeps and looks up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a session token: the primary key of a session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    /// Constant-time equality, for callers comparing hashes they did not look up.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines and useless to an attacker.
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The public id of a session: random, shown in lists and used to revoke a
/// session without knowing its token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicId(pub(crate) [u8; 16]);

impl PublicId {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        PublicId(bytes)
    }
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicId({self})")
    }
}

impl FromStr for PublicId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 22 {
            return Err(());
        }
        let mut out = [0u8; 16];
        match B64.decode_slice(s.as_bytes(), &mut out) {
            Ok(16) => Ok(PublicId(out)),
            _ => Err(()),
        }
    }
}

impl Serialize for PublicId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicId {
    /// From the string form [`Serialize`] writes.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("bad public id {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_debug_hides_it() {
        let t = SessionToken::generate();
        let s = t.expose();
        assert_eq!(s.len(), 43);
        let back = SessionToken::parse(&s).unwrap();
        assert_eq!(back.hash(), t.hash());
        assert!(!format!("{t:?}").contains(&s));
        assert!(!format!("{:?}", t.hash()).contains(&s));
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(
            SessionToken::generate().hash(),
            SessionToken::generate().hash()
        );
    }

    #[test]
    fn bad_tokens_are_rejected() {
        for s in [
            "",
            "short",
            &"A".repeat(44),
            &"!".repeat(43),
            "ü".repeat(22).as_str(),
        ] {
            assert!(SessionToken::parse(s).is_none(), "{s:?}");
        }
    }
}
