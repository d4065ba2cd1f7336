//! A URL that may carry a password (`[storage] redis_url`, `postgres_url`):
//! read and compared whole, shown without its password. Its `Debug`,
//! `Display` and `Serialize` (what the reload's list of restart settings
//! is built from) all hide the password, so no log line, error or report
//! prints it.

use serde::{Deserialize, Serialize, Serializer};

/// A URL whose password is never shown.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The whole URL, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with `***` for its password; a string that is not a URL
    /// (it may hold a password anywhere) is not shown at all.
    pub fn redacted(&self) -> String {
        if self.0.contains("+sentinel://") {
            return crate::store::redis::redact(&self.0);
        }
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "(not a URL)".into(),
        }
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}
