//! Time-based one-time passwords (RFC 6238) as gatehouse uses them:
//! HMAC-SHA-1, 6 digits, 30-second steps, one step of clock skew either
//! way, and each step accepted at most once per user (the caller keeps the
//! last step used and passes it back), so a code seen over a shoulder or in
//! a log cannot be replayed.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Steps accepted before and after the current one.
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a new secret: 160 bits, the HMAC-SHA-1 block the RFC suggests.
pub const SECRET_BYTES: usize = 20;
/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "gatehouse";

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not six digits.
    #[error("a code is six digits")]
    Malformed,
    /// No step within the skew gives this code.
    #[error("wrong code")]
    Wrong,
    /// The code is right but its step was already used.
    #[error("this code was already used; wait for the next one")]
    Replayed,
}

/// A TOTP secret. `Debug` never prints it.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// A new random secret from the OS CSPRNG.
    pub fn generate() -> TotpSecret {
        let mut bytes = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        TotpSecret(bytes)
    }

    /// A secret from stored bytes (at least 128 bits, as RFC 4226 requires).
    pub fn from_bytes(bytes: Vec<u8>) -> Option<TotpSecret> {
        (bytes.len() >= 16).then_some(TotpSecret(bytes))
    }

    /// The raw bytes, for encryption at rest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in base32, as people type it into an authenticator.
    pub fn base32(&self) -> String {
        self.totp("").secret().to_base32()
    }

    /// The `otpauth://` URI an authenticator app reads from a QR code.
    pub fn otpauth_uri(&self, account: &str) -> String {
        // The library refuses an empty account name; user names never are.
        let account = if account.is_empty() { "_" } else { account };
        self.totp(account)
            .to_url()
            .expect("a non-empty account name without ':'")
    }

    fn totp(&self, account: &str) -> Totp {
        // A `:` would split the label; account names never need one.
        let account = account.replace(':', "_");
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS as u8)
            .with_skew(SKEW_STEPS as u16)
            .with_step_duration(STEP_SECS)
            .with_secret(self.0.clone())
            .with_issuer(Some(ISSUER))
            .with_account_name(account)
            .build()
            .expect("constant parameters and a checked secret length")
    }

    /// The code for Unix time `secs`.
    pub fn code_at(&self, secs: u64) -> String {
        self.totp("").generate(secs).to_string()
    }

    /// Checks `code` at Unix time `now_secs`. `last_step` is the step of the
    /// last code this user had accepted; only a later step is accepted.
    /// Returns the step that matched, which the caller stores as the new
    /// `last_step` in the same write that accepts the sign-in.
    pub fn verify(
        &self,
        code: &str,
        now_secs: u64,
        last_step: Option<u64>,
    ) -> Result<u64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let totp = self.totp("");
        let now = now_secs / STEP_SECS;
        let mut matched = None;
        // Every candidate is computed and compared, in constant time each,
        // whichever matches.
        for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
            let expected = totp.generate(step * STEP_SECS).to_string();
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpError::Wrong)?;
        if last_step.is_some_and(|last| step <= last) {
            return Err(TotpError::Replayed);
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 rows (8 digits, the RFC's secret).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890".to_vec();
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_secret(secret)
            .build()
            .unwrap();
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
        }
        // gatehouse's own codes are the last six digits of the same HOTP.
        let ours = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(ours.code_at(59), "287082");
        assert_eq!(ours.code_at(1_111_111_109), "081804");
    }

    #[test]
    fn skew_of_one_step_either_way() {
        let s = TotpSecret::generate();
        let now = 1_800_000_015;
        for offset in [-30i64, 0, 30] {
            let code = s.code_at((now as i64 + offset) as u64);
            assert!(s.verify(&code, now, None).is_ok(), "offset {offset}");
        }
        for offset in [-60i64, 60] {
            let code = s.code_at((now as i64 + offset) as u64);
            assert_eq!(
                s.verify(&code, now, None),
                Err(TotpError::Wrong),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn a_step_is_accepted_once() {
        let s = TotpSecret::generate();
        let now = 1_800_000_015;
        let code = s.code_at(now);
        let step = s.verify(&code, now, None).unwrap();
        assert_eq!(step, now / STEP_SECS);
        assert_eq!(
            s.verify(&code, now + 5, Some(step)),
            Err(TotpError::Replayed)
        );
        // An earlier step's code, still inside the skew, is refused too.
        let earlier = s.code_at(now - 30);
        assert_eq!(
            s.verify(&earlier, now, Some(step)),
            Err(TotpError::Replayed)
        );
        // The next step's code is fine.
        let next = s.code_at(now + 30);
        assert_eq!(s.verify(&next, now + 30, Some(step)), Ok(step + 1));
    }

    #[test]
    fn malformed_codes_and_uris() {
        let s = TotpSecret::generate();
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                s.verify(bad, 1_800_000_000, None),
                Err(TotpError::Malformed),
                "{bad:?}"
            );
        }
        let uri = s.otpauth_uri("alice:x");
        assert!(
            uri.starts_with("otpauth://totp/gatehouse:alice_x?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", s.base32())), "{uri}");
        assert!(!format!("{s:?}").contains(&s.base32()));
        assert!(TotpSecret::from_bytes(vec![0; 15]).is_none());
    }

    /// What an authenticator app scans, pinned: the same URI whichever
    /// version of the TOTP library made it.
    #[test]
    fn the_otpauth_uri_is_stable() {
        let s = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(s.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            s.otpauth_uri("alice"),
            "otpauth://totp/gatehouse:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=gatehouse"
        );
        assert_eq!(
            s.otpauth_uri("a b"),
            "otpauth://totp/gatehouse:a%20b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=gatehouse"
        );
    }
}
