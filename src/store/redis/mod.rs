//! The live state of the distributed backend in Redis, shared by every
//! node. Every change is one Lua script, so it is atomic whatever the
//! nodes do at once; every key carries the deployment's prefix, so several
//! deployments share one Redis (Redis Cluster is out of scope: a script
//! touches keys that a cluster would put on different shards).
//!
//! What this module owns so far:
//! - [`RedisState::connect`]: the connection (it reconnects by itself) and
//!   the durability check at open: AOF on, `appendfsync always` (or
//!   `everysec` when the operator accepts up to a second of loss,
//!   [`Durability::Everysec`]), and `maxmemory-policy noeviction`;
//!   otherwise the open fails, naming the setting to change;
//! - the guards ([`guards`]): the failure counters behind bans and the
//!   passkey ceremonies in flight, run through the same conformance model
//!   as the redb backend's in-process ones;
//! - bans ([`bans`]): each change and its audit event added to the outbox
//!   in one script, and the sweep that ends bans with `ban.lifted`;
//! - sessions ([`sessions`]): the same for every session change, the cap
//!   and credential check inside the creating script.
//!
//! Not built yet: tokens, factors and pending sign-ins, whose scripts also add their audit events to
//! the outbox ([`crate::store::outbox`]) in the same step; the per-node
//! cache; and the `Backend` variant that puts it all together.

mod bans;
mod guards;
mod sessions;
#[cfg(test)]
mod tests;

pub use guards::LEASE_MS;

use redis::aio::ConnectionManager;

use crate::store::error::OpenError;

/// How much loss the operator accepts from Redis on a crash
/// (`[storage] redis_durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write fsynced before Redis answers: nothing acknowledged is
    /// lost. The default.
    #[default]
    Always,
    /// Fsynced once a second: a crash of the Redis host may lose the last
    /// second of sign-ins, revocations and bans.
    Everysec,
}

/// The live state of one deployment in one Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisState {
    /// Reconnects by itself; a command meanwhile fails (and the node fails
    /// closed).
    conn: ConnectionManager,
    /// Every key starts with it and a colon.
    prefix: String,
    /// The Redis as named in messages, without its password.
    name: String,
    scripts: guards::Scripts,
    bans: bans::Scripts,
    sessions: sessions::Scripts,
    /// Session touches not yet sent.
    touches: std::sync::Arc<sessions::Touches>,
    /// The outbox stream (`<prefix>:outbox`) each change's events go to,
    /// in the change's own script.
    outbox_key: String,
    /// Entries the outbox may hold; past it, a change is refused (503).
    outbox_max: u64,
    /// Leases released without waiting, not yet sent.
    releases: std::sync::Arc<guards::Releases>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisState {
    /// Connects to `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, or
    /// `rediss://` for TLS once built) for the deployment `prefix`, and
    /// refuses a Redis that could lose what it acknowledged beyond what
    /// `durability` accepts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        durability: Durability,
    ) -> Result<RedisState, OpenError> {
        let name = redact(url);
        let fail = |reason: String| OpenError::Other {
            store: name.clone(),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| fail(e.to_string()))?;
        let mut conn = ConnectionManager::new(client)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut setting = async |key: &str| -> Result<String, OpenError> {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| fail(format!("reading {key}: {e}")))?;
            Ok(pair.get(1).cloned().unwrap_or_default())
        };
        let (aof, fsync, policy) = (
            setting("appendonly").await?,
            setting("appendfsync").await?,
            setting("maxmemory-policy").await?,
        );
        if let Some(why) = durability_problem(&aof, &fsync, &policy, durability) {
            return Err(fail(why));
        }
        Ok(RedisState {
            conn,
            prefix: prefix.to_string(),
            name,
            scripts: guards::Scripts::default(),
            bans: bans::Scripts::default(),
            sessions: sessions::Scripts::default(),
            touches: Default::default(),
            outbox_key: format!("{prefix}:outbox"),
            outbox_max: crate::store::outbox::DEFAULT_MAX_ENTRIES,
            releases: Default::default(),
        })
    }

    /// The same state with an outbox of at most `max` entries.
    pub fn with_outbox_max(mut self, max: u64) -> Self {
        self.outbox_max = max;
        self
    }

    /// The Redis as named in messages: never its password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<prefix>:`, what every key starts with (the scripts build keys
    /// from it).
    fn key_prefix(&self) -> String {
        format!("{}:", self.prefix)
    }

    /// `<prefix>:<kind>:<rest>`.
    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }
}

/// Two handles on one Redis, as two nodes hold them (tests).
#[cfg(test)]
pub(crate) async fn two_nodes(url: &str, prefix: &str) -> [RedisState; 2] {
    let node = async || {
        RedisState::connect(url, prefix, Durability::Always)
            .await
            .expect("the test Redis is durable")
    };
    [node().await, node().await]
}

/// What makes a Redis with these settings unfit for `durability`, naming
/// the setting to change; `None` when it is fit.
pub fn durability_problem(
    appendonly: &str,
    appendfsync: &str,
    maxmemory_policy: &str,
    durability: Durability,
) -> Option<String> {
    if appendonly != "yes" {
        return Some(format!(
            "Redis has appendonly {appendonly:?}: a restart would lose sessions, bans and \
             audit events not yet chained; set `appendonly yes`"
        ));
    }
    match (appendfsync, durability) {
        ("always", _) | ("everysec", Durability::Everysec) => {}
        ("everysec", Durability::Always) => {
            return Some(
                "Redis has appendfsync everysec: a crash may lose the last second of \
                 sign-ins, revocations and bans; set `appendfsync always`, or accept that \
                 loss with [storage] redis_durability = \"everysec\""
                    .into(),
            );
        }
        (other, _) => {
            return Some(format!(
                "Redis has appendfsync {other:?}: set `appendfsync always`"
            ));
        }
    }
    if maxmemory_policy != "noeviction" {
        return Some(format!(
            "Redis has maxmemory-policy {maxmemory_policy:?}: it could evict live sessions \
             and bans; set `maxmemory-policy noeviction`"
        ));
    }
    None
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "redis (an unreadable URL)".into(),
    }
}
