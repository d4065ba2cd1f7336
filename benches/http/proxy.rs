//! Figure 12: a request to an app through gatehouse's built-in proxy
//! (`[[apps]]`, the session checked on the request itself), against nginx
//! doing the same job the way the shipped file does it (`auth_request` to
//! gatehouse's `/auth/verify`, then `proxy_pass`), and against nginx
//! passing requests on with no check at all. One upstream (a plain axum
//! handler) behind all three, keep-alive everywhere, measured one after
//! the other on loopback; then the throughput of a 256 MiB answer through
//! each. Skipped when nginx is not installed.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse::server::password::hash_password;
use gatehouse_benches::figure::PROXY;
use gatehouse_benches::http_client::{Conn, get_req, login};
use gatehouse_benches::report::{Line, fmt_us};
use gatehouse_benches::stats::{median, ratio};
use gatehouse_benches::wrk::load;
use serde_json::{Value, json};

use crate::servers::{BIG_BODY, cheap, config_text, start_gatehouse, start_upstream};
use crate::{PASSWORD, Params, line};

fn nginx_binary() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// nginx on `port` in `dir`: `/auth/` checked by gatehouse at `gh` then
/// passed to `up`, `/plain/` passed to `up` unchecked. Killed on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(
    bin: &str,
    dir: &std::path::Path,
    port: u16,
    gh: SocketAddr,
    up: SocketAddr,
) -> Nginx {
    let d = dir.display();
    let conf = format!(
        "worker_processes 2;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
          fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
          upstream app {{ server {up}; keepalive 64; }}\n\
          upstream gatehouse {{ server {gh}; keepalive 64; }}\n\
          server {{\n  listen 127.0.0.1:{port};\n\
           location = /_gatehouse_verify {{\n   internal;\n   proxy_pass http://gatehouse/auth/verify;\n\
            proxy_pass_request_body off;\n   proxy_set_header Content-Length \"\";\n\
            proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n\
            proxy_set_header X-Forwarded-Method $request_method;\n\
            proxy_set_header X-Forwarded-Proto $scheme;\n   proxy_set_header X-Forwarded-Host $host;\n\
            proxy_set_header X-Forwarded-Uri $request_uri;\n  }}\n\
           location /auth/ {{\n   auth_request /_gatehouse_verify;\n\
            auth_request_set $user $upstream_http_remote_user;\n   proxy_set_header Remote-User $user;\n\
            proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n   proxy_pass http://app;\n  }}\n\
           location /plain/ {{\n   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n\
            proxy_pass http://app;\n  }}\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    Nginx(child)
}

/// Bytes per second of one `GET path` (a [`BIG_BODY`] answer) on `addr`
/// with `cookie`, read to the end of the connection as it arrives.
async fn throughput(addr: SocketAddr, path: &str, cookie: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: gatehouse_session={cookie}\r\nConnection: close\r\n\r\n"
    );
    let started = std::time::Instant::now();
    s.write_all(req.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0usize;
    loop {
        let got = s.read(&mut buf).await.expect("read");
        if got == 0 {
            break;
        }
        n += got;
    }
    assert!(n >= BIG_BODY, "{path} on {addr} answered {n} bytes");
    n as f64 / started.elapsed().as_secs_f64()
}

/// The status of `GET path` on `addr` with `cookie` ("" for none).
async fn status(addr: SocketAddr, path: &str, cookie: &str) -> u16 {
    let mut c = Conn::new(addr);
    let cookie = (!cookie.is_empty()).then_some(cookie);
    c.send(&get_req(path, cookie)).await.unwrap_or(0)
}

pub async fn figure(p: &Params, lines: &mut Vec<Line>) -> Value {
    let Some(bin) = nginx_binary() else {
        eprintln!("figure {PROXY} skipped: nginx is not installed");
        return json!({ "skipped": "nginx is not installed" });
    };
    eprintln!(
        "figure {PROXY}: the built-in proxy vs nginx auth_request + proxy_pass ({} s each)",
        p.load_secs
    );
    let (up, up_stop) = start_upstream().await;
    let hash = hash_password(PASSWORD, &cheap()).expect("hash");
    let apps =
        format!("[[apps]]\nname = \"app\"\npath_prefix = \"/app/\"\nupstream = \"http://{up}\"\n");
    let gh = start_gatehouse(&config_text(
        &hash,
        true,
        "trusted_proxies = [\"127.0.0.1\"]",
        &apps,
    ))
    .await;
    let cookie = login(gh.addr, "alice", PASSWORD).await;
    let dir = tempfile::tempdir().expect("nginx dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let _nginx = start_nginx(&bin, dir.path(), port, gh.addr, up);
    let ngx: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..100 {
        if status(ngx, "/plain/x", "").await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both check: a session passes, none does not.
    assert_eq!(
        status(gh.addr, "/app/x", &cookie).await,
        200,
        "built-in proxy"
    );
    assert_eq!(
        status(gh.addr, "/app/x", "").await,
        401,
        "built-in proxy, no session"
    );
    assert_eq!(
        status(ngx, "/auth/x", &cookie).await,
        200,
        "nginx auth_request"
    );
    assert_eq!(
        status(ngx, "/auth/x", "").await,
        401,
        "nginx auth_request, no session"
    );

    let _ = load(gh.addr, "/app/x", &cookie, 1).await;
    let built_in = load(gh.addr, "/app/x", &cookie, p.load_secs).await;
    let _ = load(ngx, "/auth/x", &cookie, 1).await;
    let checked = load(ngx, "/auth/x", &cookie, p.load_secs).await;
    let plain = load(ngx, "/plain/x", &cookie, p.load_secs).await;
    // Large bodies: 256 MiB each, the three taking turns, the median of
    // three rounds.
    let (mut big_gh, mut big_ngx, mut big_plain) = (vec![], vec![], vec![]);
    for _ in 0..3 {
        big_gh.push(throughput(gh.addr, "/app/big", &cookie).await);
        big_ngx.push(throughput(ngx, "/auth/big", &cookie).await);
        big_plain.push(throughput(ngx, "/plain/big", &cookie).await);
    }
    let (big_gh, big_ngx, big_plain) = (median(big_gh), median(big_ngx), median(big_plain));
    let _ = up_stop.send(());
    gh.stop().await;

    lines.push(line(
        PROXY,
        "app request req/s, session checked: built-in proxy vs nginx auth_request to gatehouse",
        format!("{:.0} (p99 {})", built_in.rps, fmt_us(built_in.p99_us)),
        format!("{:.0} (p99 {})", checked.rps, fmt_us(checked.p99_us)),
        ratio(built_in.rps, checked.rps),
    ));
    lines.push(line(
        PROXY,
        "app request req/s: built-in proxy (session checked) vs nginx passing it unchecked",
        format!("{:.0}", built_in.rps),
        format!("{:.0} (p99 {})", plain.rps, fmt_us(plain.p99_us)),
        ratio(built_in.rps, plain.rps),
    ));
    let mib = |b: f64| format!("{:.0} MiB/s", b / f64::from(1u32 << 20));
    lines.push(line(
        PROXY,
        "256 MiB body, session checked: built-in proxy vs nginx auth_request + proxy_pass",
        mib(big_gh),
        mib(big_ngx),
        ratio(big_gh, big_ngx),
    ));
    lines.push(line(
        PROXY,
        "256 MiB body: built-in proxy (session checked) vs nginx passing it unchecked",
        mib(big_gh),
        mib(big_plain),
        ratio(big_gh, big_plain),
    ));
    json!({
        "big_body_bytes_per_s": { "built_in": big_gh, "nginx_auth_request": big_ngx, "nginx_plain": big_plain },
        "built_in_rps": built_in.rps,
        "nginx_auth_request_rps": checked.rps,
        "nginx_plain_rps": plain.rps,
        "tool": built_in.tool,
    })
}
