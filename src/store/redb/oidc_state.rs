//! The OpenID Connect provider's smaller state in the redb file: stable
//! subjects, remembered consents (and withdrawing them with the grants
//! they cover), back-channel logout notices with their due order and
//! bound, the sealed signing keys, and the sweep of expired codes and
//! grants.

use redb::{ReadableTable, ReadableTableMetadata};

use super::codec::{decode, encode};
use super::records::{ConsentRecord, LogoutRecord, SigningKeyRecord};
use super::tables::{IdKey, OIDC_NEXT_LOGOUT_KEY};
use super::txn::Tx;
use crate::domain::oidc::*;
use crate::domain::*;
use crate::store::error::StoreError;

pub(crate) fn to_notice(id: u64, r: LogoutRecord) -> LogoutNotice {
    LogoutNotice {
        id,
        client: r.client,
        user: r.user,
        session: PublicId(r.session),
        queued_ms: r.queued_ms,
        attempts: r.attempts,
        not_before_ms: r.not_before_ms,
    }
}

pub(crate) fn to_key(kid: &str, r: SigningKeyRecord) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.to_string(),
        sealed: r.sealed,
        created_ms: r.created_ms,
        retired_ms: r.retired_ms,
        publish_until_ms: r.publish_until_ms,
    }
}

/// The current key (no `retired_ms`) first, then the newest.
pub(crate) fn order_keys(keys: &mut [StoredSigningKey]) {
    keys.sort_by_key(|k| (k.retired_ms.is_some(), std::cmp::Reverse(k.created_ms)));
}

pub(crate) fn to_consent(user: &str, client: &str, r: ConsentRecord) -> Consent {
    Consent {
        user: user.to_string(),
        client: client.to_string(),
        scopes: r.scopes,
        granted_ms: r.granted_ms,
    }
}

