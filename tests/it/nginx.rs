//! nginx `auth_request` against the real server, when nginx is installed
//! (skipped with a notice otherwise). Uses the same directives as
//! `deploy/nginx.conf`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use reqwest::StatusCode;

use crate::harness::*;

fn nginx_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nginx"))
            .find(|f| f.is_file())
    });
    from_path.or_else(|| {
        let f = PathBuf::from("/usr/sbin/nginx");
        f.is_file().then_some(f)
    })
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_protects_an_app() {
    let Some(nginx) = nginx_binary() else {
        eprintln!("SKIPPED nginx_auth_request_protects_an_app: nginx is not installed");
        return;
    };
    let s = TestServer::start(&config_text("trusted_proxies = [\"127.0.0.1\"]", "")).await;

    // The protected app echoes the user nginx passes on.
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    let app_router = Router::new().fallback(get(|h: HeaderMap| async move {
        let user = h
            .get("remote-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        format!("app sees user={user}")
    }));
    tokio::spawn(async move { axum::serve(app, app_router).await });

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
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
        location / {{
            auth_request /_gatehouse_verify;
            auth_request_set $gatehouse_user $upstream_http_remote_user;
            proxy_set_header Remote-User $gatehouse_user;
            error_page 401 = @login;
            proxy_pass http://{app_addr};
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
    let child = Command::new(&nginx)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _nginx = Nginx(child);
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "nginx did not start: {:?}",
        std::fs::read_to_string(tmp.path().join("error.log"))
    );

    let c = client();
    let r = c.get(format!("{base}/notes?x=1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.ends_with(&format!("/login?rd=http://127.0.0.1:{port}/notes?x=1")),
        "{loc}"
    );

    // Sign in at gatehouse; the cookie (host-only, 127.0.0.1) reaches nginx too.
    let r = login(&c, &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(format!("{base}/notes")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "app sees user=bob");
}
