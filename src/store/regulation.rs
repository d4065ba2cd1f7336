//! Brute-force regulation in process: failed attempts counted per user and
//! per client IP in a sliding window. This is the redb backend's
//! [`RegulationStore`](super::RegulationStore) (one node holds the
//! counters); the server's guard is its one user.
//!
//! An attempt reserves its place before it hashes ([`Regulator::reserve`]):
//! attempts in flight count toward the limit together with the failures in
//! the window, so a burst of concurrent guesses cannot all pass the ban check
//! before the first of them has failed. A reservation that would go past
//! `max_failures` is refused, with no hashing. Each [`Lease`] is settled
//! once: as a failure ([`Regulator::fail`]), as a success
//! ([`Regulator::succeed`]), or released uncounted ([`Regulator::release`]:
//! the pool was busy, the request was cancelled).
//!
//! Counters live in memory. Those of configured user names are never evicted
//! (there are as many as the config has users), so failing at random names
//! from fresh addresses cannot push a real user's counter out. Those of
//! unknown names and of IPs sit in a map with a hard size cap: when it is
//! full, entries with no failure in the window and none in flight are
//! pruned, then the one with the stalest last failure (preferring those with
//! nothing in flight) is dropped. Protection changes only what is kept, never
//! an answer, so answers say nothing about whether a name exists. Reaching
//! `max_failures` inside the window turns into a ban, which the caller stores
//! so that it survives a restart; the store's bans are the authority on who
//! is banned.
//!
//! The limits come with every call (`RegulationSettings`), so a reload
//! that changes them applies to the next attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::{BanSubject, RegulationSettings};

/// Failure counters.
#[derive(Default)]
pub struct Regulator {
    counters: Mutex<Counters>,
    /// Per user name, the TOTP step whose replay was last counted: a code
    /// already used is counted as a failure once per step, not at every
    /// try (someone signing in again within the same 30 seconds retypes
    /// the code they just used). At most `max_tracked` names.
    replays: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Regulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regulator")
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// The failures and the attempts in flight of one subject.
#[derive(Default, Debug)]
struct Counter {
    /// Failure times (ms), oldest first, at most `max_failures`.
    failures: VecDeque<u64>,
    /// Reservations taken and not yet settled.
    in_flight: usize,
}

impl Counter {
    /// Drops the failures that have left the window (at or before `horizon`).
    fn slide(&mut self, horizon: u64) {
        while self.failures.front().is_some_and(|t| *t <= horizon) {
            self.failures.pop_front();
        }
    }

    /// Nothing to remember: no failure in the window, nothing in flight.
    fn idle(&self, horizon: u64) -> bool {
        self.in_flight == 0 && self.failures.back().is_none_or(|t| *t <= horizon)
    }
}

#[derive(Default)]
struct Counters {
    /// Counters of configured user names: never evicted. Bounded by the
    /// config (and the names a reload removed, until their failures age out).
    protected: HashMap<BanSubject, Counter>,
    /// Counters of unknown names and of IPs: at most `max_tracked`.
    others: HashMap<BanSubject, Counter>,
}

/// Why a reservation was refused: this subject's failures and attempts in
/// flight already reach the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtLimit(pub BanSubject);

/// One attempt counted as in flight against its subjects until it is
/// settled. A store that shares its counters between nodes also gives it
/// a deadline, after which it counts no more even if never settled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a lease is settled by fail or succeed, or released"]
pub struct Lease {
    subjects: Vec<BanSubject>,
    configured: bool,
    /// Random: how a store that shares its counters names this attempt.
    id: u64,
}

impl Lease {
    /// A lease on `subjects` with a fresh random id.
    pub(crate) fn new(subjects: Vec<BanSubject>, configured: bool) -> Lease {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the operating system's random source failed");
        Lease {
            subjects,
            configured,
            id: u64::from_le_bytes(id),
        }
    }

    /// Its id, unique among the attempts in flight.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The subjects it counts against: the user name and the client's IP.
    pub fn subjects(&self) -> &[BanSubject] {
        &self.subjects
    }
}

fn horizon(limits: &RegulationSettings, now_ms: u64) -> u64 {
    now_ms.saturating_sub(limits.window_secs.saturating_mul(1000))
}

impl Regulator {
    /// Whether a replayed TOTP code of `user`, of `step`, is to be counted
    /// as a failure: only the first replay of each step is. Remembers it.
    pub fn first_replay(&self, limits: &RegulationSettings, user: &str, step: u64) -> bool {
        let mut replays = self.replays.lock().unwrap_or_else(|p| p.into_inner());
        if replays.get(user) == Some(&step) {
            return false;
        }
        if !replays.contains_key(user) && replays.len() >= limits.max_tracked {
            // Forgetting only lets one more replay count: never fewer.
            replays.clear();
        }
        replays.insert(user.to_string(), step);
        true
    }

