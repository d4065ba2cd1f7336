//! Automatic certificates from an ACME CA (`[tls] acme_domains`): the task
//! that keeps the listener's certificate valid.
//!
//! At start the stored certificate (`store`), if it names every configured
//! domain, is presented at once ([`Acme::load_stored`]). The task
//! ([`Acme::run`], one of the server's background tasks) then sleeps until
//! the certificate is two thirds into its lifetime (or at once when there
//! is none), issues a new one (`order`: TLS-ALPN-01 on the TLS listener,
//! or HTTP-01 on the redirect listener, answered through
//! [`super::Challenges`]), stores it and presents it from the next
//! handshake on. A failed issuance is logged and tried again after a
//! pause that doubles up to [`MAX_RETRY`]; one issuance is bounded by
//! [`ATTEMPT_LIMIT`]. The task ends when its `stop` future completes.

mod order;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::AcmeConfig;

use super::challenges::Challenges;
use super::{Certs, TlsError};

use store::AcmeFiles;
pub use store::{ACCOUNT, CERTIFICATE, DIR, Stored};

/// The longest one issuance may take, every wait on the CA included.
pub const ATTEMPT_LIMIT: Duration = Duration::from_secs(300);
/// The first pause after a failed issuance; it doubles after each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(120);
/// The longest pause between failed issuances.
pub const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);
/// The longest the task sleeps before it reads the wall clock again.
const CHECK: Duration = Duration::from_secs(3600);

/// An issuance failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA or the way to it (instant-acme's error: HTTP, JSON, the CA's
    /// problem document).
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// The CA turned the order down.
    #[error("ACME order failed: {0}")]
    Refused(String),
    /// A key or the challenge certificate could not be made.
    #[error("making a key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A stored file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored file is not what gatehouse writes.
    #[error("{path}: {reason}")]
    Stored { path: PathBuf, reason: String },
    /// A certificate or key does not parse.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The issuance took longer than [`ATTEMPT_LIMIT`].
    #[error("ACME issuance took longer than {0:?}")]
    Timeout(Duration),
}

/// The ACME client of one listener.
#[derive(Clone)]
pub struct Acme {
    /// The settings.
    config: AcmeConfig,
    /// The account and certificate files.
    files: AcmeFiles,
    /// Where a new certificate is presented.
    certs: Arc<Certs>,
    /// Where the challenge answers go.
    challenges: Arc<Challenges>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("domains", &self.config.domains)
            .field("directory", &self.config.directory)
            .finish_non_exhaustive()
    }
}

impl Acme {
    pub(crate) fn new(config: &AcmeConfig, data_dir: &Path, certs: Arc<Certs>) -> Self {
        Acme {
            config: config.clone(),
            files: AcmeFiles::new(data_dir),
            challenges: certs.challenges().clone(),
            certs,
        }
    }

    /// Presents the stored certificate, if it names every configured
    /// domain; returns when to renew it. `None`: there is no usable one
    /// (an unreadable file is logged and then replaced).
    pub fn load_stored(&self) -> Option<SystemTime> {
        match self.files.certificate() {
            Ok(Some(s)) if s.covers(&self.config.domains) => {
                tracing::info!(
                    names = ?s.names,
                    expires_in_days = days_until(s.not_after),
                    "stored ACME certificate loaded"
                );
                self.certs.set(s.key.clone());
                Some(s.renew_at())
            }
            Ok(Some(s)) => {
                tracing::info!(stored = ?s.names, wanted = ?self.config.domains, "the stored ACME certificate lacks a configured name; ordering a new one");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate unusable; ordering a new one");
                None
            }
        }
    }

    /// The renewal task (see the module doc): runs until `stop` completes.
    /// `renew_at`: when the certificate in force is due (`None`: now).
    pub async fn run(self, mut renew_at: Option<SystemTime>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut retry = FIRST_RETRY;
        let mut announced = None;
        loop {
            let wait = renew_at
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                if announced != renew_at {
                    announced = renew_at;
                    tracing::info!(in_days = wait.as_secs() / 86_400, "next ACME renewal");
                }
                // The wall clock decides (a suspended machine's monotonic
                // clock stops): look at it again at least every CHECK.
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(CHECK)) => continue,
                    _ = &mut stop => return,
                }
            }
            let attempt = tokio::time::timeout(ATTEMPT_LIMIT, self.issue());
            let outcome = tokio::select! {
                r = attempt => r.unwrap_or(Err(AcmeError::Timeout(ATTEMPT_LIMIT))),
                _ = &mut stop => {
                    self.challenges.clear();
                    return;
                }
            };
            match outcome {
                Ok(s) => {
                    tracing::info!(
                        names = ?s.names,
                        expires_in_days = days_until(s.not_after),
                        "ACME certificate issued; new connections get it"
                    );
                    self.certs.set(s.key.clone());
                    renew_at = Some(s.renew_at());
                    retry = FIRST_RETRY;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_secs = retry.as_secs(), "ACME issuance failed");
                    renew_at = Some(SystemTime::now() + retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

/// Whole days from now until `t` (0 when past).
fn days_until(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
