//! The OpenID Connect state in a real file: code replay, refresh rotation
//! and reuse, every way a session ends, the sweep, key rotation, a removed
//! user, and a crash.

use super::commit_log;
use super::tests::temp_store;
use super::*;
use crate::domain::oidc::*;
use crate::store::*;

const T0: u64 = 1_800_000_000_000;
/// Sessions last two days, longer than a grant's refresh token (one).
const SESSION_MS: u64 = 2 * 86_400_000;
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn sess(user: &str, now_ms: u64) -> NewSession {
    NewSession {
        user: user.into(),
        remember_me: true,
        idle_ttl_ms: SESSION_MS,
        absolute_ttl_ms: SESSION_MS,
        max_per_user: 2,
        ip: None,
        user_agent: None,
        now_ms,
        methods: Methods::PASSWORD,
    }
}

fn session(store: &Store, user: &str, now_ms: u64) -> CreatedSession {
    match store.apply(Op::CreateSession(sess(user, now_ms))).unwrap() {
        OpOutput::Created(c) => c,
        other => panic!("{other:?}"),
    }
}

fn oidc(store: &Store, op: OidcOp) -> OidcOutput {
    match store.apply(Op::Oidc(Box::new(op))).unwrap() {
        OpOutput::Oidc(out) => out,
        other => panic!("{other:?}"),
    }
}

fn grant_of(s: &Session, client: &str, now_ms: u64) -> CodeGrant {
    CodeGrant {
        auth: Authorization {
            client: client.into(),
            user: s.user.clone(),
            session: s.id,
            scopes: vec!["openid".into(), "offline_access".into()],
            auth_time_ms: s.created_ms,
            methods: s.methods,
        },
        redirect_uri: "https://app.test/cb".into(),
        code_challenge: Some(pkce_s256(VERIFIER)),
        nonce: None,
        expires_ms: now_ms + CODE_TTL_MS,
    }
}

fn put_code(store: &Store, s: &Session, client: &str, now_ms: u64) -> (TokenHash, bool) {
    let code = SessionToken::generate().hash();
    let grant = grant_of(s, client, now_ms);
    let event = grant.authorized_event(None, now_ms);
    let grant = Box::new(grant);
    match oidc(store, OidcOp::PutCode { code, grant, event }) {
        OidcOutput::CodeStored(b) => (code, b),
        other => panic!("{other:?}"),
    }
}

/// What a redemption issued: the grant and its access and refresh hashes.
struct Got {
    grant: GrantId,
    access: TokenHash,
    refresh: TokenHash,
}

fn redeem(store: &Store, code: TokenHash, client: &str, now_ms: u64) -> Result<Got, CodeRefusal> {
    let (access, refresh) = (
        SessionToken::generate().hash(),
        SessionToken::generate().hash(),
    );
    let op = OidcOp::Redeem {
        code,
        req: CodeRedemption {
            client: client.into(),
            redirect_uri: Some("https://app.test/cb".into()),
            code_verifier: Some(VERIFIER.into()),
            ip: None,
            now_ms,
        },
        grant: GrantId::generate(),
        tokens: NewTokens {
            access,
            access_expires_ms: now_ms + 3_600_000,
            refresh: Some((refresh, now_ms + 86_400_000)),
        },
    };
    match oidc(store, op) {
        OidcOutput::Redeemed(r) => r.map(|i| Got {
            grant: i.grant,
            access,
            refresh,
        }),
        other => panic!("{other:?}"),
    }
}

/// A session of `user` with a grant to `a` twice and to `b` once.
fn connected(store: &Store, user: &str, now: u64) -> (CreatedSession, Vec<Got>) {
    let c = session(store, user, now);
    let grants = ["a", "a", "b"]
        .iter()
        .map(|client| {
            let (code, stored) = put_code(store, &c.session, client, now);
            assert!(stored);
            redeem(store, code, client, now).unwrap()
        })
        .collect();
    (c, grants)
}

