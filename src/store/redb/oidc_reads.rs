//! The OpenID Connect provider's reads from the redb file: token lookups
//! (userinfo, introspection) from a cached read snapshot like the session
//! lookups, and the rest (consents, connected apps, logouts due, signing
//! keys, subjects) each in one read transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::ReadableTable;

use super::codec::decode;
use super::oidc::to_auth;
use super::oidc_state::{order_keys, to_consent, to_key, to_notice};
use super::records::{ConsentRecord, GrantRecord, LogoutRecord, OidcTokenRecord, SessionRecord};
use super::tables::*;
use super::{Store, sessions};
use crate::domain::oidc::*;
use crate::domain::*;
use crate::store::error::StoreError;

/// The tables a token lookup reads, of one read snapshot: `oidc_tokens`,
/// `oidc_grants`, and the sessions with their index by user (a grant's
/// tokens are valid only while its session is live, even before the sweep
/// removes an expired one).
#[derive(Clone)]
pub(super) struct Tables {
    tokens: Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>,
    grants: Arc<redb::ReadOnlyTable<IdKey, &'static [u8]>>,
    sessions: Arc<redb::ReadOnlyTable<HashKey, &'static [u8]>>,
    by_user: Arc<redb::ReadOnlyTable<(&'static str, u64, HashKey), ()>>,
}

impl Tables {
    fn open(txn: &redb::ReadTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            tokens: Arc::new(txn.open_table(OIDC_TOKENS)?),
            grants: Arc::new(txn.open_table(OIDC_GRANTS)?),
            sessions: Arc::new(txn.open_table(SESSIONS)?),
            by_user: Arc::new(txn.open_table(SESSIONS_BY_USER)?),
        })
    }

    /// Whether `user`'s session `id` is live at `now_ms` (a range of the
    /// user's sessions, bounded by the per-user cap).
    fn session_live(&self, user: &str, id: IdKey, now_ms: u64) -> Result<bool, StoreError> {
        let (lo, hi) = sessions::user_range(user);
        for row in self.by_user.range(lo..=hi)? {
            let (k, _) = row?;
            let Some(g) = self.sessions.get(k.value().2)? else {
                continue;
            };
            let rec: SessionRecord = decode("sessions", g.value())?;
            if rec.public_id == id {
                return Ok(rec.deadline_ms() > now_ms);
            }
        }
        Ok(false)
    }
}

/// [`Tables`] shared while the store's generation is unchanged (see
/// `Inner::sessions_snapshot`).
pub(super) struct OidcSnapshot {
    generation: u64,
    tables: Tables,
}

impl Store {
    /// The token tables at the latest commit: the shared snapshot when it is
    /// current, else a fresh one (shared from then on; writable handles
    /// only, as only they know every commit).
    fn oidc_tables(&self) -> Result<Tables, StoreError> {
        if self.inner.read_only {
            return Tables::open(&self.read()?);
        }
        // Read before taking the snapshot: a commit racing this lookup
        // makes the cached generation stale, never a stale snapshot current.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let mut cached = self
            .inner
            .oidc_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref().filter(|s| s.generation == generation) {
            return Ok(s.tables.clone());
        }
        let tables = Tables::open(&self.read()?)?;
        *cached = Some(OidcSnapshot {
            generation,
            tables: tables.clone(),
        });
        Ok(tables)
    }

    /// The live access or refresh token with this hash (a retired refresh
    /// token is not live, nor one whose session has ended).
    pub fn oidc_token(
        &self,
        hash: TokenHash,
        now_ms: u64,
    ) -> Result<Option<OidcToken>, StoreError> {
        let t = self.oidc_tables()?;
        let Some(g) = t.tokens.get(hash.0)? else {
            return Ok(None);
        };
        let rec: OidcTokenRecord = decode("oidc_tokens", g.value())?;
        if rec.retired || rec.expires_ms <= now_ms {
            return Ok(None);
        }
        let Some(g) = t.grants.get(rec.grant)? else {
            return Ok(None);
        };
        let grant: GrantRecord = decode("oidc_grants", g.value())?;
        if !t.session_live(&grant.auth.user, grant.auth.session, now_ms)? {
            return Ok(None);
        }
        let t = rec;
        let mut auth = to_auth(grant.auth);
        if let Some(scopes) = t.scopes {
            auth.scopes = scopes;
        }
        Ok(Some(OidcToken {
            kind: if t.kind == 0 {
                OidcTokenKind::Access
            } else {
                OidcTokenKind::Refresh
            },
            grant: GrantId(t.grant),
            auth,
            issued_ms: t.issued_ms,
            expires_ms: t.expires_ms,
        }))
    }

