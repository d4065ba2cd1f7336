//! Personal access tokens, for clients that cannot fill a sign-in form
//! (scripts, CI, `git`, scrapers): 256 bits from the OS CSPRNG behind a
//! recognisable prefix, so that secret scanners can spot a leaked one. Like
//! a session token, it is shown once and stored only as its SHA-256
//! ([`TokenHash`]); `Debug` never prints it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use super::token::TokenHash;

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
}
