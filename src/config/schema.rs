//! The config file's schema: the serde structs of every section, with the
//! built-in defaults. These are the file as written; [`super::validate`]
//! checks them and turns them into the typed [`super::Config`].

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::domain::RegulationSettings;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?} (expected text or json)")),
        }
    }
}

/// One account. The password is only ever held as its argon2 PHC string.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name, unique in the file.
    pub name: String,
    /// argon2 PHC string, as printed by `gatehouse hash-password`.
    pub password_hash: String,
    /// Admins may read the audit trail and manage other users' sessions;
    /// `admin = true` also puts the user in the group `admin`.
    #[serde(default)]
    pub admin: bool,
    /// Groups, for access rules (`group:NAME`) and `Remote-Groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Sent to apps as `Remote-Email`.
    #[serde(default)]
    pub email: Option<String>,
    /// Sent to apps as `Remote-Name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether `email` is known to be the user's: the `email_verified`
    /// claim OpenID Connect clients receive.
    #[serde(default)]
    pub email_verified: bool,
    /// Whether this user must sign in with a second factor; unset:
    /// `[second_factor] required`.
    #[serde(default)]
    pub require_second_factor: Option<bool>,
}

impl UserEntry {
    /// Every group of the user: `groups`, plus `admin` for admins.
    pub fn all_groups(&self) -> impl Iterator<Item = &str> {
        let admin = (self.admin && !self.groups.iter().any(|g| g == "admin")).then_some("admin");
        admin
            .into_iter()
            .chain(self.groups.iter().map(String::as_str))
    }
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not a password, but it is offline-crackable: keep it out of logs.
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Session lifetimes and caps.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// An ordinary session ends after this long without use.
    pub idle_secs: u64,
    /// An ordinary session ends this long after login, whatever the use.
    pub absolute_secs: u64,
    /// A "keep me signed in" session lasts this long (no idle limit).
    pub remember_me_secs: u64,
    /// Most sessions one user holds; a new login evicts the oldest.
    pub max_per_user: usize,
    /// A verify more than this long after the last recorded use slides the
    /// idle deadline (one coalesced write).
    pub touch_interval_secs: u64,
    /// How often expired sessions and bans are swept.
    pub sweep_interval_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_secs: 2 * 3600,
            absolute_secs: 24 * 3600,
            remember_me_secs: 30 * 24 * 3600,
            max_per_user: 32,
            touch_interval_secs: 60,
            sweep_interval_secs: 60,
        }
    }
}

/// Request and connection bounds.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest login request body.
    pub login_body_bytes: usize,
    /// Largest body of any other request.
    pub body_bytes: usize,
    /// Largest request head (request line plus headers).
    pub header_bytes: usize,
    /// Time a client has to send the request head.
    pub header_read_timeout_secs: u64,
    /// Time a request may take from head to response.
    pub request_timeout_secs: u64,
    /// Most open client connections; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// Most open connections from one client address (an IPv6 client: its
    /// /64 network); a connection beyond it is closed at once. Trusted
    /// proxies are not counted: they carry many clients.
    pub max_connections_per_ip: usize,
    /// Logins that may wait for a free hashing slot before answering 503.
    pub hash_queue: usize,
    /// Hashing slots; 0 means one per CPU core.
    pub hash_workers: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            login_body_bytes: 16 * 1024,
            body_bytes: 64 * 1024,
            header_bytes: 16 * 1024,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_ip: 64,
            hash_queue: 8,
            hash_workers: 0,
        }
    }
}

/// `[second_factor]`: who must use a second factor, and how long its
/// steps may take.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SecondFactorSettings {
    /// Every user must have a second factor (a user's
    /// `require_second_factor` overrides it). A user who has none is sent
    /// to enroll one right after the password.
    pub required: bool,
    /// Life of a sign-in between its password and its second step.
    pub pending_secs: u64,
    /// Adding, removing or regenerating a factor needs a proof done within
    /// this long in the same session: a second factor, or for a user with
    /// none yet adding the first, the sign-in itself or the password typed
    /// again. `0`: nothing is recent.
    pub recent_secs: u64,
    /// Most sign-ins one user may have waiting for their second step; a
    /// new one past it replaces the oldest.
    pub max_pending_per_user: usize,
    /// Most sign-ins with a passkey alone that one client (an IP address,
    /// or an IPv6 /64) may have open at once; one more is refused (429).
    pub passkey_ceremonies_per_client: usize,
}

