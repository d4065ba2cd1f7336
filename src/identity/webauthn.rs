//! Passkeys (WebAuthn Level 2) for one relying party, over `webauthn-rs`:
//! the options a browser needs for `navigator.credentials.create` and
//! `.get`, and the checks of what it answers. JSON and bytes in, JSON and
//! bytes out; no HTTP and no storage.
//!
//! Every ceremony is two calls. `start_*` returns the options to send to the
//! browser and a *state* (bytes) that the caller keeps server-side until the
//! matching `finish_*` (with the pending sign-in or the session), then
//! discards: a state is used once. A state is not signed; it must never
//! travel through the browser. It carries no expiry either: the caller
//! bounds its age (the library asks the authenticator to give up after
//! five minutes).
//!
//! What the caller stores per passkey: its credential id (the
//! authenticator's, to find the owner of a discoverable sign-in) and the
//! credential bytes, replaced whenever `finish_*` returns new ones (the
//! signature counter and backup flags moved).
//!
//! Every credential is requested as a *passkey*: discoverable (resident on
//! the authenticator) and with user verification required, so one key is
//! both a second factor after the password and a sign-in on its own.
//! Authenticators may still decline residence (the browser's `credProps`
//! report of it is unsigned, so it is not checked); such a key works as a
//! second factor only.
//!
//! The user handle given to authenticators is [`user_handle`]: derived from
//! the user name, so it is stable without being stored, and a renamed user
//! must register their passkeys again.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// Why a passkey operation failed. The messages are safe to show: they
/// name what to do, never the library's internals (those go to the debug
/// log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnError {
    /// The public origin is plain http on a host other than localhost.
    #[error(
        "passkeys need a public origin on https (or http://localhost for development); browsers refuse them elsewhere"
    )]
    InsecureOrigin,
    /// The public origin names its host by IP address.
    #[error(
        "passkeys need a public origin with a domain name, not an IP address (use localhost, not 127.0.0.1)"
    )]
    NotADomain,
    /// The library refused the relying party built from the origin.
    #[error("the public origin cannot be used for passkeys")]
    Configuration,
    /// The kept state is unreadable, of another ceremony or of another
    /// origin.
    #[error("this passkey request is no longer valid; please start again")]
    State,
    /// What the browser sent is not a WebAuthn answer.
    #[error("the browser's passkey answer is not readable")]
    Malformed,
    /// The account has no passkey to ask for.
    #[error("no passkey is registered for this account")]
    NoPasskeys,
    /// The answer is well formed but does not verify: wrong challenge,
    /// origin, signature, counter, user, or a credential not allowed here.
    #[error("the passkey was not accepted")]
    Rejected,
    /// A stored credential could not be read.
    #[error("a stored passkey is unreadable")]
    StoredCredential,
}

/// The stable WebAuthn user handle of `user`: a UUID (version 8, RFC 9562)
/// from the first 128 bits of SHA-256 over a fixed label and the name.
/// Stable across restarts and servers without storing it; not secret (it
/// only tells whether a known name matches). SHA-256 rather than UUIDv5's
/// SHA-1, and no extra `uuid` feature.
pub fn user_handle(user: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"gatehouse passkey user handle\0");
    h.update(user.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    Uuid::from_bytes(b)
}

/// Passkey ceremonies for one relying party: the host of the public origin.
#[derive(Debug, Clone)]
pub struct Passkeys {
    webauthn: Webauthn,
    /// The origin as `scheme://host[:port]`, bound into every state so a
    /// state made for another origin is refused.
    origin: String,
    rp_id: String,
}

/// Which ceremony a state belongs to. A discoverable and a second-factor
/// authentication state have the same shape inside the library; the tag
/// keeps one from standing in for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ceremony {
    Registration,
    Authentication,
    Discoverable,
}

/// The bytes of a state: the library's state with what it is for.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    ceremony: Ceremony,
    origin: String,
    state: T,
}

