//! TLS to the distributed store's services, on the same rustls (ring) as
//! the listener: `rediss://` URLs, and PostgreSQL URLs with
//! `sslmode=require`, `verify-ca` or `verify-full`.
//!
//! Invariants:
//! - Whenever TLS is used, the server's certificate chain and its host
//!   name are verified (what libpq calls `verify-full`), against the
//!   system's roots or, when the operator names one, only the CAs of a PEM
//!   file (`[storage] redis_ca_file`; `sslrootcert=` in the PostgreSQL
//!   URL, as libpq reads it). There is no unverified mode: a `rediss://`
//!   URL ending in `#insecure` is refused, and `sslmode=prefer`, which
//!   libpq would not verify, connects without TLS.
//! - A CA file that cannot be read or holds no certificate stops the open,
//!   naming the file.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The PEM bytes of the CA file at `path`, checked to hold a certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
    let n = CertificateDer::pem_slice_iter(&pem)
        .filter(Result::is_ok)
        .count();
    if n == 0 {
        return Err(format!(
            "the CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(pem)
}

/// The roots to verify a server against: only the CAs of `ca_pem`, or
/// else the system's.
fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("a CA certificate does not parse: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("a CA certificate is refused: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "no system root certificate was found; name the server's CA file".into(),
                );
            }
        }
    }
    Ok(roots)
}

/// A Redis client for `url`: over TLS for `rediss://`, verified against
/// `ca_pem` or the system's roots.
pub fn redis_client(url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, String> {
    let tls = url.starts_with("rediss://");
    if tls && url.ends_with("#insecure") {
        return Err(
            "a rediss:// URL with #insecure would not verify the server; \
                    name its CA in [storage] redis_ca_file instead"
                .into(),
        );
    }
    match (tls, ca_pem) {
        (true, Some(pem)) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        )
        .map_err(|e| e.to_string()),
        _ => redis::Client::open(url).map_err(|e| e.to_string()),
    }
}

/// How to reach a PostgreSQL server: its connection settings (with the
/// URL's `sslrootcert` taken out and `verify-*` read as `require`, which
/// here verifies as much), and the TLS connector when TLS is required.
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// A TLS client config (ring) trusting the CAs in `ca_pem`, or the
/// system's roots.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots(ca_pem)?)
    .with_no_client_auth())
}

/// Reads a PostgreSQL URL as libpq would for TLS (see the module's
/// invariants).
pub fn pg_target(url: &str) -> Result<PgTarget, String> {
    let (url, ca_file) = libpq_tls_params(url)?;
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("the URL is not a PostgreSQL connection string: {e}"))?;
    let tls = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Require => {
            let pem = ca_file.as_deref().map(read_ca_file).transpose()?;
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                client_config(pem.as_deref())?,
            ))
        }
        _ => None,
    };
    Ok(PgTarget { config, tls })
}

/// `url` with `sslrootcert` removed (its value returned) and `sslmode`
/// `verify-ca`/`verify-full` written as `require`. A string that is not a
/// URL (a key-value string) is left to tokio-postgres as it is.
fn libpq_tls_params(url: &str) -> Result<(String, Option<std::path::PathBuf>), String> {
    let Ok(mut u) = url::Url::parse(url) else {
        return Ok((url.to_string(), None));
    };
    if u.query().is_none() {
        return Ok((url.to_string(), None));
    }
    let mut ca = None;
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| match &*k {
            "sslrootcert" => {
                ca = Some(std::path::PathBuf::from(v.into_owned()));
                None
            }
            "sslmode" if matches!(&*v, "verify-ca" | "verify-full") => {
                Some((k.into_owned(), "require".to_string()))
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    if u.query() == Some("") {
        u.set_query(None);
    }
    Ok((u.to_string(), ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_read_as_libpq_does() {
        let (url, ca) = libpq_tls_params(
            "postgres://gh:pw@db.internal/gh?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://gh:pw@db.internal/gh?sslmode=require");
        assert_eq!(ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        let t = pg_target("postgres://gh@db.internal/gh?sslmode=verify-ca").unwrap();
        assert!(t.tls.is_some(), "verify-ca uses TLS");
        for plain in [
            "postgres://gh@db.internal/gh",
            "postgres://gh@db.internal/gh?sslmode=disable",
            "postgres://gh@db.internal/gh?sslmode=prefer",
        ] {
            assert!(pg_target(plain).unwrap().tls.is_none(), "{plain}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate_and_insecure_redis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let e = read_ca_file(&empty).unwrap_err();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = read_ca_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let url = format!(
            "postgres://gh@db.internal/gh?sslmode=require&sslrootcert={}",
            empty.display()
        );
        assert!(pg_target(&url).is_err());
        let e = redis_client("rediss://cache.internal:6380/#insecure", None).unwrap_err();
        assert!(e.contains("redis_ca_file"), "{e}");
    }
}
