//! Every page and form of gatehouse in a real browser (headless Chromium),
//! against a real server on port 0: what an HTTP client cannot see, such as
//! the `Origin` a browser sends, the page's policy, cookie attributes and
//! redirects after a form post.
//!
//! Each scenario saves screenshots under `target/screenshots/` and fails on
//! any console error or policy violation it did not provoke on purpose.

mod apps;
mod chrome;
mod cross_site;
mod factors;
mod oidc;
mod passkey_support;
mod proxied;
mod sessions;
mod signin;
mod tls;
mod tokens;

use std::net::SocketAddr;

use axum::Router;

pub use chrome::{Chrome, Tab};

/// Serves `router` on a new loopback port for the rest of the test.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The app behind the proxies: its page names the user gatehouse sent
/// (`#user`) and the cookies it received (`#cookies`).
pub async fn notes_app() -> SocketAddr {
    use axum::http::HeaderMap;
    use axum::response::Html;
    use axum::routing::get;
    serve(Router::new().fallback(get(|h: HeaderMap| async move {
        let header = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let user = header("remote-user").unwrap_or_else(|| "-".into());
        let cookies = header("cookie").unwrap_or_default();
        Html(format!(
            "<!doctype html><title>Notes</title><link rel=icon href=data:,>\
             <h1 id=app>Notes app</h1><p id=user>{user}</p><p id=cookies>{cookies}</p>"
        ))
    })))
    .await
}

/// Signs in through the form on the page at hand.
pub async fn sign_in(tab: &Tab, user: &str, password: &str, remember: bool) {
    tab.fill("#username", user).await;
    tab.fill("#password", password).await;
    tab.set_checked("#remember_me", remember).await;
    tab.click_and_wait("form[action='/login'] button[type=submit]")
        .await;
}

/// The browser's session cookie, if it holds one.
pub async fn session_cookie(
    tab: &Tab,
) -> Option<chromiumoxide::cdp::browser_protocol::network::Cookie> {
    tab.cookies()
        .await
        .into_iter()
        .find(|c| c.name.ends_with("gatehouse_session"))
}
