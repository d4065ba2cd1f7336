//! Second factors, pending sign-ins and the step-up on Redis beside redb:
//! the same calls give the same answers and, chained, the same events;
//! and a TOTP step or a recovery code raced by two nodes is accepted once.
//! (The random model of `store::conformance::factors` runs on Redis too.)

use std::collections::HashMap;

use super::tests::{labelled, sides};
use super::{RedisState, two_nodes};
use crate::domain::{
    EnrollerId, EventKind, FactorChange, FactorRefusal, Method, Methods, NewEvent, NewSession,
    Passkey, PendingSignIn, PublicId, TokenHash,
};
use crate::store::credentials::CredentialCheck;
use crate::store::{FactorStore, SessionStore, WriteError};

const T0: u64 = 1_780_000_000_000;
const ME: EnrollerId = EnrollerId::Session([1; 16]);

fn passkey(n: u8, credential: u8) -> Passkey {
    Passkey {
        id: [n; 16],
        name: format!("key {n}"),
        credential_id: vec![credential; 24],
        credential: vec![n; 40],
        created_ms: T0,
        last_used_ms: None,
    }
}

fn event(kind: EventKind, user: &str, at: u64) -> NewEvent {
    NewEvent::at(kind, (T0 + at) * 1000)
        .user(user)
        .ip(Some("198.51.100.9".parse().unwrap()))
}

fn pending(user: &str, at: u64, ttl: u64) -> PendingSignIn {
    PendingSignIn {
        user: user.into(),
        enroll: false,
        remember_me: at % 2 == 1,
        created_ms: T0 + at,
        expires_ms: T0 + at + ttl,
        ip: Some("198.51.100.9".parse().unwrap()),
        user_agent: Some("Firefox".into()),
    }
}

fn session(user: &str, at: u64) -> NewSession {
    NewSession {
        user: user.into(),
        remember_me: false,
        idle_ttl_ms: 600_000,
        absolute_ttl_ms: 3_600_000,
        max_per_user: 2,
        ip: Some("198.51.100.9".parse().unwrap()),
        user_agent: Some("Firefox".into()),
        now_ms: T0 + at,
        methods: Methods::PASSWORD.with(Method::Totp),
    }
}

