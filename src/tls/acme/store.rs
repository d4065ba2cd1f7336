//! What the ACME task keeps in the data dir, under `acme/` (mode 0700),
//! each file owner-only (0600) and replaced in one rename:
//!
//! - `account.json`: the account's key and URL, with the directory it
//!   belongs to (an account is the CA's: another directory makes a new one);
//! - `certificate.pem`: the certificate chain, then its private key, in
//!   one file so that a crash never leaves a chain beside another's key.
//!
//! A stored certificate is read back with its names and dates
//! ([`Stored`]), so that a restart presents it at once and orders a new
//! one only when it is due.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::AccountCredentials;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::AcmeError;
use crate::tls::pem;

/// The directory under the data dir.
pub const DIR: &str = "acme";
/// The account file in it.
pub const ACCOUNT: &str = "account.json";
/// The certificate file in it.
pub const CERTIFICATE: &str = "certificate.pem";

/// The ACME files of one data dir.
#[derive(Debug, Clone)]
pub(crate) struct AcmeFiles {
    /// `<data dir>/acme`.
    dir: PathBuf,
}

/// `account.json` as written.
#[derive(Serialize, Deserialize)]
struct AccountFile {
    /// The directory the account was made on.
    directory: String,
    /// instant-acme's credentials: the account URL and its private key.
    credentials: AccountCredentials,
}

/// A certificate read back, with what decides its renewal.
pub struct Stored {
    /// The chain and its key, as rustls presents them.
    pub key: Arc<CertifiedKey>,
    /// Its DNS names, lower case.
    pub names: Vec<String>,
    /// Its validity, from and until.
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Stored {
    /// When to renew: two thirds into its lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + life * 2 / 3
    }

    /// Whether it names every one of `domains`.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|d| self.names.contains(d))
    }
}

impl AcmeFiles {
    pub(crate) fn new(data_dir: &Path) -> Self {
        AcmeFiles {
            dir: data_dir.join(DIR),
        }
    }

    /// The stored account of `directory`; `None` when there is none, or it
    /// is another directory's.
    pub(crate) fn account(&self, directory: &str) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.dir.join(ACCOUNT);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AcmeError::Io { path, source }),
        };
        let file: AccountFile = serde_json::from_slice(&bytes).map_err(|e| AcmeError::Stored {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok((file.directory == directory).then_some(file.credentials))
    }

    /// Keeps `credentials` as the account of `directory`.
    pub(crate) fn save_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> Result<(), AcmeError> {
        let file = AccountFile {
            directory: directory.to_string(),
            credentials,
        };
        let path = self.dir.join(ACCOUNT);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| AcmeError::Stored {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.write_private(&path, &bytes)
    }

    /// The stored certificate; `None` when there is none.
    pub(crate) fn certificate(&self) -> Result<Option<Stored>, AcmeError> {
        let path = self.dir.join(CERTIFICATE);
        if !path.exists() {
            return Ok(None);
        }
        let text = pem::read_bounded(&path)?;
        parse(&path, &text).map(Some)
    }

    /// Keeps a new certificate (chain and key, PEM); returns it parsed.
    pub(crate) fn save_certificate(&self, chain: &str, key: &str) -> Result<Stored, AcmeError> {
        let path = self.dir.join(CERTIFICATE);
        let mut text = chain.trim_end().to_string();
        text.push('\n');
        text.push_str(key.trim_end());
        text.push('\n');
        let stored = parse(&path, text.as_bytes())?;
        self.write_private(&path, text.as_bytes())?;
        Ok(stored)
    }

    /// Writes `bytes` to `path` owner-only, durably, in one rename.
    fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AcmeError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&self.dir))?;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// A stored certificate file: the chain, its key, and the leaf's names and
/// dates.
fn parse(path: &Path, text: &[u8]) -> Result<Stored, AcmeError> {
    let bad = |reason: String| AcmeError::Stored {
        path: path.to_path_buf(),
        reason,
    };
    let chain = pem::chain_from(path, text)?;
    let key = pem::key_from(path, text)?;
    let (names, not_before, not_after) = {
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| bad(format!("unreadable certificate: {e}")))?;
        let v = leaf.validity();
        let time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        let names = match leaf.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        (
            names,
            time(v.not_before.timestamp()),
            time(v.not_after.timestamp()),
        )
    };
    let certified = pem::pair(chain, key, &crate::tls::provider()).map_err(bad)?;
    Ok(Stored {
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}
