//! Recovery codes: ten one-time codes a person prints or stores when they
//! enroll a second factor, for the day the factor is lost.
//!
//! A code is 80 random bits written as four groups of four characters of
//! Crockford's base32 (`7KQ2-M9XD-4HRT-B1ZE`). Only SHA-256 of the
//! canonical form is stored: 80 bits of entropy make a fast hash safe,
//! since there is nothing to guess from a dictionary. Input is forgiving:
//! case, spaces, dashes, and the letters people confuse with digits.

use sha2::{Digest, Sha256};

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters of a code, without dashes.
const LEN: usize = 16;
/// Crockford's base32: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// SHA-256 of a code's canonical form: what the store keeps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecoveryHash(pub [u8; 32]);

impl std::fmt::Debug for RecoveryHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// A fresh set of codes, shown once. `Debug` never prints them.
pub struct RecoveryCodes(Vec<String>);

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes(<{} redacted>)", self.0.len())
    }
}

impl RecoveryCodes {
    /// Ten new codes from the OS CSPRNG.
    pub fn generate() -> RecoveryCodes {
        let codes = (0..COUNT)
            .map(|_| {
                let mut raw = [0u8; LEN];
                getrandom::fill(&mut raw).expect("the OS random source failed");
                // 256 is a multiple of 32: taking the low five bits is uniform.
                let chars: Vec<u8> = raw.iter().map(|b| ALPHABET[(b & 31) as usize]).collect();
                chars
                    .chunks(4)
                    .map(|c| std::str::from_utf8(c).expect("ASCII"))
                    .collect::<Vec<_>>()
                    .join("-")
            })
            .collect();
        RecoveryCodes(codes)
    }

    /// The codes to show, once.
    pub fn shown(&self) -> &[String] {
        &self.0
    }

    /// Their hashes, to store.
    pub fn hashes(&self) -> Vec<RecoveryHash> {
        self.0.iter().filter_map(|c| hash(c)).collect()
    }
}

/// The canonical form of typed input, or `None` when it cannot be a code.
fn canonical(input: &str) -> Option<String> {
    let mut out = String::with_capacity(LEN);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if out.len() == LEN {
            return None;
        }
        out.push(c);
    }
    (out.len() == LEN).then_some(out)
}

/// The hash a typed code would be stored under, or `None` when the input
/// cannot be a code at all.
pub fn hash(input: &str) -> Option<RecoveryHash> {
    let c = canonical(input)?;
    Some(RecoveryHash(Sha256::digest(c.as_bytes()).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ten_distinct_well_formed_codes() {
        let set = RecoveryCodes::generate();
        assert_eq!(set.shown().len(), COUNT);
        let distinct: HashSet<_> = set.hashes().into_iter().collect();
        assert_eq!(distinct.len(), COUNT);
        for c in set.shown() {
            assert_eq!(c.len(), LEN + 3, "{c}");
            assert_eq!(c.matches('-').count(), 3, "{c}");
        }
        assert!(!format!("{set:?}").contains(&set.shown()[0]));
    }

    #[test]
    fn typed_forms_match_and_others_do_not() {
        let set = RecoveryCodes::generate();
        let code = &set.shown()[3];
        let stored = set.hashes();
        let plain = code.replace('-', "");
        let sloppy = format!(" {} ", code.to_lowercase().replace('-', " "));
        for typed in [code.as_str(), &plain, &sloppy] {
            assert_eq!(hash(typed), Some(stored[3]), "{typed:?}");
        }
        assert_eq!(hash("0OIL-0000-0000-0000"), hash("0011-0000-0000-0000"));
        for bad in [
            "",
            "ABCD-EFGH",
            "ABCD-EFGH-JKMN-PQRS-T",
            "ABCD-EFGH-JKMN-PQRU",
            "ÀBCD-EFGH-JKMN-PQRS",
        ] {
            assert_eq!(hash(bad), None, "{bad:?}");
        }
    }
}
