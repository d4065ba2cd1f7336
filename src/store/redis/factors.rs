//! Second factors in Redis, shared by every node: each user's
//! [`FactorSet`] and the index of passkeys by credential id. The pending
//! sign-ins ([`super::pending`]) and the step-up ([`super::step_up`]) are
//! the rest of [`FactorStore`], implemented here by calling them.
//!
//! Keys (under the prefix):
//! - `f:<user>`: a hash of `set`, the user's factors encoded as redb
//!   stores them (postcard; a TOTP secret is sealed inside the set and
//!   stays so), and `v`, its version. No key when nothing is enrolled.
//! - `fv`: the counter every change takes its new version from, so that
//!   a user's versions never repeat: a key removed and made again gets a
//!   version no reader saw before. Only an absent key reads as version
//!   `0`, and it always means the default set.
//! - `fn`: how many users have a set, moved by the change that makes or
//!   removes one (for checks; nothing scans the keys).
//! - `pk:<credential id, hex>`: the user holding that passkey; one user
//!   at most per credential id.
//!
//! A change is applied by [`FactorSet::apply`] in Rust to the set as read
//! with its version; a refusal writes nothing. Then `CHANGE`, in one
//! script, writes only if the version is still the one read (else the
//! change is read and applied again, at most [`MAX_TRIES`] times), refuses
//! a credential id another user holds, moves the passkey index, and adds
//! the change's event to the outbox. So of two nodes applying the same
//! TOTP step or recovery code at once, one writes and the other, reading
//! again, is refused.

use std::collections::HashSet;

use super::{RedisState, redis_error, write_error};
use crate::domain::{
    Applied, CreatedSession, FactorChange, FactorRefusal, FactorSet, Method, NewEvent, NewSession,
    PendingSignIn, SessionToken, TokenHash,
};
use crate::store::chain::hex;
use crate::store::contract::FactorStore;
use crate::store::credentials::CredentialCheck;
use crate::store::error::{StoreError, WriteError};
use crate::store::outbox::wire;

/// How many times a change is read and applied again after another
/// node's change came first; past it the change is refused as `Busy`.
pub(super) const MAX_TRIES: usize = 16;

/// KEYS: outbox, the user's factors. ARGV after the base's: 3 the version
/// read, 4 the new set ('' when nothing is left), 5 user, 6 outbox bound,
/// 7 the event ('' for none), 8 how many credential ids are added, then
/// the added ids and the removed ids (hex). Answers 'STALE' when the set
/// changed since it was read, 'TAKEN' when another user holds an added
/// credential id, else 'OK' with everything written, and the count of
/// users with factors (`fn`) moved when the user gains or loses their set.
const CHANGE: &str = r#"
if (redis.call('HGET', KEYS[2], 'v') or '0') ~= ARGV[3] then return 'STALE' end
local user, added = ARGV[5], tonumber(ARGV[8])
for i = 9, 8 + added do
  local owner = redis.call('GET', P .. 'pk:' .. ARGV[i])
  if owner and owner ~= user then return 'TAKEN' end
end
if ARGV[7] ~= '' and full(KEYS[1], ARGV[6]) then
  return redis.error_reply('FULL the outbox is full')
end
for i = 9 + added, #ARGV do
  if redis.call('GET', P .. 'pk:' .. ARGV[i]) == user then redis.call('DEL', P .. 'pk:' .. ARGV[i]) end
end
for i = 9, 8 + added do redis.call('SET', P .. 'pk:' .. ARGV[i], user) end
local had = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[4] == '' then
  redis.call('DEL', KEYS[2])
  if had then redis.call('DECR', P .. 'fn') end
else
  redis.call('HSET', KEYS[2], 'set', ARGV[4], 'v', redis.call('INCR', P .. 'fv'))
  if not had then redis.call('INCR', P .. 'fn') end
end
if ARGV[7] ~= '' then redis.call('XADD', KEYS[1], '*', 'e', ARGV[7]) end
return 'OK'
"#;

#[derive(Clone)]
pub(super) struct Scripts {
    change: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            change: redis::Script::new(&format!("{}{CHANGE}", super::LUA_BASE)),
        }
    }
}

/// A set as stored; a damaged one is `Corrupt`, never a panic.
pub(super) fn decode(bytes: &[u8]) -> Result<FactorSet, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "factors",
        reason: e.to_string(),
    })
}

fn encode(set: &FactorSet) -> Result<Vec<u8>, WriteError> {
    postcard::to_stdvec(set).map_err(|e| {
        WriteError::Failed(std::sync::Arc::new(StoreError::Storage(format!(
            "encoding factors: {e}"
        ))))
    })
}

