//! The conformance suite for the failure counters ([`RegulationStore`]) and
//! passkey ceremonies ([`CeremonyStore`]): random steps, each on one of two
//! handles, against a model that knows only what the contract promises.
//!
//! - Counters: a subject's failures in the window plus its attempts in
//!   flight never pass the limit; the attempt that reaches it reports a
//!   ban and starts the count again; a success forgets a user name's
//!   failures but not an address's; a release frees a place and counts
//!   nothing. The model tracks few subjects, well under `max_tracked`, so
//!   no eviction rule of a backend is at stake.
//! - Ceremonies: a token is taken once, for its purpose and within its
//!   life; a take for another purpose burns it; a user's newer ceremony of
//!   a purpose ends the older.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::domain::*;
use crate::store::ceremonies::{CEREMONY_MS, Purpose};
use crate::store::contract::{CeremonyStore, RegulationStore};
use crate::store::regulation::Lease;

const LIMITS: RegulationSettings = RegulationSettings {
    max_failures: 3,
    window_secs: 10,
    ban_secs: 60,
    max_tracked: 1_000,
};

const USERS: [&str; 2] = ["alice", "bob"];

#[derive(Debug, Clone)]
enum Step {
    /// Reserve for a user (and, when `ip`, a client address).
    Reserve {
        node: usize,
        user: usize,
        ip: Option<u8>,
    },
    Fail {
        node: usize,
        lease: usize,
    },
    Succeed {
        node: usize,
        lease: usize,
    },
    Release {
        node: usize,
        lease: usize,
    },
    Put {
        node: usize,
        user: usize,
        purpose: u8,
    },
    Take {
        node: usize,
        token: usize,
        purpose: u8,
    },
    Advance {
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, 0..2usize, proptest::option::of(0..2u8))
            .prop_map(|(node, user, ip)| Step::Reserve { node, user, ip }),
        3 => (0..2usize, 0..6usize).prop_map(|(node, lease)| Step::Fail { node, lease }),
        1 => (0..2usize, 0..6usize).prop_map(|(node, lease)| Step::Succeed { node, lease }),
        1 => (0..2usize, 0..6usize).prop_map(|(node, lease)| Step::Release { node, lease }),
        2 => (0..2usize, 0..2usize, 0..2u8).prop_map(|(node, user, purpose)| Step::Put { node, user, purpose }),
        2 => (0..2usize, 0..6usize, 0..2u8).prop_map(|(node, token, purpose)| Step::Take { node, token, purpose }),
        1 => prop_oneof![Just(1_000u64), Just(6_000), Just(11_000), Just(CEREMONY_MS + 1)]
            .prop_map(|ms| Step::Advance { ms }),
    ]
}

fn purpose(p: u8) -> Purpose {
    if p == 0 {
        Purpose::Step
    } else {
        Purpose::Register
    }
}

fn subjects(user: usize, ip: Option<u8>) -> Vec<BanSubject> {
    let mut s = vec![BanSubject::User(USERS[user].to_string())];
    s.extend(ip.map(|n| BanSubject::ip([10, 0, 0, n].into())));
    s
}

/// What the contract promises a subject's counter holds (its attempts in
/// flight are the live leases that name it).
#[derive(Default)]
struct Count {
    failures: VecDeque<u64>,
}

/// A lease the suite holds, and when it was reserved.
struct Held {
    lease: Lease,
    at: u64,
}

/// A ceremony the suite made, as the model sees it.
struct Made {
    token: SessionToken,
    user: usize,
    purpose: Purpose,
    expires: u64,
    live: bool,
}

pub(crate) trait GuardSubject: RegulationStore + CeremonyStore {}
impl<T: RegulationStore + CeremonyStore> GuardSubject for T {}

