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