    /// Subjects currently tracked.
    pub fn tracked(&self) -> usize {
        let c = self.lock();
        c.protected.len() + c.others.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (each update is one push, remove or increment), so a poisoned lock
        // is usable.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one attempt against each of `subjects` (the user name and the
    /// client's IP). `configured` says whether the user name is a configured
    /// user, whose counter is then never evicted. Refused, with nothing
    /// reserved, when a subject's failures in the window plus its attempts
    /// in flight already reach `max_failures`.
    pub fn reserve(
        &self,
        limits: &RegulationSettings,
        subjects: &[BanSubject],
        configured: bool,
        now_ms: u64,
    ) -> Result<Lease, AtLimit> {
        let horizon = horizon(limits, now_ms);
        let mut guard = self.lock();
        let c = &mut *guard;
        for s in subjects {
            let counter = c.protected.get_mut(s).or_else(|| c.others.get_mut(s));
            if let Some(counter) = counter {
                counter.slide(horizon);
                if counter.failures.len() + counter.in_flight >= limits.max_failures {
                    return Err(AtLimit(s.clone()));
                }
            }
        }
        for s in subjects {
            let protect = configured && matches!(s, BanSubject::User(_));
            counter(limits, c, s, protect, horizon).in_flight += 1;
        }
        Ok(Lease::new(subjects.to_vec(), configured))
    }

    /// Releases `lease` without counting a failure.
    pub fn release(&self, limits: &RegulationSettings, lease: Lease, now_ms: u64) {
        self.release_subjects(&lease.subjects, horizon(limits, now_ms));
    }

    fn release_subjects(&self, subjects: &[BanSubject], horizon: u64) {
        let mut guard = self.lock();
        let c = &mut *guard;
        for s in subjects {
            for map in [&mut c.protected, &mut c.others] {
                if let Some(k) = map.get_mut(s) {
                    k.in_flight = k.in_flight.saturating_sub(1);
                    if k.idle(horizon) {
                        map.remove(s);
                    }
                }
            }
        }
    }

    /// The attempt failed: counts it against every subject. Returns the
    /// subjects whose failures reached the limit, with the end of their ban;
    /// their counters start again from zero.
    pub fn fail(
        &self,
        limits: &RegulationSettings,
        lease: Lease,
        now_ms: u64,
    ) -> Vec<(BanSubject, u64)> {
        let horizon = horizon(limits, now_ms);
        let until = now_ms.saturating_add(limits.ban_secs.saturating_mul(1000));
        let mut guard = self.lock();
        let c = &mut *guard;
        let mut bans = Vec::new();
        for s in &lease.subjects {
            let protect = lease.configured && matches!(s, BanSubject::User(_));
            // Re-created if it was evicted meanwhile (only unprotected ones can be).
            let k = counter(limits, c, s, protect, horizon);
            k.in_flight = k.in_flight.saturating_sub(1);
            k.slide(horizon);
            k.failures.push_back(now_ms);
            if k.failures.len() >= limits.max_failures {
                k.failures.clear();
                bans.push((s.clone(), until));
            }
            if k.idle(horizon) {
                c.protected.remove(s);
                c.others.remove(s);
            }
        }
        bans
    }

    /// The attempt succeeded: releases it and forgets the user name's
    /// failures (the IP's stay). Only a sign-in that gets everything it
    /// asked for is a success: a right password that still needs a second
    /// step, a password in Basic (which never stands for a second factor),
    /// or one typed again to add a factor, is released instead, so that
    /// guessing codes between right passwords still ends in a ban.
    pub fn succeed(&self, limits: &RegulationSettings, lease: Lease, now_ms: u64) {
        {
            let mut guard = self.lock();
            let c = &mut *guard;
            for s in &lease.subjects {
                if matches!(s, BanSubject::User(_)) {
                    for map in [&mut c.protected, &mut c.others] {
                        if let Some(k) = map.get_mut(s) {
                            k.failures.clear();
                        }
                    }
                }
            }
        }
        self.release_subjects(&lease.subjects, horizon(limits, now_ms));
    }
}

/// The counter of `s`, created if needed, in the map its protection calls
/// for; makes room in the capped map first.
fn counter<'c>(
    limits: &RegulationSettings,
    c: &'c mut Counters,
    s: &BanSubject,
    protect: bool,
    horizon: u64,
) -> &'c mut Counter {
    if protect {
        // A name that became a configured user (a reload) keeps its count.
        let moved = c.others.remove(s);
        let counter = c.protected.entry(s.clone()).or_default();
        if let Some(m) = moved {
            counter.failures.extend(m.failures);
            counter.in_flight += m.in_flight;
        }
        return counter;
    }
    if c.protected.contains_key(s) {
        return c.protected.get_mut(s).expect("checked above");
    }
    if !c.others.contains_key(s) && c.others.len() >= limits.max_tracked {
        c.others.retain(|_, k| !k.idle(horizon));
        c.protected.retain(|_, k| !k.idle(horizon));
        if c.others.len() >= limits.max_tracked
            && let Some(stalest) = c
                .others
                .iter()
                .min_by_key(|(_, k)| (k.in_flight > 0, k.failures.back().copied().unwrap_or(0)))
                .map(|(s, _)| s.clone())
        {
            c.others.remove(&stalest);
        }
    }
    c.others.entry(s.clone()).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regulator with its limits, answering as the guard's reservation
    /// does (a held reservation is released when dropped).
    struct Reg {
        r: Regulator,
        limits: RegulationSettings,
    }

