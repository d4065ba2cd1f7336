//! The provider behind the shipped `deploy/nginx.conf` and
//! `deploy/Caddyfile` (when installed; skipped with a notice otherwise):
//! the issuer a client discovers is the login site's, and failed client
//! authentication is banned by the real client address, whatever
//! `X-Forwarded-For` the client forges.

use reqwest::StatusCode;

use crate::harness::{TestServer, client};

/// A client on 127.0.0.2: its address is not one of the trusted proxies
/// (127.0.0.1), as a real client's is not.
fn outsider() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
use crate::proxy::*;

/// `behind_proxy` with a client `rp` and a failure limit of 3.
fn config(auth_port: u16) -> String {
    format!(
        "{}\n[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n\n\
         [[oidc.clients]]\nid = \"rp\"\nsecret_hash = \"{}\"\nredirect_uris = [\"http://127.0.0.1:9/cb\"]\n",
        behind_proxy(auth_port),
        gatehouse::config::oidc::hash_secret(super::SECRET)
    )
}

/// What a client sees at the login site `site` (`http://127.0.0.1:PORT`).
async fn through(site: &str) {
    let meta: serde_json::Value = client()
        .get(format!("{site}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], site);
    assert_eq!(meta["token_endpoint"], format!("{site}/oidc/token"));
    // Guessed client credentials from one address, each with another
    // forged X-Forwarded-For and client id: the address is banned.
    let token = format!("{site}/oidc/token");
    let guess = |i: u32| {
        outsider()
            .post(&token)
            .basic_auth(format!("guess-{i}"), Some("x"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .header("x-real-ip", format!("10.0.1.{i}"))
            .header("forwarded", format!("for=10.0.2.{i}"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
    };
    for i in 0..3 {
        let r = guess(i).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    assert_eq!(
        guess(3).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The right secret from that address is refused too while the ban lasts.
    let r = outsider()
        .post(&token)
        .basic_auth("rp", Some(super::SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_nginx_the_issuer_holds_and_forged_addresses_are_banned() {
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!("SKIPPED behind_the_shipped_nginx...: nginx is not installed");
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&config(auth_port)).await;
    let app = echo_app().await;
    let _nginx = Shipped::nginx(&nginx, auth_port, app_port, s.addr, app).await;
    through(&format!("http://127.0.0.1:{auth_port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_caddy_the_issuer_holds_and_forged_addresses_are_banned() {
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!("SKIPPED behind_the_shipped_caddy...: caddy is not installed");
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&config(auth_port)).await;
    let app = echo_app().await;
    let _caddy = Shipped::caddy(&caddy, auth_port, app_port, s.addr, app).await;
    through(&format!("http://127.0.0.1:{auth_port}")).await;
}
