//! Forms on another origin (a second local port) that post to gatehouse's
//! sign-in, sign-out, revoke and second-factor endpoints are refused, and so is a form in
//! a sandboxed document, which sends `Origin: null`. The same endpoints
//! work from gatehouse's own pages (the other scenarios).

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::{Chrome, serve, session_cookie, sign_in};
use crate::harness::*;

/// A page with one form that posts `fields` to `action`.
fn form_page(action: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=hidden name=\"{k}\" value=\"{v}\">"))
        .collect();
    format!(
        "<!doctype html><title>elsewhere</title>\
         <form method=post action=\"{action}\">{inputs}<button id=go>Win a prize</button></form>"
    )
}

/// The other site: each path is a form aimed at gatehouse at `gate`.
fn other_site(gate: String) -> Router {
    let at = move |p: &str| format!("http://{gate}{p}");
    let login = form_page(
        &at("/login"),
        &[("username", "alice"), ("password", ALICE_PW), ("rd", "/")],
    );
    let logout = form_page(&at("/logout"), &[]);
    let revoke = form_page(&at("/sessions/revoke-others"), &[]);
    let enroll = form_page(&at("/account/security/totp"), &[]);
    let codes = form_page(&at("/account/security/recovery"), &[]);
    let sandboxed = logout.clone();
    Router::new()
        .route("/login", get(move || async move { Html(login) }))
        .route("/logout", get(move || async move { Html(logout) }))
        .route("/revoke", get(move || async move { Html(revoke) }))
        .route("/enroll", get(move || async move { Html(enroll) }))
        .route("/codes", get(move || async move { Html(codes) }))
        .route(
            "/sandboxed",
            get(move || async move {
                // An opaque origin, so its form posts say `Origin: null`.
                // Scripts stay allowed only so that the test can drive it.
                let mut r: Response = Html(sandboxed).into_response();
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("sandbox allow-forms allow-scripts"),
                );
                r
            }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_on_other_origins_are_refused() {
    let Some(chrome) = Chrome::launch("forms_on_other_origins_are_refused").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;
    let other = serve(other_site(s.addr.to_string())).await;
    let elsewhere = |p: &str| format!("http://{other}{p}");
    let mut tab = chrome.tab().await;
    tab.expect_problem("status of 403");
    // Chromium notes each time `SameSite=Lax` keeps the cookie off a
    // request that a cross-site document started: the protection at work.
    tab.expect_problem("ExcludeSameSiteLax");

    // Login CSRF: a correct password posted from another origin signs no
    // one in.
    tab.goto(&elsewhere("/login")).await;
    tab.click_and_wait("#go").await;
    assert_eq!(tab.status(), Some(403));
    assert!(tab.text().await.contains("cross-site request refused"));
    assert!(session_cookie(&tab).await.is_none());
    assert_eq!(tab.text_of("h1").await.as_deref(), Some("Request refused"));
    tab.check_page("cross-site-login-refused").await;

    // Signed in for real; then other origins try to sign out and revoke.
    tab.goto(&s.at("/login")).await;
    sign_in(&tab, "alice", ALICE_PW, false).await;
    let cookie = session_cookie(&tab).await.expect("signed in").value;
    for (page, name) in [
        ("/logout", "logout"),
        ("/revoke", "revoke-others"),
        ("/enroll", "totp-enroll"),
        ("/codes", "recovery-codes"),
        ("/sandboxed", "sandboxed-logout"),
    ] {
        tab.goto(&elsewhere(page)).await;
        tab.click_and_wait("#go").await;
        assert_eq!(tab.status(), Some(403), "{page}");
        assert!(
            tab.text().await.contains("cross-site request refused"),
            "{page}"
        );
        tab.screenshot(&format!("cross-site-{name}-refused")).await;
        // Still signed in, with the same session.
        tab.goto(&s.at("/sessions")).await;
        assert_eq!(
            tab.url().await,
            s.at("/sessions"),
            "{page} signed the browser out"
        );
        assert_eq!(
            session_cookie(&tab).await.map(|c| c.value),
            Some(cookie.clone())
        );
    }
    // No enrollment was started for her from the other site.
    let mfa: serde_json::Value = reqwest::Client::new()
        .get(s.at("/api/v1/mfa"))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mfa["totp_enrollment_started"], false, "{mfa}");
    tab.assert_clean("after the cross-site forms");
}

/// The watcher that fails every scenario on a console error or a policy
/// violation does see them: a page that breaks its own policy and loads a
/// missing image is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_watcher_reports_violations() {
    let Some(chrome) = Chrome::launch("the_browser_watcher_reports_violations").await else {
        return;
    };
    let page = "<!doctype html><title>broken</title><style>body{color:red}</style>\
                <img src=/missing.png alt=''><p>broken page</p>";
    let site = serve(
        Router::new()
            .route(
                "/",
                get(move || async move {
                    let mut r: Response = Html(page).into_response();
                    r.headers_mut().insert(
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static("default-src 'none'; img-src 'self'"),
                    );
                    r
                }),
            )
            .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT })),
    )
    .await;
    let tab = chrome.tab().await;
    tab.goto(&format!("http://{site}/")).await;
    let problems = tab.unexpected_problems().join("\n");
    assert!(
        problems.contains("ContentSecurityPolicyIssue"),
        "no policy violation seen:\n{problems}"
    );
    assert!(
        problems.contains("missing.png"),
        "no failed load seen:\n{problems}"
    );
}
