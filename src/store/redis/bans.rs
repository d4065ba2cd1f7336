//! Bans in Redis, shared by every node, each change with its audit event
//! in the outbox in the same script: a ban and its `ban.added` are stored
//! together or not at all, as on redb.
//!
//! Keys (under the prefix): `ban:<subject>`, a hash of `created_ms`,
//! `until_ms` and `reason`; `bans`, the subjects scored by `until_ms`, for
//! the list and the sweep. A ban's key expires a day after the ban ends,
//! (ten years at most), as garbage collection only: a ban ends by the
//! sweep, which records `ban.lifted`.

use super::{GC_MARGIN_MS, RedisState, redis_error, write_error};
use crate::domain::{Ban, BanSubject, NewBan, ban_lifted_event};
use crate::store::contract::BanStore;
use crate::store::error::{StoreError, WriteError};
use crate::store::outbox::wire;

/// The longest a ban's key lives, whatever the ban's end: ten years.
pub(super) const MAX_KEY_LIFE_MS: u64 = 10 * 365 * 86_400_000;

/// KEYS: the ban, the index, the outbox. ARGV: created, until, reason,
/// subject key, event, outbox bound, life of the key (ms, from now on
/// Redis's clock, so that no node's clock can make it vanish early).
const ADD: &str = r"
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[6]) then
  return redis.error_reply('FULL the outbox is full')
end
redis.call('HSET', KEYS[1], 'created_ms', ARGV[1], 'until_ms', ARGV[2], 'reason', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[5])
return 1
";

/// KEYS: the ban, the index, the outbox. ARGV: subject key, event, outbox
/// bound, and `now` when only a ban that ran out by then is to go (the
/// sweep; empty for an operator's lift). 1 when lifted.
const LIFT: &str = r"
local ends = redis.call('HGET', KEYS[1], 'until_ms')
if not ends then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[4] ~= '' and tonumber(ends) > tonumber(ARGV[4]) then
  return 0
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[3]) then
  return redis.error_reply('FULL the outbox is full')
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
return 1
";

#[derive(Clone)]
pub(super) struct Scripts {
    add: redis::Script,
    lift: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            add: redis::Script::new(ADD),
            lift: redis::Script::new(LIFT),
        }
    }
}

impl RedisState {
    fn ban_key(&self, subject: &BanSubject) -> String {
        self.key("ban", &subject.key())
    }

    /// Lifts the ban on `subject` with `event`; with `ran_out_by`, only if
    /// it ran out by then.
    async fn lift(
        &self,
        subject: &BanSubject,
        event: &crate::domain::NewEvent,
        ran_out_by: Option<u64>,
    ) -> Result<bool, WriteError> {
        self.send_deferred().await;
        let mut conn = self.conn.clone();
        let lifted: i64 = self
            .bans
            .lift
            .key(self.ban_key(subject))
            .key(self.key("bans", "all"))
            .key(&self.outbox_key)
            .arg(subject.key())
            .arg(wire::encode(event))
            .arg(self.outbox_max)
            .arg(ran_out_by.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok(lifted == 1)
    }

    /// Lifts up to `limit` bans that ran out by `now_ms`, each recorded as
    /// `ban.lifted` with the reason `expired`; how many.
    pub async fn sweep_bans(&self, now_ms: u64, limit: usize) -> Result<usize, WriteError> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("bans", "all"))
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| WriteError::Failed(std::sync::Arc::new(redis_error(e))))?;
        let mut lifted = 0;
        for key in due {
            let Some(subject) = BanSubject::from_key(&key) else {
                continue;
            };
            let event = ban_lifted_event(&subject, "expired", None, now_ms);
            // Another node's sweep, or an extension, may come first.
            if self.lift(&subject, &event, Some(now_ms)).await? {
                lifted += 1;
            }
        }
        Ok(lifted)
    }
}

impl BanStore for RedisState {
    async fn ban(&self, subject: &BanSubject, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.ban_key(subject))
            .arg("created_ms")
            .arg("until_ms")
            .arg("reason")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let [Some(created), Some(until), Some(reason)] =
            <[Option<String>; 3]>::try_from(fields).unwrap_or([None, None, None])
        else {
            return Ok(None);
        };
        let (Ok(created_ms), Ok(until_ms)) = (created.parse(), until.parse::<u64>()) else {
            return Err(StoreError::Corrupt {
                table: "bans",
                reason: format!("the ban on {subject} has unreadable times"),
            });
        };
        Ok((until_ms > now_ms).then(|| Ban {
            subject: subject.clone(),
            created_ms,
            until_ms,
            reason,
        }))
    }

    async fn bans(&self, now_ms: u64) -> Result<Vec<Ban>, StoreError> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("bans", "all"))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        // In the order of their subjects, as redb lists them.
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(subject) = BanSubject::from_key(&key)
                && let Some(b) = self.ban(&subject, now_ms).await?
            {
                out.push(b);
            }
        }
        Ok(out)
    }

    async fn add_ban(&self, ban: NewBan) -> Result<(), WriteError> {
        self.send_deferred().await;
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bans
            .add
            .key(self.ban_key(&ban.subject))
            .key(self.key("bans", "all"))
            .key(&self.outbox_key)
            .arg(ban.now_ms)
            .arg(ban.until_ms)
            .arg(ban.stored_reason())
            .arg(ban.subject.key())
            .arg(wire::encode(&ban.event()))
            .arg(self.outbox_max)
            .arg(
                ban.until_ms
                    .saturating_sub(ban.now_ms)
                    .saturating_add(GC_MARGIN_MS)
                    .min(MAX_KEY_LIFE_MS),
            )
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn lift_ban(
        &self,
        subject: &BanSubject,
        reason: &str,
        actor: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, WriteError> {
        let event = ban_lifted_event(subject, reason, actor, now_ms);
        self.lift(subject, &event, None).await
    }
}
