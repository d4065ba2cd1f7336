//! Whole-database checks: every index agrees with its table, and the audit hash
//! chain is intact from its anchor to its head. Used by `auditctl verify`, by
//! backups, and by the model tests after every step.

use std::collections::HashSet;

use redb::{ReadTransaction, ReadableTable};

use super::bucket;
use super::codec::decode;
use super::events::Lookup;
use super::records::{AccessTokenRecord, SessionRecord};
use super::tables::*;
use crate::domain::EventKind;
use crate::store::chain::{ChainAnchor, ChainHead, EventRecord};
use crate::store::chain::{ChainWalk, hex};
use crate::store::error::StoreError;
use crate::store::reports::CheckReport;

pub(crate) fn read_head(txn: &ReadTransaction) -> Result<(ChainHead, ChainAnchor), StoreError> {
    let meta = txn.open_table(META)?;
    let head = match meta.get(CHAIN_HEAD_KEY)? {
        Some(g) => decode("meta", g.value())?,
        None => ChainHead::default(),
    };
    let anchor = match meta.get(CHAIN_ANCHOR_KEY)? {
        Some(g) => decode("meta", g.value())?,
        None => ChainAnchor::default(),
    };
    Ok((head, anchor))
}

pub(crate) fn check(txn: &ReadTransaction) -> Result<CheckReport, StoreError> {
    let mut r = CheckReport::default();

    // Sessions and their two indexes.
    let sessions = txn.open_table(SESSIONS)?;
    let by_user = txn.open_table(SESSIONS_BY_USER)?;
    let by_expiry = txn.open_table(SESSIONS_BY_EXPIRY)?;
    let mut user_keys = HashSet::new();
    let mut expiry_keys = HashSet::new();
    for row in sessions.iter()? {
        let (k, v) = row?;
        let hash = k.value();
        r.sessions += 1;
        match decode::<SessionRecord>("sessions", v.value()) {
            Ok(rec) => {
                user_keys.insert((rec.user.clone(), rec.created_ms, hash));
                expiry_keys.insert((rec.deadline_ms(), hash));
            }
            Err(e) => r.problem(format!("session {}: {e}", &hex(&hash)[..8])),
        }
    }
    let mut n = 0;
    for row in by_user.iter()? {
        let (k, _) = row?;
        let (u, c, h) = k.value();
        n += 1;
        if !user_keys.contains(&(u.to_string(), c, h)) {
            r.problem(format!(
                "sessions_by_user entry for {u:?} without a matching session"
            ));
        }
    }
    if n != user_keys.len() {
        r.problem(format!(
            "sessions_by_user has {n} entries for {} sessions",
            user_keys.len()
        ));
    }
    let mut n = 0;
    for row in by_expiry.iter()? {
        let (k, _) = row?;
        n += 1;
        if !expiry_keys.contains(&k.value()) {
            r.problem("sessions_by_expiry entry without a matching session".to_string());
        }
    }
    if n != expiry_keys.len() {
        r.problem(format!(
            "sessions_by_expiry has {n} entries for {} sessions",
            expiry_keys.len()
        ));
    }

    // Events: the time order, the chain, and the kind index, in id order.
    let (head, anchor) = read_head(txn)?;
    r.events_appended = head.appended;
    r.events_pruned = anchor.pruned;
    r.chain_head = hex(&head.hash);
    let events = txn.open_table(EVENTS)?;
    let ev_user = txn.open_table(EVENTS_BY_USER)?;
    let ev_kind = txn.open_table(EVENTS_BY_KIND)?;
    let mut lookup = Lookup::new(&events, &ev_user);
    let mut walk = ChainWalk::from(anchor.hash);
    let mut last_id = anchor.pruned_through;
    for row in events.iter()? {
        let (k, v) = row?;
        let (id, user) = (k.value(), v.value());
        r.events += 1;
        if id <= last_id {
            r.first_bad_event.get_or_insert(id);
            r.problem(format!("event {id} is out of order"));
        }
        let found = match lookup.find(id, Some(user)) {
            Ok(found) => found,
            Err(e) => {
                r.first_bad_event.get_or_insert(id);
                r.problem(format!("event {id}: {e}"));
                continue;
            }
        };
        let Some((_, record)) = found else {
            r.first_bad_event.get_or_insert(id);
            r.problem(format!(
                "event {id} has no record in the buckets of {user:?}"
            ));
            continue;
        };
        let rec: EventRecord = match decode(EVENT_RECORDS, record) {
            Ok(rec) => rec,
            Err(e) => {
                r.first_bad_event.get_or_insert(id);
                r.problem(format!("event {id}: {e}"));
                continue;
            }
        };
        if !walk.links(&rec.link) && r.first_bad_event.is_none() {
            r.first_bad_event = Some(id);
            r.problem(format!(
                "hash chain broken at event {id}: an event before it was changed, removed or reordered"
            ));
        }
        walk.step(id, user, record);
        last_id = id;
        if EventKind::from_code(rec.kind).is_none() {
            r.problem(format!("event {id} has unknown kind code {}", rec.kind));
        }
        if ev_kind.get((rec.kind, id))?.is_none() {
            r.problem(format!("event {id} missing from the kind index"));
        }
    }
    if r.first_bad_event.is_none()
        && r.events > 0
        && (walk.expected != head.hash || last_id != head.last_id)
    {
        r.first_bad_event = Some(last_id);
        r.problem(format!(
            "hash chain head does not match the newest event {last_id}: events after it were removed or it was changed"
        ));
    }
    if r.events == 0 && head.appended > anchor.pruned {
        r.problem(format!(
            "{} events were appended and {} pruned, but none are left",
            head.appended, anchor.pruned
        ));
    }
    if head.appended != anchor.pruned + r.events {
        r.problem(format!(
            "event count mismatch: {} appended, {} pruned, {} present",
            head.appended, anchor.pruned, r.events
        ));
    }

    // Buckets: well formed, disjoint and in order per user. The pass above
    // found each event's record in its own user's buckets, so when the
    // counts agree no bucket holds anything else; only when they differ are
    // the buckets read again to name the records that belong to no event.
    let mut in_buckets = 0u64;
    let mut prev: Option<(String, u64)> = None;
    for row in ev_user.iter()? {
        let (k, v) = row?;
        let (user, first) = k.value();
        let entries = match bucket::parse(first, v.value()) {
            Ok(e) => e,
            Err(e) => {
                r.problem(e.to_string());
                continue;
            }
        };
        if let Some((pu, plast)) = &prev
            && pu == user
            && *plast >= first
        {
            r.problem(format!("buckets of {user:?} overlap at event {first}"));
        }
        in_buckets += entries.len() as u64;
        prev = entries.last().map(|e| (user.to_string(), e.id));
    }
    if in_buckets != r.events {
        r.problem(format!(
            "buckets hold {in_buckets} records for {} events",
            r.events
        ));
        for row in ev_user.iter()? {
            let (k, v) = row?;
            let (user, first) = k.value();
            for e in bucket::parse(first, v.value()).unwrap_or_default() {
                if events.get(e.id)?.is_none_or(|g| g.value() != user) {
                    r.problem(format!(
                        "event {} in a bucket of {user:?} is not an event of that user",
                        e.id
                    ));
                }
            }
        }
    }
    let n = ev_kind.len_entries()?;
    if n != r.events {
        r.problem(format!(
            "the kind index has {n} entries for {} events",
            r.events
        ));
    }
    r.bans = txn.open_table(BANS)?.len_entries()?;
    super::factors::check(txn, &mut r)?;
    check_tokens(txn, &mut r)?;
    super::oidc_check::check(txn, &mut r)?;
    Ok(r)
}

