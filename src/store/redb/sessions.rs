//! Sessions: create, look up, touch, revoke, list and expire. A session row and
//! its two index entries are always written and removed together.

use std::net::IpAddr;

use redb::ReadableTable;

use super::codec::{decode, encode};
use super::records::SessionRecord;
use super::tables::HashKey;
use super::txn::Tx;
use crate::domain::*;
use crate::store::error::StoreError;
use crate::store::reports::SweepReport;

pub(crate) fn to_session(rec: SessionRecord) -> Session {
    Session {
        id: PublicId(rec.public_id),
        idle_deadline_ms: rec.idle_deadline_ms(),
        user: rec.user,
        created_ms: rec.created_ms,
        last_seen_ms: rec.last_seen_ms,
        absolute_deadline_ms: rec.absolute_deadline_ms,
        remember_me: rec.remember_me,
        ip: rec.ip,
        user_agent: rec.user_agent,
        methods: Methods::from_bits(rec.methods),
        second_factor_ms: rec.second_factor_ms,
    }
}

/// Lowest and highest `sessions_by_user` keys of one user.
pub(crate) fn user_range(user: &str) -> ((&str, u64, HashKey), (&str, u64, HashKey)) {
    ((user, 0, [0; 32]), (user, u64::MAX, [0xff; 32]))
}

