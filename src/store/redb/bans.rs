//! Bans on a user or a client IP: added by regulation or an operator, lifted by
//! an operator or when they run out. Each change is an audit event.

use std::net::IpAddr;

use redb::ReadableTable;

use super::codec::{decode, encode};
use super::records::BanRecord;
use super::txn::Tx;
use crate::domain::*;
use crate::store::error::StoreError;

pub(crate) fn to_ban(key: &str, bytes: &[u8]) -> Result<Ban, StoreError> {
    let rec: BanRecord = decode("bans", bytes)?;
    let subject = BanSubject::from_key(key).ok_or_else(|| StoreError::Corrupt {
        table: "bans",
        reason: format!("bad ban key {key:?}"),
    })?;
    Ok(Ban {
        subject,
        created_ms: rec.created_ms,
        until_ms: rec.until_ms,
        reason: rec.reason,
    })
}

impl Tx<'_> {
    /// Adds (or extends) a ban and records `ban.added`.
    pub fn add_ban(
        &mut self,
        subject: &BanSubject,
        until_ms: u64,
        reason: &str,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let rec = BanRecord {
            created_ms: now_ms,
            until_ms,
            reason: truncate(reason.to_string(), MAX_DETAIL_VALUE),
        };
        self.bans
            .t()?
            .insert(subject.key().as_str(), encode(&rec).as_slice())?;
        let ev = NewBan {
            subject: subject.clone(),
            until_ms,
            reason: rec.reason.clone(),
            ip,
            now_ms,
        }
        .event();
        self.append_event(ev)?;
        Ok(())
    }

    /// Lifts a ban. Returns false when there was none.
    pub fn lift_ban(
        &mut self,
        subject: &BanSubject,
        reason: &str,
        actor: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        if self.bans.t()?.remove(subject.key().as_str())?.is_none() {
            return Ok(false);
        }
        self.append_event(ban_lifted_event(subject, reason, actor, now_ms))?;
        Ok(true)
    }

    /// Removes up to `limit` bans that ran out, the earliest to end first
    /// (then by key), recording `ban.lifted`: the order of a deadline
    /// index, as every backend sweeps. The table has no such index, so the
    /// whole of it is read (bans are few).
    pub fn sweep_bans(&mut self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        for row in self.bans.t()?.iter()? {
            let (k, v) = row?;
            let rec: BanRecord = decode("bans", v.value())?;
            if rec.until_ms <= now_ms {
                due.push((rec.until_ms, k.value().to_string()));
            }
        }
        due.sort();
        due.truncate(limit);
        let due: Vec<String> = due.into_iter().map(|(_, k)| k).collect();
        for key in &due {
            self.bans.t()?.remove(key.as_str())?;
            if let Some(subject) = BanSubject::from_key(key) {
                self.append_event(ban_lifted_event(&subject, "expired", None, now_ms))?;
            }
        }
        Ok(due.len())
    }
}
