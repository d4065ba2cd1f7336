//! `deploy/nginx.conf` against the real server and a real nginx, when nginx
//! is installed (skipped with a notice otherwise). The test runs the
//! shipped file, with only its addresses replaced: the login redirect and
//! its return URL (a query with `&`), identity headers a client forges
//! (dashed and underscore forms), and the session cookie kept from the app.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;
use crate::proxy::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_passes_only_gatehouse_identity() {
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!(
            "SKIPPED nginx_auth_request_passes_only_gatehouse_identity: nginx is not installed"
        );
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&config_text(
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\npublic_origin = \"http://127.0.0.1:{auth_port}\"\n\
             allowed_redirect_domains = [\"127.0.0.1\"]"
        ),
        PROXY_RULES,
    ))
    .await;
    let app = echo_app().await;

    let _nginx = ShippedNginx::start(&nginx, auth_port, app_port, s.addr, app).await;
    let app_url = format!("http://127.0.0.1:{app_port}/notes?a=1&b=2");

    // Anonymous: to the login page, the whole URL encoded in `rd` (an
    // unencoded `&` would cut it at `?a=1`).
    let c = client();
    let r = c.get(&app_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.1:{auth_port}/login?rd=http%3A%2F%2F127.0.0.1%3A{app_port}%2Fnotes%3Fa%3D1%26b%3D2"
        )
    );

    // A URL too long to return to: the bare login page.
    let long = format!("http://127.0.0.1:{app_port}/{}", "x".repeat(3000));
    let r = c.get(&long).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        format!("http://127.0.0.1:{auth_port}/login").as_str()
    );

    // Sign in through the login site; back to the app URL, query intact.
    let r = sign_in_via(&c, &loc, "bob", BOB_PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], app_url.as_str());
    let session = session_pair(&set_cookie(&r));

    let get = |cookie: String| {
        let mut req = c.get(&app_url).header("cookie", cookie);
        for (k, v) in FORGED {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    // Underscore names never reach the app: nginx drops them by default
    // (`underscores_in_headers off`); the dashed ones are overwritten or
    // cleared by the shipped config.
    let echo = get(format!("theme=dark; {session}; lang=en")).await;
    assert_eq!(echo["uri"], "/notes?a=1&b=2");
    assert_identity_from_gatehouse_only(&echo, "bob", "", "", "");
    // The app keeps its own cookies and never sees the session token.
    assert_eq!(seen(&echo, "cookie"), ["theme=dark; lang=en"], "{echo}");
    for cookie in [
        format!("{session}; theme=dark"),
        format!("theme=dark; {session}"),
    ] {
        assert_eq!(seen(&get(cookie).await, "cookie"), ["theme=dark"]);
    }
    assert!(seen(&get(session.clone()).await, "cookie").is_empty());

    // An admin's group is passed on.
    let alice = client();
    let r = login(&alice, &s, "alice", ALICE_PW, &[]).await;
    let alice_session = session_pair(&set_cookie(&r));
    let echo = get(alice_session.clone()).await;
    assert_identity_from_gatehouse_only(
        &echo,
        "alice",
        "admin",
        "alice@example.com",
        "Alice Admin",
    );

    // Access rules, through the proxy: a public path, and an admin area.
    rules_through_proxy(
        &format!("http://127.0.0.1:{app_port}"),
        &session,
        &alice_session,
    )
    .await;
}
