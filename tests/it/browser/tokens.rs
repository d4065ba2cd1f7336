//! The `/tokens` page: create a token (shown once), use it from a script,
//! see it listed, revoke it.

use reqwest::StatusCode;

use super::{Chrome, sign_in};
use crate::harness::*;

/// `/auth/verify` as a script with `Authorization: Bearer token`.
async fn bearer_passes(s: &TestServer, token: &str) -> bool {
    reqwest::Client::new()
        .get(s.at("/auth/verify"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_page_creates_shows_once_and_revokes() {
    let Some(chrome) = Chrome::launch("the_tokens_page_creates_shows_once_and_revokes").await
    else {
        return;
    };
    let s = TestServer::start(&config_text("", "[tokens]\nmax_days = 120\n")).await;
    let mut tab = chrome.tab().await;
    // The refused form below answers 400, which Chromium reports.
    tab.expect_problem("status of 400");
    // Anonymous: sign in first, then back here.
    tab.goto(&s.at("/tokens")).await;
    assert!(tab.url().await.starts_with(&s.at("/login?rd=")));
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, s.at("/tokens"));
    assert!(tab.text().await.contains("You have no tokens yet."));
    // The form suggests the default lifetime, within the configured bound.
    assert_eq!(
        tab.eval("document.querySelector('#days').value").await,
        "90"
    );
    assert_eq!(tab.eval("document.querySelector('#days').max").await, "120");
    tab.check_page("tokens-empty").await;

    // A bad scope is refused with the field named; nothing is created.
    tab.fill("#name", "deploy").await;
    tab.fill("#domains", "not a/host").await;
    tab.click_and_wait("form[action='/tokens'] button").await;
    assert_eq!(tab.status(), Some(400));
    assert_eq!(
        tab.text_of(".error").await.as_deref(),
        Some("Only for these sites: a host name or *.domain.")
    );
    assert_eq!(tab.count("ul.sessions li").await, 0);

    // Created: the token is on this answer, once.
    tab.fill("#name", "CI deploy").await;
    tab.fill("#domains", "git.example.com").await;
    tab.click_and_wait("form[action='/tokens'] button").await;
    assert_eq!(tab.status(), Some(200));
    let token = tab.text_of("#new-token").await.unwrap();
    assert!(
        token.starts_with("gatehouse_pat_") && token.len() == 57,
        "{token}"
    );
    assert!(tab.text().await.contains("it will not be shown again"));
    assert_eq!(tab.count("ul.sessions li").await, 1);
    tab.check_page("tokens-created").await;
    // The scope holds: with no host known (no trusted proxy here), a scoped
    // token reaches nothing; an unscoped one from the same form works.
    assert!(!bearer_passes(&s, &token).await);
    tab.goto(&s.at("/tokens")).await;
    tab.fill("#name", "laptop git").await;
    tab.click_and_wait("form[action='/tokens'] button").await;
    let laptop = tab.text_of("#new-token").await.unwrap();
    assert!(bearer_passes(&s, &laptop).await);

    // Listed without the secret; reloading the list never shows it again.
    tab.goto(&s.at("/tokens")).await;
    assert_eq!(tab.count("#new-token").await, 0);
    let text = tab.text().await;
    assert!(!text.contains(&token[14..]) && !text.contains(&laptop[14..]));
    assert!(
        text.contains("CI deploy") && text.contains("only git.example.com"),
        "{text}"
    );
    assert!(
        text.contains("laptop git") && text.contains("every app"),
        "{text}"
    );
    assert!(
        text.contains(&laptop[..20]),
        "the prefix tells tokens apart"
    );
    tab.check_page("tokens-list").await;

    // Revoke the laptop token from its row: it stops at once.
    tab.eval(
        "[...document.querySelectorAll('ul.sessions li')].find(li => li.innerText.includes('laptop git'))\
         .querySelector('button').id = 'target'",
    )
    .await;
    tab.click_and_wait("#target").await;
    assert_eq!(tab.url().await, s.at("/tokens?notice=revoked"));
    assert_eq!(
        tab.text_of(".notice").await.as_deref(),
        Some("That token is revoked: it no longer works anywhere.")
    );
    assert_eq!(tab.count("ul.sessions li").await, 1);
    assert!(!bearer_passes(&s, &laptop).await);
    tab.assert_clean("after revoking a token");
}
