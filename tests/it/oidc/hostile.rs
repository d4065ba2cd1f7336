//! Hostile requests to the provider: each a clear error and never a token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;

use crate::harness::{ALICE_PW, TestServer, client, login};

pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
const VERIFIER: &str = "a-verifier-of-more-than-forty-three-characters-0123456789";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A query of an authorization request of `client` with `extra` params.
pub fn auth_query(client: &str, redirect: &str, extra: &str) -> String {
    format!(
        "/oidc/authorize?client_id={client}&redirect_uri={}&response_type=code&state=st{extra}",
        enc(redirect)
    )
}

/// The PKCE parameters of [`VERIFIER`].
pub fn pkce() -> String {
    format!(
        "&code_challenge={}&code_challenge_method=S256",
        gatehouse::domain::oidc::pkce_s256(VERIFIER)
    )
}

/// A browser signed in as alice.
pub async fn alice(s: &TestServer) -> reqwest::Client {
    let c = client();
    let r = login(&c, s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    c
}

/// Runs `path` (an authorization request) for a signed-in browser,
/// allowing on the consent page when asked; returns the final `Location`.
pub async fn authorize(c: &reqwest::Client, s: &TestServer, path: &str) -> String {
    let r = c.get(s.at(path)).send().await.unwrap();
    if r.status() == StatusCode::OK {
        let page = r.text().await.unwrap();
        let request = page
            .split("name=\"request\" value=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .unwrap_or_else(|| panic!("no consent form: {page}"))
            .replace("&amp;", "&");
        let r = c
            .post(s.at("/oidc/consent"))
            .form(&[("request", request.as_str()), ("decision", "allow")])
            .send()
            .await
            .unwrap();
        return location(&r);
    }
    location(&r)
}

pub fn location(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{r:?}");
    r.headers()["location"].to_str().unwrap().to_string()
}

/// The value of `name` in the query of `url`.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A code for `rp` (PKCE, all scopes).
pub async fn code(c: &reqwest::Client, s: &TestServer) -> String {
    let to = authorize(
        c,
        s,
        &auth_query(
            "rp",
            REDIRECT,
            &format!("&scope=openid+profile+offline_access{}", pkce()),
        ),
    )
    .await;
    param(&to, "code").unwrap_or_else(|| panic!("no code in {to}"))
}

/// The token endpoint's answer to `form`, as `rp`.
pub async fn token(s: &TestServer, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let r = client()
        .post(s.at("/oidc/token"))
        .basic_auth("rp", Some(super::SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

pub async fn redeem(s: &TestServer, code: &str) -> (StatusCode, serde_json::Value) {
    token(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn userinfo(s: &TestServer, access: &str) -> StatusCode {
    client()
        .get(s.at("/oidc/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_not_registered_is_a_page_and_never_a_redirect() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    for uri in [
        "http://127.0.0.1:9/cb/",
        "http://127.0.0.1:9/cbx",
        "http://127.0.0.1:9/c%62",
        "http://127.0.0.1:9/cb?x=1",
        "http://127.0.0.1:9/cb#f",
        "https://127.0.0.1:9/cb",
        "http://127.0.0.1.evil.test:9/cb",
        "http://evil.test/cb",
        "//evil.test/cb",
        "",
    ] {
        let r = c
            .get(s.at(&auth_query("rp", uri, "&scope=openid")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.headers().get("location").is_none(), "{uri} redirected");
        assert!(
            r.text().await.unwrap().contains("has not registered"),
            "{uri}"
        );
    }
    let r = c
        .get(s.at(&auth_query("nobody", REDIRECT, "&scope=openid")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_go_back_as_errors_with_state_and_iss() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    for (extra, error) in [
        ("&scope=openid+admin", "invalid_scope"),
        ("&scope=profile", "invalid_scope"),
        (
            "&scope=openid&code_challenge=abc&code_challenge_method=plain",
            "invalid_request",
        ),
        ("&scope=openid&prompt=none+consent", "invalid_request"),
    ] {
        let to = location(
            &c.get(s.at(&auth_query("rp", REDIRECT, extra)))
                .send()
                .await
                .unwrap(),
        );
        assert!(to.starts_with(REDIRECT), "{to}");
        assert_eq!(param(&to, "error").as_deref(), Some(error), "{extra}: {to}");
        assert_eq!(param(&to, "state").as_deref(), Some("st"));
        assert_eq!(param(&to, "iss").as_deref(), Some(s.url.as_str()));
        assert_eq!(param(&to, "code"), None);
    }
    let implicit = format!(
        "/oidc/authorize?client_id=rp&redirect_uri={}&response_type=id_token+token&state=st&scope=openid",
        enc(REDIRECT)
    );
    let to = location(&c.get(s.at(&implicit)).send().await.unwrap());
    assert_eq!(
        param(&to, "error").as_deref(),
        Some("unsupported_response_type")
    );
    // A parameter sent twice makes the request unreadable: a page.
    let twice = c
        .get(s.at(&auth_query(
            "rp",
            REDIRECT,
            "&scope=openid&response_type=token",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    assert!(twice.headers().get("location").is_none());
    // A public client must use PKCE.
    let spa = "http://127.0.0.1:9/spa";
    let to = location(
        &c.get(s.at(&auth_query("spa", spa, "&scope=openid")))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(param(&to, "error").as_deref(), Some("invalid_request"));
    // Oversized: an error, never a code.
    let long = format!("&scope=openid&nonce={}", "n".repeat(600));
    let to = location(
        &c.get(s.at(&auth_query("rp", REDIRECT, &long)))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(param(&to, "error").as_deref(), Some("invalid_request"));
    // prompt=none without a session: login_required, to the app.
    let to = location(
        &client()
            .get(s.at(&auth_query("rp", REDIRECT, "&scope=openid&prompt=none")))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(param(&to, "error").as_deref(), Some("login_required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pkce_verifier_and_the_redirect_uri_must_match_the_code() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let code = code(&c, &s).await;
    for form in [
        vec![(
            "code_verifier",
            "the-wrong-verifier-of-more-than-forty-three-characters-xx",
        )],
        vec![],
        vec![
            ("code_verifier", VERIFIER),
            ("redirect_uri", "http://127.0.0.1:9/cb/"),
        ],
    ] {
        let mut f = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        if !form.iter().any(|(k, _)| *k == "redirect_uri") {
            f.push(("redirect_uri", REDIRECT));
        }
        f.extend(form);
        let (status, body) = token(&s, &f).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert!(body.get("access_token").is_none());
    }
    // The code is still unspent: the right verifier redeems it.
    let (status, body) = redeem(&s, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let code = code(&c, &s).await;
    let (status, first) = redeem(&s, &code).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access).await, StatusCode::OK);
    let (status, again) = redeem(&s, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    assert_eq!(userinfo(&s, access).await, StatusCode::UNAUTHORIZED);
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, _) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the replay revoked the refresh token too"
    );
    // Another client cannot redeem a code, even with the right verifier.
    let other = code_for_spa_from_rp(&c, &s).await;
    assert_eq!(other["error"], "invalid_grant", "{other}");
}

/// `rp`'s code presented by the public client `spa`.
async fn code_for_spa_from_rp(c: &reqwest::Client, s: &TestServer) -> serde_json::Value {
    let code = code(c, s).await;
    client()
        .post(s.at("/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_revokes_its_whole_grant() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let (_, first) = redeem(&s, &code(&c, &s).await).await;
    let old = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access).await, StatusCode::OK);
    let (status, reused) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", new)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the rotated token died with its grant"
    );
    assert_eq!(userinfo(&s, access).await, StatusCode::UNAUTHORIZED);
    let kinds = audit_kinds(&c, &s).await;
    assert!(
        kinds.iter().any(|k| k == "oidc.refresh_reused"),
        "{kinds:?}"
    );
}

pub async fn audit_kinds(c: &reqwest::Client, s: &TestServer) -> Vec<String> {
    let v = crate::api::get_json(c, s, "/api/v1/audit?limit=200").await;
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_refused_and_banned_like_a_password() {
    let s = super::provider(
        REDIRECT,
        None,
        "[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    )
    .await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = client()
            .post(s.at("/oidc/token"))
            .basic_auth("rp", Some("not-the-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::UNAUTHORIZED {
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client");
        }
    }
    assert_eq!(
        &statuses[..3],
        &[StatusCode::UNAUTHORIZED; 3],
        "{statuses:?}"
    );
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Banned: the right secret is refused too until the ban ends.
    let r = client()
        .post(s.at("/oidc/token"))
        .basic_auth("rp", Some(super::SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_or_tampered_id_token_hint_is_refused() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let (_, t) = redeem(&s, &code(&c, &s).await).await;
    let id_token = t["id_token"].as_str().unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let forged = B64.encode(claims.to_string());
    let none = format!("{}.{forged}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#));
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    for hint in [none, tampered, "x.y.z".to_string()] {
        let r = c
            .get(s.at(&format!("/oidc/logout?id_token_hint={}", enc(&hint))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{hint}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "signed out by a forged hint"
        );
    }
    // The genuine hint signs the browser out and goes back to the app.
    let back = format!("{REDIRECT}/bye");
    let r = c
        .get(s.at(&format!(
            "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=z",
            enc(&back)
        )))
        .send()
        .await
        .unwrap();
    let to = location(&r);
    assert!(to.starts_with(&back) && to.contains("state=z"), "{to}");
    let r = c.get(s.at("/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "still signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_only_for_its_subjects() {
    let s = super::provider(
        REDIRECT,
        None,
        "[[oidc.clients]]\nid = \"ops\"\npublic = true\nredirect_uris = [\"http://127.0.0.1:9/ops\"]\n\
         subjects = [\"group:ops\"]\nconsent = \"implicit\"\n",
    )
    .await;
    let c = alice(&s).await;
    let r = c
        .get(s.at(&auth_query(
            "ops",
            "http://127.0.0.1:9/ops",
            &format!("&scope=openid{}", pkce()),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("may not use"));
}
