//! The live state of a redb file written into an empty deployment
//! (`gatehouse migrate --to-distributed`): each record in the layout its
//! own module documents (`sessions`, `tokens`, `factors`, `bans`), with its
//! indexes, in one `MULTI` per record, and no audit event (the events
//! that made them move with the chain itself).
//!
//! Invariant: only into a deployment with no live state
//! ([`RedisState::live_state_is_empty`]), so nothing is overwritten or
//! merged; a round-trip test reads every record back through the store's
//! own reads, so a layout change here that the reads do not share fails.

use super::bans::MAX_KEY_LIFE_MS;
use super::{GC_MARGIN_MS, RedisState, hex, redis_error};
use crate::domain::{AccessTokenInfo, Ban, FactorSet, Session, TokenHash};
use crate::store::error::StoreError;

/// What an import wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub sessions: usize,
    pub tokens: usize,
    pub factor_sets: usize,
    pub bans: usize,
}

impl RedisState {
    /// Whether the deployment holds no session, token, factor set, ban or
    /// pending sign-in, and its outbox is empty.
    pub async fn live_state_is_empty(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (s, t, b, p, o, fv): (u64, u64, u64, u64, u64, Option<u64>) = redis::pipe()
            .cmd("ZCARD")
            .arg(format!("{}:sd", self.prefix))
            .cmd("ZCARD")
            .arg(format!("{}:tkd", self.prefix))
            .cmd("ZCARD")
            .arg(self.key("bans", "all"))
            .cmd("ZCARD")
            .arg(format!("{}:pdd", self.prefix))
            .cmd("XLEN")
            .arg(&self.outbox_key)
            .cmd("GET")
            .arg(format!("{}:fv", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(s + t + b + p + o == 0 && fv.is_none())
    }

    /// Writes `sessions`, `tokens`, `factors` and `bans` as they are, at
    /// `now_ms` (for the keys' garbage-collection lives).
    pub async fn import(
        &self,
        sessions: &[(TokenHash, Session)],
        tokens: &[(TokenHash, AccessTokenInfo)],
        factors: &[(String, FactorSet)],
        bans: &[Ban],
        now_ms: u64,
    ) -> Result<Imported, StoreError> {
        let mut conn = self.conn.clone();
        for (hash, s) in sessions {
            let h = hex(hash);
            let key = self.key("s", &h);
            let idle = s
                .idle_deadline_ms
                .map(|d| d.saturating_sub(s.last_seen_ms).to_string())
                .unwrap_or_default();
            let deadline = s.deadline_ms();
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("user", s.user.clone()),
                        ("pid", s.id.to_string()),
                        ("created", s.created_ms.to_string()),
                        ("seen", s.last_seen_ms.to_string()),
                        ("idle", idle),
                        ("abs", s.absolute_deadline_ms.to_string()),
                        ("rem", if s.remember_me { "1" } else { "0" }.into()),
                        ("ip", s.ip.map(|ip| ip.to_string()).unwrap_or_default()),
                        ("ua", s.user_agent.clone().unwrap_or_default()),
                        ("methods", s.methods.bits().to_string()),
                        (
                            "sf",
                            s.second_factor_ms
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                        ),
                    ],
                )
                .pexpire(&key, life(deadline, now_ms))
                .zadd(self.key("su", &s.user), &h, s.created_ms)
                .zadd(format!("{}:sd", self.prefix), &h, deadline)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
        for (hash, t) in tokens {
            let h = hex(hash);
            let key = self.key("tk", &h);
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("user", t.user.clone()),
                        ("pid", t.id.to_string()),
                        ("name", t.name.clone()),
                        ("hint", t.hint.clone()),
                        ("domains", json(&t.domains)),
                        ("created", t.created_ms.to_string()),
                        ("expires", t.expires_ms.to_string()),
                        (
                            "used",
                            t.last_used_ms.map(|u| u.to_string()).unwrap_or_default(),
                        ),
                        ("ips", json(&t.recent_ips)),
                        ("tf", if t.two_factor { "1" } else { "0" }.into()),
                    ],
                )
                .pexpire(&key, life(t.expires_ms, now_ms))
                .zadd(self.key("tku", &t.user), &h, t.created_ms)
                .zadd(format!("{}:tkd", self.prefix), &h, t.expires_ms)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
        let mut factor_sets = 0;
        for (user, set) in factors.iter().filter(|(_, set)| !set.is_empty()) {
            let bytes = postcard::to_stdvec(set).map_err(|e| StoreError::Corrupt {
                table: "factors",
                reason: format!("the factors of {user:?} do not encode: {e}"),
            })?;
            let version: u64 = redis::cmd("INCR")
                .arg(format!("{}:fv", self.prefix))
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset(self.key("f", user), "set", bytes)
                .hset(self.key("f", user), "v", version)
                .incr(format!("{}:fn", self.prefix), 1);
            for p in &set.passkeys {
                pipe.set(
                    self.key("pk", &crate::store::chain::hex(&p.credential_id)),
                    user,
                );
            }
            let _: () = pipe.query_async(&mut conn).await.map_err(redis_error)?;
            factor_sets += 1;
        }
        for b in bans {
            let key = self.key("ban", &b.subject.key());
            let _: () = redis::pipe()
                .atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("created_ms", b.created_ms.to_string()),
                        ("until_ms", b.until_ms.to_string()),
                        ("reason", b.reason.clone()),
                    ],
                )
                .pexpire(&key, life(b.until_ms, now_ms).min(MAX_KEY_LIFE_MS as i64))
                .zadd(self.key("bans", "all"), b.subject.key(), b.until_ms)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
        Ok(Imported {
            sessions: sessions.len(),
            tokens: tokens.len(),
            factor_sets,
            bans: bans.len(),
        })
    }
}

/// A key's life: its record's end, then the sweep's margin.
fn life(end_ms: u64, now_ms: u64) -> i64 {
    end_ms.saturating_sub(now_ms).saturating_add(GC_MARGIN_MS) as i64
}

/// JSON of a token's lists, as the token scripts store them.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("JSON of plain lists")
}
