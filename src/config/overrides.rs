//! Overrides from command-line flags and `GATEHOUSE_*` variables (clap
//! merges those two, flags first) and how they sit on top of the file:
//! where the file is, which data dir wins, and which settings they replace.

use std::path::PathBuf;

use super::DEFAULT_CONFIG_FILE;
use super::SecretUrl;
use super::schema::{FileConfig, LogFormat};

/// Overrides from flags and the environment (clap merges the two).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub idle_timeout_secs: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub public_origin: Option<String>,
    pub secure_cookies: Option<bool>,
    pub metrics: Option<bool>,
    /// `[storage] redis_url` (`GATEHOUSE_REDIS_URL`), so that a password
    /// need not be in the file.
    pub redis_url: Option<SecretUrl>,
    /// `[storage] postgres_url` (`GATEHOUSE_POSTGRES_URL`).
    pub postgres_url: Option<SecretUrl>,
}

impl Overrides {
    /// The data dir named here, else `./data`; the file's `data_dir` comes
    /// between the two ([`Overrides::data_dir`]).
    pub(super) fn default_data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"))
    }

    /// The config file, and whether it was named explicitly (a missing
    /// file at the default location is the same as an empty file).
    pub(super) fn config_file(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (self.default_data_dir().join(DEFAULT_CONFIG_FILE), false),
        }
    }

    /// The data dir: this override, else the file's, else `./data`.
    pub(super) fn data_dir(&self, file: &FileConfig) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| self.default_data_dir())
    }

    /// Puts the overridden values into `file`. Returns the fields that
    /// take their value from here among those validation can refuse: an
    /// error about one of them names no line of the file.
    pub(super) fn apply(&self, file: &mut FileConfig) -> Vec<&'static str> {
        let overridden = [
            ("bind", self.bind.is_some()),
            ("idle_timeout_secs", self.idle_timeout_secs.is_some()),
            ("public_origin", self.public_origin.is_some()),
            ("secure_cookies", self.secure_cookies.is_some()),
            ("storage.redis_url", self.redis_url.is_some()),
            ("storage.postgres_url", self.postgres_url.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if let Some(v) = &self.bind {
            file.bind = v.clone();
        }
        if let Some(v) = self.idle_timeout_secs {
            file.idle_timeout_secs = v;
        }
        if let Some(v) = self.log_format {
            file.log_format = v;
        }
        if let Some(v) = &self.public_origin {
            file.public_origin = Some(v.clone());
        }
        if let Some(v) = self.secure_cookies {
            file.secure_cookies = Some(v);
        }
        if let Some(v) = self.metrics {
            file.metrics = v;
        }
        if let Some(v) = &self.redis_url {
            file.storage.redis_url = Some(v.clone());
        }
        if let Some(v) = &self.postgres_url {
            file.storage.postgres_url = Some(v.clone());
        }
        overridden
    }
}