fn count(store: &Store, kind: EventKind) -> usize {
    let filter = EventFilter {
        kinds: vec![kind],
        ..Default::default()
    };
    store
        .query_events(&filter, 1000, None)
        .unwrap()
        .events
        .len()
}

#[test]
fn a_replayed_code_is_refused_and_revokes_its_grant() {
    let (_d, store) = temp_store();
    let c = session(&store, "alice", T0);
    let (code, stored) = put_code(&store, &c.session, "a", T0);
    assert!(stored);
    assert_eq!(
        redeem(&store, code, "b", T0 + 1).err(),
        Some(CodeRefusal::WrongClient)
    );
    let got = redeem(&store, code, "a", T0 + 1).unwrap();
    let live = store.oidc_token(got.access, T0 + 2).unwrap().unwrap();
    assert_eq!((live.kind, live.grant), (OidcTokenKind::Access, got.grant));
    assert!(store.oidc_token(got.refresh, T0 + 2).unwrap().is_some());
    assert_eq!(
        redeem(&store, code, "a", T0 + 3).err(),
        Some(CodeRefusal::Replayed)
    );
    assert_eq!(store.oidc_token(got.access, T0 + 4).unwrap(), None);
    assert_eq!(store.oidc_token(got.refresh, T0 + 4).unwrap(), None);
    assert_eq!(count(&store, EventKind::OidcRevoked), 1);
    assert_eq!(count(&store, EventKind::OidcToken), 1);
    assert_eq!(count(&store, EventKind::OidcAuthorized), 1);
    // Still refused as a replay until it is swept.
    assert_eq!(
        redeem(&store, code, "a", T0 + 5).err(),
        Some(CodeRefusal::Replayed)
    );
    assert_eq!(store.connected_apps("alice", T0 + 5).unwrap(), vec![]);
}

