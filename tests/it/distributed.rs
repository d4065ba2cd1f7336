//! Two servers on one distributed store (`[storage] backend =
//! "distributed"`, the Redis and PostgreSQL of `.ci/services`): a sign-in
//! on one node is accepted by the other's forward-auth check, a sign-out
//! on the first is refused by the second, and both nodes' events join one
//! chain.

use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::*;

/// Longest wait for the other node to hear of a sign-out (a hang guard,
/// not a threshold: it hears at once through Redis pub/sub).
const HANG: Duration = Duration::from_secs(30);

/// `[storage]` of a fresh deployment, or `None` (skipped) without the
/// services.
async fn storage() -> Option<String> {
    let (redis, prefix) = gatehouse::store::outbox::testing::fresh_prefix()?;
    let pg = gatehouse::store::postgres::testing::fresh_database().await?;
    Some(format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"{redis}\"\n\
         postgres_url = \"{pg}\"\nprefix = \"{prefix}\"\n"
    ))
}

/// The forward-auth answer of `node` to the session cookie `token`, from
/// a client with no cookie jar of its own.
async fn verify(node: &TestServer, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(node.at("/auth/verify"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_on_one_node_holds_on_the_other_and_a_sign_out_too() {
    let Some(storage) = storage().await else {
        return;
    };
    let text = config_text("", &storage);
    let a = TestServer::start(&text).await;
    let b = TestServer::start(&text).await;

    let c = client();
    let r = login(&c, &a, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = token_of(&r).expect("a session cookie");
    assert_eq!(verify(&a, &token).await, StatusCode::OK);
    assert_eq!(verify(&b, &token).await, StatusCode::OK);
    // And again, from B's cache.
    assert_eq!(verify(&b, &token).await, StatusCode::OK);

    let out = reqwest::Client::new()
        .post(a.at("/logout"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection() || out.status().is_success());
    assert_eq!(verify(&a, &token).await, StatusCode::UNAUTHORIZED);
    let refused = async {
        while verify(&b, &token).await != StatusCode::UNAUTHORIZED {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, refused)
        .await
        .expect("node B refuses the signed-out session");

    // Both nodes read one trail: A's sign-in and sign-out, as B sees them
    // once the outbox is chained.
    let admin = client();
    login(&admin, &b, "alice", ALICE_PW, &[]).await;
    let chained = async {
        loop {
            let page: serde_json::Value = admin
                .get(b.at("/api/v1/audit?user=alice&limit=50"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let kinds: Vec<String> = page["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_string))
                .collect();
            let logins = kinds.iter().filter(|k| *k == "login.success").count();
            if kinds.iter().any(|k| k == "logout") && logins == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(HANG, chained)
        .await
        .expect("both nodes' events are chained");
    a.stop().await;
    b.stop().await;
}
