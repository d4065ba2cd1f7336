//! Sessions in Redis, shared by every node. Each change is one script that
//! also adds the change's audit events to the outbox, as redb writes them
//! in the same commit; the events a script builds itself (a session that
//! expired or was evicted, revoked, swept) have redb's kinds, users,
//! sessions and details, which a test checks event by event.
//!
//! Keys (under the prefix):
//! - `s:<token hash>`: a hash per session: `user`, `pid` (public id),
//!   `created`, `seen`, `idle` (the idle lifetime; empty for remember-me),
//!   `abs`, `rem`, `ip`, `ua`, `methods`, `sf`. It expires a day after its
//!   deadline, as garbage collection only: a session ends by the sweep,
//!   which records `session.expired`;
//! - `su:<user>`: the user's sessions, scored by creation (the cap and the
//!   list), and `sd`: every session scored by its deadline (the sweep);
//! - `cred:<user>`: the fingerprint of the user's current credentials, set
//!   by a reload before it ends sessions (`-` for a removed user).
//!
//! The creation of a session is one Lua function of the sessions' prelude,
//! shared by a sign-in's script and the completion of a pending sign-in
//! ([`super::pending`]), with its arguments laid out the same in both
//! ([`RedisState::making`]); the step-up ([`super::step_up`]) moves a
//! session between hashes.
//!
//! Touches are fire and forget: queued, sent by a task of their own, and
//! in any case before the handle's next write (the contract's ordering).

use std::net::IpAddr;

use super::{GC_MARGIN_MS, RedisState, hex, redis_error, write_error};
use crate::domain::{
    CreatedSession, MAX_USER, MAX_USER_AGENT, Methods, NewEvent, NewSession, PublicId, Revocation,
    RevokeReason, Session, SessionToken, TokenHash, truncate,
};
use crate::store::contract::SessionStore;
use crate::store::credentials::CredentialCheck;
use crate::store::error::{StoreError, WriteError};
use crate::store::outbox::wire;
use crate::store::reports::SweepReport;

/// The sessions' own helpers (see `LUA_BASE`): a session's deadline from
/// its fields, its event, its removal; and the creation of a session,
/// shared by every script that makes one (a sign-in, a completed pending
/// sign-in), with the arguments laid out the same in each.
///
/// The creation reads ARGV after the base's: 3 now, 4 cap, 5 hash, 6 check
/// ('' for none), 7 outbox bound, 8 user, 9 pid, 10 idle, 11 abs, 12 rem,
/// 13 ip, 14 ua, 15 methods, 16 sf, 17 deadline, 18 key life, 19
/// `session.created`, 20 the login event. `credentials_changed(key)`: the
/// check is given and the user's current credentials (at `key`) are
/// others. `create_session(outbox)` removes the user's ended sessions,
/// then the oldest past the cap (each with its event), stores the session
/// with its two events, and answers {'OK', evicted pids...}; the caller
/// has checked the outbox's room.
pub(super) const PRELUDE: &str = r#"
local function deadline(seen, idle, abs)
  abs = tonumber(abs)
  if idle ~= '' then return math.min(tonumber(seen) + tonumber(idle), abs) end
  return abs
end
local function event(kind, user, pid, ip, details)
  return json_event(kind, user, pid, ip, details)
end
local function remove(h, user, outbox, ev)
  remove_record('s', h, user, outbox, ev)
end
local function credentials_changed(key)
  if ARGV[6] == '' then return false end
  local current = redis.call('GET', key)
  return current and current ~= ARGV[6]
