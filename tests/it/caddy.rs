//! `deploy/Caddyfile` against the real server and a real Caddy, when Caddy
//! is installed (skipped with a notice otherwise). The test runs the
//! shipped file, with only its addresses replaced: the login redirect and
//! its return URL, identity headers a client forges (dashed and underscore
//! forms), and the session cookie kept from the app.

use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::harness::*;
use crate::proxy::*;

/// `deploy/Caddyfile` with its example addresses replaced by loopback
/// ports, behind a global block that keeps Caddy off the network and out
/// of the home directory.
fn caddyfile(auth_port: u16, app_port: u16, gate: &str, app: &str, storage: &str) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Caddyfile")).unwrap();
    for needle in [
        "auth.example.com {",
        "app.example.com {",
        "127.0.0.1:8080",
        "127.0.0.1:3000",
    ] {
        assert!(shipped.contains(needle), "deploy/Caddyfile lost `{needle}`");
    }
    let site = shipped
        .replace(
            "auth.example.com {",
            &format!("http://127.0.0.1:{auth_port} {{"),
        )
        .replace(
            "app.example.com {",
            &format!("http://127.0.0.1:{app_port} {{"),
        )
        .replace("127.0.0.1:8080", gate)
        .replace("127.0.0.1:3000", app);
    format!(
        "{{\n\tauto_https off\n\tadmin off\n\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n\n{site}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_passes_only_gatehouse_identity() {
    let Some(caddy) = binary("caddy", &["/usr/bin"]) else {
        eprintln!(
            "SKIPPED caddy_forward_auth_passes_only_gatehouse_identity: caddy is not installed"
        );
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let s = TestServer::start(&config_text(
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\npublic_origin = \"http://127.0.0.1:{auth_port}\"\n\
             allowed_redirect_domains = [\"127.0.0.1\"]"
        ),
        PROXY_RULES,
    ))
    .await;
    let app = echo_app().await;

    let tmp = tempfile::tempdir().unwrap();
    let conf = caddyfile(
        auth_port,
        app_port,
        &s.addr.to_string(),
        &app.to_string(),
        &tmp.path().join("storage").display().to_string(),
    );
    let conf_path = tmp.path().join("Caddyfile");
    std::fs::write(&conf_path, &conf).unwrap();
    let log = std::fs::File::create(tmp.path().join("caddy.log")).unwrap();
    let child = Command::new(&caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf_path)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut caddy = Proc(child);
    for port in [auth_port, app_port] {
        assert!(
            wait_for_port(port, &mut caddy).await,
            "caddy did not start:\n{conf}\n{}",
            std::fs::read_to_string(tmp.path().join("caddy.log")).unwrap_or_default()
        );
    }
    let app_url = format!("http://127.0.0.1:{app_port}/notes?a=1&b=2");

    // Anonymous: to the login page, the whole URL in `rd`.
    let c = client();
    let r = c.get(&app_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.1:{auth_port}/login?rd=http%3A%2F%2F127.0.0.1%3A{app_port}%2Fnotes%3Fa%3D1%26b%3D2"
        )
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
