//! Hostile input against the real server, one file per attack surface.
//! Every answer is a clear 4xx with a short JSON or HTML reason, nothing panics (health stays 200 after each
//! attempt), nothing leaks (no internal error text, no token echoed), and no
//! redirect ever leaves the site.

mod guessing;
mod input;
mod redirects;
mod tokens;
mod users;

pub use std::time::Duration;

pub use reqwest::StatusCode;
pub use serde_json::Value;

pub use crate::harness::*;

/// The status code of a raw HTTP/1.1 answer.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Text that must never appear in an answer.
pub const LEAKS: &[&str] = &[
    "panicked",
    "RUST_BACKTRACE",
    "src/",
    "Failed to deserialize",
    "Failed to parse",
    "Failed to buffer",
    "password_hash",
    "argon2",
    "redb",
];

pub fn assert_no_leak(body: &str, secrets: &[&str]) {
    for l in LEAKS {
        assert!(!body.contains(l), "{l:?} in {body:?}");
    }
    for s in secrets {
        assert!(!body.contains(s), "secret echoed in {body:?}");
    }
}

/// The server is still up and healthy.
pub async fn still_up(s: &TestServer) {
    let r = client().get(s.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A client without a cookie jar: the test sets `Cookie` itself.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn verify_with(s: &TestServer, cookie: &str) -> StatusCode {
    bare()
        .get(s.at("/auth/verify"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

pub async fn login_token(s: &TestServer, user: &str, pw: &str) -> String {
    let r = login(&bare(), s, user, pw, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    token_of(&r).expect("a session cookie")
}