impl Tx<'_> {
    fn load_session(&self, hash: &HashKey) -> Result<Option<SessionRecord>, StoreError> {
        match self.sessions.r()?.get(hash)? {
            Some(g) => Ok(Some(decode("sessions", g.value())?)),
            None => Ok(None),
        }
    }

    fn insert_session(&mut self, hash: HashKey, rec: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.t()?.insert(hash, encode(rec).as_slice())?;
        self.sessions_by_user
            .t()?
            .insert((rec.user.as_str(), rec.created_ms, hash), ())?;
        self.sessions_by_expiry
            .t()?
            .insert((rec.deadline_ms(), hash), ())?;
        Ok(())
    }

    /// Ends a session: its row and index entries go, and with them its
    /// OpenID Connect grants (logout notices queued). Every path that ends
    /// a session comes here.
    fn delete_session(
        &mut self,
        hash: HashKey,
        rec: &SessionRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.remove_session_row(hash, rec)?;
        self.end_session_grants(rec.public_id, &rec.user, now_ms)
    }

    /// Removes a session's row and index entries only: for a session that
    /// goes on under another token (step-up).
    fn remove_session_row(&mut self, hash: HashKey, rec: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.t()?.remove(hash)?;
        self.sessions_by_user
            .t()?
            .remove((rec.user.as_str(), rec.created_ms, hash))?;
        self.sessions_by_expiry
            .t()?
            .remove((rec.deadline_ms(), hash))?;
        Ok(())
    }

    /// Creates a session, evicting the user's expired and then oldest sessions
    /// to stay within `max_per_user`, and records the audit events.
    pub fn create_session(&mut self, new: NewSession) -> Result<CreatedSession, StoreError> {
        let now = new.now_ms;
        let user = truncate(new.user, MAX_USER);
        let cap = new.max_per_user.max(1);
        let mut existing: Vec<(u64, HashKey)> = Vec::new();
        for row in self
            .sessions_by_user
            .r()?
            .range(user_range(&user).0..=user_range(&user).1)?
        {
            let (k, _) = row?;
            let (_, created, hash) = k.value();
            existing.push((created, hash));
        }
        let mut evicted = Vec::new();
        let mut remaining = existing.len();
        // Expired sessions go first, whatever their age; then the oldest.
        let mut live = Vec::with_capacity(existing.len());
        for (_, hash) in existing {
            let Some(rec) = self.load_session(&hash)? else {
                continue;
            };
            if rec.deadline_ms() <= now {
                self.delete_session(hash, &rec, now)?;
                self.append_event(
                    NewEvent::at(EventKind::SessionExpired, now * 1000)
                        .user(rec.user.clone())
                        .session(PublicId(rec.public_id)),
                )?;
                remaining -= 1;
            } else {
                live.push((hash, rec));
            }
        }
        for (hash, rec) in live {
            if remaining < cap {
                break;
            }
            self.delete_session(hash, &rec, now)?;
            let id = PublicId(rec.public_id);
            self.append_event(
                NewEvent::at(EventKind::SessionEvicted, now * 1000)
                    .user(rec.user.clone())
                    .session(id)
                    .detail("reason", "session cap")
                    .detail("cap", cap.to_string()),
            )?;
            evicted.push(id);
            remaining -= 1;
        }

        let token = SessionToken::generate();
        let hash = token.hash().0;
        let idle_ttl_ms = (!new.remember_me).then_some(new.idle_ttl_ms);
        let rec = SessionRecord {
            public_id: PublicId::generate().0,
            user,
            created_ms: now,
            last_seen_ms: now,
            idle_ttl_ms,
            absolute_deadline_ms: now.saturating_add(new.absolute_ttl_ms),
            remember_me: new.remember_me,
            ip: new.ip,
            user_agent: new.user_agent.map(|u| truncate(u, MAX_USER_AGENT)),
            methods: new.methods.bits(),
            second_factor_ms: new.methods.two_factor().then_some(now),
        };
        self.insert_session(hash, &rec)?;
        let session = to_session(rec);
        self.append_event(session.created_event())?;
        Ok(CreatedSession {
            token,
            session,
            evicted,
        })
    }

    /// Moves the idle deadline of a live session to `now + idle ttl`. Returns
    /// false when the session is gone or already expired.
    pub fn touch_session(&mut self, hash: TokenHash, now_ms: u64) -> Result<bool, StoreError> {
        let Some(mut rec) = self.load_session(&hash.0)? else {
            return Ok(false);
        };
        if rec.deadline_ms() <= now_ms {
            return Ok(false);
        }
        if now_ms <= rec.last_seen_ms {
            return Ok(true);
        }
        self.sessions_by_expiry
            .t()?
            .remove((rec.deadline_ms(), hash.0))?;
        rec.last_seen_ms = now_ms;
        self.sessions.t()?.insert(hash.0, encode(&rec).as_slice())?;
        self.sessions_by_expiry
            .t()?
            .insert((rec.deadline_ms(), hash.0), ())?;
        Ok(true)
    }

    fn revoke(
        &mut self,
        hash: HashKey,
        rec: &SessionRecord,
        reason: RevokeReason,
        actor: Option<&str>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.delete_session(hash, rec, now_ms)?;
        let kind = if reason == RevokeReason::Logout {
            EventKind::Logout
        } else {
            EventKind::SessionRevoked
        };
        let mut ev = NewEvent::at(kind, now_ms * 1000)
            .user(rec.user.clone())
            .ip(ip)
            .session(PublicId(rec.public_id))
            .detail("reason", reason.as_str());
        if let Some(actor) = actor {
            ev = ev.detail("actor", actor);
        }
        self.append_event(ev)?;
        Ok(())
    }

    /// Revokes the session holding this token. Returns the session if it existed.
    pub fn revoke_by_token(
        &mut self,
        hash: TokenHash,
        reason: RevokeReason,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<Option<PublicId>, StoreError> {
        let Some(rec) = self.load_session(&hash.0)? else {
            return Ok(None);
        };
        self.revoke(hash.0, &rec, reason, None, ip, now_ms)?;
        Ok(Some(PublicId(rec.public_id)))
    }

    /// Step-up: the live session holding `hash` passed `method` at
    /// `now_ms`. It moves to a fresh token (the old one stops working in the
    /// same commit) and keeps its public id and creation time, so its place
    /// in the user's list; `event` is appended with its id. `None` when the
    /// session is gone or expired.
    pub fn step_up_session(
        &mut self,
        hash: TokenHash,
        method: Method,
        event: NewEvent,
        now_ms: u64,
    ) -> Result<Option<CreatedSession>, StoreError> {
        let Some(mut rec) = self.load_session(&hash.0)? else {
            return Ok(None);
        };
        if rec.deadline_ms() <= now_ms {
            return Ok(None);
        }
        self.remove_session_row(hash.0, &rec)?;
        rec.methods = Methods::from_bits(rec.methods).with(method).bits();
        rec.second_factor_ms = Some(now_ms);
        rec.last_seen_ms = rec.last_seen_ms.max(now_ms);
        let token = SessionToken::generate();
        self.insert_session(token.hash().0, &rec)?;
        let session = to_session(rec);
        self.append_event(event.session(session.id))?;
        Ok(Some(CreatedSession {
            token,
            session,
            evicted: Vec::new(),
        }))
    }

    /// Revokes one session of `user` by public id. Returns false if `user` has
    /// no such session (another user's id is "not found", never revoked).
    pub fn revoke_by_id(
        &mut self,
        user: &str,
        id: PublicId,
        reason: RevokeReason,
        actor: Option<&str>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        for (hash, rec) in self.user_sessions(user)? {
            if rec.public_id == id.0 {
                self.revoke(hash, &rec, reason, actor, ip, now_ms)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Revokes every session of `user` except `keep`. Returns the revoked ids.
    pub fn revoke_user(
        &mut self,
        user: &str,
        keep: Option<PublicId>,
        reason: RevokeReason,
        actor: Option<&str>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<Vec<PublicId>, StoreError> {
        let mut out = Vec::new();
        for (hash, rec) in self.user_sessions(user)? {
            if Some(PublicId(rec.public_id)) == keep {
                continue;
            }
            self.revoke(hash, &rec, reason, actor, ip, now_ms)?;
            out.push(PublicId(rec.public_id));
        }
        Ok(out)
    }

    pub(super) fn user_sessions(
        &self,
        user: &str,
    ) -> Result<Vec<(HashKey, SessionRecord)>, StoreError> {
        let mut hashes = Vec::new();
        let (lo, hi) = user_range(user);
        for row in self.sessions_by_user.r()?.range(lo..=hi)? {
            hashes.push(row?.0.value().2);
        }
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(rec) = self.load_session(&h)? {
                out.push((h, rec));
            }
        }
        Ok(out)
    }

    /// Removes up to `limit` sessions whose deadline is at or before `now_ms`,
    /// oldest deadline first, stopping at the first future deadline.
    pub fn sweep_sessions(&mut self, now_ms: u64, limit: usize) -> Result<SweepReport, StoreError> {
        let mut due: Vec<(u64, HashKey)> = Vec::new();
        let mut more = false;
        for row in self
            .sessions_by_expiry
            .t()?
            .range(..=(now_ms, [0xff; 32]))?
        {
            let (k, _) = row?;
            if due.len() == limit {
                more = true;
                break;
            }
            due.push(k.value());
        }
        let mut expired = 0;
        for (deadline, hash) in due {
            match self.load_session(&hash)? {
                Some(rec) => {
                    self.delete_session(hash, &rec, now_ms)?;
                    let reason = if rec
                        .idle_deadline_ms()
                        .is_some_and(|i| i <= rec.absolute_deadline_ms)
                    {
                        "idle"
                    } else {
                        "absolute"
                    };
                    self.append_event(
                        NewEvent::at(EventKind::SessionExpired, now_ms * 1000)
                            .user(rec.user.clone())
                            .session(PublicId(rec.public_id))
                            .detail("reason", reason),
                    )?;
                    expired += 1;
                }
                None => {
                    // An index entry without its row breaks the table invariant;
                    // it is removed so the sweep cannot stall on it.
                    tracing::warn!(hash = ?TokenHash(hash), "orphan expiry index entry removed");
                    self.sessions_by_expiry.t()?.remove((deadline, hash))?;
                }
            }
        }
        Ok(SweepReport {
            pending: 0,
            expired,
            more,
            ..SweepReport::default()
        })
    }
}
