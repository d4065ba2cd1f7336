//! Configuration: the TOML file, `GATEHOUSE_*` environment variables and
//! command-line overrides, merged into one validated [`Config`].
//!
//! Precedence, highest first: flags, environment, file, built-in defaults.
//! Users live in the file only; `SIGHUP` re-reads them through
//! [`Config::load`] and a failed reload keeps the previous users.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// Login name, unique in the file.
    pub name: String,
    /// argon2 PHC string, as printed by `gatehouse hash-password`.
    pub password_hash: String,
    /// Admins may read the audit trail and manage other users' sessions.
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not a password, but it is offline-crackable: keep it out of logs.
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Users by name, shared by the request handlers and swapped whole on reload.
pub type Users = Arc<HashMap<String, UserEntry>>;

/// Session lifetimes and caps.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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

/// Brute-force regulation.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegulationSettings {
    /// Failures per user or per client IP within `window_secs` that trigger a ban.
    pub max_failures: usize,
    pub window_secs: u64,
    pub ban_secs: u64,
    /// Most users and IPs tracked at once; the stalest are dropped beyond it.
    pub max_tracked: usize,
}

impl Default for RegulationSettings {
    fn default() -> Self {
        RegulationSettings {
            max_failures: 5,
            window_secs: 600,
            ban_secs: 900,
            max_tracked: 10_000,
        }
    }
}

/// Request and connection bounds.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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

/// `Strict-Transport-Security`, sent only when `public_origin` is https.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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

/// argon2id cost used for new hashes and the dummy hash.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
    pub users: Vec<UserEntry>,
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
            users: Vec::new(),
        }
    }
}

/// An IP block from `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as plain IPv4, so that one
/// client has one key whichever socket family it arrived on.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

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
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (it may not exist yet on first start).
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// Parsed `public_origin`, without a trailing slash.
    pub public_origin: Option<url::Url>,
    pub trusted_proxies: Vec<IpNet>,
    pub file: FileConfig,
    pub users: Users,
}

