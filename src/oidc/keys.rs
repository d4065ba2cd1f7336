//! The provider's signing keys: RSA-2048 key pairs made and used by
//! AWS-LC (constant-time RSA, no system library), sealed with
//! `secrets.key` for the store, published as a JWKS, and used to sign and
//! check compact JWS (RS256).
//!
//! The JWS here is the fixed form gatehouse writes (`{"alg":"RS256",
//! "typ":..,"kid":..}`); [`KeyRing::verify`] accepts only RS256 under a
//! `kid` the ring holds, so `alg: none`, HMAC confusion and foreign keys are
//! refused before any signature is checked.
//!
//! # Invariants
//!
//! - A private key leaves memory only sealed ([`SigningKey::seal`]); `Debug`
//!   shows the `kid` alone.
//! - The ring's first key is the one that signs; the others are published
//!   until their `publish_until_ms`.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::oidc::StoredSigningKey;
use crate::identity::secret_box::SecretBox;

/// What sealed keys are sealed for (the secret box's purpose).
const SEAL_PURPOSE: &str = "oidc-signing-key";

/// Why a key or a token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key could not be made: {0}")]
    Generate(&'static str),
    /// Sealed with another `secrets.key`, or damaged.
    #[error("signing key {0} cannot be opened with this secrets.key")]
    Unsealable(String),
    #[error("signing failed")]
    Sign,
}

/// Why a presented JWS was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("only RS256 is accepted")]
    Algorithm,
    #[error("not signed by a key of this provider")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
}

/// One RSA key pair and its `kid`.
pub struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new RSA-2048 key with a random `kid`.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate("rsa"))?;
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|_| KeyError::Generate("random"))?;
        Ok(SigningKey {
            kid: B64.encode(id),
            pair,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key sealed for the store, as the current key made at `now_ms`.
    pub fn seal(&self, secrets: &SecretBox, now_ms: u64) -> Result<StoredSigningKey, KeyError> {
        let der = self.pair.as_der().map_err(|_| KeyError::Sign)?;
        Ok(StoredSigningKey {
            kid: self.kid.clone(),
            sealed: secrets.seal(SEAL_PURPOSE, &self.kid, der.as_ref()),
            created_ms: now_ms,
            retired_ms: None,
            publish_until_ms: None,
        })
    }

    /// The key a stored one seals.
    pub fn unseal(stored: &StoredSigningKey, secrets: &SecretBox) -> Result<SigningKey, KeyError> {
        let unopenable = || KeyError::Unsealable(stored.kid.clone());
        let der = secrets
            .open(SEAL_PURPOSE, &stored.kid, &stored.sealed)
            .map_err(|_| unopenable())?;
        let pair = KeyPair::from_pkcs8(&der).map_err(|_| unopenable())?;
        Ok(SigningKey {
            kid: stored.kid.clone(),
            pair,
        })
    }

    /// The public key as a JWK (RFC 7517, RFC 7518 §6.3).
    pub fn jwk(&self) -> serde_json::Value {
        let public = self.pair.public_key();
        let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(public);
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": B64.encode(strip_zeros(&components.n)),
            "e": B64.encode(strip_zeros(&components.e)),
        })
    }

    /// Signs `claims` as a compact JWS with this key; `typ` names the
    /// token type (`JWT`, or `logout+jwt` for a logout token).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let header = serde_json::json!({ "alg": "RS256", "typ": typ, "kid": self.kid });
        let mut out = B64.encode(header.to_string());
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                out.as_bytes(),
                &mut sig,
            )
            .map_err(|_| KeyError::Sign)?;
        out.push('.');
        out.push_str(&B64.encode(sig));
        Ok(out)
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.pair.public_key().as_ref(),
        )
        .verify(message, sig)
        .is_ok()
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// The keys in force: the signing key first, then the retired ones still
/// published. Built from the store's keys at start and after a rotation.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    /// When the first of the retired keys stops being published.
    publish_ends_ms: Option<u64>,
    /// The JWKS document, made once.
    jwks: String,
}

