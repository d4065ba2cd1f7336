//! The original request as a trusted proxy names it, sent straight to
//! `/auth/verify`: exactly one header family is read (a client's copies of
//! the other never steer the decision), an unreadable request is refused
//! rather than decided as another, and every spelling of a path or host
//! meets the rule written for it. The same attacks through real nginx and
//! Caddy running the shipped files are in `steering.rs`.

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use crate::harness::*;

/// A host that needs two factors, added to the access tests' rules.
const SECURE: &str = r#"
[[rules]]
domains = ["secure.example.com"]
policy = "two_factor"
"#;

async fn server(family: Option<&str>) -> TestServer {
    let access = family.map_or(String::new(), |f| {
        format!("[access]\nforwarded_headers = \"{f}\"\n")
    });
    TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        &format!("{access}{}{SECURE}", crate::access::RULES),
    ))
    .await
}

async fn session(s: &TestServer, user: &str, pw: &str) -> String {
    let r = login(&client(), s, user, pw, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    format!("gatehouse_session={}", token_of(&r).unwrap())
}

/// A check with exactly these headers (values as raw bytes).
async fn check(s: &TestServer, cookie: Option<&str>, headers: &[(&str, &[u8])]) -> StatusCode {
    let mut r = reqwest::Client::new().get(s.at("/auth/verify"));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    for (k, v) in headers {
        r = r.header(*k, HeaderValue::from_bytes(v).unwrap());
    }
    r.send().await.unwrap().status()
}

fn caddy<'a>(method: &'a str, host: &'a str, uri: &'a [u8]) -> Vec<(&'static str, &'a [u8])> {
    vec![
        ("x-forwarded-method", method.as_bytes()),
        ("x-forwarded-proto", b"https"),
        ("x-forwarded-host", host.as_bytes()),
        ("x-forwarded-uri", uri),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_family_never_steers_the_decision() {
    let s = server(None).await;
    let bob = session(&s, "bob", BOB_PW).await;
    let forged: [(&str, &[u8]); 2] = [
        ("x-original-url", b"https://code.example.com/api/health"),
        ("x-original-method", b"GET"),
    ];
    let with_forged = |mut h: Vec<(&'static str, &'static [u8])>| {
        h.extend(forged);
        h
    };
    // Anonymous at a denied path naming a bypass path: still asked to sign in.
    let h = with_forged(caddy("GET", "code.example.com", b"/admin"));
    assert_eq!(check(&s, None, &h).await, StatusCode::UNAUTHORIZED);
    // bob, refused /admin, naming the site's root: still refused.
    assert_eq!(check(&s, Some(&bob), &h).await, StatusCode::FORBIDDEN);
    // A DELETE that a method rule refuses, naming GET: still refused.
    let h = with_forged(caddy("DELETE", "wiki.example.com", b"/p"));
    assert_eq!(check(&s, Some(&bob), &h).await, StatusCode::FORBIDDEN);
    // Without the forged headers the same answers: they were never read.
    let h = caddy("GET", "code.example.com", b"/api/health");
    assert_eq!(check(&s, None, &h).await, StatusCode::OK);

    // A trusted proxy that sends only the other family, or none: 403,
    // never a decision for host "" and path "/" (bob passes the default).
    assert_eq!(check(&s, Some(&bob), &forged).await, StatusCode::FORBIDDEN);
    assert_eq!(check(&s, Some(&bob), &[]).await, StatusCode::FORBIDDEN);
    s.stop().await;

    // The nginx family when the setting names it, and then only it.
    let s = server(Some("x-original")).await;
    let bob = session(&s, "bob", BOB_PW).await;
    let url = |u: &'static [u8]| [("x-original-url", u), ("x-original-method", &b"GET"[..])];
    assert_eq!(
        check(&s, None, &url(b"https://code.example.com/api/health")).await,
        StatusCode::OK
    );
    let mut h = url(b"https://code.example.com/admin").to_vec();
    h.extend(caddy("GET", "code.example.com", b"/api/health"));
    assert_eq!(check(&s, Some(&bob), &h).await, StatusCode::FORBIDDEN);
    assert_eq!(check(&s, None, &h).await, StatusCode::UNAUTHORIZED);
    let h = caddy("GET", "code.example.com", b"/api/health");
    assert_eq!(check(&s, None, &h).await, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_meets_the_same_rule() {
    let s = server(None).await;
    let alice = session(&s, "alice", ALICE_PW).await;
    let bob = session(&s, "bob", BOB_PW).await;
    for uri in [
        &b"/admin"[..],
        b"/%61dmin",
        b"/%41dmin/../admin",
        b"/./admin",
        b"/x/../admin",
        b"/x/%2e%2e/admin",
        b"//admin",
        b"/admin;x",
        b"/x/..;/admin",
        b"/%2e/admin/users",
        b"/admin?\xff",
        b"/admin/\xff/..",
    ] {
        let shown = String::from_utf8_lossy(uri);
        for host in [
            "code.example.com",
            "CODE.example.com",
            "code.example.com.",
            "code.example.com.:443",
        ] {
            let h = caddy("GET", host, uri);
            assert_eq!(
                check(&s, Some(&bob), &h).await,
                StatusCode::FORBIDDEN,
                "bob {host} {shown}"
            );
            assert_eq!(
                check(&s, None, &h).await,
                StatusCode::UNAUTHORIZED,
                "anonymous {host} {shown}"
            );
            assert_eq!(
                check(&s, Some(&alice), &h).await,
                StatusCode::OK,
                "alice {host} {shown}"
            );
        }
    }
    // A request a router could read as two paths, or not at all: refused
    // for everyone, alice included.
    for uri in [
        &b"/%2fadmin"[..],
        b"/%5cadmin",
        b"/\\admin",
        b"/%zz",
        b"admin",
    ] {
        let h = caddy("GET", "code.example.com", uri);
        assert_eq!(check(&s, Some(&alice), &h).await, StatusCode::FORBIDDEN);
        assert_eq!(check(&s, None, &h).await, StatusCode::FORBIDDEN);
    }
    // A password-only session on a two_factor host, spelled another way:
    // asked for its second factor.
    for host in [
        "secure.example.com",
        "Secure.Example.Com.",
        "secure.example.com.:8443",
    ] {
        for uri in [&b"/dash"[..], b"/dash?\xff"] {
            let h = caddy("GET", host, uri);
            assert_eq!(
                check(&s, Some(&bob), &h).await,
                StatusCode::UNAUTHORIZED,
                "{host}"
            );
        }
    }
    // A host that is no host: refused, never matched as "".
    let h = caddy("GET", "secure.example.com@evil.example", b"/");
    assert_eq!(check(&s, Some(&bob), &h).await, StatusCode::FORBIDDEN);
    s.stop().await;
}
