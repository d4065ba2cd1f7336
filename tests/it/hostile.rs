//! Hostile input against the real server: every answer is a clear 4xx with
//! a short JSON or HTML reason, nothing panics (health stays 200 after each
//! attempt), nothing leaks (no internal error text, no token echoed), and no
//! redirect ever leaves the site.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Sends raw bytes on a fresh connection and returns what comes back.
async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = conn.write_all(req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// The status code of a raw HTTP/1.1 answer.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Text that must never appear in an answer.
const LEAKS: &[&str] = &[
    "panicked",
    "RUST_BACKTRACE",
    "src/",
    "Failed to deserialize",
    "Failed to parse",
    "Failed to buffer",
    "password_hash",
    "argon2",
    "redb",
];

fn assert_no_leak(body: &str, secrets: &[&str]) {
    for l in LEAKS {
        assert!(!body.contains(l), "{l:?} in {body:?}");
    }
    for s in secrets {
        assert!(!body.contains(s), "secret echoed in {body:?}");
    }
}

/// The server is still up and healthy.
async fn still_up(s: &TestServer) {
    let r = client().get(s.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The session token a login response set.
fn token_of(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("a session cookie")
}

/// A client without a cookie jar: the test sets `Cookie` itself.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn verify_with(s: &TestServer, cookie: &str) -> StatusCode {
    bare()
        .get(s.at("/auth/verify"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

async fn login_token(s: &TestServer, user: &str, pw: &str) -> String {
    let r = login(&bare(), s, user, pw, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    token_of(&r)
}

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
async fn redirects_never_leave_the_site() {
    let s = TestServer::start(&config_text(
        "allowed_redirect_domains = [\"example.com\"]",
        "",
    ))
    .await;
    let here = url::Url::parse(&s.url).unwrap();
    for rd in [
        "//evil.example/",
        "///evil.example/",
        "/.//evil.example/",
        "/a/..//evil.example/",
        "/%2e//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "https:evil.example",
        "https:/evil.example",
        "https://evil.example\\@example.com/",
        "https://example.com@evil.example/",
        "https://user:pw@wiki.example.com/",
        "https://evil.example#@example.com",
        "https://evil.example?.example.com",
        "https://example.com.evil.example/",
        "https://evilexample.com/",
        "https://evil.example%2fexample.com/",
        "https://evil.example%00.example.com/",
        "https://evil。example/",
        "http://[::1]:1/",
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/\tevil.example",
        " //evil.example",
        "/%0d%0aLocation:%20https://evil.example",
        "/x\r\nLocation: https://evil.example",
        "%2f%2fevil.example",
        "/%2f%2fevil.example",
        "/%5cevil.example",
        "https://evil.example/\u{202e}",
        "http://127.0.0.1.evil.example/",
    ] {
        let r = login(&client(), &s, "bob", BOB_PW, &[("rd", rd)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{rd:?}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            !loc.contains(['\r', '\n', '\\', ' ', '\t']),
            "{rd:?} -> {loc:?}"
        );
        let landed = here.join(&loc).unwrap();
        let host = landed.host_str().unwrap();
        assert!(
            host == "127.0.0.1" || host == "example.com" || host.ends_with(".example.com"),
            "{rd:?} -> {loc:?} lands on {host}"
        );
        assert!(
            landed.username().is_empty() && landed.password().is_none(),
            "{loc}"
        );
        // Exactly one cookie: no header was split.
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 1);
    }
    // The JSON answer names the same safe target.
    let r = client()
        .post(s.at("/login"))
        .header("accept", "application/json")
        .json(&serde_json::json!({"username": "bob", "password": BOB_PW, "rd": "//evil.example"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["redirect"], "/");
    // The login form echoes rd only as an escaped attribute.
    let r = client()
        .get(s.at("/login?rd=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
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
        .header(
            "x-original-url",
            "https://app.example.com/%0d%0aSet-Cookie:%20evil=1",
        )
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

/// A config text without bob.
fn config_without_bob(text: &str) -> String {
    text.split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_or_changed_users_lose_their_sessions_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), &config_text("", "")).await;
    let path = s.dir.join("gatehouse.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let bob = login_token(&s, "bob", BOB_PW).await;
    let alice = login_token(&s, "alice", ALICE_PW).await;
    let cookie = |t: &str| format!("gatehouse_session={t}");

    // Bob is removed: his cookie is refused.
    let without_bob = good
        .split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, &without_bob).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    // Bob comes back with the same name: the old session stays dead.
    std::fs::write(&path, &good).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify_with(&s, &cookie(&alice)).await, StatusCode::OK);

    // Alice's password changes: her sessions end.
    let new_hash = gatehouse::server::password::hash_password(
        "a new password for alice",
        &gatehouse::config::Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    let start = good.find("name = \"alice\"\npassword_hash = \"").unwrap()
        + "name = \"alice\"\npassword_hash = \"".len();
    let end = start + good[start..].find('"').unwrap();
    let changed = format!("{}{new_hash}{}", &good[..start], &good[end..]);
    std::fs::write(&path, &changed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&alice)).await,
        StatusCode::UNAUTHORIZED
    );
    // The old password no longer works, the new one does.
    assert_eq!(
        login(&bare(), &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = login_token(&s, "alice", "a new password for alice").await;
    // A reload that changes nothing keeps sessions.
    s.reloader.reload().await.unwrap();
    assert_eq!(verify_with(&s, &cookie(&fresh)).await, StatusCode::OK);

    // Removed while the server is stopped, then added back by a reload:
    // the sessions from before stay dead.
    let bob = login_token(&s, "bob", BOB_PW).await;
    let dir = s.dir.clone();
    s.stop().await;
    std::fs::write(&path, config_without_bob(&changed)).unwrap();
    let s = TestServer::start_in(&dir, &std::fs::read_to_string(&path).unwrap()).await;
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    std::fs::write(&path, &changed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify_with(&s, &cookie(&fresh)).await, StatusCode::OK);

    // The audit trail says why.
    let admin = bare();
    let ev: Value = admin
        .get(s.at("/api/v1/audit?kind=session.revoked"))
        .header("cookie", cookie(&fresh))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons = ev["events"].to_string();
    assert!(reasons.contains("user_changed"), "{reasons}");
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
    let token = token_of(&r);
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
async fn unknown_users_take_a_hashing_slot_like_known_ones() {
    // One hashing slot, no queue, and a slow hash for carol. While carol's
    // login holds the slot, a login for a user that does not exist is
    // refused as busy: it would have hashed too (against the dummy hash),
    // so its timing says nothing about whether the name exists.
    let slow = gatehouse::server::password::hash_password(
        "carol-pw",
        &gatehouse::config::Argon2Settings {
            memory_kib: 65_536,
            iterations: 24,
            parallelism: 1,
        },
    )
    .unwrap();
    let mut text = config_text("", "[limits]\nhash_workers = 1\nhash_queue = 0\n");
    text.push_str(&format!(
        "\n[[users]]\nname = \"carol\"\npassword_hash = \"{slow}\"\n"
    ));
    let s = TestServer::start(&text).await;
    let url = s.at("/login");
    let carol = tokio::spawn(async move {
        bare()
            .post(url)
            .form(&[("username", "carol"), ("password", "carol-pw")])
            .send()
            .await
            .unwrap()
            .status()
    });
    // Wait (bounded) until carol's check holds the slot.
    let mut busy = false;
    for _ in 0..400 {
        let m = client()
            .get(s.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("gatehouse_hashing_in_use 1") {
            busy = true;
            break;
        }
        if carol.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if busy {
        let r = login(&bare(), &s, "nobody-here", "whatever", &[]).await;
        // Either refused as busy, or (if carol finished meanwhile) an ordinary failure.
        assert!(
            r.status() == StatusCode::SERVICE_UNAVAILABLE || r.status() == StatusCode::UNAUTHORIZED,
            "{}",
            r.status()
        );
        if !carol.is_finished() {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    assert_eq!(carol.await.unwrap(), StatusCode::SEE_OTHER);
    // Known and unknown names get the same failure text.
    let a = login(&bare(), &s, "bob", "wrong", &[])
        .await
        .text()
        .await
        .unwrap();
    let b = login(&bare(), &s, "nobody", "wrong", &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        a.replace("value=\"bob\"", ""),
        b.replace("value=\"nobody\"", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_client_cannot_spread_guesses_over_its_network() {
    let s = TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    ))
    .await;
    let post = |from: &'static str, user: &'static str, pw: &'static str| {
        let url = s.at("/login");
        async move {
            bare()
                .post(url)
                .header("x-forwarded-for", from)
                .form(&[("username", user), ("password", pw)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Three guesses at three different names, each from another address of
    // one /64: no user reaches the limit, the network does.
    for (from, user) in [
        ("2001:db8:1:2::1", "u1"),
        ("2001:db8:1:2::2", "u2"),
        ("2001:db8:1:2:ffff::3", "u3"),
    ] {
        assert_eq!(post(from, user, "guess").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        post("2001:db8:1:2::99", "bob", BOB_PW).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another network is not affected.
    assert_eq!(
        post("2001:db8:1:3::1", "bob", BOB_PW).await,
        StatusCode::SEE_OTHER
    );
}

/// `text` with alice's password hash replaced by a hash of `password`.
fn with_alice_password(text: &str, password: &str) -> String {
    let new_hash = gatehouse::server::password::hash_password(
        password,
        &gatehouse::config::Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    let field = "name = \"alice\"\npassword_hash = \"";
    let start = text.find(field).unwrap() + field.len();
    let end = start + text[start..].find('"').unwrap();
    format!("{}{new_hash}{}", &text[..start], &text[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_checked_against_a_replaced_hash_never_yield_a_session() {
    // Room for every concurrent attempt: this test is about the reload, not
    // about the failure limit.
    let s = TestServer::start(&config_text("", "[regulation]\nmax_failures = 50\n")).await;
    let path = s.dir.join("gatehouse.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    // Several logins with the old password read the old hash, then wait at
    // the hashing gate, mid-check.
    const N: usize = 6;
    s.gate.close();
    let logins: Vec<_> = (0..N)
        .map(|_| {
            let url = s.at("/login");
            tokio::spawn(async move {
                bare()
                    .post(url)
                    .form(&[("username", "alice"), ("password", ALICE_PW)])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    s.gate.wait_held(N).await;
    // The password changes and the server reloads (what SIGHUP does) while
    // they wait; then they finish their check against the old hash.
    std::fs::write(&path, with_alice_password(&good, "alice's next password")).unwrap();
    s.reloader.reload().await.unwrap();
    s.gate.open();
    for l in logins {
        let r = tokio::time::timeout(crate::crash_server::WAIT, l)
            .await
            .expect("a login hung")
            .unwrap();
        let status = r.status();
        let live = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| !c.contains("Max-Age=0"));
        if let Some(c) = live {
            let cookie = c.split(';').next().unwrap().to_string();
            assert_eq!(
                verify_with(&s, &cookie).await,
                StatusCode::UNAUTHORIZED,
                "a session checked against the replaced hash is valid"
            );
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body = r.text().await.unwrap();
        assert!(body.contains("Wrong username or password."), "{body}");
    }
    // The new password works; the old one does not.
    assert_eq!(
        login(&bare(), &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    login_token(&s, "alice", "alice's next password").await;
    still_up(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_checked_against_their_authority() {
    let s = TestServer::start(&config_text("", "")).await;
    // HTTP/2 requests name the site in `:authority` and carry no `Host`.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |origin: &str, rd: &str| {
        h2.post(s.at("/login"))
            .header("origin", origin)
            .form(&[("username", "bob"), ("password", BOB_PW), ("rd", rd)])
            .send()
    };
    // The page's own form, sent back to this site.
    let here = format!("{}/x", s.url);
    let r = post(&s.url, &here).await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], here.as_str());
    // Another site's form, and a redirect to another port of this host.
    let r = post("http://evil.example", "/x").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other_port = format!(
        "http://127.0.0.1:{}/x",
        s.addr.port().wrapping_add(1).max(1)
    );
    let r = post(&s.url, &other_port).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/");
    still_up(&s).await;
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