impl Config {
    /// Reads the config file named by `ov` (or `<data-dir>/gatehouse.toml`),
    /// applies the overrides and validates the result. A missing file at the
    /// default location is the same as an empty file.
    pub fn load(ov: &Overrides) -> Result<Config, ConfigError> {
        let default_dir = ov
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"));
        let (path, explicit) = match &ov.config {
            Some(p) => (p.clone(), true),
            None => (default_dir.join(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let mut file = parse_file(&path, &text)?;
        // Values from flags and the environment are not in the file: a
        // validation error about them names no line.
        let overridden: Vec<&str> = [
            ("bind", ov.bind.is_some()),
            ("idle_timeout_secs", ov.idle_timeout_secs.is_some()),
            ("public_origin", ov.public_origin.is_some()),
            ("secure_cookies", ov.secure_cookies.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if let Some(v) = &ov.bind {
            file.bind = v.clone();
        }
        if let Some(v) = ov.idle_timeout_secs {
            file.idle_timeout_secs = v;
        }
        if let Some(v) = ov.log_format {
            file.log_format = v;
        }
        if let Some(v) = &ov.public_origin {
            file.public_origin = Some(v.clone());
        }
        if let Some(v) = ov.secure_cookies {
            file.secure_cookies = Some(v);
        }
        if let Some(v) = ov.metrics {
            file.metrics = v;
        }
        let data_dir = ov
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or(default_dir);
        Config::from_file(path, data_dir, file).map_err(|e| match &e {
            ConfigError::Invalid { field, .. } if overridden.contains(&field.as_str()) => e,
            _ => locate(e, &text),
        })
    }

    /// Validates a parsed file.
    pub fn from_file(
        path: PathBuf,
        data_dir: PathBuf,
        file: FileConfig,
    ) -> Result<Config, ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.clone(),
            line: None,
            field: field.into(),
            reason,
        };
        let bind: SocketAddr = file
            .bind
            .parse()
            .map_err(|e| invalid("bind", format!("{:?}: {e}", file.bind)))?;
        let public_origin = match &file.public_origin {
            None => None,
            Some(s) => {
                let u = url::Url::parse(s).map_err(|e| invalid("public_origin", e.to_string()))?;
                if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                    return Err(invalid(
                        "public_origin",
                        "expected http(s)://host[:port]".into(),
                    ));
                }
                Some(u)
            }
        };
        let mut trusted = Vec::new();
        for (i, s) in file.trusted_proxies.iter().enumerate() {
            trusted.push(IpNet::parse(s).ok_or_else(|| {
                invalid(
                    &format!("trusted_proxies[{i}]"),
                    format!("{s:?} is not an IP address or CIDR block"),
                )
            })?);
        }
        if file.cookie_name.is_empty()
            || !file
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "cookie_name",
                "use letters, digits, '_' or '-'".into(),
            ));
        }
        if let Some(d) = &file.cookie_domain
            && (d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(invalid("cookie_domain", format!("{d:?} is not a domain")));
        }
        // Browsers drop prefixed cookies that break the prefix's rules; refuse
        // such a setting here instead of failing every login silently.
        let secure = file.secure_cookies.unwrap_or_else(|| {
            public_origin
                .as_ref()
                .is_some_and(|u| u.scheme() == "https")
        });
        if file.cookie_name.starts_with("__Host-") && (!secure || file.cookie_domain.is_some()) {
            return Err(invalid(
                "cookie_name",
                "a `__Host-` cookie needs secure_cookies and no cookie_domain".into(),
            ));
        }
        if file.cookie_name.starts_with("__Secure-") && !secure {
            return Err(invalid(
                "cookie_name",
                "a `__Secure-` cookie needs secure_cookies".into(),
            ));
        }
        let s = &file.session;
        for (field, v) in [
            ("session.idle_secs", s.idle_secs),
            ("session.absolute_secs", s.absolute_secs),
            ("session.remember_me_secs", s.remember_me_secs),
            ("session.sweep_interval_secs", s.sweep_interval_secs),
            ("retention_interval_secs", file.retention_interval_secs),
            (
                "audit_retention_days",
                file.audit_retention_days.unwrap_or(1),
            ),
            ("regulation.window_secs", file.regulation.window_secs),
            ("regulation.ban_secs", file.regulation.ban_secs),
            (
                "limits.header_read_timeout_secs",
                file.limits.header_read_timeout_secs,
            ),
            (
                "limits.request_timeout_secs",
                file.limits.request_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        for (field, v) in [
            ("session.max_per_user", s.max_per_user),
            ("regulation.max_failures", file.regulation.max_failures),
            ("regulation.max_tracked", file.regulation.max_tracked),
            ("limits.login_body_bytes", file.limits.login_body_bytes),
            ("limits.body_bytes", file.limits.body_bytes),
            ("limits.max_connections", file.limits.max_connections),
            (
                "limits.max_connections_per_ip",
                file.limits.max_connections_per_ip,
            ),
            ("cache_mib", file.cache_mib),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        // Upper bounds: every lifetime is turned into milliseconds and added
        // to the clock, and every count sizes a semaphore or a buffer. Values
        // past these bounds are typos, and would overflow or panic at run time.
        for (field, v) in [
            ("session.idle_secs", s.idle_secs),
            ("session.absolute_secs", s.absolute_secs),
            ("session.remember_me_secs", s.remember_me_secs),
            ("session.touch_interval_secs", s.touch_interval_secs),
            ("session.sweep_interval_secs", s.sweep_interval_secs),
            ("regulation.window_secs", file.regulation.window_secs),
            ("regulation.ban_secs", file.regulation.ban_secs),
            (
                "limits.header_read_timeout_secs",
                file.limits.header_read_timeout_secs,
            ),
            (
                "limits.request_timeout_secs",
                file.limits.request_timeout_secs,
            ),
            ("idle_timeout_secs", file.idle_timeout_secs),
            ("shutdown_grace_secs", file.shutdown_grace_secs),
            ("hsts.max_age_secs", file.hsts.max_age_secs),
        ] {
            if v > MAX_SECS {
                return Err(invalid(
                    field,
                    format!("must be at most {MAX_SECS} (ten years)"),
                ));
            }
        }
        for (field, v, max) in [
            ("session.max_per_user", s.max_per_user, MAX_COUNT),
            (
                "regulation.max_failures",
                file.regulation.max_failures,
                MAX_COUNT,
            ),
            (
                "regulation.max_tracked",
                file.regulation.max_tracked,
                MAX_COUNT,
            ),
            (
                "limits.max_connections",
                file.limits.max_connections,
                MAX_COUNT,
            ),
            (
                "limits.max_connections_per_ip",
                file.limits.max_connections_per_ip,
                MAX_COUNT,
            ),
            ("limits.hash_workers", file.limits.hash_workers, 1024),
            ("limits.hash_queue", file.limits.hash_queue, MAX_COUNT),
            (
                "limits.login_body_bytes",
                file.limits.login_body_bytes,
                MAX_BYTES,
            ),
            ("limits.body_bytes", file.limits.body_bytes, MAX_BYTES),
            ("limits.header_bytes", file.limits.header_bytes, MAX_BYTES),
        ] {
            if v > max {
                return Err(invalid(field, format!("must be at most {max}")));
            }
        }
        if file.limits.header_bytes < 8192 {
            return Err(invalid(
                "limits.header_bytes",
                "must be at least 8192".into(),
            ));
        }
        let a = &file.argon2;
        argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None)
            .map_err(|e| invalid("argon2", e.to_string()))?;
        let users = validate_users(&path, &file.users)?;
        Ok(Config {
            path,
            data_dir,
            bind,
            public_origin,
            trusted_proxies: trusted,
            users: Arc::new(users),
            file,
        })
    }

    /// Whether the session cookie carries `Secure`: as configured, else
    /// whenever the public origin is https.
    pub fn secure_cookies(&self) -> bool {
        self.file.secure_cookies.unwrap_or_else(|| {
            self.public_origin
                .as_ref()
                .is_some_and(|u| u.scheme() == "https")
        })
    }

    /// The session cookie's name. With `Secure` and no `Domain`, the
    /// configured name gets the `__Host-` prefix: browsers then accept that
    /// cookie only from this host, over HTTPS, with `Path=/`, so neither a
    /// sibling subdomain nor a plain-HTTP page can plant or shadow it.
    pub fn cookie_name(&self) -> String {
        let name = &self.file.cookie_name;
        if self.secure_cookies()
            && self.file.cookie_domain.is_none()
            && !name.starts_with("__Host-")
            && !name.starts_with("__Secure-")
        {
            format!("__Host-{name}")
        } else {
            name.clone()
        }
    }

    /// Users whose hash is not argon2id at the `[argon2]` cost. A login
    /// for an unknown name is checked against a dummy hash at that cost, so
    /// a failed login for one of these users takes a different time than
    /// one for a name that does not exist, which tells that the name exists.
    pub fn users_with_other_cost(&self) -> Vec<String> {
        let a = &self.file.argon2;
        let mut odd: Vec<String> = self
            .users
            .values()
            .filter(|u| {
                let Ok(h) = argon2::PasswordHash::new(&u.password_hash) else {
                    return true;
                };
                let param = |name: &str| h.params.get_decimal(name);
                h.algorithm.as_str() != "argon2id"
                    || param("m") != Some(a.memory_kib)
                    || param("t") != Some(a.iterations)
                    || param("p") != Some(a.parallelism)
            })
            .map(|u| u.name.clone())
            .collect();
        odd.sort();
        odd
    }

    /// The `Strict-Transport-Security` value for responses, when the
    /// public origin is https and the header is not turned off. Without an
    /// https public origin gatehouse cannot know that browsers reach it over
    /// HTTPS, and the header is ignored over plain HTTP anyway.
    pub fn hsts(&self) -> Option<String> {
        let h = &self.file.hsts;
        let https = self
            .public_origin
            .as_ref()
            .is_some_and(|u| u.scheme() == "https");
        (h.enabled && https).then(|| {
            let mut v = format!("max-age={}", h.max_age_secs);
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            v
        })
    }

    /// Path of the database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}

fn validate_users(
    path: &Path,
    users: &[UserEntry],
) -> Result<HashMap<String, UserEntry>, ConfigError> {
    let mut map = HashMap::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            field: format!("users[{i}].{field}"),
            reason,
        };
        if u.name.is_empty()
            || u.name.len() > crate::store::MAX_USER
            || u.name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "name",
                format!(
                    "{:?}: 1 to {} characters, no spaces or control characters",
                    u.name,
                    crate::store::MAX_USER
                ),
            ));
        }
        if let Err(e) = argon2::PasswordHash::new(&u.password_hash) {
            return Err(invalid(
                "password_hash",
                format!("not a PHC string ({e}); make one with `gatehouse hash-password`"),
            ));
        }
        if map.insert(u.name.clone(), u.clone()).is_some() {
            return Err(invalid("name", format!("duplicate user {:?}", u.name)));
        }
    }
    Ok(map)
}

