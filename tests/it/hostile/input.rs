//! Oversized, malformed and hostile input: bodies and heads over the
//! limits, bad UTF-8 in every place, path traversal, header splitting,
//! overlong credentials and wrongly typed JSON.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_heads_are_refused() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = client();

    // A JSON login over the login limit.
    let big = serde_json::json!({"username": "bob", "password": "p".repeat(20_000)});
    let r = c
        .post(s.at("/login"))
        .header("accept", "application/json")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = r.text().await.unwrap();
    assert_no_leak(&body, &[]);
    assert!(body.contains("too large"), "{body}");
    still_up(&s).await;

    // Any other route: over the general limit.
    login(&c, &s, "bob", BOB_PW, &[]).await;
    let r = c
        .post(s.at("/sessions/revoke"))
        .form(&[("id", "x".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    still_up(&s).await;

    // A declared length over the limit is refused before the body is read.
    let out = raw(
        s.addr,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\nusername=a",
    )
    .await;
    assert_eq!(status_of(&out), 413, "{out}");
    still_up(&s).await;

    // Many small headers: a 431, whatever their total size.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw(s.addr, many.as_bytes()).await;
    assert_eq!(status_of(&out), 431, "{out}");
    // One huge cookie.
    let out = raw(
        s.addr,
        format!(
            "GET /auth/verify HTTP/1.1\r\nHost: x\r\nCookie: gatehouse_session={}\r\n\r\n",
            "A".repeat(64 * 1024)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&out), 431, "{out}");
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_utf8_everywhere_is_a_clear_answer() {
    let s = TestServer::start(&config_text("", "")).await;
    let admin = client();
    login(&admin, &s, "alice", ALICE_PW, &[]).await;
    let alice_token = login_token(&s, "alice", ALICE_PW).await;

    let send = |path: &str, ct: &str, body: &[u8], cookie: Option<&str>| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nAccept: application/json\r\nConnection: close\r\n",
            body.len()
        )
        .into_bytes();
        if let Some(c) = cookie {
            req.extend_from_slice(format!("Cookie: {c}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        req
    };

    // Form with raw invalid bytes: decoded lossily, an unknown user, 401.
    let out = raw(
        s.addr,
        &send(
            "/login",
            "application/x-www-form-urlencoded",
            b"username=\xff\xfe&password=\xc3\x28",
            None,
        ),
    )
    .await;
    assert_eq!(status_of(&out), 401, "{out}");
    assert_no_leak(&out, &[]);
    // Percent-encoded invalid bytes: the same.
    let out = raw(
        s.addr,
        &send(
            "/login",
            "application/x-www-form-urlencoded",
            b"username=%ff%fe&password=%c3%28",
            None,
        ),
    )
    .await;
    assert_eq!(status_of(&out), 401, "{out}");
    // JSON that is not UTF-8: 400.
    let out = raw(
        s.addr,
        &send(
            "/login",
            "application/json",
            b"{\"username\": \"\xff\", \"password\": \"x\"}",
            None,
        ),
    )
    .await;
    assert_eq!(status_of(&out), 400, "{out}");
    assert!(out.contains("malformed JSON body"), "{out}");
    assert_no_leak(&out, &[]);
    still_up(&s).await;

    // Queries: lossy, so a clear answer, never an internal error.
    for (path, want) in [
        ("/api/v1/audit?user=%FF%FE", StatusCode::OK),
        ("/api/v1/audit?kind=%FF", StatusCode::BAD_REQUEST),
        ("/api/v1/audit?limit=%FF", StatusCode::BAD_REQUEST),
        ("/api/v1/audit?since=-1", StatusCode::BAD_REQUEST),
        ("/api/v1/sessions?user=%C3%28", StatusCode::OK),
        ("/auth/verify?redirect=%FF", StatusCode::OK),
        ("/login?rd=%FF%FE", StatusCode::OK),
    ] {
        let r = admin.get(s.at(path)).send().await.unwrap();
        assert_eq!(r.status(), want, "{path}");
        let body = r.text().await.unwrap();
        assert_no_leak(&body, &[]);
        if want == StatusCode::BAD_REQUEST {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(!v["error"].as_str().unwrap().is_empty(), "{body}");
        }
    }
    // Anonymous verify with a garbled query is still a plain 401 (a 400
    // would turn into an error page at the proxy).
    let r = bare()
        .get(s.at("/auth/verify?redirect=%FF&&=&redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A session id that is not UTF-8.
    let r = admin
        .delete(s.at("/api/v1/sessions/%FF%FE"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_no_leak(&r.text().await.unwrap(), &[]);

    // A cookie header with bytes that are not text: no session, 401.
    let mut req =
        b"GET /auth/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: gatehouse_session="
            .to_vec();
    req.extend_from_slice(&[0xff, 0xfe, 0x80]);
    req.extend_from_slice(b"\r\n\r\n");
    let out = raw(s.addr, &req).await;
    assert_eq!(status_of(&out), 401, "{out}");
    // Non-text bytes beside a valid cookie do not make it valid twice, nor crash.
    let mut req =
        b"GET /auth/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: x=\xff\r\n".to_vec();
    req.extend_from_slice(format!("Cookie: gatehouse_session={alice_token}\r\n\r\n").as_bytes());
    let out = raw(s.addr, &req).await;
    assert_eq!(status_of(&out), 200, "{out}");
    assert_no_leak(&out, &[&alice_token]);
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_finds_nothing() {
    let s = TestServer::start(&config_text("", "")).await;
    for path in [
        "/assets/../gatehouse.toml",
        "/assets/%2e%2e/gatehouse.toml",
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/..%2f..%2f..%2fetc/passwd",
        "/assets/style.css/../../gatehouse.toml",
        "/assets/style.css%00.toml",
        "/assets//etc/passwd",
        "/assets/..\\..\\gatehouse.toml",
        "/.well-known/../gatehouse.redb",
        "/..%2fgatehouse.toml",
        "/gatehouse.toml",
        "/admin.sock",
        "/admin-password",
    ] {
        let out = raw(
            s.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_of(&out);
        assert!(status == 404 || status == 400, "{path}: {out}");
        assert_no_leak(&out, &[]);
        assert!(
            !out.contains("[[users]]") && !out.contains("root:"),
            "{path}"
        );
    }
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_splitting() {
    let s = TestServer::start(&config_text(
        "public_origin = \"http://auth.example.com\"",
        "",
    ))
    .await;
    // A CR/LF in the user name: refused before anything else, no cookie.
    for name in [
        "bob\r\nSet-Cookie: evil=1",
        "bob\nX-Injected: 1",
        "bob\u{0}",
    ] {
        let r = client()
            .post(s.at("/login"))
            .form(&[("username", name), ("password", BOB_PW)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name:?}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.headers().get("x-injected").is_none());
    }
    // Encoded CR/LF in the original URL the proxy reports stays encoded in
    // the login redirect.
    let r = bare()
        .get(s.at("/auth/verify?redirect=1"))
        .header("accept", "text/html")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/%0d%0aSet-Cookie:%20evil=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers().get("set-cookie").is_none());
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with("http://auth.example.com/login?rd="),
        "{loc}"
    );
    // A forwarded host with junk: the redirect is still to our login page.
    let r = bare()
        .get(s.at("/auth/verify?redirect=1"))
        .header("accept", "text/html")
        .header("x-forwarded-host", "evil.example/@x")
        .header("x-forwarded-proto", "javascript")
        .header("x-forwarded-uri", "//evil.example/%0d%0a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("http://auth.example.com/login"), "{loc}");
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_credentials_and_wrong_types() {
    let s = TestServer::start(&config_text("", "")).await;
    let json = |body: Value| {
        let c = client();
        let url = s.at("/login");
        async move {
            c.post(url)
                .header("accept", "application/json")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    // Over the name and password bounds: 400 before any hashing.
    for body in [
        serde_json::json!({"username": "u".repeat(129), "password": "x"}),
        serde_json::json!({"username": "bob", "password": "p".repeat(1025)}),
        serde_json::json!({"username": "", "password": "x"}),
        serde_json::json!({"username": "bob", "password": ""}),
    ] {
        let r = json(body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    // At the bounds: an ordinary failed login.
    let r =
        json(serde_json::json!({"username": "u".repeat(128), "password": "p".repeat(1024)})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Wrong types: a clear 4xx that never repeats the values.
    for body in [
        serde_json::json!({"username": 12345678, "password": "hunter2hunter2"}),
        serde_json::json!({"username": "bob", "password": 987654321}),
        serde_json::json!({"username": ["bob"], "password": {"a": "hunter2hunter2"}}),
        serde_json::json!({"username": "bob", "password": "hunter2hunter2", "remember_me": [1]}),
        serde_json::json!({"username": null, "password": null}),
        serde_json::json!(["bob", "hunter2hunter2"]),
        serde_json::json!("hunter2hunter2"),
    ] {
        let r = json(body.clone()).await;
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
        let text = r.text().await.unwrap();
        assert_no_leak(&text, &["hunter2hunter2", "987654321", "12345678"]);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(!v["error"].as_str().unwrap().is_empty(), "{text}");
    }
    // A browser gets the form back with the reason, not a JSON dump.
    let r = client()
        .post(s.at("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=bob&password=x&password=y")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let html = r.text().await.unwrap();
    assert!(html.contains("<form"), "{html}");
    assert_no_leak(&html, &[]);
    still_up(&s).await;
}
