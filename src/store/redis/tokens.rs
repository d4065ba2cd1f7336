//! Access tokens in Redis, shared by every node: each change one script
//! that adds its audit events to the outbox, as redb writes them in the
//! same commit (the events a script builds itself have redb's details,
//! which a test checks).
//!
//! Keys (under the prefix): `tk:<token hash>`, a hash per token (`user`,
//! `pid`, `name`, `hint`, `domains` and `ips` as JSON, `created`,
//! `expires`, `used`, `tf`); `tku:<user>`, the user's tokens by creation;
//! `tkd`, every token by expiry (the sweep). A token's key expires a day
//! after the token, as garbage collection only: a token ends by the sweep,
//! which records `token.expired`. Uses are queued like session touches.

use std::net::IpAddr;

use super::{GC_MARGIN_MS, RedisState, hex, write_error};
use crate::domain::{
    AccessToken, AccessTokenInfo, CreatedAccessToken, MAX_TOKEN_DOMAINS, MAX_TOKEN_NAME, MAX_USER,
    Method, Methods, NewAccessToken, PublicId, Revocation, TOKEN_RECENT_IPS, TokenHash,
    TokenRefusal, truncate,
};
use crate::store::contract::TokenStore;
use crate::store::error::{StoreError, WriteError};
use crate::store::outbox::wire;

