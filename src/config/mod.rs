//! Configuration: the TOML file, `GATEHOUSE_*` environment variables and
//! command-line overrides, merged into one validated [`Config`].
//!
//! Precedence, highest first: flags, environment, file, built-in defaults.
//! Users live in the file only and form the [`Policy`]; `SIGHUP` re-reads
//! the file through [`Config::load`] and swaps the server's policy whole, and
//! a failed reload keeps the previous one. Other settings are fixed at start.
//!
//! One concern per file: `schema` (the file as written), `overrides`
//! (flags and environment on top), `validate` (checks and conversion),
//! `settings` (the typed sections handlers read), `policy` (users),
//! `suffix` (public suffixes, for `cookie_domain`), `locate` (lines for
//! errors), `write` (appending a user), `apps` (`[[apps]]` and `[proxy]`),
//! `tls` (`[tls]`).

mod apps;
mod locate;
pub mod oidc;
mod overrides;
mod policy;
mod schema;
mod secret;
mod settings;
mod storage;
#[cfg(test)]
mod storage_tests;
mod suffix;
mod tls;
mod validate;
mod write;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use crate::domain::IpNet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The `[regulation]` section, a domain type: the store's failure counters
/// take these limits with every call.
pub use crate::domain::RegulationSettings;
pub use apps::{AppConfig, ProxyConfig, Route, Upstream};
pub use locate::{field_line, table_line};
pub use overrides::Overrides;
pub use policy::Policy;
pub use schema::{
    AcmeChallenge, AppEntry, Argon2Settings, FileConfig, HstsSettings, LimitSettings, LogFormat,
    ProxySettings, RedisDurability, SecondFactorSettings, SessionSettings, StorageBackend,
    StorageSettings, TlsSettings, TokenSettings, UserEntry,
};
pub use secret::SecretUrl;
pub use settings::{CookieConfig, LimitConfig, RetentionConfig, SessionConfig};
pub use tls::{AcmeConfig, CertSource, LETS_ENCRYPT, TlsConfig};
pub use write::{UserEdit, add_user, append_user, remove_user, set_password, write_config};

use locate::{line_col, locate};

/// Name of the config file inside the data dir when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "gatehouse.toml";
/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "gatehouse.redb";

/// Longest lifetime, timeout or interval accepted, in seconds (ten years).
pub const MAX_SECS: u64 = 10 * 365 * 86_400;
/// Largest count setting accepted (connections, sessions per user, tracked
/// subjects, queue lengths).
pub const MAX_COUNT: usize = 1_000_000;
/// Largest byte size setting accepted (bodies, request heads): 64 MiB.
pub const MAX_BYTES: usize = 64 << 20;

