//! The whole trip through real nginx running the shipped
//! `deploy/nginx.conf`, as a person makes it: an app URL, the sign-in page
//! on the login site, sign in, and back at the app URL (its query intact)
//! with the app's page on show.

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;

use super::{Chrome, serve, session_cookie, sign_in};
use crate::harness::*;
use crate::proxy::{Shipped, behind_proxy, binary, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_nginx_lands_back_on_the_app() {
    let test = "signing_in_through_nginx_lands_back_on_the_app";
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!("SKIPPED {test}: nginx is not installed");
        return;
    };
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = serve(Router::new().fallback(get(|h: HeaderMap| async move {
        let user = h
            .get("remote-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let cookies = h
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Html(format!(
            "<!doctype html><title>Notes</title><link rel=icon href=data:,>\
             <h1 id=app>Notes app</h1><p id=user>{user}</p><p id=cookies>{cookies}</p>"
        ))
    })))
    .await;
    let _nginx = Shipped::nginx(&nginx, auth_port, app_port, s.addr, app).await;

    let login_site = format!("http://127.0.0.1:{auth_port}");
    let app_url = format!("http://127.0.0.1:{app_port}/notes/today?view=list&sort=new");
    let tab = chrome.tab().await;
    tab.goto(&app_url).await;
    assert!(
        tab.url()
            .await
            .starts_with(&format!("{login_site}/login?rd=")),
        "{}",
        tab.url().await
    );
    assert!(
        tab.text()
            .await
            .contains(&format!("to continue to 127.0.0.1:{app_port}"))
    );
    tab.check_page("login-from-app").await;

    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, app_url);
    assert_eq!(tab.text_of("#app").await.as_deref(), Some("Notes app"));
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    // The browser holds the session cookie; the app never sees it.
    assert!(session_cookie(&tab).await.is_some());
    let cookies = tab.text_of("#cookies").await.unwrap_or_default();
    assert!(!cookies.contains("gatehouse_session"), "{cookies}");
    tab.screenshot("app-after-sign-in").await;
    tab.assert_clean("back at the app");
}

/// The 403 page as a person meets it through real Caddy running the
/// shipped `deploy/Caddyfile` (Caddy passes gatehouse's answer on): an app
/// area an access rule refuses, shown on the app's origin with gatehouse's
/// stylesheet, and its sign-out link leading to gatehouse's own sign-out
/// page, which signs the browser out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_user_sees_the_403_page_and_can_sign_out() {
    let test = "a_refused_user_sees_the_403_page_and_can_sign_out";
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!("SKIPPED {test}: caddy is not installed");
        return;
    };
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = serve(Router::new().fallback(get(|| async {
        Html("<!doctype html><title>Notes</title><link rel=icon href=data:,><h1 id=app>Notes app</h1>")
    })))
    .await;
    let _caddy = Shipped::caddy(&caddy, auth_port, app_port, s.addr, app).await;

    let tab = chrome.tab().await;
    let app_url = format!("http://127.0.0.1:{app_port}/notes");
    tab.goto(&app_url).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, app_url);

    // The admin area is for the group admin: bob is refused, by name.
    let mut tab = tab;
    tab.expect_problem("status of 403");
    tab.goto(&format!("http://127.0.0.1:{app_port}/admin"))
        .await;
    assert_eq!(tab.status(), Some(403));
    let text = tab.text().await;
    assert!(
        text.contains("No access") && text.contains("signed in as bob"),
        "{text}"
    );
    assert!(text.contains("may not open /admin on 127.0.0.1."), "{text}");
    // Styled from gatehouse's origin under the page's own policy.
    let styled = tab
        .eval("getComputedStyle(document.querySelector('.card')).borderRadius")
        .await;
    assert_ne!(styled, "0px", "the stylesheet did not load");
    tab.check_page("forbidden").await;

    // Sign out from there: gatehouse's page, then the form on its origin.
    tab.click_and_wait("a.button").await;
    assert_eq!(
        tab.url().await,
        format!("http://127.0.0.1:{auth_port}/logout")
    );
    tab.click_and_wait("form[action='/logout'] button").await;
    assert!(
        tab.url()
            .await
            .starts_with(&format!("http://127.0.0.1:{auth_port}/login"))
    );
    assert!(session_cookie(&tab).await.is_none());
    tab.assert_clean("after signing out from the 403 page");
}