/// The credential ids of a set's passkeys.
fn credential_ids(set: &FactorSet) -> HashSet<&[u8]> {
    set.passkeys
        .iter()
        .map(|p| p.credential_id.as_slice())
        .collect()
}

impl RedisState {
    /// `user`'s factors as stored, and their version (`0`: none stored).
    async fn factors_read(&self, user: &str) -> Result<(FactorSet, String), StoreError> {
        let mut conn = self.conn.clone();
        let (set, version): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key("f", user))
            .arg("set")
            .arg("v")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match (set, version) {
            (Some(set), Some(v)) => Ok((decode(&set)?, v)),
            (None, None) => Ok((FactorSet::default(), "0".into())),
            _ => Err(StoreError::Corrupt {
                table: "factors",
                reason: format!("the factors of {user:?} lack their set or their version"),
            }),
        }
    }

    /// One attempt at a change: `None` when another change came first.
    async fn try_change(
        &self,
        user: &str,
        change: &FactorChange,
        event: Option<&NewEvent>,
        now_ms: u64,
    ) -> Result<Option<Result<Applied, FactorRefusal>>, WriteError> {
        let failed = |e| WriteError::Failed(std::sync::Arc::new(e));
        let (before, version) = self.factors_read(user).await.map_err(failed)?;
        let mut after = before.clone();
        let applied = match after.apply(change.clone(), now_ms) {
            Ok(a) => a,
            Err(refusal) => return Ok(Some(Err(refusal))),
        };
        let (old, new) = (credential_ids(&before), credential_ids(&after));
        let added: Vec<String> = new.difference(&old).map(|id| hex(id)).collect();
        let removed: Vec<String> = old.difference(&new).map(|id| hex(id)).collect();
        let event = event.map(|ev| {
            let mut ev = ev.clone();
            if matches!(change, FactorChange::UseRecovery { .. }) {
                ev = ev.detail("remaining", applied.recovery_left.to_string());
            }
            wire::encode(&ev)
        });
        let set = if after.is_empty() {
            Vec::new()
        } else {
            encode(&after)?
        };
        let mut conn = self.conn.clone();
        let answer: String = self
            .factors
            .change
            .key(&self.outbox_key)
            .key(self.key("f", user))
            .arg(self.key_prefix())
            .arg("")
            .arg(&version)
            .arg(set)
            .arg(user)
            .arg(self.outbox_max)
            .arg(event.unwrap_or_default())
            .arg(added.len())
            .arg(&added)
            .arg(&removed)
            .invoke_async(&mut conn)
            .await
            .map_err(write_error)?;
        match answer.as_str() {
            "OK" => Ok(Some(Ok(applied))),
            "TAKEN" => Ok(Some(Err(FactorRefusal::PasskeyExists))),
            "STALE" => Ok(None),
            other => Err(failed(StoreError::Storage(format!(
                "Redis answered {other:?} to a change of factors"
            )))),
        }
    }
}

impl FactorStore for RedisState {
    async fn factors(&self, user: &str) -> Result<FactorSet, StoreError> {
        Ok(self.factors_read(user).await?.0)
    }

    async fn passkey_owner(&self, credential_id: &[u8]) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.key("pk", &hex(credential_id)))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    async fn change_factors(
        &self,
        user: &str,
        change: FactorChange,
        event: Option<NewEvent>,
        now_ms: u64,
    ) -> Result<Result<Applied, FactorRefusal>, WriteError> {
        self.send_deferred().await;
        for _ in 0..MAX_TRIES {
            if let Some(done) = self
                .try_change(user, &change, event.as_ref(), now_ms)
                .await?
            {
                return Ok(done);
            }
        }
        tracing::warn!(
            user,
            "factors changed by others at every try; refused as busy"
        );
        Err(WriteError::Busy)
    }

    async fn create_pending(
        &self,
        pending: PendingSignIn,
        max_per_user: usize,
    ) -> Result<SessionToken, WriteError> {
        self.send_deferred().await;
        self.put_pending(pending, max_per_user).await
    }

    async fn pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        self.live_pending(hash, now_ms).await
    }

    async fn end_pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, WriteError> {
        self.send_deferred().await;
        self.take_pending(hash, now_ms).await
    }

    async fn complete_sign_in(
        &self,
        hash: TokenHash,
        new: NewSession,
        login: NewEvent,
        check: Option<CredentialCheck>,
    ) -> Result<Option<CreatedSession>, WriteError> {
        self.send_deferred().await;
        self.complete_pending(hash, new, login, check).await
    }

    async fn step_up(
        &self,
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    ) -> Result<Option<CreatedSession>, WriteError> {
        self.send_deferred().await;
        self.step_up_session(hash, method, event, now_ms).await
    }
}