impl KeyRing {
    /// The ring of the stored keys (the current one first, as the store
    /// returns them) at `now_ms`: retired keys past their publication are
    /// left out. `None` when there is no current key.
    pub fn open(
        stored: &[StoredSigningKey],
        secrets: &SecretBox,
        now_ms: u64,
    ) -> Result<Option<KeyRing>, KeyError> {
        if stored.first().is_none_or(|k| k.retired_ms.is_some()) {
            return Ok(None);
        }
        let published = |k: &&StoredSigningKey| {
            k.retired_ms.is_none() || k.publish_until_ms.is_none_or(|end| now_ms < end)
        };
        let publish_ends_ms = stored
            .iter()
            .filter(published)
            .filter_map(|k| k.retired_ms.and(k.publish_until_ms))
            .min();
        let keys = stored
            .iter()
            .filter(published)
            .map(|k| SigningKey::unseal(k, secrets))
            .collect::<Result<Vec<_>, _>>()?;
        let jwks =
            serde_json::json!({ "keys": keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
                .to_string();
        Ok(Some(KeyRing {
            keys,
            publish_ends_ms,
            jwks,
        }))
    }

    /// When a retired key of the ring stops being published (the ring is
    /// then to be opened again), if any is.
    pub fn publish_ends_ms(&self) -> Option<u64> {
        self.publish_ends_ms
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The JWKS document (every published key).
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// Checks a compact JWS made by one of these keys and returns its
    /// claims. Expiry and audience are the caller's to check.
    pub fn verify<T: DeserializeOwned>(&self, jws: &str) -> Result<T, JwsError> {
        let mut parts = jws.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| JwsError::Malformed)?)
                .map_err(|_| JwsError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
            return Err(JwsError::Algorithm);
        }
        let kid = header.get("kid").and_then(|k| k.as_str());
        let key = self
            .keys
            .iter()
            .find(|k| Some(k.kid()) == kid)
            .ok_or(JwsError::UnknownKey)?;
        let sig = B64.decode(s).map_err(|_| JwsError::Malformed)?;
        if !key.verify(&jws.as_bytes()[..h.len() + 1 + p.len()], &sig) {
            return Err(JwsError::Signature);
        }
        serde_json::from_slice(&B64.decode(p).map_err(|_| JwsError::Malformed)?)
            .map_err(|_| JwsError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> SecretBox {
        SecretBox::from_key(&[9; 32]).unwrap()
    }

    fn ring_of(keys: &[&SigningKey]) -> KeyRing {
        let s = secrets();
        let mut stored: Vec<StoredSigningKey> =
            keys.iter().map(|k| k.seal(&s, 1).unwrap()).collect();
        for k in stored.iter_mut().skip(1) {
            k.retired_ms = Some(2);
            k.publish_until_ms = Some(1_000);
        }
        KeyRing::open(&stored, &s, 500).unwrap().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::generate().unwrap();
        let ring = ring_of(&[&key]);
        let jws = ring
            .current()
            .sign("JWT", &serde_json::json!({"sub": "alice"}))
            .unwrap();
        let claims: serde_json::Value = ring.verify(&jws).unwrap();
        assert_eq!(claims["sub"], "alice");

        let (hp, sig) = jws.rsplit_once('.').unwrap();
        let (h, _) = hp.split_once('.').unwrap();
        let forged = format!("{h}.{}.{sig}", B64.encode(r#"{"sub":"admin"}"#));
        assert_eq!(
            ring.verify::<serde_json::Value>(&forged),
            Err(JwsError::Signature)
        );

        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(r#"{"sub":"admin"}"#)
        );
        assert_eq!(
            ring.verify::<serde_json::Value>(&none),
            Err(JwsError::Algorithm)
        );
        let hs = format!(
            "{}.{}.{}",
            B64.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key.kid())),
            B64.encode(r#"{"sub":"admin"}"#),
            sig
        );
        assert_eq!(
            ring.verify::<serde_json::Value>(&hs),
            Err(JwsError::Algorithm)
        );
        assert_eq!(
            ring.verify::<serde_json::Value>("a.b"),
            Err(JwsError::Malformed)
        );

        let other = SigningKey::generate().unwrap();
        let foreign = other.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
        assert_eq!(
            ring.verify::<serde_json::Value>(&foreign),
            Err(JwsError::UnknownKey)
        );
    }

    #[test]
    fn a_retired_key_still_verifies_and_is_published() {
        let old = SigningKey::generate().unwrap();
        let new = SigningKey::generate().unwrap();
        let by_old = old.sign("JWT", &serde_json::json!({"n": 1})).unwrap();
        let ring = ring_of(&[&new, &old]);
        assert_eq!(ring.current().kid(), new.kid());
        assert!(ring.verify::<serde_json::Value>(&by_old).is_ok());
        let jwks: serde_json::Value = serde_json::from_str(ring.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new.kid(), old.kid()]);
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert_eq!(
            B64.decode(jwks["keys"][0]["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        assert_eq!(ring.publish_ends_ms(), Some(1_000));
        // Once its publication ends, the retired key leaves the ring.
        let s = secrets();
        let mut stored = vec![new.seal(&s, 1).unwrap(), old.seal(&s, 1).unwrap()];
        stored[1].retired_ms = Some(2);
        stored[1].publish_until_ms = Some(1_000);
        let later = KeyRing::open(&stored, &s, 1_000).unwrap().unwrap();
        assert!(later.verify::<serde_json::Value>(&by_old).is_err());
        assert_eq!(later.publish_ends_ms(), None);
    }

    #[test]
    fn a_key_sealed_with_another_secrets_key_is_refused_and_debug_hides_it() {
        let key = SigningKey::generate().unwrap();
        let stored = key.seal(&secrets(), 1).unwrap();
        let other = SecretBox::from_key(&[8; 32]).unwrap();
        assert_eq!(
            SigningKey::unseal(&stored, &other).unwrap_err(),
            KeyError::Unsealable(key.kid().to_string())
        );
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey {{ kid: {:?}, .. }}", key.kid())
        );
        assert!(KeyRing::open(&[], &secrets(), 0).unwrap().is_none());
    }
}
