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
//! - sessions ([`sessions`]) and access tokens ([`tokens`]): the same for
//!   every change, the caps and checks inside the creating scripts;
//! - second factors ([`factors`]), changed by compare-and-set so that a
//!   TOTP step or a recovery code is accepted once whatever the nodes do
//!   at once; pending sign-ins ([`pending`]), completed into a session at
//!   most once by the same creation as a sign-in's; and the step-up
//!   ([`step_up`]), which moves a session to a new token;
//! - the per-node cache of session lookups ([`cache`]), invalidated
//!   through pub/sub, which lets the forward-auth check answer on the
//!   spot.
//!
//! The distributed backend (`crate::store::distributed`) puts it together
//! with the audit trail in PostgreSQL.

mod bans;
pub mod cache;
pub(crate) mod connection;
mod deployment;
#[cfg(test)]
mod factor_check;
mod factors;
mod guards;
mod import;
mod pending;
mod sessions;
mod step_up;
pub mod target;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_factors;
mod tokens;

pub use connection::Replicas;
pub use deployment::SCHEMA;
pub use guards::LEASE_MS;
pub use import::Imported;
pub use target::{Target, redact};

use connection::Conn;

use crate::store::error::{OpenError, StoreError, WriteError};

/// How long after its end a record's key (session, token, ban) may still
/// be swept: key expiry is garbage collection only, never the end itself.
pub(super) const GC_MARGIN_MS: u64 = 86_400_000;