/// Runs `steps` on the two nodes against the model. `lease_ms`: how long
/// an unsettled lease counts as in flight in a backend that shares its
/// counters (`None`: until it is settled).
async fn run_steps(
    nodes: &[impl GuardSubject; 2],
    steps: Vec<Step>,
    lease_ms: Option<u64>,
) -> Result<(), TestCaseError> {
    let mut counts: BTreeMap<BanSubject, Count> = BTreeMap::new();
    let mut leases: Vec<Option<Held>> = Vec::new();
    let mut made: Vec<Made> = Vec::new();
    let mut now = super::EPOCH_MS;
    let horizon = |now: u64| now - LIMITS.window_secs * 1000;
    for s in steps {
        match s {
            Step::Reserve { node, user, ip } => {
                let subjects = subjects(user, ip);
                let in_flight = |s: &BanSubject| {
                    leases
                        .iter()
                        .flatten()
                        .filter(|h| lease_ms.is_none_or(|ms| h.at + ms > now))
                        .filter(|h| h.lease.subjects().contains(s))
                        .count()
                };
                let at_limit = subjects.iter().find(|s| {
                    let c = counts.entry((*s).clone()).or_default();
                    while c.failures.front().is_some_and(|t| *t <= horizon(now)) {
                        c.failures.pop_front();
                    }
                    c.failures.len() + in_flight(s) >= LIMITS.max_failures
                });
                let got = nodes[node]
                    .reserve(&LIMITS, &subjects, true, now)
                    .await
                    .unwrap();
                match at_limit {
                    Some(s) => prop_assert_eq!(got.err().map(|e| e.0), Some(s.clone())),
                    None => {
                        let lease = got.expect("a place under the limit");
                        prop_assert_eq!(lease.subjects(), &subjects[..]);
                        leases.push(Some(Held { lease, at: now }));
                    }
                }
            }
            Step::Fail { node, lease } => {
                let Some(Held { lease, .. }) = leases.get_mut(lease).and_then(Option::take) else {
                    continue;
                };
                let mut expected = Vec::new();
                for s in lease.subjects() {
                    let c = counts.entry(s.clone()).or_default();
                    while c.failures.front().is_some_and(|t| *t <= horizon(now)) {
                        c.failures.pop_front();
                    }
                    c.failures.push_back(now);
                    if c.failures.len() >= LIMITS.max_failures {
                        c.failures.clear();
                        expected.push((s.clone(), now + LIMITS.ban_secs * 1000));
                    }
                }
                let got = nodes[node].fail(&LIMITS, lease, now).await.unwrap();
                prop_assert_eq!(got, expected);
            }
            Step::Succeed { node, lease } => {
                let Some(Held { lease, .. }) = leases.get_mut(lease).and_then(Option::take) else {
                    continue;
                };
                for s in lease.subjects() {
                    if matches!(s, BanSubject::User(_)) {
                        counts.entry(s.clone()).or_default().failures.clear();
                    }
                }
                nodes[node].succeed(&LIMITS, lease, now).await.unwrap();
            }
            Step::Release { node, lease } => {
                let Some(Held { lease, .. }) = leases.get_mut(lease).and_then(Option::take) else {
                    continue;
                };
                nodes[node].release(&LIMITS, lease, now);
                // A release may land after it returns, but before the
                // releasing handle's next answer: one is the barrier.
                nodes[node]
                    .first_replay(&LIMITS, "\u{0}barrier", 0)
                    .await
                    .unwrap();
            }
            Step::Put {
                node,
                user,
                purpose: p,
            } => {
                let token = nodes[node]
                    .put_ceremony(purpose(p), USERS[user].to_string(), None, vec![p], now)
                    .await
                    .unwrap();
                // One in flight per user and purpose: the older ends.
                for m in made
                    .iter_mut()
                    .filter(|m| m.user == user && m.purpose == purpose(p))
                {
                    m.live = false;
                }
                made.push(Made {
                    token,
                    user,
                    purpose: purpose(p),
                    expires: now + CEREMONY_MS,
                    live: true,
                });
            }
            Step::Take {
                node,
                token,
                purpose: p,
            } => {
                let Some(m) = made.get_mut(token) else {
                    continue;
                };
                let got = nodes[node]
                    .take_ceremony(m.token.hash(), purpose(p), now)
                    .await
                    .unwrap();
                let expected = m.live && m.purpose == purpose(p) && m.expires > now;
                prop_assert_eq!(got.is_some(), expected);
                if let Some(c) = got {
                    prop_assert_eq!(c.user.as_deref(), Some(USERS[m.user]));
                    prop_assert_eq!(c.state, vec![p]);
                }
                // Taken or burnt either way.
                m.live = false;
            }
            Step::Advance { ms } => now += ms,
        }
    }
    Ok(())
}

/// The redb backend's in-process counters and ceremonies conform.
#[test]
fn redb_guards_conform() {
    super::run_sequences(
        48,
        proptest::collection::vec(step(), 1..60),
        super::redb_pair,
        super::close_redb_pair,
        async |nodes: &[_; 2], steps| run_steps(nodes, steps, None).await,
    );
}

/// The Redis counters and ceremonies conform, two connections standing
/// for two nodes; their leases end after `LEASE_MS`.
#[test]
fn redis_guards_conform() {
    use crate::store::outbox::testing::fresh_prefix;
    use crate::store::redis::LEASE_MS;
    if fresh_prefix().is_none() {
        return;
    }
    super::run_sequences(
        24,
        proptest::collection::vec(step(), 1..60),
        async || {
            let (url, prefix) = fresh_prefix().expect("checked above");
            (crate::store::redis::two_nodes(&url, &prefix).await, ())
        },
        |_, ()| async {},
        async |nodes: &[_; 2], steps| run_steps(nodes, steps, Some(LEASE_MS)).await,
    );
}
