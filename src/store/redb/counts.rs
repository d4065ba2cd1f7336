//! Audit counts for `auditctl stats`: events per kind and the busiest users,
//! counted from the kind index and the user buckets in one read snapshot. The
//! scan reads index keys and bucket entry headers (never a record) and keeps
//! at most `top` users in memory, so memory stays flat whatever the number of
//! events or users.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use redb::ReadableTable;

use super::Store;
use super::bucket;
use super::tables::*;
use crate::domain::EventKind;
use crate::store::error::StoreError;
use crate::store::reports::AuditCounts;

/// Keeps the `n` largest `(count, user)` pairs seen.
struct TopN {
    n: usize,
    heap: BinaryHeap<Reverse<(u64, Reverse<String>)>>,
}

impl TopN {
    fn push(&mut self, user: String, count: u64) {
        if self.n == 0 {
            return;
        }
        self.heap.push(Reverse((count, Reverse(user))));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .heap
            .into_iter()
            .map(|Reverse((c, Reverse(u)))| (u, c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

impl Store {
    /// Counts events per kind and finds the `top` users with the most events.
    /// Cost: one pass over the keys of both audit indexes.
    pub fn audit_counts(&self, top: usize) -> Result<AuditCounts, StoreError> {
        let txn = self.read()?;
        let by_kind = txn.open_table(EVENTS_BY_KIND)?;
        let by_user = txn.open_table(EVENTS_BY_USER)?;
        let mut out = AuditCounts::default();

        // The index sorts by kind code: one run of entries per kind.
        let mut run: Option<(u8, u64)> = None;
        for row in by_kind.iter()? {
            let (k, _) = row?;
            let code = k.value().0;
            match &mut run {
                Some((c, n)) if *c == code => *n += 1,
                _ => {
                    if let Some(done) = run.take() {
                        tally_kind(&mut out, done);
                    }
                    run = Some((code, 1));
                }
            }
        }
        if let Some(done) = run.take() {
            tally_kind(&mut out, done);
        }
        out.by_kind
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        let mut current: Option<(String, u64)> = None;
        let mut top_n = TopN {
            n: top,
            heap: BinaryHeap::new(),
        };
        // Buckets sort by user: one run of buckets per user. The empty name
        // holds the events without a user.
        for row in by_user.iter()? {
            let (k, v) = row?;
            let (user, first) = k.value();
            let n = bucket::parse(first, v.value())?.len() as u64;
            if user.is_empty() {
                out.without_user += n;
                continue;
            }
            match &mut current {
                Some((name, total)) if name == user => *total += n,
                _ => {
                    if let Some((u, total)) = current.take() {
                        out.users += 1;
                        top_n.push(u, total);
                    }
                    current = Some((user.to_string(), n));
                }
            }
        }
        if let Some((u, n)) = current.take() {
            out.users += 1;
            top_n.push(u, n);
        }
        out.top_users = top_n.into_sorted();
        Ok(out)
    }
}

fn tally_kind(out: &mut AuditCounts, (code, n): (u8, u64)) {
    match EventKind::from_code(code) {
        Some(k) => out.by_kind.push((k, n)),
        None => out.unknown_kinds += n,
    }
}

#[cfg(test)]
mod tests {
    use crate::store::redb::tests::temp_store;
    use crate::store::*;

    #[test]
    fn counts_kinds_and_top_users() {
        let (_d, store) = temp_store();
        let mut ops = Vec::new();
        for (user, n) in [("alice", 5u64), ("bob", 2), ("carol", 7), ("dave", 2)] {
            for i in 0..n {
                ops.push(Op::Append(
                    NewEvent::at(EventKind::LoginFailure, 1_000 + i).user(user),
                ));
            }
        }
        ops.push(Op::Append(NewEvent::at(EventKind::ServerStarted, 50)));
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
        let c = store.audit_counts(3).unwrap();
        assert_eq!(
            c.by_kind,
            vec![(EventKind::LoginFailure, 16), (EventKind::ServerStarted, 1)]
        );
        assert_eq!(
            c.top_users,
            vec![
                ("carol".to_string(), 7),
                ("alice".to_string(), 5),
                ("bob".to_string(), 2)
            ]
        );
        assert_eq!((c.users, c.without_user, c.unknown_kinds), (4, 1, 0));
        assert!(store.audit_counts(0).unwrap().top_users.is_empty());
    }
}