end
local function create_session(outbox)
  local now, cap, user = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[8]
  local live = {}
  for _, h in ipairs(redis.call('ZRANGE', P .. 'su:' .. user, 0, -1)) do
    local f = redis.call('HMGET', P .. 's:' .. h, 'pid', 'seen', 'idle', 'abs')
    if not f[1] then
      redis.call('ZREM', P .. 'su:' .. user, h)
      redis.call('ZREM', P .. 'sd', h)
    elseif deadline(f[2], f[3], f[4]) <= now then
      remove(h, user, outbox, event('session.expired', user, f[1]))
    else
      live[#live + 1] = {h, f[1]}
    end
  end
  local out, remaining = {'OK'}, #live
  for _, e in ipairs(live) do
    if remaining < cap then break end
    remove(e[1], user, outbox, event('session.evicted', user, e[2], nil,
      {{'reason', 'session cap'}, {'cap', ARGV[4]}}))
    out[#out + 1] = e[2]
    remaining = remaining - 1
  end
  local key = P .. 's:' .. ARGV[5]
  redis.call('HSET', key, 'user', user, 'pid', ARGV[9], 'created', ARGV[3], 'seen', ARGV[3],
    'idle', ARGV[10], 'abs', ARGV[11], 'rem', ARGV[12], 'ip', ARGV[13], 'ua', ARGV[14],
    'methods', ARGV[15], 'sf', ARGV[16])
  redis.call('PEXPIRE', key, ARGV[18])
  redis.call('ZADD', P .. 'su:' .. user, ARGV[3], ARGV[5])
  redis.call('ZADD', P .. 'sd', ARGV[17], ARGV[5])
  redis.call('XADD', outbox, '*', 'e', ARGV[19])
  redis.call('XADD', outbox, '*', 'e', ARGV[20])
  return out
end
"#;

/// KEYS: outbox, credentials. ARGV: the creation's (see `PRELUDE`).
/// Answers {'CRED'} when the credentials changed, else {'OK', evicted
/// pids...}.
const CREATE: &str = r#"
if credentials_changed(KEYS[2]) then return {'CRED'} end
if full(KEYS[1], ARGV[7]) then return redis.error_reply('FULL the outbox is full') end
return create_session(KEYS[1])
"#;

/// ARGV after the prelude's: 3 now, 4 hash, 5 GC margin. Slides the
/// session's idle deadline; nothing for a gone or ended session.
const TOUCH: &str = r#"
local key = P .. 's:' .. ARGV[4]
local f = redis.call('HMGET', key, 'seen', 'idle', 'abs')
if not f[1] then return 0 end
local now = tonumber(ARGV[3])
if deadline(f[1], f[2], f[3]) <= now or now <= tonumber(f[1]) then return 0 end
local d = deadline(ARGV[3], f[2], f[3])
redis.call('HSET', key, 'seen', ARGV[3])
redis.call('ZADD', P .. 'sd', d, ARGV[4])
redis.call('PEXPIRE', key, d - now + tonumber(ARGV[5]))
return 1
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 mode ('hash', 'id' or
/// 'user'), 4 the hash, the public id, or the user, 5 the public id to
/// keep ('' for none), 6 event kind, 7 reason, 8 actor ('' for none), 9 ip
/// ('' for none), 10 outbox bound. Revokes, each with its event; answers
/// the revoked public ids.
const REVOKE: &str = r#"
if full(KEYS[1], ARGV[10]) then return redis.error_reply('FULL the outbox is full') end
local details = {{'reason', ARGV[7]}}
if ARGV[8] ~= '' then details[2] = {'actor', ARGV[8]} end
local function revoke(h)
  local f = redis.call('HMGET', P .. 's:' .. h, 'user', 'pid')
  if not f[1] then return nil end
  remove(h, f[1], KEYS[1], event(ARGV[6], f[1], f[2], ARGV[9], details))
  return f[2]
end
local out = {}
if ARGV[3] == 'hash' then
  out[1] = revoke(ARGV[4])
else
  local user = ARGV[3] == 'id' and ARGV[11] or ARGV[4]
  for _, h in ipairs(redis.call('ZRANGE', P .. 'su:' .. user, 0, -1)) do
    local pid = redis.call('HGET', P .. 's:' .. h, 'pid')
    if ARGV[3] == 'id' and pid == ARGV[4] then
      out[1] = revoke(h)
      break
    elseif ARGV[3] == 'user' and pid and pid ~= ARGV[5] then
      out[#out + 1] = revoke(h)
    end
  end
end
return out
"#;

/// KEYS: outbox. ARGV after the prelude's: 3 now, 4 limit, 5 outbox
/// bound. Ends up to `limit` sessions past their deadline, each with
/// `session.expired` and why; answers {ended, more}.
const SWEEP: &str = r#"
if full(KEYS[1], ARGV[5]) then return redis.error_reply('FULL the outbox is full') end
local now = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', P .. 'sd', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local ended = 0
for _, h in ipairs(due) do
  local f = redis.call('HMGET', P .. 's:' .. h, 'user', 'pid', 'seen', 'idle', 'abs')
  if not f[1] then
    redis.call('ZREM', P .. 'sd', h)
  else
    local why = 'absolute'
    if f[4] ~= '' and tonumber(f[3]) + tonumber(f[4]) <= tonumber(f[5]) then why = 'idle' end
    remove(h, f[1], KEYS[1], event('session.expired', f[1], f[2], nil, {{'reason', why}}))
    ended = ended + 1
  end
end
local more = redis.call('ZCOUNT', P .. 'sd', '-inf', now) > 0 and 1 or 0
return {ended, more}
"#;

/// This kind's scripts.
pub(super) fn scripts() -> super::RecordScripts {
    super::RecordScripts::new(PRELUDE, [CREATE, TOUCH, REVOKE, SWEEP])
}

/// The bound on queued touches: past it a touch is refused (`Busy`), and
/// the deadline slides at the next one.
const MAX_QUEUED_TOUCHES: usize = 4_096;

fn opt(v: Option<String>) -> String {
    v.unwrap_or_default()
}

/// A session from its hash's fields; `None` when the key is gone.
pub(super) fn session_of(f: &std::collections::HashMap<String, String>) -> Option<Session> {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let text = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
    let idle = num("idle");
    let seen = num("seen")?;
    Some(Session {
        id: f.get("pid")?.parse().ok()?,
        user: f.get("user")?.clone(),
        created_ms: num("created")?,
        last_seen_ms: seen,
        idle_deadline_ms: idle.map(|i| seen + i),
        absolute_deadline_ms: num("abs")?,
        remember_me: f.get("rem").is_some_and(|r| r == "1"),
        ip: text("ip").and_then(|ip| ip.parse::<IpAddr>().ok()),
        user_agent: text("ua"),
        methods: Methods::from_bits(num("methods").unwrap_or(0) as u8),
        second_factor_ms: num("sf"),
    })
}

/// A session about to be made: its token, its record, and the
/// invocation of a script laid out as `CREATE` (see `PRELUDE`) that
/// stores it.
pub(super) struct Making<'s> {
    pub(super) token: SessionToken,
    pub(super) session: Session,
    pub(super) invocation: redis::ScriptInvocation<'s>,
}

/// A session-making script's answer: {'OK', evicted pids...} made,
/// {'CRED'} refused for changed credentials, {'NONE'} nothing to complete.
pub(super) fn made(
    answer: Vec<String>,
    token: SessionToken,
    session: Session,
) -> Result<Option<CreatedSession>, WriteError> {
    match answer.split_first() {
        Some((first, evicted)) if first == "OK" => Ok(Some(CreatedSession {
            token,
            session,
            evicted: evicted.iter().filter_map(|p| p.parse().ok()).collect(),
        })),
        Some((first, _)) if first == "CRED" => Err(WriteError::CredentialsChanged),
        Some((first, _)) if first == "NONE" => Ok(None),
        _ => Err(unexpected(&answer)),
    }
}

/// A script answered what none of its branches returns.
pub(super) fn unexpected(answer: &[String]) -> WriteError {
    WriteError::Failed(std::sync::Arc::new(StoreError::Storage(format!(
        "Redis answered {answer:?} to a session write"
    ))))
}

impl RedisState {
    /// The session `new` describes, and the invocation of `script` (laid
    /// out as `CREATE`) that stores it with `login`, checked by `check`.
    pub(super) fn making<'s>(
        &self,
        script: &'s redis::Script,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Making<'s> {
        let now = new.now_ms;
        let user = truncate(new.user, MAX_USER);
        let token = SessionToken::generate();
        let idle = (!new.remember_me).then_some(new.idle_ttl_ms);
        let session = Session {
            id: PublicId::generate(),
            user: user.clone(),
            created_ms: now,
            last_seen_ms: now,
            idle_deadline_ms: idle.map(|i| now + i),
            absolute_deadline_ms: now.saturating_add(new.absolute_ttl_ms),
            remember_me: new.remember_me,
            ip: new.ip,
            user_agent: new.user_agent.map(|u| truncate(u, MAX_USER_AGENT)),
            methods: new.methods,
            second_factor_ms: new.methods.two_factor().then_some(now),
        };
        let deadline = session.deadline_ms();
        let mut invocation = script.key(&self.outbox_key);
        invocation
            .key(self.key("cred", &user))
            .arg(self.key_prefix())
            .arg((now * 1000).to_string())
            .arg(now)
            .arg(new.max_per_user.max(1))
            .arg(hex(&token.hash()))
            .arg(check.map(|c| c.hex()).unwrap_or_default())
            .arg(self.outbox_max)
            .arg(&user)
            .arg(session.id.to_string())
            .arg(idle.map(|i| i.to_string()).unwrap_or_default())
            .arg(session.absolute_deadline_ms)
            .arg(if session.remember_me { "1" } else { "0" })
            .arg(session.ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(opt(session.user_agent.clone()))
            .arg(session.methods.bits())
            .arg(
                session
                    .second_factor_ms
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            )
            .arg(deadline)
            .arg(deadline.saturating_sub(now).saturating_add(GC_MARGIN_MS))
            .arg(wire::encode(&session.created_event()))
            .arg(wire::encode(&login.session(session.id)));
        Making {
            token,
            session,
            invocation,
        }
    }

    /// Sends the queued touches, before the write that called it.
    pub(super) async fn send_touches(&self) {
        let (_turn, queued) = self.touches.take().await;
        let calls = queued
            .iter()
            .map(|(hash, now)| {
                super::Call::new(Vec::new())
                    .arg(self.key_prefix())
                    .arg("")
                    .arg(*now)
                    .arg(hex(hash))
                    .arg(GC_MARGIN_MS)
            })
            .collect();
        self.send_batch(
            &self.sessions.touch,
            calls,
            "session touches lost; the next ones slide the deadlines",
        )
        .await;
    }

    async fn revoke(
        &self,
        mode: &str,
        what: &str,
        keep: Option<PublicId>,
        user: &str,
        how: &Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        self.send_deferred().await;
        let kind = if how.reason == RevokeReason::Logout {
            "logout"
        } else {
            "session.revoked"
        };
        let mut conn = self.conn.clone();
        let pids: Vec<String> = self
            .sessions
            .revoke
            .key(&self.outbox_key)
            .arg(self.key_prefix())
            .arg((how.now_ms * 1000).to_string())
            .arg(mode)
            .arg(what)
            .arg(keep.map(|k| k.to_string()).unwrap_or_default())
            .arg(kind)
            .arg(how.reason.as_str())
            .arg(opt(how.actor.clone()))
            .arg(how.ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(self.outbox_max)
            .arg(user)
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        // This node's cache forgets them before the caller hears back.
        let cache = &self.listener.cache;
        match mode {
            "hash" => {
                if let Some(hash) = super::cache::parse_hex(what.as_bytes()) {
                    cache.evict(&hash);
                }
            }
            _ => cache.evict_user_sessions(user),
        }
        Ok(pids.iter().filter_map(|p| p.parse().ok()).collect())
    }
}

impl SessionStore for RedisState {
    async fn create_session(
        &self,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Result<CreatedSession, WriteError> {
        self.send_deferred().await;
        let making = self.making(&self.sessions.create, new, login, check);
        let mut conn = self.conn.clone();
        let answer = making
            .invocation
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        made(answer, making.token, making.session)?.ok_or_else(|| unexpected(&[]))
    }

    async fn session_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        let sessions = &self.listener.cache.sessions;
        self.lookup("s", (sessions, true), session_of, hash, now_ms)
            .await
    }

    /// From this node's cache ([`super::cache`]): `None` on a miss, and the
    /// caller awaits [`SessionStore::session_by_hash`].
    fn session_by_hash_now(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Option<Result<Option<Session>, StoreError>> {
        let caches = &self.listener.cache;
        caches
            .get(&caches.sessions, &hash, now_ms)
            .map(|s| Ok(Some(s)))
    }

    async fn sessions_of(&self, user: &str, now_ms: u64) -> Result<Vec<Session>, StoreError> {
        self.live_of("s", session_of, user, now_ms).await
    }

    async fn all_sessions(&self, now_ms: u64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let mut conn = self.conn.clone();
        let hashes: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{}:sd", self.prefix))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let records = self.records("s", &hashes).await?;
        let mut all: Vec<(String, Session)> = hashes
            .into_iter()
            .zip(records)
            .filter_map(|(h, f)| Some((h, session_of(&f)?)))
            .collect();
        // By user, then newest first (as redb lists them).
        all.sort_by(|(ha, a), (hb, b)| {
            a.user
                .cmp(&b.user)
                .then(b.created_ms.cmp(&a.created_ms))
                .then(hb.cmp(ha))
        });
        Ok(all.into_iter().take(limit).map(|(_, s)| s).collect())
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        self.count("s").await
    }

    async fn revoke_by_token(
        &self,
        hash: TokenHash,
        how: Revocation,
    ) -> Result<Option<PublicId>, WriteError> {
        Ok(self
            .revoke("hash", &hex(&hash), None, "", &how)
            .await?
            .into_iter()
            .next())
    }

    async fn revoke_session(
        &self,
        user: &str,
        id: PublicId,
        how: Revocation,
    ) -> Result<bool, WriteError> {
        Ok(!self
            .revoke("id", &id.to_string(), None, user, &how)
            .await?
            .is_empty())
    }

    async fn revoke_user(
        &self,
        user: &str,
        keep: Option<PublicId>,
        how: Revocation,
    ) -> Result<Vec<PublicId>, WriteError> {
        self.revoke("user", user, keep, user, &how).await
    }

    fn touch(&self, hash: TokenHash, now_ms: u64) -> Result<(), WriteError> {
        if !self.touches.push((hash, now_ms), MAX_QUEUED_TOUCHES) {
            return Err(WriteError::Busy);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = self.clone();
            rt.spawn(async move { me.send_touches().await });
        }
        Ok(())
    }

    async fn set_credentials(
        &self,
        changes: Vec<(String, Option<CredentialCheck>)>,
    ) -> Result<(), WriteError> {
        self.send_deferred().await;
        let mut pipe = redis::pipe();
        for (user, check) in &changes {
            pipe.cmd("SET")
                .arg(self.key("cred", user))
                .arg(check.map_or_else(|| "-".to_string(), |c| c.hex()))
                .ignore();
        }
        let mut conn = self.conn.clone();
        let failed = |e| WriteError::Failed(std::sync::Arc::new(redis_error(e)));
        pipe.query_async::<()>(&mut conn).await.map_err(failed)?;
        conn.confirm().await.map_err(failed)
    }

    async fn sweep(&self, now_ms: u64, limit: usize) -> Result<SweepReport, WriteError> {
        self.send_deferred().await;
        let (expired, more) = self.sweep_records(&self.sessions, now_ms, limit).await?;
        let bans_lifted = self.sweep_bans(now_ms, limit).await?;
        let (tokens_expired, tokens_more) = self.sweep_tokens(now_ms, limit).await?;
        let (pending, pending_more) = self.sweep_pending(now_ms, limit).await?;
        Ok(SweepReport {
            expired,
            bans_lifted,
            pending,
            tokens_expired,
            more: more || tokens_more || pending_more,
            ..SweepReport::default()
        })
    }
}