/// Factors enrolled, used (a step and a code twice), a passkey claimed by
/// two users, removed; pending sign-ins made past the cap, completed twice,
/// for another user and with old credentials, ended, swept; a step-up. On
/// Redis (two nodes) and on redb: the same answers, the same factors, and
/// once chained, the same events session for session.
#[tokio::test]
async fn factors_behave_and_are_recorded_as_on_redb() {
    let Some(sides) = sides().await else { return };
    let [a, b] = &sides.nodes;
    let redb = &sides.redb;

    // The same change on a Redis node and on redb, the same answer.
    let change = async |node: &RedisState, user: &str, c: FactorChange, ev: Option<NewEvent>| {
        let now = ev.as_ref().map_or(T0, |e| e.at_us / 1000);
        let r = node
            .change_factors(user, c.clone(), ev.clone(), now)
            .await
            .unwrap();
        let d = redb.change_factors(user, c, ev, now).await.unwrap();
        assert_eq!(r, d);
        r
    };
    let same_factors = async |user: &str| {
        let got = b.factors(user).await.unwrap();
        assert_eq!(got, redb.factors(user).await.unwrap(), "{user}");
        got
    };
    let codes = vec![[1; 32], [2; 32], [3; 32]];

    // TOTP: begun, confirmed with recovery codes, a step used twice.
    let begin = FactorChange::BeginTotp {
        sealed: vec![9; 48],
        by: ME,
    };
    change(a, "alice", begin, None).await.unwrap();
    let confirm = FactorChange::ConfirmTotp {
        step: 100,
        recovery: codes.clone(),
        by: ME,
    };
    let enrolled = event(EventKind::MfaEnrolled, "alice", 1).detail("method", "totp");
    let applied = change(a, "alice", confirm, Some(enrolled)).await.unwrap();
    assert!(applied.recovery_set);
    let step = |at| Some(event(EventKind::MfaSuccess, "alice", at));
    change(b, "alice", FactorChange::UseTotp { step: 101 }, step(2))
        .await
        .unwrap();
    assert_eq!(
        change(a, "alice", FactorChange::UseTotp { step: 101 }, step(3)).await,
        Err(FactorRefusal::Replayed)
    );
    assert_eq!(
        same_factors("alice").await.totp.unwrap().last_step,
        Some(101)
    );

    // A recovery code, spent twice.
    let spend = |at| Some(event(EventKind::MfaRecoveryUsed, "alice", at));
    let used = FactorChange::UseRecovery { hash: [2; 32] };
    assert_eq!(
        change(b, "alice", used.clone(), spend(4))
            .await
            .unwrap()
            .recovery_left,
        2
    );
    assert_eq!(
        change(a, "alice", used, spend(5)).await,
        Err(FactorRefusal::NoSuchCode)
    );

    // One credential id, two users: the second is refused, until the
    // first removes it.
    let add = |n, credential| FactorChange::AddPasskey {
        passkey: passkey(n, credential),
        recovery: vec![],
        by: ME,
    };
    let key_event =
        |user, at| Some(event(EventKind::MfaEnrolled, user, at).detail("method", "webauthn"));
    change(a, "alice", add(1, 7), key_event("alice", 6))
        .await
        .unwrap();
    assert_eq!(
        change(b, "bob", add(2, 7), key_event("bob", 7)).await,
        Err(FactorRefusal::PasskeyExists)
    );
    let owner = |credential: u8| vec![credential; 24];
    assert_eq!(
        b.passkey_owner(&owner(7)).await.unwrap(),
        redb.passkey_owner(&owner(7)).await.unwrap()
    );
    assert_eq!(
        b.passkey_owner(&owner(7)).await.unwrap().as_deref(),
        Some("alice")
    );
    let signed = FactorChange::UsePasskey {
        credential_id: owner(7),
        credential: vec![8; 40],
    };
    change(b, "alice", signed, step(8)).await.unwrap();
    same_factors("alice").await;
    let removed = |user, at| Some(event(EventKind::MfaRemoved, user, at));
    change(
        a,
        "alice",
        FactorChange::RemovePasskey { id: [1; 16] },
        removed("alice", 9),
    )
    .await
    .unwrap();
    assert_eq!(b.passkey_owner(&owner(7)).await.unwrap(), None);
    change(b, "bob", add(2, 7), key_event("bob", 10))
        .await
        .unwrap();
    assert_eq!(
        a.passkey_owner(&owner(7)).await.unwrap().as_deref(),
        Some("bob")
    );
    // The last factor goes, and its recovery codes with it: nothing stored.
    change(a, "alice", FactorChange::RemoveTotp, removed("alice", 11))
        .await
        .unwrap();
    assert!(same_factors("alice").await.is_empty());
    same_factors("bob").await;
    let reset = Some(event(EventKind::MfaReset, "bob", 12).detail("actor", "root"));
    change(a, "bob", FactorChange::Reset, reset).await.unwrap();
    assert_eq!(a.passkey_owner(&owner(7)).await.unwrap(), None);

    // Pending sign-ins: three for alice with a cap of two, the oldest
    // pushed out.
    let create = async |node: &RedisState, p: PendingSignIn| {
        [
            node.create_pending(p.clone(), 2).await.unwrap().hash(),
            redb.create_pending(p, 2).await.unwrap().hash(),
        ]
    };
    let live = async |h: [TokenHash; 2], at: u64| {
        let r = b.pending(h[0], T0 + at).await.unwrap();
        assert_eq!(r, redb.pending(h[1], T0 + at).await.unwrap());
        r
    };
    let p1 = create(a, pending("alice", 20, 60_000)).await;
    let p2 = create(b, pending("alice", 21, 60_000)).await;
    let p3 = create(a, pending("alice", 22, 60_000)).await;
    assert_eq!(live(p1, 23).await, None);
    assert_eq!(live(p2, 23).await, Some(pending("alice", 21, 60_000)));
    assert!(live(p3, 23).await.is_some());

    // Completed: a session, once; by another user, nothing (and taken).
    let mut names: [HashMap<PublicId, &str>; 2] = Default::default();
    let login = |user: &str, at| event(EventKind::LoginSuccess, user, at).detail("method", "totp");
    let complete = async |node: &RedisState, h: [TokenHash; 2], user: &str, at: u64, check| {
        let r = node
            .complete_sign_in(h[0], session(user, at), login(user, at), check)
            .await;
        let d = redb
            .complete_sign_in(h[1], session(user, at), login(user, at), check)
            .await;
        match (&r, &d) {
            (Ok(r), Ok(d)) => assert_eq!(r.is_some(), d.is_some()),
            _ => assert_eq!(format!("{r:?}"), format!("{d:?}")),
        }
        (r, d)
    };
    let (r, d) = complete(a, p2, "alice", 24, None).await;
    let (r, d) = (r.unwrap().unwrap(), d.unwrap().unwrap());
    assert_eq!(r.session.methods, d.session.methods);
    assert_eq!(r.session.second_factor_ms, Some(T0 + 24));
    names[0].insert(r.session.id, "S1");
    names[1].insert(d.session.id, "S1");
    let s1 = [r.token.hash(), d.token.hash()];
    assert!(
        complete(b, p2, "alice", 25, None)
            .await
            .0
            .unwrap()
            .is_none()
    );
    assert!(complete(b, p3, "bob", 26, None).await.0.unwrap().is_none());
    assert_eq!(live(p3, 27).await, None);

    // The credentials changed since the password: nothing made, and the
    // pending sign-in is gone.
    let current = CredentialCheck::of("new");
    a.set_credentials(vec![("alice".into(), Some(current))])
        .await
        .unwrap();
    redb.set_credentials(vec![("alice".into(), Some(current))])
        .await
        .unwrap();
    let p4 = create(b, pending("alice", 30, 60_000)).await;
    let (r, _) = complete(a, p4, "alice", 31, Some(CredentialCheck::of("old"))).await;
    assert!(matches!(r, Err(WriteError::CredentialsChanged)), "{r:?}");
    assert_eq!(live(p4, 32).await, None);

    // Ended once.
    let p5 = create(a, pending("alice", 40, 60_000)).await;
    for at in [41, 42] {
        let r = b.end_pending(p5[0], T0 + at).await.unwrap();
        assert_eq!(r, redb.end_pending(p5[1], T0 + at).await.unwrap());
        assert_eq!(r.is_some(), at == 41);
    }

    // A step-up: a new token, the same session, the old token ended.
    let up = |at| event(EventKind::MfaSuccess, "alice", at).detail("method", "webauthn");
    let r = b
        .step_up(s1[0], Method::WebAuthn, up(50), T0 + 50)
        .await
        .unwrap()
        .unwrap();
    let d = redb
        .step_up(s1[1], Method::WebAuthn, up(50), T0 + 50)
        .await
        .unwrap()
        .unwrap();
    let shape = |s: &crate::domain::Session, side: usize| {
        (
            names[side][&s.id],
            s.created_ms,
            s.last_seen_ms,
            s.deadline_ms(),
            s.methods,
            s.second_factor_ms,
        )
    };
    assert_eq!(shape(&r.session, 0), shape(&d.session, 1));
    assert!(r.session.methods.contains(Method::WebAuthn));
    assert_eq!(a.session_by_hash(s1[0], T0 + 51).await.unwrap(), None);
    let moved = a.session_by_hash(r.token.hash(), T0 + 51).await.unwrap();
    assert_eq!(moved.map(|s| shape(&s, 0)), Some(shape(&r.session, 0)));
    assert_eq!(
        a.sessions_of("alice", T0 + 51).await.unwrap().len(),
        redb.sessions_of("alice", T0 + 51).await.unwrap().len()
    );
    assert!(
        a.step_up(s1[0], Method::WebAuthn, up(52), T0 + 52)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        redb.step_up(s1[1], Method::WebAuthn, up(52), T0 + 52)
            .await
            .unwrap()
            .is_none()
    );

    // A pending sign-in runs out and is swept, on either node.
    let p6 = create(b, pending("bob", 60, 1_000)).await;
    let rs = a.sweep(T0 + 2_000, 100).await.unwrap();
    let ds = redb.sweep(T0 + 2_000, 100).await.unwrap();
    assert_eq!((rs.pending, rs.more), (ds.pending, ds.more));
    assert_eq!(rs.pending, 1);
    assert_eq!(live(p6, 2_000).await, None);
    assert_eq!(b.sweep(T0 + 2_000, 100).await.unwrap().pending, 0);

    // Both count the users with factors alike (the check's figure).
    let on_file = crate::store::StoreCheck::check(redb).await.unwrap();
    assert_eq!(
        a.users_with_factors().await.unwrap(),
        on_file.users_with_factors
    );

    // Chained, the events are redb's, session for session.
    let (_, chained, on_redb) = sides.chained().await;
    let chained = labelled(chained, &names[0]);
    assert_eq!(chained, labelled(on_redb, &names[1]));
    for kind in [
        EventKind::MfaEnrolled,
        EventKind::MfaSuccess,
        EventKind::MfaRecoveryUsed,
        EventKind::MfaRemoved,
        EventKind::MfaReset,
        EventKind::SessionCreated,
        EventKind::LoginSuccess,
    ] {
        assert!(chained.iter().any(|e| e.kind == kind), "{kind}");
    }
    let remaining: Vec<_> = chained
        .iter()
        .filter(|e| e.kind == EventKind::MfaRecoveryUsed)
        .map(|e| e.details.clone())
        .collect();
    assert_eq!(remaining, vec![vec![("remaining".into(), "2".into())]]);
    sides.task.shutdown().await.unwrap();
}

