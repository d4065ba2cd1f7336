//! The OpenID Connect provider's writes in the redb file: codes, grants
//! with their access and refresh tokens, and the hook that ends a
//! session's grants. The operations are in `oidc_ops.rs`; consents,
//! subjects, logout notices, signing keys and the sweep in
//! `oidc_state.rs`; the reads in `oidc_reads.rs`.
//!
//! Invariants (besides those of `tables.rs`): a grant record lists every
//! token row that names it, so dropping a grant drops them all; a code is
//! marked spent in the transaction that stores its grant; a grant exists
//! only while its session does (every session-removing path calls
//! [`Tx::end_session_grants`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use redb::ReadableTable;

use super::codec::{decode, encode};
use super::records::{AuthRecord, CodeRecord, GrantRecord, OidcTokenRecord};
use super::tables::{HashKey, IdKey};
use super::txn::Tx;
use crate::domain::oidc::*;
use crate::domain::*;
use crate::store::error::StoreError;

/// Live access tokens one grant keeps; past it the oldest is dropped (each
/// refresh adds one, so a client refreshing fast cannot grow its grant).
pub const MAX_GRANT_ACCESS_TOKENS: usize = 16;

/// Grants one session keeps; past it the oldest is revoked (reason
/// `grant_cap`), so that codes redeemed in a loop cannot grow the file
/// for as long as the session lives.
pub const MAX_GRANTS_PER_SESSION: usize = 32;

const ACCESS: u8 = 0;
const REFRESH: u8 = 1;

pub(crate) fn auth_record(a: &Authorization) -> AuthRecord {
    AuthRecord {
        client: a.client.clone(),
        user: a.user.clone(),
        session: a.session.0,
        scopes: a.scopes.clone(),
        auth_time_ms: a.auth_time_ms,
        methods: a.methods.bits(),
    }
}

pub(crate) fn to_auth(r: AuthRecord) -> Authorization {
    Authorization {
        client: r.client,
        user: r.user,
        session: PublicId(r.session),
        scopes: r.scopes,
        auth_time_ms: r.auth_time_ms,
        methods: Methods::from_bits(r.methods),
    }
}

fn to_code_grant(r: &CodeRecord) -> CodeGrant {
    CodeGrant {
        auth: to_auth(r.auth.clone()),
        redirect_uri: r.redirect_uri.clone(),
        code_challenge: r.code_challenge.clone(),
        nonce: r.nonce.clone(),
        expires_ms: r.expires_ms,
    }
}

/// Lowest and highest `oidc_grants_by_session` keys of one session.
pub(crate) fn session_range(session: IdKey) -> ((IdKey, IdKey), (IdKey, IdKey)) {
    ((session, [0; 16]), (session, [0xff; 16]))
}

impl GrantRecord {
    /// The latest expiry of its tokens (its `oidc_grants_by_expiry` key).
    fn latest_expiry(&self) -> u64 {
        self.access
            .iter()
            .chain(self.refresh.iter())
            .chain(self.retired.iter())
            .map(|&(_, e)| e)
            .max()
            .unwrap_or(0)
    }

    fn hashes(&self) -> impl Iterator<Item = &HashKey> {
        self.access
            .iter()
            .chain(self.refresh.iter())
            .chain(self.retired.iter())
            .map(|(h, _)| h)
    }
}

