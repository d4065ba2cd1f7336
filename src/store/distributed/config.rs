//! Where the distributed backend's services are. The URLs may carry
//! passwords: `Debug` and `Display` name them without.

use crate::store::outbox::DEFAULT_MAX_ENTRIES;
use crate::store::redis::{Durability, redact};

/// The prefix of every Redis key when none is configured.
pub const DEFAULT_PREFIX: &str = "gatehouse";

/// The distributed backend's services and settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DistributedConfig {
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://` for TLS, or
    /// `redis+sentinel://[:PASSWORD@]HOST[:PORT],…/SERVICE[/DB]` for the
    /// master that Sentinels name (see `crate::store::redis::Target`).
    pub redis_url: String,
    /// The CAs (PEM) that a `rediss://` server's certificate must chain
    /// to; `None`: the system's roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    pub postgres_url: String,
    /// What every key of this deployment starts with (several deployments
    /// may share one Redis).
    pub prefix: String,
    /// The loss accepted from Redis on a crash.
    pub durability: Durability,
    /// Replicas that must have each change before it is acknowledged
    /// (`[storage] redis_replicas`): what a failover to one of them keeps.
    pub redis_replicas: u32,
    /// Outbox entries at most; past it, changes answer 503.
    pub outbox_max: u64,
    /// The fingerprint of this node's `secrets.key`, checked at open
    /// against the deployment's (a server always sets it; tools that open
    /// no sealed secret need not).
    pub key_fingerprint: Option<String>,
}

impl DistributedConfig {
    /// The two services, with the default prefix, durability and bound.
    pub fn new(redis_url: impl Into<String>, postgres_url: impl Into<String>) -> Self {
        DistributedConfig {
            redis_url: redis_url.into(),
            redis_ca_file: None,
            postgres_url: postgres_url.into(),
            prefix: DEFAULT_PREFIX.into(),
            durability: Durability::Always,
            redis_replicas: 0,
            outbox_max: DEFAULT_MAX_ENTRIES,
            key_fingerprint: None,
        }
    }

    /// The same with the key prefix `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The same checking that the deployment's key file is the one with
    /// `fingerprint`.
    pub fn with_key_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.key_fingerprint = Some(fingerprint.into());
        self
    }

    /// The same acknowledging each change once `n` replicas have it.
    pub fn with_replicas(mut self, n: u32) -> Self {
        self.redis_replicas = n;
        self
    }

    /// The same accepting `durability`.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// `postgres://` URL without its password, for messages (a string that is
/// not a URL is not echoed: it may be a key-value string with a password).
pub fn redact_postgres(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.scheme() == "postgres" || u.scheme() == "postgresql" => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        _ => "postgres (an unreadable URL)".into(),
    }
}

impl std::fmt::Debug for DistributedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedConfig")
            .field("redis_url", &redact(&self.redis_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("postgres_url", &redact_postgres(&self.postgres_url))
            .field("prefix", &self.prefix)
            .field("durability", &self.durability)
            .field("redis_replicas", &self.redis_replicas)
            .field("outbox_max", &self.outbox_max)
            .field("key_fingerprint", &self.key_fingerprint)
            .finish()
    }
}

/// The store as an operator names it: both services, without passwords,
/// and the prefix.
impl std::fmt::Display for DistributedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} + {} (prefix {:?})",
            redact(&self.redis_url),
            redact_postgres(&self.postgres_url),
            self.prefix
        )
    }
}
