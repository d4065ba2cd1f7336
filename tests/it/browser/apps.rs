//! Signing in on an app's own host, through the built-in proxy (`[[apps]]`
//! with `host`, no `public_origin`): the sign-in page, its stylesheet, its
//! form, the sessions page and the 403 page all stay under the reserved
//! prefix `/.gatehouse`, and the browser ends at the app URL it asked for.
//! `*.localhost` names reach loopback in Chromium without any resolver.

use super::{Chrome, notes_app, session_cookie};
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_on_an_apps_own_host_stays_under_the_reserved_prefix() {
    let test = "signing_in_on_an_apps_own_host_stays_under_the_reserved_prefix";
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let app = notes_app().await;
    let s = TestServer::start(&config_text(
        "",
        &format!(
            "[[rules]]\npaths = ['^/admin(/|$)']\npolicy = \"deny\"\n\n\
             [[apps]]\nname = \"notes\"\nhost = \"notes.localhost\"\nupstream = \"http://{app}\"\n"
        ),
    ))
    .await;
    let site = format!("http://notes.localhost:{}", s.addr.port());
    let app_url = format!("{site}/notes/today?view=list");

    let mut tab = chrome.tab().await;
    tab.goto(&app_url).await;
    let at = tab.url().await;
    assert!(
        at.starts_with(&format!("{site}/.gatehouse/login?rd=")),
        "{at}"
    );
    // The page's own stylesheet came through the prefix.
    let styled = tab
        .eval("getComputedStyle(document.querySelector('.card')).borderRadius")
        .await;
    assert_ne!(styled, "0px", "the stylesheet did not load");
    assert_eq!(tab.count("form[action='/.gatehouse/login']").await, 1);
    assert_eq!(tab.count("[href^='/login'], [action^='/login']").await, 0);
    tab.check_page("login-on-app-host").await;

    tab.fill("#username", "bob").await;
    tab.fill("#password", BOB_PW).await;
    tab.click_and_wait("form[action='/.gatehouse/login'] button[type=submit]")
        .await;
    assert_eq!(tab.url().await, app_url);
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    let cookie = session_cookie(&tab).await.expect("a session cookie");
    assert_eq!(cookie.domain, "notes.localhost");

    // gatehouse's own pages on this host: the sessions list, its links.
    tab.goto(&format!("{site}/.gatehouse/sessions")).await;
    assert!(tab.text().await.contains("bob"), "{}", tab.text().await);
    assert_eq!(
        tab.count("a[href^='/']:not([href^='/.gatehouse'])").await,
        0,
        "a link on the sessions page leaves gatehouse"
    );

    // A refused path: the 403 page, styled, signing out on this host.
    tab.expect_problem("status of 403");
    tab.goto(&format!("{site}/admin")).await;
    assert_eq!(tab.status(), Some(403));
    let styled = tab
        .eval("getComputedStyle(document.querySelector('.card')).borderRadius")
        .await;
    assert_ne!(styled, "0px", "the 403 page's stylesheet did not load");
    tab.click_and_wait("a.button").await;
    assert_eq!(tab.url().await, format!("{site}/.gatehouse/logout"));
    tab.click_and_wait("form[action='/.gatehouse/logout'] button")
        .await;
    assert!(
        tab.url()
            .await
            .starts_with(&format!("{site}/.gatehouse/login")),
        "{}",
        tab.url().await
    );
    assert!(session_cookie(&tab).await.is_none());
    tab.assert_clean("after signing out on the app's host");
}
