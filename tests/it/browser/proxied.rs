//! The whole trip through real nginx `auth_request`, as a person makes it:
//! an app URL, the sign-in page, sign in, and back at the app URL with the
//! app's page on show.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;

use super::{Chrome, serve, sign_in};
use crate::harness::*;

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// An nginx process, killed on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_nginx_lands_back_on_the_app() {
    let test = "signing_in_through_nginx_lands_back_on_the_app";
    let Some(nginx) = nginx_binary() else {
        eprintln!("SKIPPED {test}: nginx is not installed");
        return;
    };
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let s = TestServer::start(&config_text("trusted_proxies = [\"127.0.0.1\"]", "")).await;
    let app = serve(Router::new().fallback(get(|h: HeaderMap| async move {
        let user = h
            .get("remote-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        Html(format!(
            "<!doctype html><title>Notes</title><h1 id=app>Notes app</h1><p id=user>{user}</p>"
        ))
    })))
    .await;

    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = tmp.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /_gatehouse_verify {{
            internal;
            proxy_pass http://{gate}/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
        location = /favicon.ico {{ return 204; }}
        location / {{
            auth_request /_gatehouse_verify;
            auth_request_set $gatehouse_user $upstream_http_remote_user;
            proxy_set_header Remote-User $gatehouse_user;
            error_page 401 = @login;
            proxy_pass http://{app};
        }}
        location @login {{
            return 302 http://{gate}/login?rd=$scheme://$http_host$request_uri;
        }}
    }}
}}
"#,
        gate = s.addr,
    );
    let conf_path = tmp.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        up,
        "nginx did not start: {:?}",
        std::fs::read_to_string(tmp.path().join("error.log"))
    );

    let app_url = format!("http://127.0.0.1:{port}/notes/today?view=list");
    let tab = chrome.tab().await;
    tab.goto(&app_url).await;
    assert!(
        tab.url().await.starts_with(&s.at("/login?rd=")),
        "{}",
        tab.url().await
    );
    assert!(
        tab.text()
            .await
            .contains(&format!("to continue to 127.0.0.1:{port}"))
    );
    tab.check_page("login-from-app").await;

    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, app_url);
    assert_eq!(tab.text_of("#app").await.as_deref(), Some("Notes app"));
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    tab.screenshot("app-after-sign-in").await;
    tab.assert_clean("back at the app");
}
