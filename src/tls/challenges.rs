//! [`Challenges`]: the answers to the ACME challenges of the order in
//! progress, set by the ACME task and read by the listeners: a
//! TLS-ALPN-01 certificate per name (presented by [`super::Certs`] to a
//! handshake that offers only `acme-tls/1`) and an HTTP-01 key
//! authorization per token (served by the redirect listener under
//! `/.well-known/acme-challenge/`). Bounded: at most [`MAX_PENDING`] of
//! each, and cleared when the order ends, whatever its outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::sign::CertifiedKey;

/// Most answers of one kind held at once: the most names on one
/// certificate.
pub const MAX_PENDING: usize = 100;

/// The path under which HTTP-01 answers are served.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The challenge answers in force.
#[derive(Default)]
pub struct Challenges {
    /// TLS-ALPN-01: the self-signed certificate for each name, lower case.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: the key authorization for each token.
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The TLS-ALPN-01 certificate for `name`, while its challenge is open.
    pub fn alpn_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let alpn = self.alpn.lock().unwrap_or_else(|p| p.into_inner());
        alpn.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The HTTP-01 answer for the request path `path`, while its challenge
    /// is open; `None` for every other path.
    pub fn http_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        http.get(token).cloned()
    }

    /// Answers TLS-ALPN-01 for `name` with `cert`; false when full.
    pub(crate) fn set_alpn(&self, name: &str, cert: Arc<CertifiedKey>) -> bool {
        let mut alpn = self.alpn.lock().unwrap_or_else(|p| p.into_inner());
        if alpn.len() >= MAX_PENDING {
            return false;
        }
        alpn.insert(name.to_ascii_lowercase(), cert);
        true
    }

    /// Answers HTTP-01 for `token` with `key_authorization`; false when full.
    pub(crate) fn set_http(&self, token: &str, key_authorization: &str) -> bool {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if http.len() >= MAX_PENDING {
            return false;
        }
        http.insert(token.to_string(), key_authorization.to_string());
        true
    }

    /// Forgets every answer: the order has ended.
    pub(crate) fn clear(&self) {
        self.alpn.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.http.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