/// Adds the line of the offending setting to a validation error, when the
/// file holds that setting (best effort: `[table]` and `[[users]]` headers
/// and `key = value` lines; dotted or inline keys are not found).
fn locate(e: ConfigError, text: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            path,
            line: None,
            field,
            reason,
        } => ConfigError::Invalid {
            line: field_line(text, &field),
            path,
            field,
            reason,
        },
        e => e,
    }
}

/// 1-based line of setting `field` (`bind`, `session.idle_secs`,
/// `trusted_proxies[2]`, `users[1].name`, or a whole table such as `argon2`).
pub fn field_line(text: &str, field: &str) -> Option<usize> {
    // Split the field into a table (with the index of a `[[users]]` entry)
    // and a key.
    let (table, index, key) = match field.split_once('.') {
        Some((t, k)) => match t.split_once('[') {
            Some((t, i)) => (
                Some(t),
                i.trim_end_matches(']').parse::<usize>().ok(),
                Some(k),
            ),
            None => (Some(t), None, Some(k)),
        },
        None => {
            let key = field.split('[').next().unwrap_or(field);
            if text.lines().any(|l| header(l) == Some(key)) {
                (Some(key), None, None)
            } else {
                (None, None, Some(key))
            }
        }
    };
    let mut current: Option<&str> = None;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut current_index = 0;
    for (n, l) in text.lines().enumerate() {
        if let Some(h) = header(l) {
            current = Some(h);
            let c = seen.entry(h).or_insert(0);
            current_index = *c;
            *c += 1;
            if key.is_none() && Some(h) == table {
                return Some(n + 1);
            }
            continue;
        }
        let Some(key) = key else { continue };
        if current != table || index.is_some_and(|i| i != current_index) {
            continue;
        }
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(n + 1);
        }
    }
    None
}

