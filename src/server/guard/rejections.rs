//! Refused logins (a stored ban, or the failure limit reached by attempts in
//! flight), aggregated per subject and window so that a flood of refusals
//! costs a bounded number of audit events and log lines, and no hashing.
//!
//! The first refusal of a subject in a window is recorded at once, as a
//! durable `login.rejected` event, and logged. Later refusals of that
//! subject in the same window are only counted. The count is recorded as
//! one more `login.rejected` event once the window has ended (by the
//! sweeper, at its next tick) or at shutdown, or, if the subject is refused
//! again after its window ended but before that, with the next window's
//! first event. Every such event carries `count`: the refusals of its
//! subject (for its reason) since the previous event, itself included.
//!
//! A window lasts `regulation.window_secs` from its first refusal. The map
//! of open windows holds at most `regulation.max_tracked` subjects; it only
//! drops a window whose count is recorded. When it is full, refusals of
//! further subjects share one overflow window: recorded once per window,
//! then counted. So however many subjects are refused, each window length
//! adds at most `max_tracked + 1` first events and as many counts.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::RegulationSettings;
use crate::store::{AuditStore, BanSubject, EventKind, NewEvent};

/// Why a login was refused before any hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The user name or the client's IP has a stored ban.
    Banned,
    /// Failures in the window and attempts in flight reach the limit.
    AtLimit,
}

impl Refusal {
    /// The `reason` detail of the audit event.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Banned => "banned",
            Refusal::AtLimit => "failure_limit",
        }
    }
}

/// Refusals not yet recorded, per subject and reason.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the window ends (ms); a refusal at or after it opens a new one.
    ends_ms: u64,
    /// Refusals counted but not yet recorded.
    pending: u64,
}

/// A count to record: `count` refusals of `subject` (`None`: of the
/// subjects that shared the overflow window) for `refusal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub subject: Option<BanSubject>,
    pub refusal: Refusal,
    pub count: u64,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The first of its window: record an event standing for `count`
    /// refusals (this one and those of an earlier window not yet recorded),
    /// and log it.
    Record { count: u64 },
    /// Counted; recorded later.
    Counted,
}

#[derive(Default)]
struct Windows {
    open: HashMap<(BanSubject, Refusal), Window>,
    overflow: HashMap<Refusal, Window>,
}

/// The aggregation of refusals. Shared behind the app state.
pub struct Rejections {
    window_ms: u64,
    cap: usize,
    windows: Mutex<Windows>,
}

