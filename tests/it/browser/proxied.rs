//! The whole trip through real nginx running the shipped
//! `deploy/nginx.conf`, as a person makes it: an app URL, the sign-in page
//! on the login site, sign in, and back at the app URL (its query intact)
//! with the app's page on show.

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;

use super::{Chrome, notes_app, serve, session_cookie, sign_in};
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
    let app = notes_app().await;
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

/// The fenced block of `lang` that follows `heading` in `docs/http.md`.
fn docs_block(heading: &str, lang: &str) -> String {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/http.md")).unwrap();
    let from = docs.find(heading).expect("the heading is in docs/http.md");
    let fence = format!("```{lang}\n");
    let start = from + docs[from..].find(&fence).expect("the block") + fence.len();
    let end = start + docs[start..].find("```").unwrap();
    docs[start..end].to_string()
}

/// Directive lines only: comments and blank lines dropped, indentation kept.
fn directives(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// The `route { ... }` block of the site that `site` opens.
fn route_of<'t>(caddyfile: &'t str, site: &str) -> Vec<&'t str> {
    let lines = directives(caddyfile);
    let from = lines.iter().position(|l| l.starts_with(site)).unwrap();
    let start = from
        + lines[from..]
            .iter()
            .position(|l| l.trim() == "route {")
            .unwrap();
    let end = start + lines[start..].iter().position(|l| *l == "\t}").unwrap();
    lines[start..=end].to_vec()
}

/// The "try it locally" recipe of `docs/http.md`, as written: its
/// gatehouse.toml and its Caddyfile (only the ports and the addresses of
/// gatehouse and the app replaced), plain-http site addresses on
/// three-label `*.localhost` names, which Chromium sends to loopback. The
/// browser signs in on the login site and lands on the app, which sees the
/// user and never the session cookie. The recipe's app route is the
/// shipped file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_recipe_signs_in_through_caddy() {
    let test = "the_local_recipe_signs_in_through_caddy";
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!("SKIPPED {test}: caddy is not installed");
        return;
    };
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let toml = docs_block("### Try it locally", "toml");
    let caddyfile = docs_block("### Try it locally", "caddyfile");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Caddyfile")).unwrap();
    assert_eq!(
        route_of(&caddyfile, "http://app.gh.localhost:8000 {"),
        route_of(&shipped, "app.example.com {"),
        "the recipe's app route is not deploy/Caddyfile's"
    );

    let port = free_port();
    let (hashes_a, hashes_b) = hashes();
    assert!(toml.contains("bind = \"127.0.0.1:8080\"\n"), "{toml}");
    let config = format!(
        "{}\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{hashes_a}\"\nadmin = true\n\n\
         [[users]]\nname = \"bob\"\npassword_hash = \"{hashes_b}\"\n",
        toml.replace("bind = \"127.0.0.1:8080\"", "bind = \"127.0.0.1:0\"")
            .replace(":8000", &format!(":{port}"))
    );
    let s = TestServer::start(&config).await;
    let app = serve(Router::new().fallback(get(|h: HeaderMap| async move {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        Html(format!(
            "<!doctype html><title>Notes</title><link rel=icon href=data:,>\
             <h1 id=app>Notes app</h1><p id=user>{}</p><p id=cookies>{}</p>",
            get("remote-user"),
            get("cookie")
        ))
    })))
    .await;
    let sites = caddyfile
        .replace(":8000", &format!(":{port}"))
        .replace("127.0.0.1:8080", &s.addr.to_string())
        .replace("127.0.0.1:3000", &app.to_string());
    let _caddy = Shipped::caddy_sites(&caddy, [port, port], &sites).await;

    let tab = chrome.tab().await;
    let app_url = format!("http://app.gh.localhost:{port}/notes?view=list");
    tab.goto(&app_url).await;
    assert!(
        tab.url()
            .await
            .starts_with(&format!("http://auth.gh.localhost:{port}/login?rd=")),
        "{}",
        tab.url().await
    );
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, app_url, "{}", tab.text().await);
    assert_eq!(tab.text_of("#app").await.as_deref(), Some("Notes app"));
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    // The cookie is the shared domain's, and the app never sees it.
    let cookie = session_cookie(&tab)
        .await
        .expect("the browser kept the cookie");
    assert_eq!(cookie.domain, ".gh.localhost");
    assert_eq!(tab.text_of("#cookies").await.as_deref(), Some("-"));
    tab.assert_clean("back at the app");
}