    pub fn oidc_consent(&self, user: &str, client: &str) -> Result<Option<Consent>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(OIDC_CONSENTS)?;
        let Some(g) = t.get((user, client))? else {
            return Ok(None);
        };
        let rec: ConsentRecord = decode("oidc_consents", g.value())?;
        Ok(Some(to_consent(user, client, rec)))
    }

    /// The apps `user` is connected to (a consent or a live grant), by
    /// client id. Bounded by the user's consents and grants, which die with
    /// their sessions (capped per user).
    pub fn connected_apps(&self, user: &str, now_ms: u64) -> Result<Vec<ConnectedApp>, StoreError> {
        let txn = self.read()?;
        let mut apps: BTreeMap<String, ConnectedApp> = BTreeMap::new();
        let blank = |client: &str| ConnectedApp {
            client: client.to_string(),
            consent: None,
            sessions: Vec::new(),
            last_issued_ms: 0,
        };
        for row in txn.open_table(OIDC_CONSENTS)?.range((user, "")..)? {
            let (k, v) = row?;
            let (u, c) = k.value();
            if u != user {
                break;
            }
            let rec: ConsentRecord = decode("oidc_consents", v.value())?;
            apps.entry(c.to_string())
                .or_insert_with(|| blank(c))
                .consent = Some(to_consent(user, c, rec));
        }
        let grants = txn.open_table(OIDC_GRANTS)?;
        let live = Tables::open(&txn)?;
        for row in txn
            .open_table(OIDC_GRANTS_BY_USER)?
            .range((user, "", [0u8; 16])..)?
        {
            let (k, _) = row?;
            let (u, c, id) = k.value();
            if u != user {
                break;
            }
            let Some(g) = grants.get(id)? else { continue };
            let rec: GrantRecord = decode("oidc_grants", g.value())?;
            if rec.expires_ms <= now_ms
                || !live.session_live(&rec.auth.user, rec.auth.session, now_ms)?
            {
                continue;
            }
            let app = apps.entry(c.to_string()).or_insert_with(|| blank(c));
            let session = PublicId(rec.auth.session);
            if !app.sessions.contains(&session) {
                app.sessions.push(session);
            }
            app.last_issued_ms = app.last_issued_ms.max(rec.last_issued_ms);
        }
        Ok(apps.into_values().collect())
    }

    /// Up to `limit` logout notices due at `now_ms`, earliest due first.
    pub fn logouts_due(&self, now_ms: u64, limit: usize) -> Result<Vec<LogoutNotice>, StoreError> {
        let txn = self.read()?;
        let notices = txn.open_table(OIDC_LOGOUTS)?;
        let mut out = Vec::new();
        for row in txn
            .open_table(OIDC_LOGOUTS_DUE)?
            .range(..=(now_ms, u64::MAX))?
        {
            if out.len() >= limit {
                break;
            }
            let (_, id) = row?.0.value();
            if let Some(g) = notices.get(id)? {
                let rec: LogoutRecord = decode("oidc_logouts", g.value())?;
                out.push(to_notice(id, rec));
            }
        }
        Ok(out)
    }

    /// Every stored signing key, the current one first.
    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let txn = self.read()?;
        let mut keys = Vec::new();
        for row in txn.open_table(OIDC_SIGNING_KEYS)?.iter()? {
            let (k, v) = row?;
            keys.push(to_key(k.value(), decode("oidc_signing_keys", v.value())?));
        }
        order_keys(&mut keys);
        Ok(keys)
    }

    /// `user`'s stored `sub`, if any.
    pub fn oidc_subject_of(&self, user: &str) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(OIDC_SUBJECTS)?;
        Ok(t.get(user)?.map(|g| g.value().to_string()))
    }
}