impl Rejections {
    pub fn new(settings: &RegulationSettings) -> Self {
        Rejections {
            window_ms: settings.window_secs.saturating_mul(1000),
            cap: settings.max_tracked,
            windows: Mutex::new(Windows::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // Each update is one insert, remove or increment: a poisoned lock
        // holds consistent maps.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subjects with an open or unrecorded window.
    pub fn tracked(&self) -> usize {
        self.lock().open.len()
    }

    /// Notes one refusal of `subject` at `now_ms`.
    pub fn note(&self, subject: &BanSubject, refusal: Refusal, now_ms: u64) -> Note {
        let mut guard = self.lock();
        let w = &mut *guard;
        let key = (subject.clone(), refusal);
        if !w.open.contains_key(&key) && w.open.len() >= self.cap {
            // Only windows with nothing left to record may go.
            w.open
                .retain(|_, win| win.pending > 0 || now_ms < win.ends_ms);
        }
        let window_ms = self.window_ms;
        let win = if w.open.contains_key(&key) || w.open.len() < self.cap {
            w.open.entry(key).or_insert(Window {
                ends_ms: 0,
                pending: 0,
            })
        } else {
            w.overflow.entry(refusal).or_insert(Window {
                ends_ms: 0,
                pending: 0,
            })
        };
        if now_ms < win.ends_ms {
            win.pending += 1;
            Note::Counted
        } else {
            // A new window; what the ended one counted goes with this event.
            let count = win.pending + 1;
            *win = Window {
                ends_ms: now_ms.saturating_add(window_ms),
                pending: 0,
            };
            Note::Record { count }
        }
    }

    /// Takes the counts of the windows that ended by `now_ms` (all of them
    /// when `now_ms` is `u64::MAX`, at shutdown), dropping those windows.
    pub fn take_ended(&self, now_ms: u64) -> Vec<Summary> {
        let mut guard = self.lock();
        let w = &mut *guard;
        let mut out = Vec::new();
        w.open.retain(|(subject, refusal), win| {
            if now_ms < win.ends_ms {
                return true;
            }
            if win.pending > 0 {
                out.push(Summary {
                    subject: Some(subject.clone()),
                    refusal: *refusal,
                    count: win.pending,
                });
            }
            false
        });
        w.overflow.retain(|refusal, win| {
            if now_ms < win.ends_ms {
                return true;
            }
            if win.pending > 0 {
                out.push(Summary {
                    subject: None,
                    refusal: *refusal,
                    count: win.pending,
                });
            }
            false
        });
        out
    }

    /// Takes every count not yet recorded (at shutdown).
    pub fn take_all(&self) -> Vec<Summary> {
        self.take_ended(u64::MAX)
    }
}

/// The `login.rejected` event that records a [`Summary`].
pub fn summary_event(s: &Summary) -> NewEvent {
    let ev = NewEvent::now(EventKind::LoginRejected)
        .detail("reason", s.refusal.reason())
        .detail("count", s.count.to_string());
    match &s.subject {
        Some(BanSubject::User(u)) => ev.user(u.clone()),
        Some(BanSubject::Ip(ip)) => ev.ip(Some(*ip)),
        None => ev.detail("subjects", "overflow"),
    }
}

/// Records `summaries` durably, all in flight at once so that the store
/// can commit them together.
pub async fn record(store: &crate::store::Backend, summaries: Vec<Summary>) {
    let mut pending = tokio::task::JoinSet::new();
    for s in &summaries {
        let store = store.clone();
        let ev = summary_event(s);
        pending.spawn(async move { store.append(ev).await });
    }
    while let Some(r) = pending.join_next().await {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "recording refused logins failed"),
            Err(e) => tracing::error!(error = %e, "recording refused logins failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rej(window_secs: u64, max_tracked: usize) -> Rejections {
        Rejections::new(&RegulationSettings {
            max_failures: 5,
            window_secs,
            ban_secs: 900,
            max_tracked,
        })
    }

    fn user(s: &str) -> BanSubject {
        BanSubject::User(s.into())
    }

    #[test]
    fn one_record_per_window_and_the_rest_counted() {
        let r = rej(10, 100);
        let bob = user("bob");
        assert_eq!(r.note(&bob, Refusal::Banned, 0), Note::Record { count: 1 });
        for t in 1..1_000 {
            assert_eq!(r.note(&bob, Refusal::Banned, t), Note::Counted);
        }
        // Another reason or subject has its own window.
        assert_eq!(r.note(&bob, Refusal::AtLimit, 5), Note::Record { count: 1 });
        assert_eq!(
            r.note(&user("eve"), Refusal::Banned, 5),
            Note::Record { count: 1 }
        );
        // Nothing has ended yet.
        assert!(r.take_ended(9_999).is_empty());
        let mut ended = r.take_ended(10_005);
        ended.sort_by_key(|s| s.count);
        assert_eq!(
            ended,
            vec![Summary {
                subject: Some(bob.clone()),
                refusal: Refusal::Banned,
                count: 999,
            }]
        );
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn a_count_not_yet_taken_goes_with_the_next_windows_first_record() {
        let r = rej(10, 100);
        let bob = user("bob");
        r.note(&bob, Refusal::Banned, 0);
        r.note(&bob, Refusal::Banned, 1);
        r.note(&bob, Refusal::Banned, 2);
        assert_eq!(
            r.note(&bob, Refusal::Banned, 10_000),
            Note::Record { count: 3 }
        );
        assert_eq!(r.note(&bob, Refusal::Banned, 10_001), Note::Counted);
        assert_eq!(
            r.take_all(),
            vec![Summary {
                subject: Some(bob),
                refusal: Refusal::Banned,
                count: 1,
            }]
        );
    }

    #[test]
    fn records_stay_bounded_whatever_the_number_of_subjects() {
        let cap = 8;
        let r = rej(10, cap);
        let mut records = 0u64;
        let mut counted = 0u64;
        // Many refusals of many subjects, all inside one window length.
        for i in 0..10_000u64 {
            match r.note(&user(&format!("u{}", i % 500)), Refusal::Banned, i % 9_000) {
                Note::Record { count } => records += count,
                Note::Counted => counted += 1,
            }
            assert!(r.tracked() <= cap);
        }
        // `cap` subjects with windows of their own, one overflow window.
        assert_eq!(records, cap as u64 + 1);
        let summaries = r.take_all();
        assert!(summaries.len() <= cap + 1);
        assert!(summaries.iter().any(|s| s.subject.is_none()));
        // Every refusal is accounted for exactly once.
        let total: u64 = summaries.iter().map(|s| s.count).sum::<u64>() + records;
        assert_eq!(total, 10_000);
        assert_eq!(counted, 10_000 - records);
    }

    #[test]
    fn a_full_map_drops_only_windows_with_nothing_to_record() {
        let r = rej(10, 2);
        r.note(&user("a"), Refusal::Banned, 0);
        r.note(&user("b"), Refusal::Banned, 0);
        r.note(&user("b"), Refusal::Banned, 1);
        // a's window ended with nothing pending: c takes its place. b's
        // count is still owed, so b stays.
        assert_eq!(
            r.note(&user("c"), Refusal::Banned, 20_000),
            Note::Record { count: 1 }
        );
        assert_eq!(r.tracked(), 2);
        let all = r.take_all();
        assert_eq!(
            all,
            vec![Summary {
                subject: Some(user("b")),
                refusal: Refusal::Banned,
                count: 1,
            }]
        );
    }

    #[test]
    fn summary_events_name_their_subject_and_count() {
        let ev = summary_event(&Summary {
            subject: Some(user("bob")),
            refusal: Refusal::Banned,
            count: 42,
        });
        assert_eq!(ev.kind, EventKind::LoginRejected);
        assert_eq!(ev.user.as_deref(), Some("bob"));
        assert!(ev.details.contains(&("count".into(), "42".into())));
        assert!(ev.details.contains(&("reason".into(), "banned".into())));
    }
}