impl Default for SecondFactorSettings {
    fn default() -> Self {
        SecondFactorSettings {
            required: false,
            pending_secs: 300,
            recent_secs: 300,
            max_pending_per_user: 8,
            passkey_ceremonies_per_client: 16,
        }
    }
}

/// `Strict-Transport-Security`, sent only when `public_origin` is https.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HstsSettings {
    /// Send the header (with an https public origin).
    pub enabled: bool,
    /// How long browsers remember to use only HTTPS for this host.
    pub max_age_secs: u64,
    /// Add `includeSubDomains`: every subdomain of gatehouse's host must
    /// then serve HTTPS too, so it is off unless the operator says so.
    pub include_subdomains: bool,
}

impl Default for HstsSettings {
    fn default() -> Self {
        HstsSettings {
            enabled: true,
            max_age_secs: 365 * 86_400,
            include_subdomains: false,
        }
    }
}

/// `[tokens]`: personal access tokens, and Basic auth on the forward-auth
/// check for clients that cannot sign in with a form.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Longest lifetime a token may be given, in days. A token asked for
    /// without one gets 90 days (or this, when shorter).
    pub max_days: u64,
    /// Most live tokens one user holds; creating one more is refused.
    pub max_per_user: usize,
    /// Accept `Authorization: Basic` with the user's password (not only
    /// with a token) on `/auth/verify`. Off by default: each distinct
    /// credential then costs an argon2 check.
    pub basic_auth_passwords: bool,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            max_days: 365,
            max_per_user: 50,
            basic_auth_passwords: false,
        }
    }
}

impl TokenSettings {
    /// Days a token gets when its owner names none.
    pub const DEFAULT_DAYS: u64 = 90;

    /// The lifetime of a token asked for with `days` (or none).
    pub fn days(&self, days: Option<u64>) -> u64 {
        days.unwrap_or(Self::DEFAULT_DAYS.min(self.max_days))
    }
}

/// argon2id cost used for new hashes and the dummy hash.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        // The argon2 crate's defaults: the OWASP baseline.
        Argon2Settings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Everything in the config file. Every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub bind: String,
    pub data_dir: Option<PathBuf>,
    /// `scheme://host[:port]` the browser sees; used for CSRF checks and for
    /// absolute login redirects. Unset: the request's `Host` is the reference.
    pub public_origin: Option<String>,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    /// Add `Secure` to the cookie. Unset: on when `public_origin` is https.
    pub secure_cookies: Option<bool>,
    /// Hosts (and their subdomains) that `rd` may point to besides this one.
    pub allowed_redirect_domains: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed. IPs or CIDR blocks.
    pub trusted_proxies: Vec<String>,
    pub log_format: LogFormat,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Exit after this long without activity and open connections; 0: never.
    pub idle_timeout_secs: u64,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Audit events older than this many days are removed (after archiving,
    /// see `archive_pruned_events`). Unset: keep every event forever.
    pub audit_retention_days: Option<u64>,
    /// Append events to `<data-dir>/archive/audit-YYYY-MM.jsonl.zst` before
    /// retention removes them.
    pub archive_pruned_events: bool,
    /// How often the retention pass runs.
    pub retention_interval_secs: u64,
    /// redb page cache, in MiB: memory stays flat whatever the data size.
    pub cache_mib: usize,
    pub session: SessionSettings,
    pub regulation: RegulationSettings,
    pub limits: LimitSettings,
    pub hsts: HstsSettings,
    pub argon2: Argon2Settings,
    pub tokens: TokenSettings,
    pub access: AccessSettings,
    pub second_factor: SecondFactorSettings,
    /// `[proxy]`: what every app behind the built-in proxy shares.
    pub proxy: ProxySettings,
    /// `[tls]`: the listener speaks TLS. Unset: plain HTTP.
    pub tls: TlsSettings,
    /// `[storage]`: which store, and where.
    pub storage: StorageSettings,
    /// `[[apps]]`: the apps the built-in proxy serves, each matched by its
    /// host or by a path prefix. Read at start only.
    pub apps: Vec<AppEntry>,
    /// Access rules, in order; the first that matches decides. Reloaded
    /// (not among the settings a reload reports).
    #[serde(skip_serializing)]
    pub rules: Vec<crate::access::RuleSpec>,
    /// Reloaded (not among the settings a reload reports).
    #[serde(skip_serializing)]
    pub users: Vec<UserEntry>,
    /// `[oidc]`: the OpenID Connect provider's clients (reloaded).
    pub oidc: super::oidc::OidcSettings,
}

