//! Everything a file holds, read out whole for a move to another backend
//! (`gatehouse migrate --to-distributed`): the live state in
//! [`LiveState`], and the audit chain as stored, row by row
//! ([`Store::chain_rows`]), so that the other backend stores the same
//! record bytes and the chain continues unbroken.
//!
//! Reads only: each call is one read snapshot of a file no server holds.

use redb::ReadableTable;

use super::codec::decode;
use super::events::Lookup;
use super::records::{AccessTokenRecord, SessionRecord};
use super::tables::*;
use super::{Store, bans, check, sessions, tokens};
use crate::domain::{AccessTokenInfo, Ban, EventId, FactorSet, Session, TokenHash};
use crate::store::chain::{ChainAnchor, ChainHead, EventRecord};
use crate::store::error::StoreError;

/// The live state of a file at one moment: what has not run out by then.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Sessions with the hash of their token.
    pub sessions: Vec<(TokenHash, Session)>,
    /// Access tokens with their hash.
    pub tokens: Vec<(TokenHash, AccessTokenInfo)>,
    /// Each user's second factors (TOTP secrets stay sealed).
    pub factors: Vec<(String, FactorSet)>,
    /// Bans not yet run out.
    pub bans: Vec<Ban>,
}

/// One event as the chain stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub id: EventId,
    /// Empty for none.
    pub user: String,
    /// `EventKind::code`.
    pub kind: u8,
    pub ip: Option<std::net::IpAddr>,
    /// The record bytes the chain hash covers.
    pub record: Vec<u8>,
}

impl Store {
    /// The live state at `now_ms`, in one snapshot.
    pub fn live_state(&self, now_ms: u64) -> Result<LiveState, StoreError> {
        let txn = self.read()?;
        let mut out = LiveState::default();
        for row in txn.open_table(SESSIONS)?.iter()? {
            let (k, v) = row?;
            let rec: SessionRecord = decode("sessions", v.value())?;
            if rec.deadline_ms() > now_ms {
                out.sessions
                    .push((TokenHash(k.value()), sessions::to_session(rec)));
            }
        }
        for row in txn.open_table(ACCESS_TOKENS)?.iter()? {
            let (k, v) = row?;
            let rec: AccessTokenRecord = decode("access_tokens", v.value())?;
            if rec.expires_ms > now_ms {
                out.tokens
                    .push((TokenHash(k.value()), tokens::to_info(rec)));
            }
        }
        for row in txn.open_table(FACTORS)?.iter()? {
            let (k, v) = row?;
            let set: FactorSet = decode("factors", v.value())?;
            out.factors.push((k.value().to_string(), set));
        }
        for row in txn.open_table(BANS)?.iter()? {
            let (k, v) = row?;
            let ban = bans::to_ban(k.value(), v.value())?;
            if ban.until_ms > now_ms {
                out.bans.push(ban);
            }
        }
        Ok(out)
    }

    /// The chain's head and anchor.
    pub fn chain_state(&self) -> Result<(ChainHead, ChainAnchor), StoreError> {
        check::read_head(&self.read()?)
    }

    /// Up to `limit` events after `after` (0: from the oldest kept), in id
    /// order, as stored.
    pub fn chain_rows(&self, after: EventId, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
        let txn = self.read()?;
        let events = txn.open_table(EVENTS)?;
        let by_user = txn.open_table(EVENTS_BY_USER)?;
        let mut lookup = Lookup::new(&events, &by_user);
        let mut out = Vec::new();
        for row in events.range(after.0.saturating_add(1)..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let (id, user) = (k.value(), v.value());
            let Some((_, bytes)) = lookup.find(id, Some(user))? else {
                return Err(StoreError::Corrupt {
                    table: EVENT_RECORDS,
                    reason: format!("event {id} has no record in the buckets of {user:?}"),
                });
            };
            let rec: EventRecord = decode(EVENT_RECORDS, bytes)?;
            out.push(ChainRow {
                id: EventId(id),
                user: user.to_string(),
                kind: rec.kind,
                ip: rec.ip,
                record: bytes.to_vec(),
            });
        }
        Ok(out)
    }
}
