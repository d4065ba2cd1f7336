//! The conformance suite for second factors and pending sign-ins: random
//! changes and pending-state steps run against a backend and against a
//! model (a `BTreeMap` of factor sets changed by the same pure
//! `FactorSet::apply`, and a map of pending deadlines). After every step
//! the backend's answers agree with the model, every passkey is found by
//! its credential id, and the backend's own check finds its tables and
//! indexes agreeing ([`FactorSubject::problems`]).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::domain::*;
use crate::store::contract::{FactorStore, SessionStore, StoreCheck};

/// Everything a backend under this suite implements, and how it checks
/// itself.
pub(crate) trait FactorSubject: FactorStore + SessionStore {
    /// What the backend's own check finds wrong among its factors,
    /// pending sign-ins and their indexes.
    fn problems(&self) -> impl std::future::Future<Output = Vec<String>>;
}

impl FactorSubject for crate::store::Backend {
    async fn problems(&self) -> Vec<String> {
        self.check().await.expect("the check runs").problems
    }
}

impl FactorSubject for crate::store::redis::RedisState {
    async fn problems(&self) -> Vec<String> {
        self.factor_problems().await
    }
}

const USERS: [&str; 2] = ["alice", "bob"];
const PENDING_TTL: u64 = 2_000;
/// The most pending sign-ins one user may hold in the suite.
const MAX_PENDING: usize = 3;

/// A pending sign-in the suite made, as the model sees it.
struct Pend<'a> {
    token: SessionToken,
    owner: &'a str,
    created: u64,
    deadline: u64,
    /// Still stored: not taken, swept or pushed out by newer ones.
    live: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Change { user: usize, change: usize, n: u8 },
    CreatePending { user: usize },
    Complete { pending: usize, user: usize },
    End { pending: usize },
    Advance { ms: u64 },
    Sweep { limit: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..USERS.len(), 0..10usize, 0..4u8).prop_map(|(user, change, n)| Step::Change { user, change, n }),
        2 => (0..USERS.len()).prop_map(|user| Step::CreatePending { user }),
        2 => (0..8usize, 0..USERS.len()).prop_map(|(pending, user)| Step::Complete { pending, user }),
        1 => (0..8usize).prop_map(|pending| Step::End { pending }),
        2 => (0..1_500u64).prop_map(|ms| Step::Advance { ms }),
        1 => (1..3usize).prop_map(|limit| Step::Sweep { limit }),
    ]
}

/// The `n`-th passkey of the suite (small ids, so changes collide).
fn passkey(n: u8) -> Passkey {
    Passkey {
        id: [n; 16],
        name: format!("key {n}"),
        credential_id: vec![n, 0xc1],
        credential: vec![n; 4],
        created_ms: 0,
        last_used_ms: None,
    }
}

/// One of two sessions or a pending sign-in, chosen by `n`: enrollments
/// begun by one and confirmed by another are refused.
fn by(n: u8) -> EnrollerId {
    match n % 3 {
        0 => EnrollerId::Session([1; 16]),
        1 => EnrollerId::Session([2; 16]),
        _ => EnrollerId::Pending([3; 32]),
    }
}

fn change(kind: usize, n: u8) -> FactorChange {
    let codes = |n: u8| vec![[n; 32], [n.wrapping_add(1); 32]];
    match kind {
        0 => FactorChange::BeginTotp {
            sealed: vec![n; 8],
            by: by(n),
        },
        1 => FactorChange::ConfirmTotp {
            step: u64::from(n),
            recovery: codes(n),
            by: by(n),
        },
        2 => FactorChange::UseTotp { step: u64::from(n) },
        3 => FactorChange::RemoveTotp,
        4 => FactorChange::UseRecovery { hash: [n; 32] },
        5 => FactorChange::SetRecovery { hashes: codes(n) },
        6 => FactorChange::AddPasskey {
            passkey: passkey(n),
            recovery: codes(n),
            by: by(n),
        },
        7 => FactorChange::RemovePasskey { id: [n; 16] },
        8 => FactorChange::UsePasskey {
            credential_id: vec![n, 0xc1],
            credential: vec![n; 5],
        },
        _ => FactorChange::Reset,
    }
}

