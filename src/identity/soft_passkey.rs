//! A software passkey for tests (`test-util` only): an authenticator that
//! answers the options of [`super::webauthn::Passkeys`] as a browser with a
//! platform authenticator would, with an ES256 (P-256) key held in memory,
//! user presence and verification always given, and "none" attestation.
//!
//! Its key, credential id, user handle and counter can be saved and restored
//! ([`SoftPasskey::from_parts`]), so a credential registered once, and
//! stored by the server as it stores any, can sign again later: that is how
//! the checked-in passkey fixture proves that a stored credential keeps
//! working across a change of the WebAuthn library.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Flags of the authenticator data (WebAuthn §6.1).
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

/// A software authenticator holding one credential.
pub struct SoftPasskey {
    key: SigningKey,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    counter: u32,
}

impl std::fmt::Debug for SoftPasskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftPasskey")
            .field("credential_id", &B64U.encode(&self.credential_id))
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl SoftPasskey {
    /// A new credential: a random key and a random 16-byte id.
    pub fn generate() -> SoftPasskey {
        let key = loop {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).expect("the OS random source failed");
            if let Ok(k) = SigningKey::from_slice(&secret) {
                break k;
            }
        };
        let mut credential_id = vec![0u8; 16];
        getrandom::fill(&mut credential_id).expect("the OS random source failed");
        SoftPasskey {
            key,
            credential_id,
            user_handle: Vec::new(),
            counter: 0,
        }
    }

    /// A credential saved with [`SoftPasskey::secret`] and the accessors.
    pub fn from_parts(
        secret: &[u8],
        credential_id: Vec<u8>,
        user_handle: Vec<u8>,
        counter: u32,
    ) -> Option<SoftPasskey> {
        Some(SoftPasskey {
            key: SigningKey::from_slice(secret).ok()?,
            credential_id,
            user_handle,
            counter,
        })
    }

    /// The private key's 32 bytes.
    pub fn secret(&self) -> Vec<u8> {
        self.key.to_bytes().to_vec()
    }

    /// The authenticator's credential id.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The user handle the relying party gave at registration.
    pub fn user_handle(&self) -> &[u8] {
        &self.user_handle
    }

    /// The signature counter last used.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Answers creation options (`{"publicKey": {...}}`) from `origin`:
    /// the JSON form of the `PublicKeyCredential` a browser returns.
    pub fn register(&mut self, options: &Value, origin: &str) -> Value {
        let o = &options["publicKey"];
        let rp_id = o["rp"]["id"].as_str().expect("options name the rp");
        self.user_handle = B64U
            .decode(o["user"]["id"].as_str().expect("options name the user"))
            .expect("a base64url user id");
        let client_data = client_data("webauthn.create", o, origin);
        let point = self.key.verifying_key().to_sec1_point(false);
        let cose_key = cbor_map(&[
            (cbor_int(1), cbor_int(2)),  // kty: EC2
            (cbor_int(3), cbor_int(-7)), // alg: ES256
            (cbor_int(-1), cbor_int(1)), // crv: P-256
            (cbor_int(-2), cbor_bytes(point.x().expect("uncompressed"))),
            (cbor_int(-3), cbor_bytes(point.y().expect("uncompressed"))),
        ]);
        let mut auth_data = auth_data(rp_id, UP | UV | AT, self.counter);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&cose_key);
        let attestation = cbor_map(&[
            (cbor_text("fmt"), cbor_text("none")),
            (cbor_text("attStmt"), cbor_map(&[])),
            (cbor_text("authData"), cbor_bytes(&auth_data)),
        ]);
        self.credential(json!({
            "attestationObject": B64U.encode(&attestation),
            "clientDataJSON": B64U.encode(&client_data),
            "transports": ["internal"],
        }))
    }

    /// Answers request options (`{"publicKey": {...}}`) from `origin`,
    /// counting one more use: the JSON form of the assertion a browser
    /// returns, with the user handle (as a discoverable credential gives).
    pub fn assert(&mut self, options: &Value, origin: &str) -> Value {
        let o = &options["publicKey"];
        let rp_id = o["rpId"].as_str().expect("options name the rp");
        self.counter += 1;
        let client_data = client_data("webauthn.get", o, origin);
        let auth_data = auth_data(rp_id, UP | UV, self.counter);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        self.credential(json!({
            "authenticatorData": B64U.encode(&auth_data),
            "clientDataJSON": B64U.encode(&client_data),
            "signature": B64U.encode(signature.to_der().as_bytes()),
            "userHandle": B64U.encode(&self.user_handle),
        }))
    }

    /// The JSON form of a `PublicKeyCredential` of this passkey around an
    /// authenticator's `response`.
    fn credential(&self, response: Value) -> Value {
        let id = B64U.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": response,
            "extensions": {},
        })
    }
}

fn client_data(kind: &str, options: &Value, origin: &str) -> Vec<u8> {
    let challenge = options["challenge"]
        .as_str()
        .expect("options carry a challenge");
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": challenge,
        "origin": origin,
        "crossOrigin": false,
    }))
    .expect("client data serialises")
}

fn auth_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut d = Sha256::digest(rp_id.as_bytes()).to_vec();
    d.push(flags);
    d.extend_from_slice(&counter.to_be_bytes());
    d
}

// The little CBOR (RFC 8949) an attestation needs: small maps, integers,
// byte and text strings, each with its head.

fn cbor_head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [&[m | 25][..], &(n as u16).to_be_bytes()].concat(),
        _ => [&[m | 26][..], &(n as u32).to_be_bytes()].concat(),
    }
}

fn cbor_int(n: i64) -> Vec<u8> {
    if n >= 0 {
        cbor_head(0, n as u64)
    } else {
        cbor_head(1, (-1 - n) as u64)
    }
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    [cbor_head(2, b.len() as u64), b.to_vec()].concat()
}

fn cbor_text(s: &str) -> Vec<u8> {
    [cbor_head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn cbor_map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = cbor_head(5, entries.len() as u64);
    for (k, v) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_heads_are_the_shortest_form() {
        assert_eq!(cbor_int(2), [0x02]);
        assert_eq!(cbor_int(-7), [0x26]);
        assert_eq!(cbor_int(-1), [0x20]);
        assert_eq!(cbor_int(24), [0x18, 24]);
        assert_eq!(cbor_int(300), [0x19, 0x01, 0x2c]);
        assert_eq!(cbor_text("fmt"), b"\x63fmt");
        assert_eq!(cbor_bytes(&[9; 32])[..2], [0x58, 32]);
        assert_eq!(cbor_map(&[]), [0xa0]);
    }

    #[test]
    fn a_restored_credential_signs_as_the_original() {
        let a = SoftPasskey::generate();
        let b = SoftPasskey::from_parts(&a.secret(), a.credential_id.clone(), vec![1], 7).unwrap();
        assert_eq!(a.key.verifying_key(), b.key.verifying_key());
        assert_eq!((b.counter(), b.user_handle()), (7, &[1u8][..]));
    }
}
