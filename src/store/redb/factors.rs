//! Second factors and pending sign-ins in the file: a user's `FactorSet`
//! row with its passkey index, and pending sign-ins with their TTL index.
//! Every change to a row writes its index entries in the same transaction.

use std::collections::HashSet;

use redb::{ReadTransaction, ReadableTable};

use super::codec::{decode, encode};
use super::records::PendingRecord;
use super::tables::*;
use super::txn::Tx;
use crate::domain::*;
use crate::store::chain::hex;
use crate::store::error::StoreError;
use crate::store::reports::CheckReport;

pub(crate) fn to_pending(rec: PendingRecord) -> PendingSignIn {
    PendingSignIn {
        user: rec.user,
        enroll: rec.enroll,
        remember_me: rec.remember_me,
        created_ms: rec.created_ms,
        expires_ms: rec.expires_ms,
        ip: rec.ip,
        user_agent: rec.user_agent,
    }
}

fn to_record(p: PendingSignIn) -> PendingRecord {
    PendingRecord {
        user: truncate(p.user, MAX_USER),
        enroll: p.enroll,
        remember_me: p.remember_me,
        created_ms: p.created_ms,
        expires_ms: p.expires_ms,
        ip: p.ip,
        user_agent: p.user_agent.map(|u| truncate(u, MAX_USER_AGENT)),
    }
}

/// A user's factors as stored (nothing enrolled: the default).
pub(crate) fn factors_in(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    user: &str,
) -> Result<FactorSet, StoreError> {
    match table.get(user)? {
        Some(g) => decode("factors", g.value()),
        None => Ok(FactorSet::default()),
    }
}

impl Tx<'_> {
    /// Applies `change` to `user`'s factors; on success writes the row and
    /// its passkey index entries and appends `event` (with `remaining` for a
    /// spent recovery code). A refusal writes nothing.
    pub fn change_factors(
        &mut self,
        user: &str,
        change: FactorChange,
        event: Option<NewEvent>,
        now_ms: u64,
    ) -> Result<Result<Applied, FactorRefusal>, StoreError> {
        let before = factors_in(self.factors.r()?, user)?;
        let mut after = before.clone();
        let spends_code = matches!(change, FactorChange::UseRecovery { .. });
        let applied = match after.apply(change, now_ms) {
            Ok(a) => a,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let old_ids: HashSet<&[u8]> = before
            .passkeys
            .iter()
            .map(|p| p.credential_id.as_slice())
            .collect();
        let new_ids: HashSet<&[u8]> = after
            .passkeys
            .iter()
            .map(|p| p.credential_id.as_slice())
            .collect();
        // Credential ids are unique across users: the index names one owner.
        for added in new_ids.difference(&old_ids) {
            if self.passkeys.t()?.get(*added)?.is_some() {
                return Ok(Err(FactorRefusal::PasskeyExists));
            }
        }
        for gone in old_ids.difference(&new_ids) {
            self.passkeys.t()?.remove(*gone)?;
        }
        for added in new_ids.difference(&old_ids) {
            self.passkeys.t()?.insert(*added, user)?;
        }
        if after.is_empty() {
            self.factors.t()?.remove(user)?;
        } else {
            self.factors.t()?.insert(user, encode(&after).as_slice())?;
        }
        if let Some(mut ev) = event {
            if spends_code {
                ev = ev.detail("remaining", applied.recovery_left.to_string());
            }
            self.append_event(ev)?;
        }
        Ok(Ok(applied))
    }

    /// Stores a pending sign-in under a fresh token, returned once. When
    /// the user then holds more than `max_per_user`, the oldest go: one
    /// password cannot fill the table.
    pub fn create_pending(
        &mut self,
        p: PendingSignIn,
        max_per_user: usize,
    ) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate();
        let hash = token.hash().0;
        let rec = to_record(p);
        self.pending.t()?.insert(hash, encode(&rec).as_slice())?;
        self.pending_by_expiry
            .t()?
            .insert((rec.expires_ms, hash), ())?;
        self.pending_by_user
            .t()?
            .insert((rec.user.as_str(), rec.created_ms, hash), ())?;
        let user = rec.user.as_str();
        let range = (user, 0, [0u8; 32])..=(user, u64::MAX, [0xff; 32]);
        let held = self.pending_by_user.t()?.range(range.clone())?.count();
        let excess = held.saturating_sub(max_per_user.max(1));
        let mut oldest = Vec::with_capacity(excess);
        for row in self.pending_by_user.t()?.range(range)?.take(excess) {
            oldest.push(row?.0.value().2);
        }
        for h in oldest {
            self.remove_pending(&h)?;
        }
        Ok(token)
    }

    /// Removes the pending sign-in `hash` and its index entries; returns
    /// its record.
    fn remove_pending(&mut self, hash: &HashKey) -> Result<Option<PendingRecord>, StoreError> {
        let Some(rec) = self.load_pending(hash)? else {
            return Ok(None);
        };
        self.pending.t()?.remove(hash)?;
        self.pending_by_expiry
            .t()?
            .remove((rec.expires_ms, *hash))?;
        self.pending_by_user
            .t()?
            .remove((rec.user.as_str(), rec.created_ms, *hash))?;
        Ok(Some(rec))
    }

    fn load_pending(&self, hash: &HashKey) -> Result<Option<PendingRecord>, StoreError> {
        match self.pending.r()?.get(hash)? {
            Some(g) => Ok(Some(decode("pending_signins", g.value())?)),
            None => Ok(None),
        }
    }

    /// Removes a pending sign-in and returns it if it was live at `now_ms`.
    pub fn take_pending(
        &mut self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let Some(rec) = self.remove_pending(&hash.0)? else {
            return Ok(None);
        };
        Ok((rec.expires_ms > now_ms).then(|| to_pending(rec)))
    }

    /// Removes up to `limit` pending sign-ins past their deadline.
    pub fn sweep_pending(
        &mut self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(usize, bool), StoreError> {
        let mut due = Vec::new();
        let mut more = false;
        for row in self.pending_by_expiry.t()?.range(..=(now_ms, [0xff; 32]))? {
            if due.len() == limit {
                more = true;
                break;
            }
            due.push(row?.0.value());
        }
        for (deadline, hash) in &due {
            if self.remove_pending(hash)?.is_none() {
                // An index entry without its row: removed all the same.
                self.pending_by_expiry.t()?.remove((*deadline, *hash))?;
            }
        }
        Ok((due.len(), more))
    }
}