impl Tx<'_> {
    pub(super) fn oidc_subject(&mut self, user: &str, fresh: String) -> Result<String, StoreError> {
        if let Some(g) = self.oidc_subjects.r()?.get(user)? {
            return Ok(g.value().to_string());
        }
        self.oidc_subjects.t()?.insert(user, fresh.as_str())?;
        Ok(fresh)
    }

    pub(super) fn give_consent(
        &mut self,
        consent: Consent,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        let rec = ConsentRecord {
            scopes: consent.scopes,
            granted_ms: consent.granted_ms,
        };
        self.oidc_consents.t()?.insert(
            (consent.user.as_str(), consent.client.as_str()),
            encode(&rec).as_slice(),
        )?;
        self.append_event(event)?;
        Ok(())
    }

    /// Withdraws `user`'s consent for `client` and revokes every grant of
    /// theirs to it. Returns whether anything was held.
    pub(super) fn disconnect_app(
        &mut self,
        user: &str,
        client: &str,
        how: &Revocation,
    ) -> Result<bool, StoreError> {
        let mut held = false;
        let removed = self
            .oidc_consents
            .t()?
            .remove((user, client))?
            .map(|g| g.value().to_vec());
        if let Some(bytes) = removed {
            let rec: ConsentRecord = decode("oidc_consents", &bytes)?;
            let consent = to_consent(user, client, rec);
            self.append_event(consent.event(false, how.ip, how.now_ms))?;
            held = true;
        }
        let mut ids: Vec<IdKey> = Vec::new();
        for row in self
            .oidc_grants_by_user
            .r()?
            .range((user, client, [0u8; 16])..=(user, client, [0xffu8; 16]))?
        {
            ids.push(row?.0.value().2);
        }
        let reason = if how.reason == RevokeReason::ByAdmin || how.actor.is_some() {
            "admin"
        } else {
            "user"
        };
        for id in ids {
            if let Some(rec) = self.load_grant(&id)? {
                self.revoke_grant(id, rec, reason, how.actor.as_deref(), how.ip, how.now_ms)?;
                held = true;
            } else {
                self.oidc_grants_by_user.t()?.remove((user, client, id))?;
            }
        }
        Ok(held)
    }

    /// A removed user's subject and consents go (their sessions, and with
    /// them their grants, are ended by the revocation that follows).
    pub(super) fn forget_oidc_user(&mut self, user: &str) -> Result<(), StoreError> {
        self.oidc_subjects.t()?.remove(user)?;
        let mut clients = Vec::new();
        for row in self.oidc_consents.r()?.range((user, "")..)? {
            let (k, _) = row?;
            let (u, c) = k.value();
            if u != user {
                break;
            }
            clients.push(c.to_string());
        }
        for c in clients {
            self.oidc_consents.t()?.remove((user, c.as_str()))?;
        }
        Ok(())
    }

    /// Queues a logout notice for `client`, due now. Past
    /// [`MAX_LOGOUT_NOTICES`] the oldest notice is dropped.
    pub(super) fn queue_logout(
        &mut self,
        client: String,
        user: &str,
        session: IdKey,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let id = match self.meta.get(OIDC_NEXT_LOGOUT_KEY)? {
            Some(g) => {
                let b: [u8; 8] = g.value().try_into().map_err(|_| StoreError::Corrupt {
                    table: "meta",
                    reason: format!("{OIDC_NEXT_LOGOUT_KEY} is not 8 bytes"),
                })?;
                u64::from_be_bytes(b)
            }
            None => 1,
        };
        self.meta
            .insert(OIDC_NEXT_LOGOUT_KEY, (id + 1).to_be_bytes().as_slice())?;
        let rec = LogoutRecord {
            client,
            user: user.to_string(),
            session,
            queued_ms: now_ms,
            attempts: 0,
            not_before_ms: now_ms,
        };
        self.oidc_logouts.t()?.insert(id, encode(&rec).as_slice())?;
        self.oidc_logouts_due.t()?.insert((now_ms, id), ())?;
        while self.oidc_logouts.r()?.len()? > MAX_LOGOUT_NOTICES as u64 {
            let oldest = self.oidc_logouts.t()?.pop_first()?.map(|(k, v)| {
                let rec = decode::<LogoutRecord>("oidc_logouts", v.value());
                (k.value(), rec)
            });
            let Some((old, rec)) = oldest else { break };
            let rec = rec?;
            self.oidc_logouts_due
                .t()?
                .remove((rec.not_before_ms, old))?;
            tracing::warn!(
                client = %rec.client,
                user = %rec.user,
                max = MAX_LOGOUT_NOTICES,
                "too many back-channel logouts waiting; the oldest is dropped unsent"
            );
        }
        Ok(())
    }

    /// Records one send of notice `id`. Returns whether the notice was
    /// still queued (`event` is appended either way: the send happened).
    pub(super) fn logout_attempted(
        &mut self,
        id: u64,
        attempt: LogoutAttempt,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        let found = self
            .oidc_logouts
            .r()?
            .get(id)?
            .map(|g| decode::<LogoutRecord>("oidc_logouts", g.value()))
            .transpose()?;
        if let Some(mut rec) = found.clone() {
            self.oidc_logouts_due.t()?.remove((rec.not_before_ms, id))?;
            match attempt {
                LogoutAttempt::Done | LogoutAttempt::GaveUp => {
                    self.oidc_logouts.t()?.remove(id)?;
                }
                LogoutAttempt::Retry { not_before_ms } => {
                    rec.attempts = rec.attempts.saturating_add(1);
                    rec.not_before_ms = not_before_ms;
                    self.oidc_logouts.t()?.insert(id, encode(&rec).as_slice())?;
                    self.oidc_logouts_due.t()?.insert((not_before_ms, id), ())?;
                }
            }
        }
        if let Some(ev) = event {
            self.append_event(ev)?;
        }
        Ok(found.is_some())
    }

    fn signing_keys_tx(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut keys = Vec::new();
        for row in self.oidc_signing_keys.r()?.iter()? {
            let (k, v) = row?;
            keys.push(to_key(k.value(), decode("oidc_signing_keys", v.value())?));
        }
        order_keys(&mut keys);
        Ok(keys)
    }

    fn put_signing_key(&mut self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let rec = SigningKeyRecord {
            sealed: key.sealed.clone(),
            created_ms: key.created_ms,
            retired_ms: key.retired_ms,
            publish_until_ms: key.publish_until_ms,
        };
        self.oidc_signing_keys
            .t()?
            .insert(key.kid.as_str(), encode(&rec).as_slice())?;
        Ok(())
    }

    pub(super) fn add_signing_key(
        &mut self,
        mut key: StoredSigningKey,
        expect_current: Option<String>,
        publish_until_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredSigningKey>, StoreError> {
        let keys = self.signing_keys_tx()?;
        let current = keys.iter().find(|k| k.retired_ms.is_none());
        if current.map(|k| k.kid.as_str()) != expect_current.as_deref() {
            return Ok(keys);
        }
        if let Some(current) = current {
            let mut retired = current.clone();
            retired.retired_ms = Some(now_ms);
            retired.publish_until_ms = Some(publish_until_ms);
            self.put_signing_key(&retired)?;
        }
        for k in &keys {
            if k.retired_ms.is_some() && k.publish_until_ms.is_some_and(|until| until < now_ms) {
                self.oidc_signing_keys.t()?.remove(k.kid.as_str())?;
            }
        }
        key.retired_ms = None;
        key.publish_until_ms = None;
        self.put_signing_key(&key)?;
        self.signing_keys_tx()
    }
}

impl Tx<'_> {
    /// Removes up to `limit` expired codes and up to `limit` grants whose
    /// tokens have all expired, earliest first. Returns both counts and
    /// whether more remain.
    pub fn sweep_oidc(
        &mut self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(usize, usize, bool), StoreError> {
        let mut more = false;
        let mut codes = Vec::new();
        for row in self
            .oidc_codes_by_expiry
            .r()?
            .range(..=(now_ms, [0xff; 32]))?
        {
            if codes.len() == limit {
                more = true;
                break;
            }
            codes.push(row?.0.value());
        }
        for &(expires, hash) in &codes {
            if let Some(rec) = self.load_code(&hash)? {
                self.oidc_codes_by_session
                    .t()?
                    .remove((rec.auth.session, expires, hash))?;
            }
            self.oidc_codes.t()?.remove(hash)?;
            self.oidc_codes_by_expiry.t()?.remove((expires, hash))?;
        }
        let mut grants = Vec::new();
        for row in self
            .oidc_grants_by_expiry
            .r()?
            .range(..=(now_ms, [0xff; 16]))?
        {
            if grants.len() == limit {
                more = true;
                break;
            }
            grants.push(row?.0.value());
        }
        for &(expires, id) in &grants {
            match self.load_grant(&id)? {
                Some(rec) => self.drop_grant(id, &rec)?,
                None => {
                    tracing::warn!(grant = %GrantId(id), "orphan grant expiry entry removed");
                    self.oidc_grants_by_expiry.t()?.remove((expires, id))?;
                }
            }
        }
        Ok((codes.len(), grants.len(), more))
    }
}