fn refresh(
    store: &Store,
    presented: TokenHash,
    client: &str,
    now_ms: u64,
) -> (Result<Issued, RefreshRefusal>, TokenHash, TokenHash) {
    let (access, next) = (
        SessionToken::generate().hash(),
        SessionToken::generate().hash(),
    );
    let req = RefreshRequest {
        client: client.into(),
        scopes: None,
        tokens: NewTokens {
            access,
            access_expires_ms: now_ms + 3_600_000,
            refresh: Some((next, now_ms + 86_400_000)),
        },
        ip: None,
        now_ms,
    };
    match oidc(store, OidcOp::Refresh { presented, req }) {
        OidcOutput::Refreshed(r) => (r, access, next),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refresh_rotates_and_a_reused_token_revokes_the_family() {
    let (_d, store) = temp_store();
    let (_c, grants) = connected(&store, "alice", T0);
    let g = &grants[0];
    let (r, access2, refresh2) = refresh(&store, g.refresh, "a", T0 + 10);
    assert_eq!(r.unwrap().grant, g.grant);
    // The old refresh token is retired; both access tokens live.
    assert_eq!(store.oidc_token(g.refresh, T0 + 11).unwrap(), None);
    for h in [g.access, access2, refresh2] {
        assert_eq!(
            store.oidc_token(h, T0 + 11).unwrap().unwrap().grant,
            g.grant
        );
    }
    // The access token is no refresh token; another client's is unknown to it.
    assert_eq!(
        refresh(&store, access2, "a", T0 + 12).0.err(),
        Some(RefreshRefusal::Unknown)
    );
    assert_eq!(
        refresh(&store, refresh2, "b", T0 + 12).0.err(),
        Some(RefreshRefusal::WrongClient)
    );
    let (r, _, _) = refresh(&store, refresh2, "a", T0 + 20);
    assert!(r.is_ok());
    // The first one, retired, comes back: the whole grant goes.
    assert_eq!(
        refresh(&store, g.refresh, "a", T0 + 30).0.err(),
        Some(RefreshRefusal::Reused)
    );
    for h in [g.access, access2, refresh2] {
        assert_eq!(store.oidc_token(h, T0 + 31).unwrap(), None);
    }
    assert_eq!(count(&store, EventKind::OidcRefreshReused), 1);
    assert_eq!(count(&store, EventKind::OidcRefreshed), 2);
    // The session's other grants are untouched.
    assert!(
        store
            .oidc_token(grants[1].access, T0 + 31)
            .unwrap()
            .is_some()
    );
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Every grant of the session is gone with its tokens, one notice per
/// client (a, b) is due, and a code of the session is refused.
/// (`refused`: how the code is refused; the sweep of an expired session
/// has swept the code too.)
fn ended(
    store: &Store,
    c: &CreatedSession,
    grants: &[Got],
    (code, refused): (TokenHash, CodeRefusal),
    now: u64,
) {
    for g in grants {
        assert_eq!(store.oidc_token(g.access, now).unwrap(), None);
        assert_eq!(store.oidc_token(g.refresh, now).unwrap(), None);
    }
    let due: Vec<(String, PublicId)> = store
        .logouts_due(now, 100)
        .unwrap()
        .into_iter()
        .filter(|n| n.session == c.session.id)
        .map(|n| (n.client, n.session))
        .collect();
    assert_eq!(
        due,
        [
            ("a".to_string(), c.session.id),
            ("b".to_string(), c.session.id)
        ]
    );
    assert_eq!(redeem(store, code, "a", now).err(), Some(refused));
    let (_, stored) = put_code(store, &c.session, "a", now);
    assert!(!stored, "no code for an ended session");
    assert_eq!(store.connected_apps(&c.session.user, now).unwrap(), vec![]);
}

#[test]
fn every_way_a_session_ends_ends_its_grants_and_queues_a_notice_per_client() {
    type End = fn(&Store, &CreatedSession, u64);
    let ends: [(&str, End); 5] = [
        ("logout", |s, c, now| {
            let op = Op::RevokeByToken {
                hash: c.token.hash(),
                reason: RevokeReason::Logout,
                ip: None,
                now_ms: now,
            };
            s.apply(op).unwrap();
        }),
        ("by id", |s, c, now| {
            let op = Op::RevokeById {
                user: c.session.user.clone(),
                id: c.session.id,
                reason: RevokeReason::ByUser,
                actor: None,
                ip: None,
                now_ms: now,
            };
            s.apply(op).unwrap();
        }),
        ("user changed", |s, c, now| {
            let op = Op::RevokeUser {
                user: c.session.user.clone(),
                keep: None,
                reason: RevokeReason::UserChanged,
                actor: None,
                ip: None,
                now_ms: now,
            };
            s.apply(op).unwrap();
        }),
        ("expiry", |s, _, now| {
            s.apply(Op::Sweep {
                now_ms: now,
                limit: 10,
            })
            .unwrap();
        }),
        ("eviction at the cap", |s, c, now| {
            session(s, &c.session.user, now);
            session(s, &c.session.user, now);
        }),
    ];
    for (name, end) in ends {
        let (_d, store) = temp_store();
        let (c, grants) = connected(&store, "alice", T0);
        let (code, _) = put_code(&store, &c.session, "a", T0);
        // Step-up is no end: the session goes on under a new token.
        let up = Op::StepUp {
            hash: c.token.hash(),
            method: Method::Totp,
            event: NewEvent::at(EventKind::MfaSuccess, T0 * 1000).user("alice"),
            now_ms: T0,
        };
        let OpOutput::Completed(Some(stepped)) = store.apply(up).unwrap() else {
            panic!("{name}: step-up")
        };
        assert!(
            store.oidc_token(grants[0].access, T0).unwrap().is_some(),
            "{name}"
        );
        assert_eq!(store.logouts_due(T0, 10).unwrap(), vec![], "{name}");
        let now = if name == "expiry" {
            T0 + SESSION_MS
        } else {
            T0 + 1
        };
        end(&store, &stepped, now);
        let refused = if name == "expiry" {
            CodeRefusal::Unknown
        } else {
            CodeRefusal::SessionEnded
        };
        ended(&store, &stepped, &grants, (code, refused), now);
        let report = store.check().unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
    }
}

#[test]
fn the_sweep_removes_expired_codes_and_grants_within_its_limit() {
    let (_d, store) = temp_store();
    let c = session(&store, "alice", T0);
    let codes: Vec<TokenHash> = (0..3)
        .map(|_| put_code(&store, &c.session, "a", T0).0)
        .collect();
    let got = redeem(&store, codes[0], "a", T0).unwrap();
    // Grant expiry: its refresh token's, a day on.
    let sweep = |now_ms, limit| match store.apply(Op::Sweep { now_ms, limit }).unwrap() {
        OpOutput::Swept(r) => r,
        other => panic!("{other:?}"),
    };
    let r = sweep(T0 + CODE_TTL_MS - 1, 10);
    assert_eq!((r.oidc_codes, r.oidc_grants, r.more), (0, 0, false));
    let r = sweep(T0 + CODE_TTL_MS, 2);
    assert_eq!((r.oidc_codes, r.more), (2, true));
    let r = sweep(T0 + CODE_TTL_MS, 2);
    assert_eq!((r.oidc_codes, r.more), (1, false));
    assert_eq!(
        redeem(&store, codes[0], "a", T0).err(),
        Some(CodeRefusal::Unknown)
    );
    assert!(
        store
            .oidc_token(got.refresh, T0 + CODE_TTL_MS)
            .unwrap()
            .is_some()
    );
    // The session outlives the grant here (its lifetime is longer).
    let r = sweep(T0 + 86_400_000, 10);
    assert_eq!((r.oidc_grants, r.expired), (1, 0));
    assert_eq!(store.oidc_token(got.refresh, T0).unwrap(), None);
    assert_eq!(
        store.logouts_due(T0 + 86_400_000, 10).unwrap(),
        vec![],
        "an expired grant is no logout"
    );
    oidc_tables_empty_but_session(&store);
}

fn oidc_tables_empty_but_session(store: &Store) {
    use ::redb::ReadableTableMetadata;
    use tables::*;
    let r = store.read().unwrap();
    for def in [OIDC_CODES, OIDC_TOKENS] {
        assert_eq!(r.open_table(def).unwrap().len().unwrap(), 0);
    }
    assert_eq!(r.open_table(OIDC_GRANTS).unwrap().len().unwrap(), 0);
    assert_eq!(
        r.open_table(OIDC_GRANTS_BY_EXPIRY).unwrap().len().unwrap(),
        0
    );
    assert_eq!(
        r.open_table(OIDC_GRANTS_BY_SESSION).unwrap().len().unwrap(),
        0
    );
    assert_eq!(r.open_table(OIDC_GRANTS_BY_USER).unwrap().len().unwrap(), 0);
    assert_eq!(
        r.open_table(OIDC_CODES_BY_EXPIRY).unwrap().len().unwrap(),
        0
    );
}

fn key(kid: &str, at: u64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        sealed: vec![1, 2, 3],
        created_ms: at,
        retired_ms: None,
        publish_until_ms: None,
    }
}

fn rotate(
    store: &Store,
    k: StoredSigningKey,
    expect: Option<&str>,
    until: u64,
    now: u64,
) -> Vec<String> {
    let op = OidcOp::AddSigningKey {
        key: k,
        expect_current: expect.map(str::to_string),
        publish_until_ms: until,
        now_ms: now,
    };
    match oidc(store, op) {
        OidcOutput::Keys(keys) => keys.into_iter().map(|k| k.kid).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rotated_key_is_published_until_its_last_token_expires() {
    let (_d, store) = temp_store();
    assert_eq!(rotate(&store, key("k1", T0), None, 0, T0), ["k1"]);
    // Another node rotated first: nothing changes.
    assert_eq!(rotate(&store, key("kx", T0), None, 0, T0), ["k1"]);
    assert_eq!(
        rotate(
            &store,
            key("k2", T0 + 10),
            Some("k1"),
            T0 + 3_600_010,
            T0 + 10
        ),
        ["k2", "k1"]
    );
    let keys = store.signing_keys().unwrap();
    assert_eq!(keys[1].retired_ms, Some(T0 + 10));
    assert_eq!(keys[1].publish_until_ms, Some(T0 + 3_600_010));
    assert_eq!(keys[0].retired_ms, None);
    assert_eq!(keys[0].sealed, [1, 2, 3]);
    // Before k1's last token expires it stays; after, it goes.
    assert_eq!(
        rotate(
            &store,
            key("k3", T0 + 20),
            Some("k2"),
            T0 + 7_200_000,
            T0 + 20
        ),
        ["k3", "k2", "k1"]
    );
    assert_eq!(
        rotate(
            &store,
            key("k4", T0 + 3_600_011),
            Some("k3"),
            T0 + 9_000_000,
            T0 + 3_600_011
        ),
        ["k4", "k3", "k2"]
    );
}

#[test]
fn a_crash_keeps_the_oidc_state_and_the_appends_around_it() {
    let (_d, store) = temp_store();
    let (c, grants) = connected(&store, "alice", T0);
    let consent = Consent {
        user: "alice".into(),
        client: "a".into(),
        scopes: vec!["openid".into()],
        granted_ms: T0,
    };
    let event = consent.event(true, None, T0);
    oidc(&store, OidcOp::GiveConsent { consent, event });
    oidc(
        &store,
        OidcOp::Subject {
            user: "alice".into(),
            fresh: "sub-1".into(),
        },
    );
    rotate(&store, key("k1", T0), None, 0, T0);
    // Appends become durable through the log alone, around the grants'
    // durable commits.
    let appends = |n: u64| {
        let ops = (0..n)
            .map(|i| Op::Append(NewEvent::at(EventKind::LoginFailure, T0 * 1000 + i).user("bob")))
            .collect();
        for r in store.apply_batch(ops) {
            r.unwrap();
        }
    };
    appends(3);
    let (r, access2, _) = refresh(&store, grants[0].refresh, "a", T0 + 5);
    r.unwrap();
    store
        .apply(Op::RevokeByToken {
            hash: c.token.hash(),
            reason: RevokeReason::Logout,
            ip: None,
            now_ms: T0 + 6,
        })
        .unwrap();
    let (c2, grants2) = connected(&store, "alice", T0 + 7);
    appends(4);
    assert!(store.log_is_dirty());
    let image = tempfile::tempdir().unwrap();
    let db = image.path().join("g.redb");
    std::fs::copy(store.path(), &db).unwrap();
    std::fs::copy(commit_log::path_of(store.path()), commit_log::path_of(&db)).unwrap();

    let back = Store::open(&db, &StoreOptions::default()).unwrap();
    let now = T0 + 8;
    assert_eq!(
        back.oidc_token(access2, now).unwrap(),
        None,
        "ended with its session"
    );
    assert_eq!(
        back.oidc_token(grants2[2].access, now)
            .unwrap()
            .unwrap()
            .grant,
        grants2[2].grant
    );
    let due = back.logouts_due(now, 10).unwrap();
    assert_eq!(
        due.iter().map(|n| n.client.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        back.oidc_consent("alice", "a").unwrap().unwrap().granted_ms,
        T0
    );
    assert_eq!(
        back.oidc_subject_of("alice").unwrap().as_deref(),
        Some("sub-1")
    );
    assert_eq!(back.signing_keys().unwrap().len(), 1);
    let apps = back.connected_apps("alice", now).unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].sessions, [c2.session.id]);
    assert_eq!(count(&back, EventKind::LoginFailure), 7);
    assert_eq!(count(&back, EventKind::OidcToken), 6);
    let report = back.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.chain_head, store.check().unwrap().chain_head);
}

/// Through the backend: a removed user (`set_credentials` with `None`)
/// loses their subject and consents, so a later holder of the name starts
/// anew; a changed password keeps them.
#[test]
fn a_removed_user_loses_subject_and_consents() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (b, task) = Backend::open(&BackendConfig::redb(dir.path().join("g.redb"))).unwrap();
        for user in ["alice", "bob"] {
            assert_eq!(
                b.oidc_subject(user, format!("{user}-1")).await.unwrap(),
                format!("{user}-1")
            );
            assert_eq!(
                b.oidc_subject(user, format!("{user}-2")).await.unwrap(),
                format!("{user}-1")
            );
            for client in ["a", "b"] {
                let consent = Consent {
                    user: user.into(),
                    client: client.into(),
                    scopes: vec!["openid".into()],
                    granted_ms: T0,
                };
                let event = consent.event(true, None, T0);
                b.give_consent(consent, event).await.unwrap();
            }
        }
        let check = CredentialCheck::of(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        );
        b.set_credentials(vec![("alice".into(), None), ("bob".into(), Some(check))])
            .await
            .unwrap();
        assert_eq!(
            b.oidc_subject("alice", "alice-3".into()).await.unwrap(),
            "alice-3"
        );
        assert_eq!(b.consent("alice", "a").await.unwrap(), None);
        assert_eq!(b.connected_apps("alice", T0).await.unwrap(), vec![]);
        assert_eq!(
            b.oidc_subject("bob", "bob-3".into()).await.unwrap(),
            "bob-1"
        );
        assert_eq!(b.connected_apps("bob", T0).await.unwrap().len(), 2);
        task.shutdown().await.unwrap();
    });
}

