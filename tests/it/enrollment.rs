//! Who may add a factor: an unconfirmed authenticator-app secret belongs to
//! the sign-in that began it, a sign-in waiting for its second step enrolls
//! only a first factor, and one password cannot pile up waiting sign-ins.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{begin_totp, confirm_totp, enroll, json_client, post};
use crate::harness::*;

async fn sign_in(c: &reqwest::Client, s: &TestServer) -> Value {
    let (st, body) = crate::api::sign_in(c, s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

/// Two sessions of bob (the second as someone else holding his password):
/// the second never sees the first's secret and cannot confirm it; its own
/// start replaces the first's, which must then start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_is_seen_and_confirmed_only_by_its_own_sign_in() {
    let s = TestServer::start(&config_text("", "")).await;
    let (kate, other) = (json_client(), json_client());
    sign_in(&kate, &s).await;
    sign_in(&other, &s).await;
    let (app, begun) = begin_totp(&kate, &s, json!({})).await;
    let first = begun["secret"].as_str().unwrap().to_string();

    // The other session, with a code of kate's secret: nothing to confirm.
    let (st, body) = post(
        &other,
        &s,
        "/api/v1/mfa/totp/confirm",
        json!({"code": app.code(0)}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    // Its own start shows another secret, never kate's.
    let (st, theirs) = post(&other, &s, "/api/v1/mfa/totp", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(theirs["secret"].as_str().unwrap(), first);
    let page = other
        .get(s.at("/account/security/totp"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains(&first),
        "kate's secret shown to another sign-in"
    );

    // kate's secret was replaced: she starts again, and that one works.
    let (st, _) = post(
        &kate,
        &s,
        "/api/v1/mfa/totp/confirm",
        json!({"code": app.code(0)}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (app, _) = begin_totp(&kate, &s, json!({})).await;
    confirm_totp(&kate, &s, &app, 0).await;
    s.stop().await;
}

/// With second factors required, bob signs in twice; one sign-in sets up
/// an authenticator app. The other, begun before, can no longer enroll
/// anything (a passkey would complete a sign-in without the app).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_enrollment_cookie_cannot_enroll_past_a_factor() {
    let s = TestServer::start(&config_text(
        "public_origin = \"http://localhost\"",
        "[second_factor]\nrequired = true\n",
    ))
    .await;
    let (early, late) = (json_client(), json_client());
    for c in [&early, &late] {
        let body = sign_in(c, &s).await;
        assert_eq!(body["enrollment_required"], true, "{body}");
    }
    let (app, _) = begin_totp(&late, &s, json!({})).await;
    confirm_totp(&late, &s, &app, 0).await;

    for path in ["/api/v1/mfa/passkeys/register/start", "/api/v1/mfa/totp"] {
        let r = early
            .post(s.at(path))
            .header("origin", "http://localhost")
            .header("host", "localhost")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(st, StatusCode::CONFLICT, "{path}: {body}");
        assert!(body.contains("already set up"), "{path}: {body}");
    }
    s.stop().await;
}

/// One password, many sign-ins waiting for their second step: past
/// `max_pending_per_user` the oldest go, the newest still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_sign_ins_are_capped_per_user() {
    let s = TestServer::start(&config_text(
        "",
        "[second_factor]\nmax_pending_per_user = 2\n",
    ))
    .await;
    let (app, _) = enroll(&json_client(), &s, "bob", BOB_PW).await;
    let clients: Vec<reqwest::Client> = (0..3).map(|_| json_client()).collect();
    for c in &clients {
        let body = sign_in(c, &s).await;
        assert_eq!(body["second_factor_required"], true, "{body}");
    }
    // The oldest was pushed out: its second step finds no sign-in.
    let (st, body) = post(&clients[0], &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body.to_string().contains("no sign-in in progress"),
        "{body}"
    );
    let (st, body) = post(&clients[2], &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.stop().await;
}
