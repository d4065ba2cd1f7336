//! Model-based tests: random operation sequences run against the store and
//! against an in-memory model built from `BTreeMap`s. After every step the
//! answers agree, and `check()` confirms that every table and index agree.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::temp_store;
use super::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const KINDS: [EventKind; 4] = [
    EventKind::LoginSuccess,
    EventKind::LoginFailure,
    EventKind::Logout,
    EventKind::ConfigReloaded,
];
const IDLE: u64 = 1_000;
const ABSOLUTE: u64 = 5_000;
const CAP: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Create {
        user: usize,
        remember: bool,
    },
    Touch {
        token: usize,
    },
    Revoke {
        token: usize,
    },
    RevokeUser {
        user: usize,
    },
    /// `n` events in one batch, each with a detail of `pad` bytes, so that
    /// buckets fill and roll over within one transaction and across them.
    Append {
        user: Option<usize>,
        kind: usize,
        n: usize,
        pad: usize,
    },
    /// Retention: remove up to `limit` of the oldest events, up to the
    /// `nth` (modulo the count) event in id order.
    Prune {
        nth: usize,
        limit: usize,
    },
    Advance {
        ms: u64,
    },
    Sweep {
        limit: usize,
    },
    Query {
        user: Option<usize>,
        kind: Option<usize>,
        limit: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..USERS.len(), any::<bool>()).prop_map(|(user, remember)| Step::Create { user, remember }),
        2 => (0..16usize).prop_map(|token| Step::Touch { token }),
        1 => (0..16usize).prop_map(|token| Step::Revoke { token }),
        1 => (0..USERS.len()).prop_map(|user| Step::RevokeUser { user }),
        3 => (proptest::option::of(0..USERS.len()), 0..KINDS.len(), 1..12usize, 0..700usize)
            .prop_map(|(user, kind, n, pad)| Step::Append { user, kind, n, pad }),
        1 => (any::<usize>(), 1..30usize).prop_map(|(nth, limit)| Step::Prune { nth, limit }),
        2 => (0..1_500u64).prop_map(|ms| Step::Advance { ms }),
        1 => (1..4usize).prop_map(|limit| Step::Sweep { limit }),
        2 => (proptest::option::of(0..USERS.len()), proptest::option::of(0..KINDS.len()), 1..5usize)
            .prop_map(|(user, kind, limit)| Step::Query { user, kind, limit }),
    ]
}

#[derive(Debug, Clone)]
struct MSession {
    user: String,
    id: PublicId,
    created: u64,
    last_seen: u64,
    idle: Option<u64>,
    absolute: u64,
}

impl MSession {
    fn deadline(&self) -> u64 {
        match self.idle {
            Some(i) => (self.last_seen + i).min(self.absolute),
            None => self.absolute,
        }
    }
}

#[derive(Default)]
struct Model {
    sessions: BTreeMap<TokenHash, MSession>,
    /// (id, kind, user), in id order.
    events: Vec<(u64, EventKind, Option<String>)>,
    last_id: u64,
}

impl Model {
    fn event(&mut self, kind: EventKind, user: Option<&str>, at_us: u64) {
        let mut id = EventId::from_micros(at_us).0;
        if id <= self.last_id {
            id = self.last_id + 1;
        }
        self.last_id = id;
        self.events.push((id, kind, user.map(str::to_string)));
    }

