//! Session tokens and cookies: forged, truncated, replayed and revoked
//! tokens, duplicate cookies, the `__Host-` prefix, a stale host-only
//! cookie, and the headers that keep personal data out of caches.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_truncated_replayed_and_revoked_tokens_are_refused() {
    let s = TestServer::start(&config_text("", "")).await;
    let token = login_token(&s, "bob", BOB_PW).await;
    let cookie = |t: &str| format!("gatehouse_session={t}");
    assert_eq!(verify_with(&s, &cookie(&token)).await, StatusCode::OK);

    let mut flipped = token.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for forged in [
        "A".repeat(43),
        token[..42].to_string(),
        format!("{token}A"),
        format!("{token}="),
        flipped,
        token.to_lowercase(),
        format!("\"{}\"", &token[..42]),
        "../../../../etc/passwd".to_string(),
        "%00".repeat(20),
        String::new(),
    ] {
        let r = bare()
            .get(s.at("/api/v1/session"))
            .header("cookie", cookie(&forged))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{forged:?}");
        assert_no_leak(&r.text().await.unwrap(), &[&token]);
    }
    // The real token is never echoed in any answer.
    let r = bare()
        .get(s.at("/api/v1/session"))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_no_leak(&r.text().await.unwrap(), &[&token]);

    // Logout, then replay the old cookie: refused everywhere.
    let r = bare()
        .post(s.at("/logout"))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        verify_with(&s, &cookie(&token)).await,
        StatusCode::UNAUTHORIZED
    );
    let r = bare()
        .post(s.at("/api/v1/sessions/revoke-all"))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A session revoked from another one is dead at once.
    let a = login_token(&s, "bob", BOB_PW).await;
    let b = login_token(&s, "bob", BOB_PW).await;
    let r = bare()
        .post(s.at("/api/v1/sessions/revoke-others"))
        .header("cookie", cookie(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(verify_with(&s, &cookie(&a)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(verify_with(&s, &cookie(&b)).await, StatusCode::OK);
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_session_cookies_are_not_believed() {
    let s = TestServer::start(&config_text("", "")).await;
    let bob = login_token(&s, "bob", BOB_PW).await;
    let alice = login_token(&s, "alice", ALICE_PW).await;
    // Two different tokens: ambiguous, whichever comes first.
    for c in [
        format!("gatehouse_session={bob}; gatehouse_session={alice}"),
        format!("gatehouse_session={alice}; gatehouse_session={bob}"),
        format!("gatehouse_session=junk; gatehouse_session={bob}"),
    ] {
        assert_eq!(verify_with(&s, &c).await, StatusCode::UNAUTHORIZED, "{c}");
    }
    // The same token twice is one cookie.
    assert_eq!(
        verify_with(
            &s,
            &format!("gatehouse_session={bob}; gatehouse_session={bob}")
        )
        .await,
        StatusCode::OK
    );
    // Split over two Cookie headers: the same rule.
    let r = bare()
        .get(s.at("/auth/verify"))
        .header("cookie", format!("gatehouse_session={bob}"))
        .header("cookie", format!("gatehouse_session={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_get_the_host_prefix() {
    let s = TestServer::start(&config_text(
        "public_origin = \"https://auth.example.com\"",
        "",
    ))
    .await;
    let r = login(&bare(), &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("__Host-gatehouse_session="), "{c}");
    for flag in ["; Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(c.contains(flag), "{c}");
    }
    assert!(!c.contains("Domain"), "{c}");
    let token = token_of(&r).expect("a session cookie");
    assert_eq!(
        verify_with(&s, &format!("__Host-gatehouse_session={token}")).await,
        StatusCode::OK
    );
    // The unprefixed name (which a sibling host could set) is not the session.
    assert_eq!(
        verify_with(&s, &format!("gatehouse_session={token}")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_cookie_clears_a_stale_host_only_one() {
    let s = TestServer::start(&config_text("cookie_domain = \"example.com\"", "")).await;
    let r = login(&bare(), &s, "bob", BOB_PW, &[]).await;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    // First the host-only removal, then the domain cookie (the later wins
    // when both name the same cookie).
    assert!(cookies[0].contains("Max-Age=0") && !cookies[0].contains("Domain"));
    assert!(cookies[1].contains("Domain=example.com") && !cookies[1].contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_deployments_send_hsts_and_personal_data_is_never_cached() {
    let s = TestServer::start(&config_text(
        "public_origin = \"https://auth.example.com\"",
        "",
    ))
    .await;
    let token = login_token(&s, "alice", ALICE_PW).await;
    let get = |path: &str| {
        bare()
            .get(s.at(path))
            .header("cookie", format!("__Host-gatehouse_session={token}"))
            .send()
    };
    for path in [
        "/login",
        "/sessions",
        "/api/v1/session",
        "/api/v1/sessions",
        "/api/v1/audit",
        "/assets/style.css",
        "/no-such-page",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(
            r.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    // Answers read by the proxy, not by browsers, go without.
    for path in ["/auth/verify", "/healthz"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{path}"
        );
    }
    // JSON answers with names, addresses and user agents are not cached.
    for path in ["/api/v1/audit", "/api/v1/sessions", "/api/v1/session"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }

    // Turned off by the setting, and never sent over a plain-HTTP origin.
    for (top, sections) in [
        (
            "public_origin = \"https://auth.example.com\"",
            "[hsts]\nenabled = false\n",
        ),
        ("public_origin = \"http://auth.example.com\"", ""),
        ("", ""),
    ] {
        let s = TestServer::start(&config_text(top, sections)).await;
        let r = bare().get(s.at("/login")).send().await.unwrap();
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{top} {sections}"
        );
    }
    // includeSubDomains only when asked for.
    let s = TestServer::start(&config_text(
        "public_origin = \"https://auth.example.com\"",
        "[hsts]\nmax_age_secs = 600\ninclude_subdomains = true\n",
    ))
    .await;
    let r = bare().get(s.at("/login")).send().await.unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=600; includeSubDomains"
    );
}
