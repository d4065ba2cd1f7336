//! Pending sign-ins in Redis, shared by every node: a sign-in whose
//! password passed and whose second step has not. Found only by its own
//! token; no session lookup reads these keys.
//!
//! Keys (under the prefix):
//! - `pd:<token hash>`: a hash per pending sign-in: `user`, `enroll`,
//!   `rem`, `created`, `expires`, `ip`, `ua`. It expires a day after its
//!   deadline, as garbage collection only: the sweep removes it;
//! - `pdu:<user>`: the user's pending sign-ins, scored by creation (ties
//!   in hash order, as redb orders them), for the cap;
//! - `pdd`: every pending sign-in, scored by its deadline, for the sweep.
//!
//! Each script changes the three together: `CREATE` stores one and, past
//! the user's cap, removes the oldest (ended ones not yet swept count,
//! as on redb); `END` removes one and answers it; `COMPLETE` removes one
//! and, when it was live and of the signing-in user, makes the session as
//! a sign-in does (`create_session` of the sessions' prelude: the cap, the
//! credential check, the events), so a pending sign-in becomes a session
//! at most once; `SWEEP` removes those past their deadline. No event
//! records a pending sign-in: redb records none either.

use std::collections::HashMap;
use std::net::IpAddr;

use super::GC_MARGIN_MS;
use super::sessions::made;
use super::{RedisState, hex, write_error};
use crate::domain::{
    CreatedSession, MAX_USER, MAX_USER_AGENT, NewEvent, NewSession, PendingSignIn, SessionToken,
    TokenHash, truncate,
};
use crate::store::credentials::CredentialCheck;
use crate::store::error::{StoreError, WriteError};

/// ARGV after the base's: 3 hash, 4 user, 5 enroll, 6 rem, 7 created,
/// 8 expires, 9 ip, 10 ua, 11 key life, 12 cap. Index entries whose
/// key is gone are dropped on the way.
const CREATE: &str = r#"
local h, user = ARGV[3], ARGV[4]
local key = P .. 'pd:' .. h
redis.call('HSET', key, 'user', user, 'enroll', ARGV[5], 'rem', ARGV[6], 'created', ARGV[7],
  'expires', ARGV[8], 'ip', ARGV[9], 'ua', ARGV[10])
redis.call('PEXPIRE', key, ARGV[11])
redis.call('ZADD', P .. 'pdu:' .. user, ARGV[7], h)
redis.call('ZADD', P .. 'pdd', ARGV[8], h)
local held = {}
for _, m in ipairs(redis.call('ZRANGE', P .. 'pdu:' .. user, 0, -1)) do
  if redis.call('EXISTS', P .. 'pd:' .. m) == 1 then
    held[#held + 1] = m
  else
    drop_record('pd', m, user)
  end
end
for i = 1, #held - tonumber(ARGV[12]) do drop_record('pd', held[i], user) end
return 1
"#;

/// ARGV after the base's: 3 hash. Removes it; answers its fields (none
/// when it was gone).
const END: &str = r#"
local key = P .. 'pd:' .. ARGV[3]
local f = redis.call('HGETALL', key)
if #f > 0 then drop_record('pd', ARGV[3], redis.call('HGET', key, 'user')) end
return f
"#;

/// KEYS and ARGV 3..20: the session creation's (see the sessions'
/// prelude), then 21 the pending sign-in's hash. Answers {'NONE'} when it
/// was gone, ended or another user's (removed all the same: any attempt
/// takes it), {'CRED'} when the credentials changed (taken too, as on
/// redb), else the session's {'OK', evicted pids...}.
const COMPLETE: &str = r#"
if full(KEYS[1], ARGV[7]) then return redis.error_reply('FULL the outbox is full') end
local f = redis.call('HMGET', P .. 'pd:' .. ARGV[21], 'user', 'expires')
if not f[1] then return {'NONE'} end
drop_record('pd', ARGV[21], f[1])
if f[1] ~= ARGV[8] or tonumber(f[2]) <= tonumber(ARGV[3]) then return {'NONE'} end
if credentials_changed(KEYS[2]) then return {'CRED'} end
return create_session(KEYS[1])
"#;

/// ARGV after the base's: 3 now, 4 limit. Answers {removed, more}.
const SWEEP: &str = r#"
local now = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', P .. 'pdd', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local n = 0
for _, h in ipairs(due) do
  local user = redis.call('HGET', P .. 'pd:' .. h, 'user')
  if user then
    drop_record('pd', h, user)
    n = n + 1
  else
    redis.call('ZREM', P .. 'pdd', h)
  end
end
return {n, redis.call('ZCOUNT', P .. 'pdd', '-inf', now) > 0 and 1 or 0}
"#;

#[derive(Clone)]
pub(super) struct Scripts {
    create: redis::Script,
    end: redis::Script,
    complete: redis::Script,
    sweep: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        let base = super::LUA_BASE;
        let with = |body: &str| redis::Script::new(&format!("{base}{body}"));
        Scripts {
            create: with(CREATE),
            end: with(END),
            complete: redis::Script::new(&format!("{base}{}{COMPLETE}", super::sessions::PRELUDE)),
            sweep: with(SWEEP),
        }
    }
}

