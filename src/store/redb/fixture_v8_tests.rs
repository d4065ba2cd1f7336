//! The schema-8 fixture (`tests/fixtures/v8.redb` and its facts,
//! `v8.json`): written once by the ignored `write_v8_fixture`, then read by
//! every later build to prove that the file still opens, upgrades and
//! answers as it did.

use std::path::{Path, PathBuf};

use super::*;
use crate::store::*;

/// When the fixture's writes happened (ms since the epoch).
const WRITTEN_MS: u64 = 1_796_700_000_000;
const DAY_MS: u64 = 86_400_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What the database cannot tell the reading test: the secrets whose
/// hashes it stores (test secrets, used nowhere else).
#[derive(serde::Serialize, serde::Deserialize)]
struct Facts {
    written_ms: u64,
    /// `(user, session cookie token)`.
    sessions: Vec<(String, String)>,
    /// bob's access token.
    access_token: String,
}

fn session_of(user: &str, methods: Methods, now_ms: u64) -> NewSession {
    NewSession {
        user: user.into(),
        remember_me: true,
        idle_ttl_ms: DAY_MS,
        absolute_ttl_ms: 30 * DAY_MS,
        max_per_user: 10,
        ip: Some("192.0.2.10".parse().unwrap()),
        user_agent: Some("fixture/8".into()),
        now_ms,
        methods,
    }
}

/// Writes `tests/fixtures/v8.redb` and `v8.json` with the schema-8 code:
/// alice signed in with password and TOTP, bob with a password twice and
/// holding an access token, carol failing once; every write audited.
#[test]
#[ignore = "writes the schema-8 fixture; run by hand, once"]
fn write_v8_fixture() {
    assert_eq!(gatehouse_migrations::LATEST, 8, "the fixture is schema 8's");
    let path = fixture("v8.redb");
    let _ = std::fs::remove_file(&path);
    let opts = StoreOptions {
        commit_log: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&path, &opts).unwrap();
    let mut now = WRITTEN_MS;
    let mut sessions = Vec::new();
    let two = Methods::PASSWORD.with(Method::Totp);
    for (user, methods) in [
        ("alice", two),
        ("bob", Methods::PASSWORD),
        ("bob", Methods::PASSWORD),
    ] {
        now += 1_000;
        let out = store
            .apply(Op::CreateSessionAudited {
                new: Box::new(session_of(user, methods, now)),
                event: NewEvent::at(EventKind::LoginSuccess, now * 1000)
                    .user(user)
                    .ip(Some("192.0.2.10".parse().unwrap())),
                check: None,
            })
            .unwrap();
        let OpOutput::Created(c) = out else {
            panic!("{out:?}")
        };
        sessions.push((user.to_string(), c.token.expose()));
    }
    now += 1_000;
    store
        .apply(Op::Append(
            NewEvent::at(EventKind::LoginFailure, now * 1000)
                .user("carol")
                .detail("reason", "bad password"),
        ))
        .unwrap();
    now += 1_000;
    let out = store
        .apply(Op::CreateToken {
            new: Box::new(NewAccessToken {
                user: "bob".into(),
                name: "CI deploy".into(),
                domains: vec!["ci.example.com".into()],
                expires_ms: now + 365 * DAY_MS,
                max_per_user: 10,
                ip: None,
                now_ms: now,
                two_factor: false,
            }),
            session: None,
        })
        .unwrap();
    let OpOutput::TokenCreated(Ok(token)) = out else {
        panic!("{out:?}")
    };
    store.close().unwrap();
    let facts = Facts {
        written_ms: WRITTEN_MS,
        sessions,
        access_token: token.token.expose(),
    };
    std::fs::write(
        fixture("v8.json"),
        serde_json::to_string_pretty(&facts).unwrap() + "\n",
    )
    .unwrap();
}

