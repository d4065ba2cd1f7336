//! `[tls]`: TLS on the listener, checked and turned into [`TlsConfig`].
//! Every check names the field (`tls.key`); [`super::locate`] adds the
//! line. Only the settings are checked here: the files are read when the
//! server starts (and again on SIGHUP).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::schema::TlsSettings;

/// `[tls]`, checked: where the listener's certificate comes from, and
/// the plain-HTTP listener that redirects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate's source.
    pub certificate: CertSource,
    /// Where plain HTTP is answered with a redirect to https; `None`: no
    /// such listener.
    pub http_redirect_bind: Option<SocketAddr>,
}

/// Where the certificate the listener presents comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files, read at start and again on SIGHUP.
    Files {
        /// The chain, the server's own certificate first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

/// Checks `[tls]`: `None` when TLS is off. Relative paths are taken from
/// `data_dir`. `invalid` makes the error of a field.
pub(super) fn check<E>(
    t: &TlsSettings,
    bind: SocketAddr,
    data_dir: &Path,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Option<TlsConfig>, E> {
    let certificate = match (&t.cert, &t.key) {
        (None, None) => {
            if t.http_redirect_bind.is_some() {
                return Err(invalid(
                    "tls.http_redirect_bind",
                    "redirects to https, so it needs TLS on the listener: set `cert` and `key`"
                        .into(),
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(invalid(
                "tls.cert",
                "needs `key` as well: the certificate's private key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "tls.key",
                "needs `cert` as well: the certificate chain".into(),
            ));
        }
        (Some(cert), Some(key)) => {
            for (field, p) in [("tls.cert", cert), ("tls.key", key)] {
                if p.as_os_str().is_empty() {
                    return Err(invalid(field, "must name a file".into()));
                }
            }
            CertSource::Files {
                cert: data_dir.join(cert),
                key: data_dir.join(key),
            }
        }
    };
    let http_redirect_bind = match &t.http_redirect_bind {
        None => None,
        Some(a) => {
            let addr: SocketAddr = a
                .parse()
                .map_err(|e| invalid("tls.http_redirect_bind", format!("{a:?}: {e}")))?;
            if addr == bind && addr.port() != 0 {
                return Err(invalid(
                    "tls.http_redirect_bind",
                    format!("{addr} is `bind`, where TLS is served; give it another port"),
                ));
            }
            Some(addr)
        }
    };
    Ok(Some(TlsConfig {
        certificate,
        http_redirect_bind,
    }))
}
