//! Reads in the language of the domain: sessions (the forward-auth hot
//! path among them), audit pages, bans and whole-file facts, each in one
//! read snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::{ReadableTable, ReadableTableMetadata};

use super::codec::decode;
use super::records::{AccessTokenRecord, SessionRecord};
use super::tables::*;
use super::{Db, SessionsSnapshot, Store, bans, check, events, sessions, tokens};
use crate::domain::*;
use crate::store::error::{QueryError, StoreError};
use crate::store::reports::{CheckReport, StoreStats};

impl Store {
    // ------------------------------------------------------------ sessions

    /// The live session holding this token, if any. A session past either
    /// deadline is invalid here even before the sweeper removes it.
    pub fn session(
        &self,
        token: &SessionToken,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        self.session_by_hash(token.hash(), now_ms)
    }

    /// Like [`Store::session`], by token hash.
    pub fn session_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        let t = self.sessions_table()?;
        let Some(g) = t.get(hash.0)? else {
            return Ok(None);
        };
        let rec: SessionRecord = decode("sessions", g.value())?;
        if rec.deadline_ms() <= now_ms {
            return Ok(None);
        }
        Ok(Some(sessions::to_session(rec)))
    }

    /// The `sessions` table at the latest commit: the shared snapshot when it
    /// is current (see [`Inner::sessions_snapshot`]), else a fresh one.
    fn sessions_table(
        &self,
    ) -> Result<Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>, StoreError> {
        self.hot_table(false)
    }

    /// The `access_tokens` table at the latest commit, from the same shared
    /// snapshot as [`Store::sessions_table`].
    fn tokens_table(&self) -> Result<Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>, StoreError> {
        self.hot_table(true)
    }

    /// One of the hot path's tables (`access_tokens` when `tokens`, else
    /// `sessions`), from the shared snapshot when it is current.
    fn hot_table(
        &self,
        tokens: bool,
    ) -> Result<Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>, StoreError> {
        if self.inner.read_only {
            let def = if tokens { ACCESS_TOKENS } else { SESSIONS };
            return Ok(Arc::new(self.read()?.open_table(def)?));
        }
        self.hot_snapshot(|s| {
            if tokens {
                s.tokens.clone()
            } else {
                s.table.clone()
            }
        })
    }

    /// `pick` applied to the hot path's tables at the latest commit: the
    /// shared snapshot when it is current (see [`Inner::sessions_snapshot`]),
    /// else a fresh one, which becomes the shared one. Writable handles only.
    fn hot_snapshot<T>(&self, pick: impl FnOnce(&SessionsSnapshot) -> T) -> Result<T, StoreError> {
        // Read before taking the snapshot: a commit racing this lookup makes
        // the cached generation stale, never a stale snapshot current.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let mut cached = self
            .inner
            .sessions_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref().filter(|s| s.generation == generation) {
            return Ok(pick(s));
        }
        let txn = self.read()?;
        let snapshot = SessionsSnapshot {
            generation,
            table: Arc::new(txn.open_table(SESSIONS)?),
            tokens: Arc::new(txn.open_table(ACCESS_TOKENS)?),
            bans: Arc::new(txn.open_table(BANS)?),
        };
        let out = pick(&snapshot);
        *cached = Some(snapshot);
        Ok(out)
    }

    // ------------------------------------------------------------ access tokens

    /// The live access token whose hash is `hash`, if any. A token past its
    /// expiry is invalid here even before the sweep removes it. The hot
    /// path: one lookup in the shared snapshot.
    pub fn token_by_hash(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<AccessTokenInfo>, StoreError> {
        let t = self.tokens_table()?;
        let Some(g) = t.get(hash.0)? else {
            return Ok(None);
        };
        let rec: AccessTokenRecord = decode("access_tokens", g.value())?;
        if rec.expires_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(tokens::to_info(rec)))
    }

    /// A user's live access tokens, newest first.
    pub fn tokens_of(&self, user: &str, now_ms: u64) -> Result<Vec<AccessTokenInfo>, StoreError> {
        let txn = self.read()?;
        let by_user = txn.open_table(ACCESS_TOKENS_BY_USER)?;
        let t = txn.open_table(ACCESS_TOKENS)?;
        let (lo, hi) = tokens::user_range(user);
        let mut out = Vec::new();
        for row in by_user.range(lo..=hi)?.rev() {
            let (k, _) = row?;
            if let Some(g) = t.get(k.value().2)? {
                let rec: AccessTokenRecord = decode("access_tokens", g.value())?;
                if rec.expires_ms > now_ms {
                    out.push(tokens::to_info(rec));
                }
            }
        }
        Ok(out)
    }

    /// Number of rows in `access_tokens` (live and not yet swept).
    pub fn token_rows(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(ACCESS_TOKENS)?.len()?)
    }

    /// A user's live sessions, newest first.
    pub fn sessions_of(&self, user: &str, now_ms: u64) -> Result<Vec<Session>, StoreError> {
        let txn = self.read()?;
        let by_user = txn.open_table(SESSIONS_BY_USER)?;
        let t = txn.open_table(SESSIONS)?;
        let (lo, hi) = sessions::user_range(user);
        let mut out = Vec::new();
        for row in by_user.range(lo..=hi)?.rev() {
            let (k, _) = row?;
            if let Some(g) = t.get(k.value().2)? {
                let rec: SessionRecord = decode("sessions", g.value())?;
                if rec.deadline_ms() > now_ms {
                    out.push(sessions::to_session(rec));
                }
            }
        }
        Ok(out)
    }

    /// Live sessions of every user, ordered by user then newest first, at most `limit`.
    pub fn all_sessions(&self, now_ms: u64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let txn = self.read()?;
        let by_user = txn.open_table(SESSIONS_BY_USER)?;
        let t = txn.open_table(SESSIONS)?;
        let mut out: Vec<Session> = Vec::new();
        for row in by_user.iter()? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = row?;
            if let Some(g) = t.get(k.value().2)? {
                let rec: SessionRecord = decode("sessions", g.value())?;
                if rec.deadline_ms() > now_ms {
                    out.push(sessions::to_session(rec));
                }
            }
        }
        out.sort_by(|a, b| a.user.cmp(&b.user).then(b.created_ms.cmp(&a.created_ms)));
        Ok(out)
    }

    /// Number of rows in the sessions table (live and not yet swept).
    pub fn session_rows(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(SESSIONS)?.len()?)
    }

    // ------------------------------------------------------------ events

    /// One page of audit events matching `filter`, newest first. `limit` is
    /// clamped to `1..=MAX_LIMIT`; `cursor` is a `next_cursor` from a previous
    /// page of the same query.
    pub fn query_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, QueryError> {
        let txn = self.read()?;
        events::query(&txn, filter, limit, cursor)
    }

    /// Events with ids above `after`, oldest first, at most `limit`: for
    /// following the trail as it is written.
    pub fn events_after(&self, after: EventId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(EVENTS)?;
        let by_user = txn.open_table(EVENTS_BY_USER)?;
        let mut lookup = events::Lookup::new(&t, &by_user);
        let mut out = Vec::new();
        if after.0 == u64::MAX {
            return Ok(out);
        }
        for row in t.range(after.0 + 1..)?.take(limit) {
            let (k, v) = row?;
            let id = k.value();
            // An event without its record is a damaged file: `check` names it.
            let Some((user, record)) = lookup.find(id, Some(v.value()))? else {
                return Err(StoreError::Corrupt {
                    table: EVENT_RECORDS,
                    reason: format!("event {id} has no record"),
                });
            };
            out.push(events::to_event(id, user, record)?);
        }
        Ok(out)
    }

    // ------------------------------------------------------------ bans

    /// The active ban on `subject`, if any.
    pub fn ban(&self, subject: &BanSubject, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        let txn = self.read()?;
        ban_in(&txn.open_table(BANS)?, subject, now_ms)
    }

    /// [`Store::ban`] for the forward-auth hot path: from the shared read
    /// snapshot of the sessions and tokens (no read transaction of its own
    /// while no commit has happened since), which every commit made through
    /// this handle replaces before it is acknowledged, so a ban is seen from
    /// the moment it was stored.
    pub fn ban_hot(&self, subject: &BanSubject, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        if self.inner.read_only {
            return self.ban(subject, now_ms);
        }
        ban_in(&*self.hot_snapshot(|s| s.bans.clone())?, subject, now_ms)
    }

    /// Every active ban.
    pub fn bans(&self, now_ms: u64) -> Result<Vec<Ban>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(BANS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let ban = bans::to_ban(k.value(), v.value())?;
            if ban.until_ms > now_ms {
                out.push(ban);
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------ whole file

    /// Counts and facts about the database.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.read()?;
        let events = txn.open_table(EVENTS)?;
        let schema_version = match &*self.db()? {
            Db::Rw(db) => gatehouse_migrations::version_of(db)?,
            Db::Ro(db) => gatehouse_migrations::version_of(db)?,
        };
        Ok(StoreStats {
            schema_version,
            sessions: txn.open_table(SESSIONS)?.len()?,
            events: events.len()?,
            bans: txn.open_table(BANS)?.len()?,
            tokens: txn.open_table(ACCESS_TOKENS)?.len()?,
            oldest_event: events.first()?.map(|(k, _)| EventId(k.value())),
            newest_event: events.last()?.map(|(k, _)| EventId(k.value())),
            file_bytes: std::fs::metadata(&self.inner.path)
                .map(|m| m.len())
                .unwrap_or(0),
        })
    }

    /// Checks that every index agrees with its table and that the audit hash
    /// chain is intact. Reads the whole file from one snapshot.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let txn = self.read()?;
        check::check(&txn)
    }
}

/// The ban on `subject` in force at `now_ms` in `t`, the `bans` table of
/// some read snapshot.
fn ban_in(
    t: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    subject: &BanSubject,
    now_ms: u64,
) -> Result<Option<Ban>, StoreError> {
    let key = subject.key();
    let Some(g) = t.get(key.as_str())? else {
        return Ok(None);
    };
    let ban = bans::to_ban(&key, g.value())?;
    Ok((ban.until_ms > now_ms).then_some(ban))
}
