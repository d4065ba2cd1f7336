//! The provider's flows over HTTP: consent remembered and withdrawn,
//! `prompt=login`, the step-up for a two-factor client, introspection and
//! revocation, CORS for public clients, and clients changed by a reload.

use reqwest::StatusCode;

use super::hostile::{
    REDIRECT, alice, auth_query, authorize, code, location, param, pkce, redeem, token,
};
use crate::harness::client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_asked_once_remembered_and_asked_again_after_a_disconnect() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let path = auth_query("rp", REDIRECT, &format!("&scope=openid+profile{}", pkce()));
    let first = c.get(s.at(&path)).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK, "the consent page first");
    let csp = first.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9"),
        "{csp}"
    );
    let to = authorize(&c, &s, &path).await;
    assert!(param(&to, "code").is_some(), "{to}");
    // Remembered: the same scopes go straight back with a code.
    let again = location(&c.get(s.at(&path)).send().await.unwrap());
    assert!(param(&again, "code").is_some(), "{again}");
    // A wider request asks again.
    let wider = auth_query(
        "rp",
        REDIRECT,
        &format!("&scope=openid+profile+email{}", pkce()),
    );
    assert_eq!(
        c.get(s.at(&wider)).send().await.unwrap().status(),
        StatusCode::OK
    );
    // prompt=none for an unconsented scope: consent_required, to the app.
    let none = location(
        &c.get(s.at(&format!("{wider}&prompt=none")))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(param(&none, "error").as_deref(), Some("consent_required"));
    // The account page lists the app; disconnecting withdraws the consent.
    let page = c
        .get(s.at("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Connected apps") && page.contains("Test RP"),
        "{page}"
    );
    let r = c
        .post(s.at("/account/apps/disconnect"))
        .form(&[("client", "rp")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        c.get(s.at(&path)).send().await.unwrap().status(),
        StatusCode::OK,
        "asked again"
    );
    let kinds = super::hostile::audit_kinds(&c, &s).await;
    assert!(
        kinds.iter().filter(|k| *k == "oidc.consent").count() >= 2,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_consent_goes_back_as_access_denied() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let path = auth_query("rp", REDIRECT, "&scope=openid");
    let page = c
        .get(s.at(&path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let request = page
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let r = c
        .post(s.at("/oidc/consent"))
        .form(&[("request", request.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    let to = location(&r);
    assert_eq!(param(&to, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&to, "state").as_deref(), Some("st"));
    assert_eq!(param(&to, "code"), None);
    // The consent form is a page's form: another site cannot post it.
    let r = c
        .post(s.at("/oidc/consent"))
        .header("origin", "https://evil.example")
        .form(&[("request", request.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_login_and_a_two_factor_client_send_the_browser_through_sign_in() {
    let s = super::provider(
        REDIRECT,
        None,
        "[[oidc.clients]]\nid = \"strict\"\npublic = true\nredirect_uris = [\"http://127.0.0.1:9/strict\"]\n\
         policy = \"two_factor\"\nconsent = \"implicit\"\n",
    )
    .await;
    let c = alice(&s).await;
    let path = auth_query(
        "rp",
        REDIRECT,
        &format!("&scope=openid&prompt=login{}", pkce()),
    );
    let to = location(&c.get(s.at(&path)).send().await.unwrap());
    assert!(to.starts_with("/login?rd="), "{to}");
    let rd = param(&format!("http://x{to}"), "rd").unwrap();
    assert!(
        !rd.contains("prompt=login") && rd.contains("auth_after="),
        "{rd}"
    );
    // An anonymous browser is sent to sign in, with the login hint.
    let anon = location(
        &client()
            .get(s.at(&format!(
                "{}&login_hint=bob",
                auth_query("rp", REDIRECT, "&scope=openid")
            )))
            .send()
            .await
            .unwrap(),
    );
    assert!(anon.contains("login_hint=bob"), "{anon}");
    let form = client()
        .get(s.at(&anon))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("value=\"bob\""), "the name is filled in");
    // A password-only session goes to the second step for a two-factor client.
    let strict = auth_query(
        "strict",
        "http://127.0.0.1:9/strict",
        &format!("&scope=openid{}", pkce()),
    );
    let to = location(&c.get(s.at(&strict)).send().await.unwrap());
    assert!(to.starts_with("/login/second-factor?rd="), "{to}");
    let none = location(
        &c.get(s.at(&format!("{strict}&prompt=none")))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(
        param(&none, "error").as_deref(),
        Some("interaction_required")
    );
    // acr_values asks for the same of any client.
    let acr = format!(
        "{}&acr_values=urn%3Agatehouse%3A2fa",
        auth_query("rp", REDIRECT, &format!("&scope=openid{}", pkce()))
    );
    let to = location(&c.get(s.at(&acr)).send().await.unwrap());
    assert!(to.starts_with("/login/second-factor?rd="), "{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation_answer_only_the_owning_client() {
    let s = super::provider(
        REDIRECT,
        None,
        &format!(
            "[[oidc.clients]]\nid = \"other\"\nsecret_hash = \"{}\"\nredirect_uris = [\"http://127.0.0.1:9/o\"]\n",
            gatehouse::config::oidc::hash_secret("other-secret")
        ),
    )
    .await;
    let c = alice(&s).await;
    let (_, t) = redeem(&s, &code(&c, &s).await).await;
    let access = t["access_token"].as_str().unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();
    let ask = |who: &'static str, secret: &'static str, tok: String| {
        let s = s.at("/oidc/introspect");
        async move {
            let r = client()
                .post(s)
                .basic_auth(who, Some(secret))
                .form(&[("token", tok.as_str())])
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, mine) = ask("rp", super::SECRET, access.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["active"], true);
    assert_eq!(mine["client_id"], "rp");
    assert_eq!(mine["username"], "alice");
    let (_, theirs) = ask("other", "other-secret", access.to_string()).await;
    assert_eq!(theirs, serde_json::json!({"active": false}));
    // A public client may not introspect.
    let r = client()
        .post(s.at("/oidc/introspect"))
        .form(&[("client_id", "spa"), ("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Another client's revocation changes nothing; the owner's ends the grant.
    let revoke = |who: &'static str, secret: &'static str, tok: String| {
        let s = s.at("/oidc/revoke");
        async move {
            client()
                .post(s)
                .basic_auth(who, Some(secret))
                .form(&[
                    ("token", tok.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        revoke("other", "other-secret", refresh.to_string()).await,
        StatusCode::OK
    );
    assert_eq!(
        ask("rp", super::SECRET, access.to_string()).await.1["active"],
        true
    );
    assert_eq!(
        revoke("rp", super::SECRET, refresh.to_string()).await,
        StatusCode::OK
    );
    assert_eq!(
        ask("rp", super::SECRET, access.to_string()).await.1["active"],
        false
    );
    let (status, _) = token(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_granted_only_to_public_clients_origins() {
    let s = super::provider(REDIRECT, None, "").await;
    let origin_of = |o: &str| {
        let s = s.at("/.well-known/openid-configuration");
        let o = o.to_string();
        async move {
            let r = client().get(s).header("origin", o).send().await.unwrap();
            r.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    // `spa` (public) returns to http://127.0.0.1:9; `rp` is confidential.
    assert_eq!(
        origin_of("http://127.0.0.1:9").await.as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert_eq!(origin_of("https://evil.example").await, None);
    let preflight = async |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, s.at("/oidc/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap()
    };
    let pre = preflight("https://evil.example").await;
    assert_eq!(pre.status(), StatusCode::FORBIDDEN);
    let pre = preflight("http://127.0.0.1:9").await;
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert!(
        pre.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_clients_and_a_bad_file_keeps_them() {
    let s = super::provider(REDIRECT, None, "").await;
    let c = alice(&s).await;
    let path = s.dir.join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // A broken client: the reload fails and the old clients stay.
    std::fs::write(
        &path,
        text.replace(
            "redirect_uris = [\"http://127.0.0.1:9/spa\"]",
            "redirect_uris = []",
        ),
    )
    .unwrap();
    assert!(s.reloader.reload().await.is_err());
    let spa = auth_query(
        "spa",
        "http://127.0.0.1:9/spa",
        &format!("&scope=openid{}", pkce()),
    );
    let to = location(&c.get(s.at(&spa)).send().await.unwrap());
    assert!(param(&to, "code").is_some(), "{to}");
    // A good file without `spa`: it is gone at once.
    let without = text.replace("id = \"spa\"", "id = \"spa2\"");
    std::fs::write(&path, without).unwrap();
    s.reloader.reload().await.unwrap();
    let r = c.get(s.at(&spa)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_from_another_device_tells_its_apps() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let addr = crate::browser::serve(app).await;
    let s = super::provider(REDIRECT, Some(&format!("http://{addr}/backchannel")), "").await;
    let phone = alice(&s).await;
    let (status, t) = redeem(&s, &code(&phone, &s).await).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let me = crate::api::get_json(&phone, &s, "/api/v1/session").await;
    let id = me["session"]["id"].as_str().unwrap().to_string();
    // From a laptop, alice signs the phone out.
    let laptop = alice(&s).await;
    let r = laptop
        .delete(s.at(&format!("/api/v1/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{r:?}");
    let mut waited = 0;
    while got.lock().unwrap().is_empty() && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].starts_with("logout_token="), "{}", bodies[0]);
    let (status, _) = token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the grant died with the session"
    );
}
