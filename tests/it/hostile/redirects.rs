//! Redirects never leave the site: `rd` in every encoding, and the site
//! an HTTP/2 request names in `:authority`.

use super::*;

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