/// A pending sign-in from its hash's fields; `None` when the key is gone.
fn pending_of(f: &HashMap<String, String>) -> Option<PendingSignIn> {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let text = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
    Some(PendingSignIn {
        user: f.get("user")?.clone(),
        enroll: f.get("enroll").is_some_and(|e| e == "1"),
        remember_me: f.get("rem").is_some_and(|r| r == "1"),
        created_ms: num("created")?,
        expires_ms: num("expires")?,
        ip: text("ip").and_then(|ip| ip.parse::<IpAddr>().ok()),
        user_agent: text("ua"),
    })
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

impl RedisState {
    /// Stores `p` under a fresh token and keeps its user's newest
    /// `max_per_user`.
    pub(super) async fn put_pending(
        &self,
        p: PendingSignIn,
        max_per_user: usize,
    ) -> Result<SessionToken, WriteError> {
        let token = SessionToken::generate();
        let user = truncate(p.user, MAX_USER);
        let life = p
            .expires_ms
            .saturating_sub(p.created_ms)
            .saturating_add(GC_MARGIN_MS);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .pending
            .create
            .arg(self.key_prefix())
            .arg("")
            .arg(hex(&token.hash()))
            .arg(&user)
            .arg(flag(p.enroll))
            .arg(flag(p.remember_me))
            .arg(p.created_ms)
            .arg(p.expires_ms)
            .arg(p.ip.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(
                p.user_agent
                    .map(|u| truncate(u, MAX_USER_AGENT))
                    .unwrap_or_default(),
            )
            .arg(life)
            .arg(max_per_user.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok(token)
    }

    /// The pending sign-in `hash`, if live at `now_ms`.
    pub(super) async fn live_pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let found = pending_of(&self.fields("pd", &hex(&hash)).await?);
        Ok(found.filter(|p| p.expires_ms > now_ms))
    }

    /// Removes the pending sign-in `hash`; answers it if it was live.
    pub(super) async fn take_pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, WriteError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = self
            .pending
            .end
            .arg(self.key_prefix())
            .arg("")
            .arg(hex(&hash))
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok(pending_of(&fields).filter(|p| p.expires_ms > now_ms))
    }

    /// Takes the pending sign-in `hash` and, when it was live and
    /// `new.user`'s, makes its session with `login`, in one script.
    pub(super) async fn complete_pending(
        &self,
        hash: TokenHash,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Result<Option<CreatedSession>, WriteError> {
        let mut making = self.making(&self.pending.complete, new, login, check);
        making.invocation.arg(hex(&hash));
        let mut conn = self.conn.clone();
        let answer: Vec<String> = making
            .invocation
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        made(answer, making.token, making.session)
    }

    /// Removes up to `limit` pending sign-ins past their deadline: how
    /// many, and whether more are due.
    pub(super) async fn sweep_pending(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(usize, bool), WriteError> {
        let mut conn = self.conn.clone();
        let (n, more): (usize, i64) = self
            .pending
            .sweep
            .arg(self.key_prefix())
            .arg("")
            .arg(now_ms)
            .arg(limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok((n, more == 1))
    }
}