/// Two nodes apply the same TOTP step, then spend the same recovery code,
/// at once, many times over: each is accepted exactly once, and only the
/// accepted one is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_or_a_code_raced_by_two_nodes_is_accepted_once() {
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let [a, b] = two_nodes(&url, &prefix).await;
    let codes: Vec<[u8; 32]> = (0..40u8).map(|n| [n; 32]).collect();
    a.change_factors(
        "alice",
        FactorChange::BeginTotp {
            sealed: vec![1; 48],
            by: ME,
        },
        None,
        T0,
    )
    .await
    .unwrap()
    .unwrap();
    a.change_factors(
        "alice",
        FactorChange::ConfirmTotp {
            step: 1,
            recovery: codes.clone(),
            by: ME,
        },
        None,
        T0,
    )
    .await
    .unwrap()
    .unwrap();
    let outbox_len = async || -> u64 {
        let mut conn = a.conn.clone();
        redis::cmd("XLEN")
            .arg(&a.outbox_key)
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    let before = outbox_len().await;
    let race = async |change: FactorChange, at: u64| {
        let use_on = |node: &RedisState| {
            let node = node.clone();
            let change = change.clone();
            tokio::spawn(async move {
                let ev = NewEvent::at(EventKind::MfaSuccess, (T0 + at) * 1000).user("alice");
                node.change_factors("alice", change, Some(ev), T0 + at)
                    .await
                    .unwrap()
            })
        };
        let (x, y) = tokio::join!(use_on(&a), use_on(&b));
        [x.unwrap(), y.unwrap()]
    };
    let rounds = 30u64;
    for round in 0..rounds {
        let got = race(FactorChange::UseTotp { step: 2 + round }, round).await;
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1, "{got:?}");
        assert!(got.contains(&Err(FactorRefusal::Replayed)), "{got:?}");
        let code = FactorChange::UseRecovery {
            hash: codes[round as usize],
        };
        let got = race(code, round).await;
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1, "{got:?}");
        assert!(got.contains(&Err(FactorRefusal::NoSuchCode)), "{got:?}");
    }
    let left = a.factors("alice").await.unwrap();
    assert_eq!(left.totp.and_then(|t| t.last_step), Some(1 + rounds));
    assert_eq!(left.recovery.len(), codes.len() - rounds as usize);
    assert_eq!(outbox_len().await - before, 2 * rounds);
}

