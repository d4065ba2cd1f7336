//! `Tx`: one write transaction with every table at hand, used by the writer
//! to apply a whole batch of operations before a single commit. The audit
//! tables are opened with it; the others when first used ([`Lazy`]), since
//! opening a table costs redb a check of its stored definition and a batch
//! of appends needs none of them.

use std::cell::OnceCell;

use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};

use super::codec::{decode, encode};
use super::tables::*;
use crate::store::chain::ChainHead;
use crate::store::error::StoreError;

/// Every table of the schema in one write transaction, plus the audit
/// chain head, which is read once per batch and written back before commit.
pub(crate) struct Tx<'t> {
    pub sessions: Lazy<'t, HashKey, &'static [u8]>,
    pub sessions_by_user: Lazy<'t, (&'static str, u64, HashKey), ()>,
    pub sessions_by_expiry: Lazy<'t, (u64, HashKey), ()>,
    pub events: Table<'t, u64, &'static str>,
    pub events_by_user: Table<'t, (&'static str, u64), &'static [u8]>,
    pub events_by_kind: Table<'t, (u8, u64), ()>,
    pub bans: Lazy<'t, &'static str, &'static [u8]>,
    pub access_tokens: Lazy<'t, HashKey, &'static [u8]>,
    pub access_tokens_by_user: Lazy<'t, (&'static str, u64, HashKey), ()>,
    pub access_tokens_by_expiry: Lazy<'t, (u64, HashKey), ()>,
    pub meta: Table<'t, &'static str, &'static [u8]>,
    pub factors: Lazy<'t, &'static str, &'static [u8]>,
    pub passkeys: Lazy<'t, &'static [u8], &'static str>,
    pub pending: Lazy<'t, HashKey, &'static [u8]>,
    pub pending_by_expiry: Lazy<'t, (u64, HashKey), ()>,
    pub pending_by_user: Lazy<'t, (&'static str, u64, HashKey), ()>,
    pub oidc_codes: Lazy<'t, HashKey, &'static [u8]>,
    pub oidc_codes_by_expiry: Lazy<'t, (u64, HashKey), ()>,
    pub oidc_codes_by_session: Lazy<'t, (IdKey, u64, HashKey), ()>,
    pub oidc_grants: Lazy<'t, IdKey, &'static [u8]>,
    pub oidc_grants_by_expiry: Lazy<'t, (u64, IdKey), ()>,
    pub oidc_grants_by_session: Lazy<'t, (IdKey, IdKey), ()>,
    pub oidc_grants_by_user: Lazy<'t, (&'static str, &'static str, IdKey), ()>,
    pub oidc_tokens: Lazy<'t, HashKey, &'static [u8]>,
    pub oidc_consents: Lazy<'t, (&'static str, &'static str), &'static [u8]>,
    pub oidc_subjects: Lazy<'t, &'static str, &'static str>,
    pub oidc_logouts: Lazy<'t, u64, &'static [u8]>,
    pub oidc_logouts_due: Lazy<'t, (u64, u64), ()>,
    pub oidc_signing_keys: Lazy<'t, &'static str, &'static [u8]>,
    pub head: ChainHead,
    head_loaded: ChainHead,
}

impl<'t> Tx<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let (meta, head) = Self::open_head(txn)?;
        Self::open_rest(txn, meta, head)
    }

    /// Opens `meta` alone and reads the chain head from it: all that
    /// linking appends needs, before [`Tx::open_rest`] opens the others.
    pub fn open_head(
        txn: &'t WriteTransaction,
    ) -> Result<(Table<'t, &'static str, &'static [u8]>, ChainHead), StoreError> {
        let meta = txn.open_table(META)?;
        let head = match meta.get(CHAIN_HEAD_KEY)? {
            Some(g) => decode::<ChainHead>("meta", g.value())?,
            None => ChainHead::default(),
        };
        Ok((meta, head))
    }

    /// Opens every other table, with `meta` and `head` from
    /// [`Tx::open_head`].
    pub fn open_rest(
        txn: &'t WriteTransaction,
        meta: Table<'t, &'static str, &'static [u8]>,
        head: ChainHead,
    ) -> Result<Self, StoreError> {
        Ok(Tx {
            sessions: Lazy::new(txn, SESSIONS),
            sessions_by_user: Lazy::new(txn, SESSIONS_BY_USER),
            sessions_by_expiry: Lazy::new(txn, SESSIONS_BY_EXPIRY),
            events: txn.open_table(EVENTS)?,
            events_by_user: txn.open_table(EVENTS_BY_USER)?,
            events_by_kind: txn.open_table(EVENTS_BY_KIND)?,
            bans: Lazy::new(txn, BANS),
            factors: Lazy::new(txn, FACTORS),
            passkeys: Lazy::new(txn, PASSKEYS_BY_CREDENTIAL),
            pending: Lazy::new(txn, PENDING),
            pending_by_expiry: Lazy::new(txn, PENDING_BY_EXPIRY),
            pending_by_user: Lazy::new(txn, PENDING_BY_USER),
            access_tokens: Lazy::new(txn, ACCESS_TOKENS),
            access_tokens_by_user: Lazy::new(txn, ACCESS_TOKENS_BY_USER),
            access_tokens_by_expiry: Lazy::new(txn, ACCESS_TOKENS_BY_EXPIRY),
            oidc_codes: Lazy::new(txn, OIDC_CODES),
            oidc_codes_by_expiry: Lazy::new(txn, OIDC_CODES_BY_EXPIRY),
            oidc_codes_by_session: Lazy::new(txn, OIDC_CODES_BY_SESSION),
            oidc_grants: Lazy::new(txn, OIDC_GRANTS),
            oidc_grants_by_expiry: Lazy::new(txn, OIDC_GRANTS_BY_EXPIRY),
            oidc_grants_by_session: Lazy::new(txn, OIDC_GRANTS_BY_SESSION),
            oidc_grants_by_user: Lazy::new(txn, OIDC_GRANTS_BY_USER),
            oidc_tokens: Lazy::new(txn, OIDC_TOKENS),
            oidc_consents: Lazy::new(txn, OIDC_CONSENTS),
            oidc_subjects: Lazy::new(txn, OIDC_SUBJECTS),
            oidc_logouts: Lazy::new(txn, OIDC_LOGOUTS),
            oidc_logouts_due: Lazy::new(txn, OIDC_LOGOUTS_DUE),
            oidc_signing_keys: Lazy::new(txn, OIDC_SIGNING_KEYS),
            meta,
            head,
            head_loaded: head,
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

/// A table opened on first use within its write transaction.
pub(crate) struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    def: TableDefinition<'static, K, V>,
    table: OnceCell<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    fn new(txn: &'t WriteTransaction, def: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            txn,
            def,
            table: OnceCell::new(),
        }
    }

    /// The table to read, opening it the first time.
    pub fn r(&self) -> Result<&Table<'t, K, V>, StoreError> {
        if let Some(t) = self.table.get() {
            return Ok(t);
        }
        let opened = self.txn.open_table(self.def)?;
        Ok(self.table.get_or_init(|| opened))
    }

    /// The table to write, opening it the first time.
    pub fn t(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        self.r()?;
        self.table.get_mut().ok_or_else(|| {
            StoreError::Storage("internal error: a table failed to stay open".into())
        })
    }
}
