//! The `/sessions` page: list the sessions, sign out another one, sign out
//! all others (through the confirmation form), sign out.

use reqwest::StatusCode;

use super::{Chrome, session_cookie, sign_in};
use crate::harness::*;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// A client signed in as alice with user agent `ua`.
async fn other_device(s: &TestServer, ua: &str) -> reqwest::Client {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(ua)
        .build()
        .unwrap();
    let r = login(&c, s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    c
}

async fn signed_in(c: &reqwest::Client, s: &TestServer) -> bool {
    c.get(s.at("/auth/verify")).send().await.unwrap().status() == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_page_lists_and_signs_out() {
    let Some(chrome) = Chrome::launch("the_sessions_page_lists_and_signs_out").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;
    let firefox = other_device(&s, FIREFOX_LINUX).await;
    let iphone = other_device(&s, SAFARI_IPHONE).await;

    let tab = chrome.tab().await;
    // Anonymous: the page sends the browser to sign in, and back after.
    tab.goto(&s.at("/sessions")).await;
    assert!(tab.url().await.starts_with(&s.at("/login?rd=")));
    sign_in(&tab, "alice", ALICE_PW, false).await;
    assert_eq!(tab.url().await, s.at("/sessions"));

    // Three sessions, described as a person would, the current one marked.
    assert_eq!(tab.count("ul.sessions li").await, 3);
    assert_eq!(tab.count("ul.sessions .badge").await, 1);
    let text = tab.text().await;
    assert!(text.contains("Firefox on Linux"), "{text}");
    assert!(text.contains("Safari on iPhone"), "{text}");
    assert!(text.contains("Signed in just now"), "{text}");
    // The raw agent and the exact time are a hover away.
    let title = tab
        .eval(
            "[...document.querySelectorAll('.device')].find(e => e.innerText === 'Firefox on Linux').title",
        )
        .await;
    assert_eq!(title, FIREFOX_LINUX);
    let when = tab
        .eval("document.querySelector('ul.sessions time').title")
        .await;
    assert!(when.as_str().unwrap().ends_with(" UTC"), "{when}");
    tab.check_page("sessions-three").await;

    // Sign out the Firefox session from its own row.
    tab.eval(
        "[...document.querySelectorAll('ul.sessions li')].find(li => li.innerText.includes('Firefox on Linux'))\
         .querySelector('button').id = 'target'",
    )
    .await;
    tab.click_and_wait("#target").await;
    assert_eq!(tab.url().await, s.at("/sessions?notice=signed-out"));
    assert_eq!(
        tab.text_of(".notice").await.as_deref(),
        Some("That session is signed out.")
    );
    assert_eq!(tab.count("ul.sessions li").await, 2);
    assert!(
        !signed_in(&firefox, &s).await,
        "the signed-out device still passes"
    );
    assert!(signed_in(&iphone, &s).await);

    // Sign out all others: a confirmation page first, a plain form.
    tab.click_and_wait("a[href='/sessions/revoke-others']")
        .await;
    assert_eq!(tab.url().await, s.at("/sessions/revoke-others"));
    assert!(tab.text().await.contains("Sign out 1 other session?"));
    tab.check_page("sessions-confirm-others").await;
    tab.click_and_wait("form[method=post][action='/sessions/revoke-others'] button")
        .await;
    assert_eq!(tab.url().await, s.at("/sessions?notice=signed-out-others"));
    assert_eq!(tab.count("ul.sessions li").await, 1);
    assert!(!signed_in(&iphone, &s).await);
    // Nothing left to sign out but this one: no button for the others.
    assert_eq!(tab.count("a[href='/sessions/revoke-others']").await, 0);

    // The sign-out page that other sites link to (the 403 page of an app):
    // a plain form on gatehouse's own origin. Cancel keeps the session.
    tab.goto(&s.at("/logout")).await;
    assert!(tab.text().await.contains("Sign out?"));
    tab.check_page("sign-out").await;
    tab.click_and_wait("a[href='/sessions']").await;
    assert_eq!(tab.url().await, s.at("/sessions"));

    // One way to sign this session out: the button below the list (its
    // row has none).
    assert_eq!(tab.count("form[action='/logout'] button").await, 1);
    tab.click_and_wait(".actions form[action='/logout'] button")
        .await;
    assert_eq!(tab.url().await, s.at("/login"));
    assert!(session_cookie(&tab).await.is_none());
    tab.goto(&s.at("/sessions")).await;
    assert!(tab.url().await.starts_with(&s.at("/login?rd=")));
    tab.assert_clean("after signing out");
}
