//! The whole-file check of the OpenID Connect tables (part of
//! `check.rs`): every code and grant has exactly its index entries and no
//! entry is left without its row; every token a grant lists has its row
//! naming that grant, and no token row is left without one; every grant's
//! session exists; every logout notice has its due entry and the reverse;
//! every stored value decodes, and at most one signing key is current.

use std::collections::{BTreeSet, HashSet};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::codec::decode;
use super::records::*;
use super::tables::*;
use crate::domain::oidc::GrantId;
use crate::store::error::StoreError;
use crate::store::reports::CheckReport;

/// Every key of an index table whose keys own their values.
macro_rules! keys {
    ($txn:expr, $def:expr) => {{
        let mut out = BTreeSet::new();
        for row in $txn.open_table($def)?.iter()? {
            out.insert(row?.0.value());
        }
        out
    }};
}

fn same<T: Ord>(r: &mut CheckReport, table: &str, found: BTreeSet<T>, want: BTreeSet<T>) {
    if found != want {
        let extra = found.difference(&want).count();
        let missing = want.difference(&found).count();
        r.problem(format!(
            "{table}: {extra} entries without their row, {missing} rows without their entry"
        ));
    }
}

pub(super) fn check(txn: &ReadTransaction, r: &mut CheckReport) -> Result<(), StoreError> {
    let mut want = BTreeSet::new();
    let mut by_session = BTreeSet::new();
    for row in txn.open_table(OIDC_CODES)?.iter()? {
        let (k, v) = row?;
        match decode::<CodeRecord>("oidc_codes", v.value()) {
            Ok(rec) => {
                want.insert((rec.expires_ms, k.value()));
                by_session.insert((rec.auth.session, rec.expires_ms, k.value()));
            }
            Err(e) => r.problem(format!("oidc code: {e}")),
        }
    }
    same(
        r,
        "oidc_codes_by_expiry",
        keys!(txn, OIDC_CODES_BY_EXPIRY),
        want,
    );
    same(
        r,
        "oidc_codes_by_session",
        keys!(txn, OIDC_CODES_BY_SESSION),
        by_session,
    );

    let mut sessions = HashSet::new();
    for row in txn.open_table(SESSIONS)?.iter()? {
        if let Ok(rec) = decode::<SessionRecord>("sessions", row?.1.value()) {
            sessions.insert(rec.public_id);
        }
    }
    let tokens = txn.open_table(OIDC_TOKENS)?;
    let (mut by_expiry, mut by_session) = (BTreeSet::new(), BTreeSet::new());
    let mut by_user: BTreeSet<(String, String, IdKey)> = BTreeSet::new();
    let mut listed = 0u64;
    for row in txn.open_table(OIDC_GRANTS)?.iter()? {
        let (k, v) = row?;
        let id = k.value();
        let g = match decode::<GrantRecord>("oidc_grants", v.value()) {
            Ok(g) => g,
            Err(e) => {
                r.problem(format!("oidc grant {}: {e}", GrantId(id)));
                continue;
            }
        };
        by_expiry.insert((g.expires_ms, id));
        by_session.insert((g.auth.session, id));
        by_user.insert((g.auth.user.clone(), g.auth.client.clone(), id));
        if !sessions.contains(&g.auth.session) {
            r.problem(format!("oidc grant {} outlives its session", GrantId(id)));
        }
        let lists = [
            (&g.access[..], 0u8, false),
            (g.refresh.as_slice(), 1, false),
            (&g.retired[..], 1, true),
        ];
        let mut latest = 0;
        for (list, kind, retired) in lists {
            for &(h, expires) in list {
                listed += 1;
                latest = latest.max(expires);
                let row = tokens
                    .get(h)?
                    .map(|t| decode::<OidcTokenRecord>("oidc_tokens", t.value()))
                    .transpose()?;
                let fits = row.is_some_and(|t| {
                    t.grant == id
                        && t.kind == kind
                        && t.retired == retired
                        && t.expires_ms == expires
                });
                if !fits {
                    r.problem(format!(
                        "oidc grant {}: a token without its row",
                        GrantId(id)
                    ));
                }
            }
        }
        if latest != g.expires_ms {
            r.problem(format!(
                "oidc grant {}: expiry is not its last token's",
                GrantId(id)
            ));
        }
    }
    same(
        r,
        "oidc_grants_by_expiry",
        keys!(txn, OIDC_GRANTS_BY_EXPIRY),
        by_expiry,
    );
    same(
        r,
        "oidc_grants_by_session",
        keys!(txn, OIDC_GRANTS_BY_SESSION),
        by_session,
    );
    let mut found = BTreeSet::new();
    for row in txn.open_table(OIDC_GRANTS_BY_USER)?.iter()? {
        let (k, _) = row?;
        let (u, c, id) = k.value();
        found.insert((u.to_string(), c.to_string(), id));
    }
    same(r, "oidc_grants_by_user", found, by_user);
    let rows = tokens.len()?;
    if rows != listed {
        r.problem(format!(
            "oidc_tokens has {rows} rows for {listed} tokens of grants"
        ));
    }

    let mut due = BTreeSet::new();
    for row in txn.open_table(OIDC_LOGOUTS)?.iter()? {
        let (k, v) = row?;
        match decode::<LogoutRecord>("oidc_logouts", v.value()) {
            Ok(n) => {
                due.insert((n.not_before_ms, k.value()));
            }
            Err(e) => r.problem(format!("logout notice {}: {e}", k.value())),
        }
    }
    same(r, "oidc_logouts_due", keys!(txn, OIDC_LOGOUTS_DUE), due);

    for row in txn.open_table(OIDC_CONSENTS)?.iter()? {
        if let Err(e) = decode::<ConsentRecord>("oidc_consents", row?.1.value()) {
            r.problem(format!("oidc consent: {e}"));
        }
    }
    let mut current = 0;
    for row in txn.open_table(OIDC_SIGNING_KEYS)?.iter()? {
        match decode::<SigningKeyRecord>("oidc_signing_keys", row?.1.value()) {
            Ok(k) => current += usize::from(k.retired_ms.is_none()),
            Err(e) => r.problem(format!("signing key: {e}")),
        }
    }
    if current > 1 {
        r.problem(format!("{current} signing keys are current"));
    }
    Ok(())
}
