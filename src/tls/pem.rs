//! Reading a certificate chain and its private key from PEM files, each
//! read whole but bounded in size, the key checked against the
//! certificate before it is used.

use std::io::Read;
use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Largest certificate or key file read: far more than any real chain.
const MAX_FILE: usize = 1 << 20;

/// The chain in `cert` and the key in `key`, checked to belong together.
pub(super) fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = chain_from(cert, &read_bounded(cert)?)?;
    let der = key_from(key, &read_bounded(key)?)?;
    pair(chain, der, provider).map_err(|reason| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    })
}

/// A chain and a key as rustls presents them, checked to belong together.
pub(crate) fn pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| e.to_string())?;
    Ok(certified)
}

/// The certificates of a PEM text, in order; at least one.
pub(crate) fn chain_from(
    path: &Path,
    text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            "no certificate (`BEGIN CERTIFICATE`) in the file".into()
        ));
    }
    Ok(chain)
}

/// The one private key of a PEM text.
pub(crate) fn key_from(path: &Path, text: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The parser's error never quotes the key's bytes.
    PrivateKeyDer::from_pem_slice(text).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no usable private key: {e}"),
    })
}

/// The whole file, refused past [`MAX_FILE`].
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut out = Vec::new();
    file.take(MAX_FILE as u64 + 1)
        .read_to_end(&mut out)
        .map_err(read)?;
    if out.len() > MAX_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_FILE,
        });
    }
    Ok(out)
}