    struct Held<'a> {
        reg: &'a Reg,
        lease: Option<Lease>,
    }

    impl Reg {
        fn reserve(
            &self,
            s: &[BanSubject],
            configured: bool,
            now: u64,
        ) -> Result<Held<'_>, AtLimit> {
            let lease = self.r.reserve(&self.limits, s, configured, now)?;
            Ok(Held {
                reg: self,
                lease: Some(lease),
            })
        }

        fn first_replay(&self, user: &str, step: u64) -> bool {
            self.r.first_replay(&self.limits, user, step)
        }

        fn tracked(&self) -> usize {
            self.r.tracked()
        }
    }

    impl Held<'_> {
        fn fail(mut self, now: u64) -> Vec<(BanSubject, u64)> {
            let lease = self.lease.take().unwrap();
            self.reg.r.fail(&self.reg.limits, lease, now)
        }

        fn succeed(mut self, now: u64) {
            let lease = self.lease.take().unwrap();
            self.reg.r.succeed(&self.reg.limits, lease, now)
        }
    }

    impl Drop for Held<'_> {
        fn drop(&mut self) {
            if let Some(lease) = self.lease.take() {
                self.reg.r.release(&self.reg.limits, lease, 0);
            }
        }
    }

    fn reg(max_tracked: usize) -> Reg {
        Reg {
            r: Regulator::default(),
            limits: RegulationSettings {
                max_failures: 3,
                window_secs: 10,
                ban_secs: 60,
                max_tracked,
            },
        }
    }

    fn user(s: &str) -> BanSubject {
        BanSubject::User(s.into())
    }

    fn ip(n: u32) -> BanSubject {
        BanSubject::ip(std::net::Ipv4Addr::from(0x0a00_0000 + n).into())
    }

    /// One failed attempt, reserved and settled at `now`.
    fn fail(r: &Reg, s: BanSubject, now: u64) -> Option<u64> {
        let configured = s == user("alice");
        let bans = r.reserve(&[s], configured, now).unwrap().fail(now);
        bans.first().map(|(_, until)| *until)
    }

    #[test]
    fn a_replayed_step_counts_once() {
        let r = reg(2);
        assert!(r.first_replay("alice", 7));
        assert!(!r.first_replay("alice", 7));
        assert!(!r.first_replay("alice", 7));
        assert!(r.first_replay("bob", 7), "per user");
        assert!(r.first_replay("alice", 8), "a new step counts again");
        assert!(!r.first_replay("alice", 8));
        // Bounded: a third name makes room by forgetting, which lets at
        // most one more replay count.
        assert!(r.first_replay("carol", 1));
        assert!(r.first_replay("alice", 8));
    }

    #[test]
    fn bans_at_the_limit_within_the_window() {
        let r = reg(100);
        assert_eq!(fail(&r, user("a"), 1_000), None);
        assert_eq!(fail(&r, user("a"), 2_000), None);
        assert_eq!(fail(&r, user("a"), 3_000), Some(63_000));
        // Reset after the ban.
        assert_eq!(fail(&r, user("a"), 4_000), None);
    }

    #[test]
    fn old_failures_slide_out() {
        let r = reg(100);
        fail(&r, user("a"), 0);
        fail(&r, user("a"), 1_000);
        // At 10_500 the first failure has left the window: two remain.
        assert_eq!(fail(&r, user("a"), 10_500), None);
        assert!(fail(&r, user("a"), 10_600).is_some());
        fail(&r, user("b"), 0);
        fail(&r, user("b"), 1_000);
        // Both have left the window: this is the first again.
        assert_eq!(fail(&r, user("b"), 11_001), None);
        assert_eq!(fail(&r, user("b"), 11_002), None);
        assert!(fail(&r, user("b"), 11_003).is_some());
    }

    #[test]
    fn map_stays_bounded() {
        let r = reg(4);
        for i in 0..100u64 {
            fail(&r, user(&format!("u{i}")), i);
            assert!(r.tracked() <= 4);
        }
        // The newest survive.
        assert_eq!(fail(&r, user("u99"), 100), None);
        assert!(fail(&r, user("u99"), 101).is_some());
    }

    #[test]
    fn success_forgets_the_name_and_keeps_the_ip() {
        let r = reg(10);
        fail(&r, user("a"), 0);
        fail(&r, user("a"), 1);
        r.reserve(&[user("a")], false, 2).unwrap().succeed(2);
        assert_eq!(fail(&r, user("a"), 3), None);
        fail(&r, ip(1), 4);
        fail(&r, ip(1), 5);
        r.reserve(&[user("b"), ip(1)], false, 6).unwrap().succeed(6);
        assert!(fail(&r, ip(1), 7).is_some());
    }

    #[test]
    fn attempts_in_flight_count_toward_the_limit() {
        let r = reg(10);
        let s = [user("a"), ip(1)];
        let held: Vec<_> = (0..3).map(|_| r.reserve(&s, false, 0).unwrap()).collect();
        // Three in flight with a limit of three: a fourth is refused, for
        // the name (checked first), and so is another name from that IP.
        assert_eq!(r.reserve(&s, false, 0).err(), Some(AtLimit(user("a"))));
        assert_eq!(
            r.reserve(&[user("b"), ip(1)], false, 0).err(),
            Some(AtLimit(ip(1)))
        );
        // The three fail: the third reaches the limit and bans both subjects.
        let mut bans = Vec::new();
        for h in held {
            bans.extend(h.fail(1));
        }
        assert_eq!(bans, vec![(user("a"), 60_001), (ip(1), 60_001)]);
        // Counters start again after the ban (the store holds the ban).
        assert!(r.reserve(&s, false, 2).is_ok());
    }

    #[test]
    fn a_dropped_or_successful_reservation_frees_its_place() {
        let r = reg(10);
        let s = [user("a")];
        let a = r.reserve(&s, false, 0).unwrap();
        let b = r.reserve(&s, false, 0).unwrap();
        let c = r.reserve(&s, false, 0).unwrap();
        assert!(r.reserve(&s, false, 0).is_err());
        drop(a);
        b.succeed(0);
        let d = r.reserve(&s, false, 0).unwrap();
        let e = r.reserve(&s, false, 0).unwrap();
        assert!(r.reserve(&s, false, 0).is_err());
        // Released and settled without failures: nothing is left to count.
        drop((c, d, e));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn fresh_names_and_ips_cannot_evict_a_configured_users_counter() {
        let r = reg(4);
        let mut n = 0;
        // Times well past the window's length, as a real clock's are.
        let base = 1_000_000;
        for round in 0..3u64 {
            // alice is configured; her guesses come from addresses of their own.
            let t = base + round * 100;
            let bans = r
                .reserve(&[user("alice"), ip(1_000 + round as u32)], true, t)
                .unwrap()
                .fail(t);
            if round < 2 {
                assert!(bans.is_empty(), "{bans:?}");
            } else {
                assert_eq!(bans, vec![(user("alice"), t + 60_000)]);
            }
            // Far more fresh names and IPs than the map holds, all newer.
            for _ in 0..20 {
                n += 1;
                let t = t + 1 + n;
                r.reserve(&[user(&format!("x{n}")), ip(n as u32)], false, t)
                    .unwrap()
                    .fail(t);
                // The cap holds for everything but configured names.
                assert!(r.tracked() <= 4 + 1);
            }
        }
    }

    #[test]
    fn an_unknown_names_counter_is_evictable() {
        // The same sequence for a name that is not configured: its counter
        // is pushed out, as any other unknown name's would be.
        let r = reg(4);
        fail(&r, user("ghost"), 0);
        fail(&r, user("ghost"), 1);
        for i in 0..10 {
            fail(&r, user(&format!("x{i}")), 2 + i);
        }
        assert_eq!(fail(&r, user("ghost"), 20), None);
    }
}