/// Past `MAX_LOGOUT_NOTICES` waiting, the oldest are dropped: the queue
/// stays bounded, and the newest are kept.
#[test]
fn logout_notices_are_bounded_dropping_the_oldest() {
    let (_d, store) = temp_store();
    {
        let db = store.db().unwrap();
        let Db::Rw(db) = &*db else { unreachable!() };
        let txn = db.begin_write().unwrap();
        {
            let mut tx = txn::Tx::open(&txn).unwrap();
            for i in 0..MAX_LOGOUT_NOTICES as u64 + 3 {
                tx.queue_logout(format!("c{i}"), "alice", [1; 16], T0 + i)
                    .unwrap();
            }
            tx.finish().unwrap();
        }
        txn.commit().unwrap();
    }
    let due = store.logouts_due(u64::MAX, usize::MAX).unwrap();
    assert_eq!(due.len(), MAX_LOGOUT_NOTICES);
    assert_eq!(due[0].client, "c3");
    assert_eq!(due[0].id, 4);
    assert_eq!(due.last().unwrap().id, MAX_LOGOUT_NOTICES as u64 + 3);
}

/// A session past its deadline has ended before the sweep removes it: its
/// tokens answer nothing and refresh nothing meanwhile.
#[test]
fn tokens_end_with_their_session_before_the_sweep() {
    let (_d, store) = temp_store();
    // Ten minutes: shorter than its tokens' lifetimes.
    let short = NewSession {
        absolute_ttl_ms: 600_000,
        ..sess("alice", T0)
    };
    let OpOutput::Created(c) = store.apply(Op::CreateSession(short)).unwrap() else {
        panic!()
    };
    let (code, _) = put_code(&store, &c.session, "a", T0);
    let g = redeem(&store, code, "a", T0).unwrap();
    let (before, at) = (T0 + 599_999, T0 + 600_000);
    assert!(store.oidc_token(g.access, before).unwrap().is_some());
    assert_eq!(store.connected_apps("alice", before).unwrap().len(), 1);
    assert_eq!(store.oidc_token(g.access, at).unwrap(), None);
    assert_eq!(store.oidc_token(g.refresh, at).unwrap(), None);
    assert_eq!(store.connected_apps("alice", at).unwrap(), vec![]);
    assert_eq!(
        refresh(&store, g.refresh, "a", at).0.err(),
        Some(RefreshRefusal::Expired)
    );
}

