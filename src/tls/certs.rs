//! [`Certs`]: the certificate the listener presents, as rustls asks for it
//! in every handshake. Swapped whole: a handshake sees the old certificate
//! or the new one, and connections already open are not touched.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate in force (none yet: handshakes fail until one is set).
#[derive(Default)]
pub struct Certs {
    /// The chain and its key.
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl Certs {
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
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
