//! `[storage]`: checked and turned into the distributed backend's config
//! (or `None`, the redb file). Every error names the setting (and so its
//! line) and never shows a password.

use super::schema::{RedisDurability, StorageBackend, StorageSettings};
use crate::store::distributed::DistributedConfig;
use crate::store::redis::Durability;

/// Longest key prefix: every Redis key carries it.
const MAX_PREFIX: usize = 64;

/// The distributed backend's config, or `None` for redb.
pub(super) fn check<E>(
    s: &StorageSettings,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Option<DistributedConfig>, E> {
    if s.prefix.is_empty()
        || s.prefix.len() > MAX_PREFIX
        || !s
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(invalid(
            "storage.prefix",
            format!("use 1 to {MAX_PREFIX} letters, digits, '_', '-' or '.'"),
        ));
    }
    if s.backend == StorageBackend::Redb {
        for (field, set) in [
            ("storage.redis_url", s.redis_url.is_some()),
            ("storage.postgres_url", s.postgres_url.is_some()),
        ] {
            if set {
                return Err(invalid(
                    field,
                    "used only with backend = \"distributed\"".into(),
                ));
            }
        }
        return Ok(None);
    }
    let (Some(redis), Some(pg)) = (&s.redis_url, &s.postgres_url) else {
        return Err(invalid(
            "storage.backend",
            "backend = \"distributed\" needs both storage.redis_url and storage.postgres_url"
                .into(),
        ));
    };
    match url::Url::parse(redis.expose()) {
        _ if redis.expose().starts_with("redis+sentinel://")
            || redis.expose().starts_with("rediss+sentinel://") =>
        {
            crate::store::redis::Target::from_url(redis.expose(), None)
                .map_err(|e| invalid("storage.redis_url", e))?;
        }
        Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => {}
        Ok(u) if u.scheme() == "rediss" && u.host_str().is_some() => {
            if u.fragment() == Some("insecure") {
                return Err(invalid(
                    "storage.redis_url",
                    "#insecure would not verify the server's certificate; name its CA in \
                     storage.redis_ca_file instead"
                        .into(),
                ));
            }
        }
        _ => {
            return Err(invalid(
                "storage.redis_url",
                format!(
                    "expected redis[s]://[:PASSWORD@]HOST[:PORT][/DB] or \
                     redis[s]+sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/SERVICE[/DB], \
                     not {redis}"
                ),
            ));
        }
    }
    match url::Url::parse(pg.expose()) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some() => {
            // TLS settings are read as libpq reads them; a CA file named
            // by `sslrootcert` must be readable now, not at the first
            // connection.
            if let Err(reason) = crate::store::tls::pg_target(pg.expose()) {
                return Err(invalid("storage.postgres_url", reason));
            }
        }
        _ => {
            return Err(invalid(
                "storage.postgres_url",
                format!("expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB, not {pg}"),
            ));
        }
    }
    let durability = match s.redis_durability {
        RedisDurability::Always => Durability::Always,
        RedisDurability::Everysec => Durability::Everysec,
    };
    if let Some(ca) = &s.redis_ca_file {
        crate::store::tls::read_ca_file(ca).map_err(|e| invalid("storage.redis_ca_file", e))?;
    }
    let mut config = DistributedConfig::new(redis.expose(), pg.expose())
        .with_prefix(s.prefix.clone())
        .with_durability(durability)
        .with_replicas(s.redis_replicas);
    config.redis_ca_file = s.redis_ca_file.clone();
    Ok(Some(config))
}

/// The URL settings whose password alone changed between `old` and `new`:
/// the restart settings hold the URLs without passwords, which would not
/// show it.
pub(super) fn secret_changes(
    old: &Option<DistributedConfig>,
    new: &Option<DistributedConfig>,
) -> Vec<String> {
    let (Some(old), Some(new)) = (old, new) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (field, a, b) in [
        ("storage.redis_url", &old.redis_url, &new.redis_url),
        ("storage.postgres_url", &old.postgres_url, &new.postgres_url),
    ] {
        if a != b {
            out.push(field.to_string());
        }
    }
    out
}
