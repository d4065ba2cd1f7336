//! The guards in Redis: the failure counters behind bans
//! ([`RegulationStore`]) and passkey ceremonies in flight
//! ([`CeremonyStore`]), each change one script.
//!
//! Keys (all under the prefix):
//! - `rf:<subject>`: a subject's failures, a sorted set of lease ids scored
//!   by the failure's time; trimmed to the window at every use, and gone a
//!   window after the last failure;
//! - `ri:<subject>`: its attempts in flight, lease ids scored by the
//!   lease's deadline ([`LEASE_MS`]): a lease whose node died stops
//!   counting by itself;
//! - `rp:<user>`: the TOTP step whose replay was last counted;
//! - `c:<token hash>`: a ceremony (its state, owner, purpose and end),
//!   expiring with it; `cu:<purpose>:<user>`: the user's ceremony of that
//!   purpose, which a newer one ends; `cq:<client network>`: a client's
//!   anonymous ceremonies scored by their end, for its quota; `ca:all`:
//!   every anonymous ceremony (`<client>|<hash>`) scored by its end, for
//!   the bound on all of them together (`MAX_ANONYMOUS_CEREMONIES`).
//!
//! Unlike the in-process counters, nothing here is bounded by a count of
//! subjects: every key expires by itself, so memory follows the rate of
//! attempts over one window.

use std::net::IpAddr;

use super::{RedisState, hex, redis_error};
use crate::domain::{
    BanSubject, EnrollerId, MAX_ANONYMOUS_CEREMONIES, RegulationSettings, SessionToken, TokenHash,
    client_network,
};
use crate::store::ceremonies::{Busy, CEREMONY_MS, Entry as Ceremony, Purpose};
use crate::store::contract::{CeremonyStore, RegulationStore};
use crate::store::error::StoreError;
use crate::store::regulation::{AtLimit, Lease};

/// How long a reserved attempt counts as in flight if its node never
/// settles it: far longer than a password check takes.
pub const LEASE_MS: u64 = 120_000;

/// Releases waiting to be sent at most; past it a lease ends by its
/// deadline.
const MAX_QUEUED_RELEASES: usize = 4_096;

/// How long the last counted replay of a user's TOTP step is remembered:
/// longer than the steps a code is accepted in.
const REPLAY_MS: u64 = 600_000;

/// KEYS: failures and in-flight key of each subject, in pairs. ARGV: now,
/// horizon, max failures, lease id, lease deadline, key life. Answers 0
/// when reserved, else the 1-based subject at its limit.
const RESERVE: &str = r"
local n = #KEYS / 2
for s = 1, n do
  local f, i = KEYS[2 * s - 1], KEYS[2 * s]
  redis.call('ZREMRANGEBYSCORE', f, '-inf', ARGV[2])
  redis.call('ZREMRANGEBYSCORE', i, '-inf', ARGV[1])
  if redis.call('ZCARD', f) + redis.call('ZCARD', i) >= tonumber(ARGV[3]) then
    return s
  end
end
for s = 1, n do
  redis.call('ZADD', KEYS[2 * s], ARGV[5], ARGV[4])
  redis.call('PEXPIRE', KEYS[2 * s], ARGV[6])
end
return 0
";

/// KEYS as for RESERVE. ARGV: now, horizon, max failures, lease id,
/// window. Answers the 1-based subjects whose failures reached the limit
/// (their count starts again).
const FAIL: &str = r"
local banned = {}
for s = 1, #KEYS / 2 do
  local f, i = KEYS[2 * s - 1], KEYS[2 * s]
  redis.call('ZREM', i, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', f, '-inf', ARGV[2])
  redis.call('ZADD', f, ARGV[1], ARGV[4])
  if redis.call('ZCARD', f) >= tonumber(ARGV[3]) then
    redis.call('DEL', f)
    banned[#banned + 1] = s
  else
    redis.call('PEXPIRE', f, ARGV[5])
  end
end
return banned
";

/// KEYS as for RESERVE. ARGV: lease id, then per subject '1' when its
/// failures are to be forgotten (a user name on a success).
const SETTLE: &str = r"
for s = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * s], ARGV[1])
  if ARGV[s + 1] == '1' then
    redis.call('DEL', KEYS[2 * s - 1])
  end
end
return 0
";

/// KEYS: the user's replay key. ARGV: step, life. 1 when this step's
/// replay is the first counted.
const REPLAY: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: the ceremony, the user's pointer. ARGV: the ceremony's bytes, its
/// life, its hash (hex), the prefix of ceremony keys. Ends the user's
/// earlier ceremony of the purpose.
const PUT_USER: &str = r"
local old = redis.call('GET', KEYS[2])
if old then
  redis.call('DEL', ARGV[4] .. old)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 0
";