/// Records read in one round trip when many are read.
const READ_CHUNK: usize = 512;

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
    conn: Conn,
    /// Every key starts with it and a colon.
    prefix: String,
    /// The loss accepted, checked at open and again by checks.
    durability: Durability,
    /// The Redis as named in messages, without its password.
    name: String,
    scripts: guards::Scripts,
    bans: bans::Scripts,
    sessions: RecordScripts,
    /// Session touches not yet sent.
    touches: std::sync::Arc<Deferred<(crate::domain::TokenHash, u64)>>,
    tokens: RecordScripts,
    /// Token uses not yet sent.
    uses: std::sync::Arc<Deferred<(crate::domain::TokenHash, u64, Option<std::net::IpAddr>)>>,
    /// The outbox stream (`<prefix>:outbox`) each change's events go to,
    /// in the change's own script.
    outbox_key: String,
    /// Entries the outbox may hold; past it, a change is refused (503).
    outbox_max: u64,
    /// The cache of session lookups and its invalidation listener.
    listener: std::sync::Arc<cache::Listener>,
    /// Leases released without waiting, not yet sent.
    releases: std::sync::Arc<Deferred<crate::store::regulation::Lease>>,
    /// The compare-and-set of a user's factors.
    factors: factors::Scripts,
    /// Pending sign-ins: made, ended, completed into a session, swept.
    pending: pending::Scripts,
    /// A session moved to a new token.
    step_up: redis::Script,
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
    /// Connects to `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`,
    /// `rediss://` for TLS against the system's roots, or
    /// `redis+sentinel://` for the master that Sentinels name; see
    /// [`Target`]) for the deployment `prefix`, and refuses a Redis that
    /// could lose what it acknowledged beyond what `durability` accepts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        durability: Durability,
    ) -> Result<RedisState, OpenError> {
        let target = Target::from_url(url, None).map_err(|reason| OpenError::Other {
            store: redact(url),
            reason,
        })?;
        Self::connect_target(target, url, prefix, durability, Replicas::default()).await
    }

    /// [`RedisState::connect`] through `target` (made for `url`, with the
    /// deployment's CA), each change acknowledged once `replicas` have it.
    /// Refuses a master with fewer replicas connected.
    pub async fn connect_target(
        target: Target,
        url: &str,
        prefix: &str,
        durability: Durability,
        replicas: Replicas,
    ) -> Result<RedisState, OpenError> {
        let name = redact(url);
        let fail = |reason: String| OpenError::Other {
            store: name.clone(),
            reason,
        };
        let mut conn = Conn::open(target, replicas)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let listener = cache::Listener::start(&conn, format!("{prefix}:inv"));
        let [aof, fsync, policy] = settings(&mut conn).await.map_err(fail)?;
        if let Some(why) = durability_problem(&aof, &fsync, &policy, durability) {
            return Err(fail(why));
        }
        if replicas.0 > 0 {
            let connected = connected_replicas(&mut conn).await.map_err(fail)?;
            if connected < replicas.0 {
                return Err(fail(format!(
                    "[storage] redis_replicas = {} wants each change on that many replicas, \
                     but the master has {connected} connected; start them, or lower the setting",
                    replicas.0
                )));
            }
        }
        Ok(RedisState {
            durability,
            conn,
            prefix: prefix.to_string(),
            name,
            scripts: guards::Scripts::default(),
            bans: bans::Scripts::default(),
            sessions: sessions::scripts(),
            touches: Default::default(),
            tokens: tokens::scripts(),
            uses: Default::default(),
            outbox_key: format!("{prefix}:outbox"),
            outbox_max: crate::store::outbox::DEFAULT_MAX_ENTRIES,
            releases: Default::default(),
            listener: std::sync::Arc::new(listener),
            factors: Default::default(),
            pending: Default::default(),
            step_up: step_up::script(),
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

    /// What makes this Redis unfit now, read again from its settings (an
    /// operator may have changed them since the open): for checks.
    pub async fn durability_now(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let [aof, fsync, policy] = settings(&mut conn).await.map_err(StoreError::Io)?;
        Ok(durability_problem(&aof, &fsync, &policy, self.durability))
    }

    /// Bans stored, ran-out ones not yet swept included.
    pub async fn ban_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(self.key("bans", "all"))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// Users with second factors, as the factor changes count them.
    pub async fn users_with_factors(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let n: Option<i64> = redis::cmd("GET")
            .arg(format!("{}:fn", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Pending sign-ins stored, ended ones not yet swept included.
    pub async fn pending_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(format!("{}:pdd", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// A notice that changes whenever a session or token removal reaches
    /// this node (from any node), for whoever holds a session for long.
    pub fn removals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.listener.cache.removals()
    }

    /// Returns once every invalidation published before the call, by any
    /// node, has reached this node's cache: a marker of its own goes out
    /// on the channel after them, and Redis delivers one channel's
    /// messages in order. Waits at most [`connection::CONNECT_TIMEOUT`].
    pub async fn settle_invalidations(&self) -> Result<(), StoreError> {
        let cache = &self.listener.cache;
        if !cache.is_live() {
            // Nothing is answered from the cache meanwhile.
            return Ok(());
        }
        let (marker, n) = cache.marker();
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{}inv", self.key_prefix()))
            .arg(marker)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        tokio::time::timeout(connection::CONNECT_TIMEOUT, cache.heard_up_to(n))
            .await
            .map_err(|_| {
                StoreError::Storage("this node's cache did not hear its own marker".into())
            })
    }

    /// `<prefix>:`, what every key starts with (the scripts build keys
    /// from it).
    fn key_prefix(&self) -> String {
        format!("{}:", self.prefix)
    }

    /// The fields of the record `<kind>:<hash>` (none when it is gone).
    async fn fields(
        &self,
        kind: &str,
        hash: &str,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGETALL")
            .arg(self.key(kind, hash))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// The hashes of `user`'s records of `kind`, newest first.
    async fn newest_of(&self, kind: &str, user: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREVRANGE")
            .arg(self.key(&format!("{kind}u"), user))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// The live record `<kind>:<hash>` at `now_ms` (its deadline after it),
    /// from this node's `cache` (when `cached`) or else from Redis, then
    /// cached.
    async fn lookup<V: cache::Cached>(
        &self,
        kind: &str,
        (cache, cached): (&cache::Cache<V>, bool),
        parse: fn(&std::collections::HashMap<String, String>) -> Option<V>,
        hash: crate::domain::TokenHash,
        now_ms: u64,
    ) -> Result<Option<V>, StoreError> {
        let caches = &self.listener.cache;
        if cached && let Some(v) = caches.get(cache, &hash, now_ms) {
            return Ok(Some(v));
        }
        let found =
            parse(&self.fields(kind, &hex(&hash)).await?).filter(|v| v.deadline_ms() > now_ms);
        if let Some(v) = &found {
            caches.put(cache, hash, v, now_ms);
        }
        Ok(found)
    }

    /// `user`'s live records of `kind` at `now_ms`, newest first.
    async fn live_of<V: cache::Cached>(
        &self,
        kind: &str,
        parse: fn(&std::collections::HashMap<String, String>) -> Option<V>,
        user: &str,
        now_ms: u64,
    ) -> Result<Vec<V>, StoreError> {
        let hashes = self.newest_of(kind, user).await?;
        Ok(self
            .records(kind, &hashes)
            .await?
            .iter()
            .filter_map(parse)
            .filter(|v| v.deadline_ms() > now_ms)
            .collect())
    }

    /// The fields of the records `<kind>:<hash>` of `hashes`, in their
    /// order (empty for one that is gone). Read in pipelined chunks: one
    /// round trip per [`READ_CHUNK`] records, not per record, so a user
    /// with many sessions is listed in a few round trips, each well within
    /// the response timeout.
    async fn records(
        &self,
        kind: &str,
        hashes: &[String],
    ) -> Result<Vec<std::collections::HashMap<String, String>>, StoreError> {
        let mut out = Vec::with_capacity(hashes.len());
        let mut conn = self.conn.clone();
        for chunk in hashes.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for h in chunk {
                pipe.cmd("HGETALL").arg(self.key(kind, h));
            }
            let fields: Vec<std::collections::HashMap<String, String>> =
                pipe.query_async(&mut conn).await.map_err(redis_error)?;
            out.extend(fields);
        }
        Ok(out)
    }

    /// Records of `kind` stored, ended ones not yet swept included.
    async fn count(&self, kind: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(format!("{}:{kind}d", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// Runs a kind's sweep script: up to `limit` records past their end
    /// removed, each with its event; how many, and whether more are due.
    async fn sweep_records(
        &self,
        scripts: &RecordScripts,
        now_ms: u64,
        limit: usize,
    ) -> Result<(usize, bool), WriteError> {
        let mut conn = self.conn.clone();
        let (n, more): (usize, i64) = scripts
            .sweep
            .key(&self.outbox_key)
            .arg(self.key_prefix())
            .arg((now_ms * 1000).to_string())
            .arg(now_ms)
            .arg(limit.max(1))
            .arg(self.outbox_max)
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok((n, more == 1))
    }

    /// Sends the session touches and token uses queued on this handle,
    /// before the write that calls it: a fire-and-forget write that
    /// returned `Ok` is applied before every later write of the handle,
    /// whatever that write changes (the contract's barrier).
    pub(super) async fn send_deferred(&self) {
        self.send_touches().await;
        self.send_uses().await;
    }

    /// Sends queued calls of `script` in one round trip, in order (Redis
    /// runs a pipeline's commands in order, and with `appendfsync always`
    /// one fsync covers them): one at a time, each would wait for its own
    /// answer and fsync while every write of the node waits its turn. A
    /// Redis that no longer knows the script (restarted) is given it, and
    /// the calls again (none ran: each was refused). A failure is logged
    /// as `what`; the queued changes may be lost by design.
    pub(super) async fn send_batch(&self, script: &redis::Script, calls: Vec<Call>, what: &str) {
        if calls.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for c in &calls {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.get_hash())
                .arg(c.keys.len())
                .arg(&c.keys)
                .arg(&c.args);
            pipe.add_command(cmd).ignore();
        }
        let mut conn = self.conn.clone();
        let mut sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if let Err(e) = &sent
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            sent = match script.load_async(&mut conn).await {
                Ok(_) => pipe.query_async(&mut conn).await,
                Err(e) => Err(e),
            };
        }
        if let Err(e) = sent {
            tracing::debug!(error = %e, calls = calls.len(), "{what}");
        }
    }

    /// `<prefix>:<kind>:<rest>`.
    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }
}

/// What every record script starts with: `P` the key prefix and `AT` the
/// event time (µs, a string) from its first two arguments; an audit event
/// as the outbox's JSON (numbers never pass through Lua's floats); the
/// removal of a record (`<kind>:<hash>`, its user's set `<kind>u:<user>`
/// and the deadline index `<kind>d`): dropped alone (a record no cache
/// holds and no event records, a pending sign-in), or removed with its
/// event and published on `<prefix>:inv` for the nodes' caches; and the
/// outbox's bound.
const LUA_BASE: &str = r#"
local P, AT = ARGV[1], ARGV[2]
local function json_event(kind, user, session, ip, details)
  local s = '{"kind":"' .. kind .. '","at_us":' .. AT .. ',"user":' .. cjson.encode(user)
  if session then s = s .. ',"session":"' .. session .. '"' end
  if ip and ip ~= '' then s = s .. ',"ip":' .. cjson.encode(ip) end
  if details then s = s .. ',"details":' .. cjson.encode(details) end
  return s .. '}'
end
local function drop_record(kind, h, user)
  redis.call('DEL', P .. kind .. ':' .. h)
  redis.call('ZREM', P .. kind .. 'u:' .. user, h)
  redis.call('ZREM', P .. kind .. 'd', h)
end
local function remove_record(kind, h, user, outbox, ev)
  redis.call('PUBLISH', P .. 'inv', h)
  drop_record(kind, h, user)
  redis.call('XADD', outbox, '*', 'e', ev)
end
local function full(outbox, max)
  return redis.call('XLEN', outbox) >= tonumber(max)
end
"#;

/// The scripts of one kind of record (sessions, access tokens), each made
/// of `LUA_BASE`, the kind's own helpers and its body.
#[derive(Clone)]
pub(super) struct RecordScripts {
    create: redis::Script,
    touch: redis::Script,
    revoke: redis::Script,
    sweep: redis::Script,
}

impl RecordScripts {
    /// From the kind's helpers and its create, touch, revoke and sweep.
    fn new(helpers: &str, [create, touch, revoke, sweep]: [&str; 4]) -> Self {
        let with = |body: &str| redis::Script::new(&format!("{LUA_BASE}{helpers}{body}"));
        RecordScripts {
            create: with(create),
            touch: with(touch),
            revoke: with(revoke),
            sweep: with(sweep),
        }
    }
}

/// A Redis failure as the store's: a lost connection is I/O.
fn redis_error(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
        StoreError::Io(e.to_string())
    } else {
        StoreError::Storage(e.to_string())
    }
}

/// A script's failure as a write's: a full outbox (the script's `FULL`
/// error) is `Busy`, which the server answers with 503.
fn write_error(e: redis::RedisError) -> WriteError {
    if e.code() == Some("FULL") {
        WriteError::Busy
    } else {
        WriteError::Failed(std::sync::Arc::new(redis_error(e)))
    }
}

/// A token hash in lower-case hex, as keys name it.
fn hex(hash: &crate::domain::TokenHash) -> String {
    hash.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Changes a caller does not wait for (session touches, token uses, lease
/// releases): queued under a bound, and sent in order by whichever comes
/// first, a task of their own or the handle's next operation, which waits
/// for those being sent: so each is applied before that operation answers.
/// One call of a script for [`RedisState::send_batch`]: its keys and its
/// arguments, each already in Redis's bytes.
pub(super) struct Call {
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
}

impl Call {
    pub(super) fn new(keys: Vec<String>) -> Self {
        Call {
            keys,
            args: Vec::new(),
        }
    }

    /// The same with `arg` after the arguments so far.
    pub(super) fn arg(mut self, arg: impl redis::ToRedisArgs) -> Self {
        self.args.extend(arg.to_redis_args());
        self
    }
}

pub(super) struct Deferred<T> {
    queue: std::sync::Mutex<Vec<T>>,
    /// Held while queued changes are sent.
    sending: tokio::sync::Mutex<()>,
}

impl<T> Default for Deferred<T> {
    fn default() -> Self {
        Deferred {
            queue: std::sync::Mutex::new(Vec::new()),
            sending: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> Deferred<T> {
    /// Queues `item`; false, queuing nothing, when `max` are waiting.
    fn push(&self, item: T, max: usize) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= max {
            return false;
        }
        q.push(item);
        true
    }

    /// Everything queued, in order, with the turn to send it: the caller
    /// sends each while it holds the guard, so that a later operation
    /// waits for them.
    async fn take(&self) -> (tokio::sync::MutexGuard<'_, ()>, Vec<T>) {
        let turn = self.sending.lock().await;
        let queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        (turn, queued)
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

/// The replicas connected to the master, from `INFO replication`.
async fn connected_replicas(conn: &mut Conn) -> Result<u32, String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .map_err(|e| format!("reading the replicas: {e}"))?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}

/// `appendonly`, `appendfsync` and `maxmemory-policy` as Redis has them.
async fn settings(conn: &mut Conn) -> Result<[String; 3], String> {
    let mut out: [String; 3] = Default::default();
    for (slot, key) in out
        .iter_mut()
        .zip(["appendonly", "appendfsync", "maxmemory-policy"])
    {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(|e| format!("reading {key}: {e}"))?;
        *slot = pair.get(1).cloned().unwrap_or_default();
    }
    Ok(out)
}