/// The second-factor tables agree with their indexes.
pub(crate) fn check(txn: &ReadTransaction, r: &mut CheckReport) -> Result<(), StoreError> {
    let factors = txn.open_table(FACTORS)?;
    let passkeys = txn.open_table(PASSKEYS_BY_CREDENTIAL)?;
    let mut owned: HashSet<(Vec<u8>, String)> = HashSet::new();
    for row in factors.iter()? {
        let (k, v) = row?;
        let user = k.value().to_string();
        r.users_with_factors += 1;
        match decode::<FactorSet>("factors", v.value()) {
            Ok(set) => {
                for p in set.passkeys {
                    owned.insert((p.credential_id, user.clone()));
                }
            }
            Err(e) => r.problem(format!("factors of {user:?}: {e}")),
        }
    }
    let mut indexed = 0;
    for row in passkeys.iter()? {
        let (k, v) = row?;
        indexed += 1;
        if !owned.contains(&(k.value().to_vec(), v.value().to_string())) {
            r.problem(format!(
                "passkeys_by_credential entry {} for {:?} without its passkey",
                &hex(k.value())[..8.min(2 * k.value().len())],
                v.value()
            ));
        }
    }
    if indexed != owned.len() {
        r.problem(format!(
            "{} passkeys but {indexed} passkeys_by_credential entries",
            owned.len()
        ));
    }

    let pending = txn.open_table(PENDING)?;
    let by_expiry = txn.open_table(PENDING_BY_EXPIRY)?;
    let by_user = txn.open_table(PENDING_BY_USER)?;
    let mut keys = HashSet::new();
    let mut user_keys = HashSet::new();
    for row in pending.iter()? {
        let (k, v) = row?;
        r.pending_signins += 1;
        match decode::<PendingRecord>("pending_signins", v.value()) {
            Ok(rec) => {
                keys.insert((rec.expires_ms, k.value()));
                user_keys.insert((rec.user, rec.created_ms, k.value()));
            }
            Err(e) => r.problem(format!("pending sign-in {}: {e}", &hex(&k.value())[..8])),
        }
    }
    let mut n = 0;
    for row in by_expiry.iter()? {
        let (k, _) = row?;
        n += 1;
        if !keys.contains(&k.value()) {
            r.problem("pending_by_expiry entry without its pending sign-in".to_string());
        }
    }
    if n != keys.len() {
        r.problem(format!(
            "{} pending sign-ins but {n} pending_by_expiry entries",
            keys.len()
        ));
    }
    let mut n = 0;
    for row in by_user.iter()? {
        let (k, _) = row?;
        n += 1;
        let (user, created, hash) = k.value();
        if !user_keys.contains(&(user.to_string(), created, hash)) {
            r.problem("pending_by_user entry without its pending sign-in".to_string());
        }
    }
    if n != user_keys.len() {
        r.problem(format!(
            "{} pending sign-ins but {n} pending_by_user entries",
            user_keys.len()
        ));
    }
    Ok(())
}

impl super::Store {
    /// `user`'s factors (the default when nothing is enrolled).
    pub fn factors_of(&self, user: &str) -> Result<FactorSet, StoreError> {
        let txn = self.read()?;
        factors_in(&txn.open_table(FACTORS)?, user)
    }

    /// The user whose passkey has this credential id.
    pub fn passkey_owner(&self, credential_id: &[u8]) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(PASSKEYS_BY_CREDENTIAL)?;
        Ok(t.get(credential_id)?.map(|g| g.value().to_string()))
    }

    /// The pending sign-in holding this token, if live at `now_ms`.
    pub fn pending(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(PENDING)?;
        let Some(g) = t.get(hash.0)? else {
            return Ok(None);
        };
        let rec: PendingRecord = decode("pending_signins", g.value())?;
        Ok((rec.expires_ms > now_ms).then(|| to_pending(rec)))
    }
}