/// KEYS: the ceremony, the client's set, the set of every anonymous
/// ceremony (members `<client>|<hash>`). ARGV: the ceremony's bytes, its
/// life, its hash (hex), now, quota, its end, the most in all, the client,
/// the prefix of ceremony keys, the prefix of client sets. Answers {1, 0}
/// when kept, {0, end of the first in the way} when refused. At the most
/// in all, the client with the most (the oldest first on a tie) gives up
/// its oldest only if it is at its quota; otherwise the newcomer is
/// refused, as in process (`crate::store::ceremonies`).
const PUT_ANONYMOUS: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
local quota = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[2]) >= quota then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2])}
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then
  local all = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
  local count, oldest, order = {}, {}, {}
  for i = 1, #all, 2 do
    local client = string.match(all[i], '^(.*)|')
    if not count[client] then
      count[client] = 0
      oldest[client] = all[i]
      order[#order + 1] = client
    end
    count[client] = count[client] + 1
  end
  local most = order[1]
  for _, c in ipairs(order) do
    if count[c] > count[most] then most = c end
  end
  if count[most] < quota then
    return {0, tonumber(all[2])}
  end
  local member = oldest[most]
  local h = string.sub(member, #most + 2)
  redis.call('DEL', ARGV[9] .. h)
  redis.call('ZREM', KEYS[3], member)
  redis.call('ZREM', ARGV[10] .. most, h)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[8] .. '|' .. ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return {1, 0}
";

/// The scripts, loaded once per connection by their hash (EVALSHA, and
/// EVAL when Redis does not know it yet).
#[derive(Clone)]
pub(super) struct Scripts {
    reserve: redis::Script,
    fail: redis::Script,
    settle: redis::Script,
    replay: redis::Script,
    put_user: redis::Script,
    put_anonymous: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            reserve: redis::Script::new(RESERVE),
            fail: redis::Script::new(FAIL),
            settle: redis::Script::new(SETTLE),
            replay: redis::Script::new(REPLAY),
            put_user: redis::Script::new(PUT_USER),
            put_anonymous: redis::Script::new(PUT_ANONYMOUS),
        }
    }
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Register => "register",
        Purpose::Step => "step",
        Purpose::Discover => "discover",
    }
}

impl RedisState {
    /// The failures and in-flight keys of each subject, in pairs.
    fn counter_keys(&self, subjects: &[BanSubject]) -> Vec<String> {
        subjects
            .iter()
            .flat_map(|s| {
                let k = s.key();
                [self.key("rf", &k), self.key("ri", &k)]
            })
            .collect()
    }

    /// Sends the releases queued so far, before this operation goes on. A
    /// release that fails is left to its lease's deadline.
    async fn send_releases(&self) {
        let (_turn, queued) = self.releases.take().await;
        let calls = queued
            .iter()
            .map(|lease| self.settle_call(lease, false))
            .collect();
        self.send_batch(
            &self.scripts.settle,
            calls,
            "queued lease releases were lost; their deadlines end them",
        )
        .await;
    }

    /// The settle script's call for `lease`; `forget`: the user names'
    /// failures too.
    fn settle_call(&self, lease: &Lease, forget: bool) -> super::Call {
        let mut call = super::Call::new(self.counter_keys(lease.subjects())).arg(lease.id());
        for s in lease.subjects() {
            call = call.arg(if forget && matches!(s, BanSubject::User(_)) {
                "1"
            } else {
                "0"
            });
        }
        call
    }

    /// Releases or succeeds `lease`; `forget`: the user names' failures too.
    async fn settle(&self, lease: &Lease, forget: bool) -> Result<(), StoreError> {
        let c = self.settle_call(lease, forget);
        let mut call = self.scripts.settle.prepare_invoke();
        for k in &c.keys {
            call.key(k);
        }
        for a in &c.args {
            call.arg(a.as_slice());
        }
        let mut conn = self.conn.clone();
        call.invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_error)
    }
}

impl RegulationStore for RedisState {
    async fn reserve(
        &self,
        limits: &RegulationSettings,
        subjects: &[BanSubject],
        configured: bool,
        now_ms: u64,
    ) -> Result<Result<Lease, AtLimit>, StoreError> {
        self.send_releases().await;
        let lease = Lease::new(subjects.to_vec(), configured);
        let window = limits.window_secs.saturating_mul(1000);
        let mut call = self.scripts.reserve.prepare_invoke();
        for k in self.counter_keys(subjects) {
            call.key(k);
        }
        call.arg(now_ms)
            .arg(now_ms.saturating_sub(window))
            .arg(limits.max_failures)
            .arg(lease.id())
            .arg(now_ms + LEASE_MS)
            .arg(window.max(LEASE_MS));
        let mut conn = self.conn.clone();
        let at: usize = match call.invoke_async(&mut conn).await {
            Ok(at) => at,
            Err(e) => {
                // The script may have run all the same (the answer was
                // lost, or its replicas did not confirm it in time): the
                // lease is released rather than left counting as an
                // attempt in flight until its deadline.
                self.release(limits, lease, now_ms);
                return Err(redis_error(e));
            }
        };
        Ok(match at.checked_sub(1).and_then(|i| subjects.get(i)) {
            Some(s) => Err(AtLimit(s.clone())),
            None => Ok(lease),
        })
    }

