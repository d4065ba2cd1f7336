//! Brute-force regulation: failed logins counted per user and per client IP
//! in a sliding window.
//!
//! Counters live in memory, in a map with a hard size cap; when it is full,
//! entries whose failures have all left the window are pruned, then the entry
//! with the stalest last failure is dropped. Reaching `max_failures` inside the
//! window turns into a ban, which the caller stores (`Op::AddBan`) so that it
//! survives a restart; the store is the authority on who is banned.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::config::RegulationSettings;
use crate::store::BanSubject;

/// Failure counters. Shared behind the app state.
pub struct Regulator {
    settings: RegulationSettings,
    /// Failure times (ms) per subject, oldest first, at most `max_failures` each.
    failures: Mutex<HashMap<BanSubject, VecDeque<u64>>>,
}

impl Regulator {
    pub fn new(settings: RegulationSettings) -> Self {
        Regulator {
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &RegulationSettings {
        &self.settings
    }

    /// Subjects currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BanSubject, VecDeque<u64>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (each update is one push or remove), so a poisoned lock is usable.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one failure for `subject` at `now_ms`. Returns the ban end time
    /// when this failure reaches the limit; the counter is then reset.
    pub fn record_failure(&self, subject: BanSubject, now_ms: u64) -> Option<u64> {
        let window = self.settings.window_secs.saturating_mul(1000);
        let horizon = now_ms.saturating_sub(window);
        let mut map = self.lock();
        if !map.contains_key(&subject) && map.len() >= self.settings.max_tracked {
            map.retain(|_, times| times.back().is_some_and(|t| *t > horizon));
            if map.len() >= self.settings.max_tracked
                && let Some(stalest) = map
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied().unwrap_or(0))
                    .map(|(k, _)| k.clone())
            {
                map.remove(&stalest);
            }
        }
        let times = map.entry(subject.clone()).or_default();
        while times.front().is_some_and(|t| *t <= horizon) {
            times.pop_front();
        }
        times.push_back(now_ms);
        if times.len() >= self.settings.max_failures {
            map.remove(&subject);
            return Some(now_ms.saturating_add(self.settings.ban_secs.saturating_mul(1000)));
        }
        None
    }

    /// Forgets the failures of `subject` (after a successful login).
    pub fn clear(&self, subject: &BanSubject) {
        self.lock().remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(max_tracked: usize) -> Regulator {
        Regulator::new(RegulationSettings {
            max_failures: 3,
            window_secs: 10,
            ban_secs: 60,
            max_tracked,
        })
    }

    fn user(s: &str) -> BanSubject {
        BanSubject::User(s.into())
    }

    #[test]
    fn bans_at_the_limit_within_the_window() {
        let r = reg(100);
        assert_eq!(r.record_failure(user("a"), 1_000), None);
        assert_eq!(r.record_failure(user("a"), 2_000), None);
        assert_eq!(r.record_failure(user("a"), 3_000), Some(63_000));
        // Reset after the ban.
        assert_eq!(r.record_failure(user("a"), 4_000), None);
    }

    #[test]
    fn old_failures_slide_out() {
        let r = reg(100);
        r.record_failure(user("a"), 0);
        r.record_failure(user("a"), 1_000);
        // At 10_500 the first failure has left the window: two remain.
        assert_eq!(r.record_failure(user("a"), 10_500), None);
        assert!(r.record_failure(user("a"), 10_600).is_some());
        r.record_failure(user("b"), 0);
        r.record_failure(user("b"), 1_000);
        // Both have left the window: this is the first again.
        assert_eq!(r.record_failure(user("b"), 11_001), None);
        assert_eq!(r.record_failure(user("b"), 11_002), None);
        assert!(r.record_failure(user("b"), 11_003).is_some());
    }

    #[test]
    fn map_stays_bounded() {
        let r = reg(4);
        for i in 0..100u64 {
            r.record_failure(user(&format!("u{i}")), i);
            assert!(r.tracked() <= 4);
        }
        // The newest survive.
        assert_eq!(r.record_failure(user("u99"), 100), None);
        assert!(r.record_failure(user("u99"), 101).is_some());
    }

    #[test]
    fn clear_forgets() {
        let r = reg(10);
        r.record_failure(user("a"), 0);
        r.record_failure(user("a"), 1);
        r.clear(&user("a"));
        assert_eq!(r.record_failure(user("a"), 2), None);
    }
}