/// A write whose events cannot join a full outbox is not made at all: the
/// factors stay as they were, the pending sign-in stays to be completed,
/// and the session keeps its token.
#[tokio::test]
async fn factor_writes_are_refused_whole_when_the_outbox_is_full() {
    use super::Durability;

    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let state = RedisState::connect(&url, &prefix, Durability::Always)
        .await
        .unwrap()
        .with_outbox_max(3);
    // Two entries for the session, the third for the enrolment begun.
    let made = state
        .create_session(
            session("alice", 0),
            event(EventKind::LoginSuccess, "alice", 0),
            None,
        )
        .await
        .unwrap();
    let begin = FactorChange::BeginTotp {
        sealed: vec![1; 48],
        by: ME,
    };
    let begun = Some(event(EventKind::MfaEnrolled, "alice", 1));
    state
        .change_factors("alice", begin, begun, T0 + 1)
        .await
        .unwrap()
        .unwrap();
    let before = state.factors("alice").await.unwrap();
    let p = state
        .create_pending(pending("alice", 2, 60_000), 5)
        .await
        .unwrap()
        .hash();

    let confirm = FactorChange::ConfirmTotp {
        step: 5,
        recovery: vec![[1; 32]],
        by: ME,
    };
    let enrolled = Some(event(EventKind::MfaEnrolled, "alice", 3));
    let r = state
        .change_factors("alice", confirm, enrolled, T0 + 3)
        .await;
    assert!(matches!(r, Err(WriteError::Busy)), "{r:?}");
    assert_eq!(state.factors("alice").await.unwrap(), before);

    let login = event(EventKind::LoginSuccess, "alice", 4);
    let r = state
        .complete_sign_in(p, session("alice", 4), login, None)
        .await;
    assert!(matches!(r, Err(WriteError::Busy)), "{r:?}");
    assert!(state.pending(p, T0 + 4).await.unwrap().is_some());

    let up = event(EventKind::MfaSuccess, "alice", 5);
    let hash = made.token.hash();
    let r = state.step_up(hash, Method::Totp, up, T0 + 5).await;
    assert!(matches!(r, Err(WriteError::Busy)), "{r:?}");
    let kept = state.session_by_hash(hash, T0 + 5).await.unwrap();
    assert_eq!(kept.map(|s| s.id), Some(made.session.id));
    assert_eq!(state.sessions_of("alice", T0 + 5).await.unwrap().len(), 1);
}