/// The check finds a grant's token whose row is gone.
#[test]
fn the_check_finds_a_token_without_its_row() {
    let (_d, store) = temp_store();
    let (_c, grants) = connected(&store, "alice", T0);
    assert!(store.check().unwrap().is_ok());
    {
        let db = store.db().unwrap();
        let Db::Rw(db) = &*db else { unreachable!() };
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::OIDC_TOKENS)
            .unwrap()
            .remove(grants[1].refresh.0)
            .unwrap();
        txn.commit().unwrap();
    }
    store.inner.committed();
    let report = store.check().unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("without its row")),
        "{:?}",
        report.problems
    );
}

/// One session keeps at most `MAX_GRANTS_PER_SESSION` grants: a redemption
/// past it revokes the oldest, audited.
#[test]
fn a_session_keeps_a_bounded_number_of_grants() {
    let (_d, store) = temp_store();
    let c = session(&store, "alice", T0);
    let got: Vec<Got> = (0..MAX_GRANTS_PER_SESSION as u64 + 2)
        .map(|i| {
            let (code, _) = put_code(&store, &c.session, "a", T0 + i);
            redeem(&store, code, "a", T0 + i).unwrap()
        })
        .collect();
    let now = T0 + 100;
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            store.oidc_token(g.access, now).unwrap().is_some(),
            i >= 2,
            "{i}"
        );
    }
    assert_eq!(count(&store, EventKind::OidcRevoked), 2);
    assert!(store.check().unwrap().is_ok());
}