impl Passkeys {
    /// Passkeys for `public_origin`: https with a domain name, or http on
    /// `localhost` (or a `*.localhost` name) for development, the only
    /// plain-http hosts browsers treat as secure. The relying party id is
    /// the origin's host; a path in the URL is ignored.
    pub fn new(public_origin: &Url) -> Result<Passkeys, WebAuthnError> {
        let host = match public_origin.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(_) => return Err(WebAuthnError::NotADomain),
            None => return Err(WebAuthnError::Configuration),
        };
        let local = host == "localhost" || host.ends_with(".localhost");
        match public_origin.scheme() {
            "https" => {}
            "http" if local => {}
            "http" => return Err(WebAuthnError::InsecureOrigin),
            _ => return Err(WebAuthnError::Configuration),
        }
        let origin = public_origin.origin().ascii_serialization();
        let origin_url = Url::parse(&origin).map_err(|_| WebAuthnError::Configuration)?;
        let webauthn = WebauthnBuilder::new(&host, &origin_url)
            .and_then(|b| b.build())
            .map_err(|e| {
                tracing::debug!(error = %e, "webauthn configuration refused");
                WebAuthnError::Configuration
            })?;
        Ok(Passkeys {
            webauthn,
            origin,
            rp_id: host,
        })
    }

    /// The relying party id: the origin's host.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The origin answers are accepted from, `scheme://host[:port]`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Starts registering a passkey for `user` (shown as `display`). Returns
    /// the options (`{"publicKey": {...}}`, for `navigator.credentials.create`)
    /// and the state to keep. `existing` are the ids of the user's passkeys,
    /// which the authenticator is asked not to register again. Requests a
    /// discoverable credential and user verification.
    pub fn start_registration(
        &self,
        user: &str,
        display: &str,
        existing: &[Vec<u8>],
    ) -> Result<(serde_json::Value, Vec<u8>), WebAuthnError> {
        let exclude = (!existing.is_empty()).then(|| existing.to_vec());
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_handle(user), user, display, exclude)
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey registration could not start");
                WebAuthnError::Configuration
            })?;
        let mut options = serde_json::to_value(options).expect("options serialise");
        // The library asks passkeys to be resident only opportunistically
        // ("discouraged"); a sign-in without a user name needs them resident.
        if let Some(sel) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(|s| s.as_object_mut())
        {
            sel.insert("residentKey".into(), "required".into());
            sel.insert("requireResidentKey".into(), true.into());
        }
        Ok((options, self.seal(Ceremony::Registration, state)))
    }

    /// Finishes a registration with the browser's answer (the JSON form of
    /// the `PublicKeyCredential` from `create`). Returns the credential id
    /// and the credential bytes to store. The caller must refuse an id
    /// already registered to anyone.
    pub fn finish_registration(
        &self,
        state: &[u8],
        response: &serde_json::Value,
    ) -> Result<(Vec<u8>, Vec<u8>), WebAuthnError> {
        let state: PasskeyRegistration = self.open(Ceremony::Registration, state)?;
        let response: RegisterPublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| WebAuthnError::Malformed)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey registration refused");
                WebAuthnError::Rejected
            })?;
        let id = passkey.cred_id().clone();
        Ok((id, encode_credential(&passkey)))
    }

    /// Starts a second-factor check after the password: the browser may use
    /// only `credentials` (the user's stored credential bytes). Returns the
    /// options (`{"publicKey": {...}}`, for `navigator.credentials.get`) and
    /// the state to keep.
    pub fn start_authentication(
        &self,
        credentials: &[Vec<u8>],
    ) -> Result<(serde_json::Value, Vec<u8>), WebAuthnError> {
        let passkeys = decode_credentials(credentials)?;
        if passkeys.is_empty() {
            return Err(WebAuthnError::NoPasskeys);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey authentication could not start");
                WebAuthnError::StoredCredential
            })?;
        let options = serde_json::to_value(options).expect("options serialise");
        Ok((options, self.seal(Ceremony::Authentication, state)))
    }

    /// Starts a sign-in by passkey alone: no user name, no allow-list; the
    /// authenticator offers its resident credentials for this relying party
    /// and verifies the user. The options carry no `mediation`: they are for
    /// a button (a modal prompt); a page wanting autofill adds
    /// `mediation: "conditional"` itself.
    pub fn start_discoverable(&self) -> Result<(serde_json::Value, Vec<u8>), WebAuthnError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| {
                tracing::debug!(error = %e, "discoverable authentication could not start");
                WebAuthnError::Configuration
            })?;
        let mut options = serde_json::to_value(options).expect("options serialise");
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        Ok((options, self.seal(Ceremony::Discoverable, state)))
    }

    /// The credential id a browser's authentication answer claims, to look
    /// up its owner before [`Passkeys::finish_discoverable`]. Unverified:
    /// only a lookup key. `None` when the answer is not one.
    pub fn credential_id_of(response: &serde_json::Value) -> Option<Vec<u8>> {
        let r: PublicKeyCredential = serde_json::from_value(response.clone()).ok()?;
        let id = r.get_credential_id();
        (!id.is_empty()).then(|| id.to_vec())
    }

    /// Finishes a second-factor check. `credentials` are the user's stored
    /// credential bytes (those the update is computed against). Returns the
    /// credential id used and, when its counter or flags moved, the new bytes
    /// to store in place of the old.
    pub fn finish_authentication(
        &self,
        state: &[u8],
        response: &serde_json::Value,
        credentials: &[Vec<u8>],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), WebAuthnError> {
        let state: PasskeyAuthentication = self.open(Ceremony::Authentication, state)?;
        let response: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| WebAuthnError::Malformed)?;
        let passkeys = decode_credentials(credentials)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&response, &state)
            .map_err(|e| {
                tracing::debug!(error = %e, "passkey authentication refused");
                WebAuthnError::Rejected
            })?;
        updated(passkeys, &result)
    }

    /// Finishes a sign-in by passkey alone, for `user`, the owner of the
    /// credential id [`Passkeys::credential_id_of`] gave, whose stored
    /// credentials are `credentials`. The answer's user handle must be
    /// `user`'s. Returns as [`Passkeys::finish_authentication`] does.
    pub fn finish_discoverable(
        &self,
        state: &[u8],
        response: &serde_json::Value,
        user: &str,
        credentials: &[Vec<u8>],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), WebAuthnError> {
        let state: DiscoverableAuthentication = self.open(Ceremony::Discoverable, state)?;
        let response: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| WebAuthnError::Malformed)?;
        let (handle, id) = self
            .webauthn
            .identify_discoverable_authentication(&response)
            .map_err(|_| WebAuthnError::Rejected)?;
        if handle != user_handle(user) {
            return Err(WebAuthnError::Rejected);
        }
        let passkeys = decode_credentials(credentials)?;
        // The one credential the answer names, among the user's.
        let key = passkeys
            .iter()
            .find(|p| p.cred_id().as_slice() == id)
            .ok_or(WebAuthnError::Rejected)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&response, state, key)
            .map_err(|e| {
                tracing::debug!(error = %e, "discoverable passkey refused");
                WebAuthnError::Rejected
            })?;
        updated(passkeys, &result)
    }

    fn seal<T: Serialize>(&self, ceremony: Ceremony, state: T) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            ceremony,
            origin: self.origin.clone(),
            state,
        })
        .expect("state serialises")
    }

    fn open<T: DeserializeOwned>(
        &self,
        ceremony: Ceremony,
        bytes: &[u8],
    ) -> Result<T, WebAuthnError> {
        let e: Envelope<T> = serde_json::from_slice(bytes).map_err(|_| WebAuthnError::State)?;
        if e.ceremony != ceremony || e.origin != self.origin {
            return Err(WebAuthnError::State);
        }
        Ok(e.state)
    }
}

