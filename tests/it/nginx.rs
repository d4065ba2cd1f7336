//! `deploy/nginx.conf` against the real server and a real nginx, when nginx
//! is installed (skipped with a notice otherwise). The test runs the
//! shipped file, with only its addresses replaced: the login redirect and
//! its return URL (a query with `&`), identity headers a client forges
//! (dashed and underscore forms), and the session cookie kept from the app.

use reqwest::StatusCode;

use crate::harness::*;
use crate::proxy::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_passes_only_gatehouse_identity() {
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!(
            "SKIPPED nginx_auth_request_passes_only_gatehouse_identity: nginx is not installed"
        );
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = echo_app().await;

    let _nginx = Shipped::nginx(&nginx, auth_port, app_port, s.addr, app).await;
    let app_url = format!("http://127.0.0.1:{app_port}/notes?a=1&b=2");

    // Anonymous: to the login page, the whole URL encoded in `rd` (an
    // unencoded `&` would cut it at `?a=1`).
    let c = client();
    // A browser asks for a page (a script gets a 401, below).
    let r = c
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.1:{auth_port}/login?rd=http%3A%2F%2F127.0.0.1%3A{app_port}%2Fnotes%3Fa%3D1%26b%3D2"
        )
    );

    // A URL too long to return to: the bare login page.
    let long = format!("http://127.0.0.1:{app_port}/{}", "x".repeat(3000));
    let r = c
        .get(&long)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        format!("http://127.0.0.1:{auth_port}/login").as_str()
    );

    // Sign in through the login site, back at the app URL; identity and
    // cookies as the app sees them.
    let (session, alice_session) = signed_in_through_proxy(&c, &s, &loc, &app_url).await;
    // Access rules, through the proxy: a public path, and an admin area.
    rules_through_proxy(
        &format!("http://127.0.0.1:{app_port}"),
        &session,
        &alice_session,
    )
    .await;
}

/// A script through the shipped nginx: `curl -H "Authorization: Bearer
/// ..."` reaches the app as its user, the app never receives the token, a
/// revoked token gets 401 with gatehouse's Basic challenge (so `curl -u`
/// and git prompt), and a browser is still sent to the login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_tokens_and_refuses_revoked_ones() {
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!("SKIPPED nginx_passes_tokens_and_refuses_revoked_ones: nginx is not installed");
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&behind_proxy(auth_port)).await;
    let app = echo_app().await;
    let _nginx = Shipped::nginx(&nginx, auth_port, app_port, s.addr, app).await;
    let app_url = format!("http://127.0.0.1:{app_port}/api/status");

    let (c, token, id) = token_for_bob(&s).await;

    // `curl -H "Authorization: Bearer ..."`, the real curl when installed.
    let fetch = |auth: Option<String>| {
        let url = app_url.clone();
        async move {
            match binary("curl", &["/usr/bin"]) {
                Some(curl) => tokio::task::spawn_blocking(move || {
                    let mut cmd = std::process::Command::new(curl);
                    cmd.args(["-s", "-D", "-", "--max-time", "20"]);
                    if let Some(a) = auth {
                        cmd.args(["-H", &format!("Authorization: {a}")]);
                    }
                    let out = cmd.arg(&url).output().unwrap();
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                    (status, head.to_ascii_lowercase(), body.to_string())
                })
                .await
                .unwrap(),
                None => {
                    let mut rq = reqwest::Client::new().get(&url);
                    if let Some(a) = auth {
                        rq = rq.header("authorization", a);
                    }
                    let r = rq.send().await.unwrap();
                    let head = format!("{:?}", r.headers()).to_ascii_lowercase();
                    (r.status().as_u16(), head, r.text().await.unwrap())
                }
            }
        }
    };
    let (status, _, body) = fetch(Some(format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen(&echo, "remote-user"), ["bob"], "{echo}");
    // The token stays with gatehouse: the app receives no Authorization.
    assert!(seen(&echo, "authorization").is_empty(), "{echo}");
    // An app's own credentials (not gatehouse's) are passed on untouched,
    // here alongside a session.
    the_apps_own_authorization_passes(&s, &app_url).await;

    // Revoked: 401 with the challenge, not a redirect.
    let r = c
        .delete(s.at(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, head, _) = fetch(Some(format!("Bearer {token}"))).await;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.contains("www-authenticate: basic realm=\"gatehouse\""),
        "{head}"
    );
    // No credential at all: the same 401 and challenge for a script.
    let (status, head, _) = fetch(None).await;
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate"), "{head}");
}
