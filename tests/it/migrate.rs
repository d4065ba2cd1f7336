//! `gatehouse migrate --to-distributed` on a real file: a node's sessions,
//! access tokens, second factors, bans and audit chain move into Redis and
//! PostgreSQL, and the node, started again on them from the same data
//! directory, carries on: the session is still signed in, the token still
//! works, the second factor still asks and opens, the ban still holds, and
//! one verification covers the file's chain and what came after it.

use reqwest::StatusCode;
use serde_json::json;

use crate::api::{enroll, json_client, post, sign_in};
use crate::harness::*;
use gatehouse::store::{Backend, BackendConfig, BanStore, BanSubject, StoreCheck, now_ms};

/// Runs `gatehouse migrate --to-distributed` on `dir`: exit code, stdout,
/// stderr.
async fn migrate(dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["migrate", "--to-distributed", "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(dir.join("gatehouse.toml"))
        .env_remove("GATEHOUSE_REDIS_URL")
        .env_remove("GATEHOUSE_POSTGRES_URL")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `/auth/verify` with this `Cookie` or `Authorization`.
async fn verify(s: &TestServer, header: (&str, &str)) -> StatusCode {
    reqwest::Client::new()
        .get(s.at("/auth/verify"))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_file_moves_to_the_distributed_store_and_carries_on() {
    let Some(deployment) = crate::distributed::deployment().await else {
        return;
    };
    let pg = deployment.1.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // A node on its file: alice signed in with a token, bob with TOTP.
    let s = TestServer::start_in(dir, &config_text("", "")).await;
    let alice = client();
    let r = login(&alice, &s, "alice", ALICE_PW, &[]).await;
    let cookie = format!("gatehouse_session={}", token_of(&r).expect("a session"));
    let made = alice
        .post(s.at("/api/v1/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: serde_json::Value = made.json().await.unwrap();
    let bearer = format!("Bearer {}", made["token"].as_str().unwrap());
    let (app, _codes) = enroll(&json_client(), &s, "bob", BOB_PW).await;
    s.stop().await;

    // A ban, written on the stopped file.
    let file = BackendConfig::redb(dir.join("gatehouse.redb"));
    let banned = BanSubject::ip("203.0.113.9".parse().unwrap());
    let (b, task) = Backend::open(&file).unwrap();
    b.add_ban(crate::distributed::an_hours_ban(banned.clone()))
        .await
        .unwrap();
    task.shutdown().await.unwrap();
    b.close().unwrap();
    let before = Backend::open_read_only(&file)
        .unwrap()
        .check()
        .await
        .unwrap();
    assert!(before.is_ok(), "{before:?}");

    // Without a distributed store in the config, nothing moves.
    let (code, _, err) = migrate(dir).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[storage] backend = \"distributed\""), "{err}");

    let storage = crate::distributed::storage_section(&deployment);
    let text = config_text("", &storage);
    std::fs::write(dir.join("gatehouse.toml"), &text).unwrap();
    let (code, out, err) = migrate(dir).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let events = format!("{} events", before.events);
    for part in [
        events.as_str(),
        "1 access tokens",
        "1 users' second factors",
        "1 bans",
    ] {
        assert!(out.contains(part), "{part:?} in {out}");
    }
    // Once moved, a second run refuses rather than merging.
    let (code, _, err) = migrate(dir).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already holds"), "{err}");

    // The node starts on the distributed store from the same directory.
    let d = TestServer::start_in(dir, &text).await;
    assert_eq!(verify(&d, ("cookie", &cookie)).await, StatusCode::OK);
    assert_eq!(verify(&d, ("authorization", &bearer)).await, StatusCode::OK);
    let c = json_client();
    let (st, body) = sign_in(&c, &d, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["second_factor_required"], json!(true), "{body}");
    let (st, ok) = post(&c, &d, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    let store = crate::distributed::connect(&deployment).await;
    let bans = store.bans(now_ms()).await.unwrap();
    assert!(bans.iter().any(|b| b.subject == banned), "{bans:?}");
    d.stop().await;

    // One chain: the file's events, then the node's, verified as one.
    store.flush().await.unwrap();
    let after = store.check().await.unwrap();
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(after.users_with_factors, 1, "bob's factors, counted");
    assert!(
        after.events > before.events,
        "{} events after, {} before",
        after.events,
        before.events
    );
    let (code, out, err) = crate::child::auditctl(dir, &["--db", &pg, "verify"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, _) = crate::child::auditctl(
        dir,
        &[
            "--db",
            &pg,
            "query",
            "--user",
            "bob",
            "--kind",
            "mfa.enrolled",
        ],
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("mfa.enrolled"),
        "bob's enrollment before the move: {out}"
    );
}