    async fn fail(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Result<Vec<(BanSubject, u64)>, StoreError> {
        self.send_releases().await;
        let window = limits.window_secs.saturating_mul(1000);
        let mut call = self.scripts.fail.prepare_invoke();
        for k in self.counter_keys(lease.subjects()) {
            call.key(k);
        }
        call.arg(now_ms)
            .arg(now_ms.saturating_sub(window))
            .arg(limits.max_failures)
            .arg(lease.id())
            .arg(window.max(1));
        let mut conn = self.conn.clone();
        let banned: Vec<usize> = call.invoke_async(&mut conn).await.map_err(redis_error)?;
        let until = now_ms + limits.ban_secs.saturating_mul(1000);
        Ok(banned
            .into_iter()
            .filter_map(|i| lease.subjects().get(i.checked_sub(1)?).cloned())
            .map(|s| (s, until))
            .collect())
    }

    async fn succeed(
        &self,
        _limits: &RegulationSettings,
        lease: Lease,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.send_releases().await;
        self.settle(&lease, true).await
    }

    fn release(&self, _limits: &RegulationSettings, lease: Lease, _now_ms: u64) {
        // Without waiting: queued, and sent by a task of its own (or by
        // this handle's next operation, whichever comes first).
        // Past the bound the lease is left to its deadline.
        self.releases.push(lease, MAX_QUEUED_RELEASES);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn(async move { me.send_releases().await });
        }
    }

    async fn first_replay(
        &self,
        _limits: &RegulationSettings,
        user: &str,
        step: u64,
    ) -> Result<bool, StoreError> {
        self.send_releases().await;
        let mut conn = self.conn.clone();
        let first: i64 = self
            .scripts
            .replay
            .key(self.key("rp", user))
            .arg(step)
            .arg(REPLAY_MS)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(first == 1)
    }
}

impl CeremonyStore for RedisState {
    async fn put_ceremony(
        &self,
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate();
        let hash = hex(&token.hash());
        let pointer = self.key("cu", &format!("{}:{user}", purpose_name(purpose)));
        let entry = Ceremony::for_user(purpose, user, by, state, now_ms);
        let mut conn = self.conn.clone();
        self.scripts
            .put_user
            .key(self.key("c", &hash))
            .key(pointer)
            .arg(entry.to_bytes())
            .arg(CEREMONY_MS)
            .arg(&hash)
            .arg(self.key("c", ""))
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(token)
    }

    async fn put_anonymous_ceremony(
        &self,
        ip: Option<IpAddr>,
        quota: usize,
        state: Vec<u8>,
        now_ms: u64,
    ) -> Result<Result<SessionToken, Busy>, StoreError> {
        let token = SessionToken::generate();
        let hash = hex(&token.hash());
        let client = ip.map(client_network);
        let entry = Ceremony::for_client(client, state, now_ms);
        let client_name = client.map_or_else(|| "unknown".to_string(), |c| c.to_string());
        let mut conn = self.conn.clone();
        let (kept, oldest_end): (i64, u64) = self
            .scripts
            .put_anonymous
            .key(self.key("c", &hash))
            .key(self.key("cq", &client_name))
            .key(self.key("ca", "all"))
            .arg(entry.to_bytes())
            .arg(CEREMONY_MS)
            .arg(&hash)
            .arg(now_ms)
            .arg(quota.max(1))
            .arg(entry.expires_ms())
            .arg(MAX_ANONYMOUS_CEREMONIES)
            .arg(&client_name)
            .arg(self.key("c", ""))
            .arg(self.key("cq", ""))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(if kept == 1 {
            Ok(token)
        } else {
            Err(Busy {
                retry_after_ms: oldest_end.saturating_sub(now_ms),
            })
        })
    }

    async fn take_ceremony(
        &self,
        hash: TokenHash,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<Option<Ceremony>, StoreError> {
        let hex = hex(&hash);
        let mut conn = self.conn.clone();
        // Taken once: whoever gets it first, on any node, is the only one.
        let bytes: Option<Vec<u8>> = redis::cmd("GETDEL")
            .arg(self.key("c", &hex))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let Some(entry) = bytes.as_deref().and_then(Ceremony::from_bytes) else {
            return Ok(None);
        };
        // Taken on the replicas too, or a failover could hand it out again.
        conn.confirm().await.map_err(redis_error)?;
        if entry.purpose() == Purpose::Discover {
            // Its place in the client's quota is free again.
            let client = entry
                .client()
                .map_or_else(|| "unknown".to_string(), |c| c.to_string());
            let _: Result<(i64, i64), _> = redis::pipe()
                .cmd("ZREM")
                .arg(self.key("cq", &client))
                .arg(&hex)
                .cmd("ZREM")
                .arg(self.key("ca", "all"))
                .arg(format!("{client}|{hex}"))
                .query_async(&mut conn)
                .await;
        }
        Ok((entry.purpose() == purpose && entry.expires_ms() > now_ms).then_some(entry))
    }
}
