//! Personal access tokens: create, look up, touch, revoke, list and expire.
//! A token row and its two index entries (`access_tokens_by_user`,
//! `access_tokens_by_expiry`) are always written and removed together, and
//! every creation, revocation and expiry appends its event in the same
//! transaction.

use std::net::IpAddr;

use redb::ReadableTable;

use super::codec::{decode, encode};
use super::records::AccessTokenRecord;
use super::tables::HashKey;
use super::txn::Tx;
use crate::domain::*;
use crate::store::error::StoreError;

pub(crate) fn to_info(rec: AccessTokenRecord) -> AccessTokenInfo {
    AccessTokenInfo {
        id: PublicId(rec.public_id),
        user: rec.user,
        name: rec.name,
        hint: rec.hint,
        domains: rec.domains,
        created_ms: rec.created_ms,
        expires_ms: rec.expires_ms,
        last_used_ms: rec.last_used_ms,
        recent_ips: rec.recent_ips,
        two_factor: rec.two_factor,
    }
}

/// Lowest and highest `access_tokens_by_user` keys of one user.
pub(crate) fn user_range(user: &str) -> ((&str, u64, HashKey), (&str, u64, HashKey)) {
    ((user, 0, [0; 32]), (user, u64::MAX, [0xff; 32]))
}

/// The event of a token's end or start, naming it by id and name (never by
/// any part of the secret).
fn token_event(kind: EventKind, rec: &AccessTokenRecord, now_ms: u64) -> NewEvent {
    NewEvent::at(kind, now_ms.saturating_mul(1000))
        .user(rec.user.clone())
        .detail("token", PublicId(rec.public_id).to_string())
        .detail("name", rec.name.clone())
}

