//! `Tx`: one write transaction with every table open, used by the writer to
//! apply a whole batch of operations before a single commit.

use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{decode, encode};
use super::commit_log::LoggedEvent;
use super::tables::*;
use crate::store::chain::ChainHead;
use crate::store::error::StoreError;

/// Every table of the schema, open in one write transaction, plus the audit
/// chain head, which is read once per batch and written back before commit.
pub(crate) struct Tx<'t> {
    pub sessions: Table<'t, HashKey, &'static [u8]>,
    pub sessions_by_user: Table<'t, (&'static str, u64, HashKey), ()>,
    pub sessions_by_expiry: Table<'t, (u64, HashKey), ()>,
    pub events: Table<'t, u64, &'static str>,
    pub events_by_user: Table<'t, (&'static str, u64), &'static [u8]>,
    pub events_by_kind: Table<'t, (u8, u64), ()>,
    pub bans: Table<'t, &'static str, &'static [u8]>,
    pub access_tokens: Table<'t, HashKey, &'static [u8]>,
    pub access_tokens_by_user: Table<'t, (&'static str, u64, HashKey), ()>,
    pub access_tokens_by_expiry: Table<'t, (u64, HashKey), ()>,
    pub meta: Table<'t, &'static str, &'static [u8]>,
    pub factors: Table<'t, &'static str, &'static [u8]>,
    pub passkeys: Table<'t, &'static [u8], &'static str>,
    pub pending: Table<'t, HashKey, &'static [u8]>,
    pub pending_by_expiry: Table<'t, (u64, HashKey), ()>,
    pub pending_by_user: Table<'t, (&'static str, u64, HashKey), ()>,
    pub head: ChainHead,
    head_loaded: ChainHead,
    /// When set, every appended event is also recorded here, for the
    /// commit log (`commit_log.rs`).
    pub logged: Option<Vec<LoggedEvent>>,
}

impl<'t> Tx<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let meta = txn.open_table(META)?;
        let head = match meta.get(CHAIN_HEAD_KEY)? {
            Some(g) => decode::<ChainHead>("meta", g.value())?,
            None => ChainHead::default(),
        };
        Ok(Tx {
            sessions: txn.open_table(SESSIONS)?,
            sessions_by_user: txn.open_table(SESSIONS_BY_USER)?,
            sessions_by_expiry: txn.open_table(SESSIONS_BY_EXPIRY)?,
            events: txn.open_table(EVENTS)?,
            events_by_user: txn.open_table(EVENTS_BY_USER)?,
            events_by_kind: txn.open_table(EVENTS_BY_KIND)?,
            bans: txn.open_table(BANS)?,
            factors: txn.open_table(FACTORS)?,
            passkeys: txn.open_table(PASSKEYS_BY_CREDENTIAL)?,
            pending: txn.open_table(PENDING)?,
            pending_by_expiry: txn.open_table(PENDING_BY_EXPIRY)?,
            pending_by_user: txn.open_table(PENDING_BY_USER)?,
            access_tokens: txn.open_table(ACCESS_TOKENS)?,
            access_tokens_by_user: txn.open_table(ACCESS_TOKENS_BY_USER)?,
            access_tokens_by_expiry: txn.open_table(ACCESS_TOKENS_BY_EXPIRY)?,
            meta,
            head,
            head_loaded: head,
            logged: None,
        })
    }

    /// Writes the chain head back if events were appended. Call before commit.
    pub fn finish(mut self) -> Result<(), StoreError> {
        if self.head != self.head_loaded {
            let bytes = encode(&self.head);
            self.meta.insert(CHAIN_HEAD_KEY, bytes.as_slice())?;
        }
        Ok(())
    }
}
