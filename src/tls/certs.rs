//! [`Certs`]: the certificate the listener presents, as rustls asks for it
//! in every handshake. Swapped whole: a handshake sees the old certificate
//! or the new one, and connections already open are not touched. A
//! handshake that offers the `acme-tls/1` protocol is an ACME CA's
//! TLS-ALPN-01 check (RFC 8737): it gets the challenge certificate of the
//! name it asks for, never the certificate in force.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ACME_TLS_ALPN;
use super::challenges::Challenges;

/// The certificate in force (none yet: handshakes fail until one is set)
/// and the TLS-ALPN-01 answers.
#[derive(Default)]
pub struct Certs {
    /// The chain and its key.
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// The ACME challenges in progress.
    challenges: Arc<Challenges>,
}

impl Certs {
    /// The ACME challenges this resolver answers.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Presents `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    /// The certificate in force.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: only whether there is a certificate.
        f.debug_struct("Certs")
            .field("present", &self.current().is_some())
            .finish()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN))
        {
            return self.challenges.alpn_cert(hello.server_name()?);
        }
        self.current()
    }
}