impl FileConfig {
    /// Every setting that takes effect only at start (all but the users,
    /// the rules and `access.default_policy`, which a reload swaps), as
    /// `(file key, value)`: `metrics`, `session.idle_secs`, ... Derived from
    /// the schema, so a new setting is listed without more code.
    pub fn restart_settings(&self) -> std::collections::BTreeMap<String, String> {
        fn flatten(
            prefix: &str,
            v: &serde_json::Value,
            out: &mut std::collections::BTreeMap<String, String>,
        ) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        flatten(&key, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        if let Ok(v) = serde_json::to_value(self) {
            flatten("", &v, &mut out);
        }
        out
    }
}

/// `[access]`: what applies when no rule matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// Default `one_factor`: any signed-in user may reach every app.
    /// Reloaded with the rules (not among the settings a reload reports).
    #[serde(skip_serializing)]
    pub default_policy: crate::access::Policy,
    /// Which headers of a trusted proxy name the original request:
    /// `x-forwarded` (the default) or `x-original`. Only that family is
    /// read; a proxy that sends the other gets 403.
    pub forwarded_headers: crate::access::Family,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            bind: "127.0.0.1:8080".into(),
            data_dir: None,
            public_origin: None,
            cookie_name: "gatehouse_session".into(),
            cookie_domain: None,
            secure_cookies: None,
            allowed_redirect_domains: Vec::new(),
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Text,
            metrics: false,
            idle_timeout_secs: 0,
            shutdown_grace_secs: 10,
            audit_retention_days: None,
            archive_pruned_events: true,
            retention_interval_secs: 3600,
            cache_mib: 32,
            session: SessionSettings::default(),
            regulation: RegulationSettings::default(),
            limits: LimitSettings::default(),
            hsts: HstsSettings::default(),
            argon2: Argon2Settings::default(),
            tokens: TokenSettings::default(),
            access: AccessSettings::default(),
            second_factor: SecondFactorSettings::default(),
            proxy: ProxySettings::default(),
            tls: TlsSettings::default(),
            storage: StorageSettings::default(),
            apps: Vec::new(),
            rules: Vec::new(),
            users: Vec::new(),
            oidc: Default::default(),
        }
    }
}

/// `[proxy]`: the built-in reverse proxy's bounds, shared by every app.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Where gatehouse's own pages live on an app's host (`/.gatehouse`):
    /// a request under it goes to gatehouse with the prefix removed, never
    /// to the app.
    pub reserved_prefix: String,
    /// Longest wait for a connection to an upstream (and for a place under
    /// its app's `max_connections`).
    pub connect_timeout_secs: u64,
    /// Longest wait for an upstream's response head once the request is sent.
    pub response_timeout_secs: u64,
    /// Longest time a proxied body (either way) may go without a byte while
    /// gatehouse waits on it.
    pub body_idle_secs: u64,
    /// A WebSocket with no frame either way for this long is closed.
    pub ws_idle_secs: u64,
    /// How often an open WebSocket's session is checked again, besides the
    /// store's notice of each commit.
    pub ws_recheck_secs: u64,
    /// Most proxied WebSockets open at once, over all apps. They also hold
    /// their connection's slot (`limits.max_connections`).
    pub max_upgraded: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            reserved_prefix: "/.gatehouse".into(),
            connect_timeout_secs: 5,
            response_timeout_secs: 60,
            body_idle_secs: 60,
            ws_idle_secs: 600,
            ws_recheck_secs: 30,
            max_upgraded: 1024,
        }
    }
}

