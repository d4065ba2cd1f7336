//! The browser and API flows: login, verify, list, revoke, logout, redirects,
//! cookies, fixation, audit, assets.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_verify_list_revoke_logout() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();

    // Anonymous.
    let r = c.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = c.get(s.at("/login?rd=/x")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"remember_me\"") && html.contains("value=\"/x\""));

    // Wrong password and unknown user: the same answer.
    let wrong = login(&c, &s, "alice", "nope", &[]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong_body = wrong.text().await.unwrap();
    let unknown = login(&c, &s, "mallory", "nope", &[]).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.text().await.unwrap(),
        wrong_body.replace("value=\"alice\"", "value=\"mallory\"")
    );

    // Success: 303 to rd, cookie flags.
    let ok = login(&c, &s, "alice", ALICE_PW, &[("rd", "/app/")]).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()["location"], "/app/");
    let cookie = set_cookie(&ok);
    assert!(cookie.starts_with("gatehouse_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Secure"),
        "{cookie}"
    );

    let v = c.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(v.status(), StatusCode::OK);
    assert_eq!(v.headers()["remote-user"], "alice");
    assert_eq!(v.headers()["remote-groups"], "admin");

    let me: Value = c
        .get(s.at("/api/v1/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["admin"], true);

    // A second session from another client (JSON login).
    let c2 = client();
    let r = c2
        .post(s.at("/login"))
        .header("accept", "application/json")
        .json(&serde_json::json!({"username": "alice", "password": ALICE_PW, "remember_me": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        set_cookie(&r).contains("Max-Age="),
        "remember-me sets Max-Age"
    );
    let body: Value = r.json().await.unwrap();
    let second_id = body["session"].as_str().unwrap().to_string();

    let list: Value = c
        .get(s.at("/api/v1/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], second_id.as_str(), "newest first");
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["current"], true);
    assert_eq!(sessions[1]["ip"], "127.0.0.1");

    // Revoke the other one.
    let r = c
        .delete(s.at(&format!("/api/v1/sessions/{second_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .delete(s.at(&format!("/api/v1/sessions/{second_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(s.at("/api/v1/sessions/garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        c2.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // revoke-others keeps this session.
    let c3 = client();
    login(&c3, &s, "alice", ALICE_PW, &[]).await;
    let r: Value = c
        .post(s.at("/api/v1/sessions/revoke-others"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["revoked"], 1);
    assert_eq!(
        c3.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // The HTML page lists the session.
    let page = c.get(s.at("/sessions")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("This session"));

    // Logout.
    let r = c.post(s.at("/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    assert!(set_cookie(&r).contains("Max-Age=0"));
    assert_eq!(
        c.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c.get(s.at("/sessions")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The audit trail saw it all.
    let admin = client();
    login(&admin, &s, "alice", ALICE_PW, &[]).await;
    let ev: Value = admin
        .get(s.at("/api/v1/audit?kind=login.failure"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["mallory", "alice"]);
    assert!(ev["next_cursor"].is_null());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_redirects_anonymous_browsers_to_login() {
    let s = TestServer::start(&config_text(
        "public_origin = \"https://auth.example.com\"",
        "",
    ))
    .await;
    let c = client();
    let r = c
        .get(s.at("/auth/verify?redirect=1"))
        .header("accept", "text/html")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/notebook?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        "https://auth.example.com/login?rd=https%3A%2F%2Fapp.example.com%2Fnotebook%3Fx%3D1"
    );

    // Without `redirect=1` (nginx): 401, the same URL in a header, the
    // query's `&` encoded.
    let r = forwarded(
        c.get(s.at("/auth/verify")),
        "GET",
        "https://app.example.com/n?a=1&b=2",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["x-gatehouse-login"],
        "https://auth.example.com/login?rd=https%3A%2F%2Fapp.example.com%2Fn%3Fa%3D1%26b%3D2"
    );
    let r = c.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("x-gatehouse-login").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_only_to_allowed_places() {
    let s = TestServer::start(&config_text(
        "allowed_redirect_domains = [\"example.com\"]",
        "",
    ))
    .await;
    for (rd, expect) in [
        ("https://evil.example/phish", "/"),
        ("//evil.example/", "/"),
        ("https://example.com.evil.example/", "/"),
        ("/ok?a=1", "/ok?a=1"),
        ("https://wiki.example.com/p", "https://wiki.example.com/p"),
    ] {
        let c = client();
        let r = login(&c, &s, "bob", BOB_PW, &[("rd", rd)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], expect, "rd={rd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cookie_never_becomes_a_session() {
    let s = TestServer::start(&config_text("", "")).await;
    let planted = "A".repeat(43);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .post(s.at("/login"))
        .header("cookie", format!("gatehouse_session={planted}"))
        .form(&[("username", "bob"), ("password", BOB_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&r);
    assert!(!cookie.contains(&planted));
    let fresh = cookie.split(';').next().unwrap().to_string();
    let check = |cookie: String| {
        let c = c.clone();
        let url = s.at("/auth/verify");
        async move {
            c.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        check(format!("gatehouse_session={planted}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(check(fresh).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_name_with_whitespace_is_not_the_session_cookie() {
    let s = TestServer::start(&config_text("", "")).await;
    let r = login(&client(), &s, "bob", BOB_PW, &[]).await;
    let token = token_of(&r).unwrap();
    let check = |cookie: String| {
        let url = s.at("/auth/verify");
        async move {
            reqwest::Client::new()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // A proxy's cookie filter reads these names as RFC 6265 writes them,
    // so it would let such a pair through to the app: gatehouse must not
    // take it for the session cookie either.
    for odd in [
        format!("gatehouse_session ={token}"),
        format!("a=1; gatehouse_session\t={token}"),
    ] {
        assert_eq!(
            check(odd.clone()).await,
            StatusCode::UNAUTHORIZED,
            "{odd:?}"
        );
    }
    assert_eq!(
        check(format!("a=1 ; gatehouse_session={token} ")).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();
    login(&c, &s, "bob", BOB_PW, &[]).await;
    let r = c
        .post(s.at("/logout"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(s.at("/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "bob"), ("password", BOB_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        c.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::OK
    );
    // Same origin passes.
    let r = c
        .post(s.at("/logout"))
        .header("origin", s.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_powers() {
    let s = TestServer::start(&config_text("", "")).await;
    let bob = client();
    login(&bob, &s, "bob", BOB_PW, &[]).await;
    let alice = client();
    login(&alice, &s, "alice", ALICE_PW, &[]).await;

    // Bob is no admin.
    assert_eq!(
        bob.get(s.at("/api/v1/audit"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.get(s.at("/api/v1/sessions?user=alice"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Sent empty rather than left out, so a proxy copying it always
    // overwrites a client's own.
    let v = bob.get(s.at("/auth/verify")).send().await.unwrap();
    assert_eq!(v.headers()["remote-groups"], "");

    // Alice pages through the audit trail.
    let page: Value = alice
        .get(s.at("/api/v1/audit?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let r = alice
        .get(s.at(&format!("/api/v1/audit?limit=1&cursor={cursor}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = alice
        .get(s.at("/api/v1/audit?cursor=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let msg: Value = r.json().await.unwrap();
    assert!(msg["error"].as_str().unwrap().contains("cursor"));
    let r = alice
        .get(s.at("/api/v1/audit?kind=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // And ends all of bob's sessions.
    let list: Value = alice
        .get(s.at("/api/v1/sessions?user=bob"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let r: Value = alice
        .post(s.at("/api/v1/sessions/revoke-all?user=bob"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["revoked"], 1);
    assert_eq!(
        bob.get(s.at("/auth/verify")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_health_and_metrics() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();
    for path in [
        "/robots.txt",
        "/security.txt",
        "/.well-known/security.txt",
        "/assets/style.css",
    ] {
        let r = c.get(s.at(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age")
        );
        let etag = r.headers()["etag"].clone();
        let r = c
            .get(s.at(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    assert!(
        c.get(s.at("/robots.txt"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Disallow: /")
    );
    let h: Value = c
        .get(s.at("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "alive");
    assert!(h["last_heartbeat"].as_u64().unwrap() > 0);
    login(&c, &s, "bob", "wrong", &[]).await;
    let m = metrics_text(&s).await;
    assert!(
        m.contains("gatehouse_login_attempts_total{outcome=\"failure\"} 1"),
        "{m}"
    );
    assert!(m.contains("gatehouse_writer_batch_size_bucket"), "{m}");
    assert!(m.contains("gatehouse_verify_duration_seconds_count"), "{m}");
    assert_eq!(
        c.get(s.at("/nope")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_slides_last_seen_through_the_writer() {
    let s = TestServer::start(&config_text("", "[session]\ntouch_interval_secs = 0\n")).await;
    let c = client();
    login(&c, &s, "bob", BOB_PW, &[]).await;
    let first: Value = c
        .get(s.at("/api/v1/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = first["session"]["created_ms"].as_u64().unwrap();
    // Touches are fire-and-forget: poll until one has landed.
    let mut seen = created;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            c.get(s.at("/auth/verify")).send().await.unwrap().status(),
            StatusCode::OK
        );
        let me: Value = c
            .get(s.at("/api/v1/session"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen = me["session"]["last_seen_ms"].as_u64().unwrap();
        if seen > created {
            break;
        }
    }
    assert!(seen > created, "last_seen never moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_routes_answer_the_same_whatever_the_method() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();
    assert_eq!(
        login(&c, &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::SEE_OTHER
    );
    // GET is answered before the router, HEAD by the router: the same head.
    let get = c.get(s.at("/auth/verify")).send().await.unwrap();
    let head = c.head(s.at("/auth/verify")).send().await.unwrap();
    for r in [&get, &head] {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["remote-user"], "alice");
        assert_eq!(r.headers()["remote-groups"], "admin");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    let anon = client();
    assert_eq!(
        anon.head(s.at("/auth/verify"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.head(s.at("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    for path in ["/auth/verify", "/healthz"] {
        let r = c.post(s.at(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    // Only the exact paths are hot routes.
    for path in ["/auth/verify/", "/auth/verify/x", "/healthz/"] {
        let r = c.get(s.at(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
