//! Step-up in Redis: a live session that passed a second factor moves to
//! a new token in one script. Its record (`s:<hash>`, see
//! [`super::sessions`]) is copied to the new hash with the method added,
//! the second factor's time set and the last use moved on; it keeps its
//! public id and creation time, so its place in `su:<user>`; the old hash
//! goes from the record, the user's set and `sd`, and is published on
//! `<prefix>:inv` as every removal is, so no node's cache serves the old
//! token after; the step-up's event is added to the outbox. A session
//! that ended, or whose hash names another public id than the one the
//! event was built for, is not moved.

use std::collections::HashMap;

use super::GC_MARGIN_MS;
use super::sessions::session_of;
use super::{RedisState, hex, write_error};
use crate::domain::{CreatedSession, Method, Methods, NewEvent, SessionToken, TokenHash};
use crate::store::error::WriteError;
use crate::store::outbox::wire;

/// KEYS: outbox. ARGV after the base's: 3 now, 4 old hash, 5 new hash,
/// 6 public id, 7 the method's bit, 8 the event, 9 outbox bound, 10 GC
/// margin. Answers the moved session's fields (none when not moved).
const STEP_UP: &str = r#"
local old = P .. 's:' .. ARGV[4]
local f = redis.call('HMGET', old, 'user', 'pid', 'seen', 'idle', 'abs', 'methods', 'created')
if not f[1] or f[2] ~= ARGV[6] then return {} end
local now = tonumber(ARGV[3])
if deadline(f[3], f[4], f[5]) <= now then return {} end
if full(KEYS[1], ARGV[9]) then return redis.error_reply('FULL the outbox is full') end
local fields = redis.call('HGETALL', old)
redis.call('PUBLISH', P .. 'inv', ARGV[4])
drop_record('s', ARGV[4], f[1])
local seen = f[3]
if now > tonumber(seen) then seen = ARGV[3] end
local key = P .. 's:' .. ARGV[5]
redis.call('HSET', key, unpack(fields))
local methods = bit.bor(tonumber(f[6]) or 0, tonumber(ARGV[7]))
redis.call('HSET', key, 'seen', seen, 'sf', ARGV[3], 'methods', tostring(methods))
local d = deadline(seen, f[4], f[5])
redis.call('PEXPIRE', key, d - now + tonumber(ARGV[10]))
redis.call('ZADD', P .. 'su:' .. f[1], f[7], ARGV[5])
redis.call('ZADD', P .. 'sd', d, ARGV[5])
redis.call('XADD', KEYS[1], '*', 'e', ARGV[8])
return redis.call('HGETALL', key)
"#;

/// The step-up's script: the base, the sessions' helpers, its body.
pub(super) fn script() -> redis::Script {
    redis::Script::new(&format!(
        "{}{}{STEP_UP}",
        super::LUA_BASE,
        super::sessions::PRELUDE
    ))
}

impl RedisState {
    /// Moves the live session `hash` to a new token that passed `method`
    /// at `now_ms`, with `event`; `None` when there is no such session.
    pub(super) async fn step_up_session(
        &self,
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    ) -> Result<Option<CreatedSession>, WriteError> {
        let failed = |e| WriteError::Failed(std::sync::Arc::new(e));
        let old = hex(&hash);
        // A hash names one public id for ever: the event is built for it
        // here, and the script moves the session only if it still is.
        let Some(before) = session_of(&self.fields("s", &old).await.map_err(failed)?) else {
            return Ok(None);
        };
        if before.deadline_ms() <= now_ms {
            return Ok(None);
        }
        let token = SessionToken::generate();
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = self
            .step_up
            .key(&self.outbox_key)
            .arg(self.key_prefix())
            .arg((now_ms * 1000).to_string())
            .arg(now_ms)
            .arg(&old)
            .arg(hex(&token.hash()))
            .arg(before.id.to_string())
            .arg(Methods::of(&[method]).bits())
            .arg(wire::encode(&event.session(before.id)))
            .arg(self.outbox_max)
            .arg(GC_MARGIN_MS)
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        // This node's cache forgets the old token before the caller hears
        // back; the others, from the script's publication.
        self.listener.cache.evict(&hash);
        Ok(session_of(&fields).map(|session| CreatedSession {
            token,
            session,
            evicted: Vec::new(),
        }))
    }
}
