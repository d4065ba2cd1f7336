//! `[tls]`: TLS on the listener, checked and turned into [`TlsConfig`].
//! Every check names the field (`tls.key`); [`super::locate`] adds the
//! line. Only the settings are checked here: the files are read when the
//! server starts (and again on SIGHUP), the ACME CA is asked by the
//! server's ACME task.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::schema::{AcmeChallenge, TlsSettings};

/// Let's Encrypt's production ACME directory, the default `acme_directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Most names on one ACME certificate (Let's Encrypt's limit).
const MAX_ACME_DOMAINS: usize = 100;

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
    /// An ACME CA.
    Acme(AcmeConfig),
}

/// The ACME settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The names on the certificate: lower case, unique, in file order.
    pub domains: Vec<String>,
    /// The CA's directory URL (https).
    pub directory: String,
    /// `mailto:` contact, if any.
    pub contact: Option<String>,
    /// Root certificate of the directory's HTTPS, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// The challenge answered.
    pub challenge: AcmeChallenge,
}

/// Checks `[tls]`: `None` when TLS is off. Relative paths are taken from
/// `data_dir`. `invalid` makes the error of a field.
pub(super) fn check<E>(
    t: &TlsSettings,
    bind: SocketAddr,
    data_dir: &Path,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Option<TlsConfig>, E> {
    let acme_set = [
        ("tls.acme_directory", t.acme_directory.is_some()),
        ("tls.acme_contact", t.acme_contact.is_some()),
        ("tls.acme_ca_file", t.acme_ca_file.is_some()),
        (
            "tls.acme_challenge",
            t.acme_challenge != AcmeChallenge::default(),
        ),
    ];
    if t.acme_domains.is_empty()
        && let Some((field, _)) = acme_set.iter().find(|(_, set)| *set)
    {
        return Err(invalid(
            field,
            "is an ACME setting: it needs `acme_domains`".into(),
        ));
    }
    let certificate = match (&t.cert, &t.key) {
        (None, None) if t.acme_domains.is_empty() => {
            if t.http_redirect_bind.is_some() {
                return Err(invalid(
                    "tls.http_redirect_bind",
                    "redirects to https, so it needs TLS on the listener: set `cert` and \
                     `key`, or `acme_domains`"
                        .into(),
                ));
            }
            return Ok(None);
        }
        (None, None) => CertSource::Acme(check_acme(t, data_dir, &invalid)?),
        _ if !t.acme_domains.is_empty() => {
            return Err(invalid(
                "tls.acme_domains",
                "the certificate comes from `cert` and `key` or from ACME, not both".into(),
            ));
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
    if let CertSource::Acme(a) = &certificate
        && a.challenge == AcmeChallenge::Http01
        && http_redirect_bind.is_none()
    {
        return Err(invalid(
            "tls.acme_challenge",
            "\"http-01\" is answered on the plain-HTTP listener: set `http_redirect_bind`".into(),
        ));
    }
    Ok(Some(TlsConfig {
        certificate,
        http_redirect_bind,
    }))
}

/// The ACME settings of `t`, which names domains.
fn check_acme<E>(
    t: &TlsSettings,
    data_dir: &Path,
    invalid: impl Fn(&str, String) -> E,
) -> Result<AcmeConfig, E> {
    if t.acme_domains.len() > MAX_ACME_DOMAINS {
        return Err(invalid(
            "tls.acme_domains",
            format!("at most {MAX_ACME_DOMAINS} names on one certificate"),
        ));
    }
    let mut domains: Vec<String> = Vec::with_capacity(t.acme_domains.len());
    for (i, d) in t.acme_domains.iter().enumerate() {
        let field = format!("tls.acme_domains[{i}]");
        let name = d.trim_end_matches('.').to_ascii_lowercase();
        if name.starts_with("*.") {
            return Err(invalid(
                &field,
                format!(
                    "{d:?}: a wildcard needs the DNS-01 challenge, which gatehouse does not answer; list each name"
                ),
            ));
        }
        if !is_dns_name(&name) {
            return Err(invalid(
                &field,
                format!("{d:?} is not a domain name with at least two labels"),
            ));
        }
        if domains.contains(&name) {
            return Err(invalid(&field, format!("{d:?} is listed twice")));
        }
        domains.push(name);
    }
    let directory = t.acme_directory.as_deref().unwrap_or(LETS_ENCRYPT);
    match url::Url::parse(directory) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
        _ => {
            return Err(invalid(
                "tls.acme_directory",
                format!("{directory:?}: expected the https URL of an ACME directory"),
            ));
        }
    }
    if let Some(c) = &t.acme_contact {
        let ok = c.strip_prefix("mailto:").is_some_and(|addr| {
            addr.split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
                && addr.len() <= 254
                && !addr.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        });
        if !ok {
            return Err(invalid(
                "tls.acme_contact",
                format!("{c:?}: expected \"mailto:name@example.com\""),
            ));
        }
    }
    let ca_file = match &t.acme_ca_file {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid("tls.acme_ca_file", "must name a file".into()));
        }
        p => p.as_ref().map(|p| data_dir.join(p)),
    };
    Ok(AcmeConfig {
        domains,
        directory: directory.to_string(),
        contact: t.acme_contact.clone(),
        ca_file,
        challenge: t.acme_challenge,
    })
}

/// A DNS name a public CA may certify: two labels or more of letters,
/// digits and inner hyphens, 253 bytes at most, not all-digit at the end
/// (an address).
fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}