/// The table name of a `[table]` or `[[table]]` header line.
fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.split('#').next().unwrap_or(t).trim();
    let inner = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
    inner
        .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(str::trim)
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

/// 1-based line and column of byte offset `at` in `text`. Works on bytes, so
/// an offset inside a multi-byte character cannot panic; the column counts bytes.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = match before.iter().rposition(|b| *b == b'\n') {
        Some(i) => before.len() - i,
        None => before.len() + 1,
    };
    (line, col)
}

/// Appends a `[[users]]` entry to the config file (creating it, mode 0600),
/// keeping whatever the file already says.
pub fn append_user(path: &Path, user: &UserEntry) -> Result<(), ConfigError> {
    use std::io::Write;
    let werr = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(werr)?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let entry = format!(
        "{sep}\n[[users]]\nname = {}\npassword_hash = {}\nadmin = {}\n",
        toml_str(&user.name),
        toml_str(&user.password_hash),
        user.admin
    );
    f.write_all(entry.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let file = parse_file(Path::new("g.toml"), text)?;
        Config::from_file("g.toml".into(), "d".into(), file).map_err(|e| locate(e, text))
    }

    #[test]
    fn validation_errors_name_the_line() {
        let e = load_text("metrics = true\n[session]\nmax_per_user = 3\nidle_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.toml:4: invalid setting `session.idle_secs`"),
            "{e}"
        );
        let e = load_text("bind = \"x\"").unwrap_err().to_string();
        assert!(e.starts_with("g.toml:1: invalid setting `bind`"), "{e}");
        let two = format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n\n[[users]]\nname = \"b c\"\npassword_hash = \"{HASH}\"\n"
        );
        let e = load_text(&two).unwrap_err().to_string();
        assert!(
            e.starts_with("g.toml:6: invalid setting `users[1].name`"),
            "{e}"
        );
        let e = load_text("[argon2]\nmemory_kib = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("g.toml:1: invalid setting `argon2`"), "{e}");
        assert_eq!(field_line("x = 1", "trusted_proxies[0]"), None);
        assert_eq!(
            field_line("a=1\ntrusted_proxies = [\"x\"]", "trusted_proxies[0]"),
            Some(2)
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load_text("").unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.file.cookie_name, "gatehouse_session");
        assert_eq!(c.file.session.max_per_user, 32);
        assert_eq!(c.db_path(), PathBuf::from("d/gatehouse.redb"));
        assert!(c.users.is_empty());
    }

    #[test]
    fn type_error_names_line_and_field() {
        let e = load_text("bind = \"127.0.0.1:1\"\n[session]\nidle_secs = \"soon\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("g.toml:3:"), "{msg}");
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = load_text("\n\nbindd = \"x\"\n").unwrap_err().to_string();
        assert!(e.starts_with("g.toml:3:1"), "{e}");
        assert!(e.contains("bindd"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = load_text("bind = \"nope\"").unwrap_err().to_string();
        assert!(e.contains("`bind`"), "{e}");
        let e = load_text("[session]\nidle_secs = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.idle_secs"), "{e}");
        let e = load_text("trusted_proxies = [\"10.0.0.0/33\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_proxies[0]"), "{e}");
        let e = load_text("[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("users[0].password_hash"), "{e}");
    }

    #[test]
    fn users_parse_and_duplicates_fail() {
        let one =
            format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\nadmin = true\n");
        let c = load_text(&one).unwrap();
        assert!(c.users["alice"].admin);
        assert!(!format!("{:?}", c.users["alice"]).contains("argon2"));
        let two = format!("{one}{one}");
        assert!(
            load_text(&two)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
    }

    #[test]
    fn ip_nets_match() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let one = IpNet::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(IpNet::parse("x").is_none());
    }

    #[test]
    fn append_user_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, "metrics = true").unwrap();
        let u = UserEntry {
            name: "admin".into(),
            password_hash: HASH.into(),
            admin: true,
        };
        append_user(&p, &u).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let f = parse_file(&p, &text).unwrap();
        assert!(f.metrics);
        assert_eq!(f.users, vec![u]);
    }

    #[test]
    fn users_hashed_at_another_cost_are_named() {
        // HASH is m=19456,t=2,p=1: the default cost.
        let one = format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\n");
        assert!(load_text(&one).unwrap().users_with_other_cost().is_empty());
        let cheap = format!("[argon2]\nmemory_kib = 64\niterations = 1\n{one}");
        assert_eq!(
            load_text(&cheap).unwrap().users_with_other_cost(),
            ["alice"]
        );
    }

    #[test]
    fn cookie_name_prefix_and_secure_default() {
        let c = load_text("").unwrap();
        assert!(!c.secure_cookies());
        assert_eq!(c.cookie_name(), "gatehouse_session");
        let c = load_text("public_origin = \"https://auth.example.com\"").unwrap();
        assert!(c.secure_cookies());
        assert_eq!(c.cookie_name(), "__Host-gatehouse_session");
        let c =
            load_text("public_origin = \"https://a.example.com\"\ncookie_domain = \"example.com\"")
                .unwrap();
        assert_eq!(c.cookie_name(), "gatehouse_session");
        let c =
            load_text("public_origin = \"https://a.example.com\"\nsecure_cookies = false").unwrap();
        assert!(!c.secure_cookies());
        assert_eq!(c.cookie_name(), "gatehouse_session");
        let e = load_text("cookie_name = \"__Host-x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cookie_name"), "{e}");
        let e =
            load_text("secure_cookies = true\ncookie_name = \"__Host-x\"\ncookie_domain = \"a.b\"")
                .unwrap_err()
                .to_string();
        assert!(e.contains("cookie_name"), "{e}");
        assert!(load_text("secure_cookies = true\ncookie_name = \"__Secure-x\"").is_ok());
    }

    #[test]
    fn hsts_only_with_an_https_public_origin() {
        assert_eq!(load_text("").unwrap().hsts(), None);
        assert_eq!(
            load_text("public_origin = \"http://auth.example.com\"")
                .unwrap()
                .hsts(),
            None
        );
        let https = "public_origin = \"https://auth.example.com\"\n";
        assert_eq!(
            load_text(https).unwrap().hsts().as_deref(),
            Some("max-age=31536000")
        );
        let c = load_text(&format!(
            "{https}[hsts]\nmax_age_secs = 600\ninclude_subdomains = true\n"
        ))
        .unwrap();
        assert_eq!(c.hsts().as_deref(), Some("max-age=600; includeSubDomains"));
        let off = load_text(&format!("{https}[hsts]\nenabled = false\n")).unwrap();
        assert_eq!(off.hsts(), None);
        let e = load_text("[hsts]\nmax_age_secs = 999999999999\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.toml:2: invalid setting `hsts.max_age_secs`"),
            "{e}"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Keys of every section, so that generated files reach validation.
        const KEYS: &[(&str, &str)] = &[
            ("", "bind"),
            ("", "public_origin"),
            ("", "cookie_name"),
            ("", "cookie_domain"),
            ("", "secure_cookies"),
            ("", "trusted_proxies"),
            ("", "allowed_redirect_domains"),
            ("", "idle_timeout_secs"),
            ("", "shutdown_grace_secs"),
            ("session", "idle_secs"),
            ("session", "absolute_secs"),
            ("session", "remember_me_secs"),
            ("session", "max_per_user"),
            ("session", "touch_interval_secs"),
            ("regulation", "max_failures"),
            ("regulation", "window_secs"),
            ("regulation", "ban_secs"),
            ("regulation", "max_tracked"),
            ("limits", "login_body_bytes"),
            ("limits", "body_bytes"),
            ("limits", "header_bytes"),
            ("limits", "max_connections"),
            ("limits", "hash_workers"),
            ("limits", "hash_queue"),
            ("limits", "max_connections_per_ip"),
            ("hsts", "enabled"),
            ("hsts", "max_age_secs"),
            ("hsts", "include_subdomains"),
            ("argon2", "memory_kib"),
            ("argon2", "iterations"),
            ("argon2", "parallelism"),
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u64>().prop_map(|v| v.to_string()),
                (0u64..100_000).prop_map(|v| v.to_string()),
                any::<i64>().prop_map(|v| v.to_string()),
                any::<bool>().prop_map(|v| v.to_string()),
                ".{0,20}".prop_map(|v| format!("{v:?}")),
                Just("\"127.0.0.1:0\"".to_string()),
                Just("\"https://auth.example.com\"".to_string()),
                Just("[\"10.0.0.0/8\", \"::1\"]".to_string()),
                Just("1e999".to_string()),
                Just("[".to_string()),
            ]
        }

        /// A file of real keys with random values, in random sections.
        fn file() -> impl Strategy<Value = String> {
            proptest::collection::vec((0..KEYS.len(), value()), 0..12).prop_map(|kvs| {
                let mut top = String::new();
                let mut sections: HashMap<&str, String> = HashMap::new();
                for (i, v) in kvs {
                    let (sec, key) = KEYS[i];
                    let line = format!("{key} = {v}\n");
                    if sec.is_empty() {
                        top.push_str(&line);
                    } else {
                        sections.entry(sec).or_default().push_str(&line);
                    }
                }
                for (sec, body) in sections {
                    top.push_str(&format!("[{sec}]\n{body}"));
                }
                top
            })
        }

        fn check(text: &str) {
            match load_text(text) {
                Ok(c) => {
                    // A valid config never overflows where it is used.
                    let s = &c.file.session;
                    for secs in [s.idle_secs, s.absolute_secs, s.remember_me_secs] {
                        assert!(
                            secs.checked_mul(1000)
                                .and_then(|ms| ms.checked_add(u64::MAX / 2))
                                .is_some()
                        );
                    }
                    assert!(c.file.limits.max_connections <= MAX_COUNT);
                    let per_ip = c.file.limits.max_connections_per_ip;
                    assert!(per_ip > 0 && per_ip <= MAX_COUNT);
                    assert!(u32::try_from(c.file.limits.header_bytes).is_ok());
                }
                Err(ConfigError::Parse { line, .. }) => {
                    // Parse errors name a line of the file.
                    assert!(
                        line >= 1 && line <= text.lines().count().max(1) + 1,
                        "line {line}"
                    );
                }
                Err(ConfigError::Invalid { field, line, .. }) => {
                    assert!(!field.is_empty());
                    // A setting written as `key = value` in the file is located.
                    let key = field.rsplit('.').next().unwrap().split('[').next().unwrap();
                    if let Some(l) = line {
                        assert!(text.lines().nth(l - 1).is_some(), "line {l}");
                    } else {
                        assert!(
                            !text
                                .lines()
                                .any(|l| l.trim_start().starts_with(&format!("{key} ="))),
                            "{field} not located in {text:?}"
                        );
                    }
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }

        proptest! {
            /// Arbitrary text: an error naming a line, never a panic.
            #[test]
            fn random_text_never_panics(text in "(?s).{0,300}") {
                check(&text);
            }

            /// Real keys with random values reach validation: a valid config,
            /// or an error naming the line or the field.
            #[test]
            fn random_settings_are_valid_or_named(text in file()) {
                check(&text);
            }
        }

        #[test]
        fn huge_values_are_refused() {
            for (text, field) in [
                (
                    "[session]\nidle_secs = 18446744073709551615",
                    "session.idle_secs",
                ),
                (
                    "[limits]\nmax_connections = 18446744073709551615",
                    "limits.max_connections",
                ),
                ("[limits]\nheader_bytes = 4294967396", "limits.header_bytes"),
                ("[limits]\nhash_workers = 100000", "limits.hash_workers"),
                (
                    "[limits]\nmax_connections_per_ip = 1000001",
                    "limits.max_connections_per_ip",
                ),
                (
                    "[limits]\nmax_connections_per_ip = 0",
                    "limits.max_connections_per_ip",
                ),
            ] {
                let e = load_text(text).unwrap_err().to_string();
                assert!(e.contains(field), "{e}");
            }
        }

        #[test]
        fn errors_inside_multibyte_text_name_a_line() {
            let e = load_text("# é\ncookie_name = \"ü\" x").unwrap_err();
            assert!(e.to_string().starts_with("g.toml:2:"), "{e}");
        }
    }
}
