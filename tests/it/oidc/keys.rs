//! Key rotation: tokens signed with the old key stay valid until they
//! expire (the old key stays in the JWKS), and new ones carry the new `kid`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;

use super::hostile::{REDIRECT, alice, code, location, redeem};
use crate::harness::client;

fn kid(jwt: &str) -> String {
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn kids(s: &crate::harness::TestServer) -> Vec<String> {
    let jwks = crate::api::get_json(&client(), s, "/oidc/jwks").await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_old_tokens_still_verify_and_new_ones_carry_the_new_kid() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let (_, before) = redeem(&s, &code(&c, &s).await).await;
    let old_token = before["id_token"].as_str().unwrap().to_string();
    let old = kid(&old_token);
    assert_eq!(kids(&s).await, std::slice::from_ref(&old));

    let dir = s.dir.clone();
    let reply = tokio::task::spawn_blocking(move || {
        gatehouse::server::ops::admin::request(&dir, "POST", "/oidc/rotate-key")
            .unwrap()
            .expect("the server answers on its admin socket")
            .into_result()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("signing with key "), "{reply}");
    let new = reply.trim().rsplit(' ').next().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        kids(&s).await,
        [new.clone(), old.clone()],
        "the old key stays published"
    );

    let (_, after) = redeem(&s, &code(&c, &s).await).await;
    assert_eq!(kid(after["id_token"].as_str().unwrap()), new);

    // The provider itself still accepts a token the old key signed: as an
    // id_token_hint it signs the browser out.
    let r = c
        .get(s.at(&format!("/oidc/logout?id_token_hint={old_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/login");
    let r = c.get(s.at("/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
