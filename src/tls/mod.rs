//! TLS on the listener, with no HTTP in it: the rustls server config every
//! handshake uses (the ring provider; ALPN `h2` and `http/1.1`, and
//! `acme-tls/1` with ACME), the certificate it presents ([`Certs`],
//! swapped whole on reload or renewal), the PEM files it is read from
//! (`pem`), and automatic certificates from an ACME CA ([`acme`], with the
//! challenge answers in [`Challenges`]).
//!
//! The connection layer (`crate::server::conn`) runs the handshake with
//! [`Tls::acceptor`]; a reload ([`Tls::reload`]) or a renewal changes the
//! certificate of the handshakes that follow, never of a connection
//! already open.

pub mod acme;
mod certs;
mod challenges;
mod pem;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::{CertSource, TlsConfig};

pub use acme::Acme;
pub use certs::Certs;
pub use challenges::{Challenges, HTTP01_PREFIX};

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol of an ACME CA's TLS-ALPN-01 check (RFC 8737): such a
/// handshake gets the challenge certificate and the connection ends there.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Reading certificates or building the TLS settings failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is larger than any certificate chain or key.
    #[error("{path}: larger than {max} bytes; not a certificate or key file")]
    TooLarge { path: PathBuf, max: usize },
    /// A file is not PEM, or holds no certificate or no key.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// The key is not usable, or is not the certificate's.
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Settings(#[from] rustls::Error),
}

/// The rustls crypto provider: ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS on one listener: the config of its handshakes and its certificate.
pub struct Tls {
    /// The certificate in force.
    certs: Arc<Certs>,
    /// The settings of every handshake; its resolver is `certs`.
    config: Arc<ServerConfig>,
    /// Where the certificate is read from, again on every reload; a reload
    /// may name other paths, which are in force once read.
    files: Option<Mutex<(PathBuf, PathBuf)>>,
    /// The ACME client, and when the certificate it loaded is due.
    acme: Option<(Acme, Option<SystemTime>)>,
}

impl Tls {
    /// Reads the certificate `config` names (certificate files, or the
    /// stored ACME certificate in `data_dir`) and builds the handshake's
    /// settings; an unreadable or mismatched file stops the start here. An
    /// ACME listener without a stored certificate starts without one: its
    /// handshakes fail until [`Acme::run`] has one.
    pub fn new(config: &TlsConfig, data_dir: &Path) -> Result<Tls, TlsError> {
        let provider = provider();
        let certs = Arc::new(Certs::default());
        let mut alpn = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        let (files, acme) = match &config.certificate {
            CertSource::Files { cert, key } => {
                certs.set(Arc::new(pem::load_pair(cert, key, &provider)?));
                (Some(Mutex::new((cert.clone(), key.clone()))), None)
            }
            CertSource::Acme(a) => {
                let acme = Acme::new(a, data_dir, certs.clone());
                let due = acme.load_stored();
                alpn.push(ACME_TLS_ALPN.to_vec());
                (None, Some((acme, due)))
            }
        };
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        server.alpn_protocols = alpn;
        Ok(Tls {
            certs,
            config: Arc::new(server),
            files,
            acme,
        })
    }

    /// The ACME client and when the certificate in force is due (`None`:
    /// now), for the renewal task; `None` without ACME.
    pub fn acme(&self) -> Option<(Acme, Option<SystemTime>)> {
        self.acme.clone()
    }

    /// What the connection layer runs each handshake with.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// The certificate in force and what the handshake answers with.
    pub fn certs(&self) -> &Arc<Certs> {
        &self.certs
    }

    /// Reads the certificate files again, from `newer` (the `cert` and
    /// `key` of a reloaded config) when given, else from the paths in
    /// force, and presents them from the next handshake on; connections
    /// already open keep theirs. Once read, `newer` are the paths in force.
    /// On error the certificate and the paths in force stay. `Ok(false)`:
    /// this listener has no files (its certificate comes from ACME, which
    /// only a restart changes), and nothing is read.
    pub fn reload(&self, newer: Option<(&Path, &Path)>) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        // Held while reading, so that two reloads at once end with the
        // certificate and the paths of the same one.
        let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
        let (cert, key) = match newer {
            Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
            None => files.clone(),
        };
        let pair = pem::load_pair(&cert, &key, &provider())?;
        self.certs.set(Arc::new(pair));
        *files = (cert, key);
        Ok(true)
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field(
                "files",
                &self
                    .files
                    .as_ref()
                    .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
