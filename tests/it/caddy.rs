//! `deploy/Caddyfile` against the real server and a real Caddy, when Caddy
//! is installed (skipped with a notice otherwise). The test runs the
//! shipped file, with only its addresses replaced: the login redirect and
//! its return URL, identity headers a client forges (dashed and underscore
//! forms), and the session cookie kept from the app.

use reqwest::StatusCode;

use crate::harness::*;
use crate::proxy::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_passes_only_gatehouse_identity() {
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!(
            "SKIPPED caddy_forward_auth_passes_only_gatehouse_identity: caddy is not installed"
        );
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = echo_app().await;

    let _caddy = Shipped::caddy(&caddy, auth_port, app_port, s.addr, app).await;
    let app_url = format!("http://127.0.0.1:{app_port}/notes?a=1&b=2");

    // A script (it asks for no page) gets the 401 and the challenge.
    let r = client().get(&app_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"gatehouse\"");
    // A browser, anonymous: to the login page, the whole URL in `rd`.
    let c = client();
    let r = c
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.1:{auth_port}/login?rd=http%3A%2F%2F127.0.0.1%3A{app_port}%2Fnotes%3Fa%3D1%26b%3D2"
        )
    );

    // Sign in through the login site, back at the app URL; identity and
    // cookies as the app sees them.
    let (session, alice_session) = signed_in_through_proxy(&c, &s, &loc, &app_url).await;
    // Access rules, through the proxy: a public path, and an admin area.
    rules_through_proxy(
        &format!("http://127.0.0.1:{app_port}"),
        &session,
        &alice_session,
    )
    .await;
}

/// Access tokens through real Caddy running the shipped `deploy/Caddyfile`:
/// a Bearer token reaches the app as its user, without the `Authorization`
/// header; a script without one gets the 401 and the Basic challenge; a
/// revoked token gets 401; an app's own `Authorization` beside a session
/// cookie passes untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_passes_tokens_but_not_their_header() {
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!("SKIPPED caddy_passes_tokens_but_not_their_header: caddy is not installed");
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = echo_app().await;
    let _caddy = Shipped::caddy(&caddy, auth_port, app_port, s.addr, app).await;
    let app_url = format!("http://127.0.0.1:{app_port}/api/status");

    let (c, token, id) = token_for_bob(&s).await;

    let script = reqwest::Client::new();
    let r = script
        .get(&app_url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen(&echo, "remote-user"), ["bob"]);
    assert!(seen(&echo, "authorization").is_empty(), "{echo}");
    assert!(seen(&echo, "x-gatehouse-credential").is_empty(), "{echo}");

    let r = script.get(&app_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"gatehouse\"");

    // The app's own Authorization beside a session cookie stays.
    the_apps_own_authorization_passes(&s, &app_url).await;

    // Revoked: 401 through Caddy.
    let r = c
        .delete(s.at(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = script
        .get(&app_url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
