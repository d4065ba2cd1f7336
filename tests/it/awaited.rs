//! The server on a store that answers no lookup on the spot, as a network
//! store does on a cache miss: the forward-auth check made before the
//! router declines, and the router's path awaits the reads and decides the
//! same way. Sessions, access tokens, Basic passwords, signed-in pages,
//! sign-out and a ban all behave as on the default store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// `/auth/verify` for `https://app.example.com/` with `client`'s cookies
/// and `authorization`.
async fn verify(s: &TestServer, client: &reqwest::Client, auth: Option<&str>) -> reqwest::Response {
    let mut rq = forwarded(
        client.get(s.at("/auth/verify")),
        "GET",
        "https://app.example.com/",
    );
    if let Some(a) = auth {
        rq = rq.header("authorization", a);
    }
    rq.send().await.unwrap()
}

fn user_of(r: &reqwest::Response) -> &str {
    r.headers()
        .get("remote-user")
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_await_a_store_that_cannot_answer_on_the_spot() {
    let s = TestServer::start_awaiting(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[tokens]\nbasic_auth_passwords = true\n\
         [regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    ))
    .await;
    let alice = client();
    assert_eq!(
        login(&alice, &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::SEE_OTHER
    );

    // A session cookie, twice (the second read comes after a touch).
    for _ in 0..2 {
        let r = verify(&s, &alice, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(user_of(&r), "alice");
    }
    // A signed-in page and API (the `Authed` extractor).
    let list = crate::api::get_json(&alice, &s, "/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1), "{list}");
    let page = alice.get(s.at("/sessions")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // An access token, as Bearer and as Basic's secret.
    let r = alice
        .post(s.at("/api/v1/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let script = client();
    for auth in [
        format!("Bearer {token}"),
        format!("Basic {}", B64.encode(format!("alice:{token}"))),
    ] {
        let r = verify(&s, &script, Some(&auth)).await;
        assert_eq!(r.status(), StatusCode::OK, "{auth}");
        assert_eq!(user_of(&r), "alice");
    }
    let r = verify(&s, &script, Some("Bearer gatehouse_pat_nope")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A Basic password: hashed once, then answered from the cache, whose
    // ban check is awaited too.
    let bob = format!("Basic {}", B64.encode(format!("bob:{BOB_PW}")));
    let before = s.gate.passed();
    for _ in 0..2 {
        let r = verify(&s, &script, Some(&bob)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(user_of(&r), "bob");
    }
    assert_eq!(s.gate.passed(), before + 1, "answered from the cache");
    // Guesses ban bob; his cached password is refused at once, unhashed.
    for i in 0..3 {
        let guess = format!("Basic {}", B64.encode(format!("bob:guess-{i}")));
        let r = verify(&s, &script, Some(&guess)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let hashed = s.gate.passed();
    let r = verify(&s, &script, Some(&bob)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a banned user passed");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(s.gate.passed(), hashed);

    // Signed out: the cookie no longer passes.
    assert!(
        alice
            .post(s.at("/logout"))
            .send()
            .await
            .unwrap()
            .status()
            .is_redirection()
    );
    let r = verify(&s, &alice, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
