//! The conformance suite: the store's behaviour specified once, as random
//! operation sequences run against a backend through the interface's traits
//! and against an in-memory model (`model.rs`). After every step the answers
//! agree, and the backend's `check()` confirms that its tables and indexes
//! agree with each other.
//!
//! A backend conforms when [`run`] passes for it: give it a way to open a
//! fresh, empty backend and to close one. The redb backend is run through it
//! by `redb_conforms` below, the distributed backend by
//! `distributed_conforms`. A backend whose audit reads lag its changes
//! (the distributed one's outbox) is settled ([`AuditStore::settle`])
//! after each step and before the events of a step are read back.

mod factors;
mod guards;
mod model;
mod oidc;

use std::future::Future;

use futures_util::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::contract::{AuditStore, BanStore, SessionStore, StoreCheck, TokenStore};
use crate::domain::*;
use model::{MSession, MToken, Model};

/// Everything a backend under test implements.
pub(crate) trait Subject:
    SessionStore + TokenStore + BanStore + AuditStore + StoreCheck
{
}
impl<T: SessionStore + TokenStore + BanStore + AuditStore + StoreCheck> Subject for T {}

/// Where the suite's clock starts: 2026-01-01T00:00:00Z, a real time, so
/// that a backend keyed or expiring by wall time (Redis TTLs, SQL
/// timestamps) sees the values it would in service.
pub(crate) const EPOCH_MS: u64 = 1_767_225_600_000;

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
const TOKEN_CAP: usize = 2;

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
    /// `n` events submitted together, each with a detail of `pad` bytes, so
    /// that a backend's batches and storage units fill and roll over.
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
    Ban {
        user: usize,
        ms: u64,
    },
    Lift {
        user: usize,
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
    CreateToken {
        user: usize,
        ttl: u64,
    },
    /// A use of the `token`th access token from address 10.0.0.`ip`.
    UseToken {
        token: usize,
        ip: u8,
    },
    RevokeToken {
        token: usize,
        /// Asked by another user than the owner: must find nothing.
        other: bool,
    },
    RevokeUserTokens {
        user: usize,
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
        1 => (0..USERS.len(), 1..3_000u64).prop_map(|(user, ms)| Step::Ban { user, ms }),
        1 => (0..USERS.len()).prop_map(|user| Step::Lift { user }),
        2 => (0..1_500u64).prop_map(|ms| Step::Advance { ms }),
        1 => (1..4usize).prop_map(|limit| Step::Sweep { limit }),
        2 => (proptest::option::of(0..USERS.len()), proptest::option::of(0..KINDS.len()), 1..5usize)
            .prop_map(|(user, kind, limit)| Step::Query { user, kind, limit }),
        2 => (0..USERS.len(), 1..4_000u64).prop_map(|(user, ttl)| Step::CreateToken { user, ttl }),
        2 => (0..8usize, 0..12u8).prop_map(|(token, ip)| Step::UseToken { token, ip }),
        1 => (0..8usize, any::<bool>()).prop_map(|(token, other)| Step::RevokeToken { token, other }),
        1 => (0..USERS.len()).prop_map(|user| Step::RevokeUserTokens { user }),
    ]
}

/// Runs `cases` random sequences, each against a fresh backend from `open`
/// (two handles on it, as two nodes would hold, and whatever must outlive
/// them, such as a temporary directory), ended by `close`. Each step runs
/// on one node, and its results are read back through the other. Panics
/// with the smallest failing sequence.
pub(crate) fn run<B, K, C, F>(cases: u32, open: impl AsyncFn() -> ([B; 2], K), close: C)
where
    B: Subject,
    C: Fn([B; 2], K) -> F,
    F: Future<Output = ()>,
{
    run_sequences(
        cases,
        proptest::collection::vec((0..2usize, step()), 1..40),
        open,
        close,
        async |nodes: &[B; 2], steps| run_steps(nodes, steps).await,
    );
}