/// Loading or validating the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or a field has the wrong type. `message`
    /// comes from the `toml` crate and names the field.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value parsed but makes no sense (for example a zero lifetime).
    /// `line` is where the setting is written, when it is in the file.
    #[error("{}: invalid setting `{field}`: {reason}", at(path, *line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        field: String,
        reason: String,
    },
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `path` or `path:line`.
fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// The validated configuration the server runs with, in typed sections.
/// Everything but the policy is fixed for the life of a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (it may not exist yet on first start).
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// Parsed `public_origin`, without a trailing slash.
    pub public_origin: Option<url::Url>,
    pub trusted_proxies: Vec<IpNet>,
    /// `[access] forwarded_headers`: the one header family a trusted
    /// proxy's original request is read from.
    pub forwarded_headers: crate::access::Family,
    /// Hosts (and their subdomains) that `rd` may point to besides this one.
    pub allowed_redirect_domains: Vec<String>,
    pub cookie: CookieConfig,
    /// The `Strict-Transport-Security` value; only over https (an https
    /// public origin, or `[tls]`).
    pub hsts: Option<String>,
    pub log_format: LogFormat,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Exit after this long without activity and open connections.
    pub idle_timeout: Option<Duration>,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    pub retention: Option<RetentionConfig>,
    /// redb page cache.
    pub cache_bytes: usize,
    pub session: SessionConfig,
    pub regulation: RegulationSettings,
    pub second_factor: SecondFactorSettings,
    pub limits: LimitConfig,
    /// Cost of new hashes and of the dummy hash.
    pub argon2: Argon2Settings,
    /// `[tokens]`: access tokens and Basic auth.
    pub tokens: TokenSettings,
    /// `[proxy]` and `[[apps]]`: the built-in reverse proxy.
    pub proxy: ProxyConfig,
    /// `[tls]`: TLS on the listener; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `[storage]` when it names the distributed backend (`None`: the
    /// redb file in the data directory). Its `Debug` hides the passwords.
    pub storage: Option<crate::store::distributed::DistributedConfig>,
    /// See [`Config::policy`].
    policy: Arc<Policy>,
    /// Every setting read only at start, by file key (see
    /// [`FileConfig::restart_settings`]), for [`Config::restart_changes`].
    restart_settings: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Reads the config file named by `ov` (or `<data-dir>/gatehouse.toml`),
    /// applies the overrides and validates the result. A missing file at the
    /// default location is the same as an empty file.
    pub fn load(ov: &Overrides) -> Result<Config, ConfigError> {
        let (path, text) = Config::read(ov)?;
        Config::load_text(ov, path, &text)
    }

    /// The config file named by `ov` and its text: empty when the file is
    /// missing at the default location (the same as an empty file).
    pub fn read(ov: &Overrides) -> Result<(PathBuf, String), ConfigError> {
        let (path, explicit) = ov.config_file();
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok((path, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok((path, String::new()))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// [`Config::load`] of `text` as the file at `path` would hold it: how
    /// an edit is checked before it is written.
    pub fn load_text(ov: &Overrides, path: PathBuf, text: &str) -> Result<Config, ConfigError> {
        let mut file = parse_file(&path, text)?;
        // Values from flags and the environment are not in the file: a
        // validation error about them names no line.
        let overridden = ov.apply(&mut file);
        let data_dir = ov.data_dir(&file);
        Config::from_file(path, data_dir, file).map_err(|e| match &e {
            ConfigError::Invalid { field, .. } if overridden.contains(&field.as_str()) => e,
            _ => locate(e, text),
        })
    }

    /// The policy this file states: the first one a server runs with, or
    /// the one a reload swaps in. At run time the server's current policy
    /// is `AppState::policy`, never this.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The settings that differ in `newer` and take effect only at the
    /// next start (a reload swaps only the users and the rules), by file
    /// key: `metrics`, `session.idle_secs`, ...
    pub fn restart_changes(&self, newer: &Config) -> Vec<String> {
        let (old, new) = (&self.restart_settings, &newer.restart_settings);
        let mut keys: Vec<String> = old
            .iter()
            .filter(|(k, v)| new.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(new.keys().filter(|k| !old.contains_key(*k)).cloned())
            .chain(storage::secret_changes(&self.storage, &newer.storage))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Users whose hash is not argon2id at the `[argon2]` cost (see
    /// [`Policy::users_with_other_cost`]).
    pub fn users_with_other_cost(&self) -> Vec<String> {
        self.policy().users_with_other_cost(&self.argon2)
    }

    /// The store this configuration names: the redb file in the data
    /// directory, with the configured page cache, or the distributed
    /// store of `[storage]`. The one place a server or a command turns the
    /// configuration into a backend to open.
    pub fn backend_config(&self) -> crate::store::BackendConfig {
        match &self.storage {
            None => {
                crate::store::BackendConfig::redb(self.db_path()).with_cache_bytes(self.cache_bytes)
            }
            Some(d) => crate::store::BackendConfig::Distributed(d.clone()),
        }
    }

    /// Path of the database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// Whether browsers reach gatehouse over https: its own listener speaks
    /// TLS, or the public origin says a TLS proxy is in front.
    pub fn https(&self) -> bool {
        self.tls.is_some()
            || self
                .public_origin
                .as_ref()
                .is_some_and(|u| u.scheme() == "https")
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}

/// Parses config text, turning TOML errors into file:line:column messages.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        // Every error names a line: without a span, the file's first.
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    })
}