/// A backup copies the OpenID Connect tables: the copy answers the same
/// tokens, notices and keys, and verifies.
#[test]
fn a_backup_holds_the_oidc_state() {
    let (dir, store) = temp_store();
    let (c, grants) = connected(&store, "alice", T0);
    let (_c2, grants2) = connected(&store, "bob", T0);
    rotate(&store, key("k1", T0), None, 0, T0);
    store
        .apply(Op::RevokeByToken {
            hash: c.token.hash(),
            reason: RevokeReason::Logout,
            ip: None,
            now_ms: T0 + 1,
        })
        .unwrap();
    let dest = dir.path().join("copy.redb");
    store.backup_to(&dest).unwrap();
    let copy = Store::open_read_only(&dest, &StoreOptions::default()).unwrap();
    let now = T0 + 2;
    assert_eq!(copy.oidc_token(grants[0].access, now).unwrap(), None);
    let live = copy.oidc_token(grants2[0].refresh, now).unwrap().unwrap();
    assert_eq!(live.grant, grants2[0].grant);
    assert_eq!(copy.logouts_due(now, 10).unwrap().len(), 2);
    assert_eq!(copy.signing_keys().unwrap()[0].kid, "k1");
    assert!(copy.check().unwrap().is_ok());
}

#[test]
fn a_session_holds_a_bounded_number_of_codes_dropping_those_that_expire_first() {
    let (_d, store) = temp_store();
    let c = session(&store, "alice", T0);
    let other = session(&store, "bob", T0);
    let (bobs, _) = put_code(&store, &other.session, "a", T0);
    // A browser asking for codes in a loop, a millisecond apart.
    let codes: Vec<TokenHash> = (0..MAX_CODES_PER_SESSION as u64 + 4)
        .map(|i| put_code(&store, &c.session, "a", T0 + i).0)
        .collect();
    let dropped = codes.len() - MAX_CODES_PER_SESSION;
    for &code in &codes[..dropped] {
        assert_eq!(
            redeem(&store, code, "a", T0 + 100).err(),
            Some(CodeRefusal::Unknown),
            "an early code was kept past the bound"
        );
    }
    assert!(redeem(&store, codes[dropped], "a", T0 + 100).is_ok());
    assert!(redeem(&store, *codes.last().unwrap(), "a", T0 + 100).is_ok());
    // Another session's code is not touched.
    assert!(redeem(&store, bobs, "a", T0 + 100).is_ok());
    let report = store.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The sweep keeps the session's index in step with the codes.
    match store
        .apply(Op::Sweep {
            now_ms: T0 + 10 * CODE_TTL_MS,
            limit: 100,
        })
        .unwrap()
    {
        OpOutput::Swept(r) => assert_eq!(r.oidc_codes, MAX_CODES_PER_SESSION + 1),
        other => panic!("{other:?}"),
    }
    let report = store.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
