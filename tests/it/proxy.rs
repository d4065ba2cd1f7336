//! Shared pieces of the real-proxy tests (`nginx.rs`, `caddy.rs`, `steering.rs`,
//! `browser/proxied.rs`): finding a proxy binary, the shipped nginx config
//! running on loopback ports, free ports, a child process killed on drop, a readiness
//! poll, the header-echoing app, an app that routes as frameworks do, the
//! forged identity headers and the sign-in through the login page as a
//! browser does it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ALICE_PW, BOB_PW, TestServer, client, login, set_cookie};

/// `name` on `PATH`, else in one of `dirs`.
pub fn binary(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    from_path.or_else(|| {
        dirs.iter()
            .map(|d| Path::new(d).join(name))
            .find(|f| f.is_file())
    })
}

/// A child process, killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port for a child process (a proxy, a Redis) to listen on: free on
/// every interface when checked, and never handed out twice by this
/// process. It is taken below the kernel's ephemeral range (32768 and up
/// by default), so an outgoing connection cannot take it as its source
/// port between this check and the child's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // A start that differs from run to run, so that test binaries running
    // side by side walk different ports.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() as u16).wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
}

/// Polls until something accepts on `port` (bounded: 10 s) or the child
/// exits. Returns whether it is up.
pub async fn wait_for_port(port: u16, child: &mut Proc) -> bool {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        if matches!(child.0.try_wait(), Ok(Some(_))) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The protected app: answers every request with its path and query and
/// every header it received, all values of each, names lower-cased:
/// `{"uri": "/p?q", "headers": {"name": ["v1", "v2"]}}`.
pub async fn echo_app() -> SocketAddr {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = app.local_addr().unwrap();
    let router = Router::new().fallback(|req: Request| async move {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in req.headers() {
            headers
                .entry(k.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        axum::Json(json!({"uri": req.uri().to_string(), "headers": headers}))
    });
    tokio::spawn(async move { axum::serve(app, router).await });
    addr
}

/// A request [`routing_app`] served: its method, the path it routed it
/// to, the request target as received (bytes above ASCII shown as
/// `\u{FFFD}`) and its headers (names lower-cased, in order).
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub routed: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Served {
    /// Every value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An app that routes the way web frameworks do, on plain TCP so that it
/// takes any request target a proxy passes on (bytes above ASCII
/// included), with a log of what it served.
pub struct RoutingApp {
    pub addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
}

impl RoutingApp {
    /// What the app served since the last call.
    pub fn take(&self) -> Vec<Served> {
        std::mem::take(&mut *self.served.lock().unwrap())
    }
}

/// The path a framework routes `target` to: the query dropped, every
/// `%XX` decoded (`%2f` included), `;params` dropped from each segment
/// (as Tomcat and Spring do), empty and `.` segments dropped, `..` taking
/// the segment before it away (never above the root).
pub fn route(target: &[u8]) -> String {
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (path[i], path.get(i + 1), path.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                decoded.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment.split(|b| *b == b';').next().unwrap_or_default() {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", String::from_utf8_lossy(&segments.join(&b'/')))
}

/// Starts a [`RoutingApp`]. Every request gets `200` with JSON:
/// `{"method", "target", "routed", "remote_user"}`, and the connection
/// is closed after it.
pub async fn routing_app() -> RoutingApp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served: Arc<Mutex<Vec<Served>>> = Arc::default();
    let log = served.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let mut lines = head
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
                let mut first = lines.next().unwrap_or_default().split(|b| *b == b' ');
                let method = text(first.next().unwrap_or_default());
                let target = first.next().unwrap_or_default();
                let headers: Vec<(String, String)> = lines
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| {
                        let colon = l.iter().position(|b| *b == b':')?;
                        Some((
                            text(&l[..colon]).to_ascii_lowercase(),
                            text(&l[colon + 1..]).trim().to_string(),
                        ))
                    })
                    .collect();
                let served = Served {
                    method,
                    routed: route(target),
                    target: text(target),
                    headers,
                };
                let body = json!({
                    "method": served.method,
                    "target": served.target,
                    "routed": served.routed,
                    "remote_user": served.header("remote-user"),
                })
                .to_string();
                log.lock().unwrap().push(served);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    RoutingApp { addr, served }
}

/// Every value the app saw under header `name` (lower case).
pub fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The identity headers a client forges, in the dashed form and the
/// underscore form (which CGI-style apps read as the same variable).
/// Every value holds "forged", which must reach the app nowhere.
pub const FORGED: [(&str, &str); 8] = [
    ("Remote-User", "forged-alice"),
    ("Remote_User", "forged-alice"),
    ("Remote-Groups", "forged-admin"),
    ("Remote_Groups", "forged-admin"),
    ("Remote-Email", "forged@example.com"),
    ("Remote_Email", "forged@example.com"),
    ("Remote-Name", "Forged Name"),
    ("Remote_Name", "Forged Name"),
];

/// What the app saw on a request that carried [`FORGED`] from a client
/// signed in as `user`, whose groups, email and name gatehouse reports as
/// `groups`, `email` and `name` (empty: none): exactly those, no
/// underscore form, no placeholder text anywhere.
pub fn assert_identity_from_gatehouse_only(
    echo: &Value,
    user: &str,
    groups: &str,
    email: &str,
    name: &str,
) {
    assert_eq!(seen(echo, "remote-user"), [user], "{echo}");
    for (header, want) in [
        ("remote-groups", groups),
        ("remote-email", email),
        ("remote-name", name),
    ] {
        let got = seen(echo, header);
        if want.is_empty() {
            assert!(got.iter().all(|v| v.is_empty()), "{header}: {echo}");
        } else {
            assert_eq!(got, [want], "{header}: {echo}");
        }
    }
    for name in [
        "remote_user",
        "remote_groups",
        "remote_email",
        "remote_name",
    ] {
        assert!(
            seen(echo, name).is_empty(),
            "{name} reached the app: {echo}"
        );
    }
    let text = echo["headers"].to_string().to_ascii_lowercase();
    assert!(
        !text.contains("{http."),
        "a placeholder reached the app: {echo}"
    );
    assert!(
        !text.contains("forged"),
        "a forged value reached the app: {echo}"
    );
}

/// gatehouse's config behind a shipped proxy whose login site is on
/// `auth_port`: the proxy trusted, the login site as public origin, the
/// apps' host allowed as a redirect target (as `example.com` is in the
/// shipped comments), and [`PROXY_RULES`].
pub fn behind_proxy(auth_port: u16) -> String {
    crate::harness::config_text(
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\npublic_origin = \"http://127.0.0.1:{auth_port}\"\n\
             allowed_redirect_domains = [\"127.0.0.1\"]"
        ),
        PROXY_RULES,
    )
}

/// Rules the proxy tests run with: a public path, and an admin area for
/// the group `admin` only.
pub const PROXY_RULES: &str = "[[rules]]\npaths = ['^/public(/|$)']\npolicy = \"bypass\"\n\n\
     [[rules]]\npaths = ['^/admin(/|$)']\nsubjects = [\"group:admin\"]\npolicy = \"one_factor\"\n\n\
     [[rules]]\npaths = ['^/admin(/|$)']\npolicy = \"deny\"\n";

/// The session cookie from a `Set-Cookie` value: `name=token`.
pub fn session_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// Follows a login redirect as a browser: fetches the login page at
/// `location`, reads the hidden `rd` field, signs in as `user` with it.
/// Returns the sign-in response (a 303 to `rd` when accepted).
pub async fn sign_in_via(
    c: &reqwest::Client,
    location: &str,
    user: &str,
    pw: &str,
) -> reqwest::Response {
    let page = c.get(location).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{location}");
    let html = page.text().await.unwrap();
    let marker = "name=\"rd\" value=\"";
    let start = html.find(marker).expect("rd field") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    let rd = html_unescape(&html[start..end]);
    let post = location.split('?').next().unwrap();
    c.post(post)
        .form(&[("username", user), ("password", pw), ("rd", &rd)])
        .send()
        .await
        .unwrap()
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `deploy/nginx.conf` (server blocks and maps for the `http` context), as
/// `edit` changes it, with its example addresses replaced by loopback
/// ports, inside a main config that keeps every file nginx writes under
/// `prefix`.
fn nginx_conf(
    auth_port: u16,
    app_port: u16,
    gate: &str,
    app: &str,
    prefix: &str,
    edit: fn(&str) -> String,
) -> String {
    let shipped = edit(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
            .unwrap(),
    );
    for needle in [
        "listen 443 ssl;",
        "server_name auth.example.com;",
        "server_name app.example.com;",
        "https://auth.example.com",
        "127.0.0.1:8080",
        "127.0.0.1:3000",
    ] {
        assert!(
            shipped.contains(needle),
            "deploy/nginx.conf lost `{needle}`"
        );
    }
    let http = shipped
        .replace("listen 443 ssl;", "")
        .replace(
            "server_name auth.example.com;",
            &format!("listen 127.0.0.1:{auth_port};"),
        )
        .replace(
            "server_name app.example.com;",
            &format!("listen 127.0.0.1:{app_port};"),
        )
        .replace(
            "https://auth.example.com",
            &format!("http://127.0.0.1:{auth_port}"),
        )
        .replace("127.0.0.1:8080", gate)
        .replace("127.0.0.1:3000", app);
    format!(
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
{http}
}}
"#
    )
}

/// Real nginx or Caddy running a shipped config in a child process, with
/// the directory holding its config, logs and state; all removed on drop.
pub struct Shipped {
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Shipped {
    /// Waits until `child` accepts on every port of `ports`, failing the
    /// test with the config and the proxy's log (`log` in `dir`) if not.
    async fn ready(
        child: std::process::Child,
        dir: tempfile::TempDir,
        log: &str,
        conf: &str,
        ports: [u16; 2],
    ) -> Shipped {
        let mut proc = Proc(child);
        for port in ports {
            assert!(
                wait_for_port(port, &mut proc).await,
                "the proxy did not start:\n{conf}\n{}",
                std::fs::read_to_string(dir.path().join(log)).unwrap_or_default()
            );
        }
        Shipped {
            _proc: proc,
            _dir: dir,
        }
    }

    /// Starts real nginx on the shipped `deploy/nginx.conf`: the login site
    /// on `auth_port` and the protected app on `app_port`, in front of
    /// gatehouse at `gate` and the app at `app`; waits until both accept.
    pub async fn nginx(
        nginx: &Path,
        auth_port: u16,
        app_port: u16,
        gate: SocketAddr,
        app: SocketAddr,
    ) -> Shipped {
        Shipped::nginx_edited(nginx, auth_port, app_port, gate, app, |c| c.to_string()).await
    }

    /// [`Shipped::nginx`] on the shipped file as `edit` changes it (an
    /// older version of a location, say).
    pub async fn nginx_edited(
        nginx: &Path,
        auth_port: u16,
        app_port: u16,
        gate: SocketAddr,
        app: SocketAddr,
        edit: fn(&str) -> String,
    ) -> Shipped {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path().display().to_string();
        let conf = nginx_conf(
            auth_port,
            app_port,
            &gate.to_string(),
            &app.to_string(),
            &prefix,
            edit,
        );
        let conf_path = tmp.path().join("nginx.conf");
        std::fs::write(&conf_path, &conf).unwrap();
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Shipped::ready(child, tmp, "error.log", &conf, [auth_port, app_port]).await
    }
}

/// [`PROXY_RULES`] as a browser meets them through a proxy in front of the
/// app at `app`: the public path without signing in, the admin area asking
/// an anonymous visitor to sign in, refusing bob (`bob_session`) and
/// letting alice (`alice_session`) in with her identity.
pub async fn rules_through_proxy(app: &str, bob_session: &str, alice_session: &str) {
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, cookie: Option<&str>| {
        // A browser: it asks for a page (a script would get the 401 and
        // its Basic challenge instead of the login redirect).
        let mut r = c.get(format!("{app}{path}")).header("accept", "text/html");
        if let Some(cookie) = cookie {
            r = r.header("cookie", cookie);
        }
        r.send()
    };
    let r = get("/public/status", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "bypass");
    let echo: Value = r.json().await.unwrap();
    assert!(
        seen(&echo, "remote-user").iter().all(|v| v.is_empty()),
        "{echo}"
    );
    let r = get("/admin", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "anonymous at the admin area");
    assert!(
        r.headers()["location"].to_str().unwrap().contains("/login"),
        "{:?}",
        r.headers()
    );
    let r = get("/admin/users", Some(bob_session)).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "bob at the admin area");
    let r = get("/admin/users", Some(alice_session)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "alice at the admin area");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(seen(&echo, "remote-user"), ["alice"], "{echo}");
    assert_eq!(seen(&echo, "remote-email"), ["alice@example.com"], "{echo}");
}

/// Signs bob in through the login page at `loc` (where an anonymous visit to
/// `app_url` was sent), checks that he lands back on `app_url` and that the
/// app sees exactly gatehouse's identity headers (with every [`FORGED`] one
/// sent along) and its own cookies but never the session cookie; then the
/// same for alice, an admin with an email and a name. Returns both session
/// cookies (`name=token`).
pub async fn signed_in_through_proxy(
    c: &reqwest::Client,
    s: &TestServer,
    loc: &str,
    app_url: &str,
) -> (String, String) {
    let r = sign_in_via(c, loc, "bob", BOB_PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], app_url);
    let session = session_pair(&set_cookie(&r));

    let get = |cookie: String| {
        let mut req = c.get(app_url).header("cookie", cookie);
        for (k, v) in FORGED {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let echo = get(format!("theme=dark; {session}; lang=en")).await;
    assert_eq!(echo["uri"], "/notes?a=1&b=2");
    assert_identity_from_gatehouse_only(&echo, "bob", "", "", "");
    // The app keeps its own cookies and never sees the session token.
    assert_eq!(seen(&echo, "cookie"), ["theme=dark; lang=en"], "{echo}");
    for cookie in [
        format!("{session}; theme=dark"),
        format!("theme=dark; {session}"),
    ] {
        assert_eq!(seen(&get(cookie).await, "cookie"), ["theme=dark"]);
    }
    // The session cookie alone: no Cookie header reaches the app, not even
    // an empty one (some frameworks choke on it).
    let only = get(session.clone()).await;
    assert!(seen(&only, "cookie").is_empty(), "{only}");

    // An admin's group is passed on.
    let alice = client();
    let r = login(&alice, s, "alice", ALICE_PW, &[]).await;
    let alice_session = session_pair(&set_cookie(&r));
    let echo = get(alice_session.clone()).await;
    assert_identity_from_gatehouse_only(
        &echo,
        "alice",
        "admin",
        "alice@example.com",
        "Alice Admin",
    );

    (session, alice_session)
}

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
    format!("{}{site}", caddy_global(storage))
}

/// The global block of the tests' Caddyfiles: no automatic https, no admin
/// endpoint, state under `storage`.
fn caddy_global(storage: &str) -> String {
    format!(
        "{{\n\tauto_https off\n\tadmin off\n\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n\n"
    )
}

impl Shipped {
    /// Starts real Caddy on the shipped `deploy/Caddyfile`, as
    /// [`Shipped::nginx`] does nginx.
    pub async fn caddy(
        caddy: &Path,
        auth_port: u16,
        app_port: u16,
        gate: SocketAddr,
        app: SocketAddr,
    ) -> Shipped {
        Shipped::caddy_conf(caddy, [auth_port, app_port], |storage| {
            caddyfile(
                auth_port,
                app_port,
                &gate.to_string(),
                &app.to_string(),
                storage,
            )
        })
        .await
    }

    /// Starts real Caddy on the sites of `sites` (a Caddyfile without a
    /// global block), behind the global block that keeps Caddy off the
    /// network and out of the home directory; waits until it accepts on
    /// every port of `ports`.
    pub async fn caddy_sites(caddy: &Path, ports: [u16; 2], sites: &str) -> Shipped {
        Shipped::caddy_conf(caddy, ports, |storage| {
            format!("{}{sites}", caddy_global(storage))
        })
        .await
    }

    /// Starts Caddy on the Caddyfile `conf` makes from its storage path.
    async fn caddy_conf(
        caddy: &Path,
        ports: [u16; 2],
        conf: impl FnOnce(&str) -> String,
    ) -> Shipped {
        let tmp = tempfile::tempdir().unwrap();
        let conf = conf(&tmp.path().join("storage").display().to_string());
        let conf_path = tmp.path().join("Caddyfile");
        std::fs::write(&conf_path, &conf).unwrap();
        let log = std::fs::File::create(tmp.path().join("caddy.log")).unwrap();
        let child = Command::new(caddy)
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
        Shipped::ready(child, tmp, "caddy.log", &conf, ports).await
    }
}

/// bob signs in on gatehouse itself (the token API needs a session) and
/// makes an access token: his client, the token and its id.
pub async fn token_for_bob(s: &TestServer) -> (reqwest::Client, String, String) {
    let c = client();
    assert_eq!(
        login(&c, s, "bob", BOB_PW, &[]).await.status(),
        StatusCode::SEE_OTHER
    );
    let created: Value = c
        .post(s.at("/api/v1/tokens"))
        .json(&json!({"name": "script"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    (c, token, id)
}

/// An app's own `Authorization`, sent beside a session cookie through the
/// proxy at `app_url`, reaches the app untouched, even when the client
/// also sends gatehouse's credential marker itself.
pub async fn the_apps_own_authorization_passes(s: &TestServer, app_url: &str) {
    let r = login(&client(), s, "alice", ALICE_PW, &[]).await;
    let session = crate::harness::token_of(&r).unwrap();
    for forged in [None, Some("authorization")] {
        let mut rq = reqwest::Client::new()
            .get(app_url)
            .header("cookie", format!("gatehouse_session={session}"))
            .header("authorization", "Bearer the-apps-own");
        if let Some(f) = forged {
            rq = rq.header("x-gatehouse-credential", f);
        }
        let echo: Value = rq.send().await.unwrap().json().await.unwrap();
        assert_eq!(
            seen(&echo, "authorization"),
            ["Bearer the-apps-own"],
            "{echo}"
        );
    }
}
