//! Signing in: with and without "keep me signed in" (the cookie as the
//! browser keeps it), a wrong password, and a ban.

use chromiumoxide::cdp::browser_protocol::network::CookieSameSite;

use super::{Chrome, session_cookie, sign_in};
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_and_without_keep_me_signed_in() {
    let Some(chrome) = Chrome::launch("sign_in_with_and_without_keep_me_signed_in").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;
    let tab = chrome.tab().await;

    tab.goto(&s.at("/login")).await;
    assert_eq!(tab.status(), Some(200));
    tab.check_page("login").await;

    // Without "keep me signed in": a cookie that ends with the browser.
    sign_in(&tab, "alice", ALICE_PW, false).await;
    assert_eq!(tab.url().await, s.at("/sessions"), "{}", tab.text().await);
    assert!(tab.text().await.contains("This session"));
    let c = session_cookie(&tab)
        .await
        .expect("no session cookie after sign-in");
    assert!(c.http_only, "{c:?}");
    assert_eq!(c.same_site, Some(CookieSameSite::Lax), "{c:?}");
    assert!(c.session, "a cookie that outlives the browser: {c:?}");
    assert_eq!(c.path, "/");
    assert!(!c.secure, "plain-http test server: {c:?}");
    tab.check_page("sessions").await;

    // Sign out: back at the form, the cookie gone, the session dead.
    tab.click_and_wait(".actions form[action='/logout'] button")
        .await;
    assert!(tab.url().await.starts_with(&s.at("/login")));
    assert!(session_cookie(&tab).await.is_none());

    // With it: a cookie that lasts the remember-me lifetime (30 days).
    sign_in(&tab, "alice", ALICE_PW, true).await;
    assert_eq!(tab.url().await, s.at("/sessions"));
    let c = session_cookie(&tab)
        .await
        .expect("no session cookie after sign-in");
    assert!(!c.session && c.http_only, "{c:?}");
    assert_eq!(c.same_site, Some(CookieSameSite::Lax), "{c:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let days = (c.expires - now) / 86_400.0;
    assert!((29.9..=30.1).contains(&days), "expires in {days} days");
    assert!(tab.text().await.contains("Kept signed in until"));
    tab.assert_clean("after sign-in with keep me signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_a_ban_show_their_messages() {
    let Some(chrome) = Chrome::launch("a_wrong_password_and_a_ban_show_their_messages").await
    else {
        return;
    };
    let s = TestServer::start(&config_text(
        "",
        "[regulation]\nmax_failures = 2\nwindow_secs = 600\nban_secs = 600\n",
    ))
    .await;
    let mut tab = chrome.tab().await;
    // The failed attempts answer 401 and 429 on purpose.
    tab.expect_problem("status of 401");
    tab.expect_problem("status of 429");

    tab.goto(&s.at("/login")).await;
    sign_in(&tab, "bob", "not-his-password", false).await;
    assert_eq!(tab.status(), Some(401));
    let error = tab.text_of("form .error").await;
    assert_eq!(error.as_deref(), Some("Wrong username or password."));
    // The name stays typed; the password does not.
    assert_eq!(
        tab.eval("document.querySelector('#username').value").await,
        "bob"
    );
    assert_eq!(
        tab.eval("document.querySelector('#password').value").await,
        ""
    );
    assert_eq!(
        tab.eval("document.activeElement.id").await,
        "password",
        "focus goes to the password after a failure"
    );
    assert!(session_cookie(&tab).await.is_none());
    tab.check_page("login-wrong-password").await;

    // The second failure reaches the limit; the next attempt, even with
    // the right password, meets the ban and says so.
    sign_in(&tab, "bob", "still-not-it", false).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.status(), Some(429));
    let error = tab.text_of("form .error").await.unwrap_or_default();
    assert!(error.starts_with("Too many failed attempts"), "{error}");
    assert_ne!(error, "Wrong username or password.");
    assert!(session_cookie(&tab).await.is_none());
    tab.check_page("login-banned").await;
}