impl Tx<'_> {
    pub(super) fn load_code(&self, hash: &HashKey) -> Result<Option<CodeRecord>, StoreError> {
        match self.oidc_codes.r()?.get(hash)? {
            Some(g) => Ok(Some(decode("oidc_codes", g.value())?)),
            None => Ok(None),
        }
    }

    pub(super) fn load_grant(&self, id: &IdKey) -> Result<Option<GrantRecord>, StoreError> {
        match self.oidc_grants.r()?.get(id)? {
            Some(g) => Ok(Some(decode("oidc_grants", g.value())?)),
            None => Ok(None),
        }
    }

    fn load_oidc_token(&self, hash: &HashKey) -> Result<Option<OidcTokenRecord>, StoreError> {
        match self.oidc_tokens.r()?.get(hash)? {
            Some(g) => Ok(Some(decode("oidc_tokens", g.value())?)),
            None => Ok(None),
        }
    }

    fn put_token(&mut self, hash: HashKey, rec: &OidcTokenRecord) -> Result<(), StoreError> {
        self.oidc_tokens.t()?.insert(hash, encode(rec).as_slice())?;
        Ok(())
    }

    /// Whether `user`'s session with public id `session` is live at `now_ms`
    /// (bounded by the per-user session cap).
    fn session_live(&self, user: &str, session: IdKey, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self
            .user_sessions(user)?
            .iter()
            .any(|(_, rec)| rec.public_id == session && rec.deadline_ms() > now_ms))
    }

    /// Writes a grant row, moving its expiry entry from `old`'s, and its
    /// session and user entries when it is new (`old` is `None`).
    fn put_grant(
        &mut self,
        id: IdKey,
        old: Option<&GrantRecord>,
        rec: &GrantRecord,
    ) -> Result<(), StoreError> {
        self.oidc_grants.t()?.insert(id, encode(rec).as_slice())?;
        match old {
            Some(old) => {
                if old.expires_ms != rec.expires_ms {
                    self.oidc_grants_by_expiry
                        .t()?
                        .remove((old.expires_ms, id))?;
                    self.oidc_grants_by_expiry
                        .t()?
                        .insert((rec.expires_ms, id), ())?;
                }
            }
            None => {
                self.oidc_grants_by_expiry
                    .t()?
                    .insert((rec.expires_ms, id), ())?;
                self.oidc_grants_by_session
                    .t()?
                    .insert((rec.auth.session, id), ())?;
                self.oidc_grants_by_user
                    .t()?
                    .insert((rec.auth.user.as_str(), rec.auth.client.as_str(), id), ())?;
            }
        }
        Ok(())
    }

    /// Removes a grant, its three index entries and every token row it lists.
    pub(super) fn drop_grant(&mut self, id: IdKey, rec: &GrantRecord) -> Result<(), StoreError> {
        for h in rec.hashes() {
            self.oidc_tokens.t()?.remove(h)?;
        }
        self.oidc_grants.t()?.remove(id)?;
        self.oidc_grants_by_expiry
            .t()?
            .remove((rec.expires_ms, id))?;
        self.oidc_grants_by_session
            .t()?
            .remove((rec.auth.session, id))?;
        self.oidc_grants_by_user.t()?.remove((
            rec.auth.user.as_str(),
            rec.auth.client.as_str(),
            id,
        ))?;
        Ok(())
    }

    /// Revokes a grant with `oidc.revoked`.
    pub(super) fn revoke_grant(
        &mut self,
        id: IdKey,
        rec: GrantRecord,
        reason: &str,
        actor: Option<&str>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.drop_grant(id, &rec)?;
        let mut ev = revoked_event(&to_auth(rec.auth), GrantId(id), reason, ip, now_ms);
        if let Some(actor) = actor {
            ev = ev.detail("actor", actor);
        }
        self.append_event(ev)?;
        Ok(())
    }

    /// The session hook: `session` (of `user`) ended. Its grants and their
    /// tokens go, and one logout notice per client that received tokens in
    /// it is queued.
    pub(super) fn end_session_grants(
        &mut self,
        session: IdKey,
        user: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let (lo, hi) = session_range(session);
        let mut ids = Vec::new();
        for row in self.oidc_grants_by_session.r()?.range(lo..=hi)? {
            ids.push(row?.0.value().1);
        }
        let mut clients = BTreeSet::new();
        for id in ids {
            match self.load_grant(&id)? {
                Some(rec) => {
                    self.drop_grant(id, &rec)?;
                    clients.insert(rec.auth.client);
                }
                None => {
                    tracing::warn!(grant = %GrantId(id), "orphan grant session entry removed");
                    self.oidc_grants_by_session.t()?.remove((session, id))?;
                }
            }
        }
        for client in clients {
            self.queue_logout(client, user, session, now_ms)?;
        }
        Ok(())
    }

    pub(super) fn put_code(
        &mut self,
        code: TokenHash,
        grant: CodeGrant,
        event: NewEvent,
    ) -> Result<bool, StoreError> {
        let now_ms = event.at_us / 1000;
        if !self.session_live(&grant.auth.user, grant.auth.session.0, now_ms)? {
            return Ok(false);
        }
        if let Some(old) = self.load_code(&code.0)? {
            self.oidc_codes_by_expiry
                .t()?
                .remove((old.expires_ms, code.0))?;
            self.oidc_codes_by_session
                .t()?
                .remove((old.auth.session, old.expires_ms, code.0))?;
        }
        let rec = CodeRecord {
            auth: auth_record(&grant.auth),
            redirect_uri: grant.redirect_uri,
            code_challenge: grant.code_challenge,
            nonce: grant.nonce,
            expires_ms: grant.expires_ms,
            spent: None,
        };
        self.oidc_codes
            .t()?
            .insert(code.0, encode(&rec).as_slice())?;
        self.oidc_codes_by_expiry
            .t()?
            .insert((rec.expires_ms, code.0), ())?;
        let session = rec.auth.session;
        self.oidc_codes_by_session
            .t()?
            .insert((session, rec.expires_ms, code.0), ())?;
        self.cap_session_codes(session)?;
        self.append_event(event)?;
        Ok(true)
    }

    /// Keeps a session's codes (pending or spent, until they expire)
    /// within [`MAX_CODES_PER_SESSION`], dropping those that expire first:
    /// a signed-in browser asking for codes in a loop fills its own
    /// session's place, never the table.
    fn cap_session_codes(&mut self, session: IdKey) -> Result<(), StoreError> {
        let range = (session, 0, [0u8; 32])..=(session, u64::MAX, [0xff; 32]);
        let held: Vec<(u64, HashKey)> = self
            .oidc_codes_by_session
            .r()?
            .range(range)?
            .map(|row| row.map(|(k, _)| (k.value().1, k.value().2)))
            .collect::<Result<_, _>>()?;
        let over = held.len().saturating_sub(MAX_CODES_PER_SESSION);
        for &(expires, hash) in &held[..over] {
            self.oidc_codes.t()?.remove(hash)?;
            self.oidc_codes_by_expiry.t()?.remove((expires, hash))?;
            self.oidc_codes_by_session
                .t()?
                .remove((session, expires, hash))?;
        }
        Ok(())
    }

    pub(super) fn redeem_code(
        &mut self,
        code: TokenHash,
        req: CodeRedemption,
        grant: GrantId,
        tokens: NewTokens,
    ) -> Result<Result<Issued, CodeRefusal>, StoreError> {
        let Some(mut rec) = self.load_code(&code.0)? else {
            return Ok(Err(CodeRefusal::Unknown));
        };
        if rec.auth.client != req.client {
            return Ok(Err(CodeRefusal::WrongClient));
        }
        if let Some(made) = rec.spent {
            if let Some(g) = self.load_grant(&made)? {
                self.revoke_grant(made, g, "code_replayed", None, req.ip, req.now_ms)?;
            }
            return Ok(Err(CodeRefusal::Replayed));
        }
        if let Err(refusal) = to_code_grant(&rec).check(&req) {
            return Ok(Err(refusal));
        }
        let now = req.now_ms;
        if !self.session_live(&rec.auth.user, rec.auth.session, now)? {
            return Ok(Err(CodeRefusal::SessionEnded));
        }
        if self.load_grant(&grant.0)?.is_some() {
            return Err(StoreError::Storage(format!("grant id {grant} is in use")));
        }
        // A refresh token only for a grant that holds `offline_access`.
        let offline = rec.auth.scopes.iter().any(|s| s == "offline_access");
        let refresh = tokens.refresh.filter(|_| offline).map(|(h, e)| (h.0, e));
        let mut g = GrantRecord {
            auth: rec.auth.clone(),
            created_ms: now,
            last_issued_ms: now,
            access: vec![(tokens.access.0, tokens.access_expires_ms)],
            refresh,
            retired: Vec::new(),
            expires_ms: 0,
        };
        g.expires_ms = g.latest_expiry();
        self.put_grant(grant.0, None, &g)?;
        self.put_token(
            tokens.access.0,
            &OidcTokenRecord {
                kind: ACCESS,
                grant: grant.0,
                issued_ms: now,
                expires_ms: tokens.access_expires_ms,
                retired: false,
                scopes: None,
            },
        )?;
        if let Some((h, e)) = refresh {
            self.put_token(
                h,
                &OidcTokenRecord {
                    kind: REFRESH,
                    grant: grant.0,
                    issued_ms: now,
                    expires_ms: e,
                    retired: false,
                    scopes: None,
                },
            )?;
        }
        self.cap_session_grants(rec.auth.session, req.ip, now)?;
        rec.spent = Some(grant.0);
        self.oidc_codes
            .t()?
            .insert(code.0, encode(&rec).as_slice())?;
        let issued = Issued {
            grant,
            auth: to_auth(rec.auth),
            nonce: rec.nonce,
        };
        self.append_event(issued.token_event(refresh.is_some(), req.ip, now))?;
        Ok(Ok(issued))
    }

    /// Revokes the session's oldest grants past [`MAX_GRANTS_PER_SESSION`].
    fn cap_session_grants(
        &mut self,
        session: IdKey,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let (lo, hi) = session_range(session);
        let mut ids = Vec::new();
        for row in self.oidc_grants_by_session.r()?.range(lo..=hi)? {
            ids.push(row?.0.value().1);
        }
        if ids.len() <= MAX_GRANTS_PER_SESSION {
            return Ok(());
        }
        let mut grants = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = self.load_grant(&id)? {
                grants.push((g.created_ms, id, g));
            }
        }
        grants.sort_by_key(|(created, id, _)| (*created, *id));
        let over = grants.len().saturating_sub(MAX_GRANTS_PER_SESSION);
        for (_, id, g) in grants.into_iter().take(over) {
            self.revoke_grant(id, g, "grant_cap", None, ip, now_ms)?;
        }
        Ok(())
    }

    pub(super) fn refresh_grant(
        &mut self,
        presented: TokenHash,
        req: RefreshRequest,
    ) -> Result<Result<Issued, RefreshRefusal>, StoreError> {
        let now = req.now_ms;
        let Some(mut t) = self.load_oidc_token(&presented.0)? else {
            return Ok(Err(RefreshRefusal::Unknown));
        };
        if t.kind != REFRESH {
            return Ok(Err(RefreshRefusal::Unknown));
        }
        let id = t.grant;
        let Some(old) = self.load_grant(&id)? else {
            return Ok(Err(RefreshRefusal::Unknown));
        };
        if old.auth.client != req.client {
            return Ok(Err(RefreshRefusal::WrongClient));
        }
        if t.retired {
            let auth = to_auth(old.auth.clone());
            self.drop_grant(id, &old)?;
            self.append_event(refresh_reused_event(&auth, GrantId(id), req.ip, now))?;
            return Ok(Err(RefreshRefusal::Reused));
        }
        // A session past its deadline has ended even before the sweep
        // removes it (with its grants).
        if t.expires_ms <= now || !self.session_live(&old.auth.user, old.auth.session, now)? {
            return Ok(Err(RefreshRefusal::Expired));
        }
        if let Some(asked) = &req.scopes
            && !asked.iter().all(|s| old.auth.scopes.contains(s))
        {
            return Ok(Err(RefreshRefusal::ScopeWidened));
        }
        let mut g = old.clone();
        // Retire the presented token; forget the oldest retired past the
        // bound, and every token of the grant that has expired.
        t.retired = true;
        self.put_token(presented.0, &t)?;
        g.refresh = None;
        g.retired.push((presented.0, t.expires_ms));
        let mut gone: Vec<HashKey> = Vec::new();
        while g.retired.len() > MAX_RETIRED_REFRESH {
            gone.push(g.retired.remove(0).0);
        }
        for list in [&mut g.access, &mut g.retired] {
            list.retain(|&(h, e)| {
                let keep = e > now;
                if !keep {
                    gone.push(h);
                }
                keep
            });
        }
        let narrowed = req.scopes.clone().filter(|s| *s != old.auth.scopes);
        g.access
            .push((req.tokens.access.0, req.tokens.access_expires_ms));
        while g.access.len() > MAX_GRANT_ACCESS_TOKENS {
            gone.push(g.access.remove(0).0);
        }
        for h in gone {
            self.oidc_tokens.t()?.remove(h)?;
        }
        self.put_token(
            req.tokens.access.0,
            &OidcTokenRecord {
                kind: ACCESS,
                grant: id,
                issued_ms: now,
                expires_ms: req.tokens.access_expires_ms,
                retired: false,
                scopes: narrowed,
            },
        )?;
        if let Some((h, e)) = req.tokens.refresh {
            g.refresh = Some((h.0, e));
            self.put_token(
                h.0,
                &OidcTokenRecord {
                    kind: REFRESH,
                    grant: id,
                    issued_ms: now,
                    expires_ms: e,
                    retired: false,
                    scopes: None,
                },
            )?;
        }
        g.last_issued_ms = now;
        g.expires_ms = g.latest_expiry();
        self.put_grant(id, Some(&old), &g)?;
        let mut auth = to_auth(g.auth);
        if let Some(scopes) = req.scopes {
            auth.scopes = scopes;
        }
        let issued = Issued {
            grant: GrantId(id),
            auth,
            nonce: None,
        };
        self.append_event(issued.refreshed_event(req.ip, now))?;
        Ok(Ok(issued))
    }

    pub(super) fn revoke_oidc_token(
        &mut self,
        hash: TokenHash,
        client: &str,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let Some(t) = self.load_oidc_token(&hash.0)? else {
            return Ok(false);
        };
        let Some(old) = self.load_grant(&t.grant)? else {
            return Ok(false);
        };
        if old.auth.client != client {
            return Ok(false);
        }
        if t.kind == REFRESH {
            self.revoke_grant(t.grant, old, "client", None, ip, now_ms)?;
            return Ok(true);
        }
        let mut g = old.clone();
        g.access.retain(|&(h, _)| h != hash.0);
        g.expires_ms = g.latest_expiry();
        self.oidc_tokens.t()?.remove(hash.0)?;
        self.put_grant(t.grant, Some(&old), &g)?;
        self.append_event(revoked_event(
            &to_auth(g.auth),
            GrantId(t.grant),
            "client",
            ip,
            now_ms,
        ))?;
        Ok(true)
    }
}
