//! How a session was signed in: each step's [`Method`], and the set of them a
//! session records ([`Methods`], a bitset that serializes as names).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How one step of authentication was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Password,
    Totp,
    WebAuthn,
    Recovery,
}

impl Method {
    /// Every method, in bit order.
    pub const ALL: [Method; 4] = [
        Method::Password,
        Method::Totp,
        Method::WebAuthn,
        Method::Recovery,
    ];

    /// Stable names, for audit details and the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Totp => "totp",
            Method::WebAuthn => "webauthn",
            Method::Recovery => "recovery_code",
        }
    }

    /// The method named `name` in the JSON API.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether this method is a second factor.
    pub fn is_second_factor(self) -> bool {
        self != Method::Password
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The methods a session was signed in with, as one byte (stored with the
/// session).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Methods(u8);

impl Methods {
    /// A password alone.
    pub const PASSWORD: Methods = Methods(1);

    /// The set holding `methods`.
    pub fn of(methods: &[Method]) -> Methods {
        Methods(methods.iter().fold(0, |acc, m| acc | m.bit()))
    }

    /// The set with `m` added.
    pub fn with(self, m: Method) -> Methods {
        Methods(self.0 | m.bit())
    }

    pub fn contains(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }

    /// Whether a second factor is among them: what a `two_factor` rule asks.
    pub fn two_factor(self) -> bool {
        Method::ALL
            .iter()
            .any(|m| m.is_second_factor() && self.contains(*m))
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// Names joined by `+` (`password+totp`), for audit details.
    pub fn names(self) -> String {
        self.iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The stored byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set stored as `bits` (unknown bits dropped).
    pub fn from_bits(bits: u8) -> Methods {
        Methods(bits & 0x0f)
    }
}

impl fmt::Debug for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Methods({})", self.names())
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_through_their_byte() {
        let m = Methods::PASSWORD.with(Method::Totp);
        assert!(m.two_factor() && m.contains(Method::Password));
        assert!(!Methods::PASSWORD.two_factor());
        assert_eq!(Methods::from_bits(m.bits()), m);
        assert_eq!(m.names(), "password+totp");
    }
}