impl Tx<'_> {
    fn load_token(&self, hash: &HashKey) -> Result<Option<AccessTokenRecord>, StoreError> {
        match self.access_tokens.r()?.get(hash)? {
            Some(g) => Ok(Some(decode("access_tokens", g.value())?)),
            None => Ok(None),
        }
    }

    fn insert_token(&mut self, hash: HashKey, rec: &AccessTokenRecord) -> Result<(), StoreError> {
        self.access_tokens
            .t()?
            .insert(hash, encode(rec).as_slice())?;
        self.access_tokens_by_user
            .t()?
            .insert((rec.user.as_str(), rec.created_ms, hash), ())?;
        self.access_tokens_by_expiry
            .t()?
            .insert((rec.expires_ms, hash), ())?;
        Ok(())
    }

    fn delete_token(&mut self, hash: HashKey, rec: &AccessTokenRecord) -> Result<(), StoreError> {
        self.access_tokens.t()?.remove(hash)?;
        self.access_tokens_by_user
            .t()?
            .remove((rec.user.as_str(), rec.created_ms, hash))?;
        self.access_tokens_by_expiry
            .t()?
            .remove((rec.expires_ms, hash))?;
        Ok(())
    }

    fn user_tokens(&self, user: &str) -> Result<Vec<(HashKey, AccessTokenRecord)>, StoreError> {
        let mut hashes = Vec::new();
        let (lo, hi) = user_range(user);
        for row in self.access_tokens_by_user.r()?.range(lo..=hi)? {
            hashes.push(row?.0.value().2);
        }
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(rec) = self.load_token(&h)? {
                out.push((h, rec));
            }
        }
        Ok(out)
    }

    /// Creates a token for `new.user` and appends `token.created`, after
    /// removing the user's expired tokens (each with `token.expired`).
    /// Refused, with nothing written, when the user already holds
    /// `max_per_user` live tokens, or when `session` (the session asking for
    /// it) is no longer live: a reload that changed the user's credentials
    /// ends their sessions and tokens in later operations, so a token made
    /// from a session is either created before that revocation (and ended
    /// by it) or refused.
    pub fn create_token(
        &mut self,
        new: NewAccessToken,
        session: Option<TokenHash>,
    ) -> Result<Result<CreatedAccessToken, TokenRefusal>, StoreError> {
        let now = new.now_ms;
        // Without a session to vouch for it, a token is one-factor.
        let mut two_factor = false;
        if let Some(s) = session {
            let rec = match self.sessions.t()?.get(s.0)? {
                Some(g) => Some(decode::<super::records::SessionRecord>(
                    "sessions",
                    g.value(),
                )?),
                None => None,
            };
            let Some(rec) = rec.filter(|r| r.deadline_ms() > now) else {
                return Ok(Err(TokenRefusal::SessionEnded));
            };
            two_factor = new.two_factor && Methods::from_bits(rec.methods).two_factor();
        }
        let user = truncate(new.user, MAX_USER);
        let existing = self.user_tokens(&user)?;
        let live = existing.iter().filter(|(_, r)| r.expires_ms > now).count();
        if live >= new.max_per_user.max(1) {
            return Ok(Err(TokenRefusal::AtCap));
        }
        for (hash, rec) in existing {
            if rec.expires_ms <= now {
                self.delete_token(hash, &rec)?;
                self.append_event(
                    token_event(EventKind::TokenExpired, &rec, now).detail("reason", "expired"),
                )?;
            }
        }
        let token = AccessToken::generate();
        let hash = token.hash().0;
        let rec = AccessTokenRecord {
            public_id: PublicId::generate().0,
            user,
            name: truncate(new.name, MAX_TOKEN_NAME),
            hint: token.hint(),
            domains: new.domains.into_iter().take(MAX_TOKEN_DOMAINS).collect(),
            created_ms: now,
            expires_ms: new.expires_ms.max(now.saturating_add(1)),
            last_used_ms: None,
            recent_ips: Vec::new(),
            two_factor,
        };
        self.insert_token(hash, &rec)?;
        let info = to_info(rec);
        self.append_event(info.created_event(new.ip))?;
        Ok(Ok(CreatedAccessToken { token, info }))
    }

    /// Records a use of a live token at `now_ms` from `ip`: moves its last
    /// use forward and, when `ip` is not among its recent addresses,
    /// remembers it and appends `token.used`. Returns false when the token
    /// is gone or expired.
    pub fn touch_token(
        &mut self,
        hash: TokenHash,
        now_ms: u64,
        ip: Option<IpAddr>,
    ) -> Result<bool, StoreError> {
        let Some(mut rec) = self.load_token(&hash.0)? else {
            return Ok(false);
        };
        if rec.expires_ms <= now_ms {
            return Ok(false);
        }
        let mut changed = false;
        if rec.last_used_ms.is_none_or(|t| now_ms > t) {
            rec.last_used_ms = Some(now_ms);
            changed = true;
        }
        if let Some(ip) = ip.filter(|ip| !rec.recent_ips.contains(ip)) {
            if rec.recent_ips.len() >= TOKEN_RECENT_IPS {
                rec.recent_ips.remove(0);
            }
            rec.recent_ips.push(ip);
            changed = true;
            self.append_event(token_event(EventKind::TokenUsed, &rec, now_ms).ip(Some(ip)))?;
        }
        if changed {
            // The key and both index entries are unchanged: only the row.
            self.access_tokens
                .t()?
                .insert(hash.0, encode(&rec).as_slice())?;
        }
        Ok(true)
    }

    fn revoke_token(
        &mut self,
        hash: HashKey,
        rec: &AccessTokenRecord,
        how: &Revocation,
    ) -> Result<(), StoreError> {
        self.delete_token(hash, rec)?;
        let mut ev = token_event(EventKind::TokenRevoked, rec, how.now_ms)
            .ip(how.ip)
            .detail("reason", how.reason.as_str());
        if let Some(actor) = &how.actor {
            ev = ev.detail("actor", actor.clone());
        }
        self.append_event(ev)?;
        Ok(())
    }

    /// Revokes one token of `user` by public id. Returns false when `user`
    /// has no such token: another user's id is "not found", never revoked.
    pub fn revoke_token_by_id(
        &mut self,
        user: &str,
        id: PublicId,
        how: &Revocation,
    ) -> Result<bool, StoreError> {
        for (hash, rec) in self.user_tokens(user)? {
            if rec.public_id == id.0 {
                self.revoke_token(hash, &rec, how)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Revokes every token of `user`. Returns the revoked ids.
    pub fn revoke_user_tokens(
        &mut self,
        user: &str,
        how: &Revocation,
    ) -> Result<Vec<PublicId>, StoreError> {
        let mut out = Vec::new();
        for (hash, rec) in self.user_tokens(user)? {
            self.revoke_token(hash, &rec, how)?;
            out.push(PublicId(rec.public_id));
        }
        Ok(out)
    }

    /// Removes up to `limit` tokens whose expiry is at or before `now_ms`,
    /// soonest first, each with `token.expired`. Returns how many, and
    /// whether more are due.
    pub fn sweep_tokens(&mut self, now_ms: u64, limit: usize) -> Result<(usize, bool), StoreError> {
        let mut due: Vec<(u64, HashKey)> = Vec::new();
        let mut more = false;
        for row in self
            .access_tokens_by_expiry
            .r()?
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
        for (expires, hash) in due {
            match self.load_token(&hash)? {
                Some(rec) => {
                    self.delete_token(hash, &rec)?;
                    self.append_event(
                        token_event(EventKind::TokenExpired, &rec, now_ms)
                            .detail("reason", "expired"),
                    )?;
                    expired += 1;
                }
                None => {
                    // An index entry without its row: removed so that the
                    // sweep cannot stall on it (`check` reports such damage).
                    tracing::warn!(hash = ?TokenHash(hash), "orphan token expiry entry removed");
                    self.access_tokens_by_expiry.t()?.remove((expires, hash))?;
                }
            }
        }
        Ok((expired, more))
    }
}