/// A file written by schema 8 opens with the current code, upgrades, and
/// keeps its data: sessions found by their cookies and listed per user
/// (alice's still two-factor), bob's token, every event, a verifying
/// chain; and the OpenID Connect tables are there, empty, and usable.
#[test]
fn v8_fixture_opens_and_upgrades() {
    let facts: Facts =
        serde_json::from_str(&std::fs::read_to_string(fixture("v8.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.redb");
    std::fs::copy(fixture("v8.redb"), &path).unwrap();
    let err = Store::open_read_only(&path, &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, OpenError::NeedsUpgrade { found: 8, .. }),
        "{err}"
    );
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(
        store.stats().unwrap().schema_version,
        gatehouse_migrations::LATEST
    );
    // An hour after the fixture was written.
    let now = facts.written_ms + 3_600_000;
    for (user, token) in &facts.sessions {
        let token = SessionToken::parse(token).unwrap();
        let s = store.session(&token, now).unwrap().expect("session kept");
        assert_eq!(&s.user, user);
        let two = user == "alice";
        assert_eq!(s.methods.two_factor(), two, "{user}");
        assert_eq!(s.methods.contains(Method::Totp), two, "{user}");
    }
    for (user, n) in [("alice", 1), ("bob", 2), ("carol", 0)] {
        assert_eq!(store.sessions_of(user, now).unwrap().len(), n, "{user}");
    }
    let token = AccessToken::parse(&facts.access_token).unwrap();
    let info = store.token_by_hash(token.hash(), now).unwrap().unwrap();
    assert_eq!(
        (info.user.as_str(), info.name.as_str()),
        ("bob", "CI deploy")
    );
    let of_user = |user: &str| {
        let filter = EventFilter {
            user: Some(user.into()),
            ..Default::default()
        };
        store.query_events(&filter, 100, None).unwrap().events
    };
    let kinds = |user: &str| -> Vec<EventKind> { of_user(user).iter().map(|e| e.kind).collect() };
    assert_eq!(
        kinds("alice"),
        // Newest first: a sign-in's session, then its login event.
        [EventKind::LoginSuccess, EventKind::SessionCreated]
    );
    assert_eq!(kinds("bob").len(), 5);
    assert_eq!(kinds("carol"), [EventKind::LoginFailure]);
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.events, report.sessions), (8, 3));
    oidc_tables_are_empty(&store);
    oidc_on_an_old_session(&store, &facts, now);
}

/// The OpenID Connect tables work on the upgraded file, with a session an
/// earlier build made: a code, its redemption, and the session's end
/// ending the grant and queueing its logout.
fn oidc_on_an_old_session(store: &Store, facts: &Facts, now: u64) {
    use crate::domain::oidc::*;
    let token = SessionToken::parse(&facts.sessions[0].1).unwrap();
    let s = store.session(&token, now).unwrap().unwrap();
    let grant = CodeGrant {
        auth: Authorization {
            client: "grafana".into(),
            user: s.user.clone(),
            session: s.id,
            scopes: vec!["openid".into()],
            auth_time_ms: s.created_ms,
            methods: s.methods,
        },
        redirect_uri: "https://grafana.test/cb".into(),
        code_challenge: None,
        nonce: None,
        expires_ms: now + CODE_TTL_MS,
    };
    let code = SessionToken::generate().hash();
    let event = grant.authorized_event(None, now);
    let put = OidcOp::PutCode {
        code,
        grant: Box::new(grant),
        event,
    };
    assert!(matches!(
        store.apply(Op::Oidc(Box::new(put))).unwrap(),
        OpOutput::Oidc(OidcOutput::CodeStored(true))
    ));
    let access = SessionToken::generate().hash();
    let redeem = OidcOp::Redeem {
        code,
        req: CodeRedemption {
            client: "grafana".into(),
            redirect_uri: Some("https://grafana.test/cb".into()),
            code_verifier: None,
            ip: None,
            now_ms: now,
        },
        grant: GrantId::generate(),
        tokens: NewTokens {
            access,
            access_expires_ms: now + 3_600_000,
            refresh: None,
        },
    };
    let out = store.apply(Op::Oidc(Box::new(redeem))).unwrap();
    let OpOutput::Oidc(OidcOutput::Redeemed(Ok(issued))) = out else {
        panic!("{out:?}")
    };
    assert!(issued.auth.methods.two_factor());
    assert!(store.oidc_token(access, now).unwrap().is_some());
    store
        .apply(Op::RevokeByToken {
            hash: token.hash(),
            reason: RevokeReason::Logout,
            ip: None,
            now_ms: now,
        })
        .unwrap();
    assert_eq!(store.oidc_token(access, now).unwrap(), None);
    let due = store.logouts_due(now, 10).unwrap();
    assert_eq!((due.len(), due[0].session), (1, s.id));
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn oidc_tables_are_empty(store: &Store) {
    use ::redb::ReadableTableMetadata;
    use tables::*;
    let r = store.read().unwrap();
    let lens = [
        r.open_table(OIDC_CODES).unwrap().len().unwrap(),
        r.open_table(OIDC_CODES_BY_EXPIRY).unwrap().len().unwrap(),
        r.open_table(OIDC_GRANTS).unwrap().len().unwrap(),
        r.open_table(OIDC_GRANTS_BY_EXPIRY).unwrap().len().unwrap(),
        r.open_table(OIDC_GRANTS_BY_SESSION).unwrap().len().unwrap(),
        r.open_table(OIDC_GRANTS_BY_USER).unwrap().len().unwrap(),
        r.open_table(OIDC_TOKENS).unwrap().len().unwrap(),
        r.open_table(OIDC_CONSENTS).unwrap().len().unwrap(),
        r.open_table(OIDC_SUBJECTS).unwrap().len().unwrap(),
        r.open_table(OIDC_LOGOUTS).unwrap().len().unwrap(),
        r.open_table(OIDC_LOGOUTS_DUE).unwrap().len().unwrap(),
        r.open_table(OIDC_SIGNING_KEYS).unwrap().len().unwrap(),
    ];
    assert_eq!(lens, [0; 12]);
}