/// Access tokens and their two indexes: each row has exactly one entry in
/// each, with its user, creation time and expiry, and nothing else is there.
fn check_tokens(txn: &ReadTransaction, r: &mut CheckReport) -> Result<(), StoreError> {
    let tokens = txn.open_table(ACCESS_TOKENS)?;
    let mut user_keys = HashSet::new();
    let mut expiry_keys = HashSet::new();
    for row in tokens.iter()? {
        let (k, v) = row?;
        let hash = k.value();
        r.tokens += 1;
        match decode::<AccessTokenRecord>("access_tokens", v.value()) {
            Ok(rec) => {
                user_keys.insert((rec.user.clone(), rec.created_ms, hash));
                expiry_keys.insert((rec.expires_ms, hash));
            }
            Err(e) => r.problem(format!("access token {}: {e}", &hex(&hash)[..8])),
        }
    }
    let mut n = 0;
    for row in txn.open_table(ACCESS_TOKENS_BY_USER)?.iter()? {
        let (k, _) = row?;
        let (u, c, h) = k.value();
        n += 1;
        if !user_keys.contains(&(u.to_string(), c, h)) {
            r.problem(format!(
                "access_tokens_by_user entry for {u:?} without a matching token"
            ));
        }
    }
    if n != user_keys.len() {
        r.problem(format!(
            "access_tokens_by_user has {n} entries for {} tokens",
            user_keys.len()
        ));
    }
    let mut n = 0;
    for row in txn.open_table(ACCESS_TOKENS_BY_EXPIRY)?.iter()? {
        let (k, _) = row?;
        n += 1;
        if !expiry_keys.contains(&k.value()) {
            r.problem("access_tokens_by_expiry entry without a matching token".to_string());
        }
    }
    if n != expiry_keys.len() {
        r.problem(format!(
            "access_tokens_by_expiry has {n} entries for {} tokens",
            expiry_keys.len()
        ));
    }
    Ok(())
}

/// `len()` under a name that does not clash with iterator adapters.
trait LenEntries {
    fn len_entries(&self) -> Result<u64, StoreError>;
}

impl<T: redb::ReadableTableMetadata> LenEntries for T {
    fn len_entries(&self) -> Result<u64, StoreError> {
        Ok(self.len()?)
    }
}