fn encode_credential(passkey: &Passkey) -> Vec<u8> {
    serde_json::to_vec(passkey).expect("a passkey serialises")
}

fn decode_credentials(credentials: &[Vec<u8>]) -> Result<Vec<Passkey>, WebAuthnError> {
    credentials
        .iter()
        .map(|c| serde_json::from_slice(c).map_err(|_| WebAuthnError::StoredCredential))
        .collect()
}

/// The credential id used and its new bytes when they changed.
fn updated(
    passkeys: Vec<Passkey>,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<(Vec<u8>, Option<Vec<u8>>), WebAuthnError> {
    let id = result.cred_id().clone();
    for mut p in passkeys {
        match p.update_credential(result) {
            Some(true) => return Ok((id, Some(encode_credential(&p)))),
            Some(false) => return Ok((id, None)),
            None => {}
        }
    }
    // Verified against a credential the caller did not pass: the state
    // allowed it, but it is no longer stored.
    Err(WebAuthnError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passkeys(origin: &str) -> Result<Passkeys, WebAuthnError> {
        Passkeys::new(&Url::parse(origin).unwrap())
    }

    fn pk() -> Passkeys {
        passkeys("https://auth.example.com").unwrap()
    }

    #[test]
    fn https_and_localhost_origins_are_usable() {
        assert_eq!(pk().rp_id(), "auth.example.com");
        let p = passkeys("https://Auth.Example.com:8443/base/").unwrap();
        assert_eq!(p.rp_id(), "auth.example.com");
        assert_eq!(p.origin, "https://auth.example.com:8443");
        assert_eq!(
            passkeys("http://localhost:8080").unwrap().rp_id(),
            "localhost"
        );
        assert_eq!(
            passkeys("http://dev.localhost").unwrap().rp_id(),
            "dev.localhost"
        );
        assert_eq!(passkeys("https://localhost").unwrap().rp_id(), "localhost");
    }

    #[test]
    fn plain_http_ip_addresses_and_other_schemes_are_refused() {
        assert_eq!(
            passkeys("http://auth.example.com").unwrap_err(),
            WebAuthnError::InsecureOrigin
        );
        assert_eq!(
            passkeys("http://localhost.example.com").unwrap_err(),
            WebAuthnError::InsecureOrigin
        );
        for ip in ["http://127.0.0.1:8080", "https://10.0.0.1", "https://[::1]"] {
            assert_eq!(passkeys(ip).unwrap_err(), WebAuthnError::NotADomain, "{ip}");
        }
        assert_eq!(
            passkeys("ftp://auth.example.com").unwrap_err(),
            WebAuthnError::Configuration
        );
        // The messages say what to do.
        let m = WebAuthnError::InsecureOrigin.to_string();
        assert!(m.contains("https") && m.contains("localhost"), "{m}");
        assert!(WebAuthnError::NotADomain.to_string().contains("IP address"));
    }

    #[test]
    fn user_handles_are_stable_distinct_version_8_uuids() {
        let a = user_handle("alice");
        assert_eq!(a, user_handle("alice"));
        assert_ne!(a, user_handle("bob"));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.as_bytes()[8] & 0xc0, 0x80, "RFC 9562 variant");
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn registration_asks_for_a_verified_resident_passkey() {
        let (options, state) = pk()
            .start_registration("alice", "Alice", &[vec![1, 2, 3], vec![4, 5]])
            .unwrap();
        assert!(!state.is_empty());
        let o = &options["publicKey"];
        let sel = &o["authenticatorSelection"];
        assert_eq!(sel["userVerification"], "required", "{options}");
        assert_eq!(sel["residentKey"], "required", "{options}");
        assert_eq!(sel["requireResidentKey"], true, "{options}");
        assert_eq!(o["rp"]["id"], "auth.example.com");
        assert_eq!(o["user"]["name"], "alice");
        assert_eq!(o["user"]["displayName"], "Alice");
        assert_eq!(o["user"]["id"], b64(user_handle("alice").as_bytes()));
        let excluded: Vec<_> = o["excludeCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect();
        assert_eq!(excluded, vec![json!(b64(&[1, 2, 3])), json!(b64(&[4, 5]))]);
        assert!(o["challenge"].as_str().is_some_and(|c| c.len() >= 43));
    }

    #[test]
    fn discoverable_sign_in_has_no_allow_list_and_requires_verification() {
        let (options, _) = pk().start_discoverable().unwrap();
        let o = &options["publicKey"];
        assert_eq!(o["userVerification"], "required", "{options}");
        assert!(
            o["allowCredentials"]
                .as_array()
                .is_none_or(|a| a.is_empty()),
            "{options}"
        );
        assert_eq!(o["rpId"], "auth.example.com");
        assert!(options.get("mediation").is_none(), "{options}");
    }

    #[test]
    fn a_second_factor_needs_readable_credentials() {
        assert_eq!(
            pk().start_authentication(&[]).unwrap_err(),
            WebAuthnError::NoPasskeys
        );
        assert_eq!(
            pk().start_authentication(&[b"not a credential".to_vec()])
                .unwrap_err(),
            WebAuthnError::StoredCredential
        );
    }

    #[test]
    fn tampered_foreign_and_misused_states_are_refused() {
        let p = pk();
        let (_, reg) = p.start_registration("alice", "Alice", &[]).unwrap();
        let (_, disc) = p.start_discoverable().unwrap();
        let answer = json!({});
        // Not a state at all.
        assert_eq!(
            p.finish_registration(b"garbage", &answer).unwrap_err(),
            WebAuthnError::State
        );
        // Cut short.
        assert_eq!(
            p.finish_registration(&reg[..reg.len() / 2], &answer)
                .unwrap_err(),
            WebAuthnError::State
        );
        // Of another ceremony: same shape inside, refused by its tag.
        assert_eq!(
            p.finish_authentication(&disc, &answer, &[]).unwrap_err(),
            WebAuthnError::State
        );
        assert_eq!(
            p.finish_discoverable(&reg, &answer, "alice", &[])
                .unwrap_err(),
            WebAuthnError::State
        );
        // Of another origin.
        let other = passkeys("https://other.example.com").unwrap();
        assert_eq!(
            other.finish_registration(&reg, &answer).unwrap_err(),
            WebAuthnError::State
        );
        // Relabelled for another ceremony by hand.
        let relabelled = String::from_utf8(disc.clone())
            .unwrap()
            .replace("\"discoverable\"", "\"authentication\"");
        assert_ne!(relabelled.as_bytes(), &disc[..]);
        // ... is read, but the answer still has to verify.
        assert_ne!(
            p.finish_authentication(relabelled.as_bytes(), &answer, &[])
                .unwrap_err(),
            WebAuthnError::State
        );
        // A good state with an answer that is not one.
        assert_eq!(
            p.finish_registration(&reg, &answer).unwrap_err(),
            WebAuthnError::Malformed
        );
        assert_eq!(
            p.finish_discoverable(&disc, &json!([1, 2]), "alice", &[])
                .unwrap_err(),
            WebAuthnError::Malformed
        );
    }

    fn assertion(raw_id: &str, user_handle: Option<&str>) -> serde_json::Value {
        json!({
            "id": raw_id,
            "rawId": raw_id,
            "type": "public-key",
            "response": {
                "authenticatorData": "AAAA",
                "clientDataJSON": "e30",
                "signature": "AAAA",
                "userHandle": user_handle,
            },
            "extensions": {}
        })
    }

    #[test]
    fn credential_id_of_reads_the_raw_id_or_nothing() {
        assert_eq!(
            Passkeys::credential_id_of(&assertion("AQID", None)),
            Some(vec![1, 2, 3])
        );
        for bad in [
            json!(null),
            json!({}),
            json!("AQID"),
            json!({"rawId": "AQID"}),
            assertion("", None),
            assertion("not base64 !!", None),
        ] {
            assert_eq!(Passkeys::credential_id_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_discoverable_answer_for_another_user_is_refused_before_verifying() {
        let p = pk();
        let (_, state) = p.start_discoverable().unwrap();
        let bob = b64(user_handle("bob").as_bytes());
        let a = assertion("AQID", Some(&bob));
        assert_eq!(
            p.finish_discoverable(&state, &a, "alice", &[]).unwrap_err(),
            WebAuthnError::Rejected
        );
        // And one without a user handle.
        let a = assertion("AQID", None);
        assert_eq!(
            p.finish_discoverable(&state, &a, "alice", &[]).unwrap_err(),
            WebAuthnError::Rejected
        );
    }
}

/// The ceremonies end to end with a software authenticator, and the
/// checked-in passkey fixture (`tests/fixtures/factors/`): a credential
/// stored by an earlier build must keep verifying.
#[cfg(test)]
mod ceremony_tests {
    use super::*;
    use crate::identity::soft_passkey::SoftPasskey;

    const ORIGIN: &str = "http://localhost:8080";

    fn pk() -> Passkeys {
        Passkeys::new(&Url::parse(ORIGIN).unwrap()).unwrap()
    }

    /// Registers a new soft passkey for alice; returns it and the stored bytes.
    fn registered(p: &Passkeys) -> (SoftPasskey, Vec<u8>) {
        let mut soft = SoftPasskey::generate();
        let (options, state) = p.start_registration("alice", "Alice", &[]).unwrap();
        let answer = soft.register(&options, ORIGIN);
        let (id, credential) = p.finish_registration(&state, &answer).unwrap();
        assert_eq!(id, soft.credential_id());
        assert_eq!(soft.user_handle(), user_handle("alice").as_bytes());
        (soft, credential)
    }

    /// The second step after a password: `soft` answers a challenge for
    /// `stored`, which verifies; returns the credential as rewritten.
    fn second_step(
        p: &Passkeys,
        soft: &mut SoftPasskey,
        stored: &[u8],
    ) -> (serde_json::Value, Vec<u8>) {
        let stored = [stored.to_vec()];
        let (options, state) = p.start_authentication(&stored).unwrap();
        let answer = soft.assert(&options, ORIGIN);
        let (id, updated) = p.finish_authentication(&state, &answer, &stored).unwrap();
        assert_eq!(id, soft.credential_id());
        (answer, updated.expect("the counter moved"))
    }

    /// Alice signs in with `soft` alone, `stored` being her credential;
    /// returns the answer and the credential if rewritten.
    fn alone(
        p: &Passkeys,
        soft: &mut SoftPasskey,
        stored: &[u8],
    ) -> (serde_json::Value, Option<Vec<u8>>) {
        let (options, state) = p.start_discoverable().unwrap();
        let answer = soft.assert(&options, ORIGIN);
        let (_, updated) = p
            .finish_discoverable(&state, &answer, "alice", &[stored.to_vec()])
            .unwrap();
        (answer, updated)
    }

    #[test]
    fn a_passkey_registers_then_signs_in_as_second_step_and_alone() {
        let p = pk();
        let (mut soft, stored) = registered(&p);
        // The second step after a password.
        let (_, stored) = second_step(&p, &mut soft, &stored);
        // Alone, with the updated credential.
        let (answer, updated) = alone(&p, &mut soft, &stored);
        assert_eq!(
            Passkeys::credential_id_of(&answer).as_deref(),
            Some(soft.credential_id())
        );
        assert!(updated.is_some());
        // Not for bob, and not replayed.
        let (_, state) = p.start_discoverable().unwrap();
        assert_eq!(
            p.finish_discoverable(&state, &answer, "bob", std::slice::from_ref(&stored))
                .unwrap_err(),
            WebAuthnError::Rejected
        );
        let (_, state) = p.start_discoverable().unwrap();
        assert_eq!(
            p.finish_discoverable(&state, &answer, "alice", &[stored])
                .unwrap_err(),
            WebAuthnError::Rejected
        );
    }

    /// The passkey of `tests/fixtures/factors/facts.json`, stored by an
    /// earlier build (webauthn-rs 0.5's serialised `Passkey`), still loads,
    /// verifies an assertion as a second step and alone, and is rewritten in
    /// a form that keeps verifying.
    #[test]
    fn a_passkey_stored_by_an_earlier_build_still_verifies() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/factors/facts.json"
        );
        let facts: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let f = &facts["passkey"];
        let bytes = |k: &str| B64U.decode(f[k].as_str().unwrap()).unwrap();
        let counter = f["counter"].as_u64().unwrap() as u32;
        let mut soft = SoftPasskey::from_parts(
            &bytes("secret"),
            bytes("credential_id"),
            bytes("user_handle"),
            counter,
        )
        .unwrap();
        let stored = f["stored"].as_str().unwrap().as_bytes().to_vec();
        let p = pk();
        let (answer, rewritten) = second_step(&p, &mut soft, &stored);
        // The same answer to another challenge is refused.
        let (_, state) = p
            .start_authentication(std::slice::from_ref(&rewritten))
            .unwrap();
        assert!(
            p.finish_authentication(&state, &answer, std::slice::from_ref(&rewritten))
                .is_err()
        );
        // Alone, with the credential as this build rewrote it.
        let (_, again) = alone(&p, &mut soft, &rewritten);
        assert!(again.is_some());
    }
}