/// The tokens' own helpers (see `LUA_BASE`): a token's event, naming it
/// by id and name, and its removal.
const PRELUDE: &str = r#"
local function event(kind, user, pid, name, ip, extra)
  local details = {{'token', pid}, {'name', name}}
  for _, d in ipairs(extra or {}) do details[#details + 1] = d end
  return json_event(kind, user, nil, ip, details)
end
local function remove(h, user, outbox, ev)
  remove_record('tk', h, user, outbox, ev)
end
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 now, 4 hash, 5 the asking
/// session's hash ('' for none), 6 cap, 7 outbox bound, 8 user, 9 pid,
/// 10 name, 11 hint, 12 domains (JSON), 13 expires, 14 two factors asked
/// ('1'), 15 second-factor method bits, 16 key life, 17 `token.created`.
/// Answers {'OK', two_factor} or {'CAP'} or {'ENDED'}.
const CREATE: &str = r#"
if full(KEYS[1], ARGV[7]) then return redis.error_reply('FULL the outbox is full') end
local now, user = tonumber(ARGV[3]), ARGV[8]
local tf = '0'
if ARGV[5] ~= '' then
  local s = redis.call('HMGET', P .. 's:' .. ARGV[5], 'seen', 'idle', 'abs', 'methods')
  if not s[1] then return {'ENDED'} end
  local d = tonumber(s[3])
  if s[2] ~= '' then d = math.min(tonumber(s[1]) + tonumber(s[2]), d) end
  if d <= now then return {'ENDED'} end
  if ARGV[14] == '1' and bit.band(tonumber(s[4]), tonumber(ARGV[15])) ~= 0 then tf = '1' end
end
local expired, live = {}, 0
for _, h in ipairs(redis.call('ZRANGE', P .. 'tku:' .. user, 0, -1)) do
  local f = redis.call('HMGET', P .. 'tk:' .. h, 'pid', 'name', 'expires')
  if not f[1] then
    redis.call('ZREM', P .. 'tku:' .. user, h)
    redis.call('ZREM', P .. 'tkd', h)
  elseif tonumber(f[3]) <= now then
    expired[#expired + 1] = {h, f[1], f[2]}
  else
    live = live + 1
  end
end
if live >= tonumber(ARGV[6]) then return {'CAP'} end
for _, e in ipairs(expired) do
  remove(e[1], user, KEYS[1], event('token.expired', user, e[2], e[3], nil, {{'reason', 'expired'}}))
end
local key = P .. 'tk:' .. ARGV[4]
redis.call('HSET', key, 'user', user, 'pid', ARGV[9], 'name', ARGV[10], 'hint', ARGV[11],
  'domains', ARGV[12], 'created', ARGV[3], 'expires', ARGV[13], 'used', '', 'ips', '[]', 'tf', tf)
redis.call('PEXPIRE', key, ARGV[16])
redis.call('ZADD', P .. 'tku:' .. user, ARGV[3], ARGV[4])
redis.call('ZADD', P .. 'tkd', ARGV[13], ARGV[4])
redis.call('XADD', KEYS[1], '*', 'e', ARGV[17])
return {'OK', tf}
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 now, 4 hash, 5 ip ('' for
/// none), 6 recent addresses kept, 7 outbox bound. A use: the last use
/// moves on, and a new address is remembered with `token.used`.
const TOUCH: &str = r#"
local key = P .. 'tk:' .. ARGV[4]
local f = redis.call('HMGET', key, 'user', 'pid', 'name', 'expires', 'used', 'ips')
local now = tonumber(ARGV[3])
if not f[1] or tonumber(f[4]) <= now then return 0 end
if f[5] == '' or now > tonumber(f[5]) then redis.call('HSET', key, 'used', ARGV[3]) end
if ARGV[5] ~= '' then
  local ips = cjson.decode(f[6])
  for _, ip in ipairs(ips) do if ip == ARGV[5] then return 1 end end
  if full(KEYS[1], ARGV[7]) then return 1 end
  if #ips >= tonumber(ARGV[6]) then table.remove(ips, 1) end
  ips[#ips + 1] = ARGV[5]
  redis.call('HSET', key, 'ips', cjson.encode(ips))
  redis.call('XADD', KEYS[1], '*', 'e', event('token.used', f[1], f[2], f[3], ARGV[5]))
end
return 1
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 user, 4 the public id (''
/// for all), 5 reason, 6 actor ('' for none), 7 ip ('' for none), 8
/// outbox bound. Answers the revoked public ids.
const REVOKE: &str = r#"
if full(KEYS[1], ARGV[8]) then return redis.error_reply('FULL the outbox is full') end
local extra = {{'reason', ARGV[5]}}
if ARGV[6] ~= '' then extra[2] = {'actor', ARGV[6]} end
local out = {}
for _, h in ipairs(redis.call('ZRANGE', P .. 'tku:' .. ARGV[3], 0, -1)) do
  local f = redis.call('HMGET', P .. 'tk:' .. h, 'pid', 'name')
  if f[1] and (ARGV[4] == '' or f[1] == ARGV[4]) then
    remove(h, ARGV[3], KEYS[1], event('token.revoked', ARGV[3], f[1], f[2], ARGV[7], extra))
    out[#out + 1] = f[1]
    if ARGV[4] ~= '' then break end
  end
end
return out
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 now, 4 limit, 5 outbox
/// bound. Answers {expired, more}.
const SWEEP: &str = r#"
if full(KEYS[1], ARGV[5]) then return redis.error_reply('FULL the outbox is full') end
local now = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', P .. 'tkd', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local n = 0
for _, h in ipairs(due) do
  local f = redis.call('HMGET', P .. 'tk:' .. h, 'user', 'pid', 'name')
  if not f[1] then
    redis.call('ZREM', P .. 'tkd', h)
  else
    remove(h, f[1], KEYS[1], event('token.expired', f[1], f[2], f[3], nil, {{'reason', 'expired'}}))
    n = n + 1
  end
end
return {n, redis.call('ZCOUNT', P .. 'tkd', '-inf', now) > 0 and 1 or 0}
"#;

/// This kind's scripts.
pub(super) fn scripts() -> super::RecordScripts {
    super::RecordScripts::new(PRELUDE, [CREATE, TOUCH, REVOKE, SWEEP])
}

/// Uses waiting to be sent at most; past it a use is refused (`Busy`) and
/// recorded at the next one.
const MAX_QUEUED_USES: usize = 4_096;

/// A token from its hash's fields; `None` when the key is gone.
fn token_of(f: &std::collections::HashMap<String, String>) -> Option<AccessTokenInfo> {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(AccessTokenInfo {
        id: f.get("pid")?.parse().ok()?,
        user: f.get("user")?.clone(),
        name: f.get("name")?.clone(),
        hint: f.get("hint")?.clone(),
        domains: serde_json::from_str(f.get("domains")?).ok()?,
        created_ms: num("created")?,
        expires_ms: num("expires")?,
        last_used_ms: num("used"),
        recent_ips: serde_json::from_str(f.get("ips")?).ok()?,
        two_factor: f.get("tf").is_some_and(|t| t == "1"),
    })
}

impl RedisState {
    /// Sends the queued uses, before the write that called it.
    pub(super) async fn send_uses(&self) {
        let (_turn, queued) = self.uses.take().await;
        let calls = queued
            .iter()
            .map(|(hash, now, ip)| {
                super::Call::new(vec![self.outbox_key.clone()])
                    .arg(self.key_prefix())
                    .arg((now * 1000).to_string())
                    .arg(*now)
                    .arg(hex(hash))
                    .arg(ip.map(|ip| ip.to_string()).unwrap_or_default())
                    .arg(TOKEN_RECENT_IPS)
                    .arg(self.outbox_max)
            })
            .collect();
        self.send_batch(&self.tokens.touch, calls, "token uses were not recorded")
            .await;
    }

    async fn revoke_tokens(
        &self,
        user: &str,
        id: Option<PublicId>,
        how: &Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        self.send_deferred().await;
        let mut conn = self.conn.clone();
        let pids: Vec<String> = self
            .tokens
            .revoke
            .key(&self.outbox_key)
            .arg(self.key_prefix())
            .arg((how.now_ms * 1000).to_string())
            .arg(user)
            .arg(id.map(|i| i.to_string()).unwrap_or_default())
            .arg(how.reason.as_str())
            .arg(how.actor.clone().unwrap_or_default())
            .arg(how.ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(self.outbox_max)
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        // This node's cache forgets them before the caller hears back.
        self.listener.cache.evict_user_tokens(user);
        Ok(pids.iter().filter_map(|p| p.parse().ok()).collect())
    }

    /// Removes up to `limit` expired tokens, each with `token.expired`:
    /// how many, and whether more are due.
    pub(super) async fn sweep_tokens(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(usize, bool), WriteError> {
        self.send_deferred().await;
        self.sweep_records(&self.tokens, now_ms, limit).await
    }
}

impl TokenStore for RedisState {
    async fn create_token(
        &self,
        new: NewAccessToken,
        session: Option<TokenHash>,
    ) -> Result<Result<CreatedAccessToken, TokenRefusal>, WriteError> {
        self.send_deferred().await;
        let now = new.now_ms;
        let token = AccessToken::generate();
        let mut info = AccessTokenInfo {
            id: PublicId::generate(),
            user: truncate(new.user, MAX_USER),
            name: truncate(new.name, MAX_TOKEN_NAME),
            hint: token.hint(),
            domains: new.domains.into_iter().take(MAX_TOKEN_DOMAINS).collect(),
            created_ms: now,
            expires_ms: new.expires_ms.max(now.saturating_add(1)),
            last_used_ms: None,
            recent_ips: Vec::new(),
            two_factor: false,
        };
        let second = Methods::of(&[Method::Totp, Method::WebAuthn, Method::Recovery]).bits();
        let mut conn = self.conn.clone();
        let answer: Vec<String> = self
            .tokens
            .create
            .key(&self.outbox_key)
            .arg(self.key_prefix())
            .arg((now * 1000).to_string())
            .arg(now)
            .arg(hex(&token.hash()))
            .arg(session.map(|s| hex(&s)).unwrap_or_default())
            .arg(new.max_per_user.max(1))
            .arg(self.outbox_max)
            .arg(&info.user)
            .arg(info.id.to_string())
            .arg(&info.name)
            .arg(&info.hint)
            .arg(serde_json::to_string(&info.domains).expect("JSON of strings"))
            .arg(info.expires_ms)
            .arg(if new.two_factor { "1" } else { "0" })
            .arg(second)
            .arg(
                info.expires_ms
                    .saturating_sub(now)
                    .saturating_add(GC_MARGIN_MS),
            )
            .arg(wire::encode(&info.created_event(new.ip)))
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok(match answer.first().map(String::as_str) {
            Some("OK") => {
                info.two_factor = answer.get(1).is_some_and(|t| t == "1");
                Ok(CreatedAccessToken { token, info })
            }
            Some("CAP") => Err(TokenRefusal::AtCap),
            _ => Err(TokenRefusal::SessionEnded),
        })
    }

    /// From Redis, then cached: a token's last use and recent addresses
    /// change at every use on any node and no use is published, so only
    /// the on-the-spot lookup answers from the cache (its use fields may
    /// lag another node's uses by up to `cache::MAX_AGE_MS`; who may pass
    /// does not).
    async fn token_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<AccessTokenInfo>, StoreError> {
        let tokens = &self.listener.cache.tokens;
        self.lookup("tk", (tokens, false), token_of, hash, now_ms)
            .await
    }

    /// From this node's cache ([`super::cache`]): `None` on a miss, and the
    /// caller awaits [`TokenStore::token_by_hash`].
    fn token_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<AccessTokenInfo>, StoreError>> {
        let caches = &self.listener.cache;
        caches
            .get(&caches.tokens, &hash, now_ms)
            .map(|t| Ok(Some(t)))
    }

    async fn tokens_of(&self, user: &str, now_ms: u64) -> Result<Vec<AccessTokenInfo>, StoreError> {
        self.live_of("tk", token_of, user, now_ms).await
    }

    async fn token_count(&self) -> Result<u64, StoreError> {
        self.count("tk").await
    }

    async fn revoke_token(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> Result<bool, WriteError> {
        Ok(!self.revoke_tokens(user, Some(id), &how).await?.is_empty())
    }

    async fn revoke_user_tokens(
        &self,
        user: &str,
        how: Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        self.revoke_tokens(user, None, &how).await
    }

    fn touch_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
        ip: Option<IpAddr>,
    ) -> Result<(), WriteError> {
        if !self.uses.push((hash, now_ms, ip), MAX_QUEUED_USES) {
            return Err(WriteError::Busy);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn(async move { me.send_uses().await });
        }
        Ok(())
    }
}