    /// A user's sessions in index order: (created, hash) ascending.
    fn of_user(&self, user: &str) -> Vec<(TokenHash, MSession)> {
        let mut v: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(h, s)| (*h, s.clone()))
            .collect();
        v.sort_by_key(|(h, s)| (s.created, *h));
        v
    }
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let (_dir, store) = temp_store();
    let mut model = Model::default();
    let mut tokens: Vec<SessionToken> = Vec::new();
    let mut now: u64 = 1_000_000;

    for step in steps {
        match step {
            Step::Create { user, remember } => {
                let user = USERS[user];
                let c = match store
                    .apply(Op::CreateSession(NewSession {
                        user: user.into(),
                        remember_me: remember,
                        idle_ttl_ms: IDLE,
                        absolute_ttl_ms: ABSOLUTE,
                        max_per_user: CAP,
                        ip: None,
                        user_agent: None,
                        now_ms: now,
                    }))
                    .unwrap()
                {
                    OpOutput::Created(c) => c,
                    other => panic!("{other:?}"),
                };
                let mut remaining = model.of_user(user);
                let mut expected_evicted = Vec::new();
                remaining.retain(|(h, s)| {
                    if s.deadline() <= now {
                        model.sessions.remove(h);
                        false
                    } else {
                        true
                    }
                });
                let live = remaining.len();
                let mut n = live;
                for (h, _) in remaining.iter() {
                    if n < CAP {
                        break;
                    }
                    let s = model.sessions.remove(h).unwrap();
                    expected_evicted.push(s.id);
                    n -= 1;
                }
                prop_assert_eq!(&c.evicted, &expected_evicted);
                model.sessions.insert(
                    c.token.hash(),
                    MSession {
                        user: user.into(),
                        id: c.session.id,
                        created: now,
                        last_seen: now,
                        idle: (!remember).then_some(IDLE),
                        absolute: now + ABSOLUTE,
                    },
                );
                tokens.push(c.token);
                // Events are compared through `check` and queries; rebuild the
                // model's event list from what the store reports about this step.
                sync_events(&store, &mut model)?;
            }
            Step::Touch { token } => {
                let Some(t) = tokens.get(token) else { continue };
                store
                    .apply(Op::Touch {
                        hash: t.hash(),
                        now_ms: now,
                    })
                    .unwrap();
                if let Some(s) = model.sessions.get_mut(&t.hash()) {
                    if s.deadline() > now && now > s.last_seen {
                        s.last_seen = now;
                    }
                }
            }
            Step::Revoke { token } => {
                let Some(t) = tokens.get(token) else { continue };
                let out = store
                    .apply(Op::RevokeByToken {
                        hash: t.hash(),
                        reason: RevokeReason::ByUser,
                        ip: None,
                        now_ms: now,
                    })
                    .unwrap();
                let expected = model.sessions.remove(&t.hash());
                match out {
                    OpOutput::RevokedOne(id) => {
                        prop_assert_eq!(id, expected.as_ref().map(|s| s.id))
                    }
                    other => panic!("{other:?}"),
                }
                if let Some(s) = expected {
                    model.event(EventKind::SessionRevoked, Some(&s.user), now * 1000);
                }
            }
            Step::RevokeUser { user } => {
                let user = USERS[user];
                let out = store
                    .apply(Op::RevokeUser {
                        user: user.into(),
                        keep: None,
                        reason: RevokeReason::ByAdmin,
                        actor: Some("root".into()),
                        ip: None,
                        now_ms: now,
                    })
                    .unwrap();
                let expected: Vec<PublicId> =
                    model.of_user(user).iter().map(|(_, s)| s.id).collect();
                for (h, _) in model.of_user(user) {
                    model.sessions.remove(&h);
                    model.event(EventKind::SessionRevoked, Some(user), now * 1000);
                }
                match out {
                    OpOutput::Revoked(ids) => prop_assert_eq!(ids, expected),
                    other => panic!("{other:?}"),
                }
            }
            Step::Append { user, kind, n, pad } => {
                let kind = KINDS[kind];
                let user = user.map(|u| USERS[u]);
                let ops = (0..n)
                    .map(|_| {
                        let mut ev = NewEvent::at(kind, now * 1000).detail("pad", "x".repeat(pad));
                        ev.user = user.map(str::to_string);
                        Op::Append(ev)
                    })
                    .collect();
                for out in store.apply_batch(ops) {
                    model.event(kind, user, now * 1000);
                    match out.unwrap() {
                        OpOutput::Appended(id) => prop_assert_eq!(id.0, model.last_id),
                        other => panic!("{other:?}"),
                    }
                }
            }
            Step::Prune { nth, limit } => {
                if !model.events.is_empty() {
                    let through = model.events[nth % model.events.len()].0;
                    let due = model.events.iter().filter(|e| e.0 <= through).count();
                    let removed = due.min(limit);
                    model.events.drain(..removed);
                    let out = store
                        .apply(Op::Prune {
                            through: EventId(through),
                            limit,
                        })
                        .unwrap();
                    match out {
                        OpOutput::Pruned(r) => {
                            prop_assert_eq!(r.pruned, removed as u64);
                            prop_assert_eq!(r.more, due > limit);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            Step::Advance { ms } => now += ms,
            Step::Sweep { limit } => {
                let out = store.apply(Op::Sweep { now_ms: now, limit }).unwrap();
                let mut due: Vec<(u64, TokenHash)> = model
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.deadline() <= now)
                    .map(|(h, s)| (s.deadline(), *h))
                    .collect();
                due.sort();
                let more = due.len() > limit;
                due.truncate(limit);
                for (_, h) in &due {
                    let s = model.sessions.remove(h).unwrap();
                    model.event(EventKind::SessionExpired, Some(&s.user), now * 1000);
                }
                match out {
                    OpOutput::Swept(r) => {
                        prop_assert_eq!(r.expired, due.len());
                        prop_assert_eq!(r.more, more);
                    }
                    other => panic!("{other:?}"),
                }
            }
            Step::Query { user, kind, limit } => {
                let filter = EventFilter {
                    user: user.map(|u| USERS[u].to_string()),
                    kinds: kind.map(|k| vec![KINDS[k]]).unwrap_or_default(),
                    ..Default::default()
                };
                let expected: Vec<u64> = model
                    .events
                    .iter()
                    .rev()
                    .filter(|(_, k, u)| {
                        filter.user.as_ref().is_none_or(|f| u.as_ref() == Some(f))
                            && (filter.kinds.is_empty() || filter.kinds.contains(k))
                    })
                    .map(|(id, _, _)| *id)
                    .collect();
                // Walk every page: each matching event exactly once, newest first.
                let mut got = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let page = store
                        .query_events(&filter, limit, cursor.as_deref())
                        .unwrap();
                    prop_assert!(page.events.len() <= limit);
                    got.extend(page.events.iter().map(|e| e.id.0));
                    match page.next_cursor {
                        Some(c) => {
                            prop_assert_eq!(
                                page.events.len(),
                                limit,
                                "a short page has no next cursor"
                            );
                            cursor = Some(c)
                        }
                        None => break,
                    }
                }
                prop_assert_eq!(got, expected);
            }
        }

        // Sessions agree for every user and every token.
        for user in USERS {
            let mut expected: Vec<(u64, TokenHash, PublicId)> = model
                .of_user(user)
                .into_iter()
                .filter(|(_, s)| s.deadline() > now)
                .map(|(h, s)| (s.created, h, s.id))
                .collect();
            expected.sort();
            expected.reverse();
            let got: Vec<PublicId> = store
                .sessions_of(user, now)
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect();
            prop_assert_eq!(got, expected.iter().map(|e| e.2).collect::<Vec<_>>());
        }
        for t in &tokens {
            let got = store.session(t, now).unwrap().map(|s| s.id);
            let expected = model
                .sessions
                .get(&t.hash())
                .filter(|s| s.deadline() > now)
                .map(|s| s.id);
            prop_assert_eq!(got, expected);
        }
        let report = store.check().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
        prop_assert_eq!(report.sessions, model.sessions.len() as u64);
        prop_assert_eq!(report.events, model.events.len() as u64);
        // Every event in time order, with its user and kind, from the buckets.
        let all = store.events_after(EventId(0), 10_000).unwrap();
        let got: Vec<(u64, EventKind, Option<String>)> =
            all.into_iter().map(|e| (e.id.0, e.kind, e.user)).collect();
        prop_assert_eq!(&got, &model.events);
    }
    Ok(())
}

/// Session creation emits events whose exact set depends on expiry and the cap;
/// the model takes them from the store's newest events, checking their kinds
/// and order, so later steps compare against an exact list.
fn sync_events(store: &Store, model: &mut Model) -> Result<(), TestCaseError> {
    let fresh = store.events_after(EventId(model.last_id), 1_000).unwrap();
    prop_assert!(!fresh.is_empty());
    prop_assert_eq!(fresh.last().unwrap().kind, EventKind::SessionCreated);
    let mut seen_evicted = false;
    for e in &fresh[..fresh.len() - 1] {
        match e.kind {
            // Expired sessions are removed before any eviction.
            EventKind::SessionExpired => prop_assert!(!seen_evicted),
            EventKind::SessionEvicted => seen_evicted = true,
            other => prop_assert!(false, "unexpected {other:?} at creation"),
        }
    }
    for e in fresh {
        prop_assert!(e.id.0 > model.last_id);
        model.last_id = e.id.0;
        model.events.push((e.id.0, e.kind, e.user));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_agrees_with_model(steps in proptest::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}