/// `[tls]`: TLS on the `bind` listener, from certificate files or from an
/// ACME CA, and a plain-HTTP listener that redirects to it. With none of
/// these set, the listener speaks plain HTTP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The certificate chain, PEM, the server's own certificate first. A
    /// relative path is read from the data directory. Read again on SIGHUP.
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1). Read
    /// again on SIGHUP, with `cert`.
    pub key: Option<PathBuf>,
    /// A second, plain-HTTP listener (`0.0.0.0:80`) that sends every
    /// request to the same host and path over https (and answers ACME's
    /// HTTP-01 challenges).
    pub http_redirect_bind: Option<String>,
    /// Names to get a certificate for from an ACME CA, instead of `cert`
    /// and `key`: obtained at start, stored in the data dir, renewed
    /// before it expires. Setting them agrees to the CA's terms.
    pub acme_domains: Vec<String>,
    /// The CA's ACME directory. Unset: Let's Encrypt's production one.
    pub acme_directory: Option<String>,
    /// `mailto:` address the CA may write to about the certificate.
    pub acme_contact: Option<String>,
    /// PEM root certificate the ACME directory's own HTTPS is checked
    /// against, for a private CA; unset: the system's roots.
    pub acme_ca_file: Option<PathBuf>,
    /// How the CA checks that gatehouse holds the names.
    pub acme_challenge: AcmeChallenge,
}

/// The ACME challenge answered.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// TLS-ALPN-01 on the TLS listener (which the CA reaches on port 443).
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// HTTP-01 on the redirect listener (which the CA reaches on port 80);
    /// needs `http_redirect_bind`.
    #[serde(rename = "http-01")]
    Http01,
}

/// One `[[apps]]` entry, as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// Names the app in pages, logs, metrics and audit events.
    pub name: String,
    /// The host this app claims (every path on it); or else
    #[serde(default)]
    pub host: Option<String>,
    /// the path prefix it takes on every host no app claims (`/code/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Remove `path_prefix` before the request goes upstream.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Send the client's `Host` upstream (the default); `false` sends the
    /// upstream's own.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// `http://HOST:PORT` or `unix:/PATH`.
    pub upstream: String,
    /// Most connections to the upstream at once.
    #[serde(default = "default_app_connections")]
    pub max_connections: usize,
}

fn yes() -> bool {
    true
}

fn default_app_connections() -> usize {
    64
}

/// `[storage] backend`: which store the server opens.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One redb file in the data directory (one server).
    #[default]
    Redb,
    /// Redis for the live state and PostgreSQL for the audit trail, shared
    /// by several servers.
    Distributed,
}

/// `[storage] redis_durability`: the loss accepted from Redis on a crash.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisDurability {
    /// Redis must fsync every write (`appendfsync always`).
    #[default]
    Always,
    /// `appendfsync everysec` is accepted: a crash of the Redis host may
    /// lose the last second of sign-ins, revocations and bans.
    Everysec,
}

/// `[storage]`: the store. The URLs may hold passwords: they are never
/// shown ([`super::SecretUrl`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`, or
    /// `redis+sentinel://[:PASSWORD@]HOST[:PORT],…/SERVICE[/DB]`;
    /// distributed only.
    pub redis_url: Option<super::SecretUrl>,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; distributed only.
    pub postgres_url: Option<super::SecretUrl>,
    /// What every Redis key of this deployment starts with.
    pub prefix: String,
    pub redis_durability: RedisDurability,
    /// The CAs (PEM) a `rediss://` server's certificate must chain to
    /// (default: the system's roots).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Replicas that must have each change before it is acknowledged
    /// (`WAITAOF`, or `WAIT` before Redis 7.2); 0: the master's alone.
    pub redis_replicas: u32,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: StorageBackend::Redb,
            redis_url: None,
            postgres_url: None,
            prefix: crate::store::distributed::DEFAULT_PREFIX.into(),
            redis_durability: RedisDurability::Always,
            redis_ca_file: None,
            redis_replicas: 0,
        }
    }
}