async fn run_steps(
    nodes: &[impl FactorSubject; 2],
    steps: Vec<(usize, Step)>,
) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<&str, FactorSet> = BTreeMap::new();
    // Every pending sign-in ever made.
    let mut pending: Vec<Pend> = Vec::new();
    let mut now: u64 = super::EPOCH_MS;
    for (node, s) in steps {
        // The step's node; what it did is read back through the other.
        let b = &nodes[node];
        match s {
            Step::Change { user, change: k, n } => {
                let u = USERS[user];
                let c = change(k, n);
                let mut want = model.get(u).cloned().unwrap_or_default();
                let taken = |id: &[u8]| {
                    model.iter().any(|(o, set)| {
                        *o != u && set.passkeys.iter().any(|p| p.credential_id == id)
                    })
                };
                // The user's own refusals come first (a pending sign-in may
                // not add a second factor, whoever holds the credential);
                // then a credential id belongs to one user at most.
                let expected = match (want.apply(c.clone(), now), &c) {
                    (Ok(_), FactorChange::AddPasskey { passkey, .. })
                        if taken(&passkey.credential_id) =>
                    {
                        Err(FactorRefusal::PasskeyExists)
                    }
                    (r, _) => r,
                };
                let event = NewEvent::at(EventKind::MfaEnrolled, now * 1000).user(u);
                let got = b
                    .change_factors(u, c, Some(event), now)
                    .await
                    .expect("a change is stored");
                prop_assert_eq!(got, expected);
                if expected.is_ok() {
                    model.insert(u, want);
                }
            }
            Step::CreatePending { user } => {
                let u = USERS[user];
                let token = b
                    .create_pending(
                        PendingSignIn {
                            user: u.to_string(),
                            enroll: false,
                            remember_me: false,
                            created_ms: now,
                            expires_ms: now + PENDING_TTL,
                            ip: None,
                            user_agent: None,
                        },
                        MAX_PENDING,
                    )
                    .await
                    .expect("a pending sign-in is stored");
                pending.push(Pend {
                    token,
                    owner: u,
                    created: now,
                    deadline: now + PENDING_TTL,
                    live: true,
                });
                // Past the cap, the user's oldest stored ones go (expired
                // ones not yet swept count: they are stored).
                let mut held: Vec<&mut Pend> = pending
                    .iter_mut()
                    .filter(|p| p.live && p.owner == u)
                    .collect();
                held.sort_by_key(|p| (p.created, p.token.hash().0));
                let excess = held.len().saturating_sub(MAX_PENDING);
                for p in held.into_iter().take(excess) {
                    p.live = false;
                }
            }
            Step::Complete { pending: i, user } => {
                let Some(Pend {
                    token,
                    owner,
                    deadline,
                    live,
                    ..
                }) = pending.get_mut(i)
                else {
                    continue;
                };
                let u = USERS[user];
                let (new, login) = super::sign_in(u, false, (10_000, 10_000, 10), now);
                let new = NewSession {
                    methods: Methods::PASSWORD.with(Method::Totp),
                    ..new
                };
                let created = b
                    .complete_sign_in(token.hash(), new, login, None)
                    .await
                    .expect("completion is stored");
                // A pending sign-in is taken by any attempt on it; it makes
                // a session only when live and of the same user.
                let makes = *live && *deadline > now && *owner == u;
                prop_assert_eq!(created.is_some(), makes);
                if let Some(c) = created {
                    let s = b.session_by_hash(c.token.hash(), now).await.unwrap();
                    let s = s.expect("the session exists");
                    prop_assert!(s.methods.two_factor());
                    prop_assert_eq!(s.second_factor_ms, Some(now));
                }
                *live = false;
            }
            Step::End { pending: i } => {
                let Some(Pend {
                    token,
                    deadline,
                    live,
                    ..
                }) = pending.get_mut(i)
                else {
                    continue;
                };
                let got = b.end_pending(token.hash(), now).await.unwrap();
                prop_assert_eq!(got.is_some(), *live && *deadline > now);
                *live = false;
            }
            Step::Advance { ms } => now += ms,
            Step::Sweep { limit } => {
                let mut swept = 0;
                loop {
                    let r = b.sweep(now, limit).await.unwrap();
                    swept += r.pending;
                    if !r.more {
                        break;
                    }
                }
                let due = pending
                    .iter_mut()
                    .filter(|p| p.live && p.deadline <= now)
                    .map(|p| p.live = false)
                    .count();
                prop_assert_eq!(swept, due);
            }
        }
        // The backend, read through the other node, agrees with the model.
        let b = &nodes[1 - node];
        for u in USERS {
            let want = model.get(u).cloned().unwrap_or_default();
            let got = b.factors(u).await.unwrap();
            prop_assert_eq!(&got, &want, "factors of {}", u);
            for p in &want.passkeys {
                let owner = b.passkey_owner(&p.credential_id).await.unwrap();
                prop_assert_eq!(owner.as_deref(), Some(u));
            }
        }
        for p in &pending {
            let got = b.pending(p.token.hash(), now).await.unwrap();
            prop_assert_eq!(got.is_some(), p.live && p.deadline > now);
            if let Some(got) = got {
                prop_assert_eq!(got.user.as_str(), p.owner);
            }
        }
        let problems = b.problems().await;
        prop_assert!(problems.is_empty(), "{:?}", problems);
    }
    Ok(())
}

/// Runs `sequences` against fresh redb backends.
fn on_redb(cases: u32, sequences: impl Strategy<Value = Vec<(usize, Step)>>) {
    super::run_sequences(
        cases,
        sequences,
        super::redb_pair,
        super::close_redb_pair,
        async |nodes: &[_; 2], steps| run_steps(nodes, steps).await,
    );
}

/// The redb backend conforms.
#[test]
fn redb_factors_conform() {
    on_redb(32, proptest::collection::vec((0..2usize, step()), 1..40));
}

/// A pending sign-in adding a passkey whose credential id another user
/// holds is refused as a pending enroller: the user's own refusal comes
/// before the clash across users.
#[test]
fn pending_enroller_refused_before_credential_clash() {
    let change = |user, n| (0, Step::Change { user, change: 6, n });
    let steps = vec![change(1, 2), change(0, 0), change(0, 2)];
    on_redb(1, Just(steps.clone()));
    on_redis(1, Just(steps));
}

/// Runs `sequences` against fresh key prefixes of the test Redis, two
/// connections standing for two nodes; nothing without a Redis.
fn on_redis(cases: u32, sequences: impl Strategy<Value = Vec<(usize, Step)>>) {
    use crate::store::outbox::testing::fresh_prefix;
    if fresh_prefix().is_none() {
        return;
    }
    super::run_sequences(
        cases,
        sequences,
        async || {
            let (url, prefix) = fresh_prefix().expect("checked above");
            (crate::store::redis::two_nodes(&url, &prefix).await, ())
        },
        |_, ()| async {},
        async |nodes: &[_; 2], steps| run_steps(nodes, steps).await,
    );
}

/// The Redis factors and pending sign-ins conform.
#[test]
fn redis_factors_conform() {
    on_redis(32, proptest::collection::vec((0..2usize, step()), 1..40));
}