/// The runner every part of the suite shares: `cases` sequences drawn from
/// `sequences`, each run by `steps` on a fresh backend from `open` in its
/// own runtime, then `close`d whatever the outcome.
pub(crate) fn run_sequences<S, B, K, C, F>(
    cases: u32,
    sequences: impl Strategy<Value = Vec<S>>,
    open: impl AsyncFn() -> ([B; 2], K),
    close: C,
    steps: impl AsyncFn(&[B; 2], Vec<S>) -> Result<(), TestCaseError>,
) where
    S: std::fmt::Debug + Clone,
    C: Fn([B; 2], K) -> F,
    F: Future<Output = ()>,
{
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&sequences, |seq| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a test runtime");
        rt.block_on(async {
            let (nodes, keep) = open().await;
            let r = steps(&nodes, seq).await;
            close(nodes, keep).await;
            r
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A write that changes nothing, awaited on every node: every
/// fire-and-forget write sent before it has been applied when it returns
/// (the ordering [`SessionStore::touch`] promises).
async fn barrier(nodes: &[impl Subject; 2]) {
    for b in nodes {
        b.revoke_by_token(
            SessionToken::generate().hash(),
            Revocation::new(RevokeReason::ByUser, 0),
        )
        .await
        .expect("a no-op write");
    }
}

async fn run_steps(
    nodes: &[impl Subject; 2],
    steps: Vec<(usize, Step)>,
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut tokens: Vec<SessionToken> = Vec::new();
    let mut access: Vec<(TokenHash, String, PublicId)> = Vec::new();
    let mut now: u64 = EPOCH_MS;

    for (node, step) in steps {
        // The step's node; what it did is read back through the other.
        let b = &nodes[node];
        match step {
            Step::Create { user, remember } => {
                let user = USERS[user];
                let (new, login) = sign_in(user, remember, (IDLE, ABSOLUTE, CAP), now);
                let c = b.create_session(new, login, None).await.unwrap();
                let mut expected_evicted = Vec::new();
                let mut remaining = model.of_user(user);
                remaining.retain(|(h, s)| {
                    let live = s.deadline() > now;
                    if !live {
                        model.sessions.remove(h);
                    }
                    live
                });
                let mut n = remaining.len();
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
                sync_events(b, &mut model).await?;
            }
            Step::Touch { token } => {
                let Some(t) = tokens.get(token) else { continue };
                let sent = b.touch(t.hash(), now).is_ok();
                barrier(nodes).await;
                if let Some(s) = model.sessions.get_mut(&t.hash())
                    && sent
                    && s.deadline() > now
                    && now > s.last_seen
                {
                    s.last_seen = now;
                }
            }
            Step::Revoke { token } => {
                let Some(t) = tokens.get(token) else { continue };
                let how = Revocation::new(RevokeReason::ByUser, now);
                let got = b.revoke_by_token(t.hash(), how).await.unwrap();
                let expected = model.sessions.remove(&t.hash());
                prop_assert_eq!(got, expected.as_ref().map(|s| s.id));
                if let Some(s) = expected {
                    model.event(EventKind::SessionRevoked, Some(&s.user), now * 1000);
                }
            }
            Step::RevokeUser { user } => {
                let user = USERS[user];
                let how = Revocation {
                    actor: Some("root".into()),
                    ..Revocation::new(RevokeReason::ByAdmin, now)
                };
                let got = b.revoke_user(user, None, how).await.unwrap();
                let expected: Vec<PublicId> =
                    model.of_user(user).iter().map(|(_, s)| s.id).collect();
                for (h, _) in model.of_user(user) {
                    model.sessions.remove(&h);
                    model.event(EventKind::SessionRevoked, Some(user), now * 1000);
                }
                prop_assert_eq!(got, expected);
            }
            Step::Append { user, kind, n, pad } => {
                let kind = KINDS[kind];
                let user = user.map(|u| USERS[u]);
                let appends = (0..n).map(|_| {
                    let mut ev = NewEvent::at(kind, now * 1000).detail("pad", "x".repeat(pad));
                    ev.user = user.map(str::to_string);
                    b.append(ev)
                });
                for id in join_all(appends).await {
                    model.event(kind, user, now * 1000);
                    prop_assert_eq!(id.unwrap().0, model.last_id);
                }
            }
            Step::Prune { nth, limit } => {
                if !model.events.is_empty() {
                    let through = model.events[nth % model.events.len()].0;
                    let due = model.events.iter().filter(|e| e.0 <= through).count();
                    let removed = due.min(limit);
                    model.events.drain(..removed);
                    let r = b.prune(EventId(through), limit).await.unwrap();
                    prop_assert_eq!(r.pruned, removed as u64);
                    prop_assert_eq!(r.more, due > limit);
                }
            }
            Step::Ban { user, ms } => {
                let user = USERS[user];
                b.add_ban(NewBan {
                    subject: BanSubject::User(user.into()),
                    until_ms: now + ms,
                    reason: "model".into(),
                    ip: None,
                    now_ms: now,
                })
                .await
                .unwrap();
                model.bans.insert(user.into(), now + ms);
                model.event(EventKind::BanAdded, Some(user), now * 1000);
            }
            Step::Lift { user } => {
                let user = USERS[user];
                let subject = BanSubject::User(user.into());
                let got = b.lift_ban(&subject, "model", None, now).await.unwrap();
                let existed = model.bans.remove(user).is_some();
                prop_assert_eq!(got, existed);
                if existed {
                    model.event(EventKind::BanLifted, Some(user), now * 1000);
                }
            }
            Step::Advance { ms } => now += ms,
            Step::Sweep { limit } => {
                let r = b.sweep(now, limit).await.unwrap();
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
                // The earliest to end first, then by subject.
                let mut ran_out: Vec<(u64, String)> = model
                    .bans
                    .iter()
                    .filter(|&(_, &until)| until <= now)
                    .map(|(u, &until)| (until, u.clone()))
                    .collect();
                ran_out.sort();
                let ran_out: Vec<String> =
                    ran_out.into_iter().take(limit).map(|(_, u)| u).collect();
                for u in &ran_out {
                    model.bans.remove(u);
                    model.event(EventKind::BanLifted, Some(u), now * 1000);
                }
                let mut due_tokens: Vec<(u64, TokenHash)> = model
                    .tokens
                    .iter()
                    .filter(|(_, t)| t.expires <= now)
                    .map(|(h, t)| (t.expires, *h))
                    .collect();
                due_tokens.sort();
                let more_tokens = due_tokens.len() > limit;
                due_tokens.truncate(limit);
                for (_, h) in &due_tokens {
                    let t = model.tokens.remove(h).unwrap();
                    model.event(EventKind::TokenExpired, Some(&t.user), now * 1000);
                }
                prop_assert_eq!(r.expired, due.len());
                prop_assert_eq!(r.more, more || more_tokens);
                prop_assert_eq!(r.bans_lifted, ran_out.len());
                prop_assert_eq!(r.tokens_expired, due_tokens.len());
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
                    let page = b
                        .query_events(&filter, limit, cursor.as_deref())
                        .await
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
            Step::CreateToken { user, ttl } => {
                let user = USERS[user];
                let new = NewAccessToken {
                    user: user.into(),
                    name: "model".into(),
                    domains: vec![],
                    expires_ms: now + ttl,
                    max_per_user: TOKEN_CAP,
                    ip: None,
                    now_ms: now,
                    // Claimed, but no session vouches for it.
                    two_factor: true,
                };
                let got = b.create_token(new, None).await.unwrap();
                let mine = model.tokens_of(user);
                let live = mine.iter().filter(|(_, t)| t.expires > now).count();
                if live >= TOKEN_CAP {
                    prop_assert_eq!(got.err(), Some(TokenRefusal::AtCap));
                } else {
                    let c = got.expect("under the cap");
                    for (h, t) in mine {
                        if t.expires <= now {
                            model.tokens.remove(&h);
                            model.event(EventKind::TokenExpired, Some(user), now * 1000);
                        }
                    }
                    model.event(EventKind::TokenCreated, Some(user), now * 1000);
                    prop_assert_eq!(c.info.expires_ms, now + ttl);
                    prop_assert_eq!(c.info.last_used_ms, None);
                    prop_assert!(
                        !c.info.two_factor,
                        "a token without a session is one-factor"
                    );
                    model.tokens.insert(
                        c.token.hash(),
                        MToken {
                            user: user.into(),
                            id: c.info.id,
                            created: now,
                            expires: now + ttl,
                            last_used: None,
                            ips: vec![],
                        },
                    );
                    access.push((c.token.hash(), user.into(), c.info.id));
                }
            }
            Step::UseToken { token, ip } => {
                let Some((h, _, _)) = access.get(token) else {
                    continue;
                };
                let ip: std::net::IpAddr = [10, 0, 0, ip].into();
                let sent = b.touch_token(*h, now, Some(ip)).is_ok();
                barrier(nodes).await;
                if let Some(t) = model.tokens.get_mut(h)
                    && sent
                    && t.expires > now
                {
                    if t.last_used.is_none_or(|l| now > l) {
                        t.last_used = Some(now);
                    }
                    if !t.ips.contains(&ip) {
                        if t.ips.len() >= TOKEN_RECENT_IPS {
                            t.ips.remove(0);
                        }
                        t.ips.push(ip);
                        let user = t.user.clone();
                        model.event(EventKind::TokenUsed, Some(&user), now * 1000);
                    }
                }
            }
            Step::RevokeToken { token, other } => {
                let Some((h, owner, id)) = access.get(token).cloned() else {
                    continue;
                };
                let asker = if other {
                    USERS.iter().find(|u| **u != owner).unwrap().to_string()
                } else {
                    owner.clone()
                };
                let how = Revocation::new(RevokeReason::ByUser, now);
                let got = b.revoke_token(&asker, id, how).await.unwrap();
                let expected = !other && model.tokens.remove(&h).is_some();
                prop_assert_eq!(got, expected);
                if expected {
                    model.event(EventKind::TokenRevoked, Some(&owner), now * 1000);
                }
            }
            Step::RevokeUserTokens { user } => {
                let user = USERS[user];
                let how = Revocation::new(RevokeReason::UserChanged, now);
                let got = b.revoke_user_tokens(user, how).await.unwrap();
                let mut expected = Vec::new();
                for (h, t) in model.tokens_of(user) {
                    model.tokens.remove(&h);
                    model.event(EventKind::TokenRevoked, Some(user), now * 1000);
                    expected.push(t.id);
                }
                prop_assert_eq!(got, expected);
            }
        }
        b.settle().await.unwrap();
        let other = &nodes[1 - node];
        agree(other, &model, &tokens, now).await?;
        agree_tokens(other, &model, &access, now).await?;
    }
    Ok(())
}

/// After every step: every read agrees with the model, and the backend's
/// own check finds its tables and indexes consistent.
async fn agree(
    b: &impl Subject,
    model: &Model,
    tokens: &[SessionToken],
    now: u64,
) -> Result<(), TestCaseError> {
    let mut all_live = Vec::new();
    for user in USERS {
        let expected = model.live_of(user, now);
        let got: Vec<PublicId> = b
            .sessions_of(user, now)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        prop_assert_eq!(&got, &expected);
        all_live.extend(expected);
        let subject = BanSubject::User(user.into());
        let ban = b.ban(&subject, now).await.unwrap().map(|b| b.until_ms);
        let expected = model.bans.get(user).copied().filter(|&until| until > now);
        prop_assert_eq!(ban, expected);
        if let Some(now_answer) = b.ban_now(&subject, now) {
            prop_assert_eq!(now_answer.unwrap().map(|b| b.until_ms), expected);
        }
    }
    let mut every: Vec<PublicId> = b
        .all_sessions(now, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    every.sort();
    all_live.sort();
    prop_assert_eq!(every, all_live);
    prop_assert_eq!(
        b.session_count().await.unwrap(),
        model.sessions.len() as u64
    );
    let active = model.bans.values().filter(|&&until| until > now).count();
    prop_assert_eq!(b.bans(now).await.unwrap().len(), active);
    for t in tokens {
        let got = b
            .session_by_hash(t.hash(), now)
            .await
            .unwrap()
            .map(|s| s.id);
        let expected = model
            .sessions
            .get(&t.hash())
            .filter(|s| s.deadline() > now)
            .map(|s| s.id);
        prop_assert_eq!(got, expected);
        if let Some(now_answer) = b.session_by_hash_now(t.hash(), now) {
            prop_assert_eq!(now_answer.unwrap().map(|s| s.id), expected);
        }
    }
    let report = b.check().await.unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    prop_assert_eq!(report.sessions, model.sessions.len() as u64);
    prop_assert_eq!(report.events, model.events.len() as u64);
    prop_assert_eq!(report.bans, model.bans.len() as u64);
    // Every event in time order, with its user and kind.
    let all = b.events_after(EventId(0), 10_000).await.unwrap();
    let got: Vec<(u64, EventKind, Option<String>)> = all
        .into_iter()
        .map(|e| (e.id.0, e.kind, e.user.map(String::from)))
        .collect();
    prop_assert_eq!(&got, &model.events);
    Ok(())
}

/// After every step: the access tokens the backend lists and finds agree
/// with the model, and its check counts them.
async fn agree_tokens(
    b: &impl Subject,
    model: &Model,
    access: &[(TokenHash, String, PublicId)],
    now: u64,
) -> Result<(), TestCaseError> {
    for user in USERS {
        let mut expected: Vec<(u64, TokenHash, PublicId)> = model
            .tokens_of(user)
            .into_iter()
            .filter(|(_, t)| t.expires > now)
            .map(|(h, t)| (t.created, h, t.id))
            .collect();
        expected.sort();
        let expected: Vec<PublicId> = expected.into_iter().rev().map(|e| e.2).collect();
        let got: Vec<PublicId> = b
            .tokens_of(user, now)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        prop_assert_eq!(got, expected);
    }
    for (h, _, _) in access {
        let got = b
            .token_by_hash(*h, now)
            .await
            .unwrap()
            .map(|t| (t.id, t.last_used_ms, t.recent_ips));
        let expected = model
            .tokens
            .get(h)
            .filter(|t| t.expires > now)
            .map(|t| (t.id, t.last_used, t.ips.clone()));
        prop_assert_eq!(&got, &expected);
        if let Some(now_answer) = b.token_by_hash_now(*h, now) {
            let now_answer = now_answer
                .unwrap()
                .map(|t| (t.id, t.last_used_ms, t.recent_ips));
            prop_assert_eq!(&now_answer, &expected);
        }
    }
    prop_assert_eq!(b.token_count().await.unwrap(), model.tokens.len() as u64);
    let report = b.check().await.unwrap();
    prop_assert_eq!(report.tokens, model.tokens.len() as u64);
    Ok(())
}

/// Session creation emits events whose exact set depends on expiry and the
/// cap; the model takes them from the backend's newest events, checking
/// their kinds and order, so later steps compare against an exact list.
async fn sync_events(b: &impl Subject, model: &mut Model) -> Result<(), TestCaseError> {
    b.settle().await.unwrap();
    let fresh = b.events_after(EventId(model.last_id), 1_000).await.unwrap();
    prop_assert!(fresh.len() >= 2);
    let n = fresh.len();
    prop_assert_eq!(fresh[n - 2].kind, EventKind::SessionCreated);
    prop_assert_eq!(fresh[n - 1].kind, EventKind::LoginSuccess);
    prop_assert_eq!(&fresh[n - 1].session, &fresh[n - 2].session);
    let mut seen_evicted = false;
    for e in &fresh[..n - 2] {
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
        model
            .events
            .push((e.id.0, e.kind, e.user.map(String::from)));
    }
    Ok(())
}

/// The redb backend conforms: a fresh file per case, its writer thread
/// stopped and the file closed after it.
#[test]
fn redb_conforms() {
    run(48, redb_pair, close_redb_pair);
}

/// What a redb case holds until it closes: the file's directory and its
/// writer.
pub(super) type RedbHeld = (tempfile::TempDir, super::BackendTask);

/// The two "nodes" of a redb case: one process holds one redb file, so
/// they are two handles on a fresh file (on tmpfs where it exists, which
/// keeps durable commits cheap).
pub(super) async fn redb_pair() -> ([super::Backend; 2], RedbHeld) {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let config = super::BackendConfig::redb(dir.path().join("g.redb"));
    let (backend, task) = super::Backend::open(&config).unwrap();
    ([backend.clone(), backend], (dir, task))
}

/// Stops a redb case's writer and closes its file.
pub(super) async fn close_redb_pair([other, backend]: [super::Backend; 2], (dir, task): RedbHeld) {
    drop(other);
    task.shutdown().await.unwrap();
    backend.close().unwrap();
    drop(dir);
}

/// The distributed backend conforms: two nodes on a fresh Redis key prefix
/// and a fresh PostgreSQL database per case, their chainers not started
/// (a settle chains the outbox as the leader, then lets the lead go).
#[test]
fn distributed_conforms() {
    use crate::store::distributed::testing::{fresh_config, services, two_nodes};
    if !services() {
        return;
    }
    run(
        32,
        async || {
            let config = fresh_config().await.expect("checked above");
            (two_nodes(&config).await, ())
        },
        |_, ()| async {},
    );
}

/// A sign-in of `user` at `now` as the model tests make it: the session
/// (no address or agent; `(idle, absolute, cap)` its lifetimes and the
/// user's cap; password only, which a caller may change) and its
/// `login.success`.
pub(crate) fn sign_in(
    user: &str,
    remember_me: bool,
    (idle_ttl_ms, absolute_ttl_ms, max_per_user): (u64, u64, usize),
    now: u64,
) -> (NewSession, NewEvent) {
    let new = NewSession {
        user: user.into(),
        remember_me,
        idle_ttl_ms,
        absolute_ttl_ms,
        max_per_user,
        ip: None,
        user_agent: None,
        now_ms: now,
        methods: Methods::PASSWORD,
    };
    (
        new,
        NewEvent::at(EventKind::LoginSuccess, now * 1000).user(user),
    )
}
