//! The access decision cannot be steered from the client, through real
//! nginx and real Caddy running the shipped `deploy/nginx.conf` and
//! `deploy/Caddyfile` (skipped with a notice when one is not installed),
//! in front of an app that routes the way web frameworks do
//! ([`routing_app`]: percent-decoded, dot segments resolved, slashes
//! merged, `;params` dropped).
//!
//! The site is a public one with a private admin area, so a request the
//! rules misread falls to a `bypass` default and reaches the app even
//! anonymously. Every attack is sent over a raw socket, so that no client
//! library cleans the request target first (the `url` crate resolves dot
//! segments), and each one checks what a user of the site cares about:
//! the app never served the request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::harness::*;
use crate::proxy::*;

/// The rules: `secure.example.com` wants two factors, `/public` is open,
/// the admin area is for the group `admin` (alice) only, and nobody may
/// `DELETE` under `/notes`. Anything else is open to anyone. `access`:
/// more settings of `[access]`.
fn rules(access: &str) -> String {
    format!(
        "[access]\ndefault_policy = \"bypass\"\n{access}\n\
         [[rules]]\ndomains = [\"secure.example.com\"]\npolicy = \"two_factor\"\n\n\
         {PROXY_RULES}\n\
         [[rules]]\npaths = ['^/notes(/|$)']\nmethods = [\"DELETE\"]\npolicy = \"deny\"\n"
    )
}

#[derive(Clone, Copy)]
enum Proxy {
    Nginx,
    Caddy,
}

impl Proxy {
    fn name(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Caddy => "caddy",
        }
    }

    fn binary(self) -> Option<PathBuf> {
        match self {
            Proxy::Nginx => binary("nginx", &["/usr/sbin"]),
            Proxy::Caddy => binary("caddy", &["/usr/bin"]),
        }
    }

    /// The proxy's binary; `None` (after a notice) when it is not installed.
    fn installed(self, test: &str) -> Option<PathBuf> {
        let bin = self.binary();
        if bin.is_none() {
            eprintln!("SKIPPED {test}: {} is not installed", self.name());
        }
        bin
    }

    /// The shipped file of this proxy (`bin`) running in front of `gate`
    /// and `app`; for nginx, as `edit` changes it.
    async fn start(
        self,
        bin: &Path,
        auth_port: u16,
        app_port: u16,
        gate: SocketAddr,
        app: SocketAddr,
        edit: fn(&str) -> String,
    ) -> Shipped {
        match self {
            Proxy::Nginx => Shipped::nginx_edited(bin, auth_port, app_port, gate, app, edit).await,
            Proxy::Caddy => Shipped::caddy(bin, auth_port, app_port, gate, app).await,
        }
    }
}

/// gatehouse with [`rules`] behind one shipped proxy, the routing app
/// behind both, and sessions for alice (admin) and bob (neither admin nor
/// signed in with a second factor).
struct Site {
    proxy: Proxy,
    _server: TestServer,
    app: RoutingApp,
    _shipped: Shipped,
    auth_port: u16,
    app_port: u16,
    alice: String,
    bob: String,
    breaches: Mutex<Vec<String>>,
}

/// What came back for one request, and what the app served for it.
struct Answer {
    status: u16,
    head: String,
    served: Vec<Served>,
}

impl Site {
    async fn start(proxy: Proxy, test: &str) -> Option<Site> {
        Site::start_with(proxy, test, "", |c| c.to_string()).await
    }

    /// [`Site::start`] with `access` added to `[access]`, and for nginx the
    /// shipped file as `edit` changes it.
    async fn start_with(
        proxy: Proxy,
        test: &str,
        access: &str,
        edit: fn(&str) -> String,
    ) -> Option<Site> {
        let bin = proxy.installed(test)?;
        let (auth_port, app_port) = (free_port(), free_port());
        let server = TestServer::start(&config_text(
            &format!(
                "trusted_proxies = [\"127.0.0.1\"]\npublic_origin = \"http://127.0.0.1:{auth_port}\"\n\
                 allowed_redirect_domains = [\"127.0.0.1\"]"
            ),
            &rules(access),
        ))
        .await;
        let app = routing_app().await;
        let shipped = proxy
            .start(&bin, auth_port, app_port, server.addr, app.addr, edit)
            .await;
        let session = |user: &'static str, pw: &'static str| {
            let s = &server;
            async move { session_pair(&set_cookie(&login(&client(), s, user, pw, &[]).await)) }
        };
        let alice = session("alice", ALICE_PW).await;
        let bob = session("bob", BOB_PW).await;
        Some(Site {
            proxy,
            _server: server,
            app,
            _shipped: shipped,
            auth_port,
            app_port,
            alice,
            bob,
            breaches: Mutex::default(),
        })
    }

    /// The app's own `Host`: `127.0.0.1:PORT`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.app_port)
    }

    /// `method target` sent raw to the proxy's app site, with `Host: host`,
    /// the session cookie `cookie` when given, and `extra` header lines.
    async fn send(
        &self,
        method: &str,
        target: &[u8],
        host: &[u8],
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = format!("{method} ").into_bytes();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(host);
        req.extend_from_slice(b"\r\nConnection: close\r\n");
        if let Some(cookie) = cookie {
            req.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
        }
        for (k, v) in extra {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let addr: SocketAddr = ([127, 0, 0, 1], self.app_port).into();
        let text = raw(addr, &req).await;
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head,
            served: self.app.take(),
        }
    }

    /// [`Site::send`] to the app's own host.
    async fn get(&self, target: &[u8], cookie: Option<&str>, extra: &[(&str, &str)]) -> Answer {
        self.send("GET", target, self.host().as_bytes(), cookie, extra)
            .await
    }

    /// Checks that the request never reached the app and was refused
    /// (`403`), sent to sign in (`401`, or `302` to the login page), or
    /// refused by the proxy itself (`400`). A breach is noted, and
    /// [`Site::finish`] fails the test with every breach noted, so that one
    /// run shows every way in.
    fn kept_out(&self, a: &Answer, what: &str) {
        let proxy = self.proxy.name();
        let status = a.head.lines().next().unwrap_or("no answer");
        let breach = if !a.served.is_empty() {
            let served: Vec<String> = a
                .served
                .iter()
                .map(|s| format!("{} {} (routed to {})", s.method, s.target, s.routed))
                .collect();
            format!("{proxy}: {what}: {status}; the app served {served:?}")
        } else if !matches!(a.status, 302 | 400 | 401 | 403) {
            format!("{proxy}: {what}: {status}")
        } else {
            return;
        };
        self.breaches.lock().unwrap().push(breach);
    }

    /// Notes a breach if the app served a request it routes to the admin
    /// area (`/admin` or below it).
    fn not_in_admin(&self, a: &Answer, what: &str) {
        for s in &a.served {
            if s.routed == "/admin" || s.routed.starts_with("/admin/") {
                self.breaches.lock().unwrap().push(format!(
                    "{}: {what}: the app served {} {} (routed to {})",
                    self.proxy.name(),
                    s.method,
                    s.target,
                    s.routed
                ));
            }
        }
    }

    /// Fails the test if [`Site::kept_out`] or [`Site::not_in_admin`]
    /// noted a breach.
    fn finish(self) {
        let breaches = self.breaches.lock().unwrap();
        assert!(
            breaches.is_empty(),
            "{} ways in:\n{}",
            breaches.len(),
            breaches.join("\n")
        );
    }

    /// The request reached the app, routed to `routed`, as `user` (empty:
    /// anonymous).
    fn assert_served(&self, a: &Answer, routed: &str, user: &str, what: &str) {
        let proxy = self.proxy.name();
        assert_eq!(a.status, 200, "{proxy}: {what}: {}", a.head);
        assert_eq!(a.served.len(), 1, "{proxy}: {what}");
        assert_eq!(a.served[0].routed, routed, "{proxy}: {what}");
        let users = a.served[0].header("remote-user");
        assert!(
            users == [user] || (user.is_empty() && users.iter().all(|u| u.is_empty())),
            "{proxy}: {what}: Remote-User {users:?}"
        );
    }
}

/// One check run through nginx and through Caddy: `check::nginx` and
/// `check::caddy`.
macro_rules! through_both {
    ($check:ident) => {
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nginx() {
                super::$check(
                    super::Proxy::Nginx,
                    concat!("steering::", stringify!($check), "::nginx"),
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn caddy() {
                super::$check(
                    super::Proxy::Caddy,
                    concat!("steering::", stringify!($check), "::caddy"),
                )
                .await
            }
        }
    };
}

through_both!(forged_original_request_headers_steer_nothing);
through_both!(bytes_above_ascii_in_the_request_are_refused);
through_both!(every_spelling_of_a_path_meets_its_rules);
through_both!(the_rules_still_serve_their_users);
through_both!(the_proxy_tells_gatehouse_one_header_family);

/// Finding 1: a client names another request in the headers gatehouse
/// reads: `X-Original-URL` and `X-Original-Method`, or the
/// `X-Forwarded-*` family. Neither bob (denied the admin area) nor an
/// anonymous client reaches `/admin`, and a `DELETE` the rules refuse
/// stays refused when the client says it is a `GET`.
async fn forged_original_request_headers_steer_nothing(proxy: Proxy, test: &str) {
    let Some(site) = Site::start(proxy, test).await else {
        return;
    };
    let app = format!("http://{}", site.host());
    let original_public = format!("{app}/public/x");
    let original_root = format!("{app}/");
    let x_original: [(&str, &str); 2] = [
        ("X-Original-URL", &original_root),
        ("X-Original-Method", "GET"),
    ];
    let x_original_public: [(&str, &str); 2] = [
        ("X-Original-URL", &original_public),
        ("X-Original-Method", "GET"),
    ];
    let host = site.host();
    let x_forwarded: [(&str, &str); 5] = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", &host),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Port", "1"),
    ];
    let both: Vec<(&str, &str)> = x_original.iter().chain(&x_forwarded).copied().collect();
    for (who, cookie) in [("anonymous", None), ("bob", Some(site.bob.as_str()))] {
        for (name, forged) in [
            ("X-Original-URL of the site's root", &x_original[..]),
            ("X-Original-URL of a bypass path", &x_original_public[..]),
            ("X-Forwarded-* of a bypass path", &x_forwarded[..]),
            ("both families", &both[..]),
        ] {
            let a = site.get(b"/admin/users", cookie, forged).await;
            site.kept_out(&a, &format!("{who} at /admin/users with {name}"));
        }
    }
    // A method rule: bob may read notes but nobody may delete them.
    let a = site
        .send(
            "DELETE",
            b"/notes/1",
            site.host().as_bytes(),
            Some(&site.bob),
            &both,
        )
        .await;
    site.kept_out(&a, "bob's DELETE /notes/1 sent as a GET");
    let a = site
        .send("DELETE", b"/notes/1", site.host().as_bytes(), None, &both)
        .await;
    site.kept_out(&a, "an anonymous DELETE /notes/1 sent as a GET");
    site.finish();
}

/// Finding 2: a byte at or above 0x80 in the request target (or the Host)
/// never makes gatehouse lose track of the request and decide on some
/// other one (a bare `/`, or what forged `X-Forwarded-*` headers name,
/// which the old reading fell back to): the admin area stays closed.
async fn bytes_above_ascii_in_the_request_are_refused(proxy: Proxy, test: &str) {
    let Some(site) = Site::start(proxy, test).await else {
        return;
    };
    let host = site.host();
    let forged: [(&str, &str); 4] = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", &host),
        ("X-Forwarded-Uri", "/public/x"),
    ];
    for (who, cookie) in [("anonymous", None), ("bob", Some(site.bob.as_str()))] {
        for target in [
            &b"/admin/users?\xff"[..],
            b"/admin/users?q=\xc3\xa9",
            b"/admin/\xff",
            b"/\xff/../admin",
        ] {
            for extra in [&[][..], &forged[..]] {
                let what = format!(
                    "{who} at {}{}",
                    String::from_utf8_lossy(target),
                    if extra.is_empty() {
                        ""
                    } else {
                        " with X-Forwarded-*"
                    }
                );
                let a = site.get(target, cookie, extra).await;
                site.kept_out(&a, &what);
            }
        }
        // A byte above ASCII joined to the name makes another name: the app
        // routes `/admin\xff` to no page of the admin area, and whether it
        // is served is the default policy's business; it is never the
        // admin area.
        for extra in [&[][..], &forged[..]] {
            let a = site.get(b"/admin\xff", cookie, extra).await;
            site.not_in_admin(&a, &format!("{who} at /admin\\xff"));
        }
        // A byte above ASCII in the Host instead.
        let mut bad_host = b"\xff".to_vec();
        bad_host.extend_from_slice(host.as_bytes());
        let a = site.send("GET", b"/admin", &bad_host, cookie, &[]).await;
        site.kept_out(&a, &format!("{who} at /admin with a Host of \\xff"));
    }
    site.finish();
}

/// Finding 3: other spellings of `/admin` that a framework routes to
/// `/admin` meet the `^/admin` rules (or are refused outright), as bob
/// and anonymously.
async fn every_spelling_of_a_path_meets_its_rules(proxy: Proxy, test: &str) {
    let Some(site) = Site::start(proxy, test).await else {
        return;
    };
    let spellings: [&[u8]; 11] = [
        b"/%61dmin",
        b"/%2fadmin",
        b"/%2Fadmin/users",
        b"/./admin",
        b"/x/../admin",
        b"//admin",
        b"/admin;x",
        b"/admin;x/users",
        b"/%2e/admin",
        b"/%2E%2E/admin",
        b"/x/..;/admin",
    ];
    for spelling in spellings {
        assert!(
            route(spelling).starts_with("/admin"),
            "the app routes {}",
            String::from_utf8_lossy(spelling)
        );
        for (who, cookie) in [("anonymous", None), ("bob", Some(site.bob.as_str()))] {
            let a = site.get(spelling, cookie, &[]).await;
            site.kept_out(
                &a,
                &format!("{who} at {}", String::from_utf8_lossy(spelling)),
            );
        }
    }
    site.finish();
}

/// What the rules are for still works with the shipped files: alice
/// reaches the admin area (also under another spelling), bob does not,
/// anyone reaches `/public`, bob reads notes but cannot delete them, and
/// an anonymous browser goes to the login page with the whole original
/// URL, its port included, in `rd`.
async fn the_rules_still_serve_their_users(proxy: Proxy, test: &str) {
    let Some(site) = Site::start(proxy, test).await else {
        return;
    };
    serves_its_users(&site).await;
    site.finish();
}

/// The checks of [`the_rules_still_serve_their_users`] on `site`.
async fn serves_its_users(site: &Site) {
    let alice = Some(site.alice.as_str());
    let bob = Some(site.bob.as_str());
    for target in [&b"/admin"[..], b"/admin/users?page=2", b"/%61dmin/users"] {
        let what = format!("alice at {}", String::from_utf8_lossy(target));
        let a = site.get(target, alice, &[]).await;
        let routed = route(target);
        site.assert_served(&a, &routed, "alice", &what);
    }
    let a = site.get(b"/admin/users", bob, &[]).await;
    assert_eq!(a.status, 403, "{}", a.head);
    site.kept_out(&a, "bob at /admin/users");
    let a = site.get(b"/public/status", None, &[]).await;
    site.assert_served(&a, "/public/status", "", "anonymous at /public/status");
    let a = site.get(b"/notes/1", bob, &[]).await;
    site.assert_served(&a, "/notes/1", "bob", "bob reads a note");
    let a = site
        .send("DELETE", b"/notes/1", site.host().as_bytes(), bob, &[])
        .await;
    assert_eq!(a.status, 403, "{}", a.head);
    site.kept_out(&a, "bob deletes a note");

    // An anonymous browser at the admin area: to the login page, the whole
    // URL (port and query) in `rd`.
    let a = site
        .get(b"/admin/users?x=1&y=2", None, &[("Accept", "text/html")])
        .await;
    site.kept_out(&a, "an anonymous browser at /admin/users");
    assert_eq!(a.status, 302, "{}", a.head);
    let location = a
        .head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    assert_eq!(
        location,
        format!(
            "http://127.0.0.1:{}/login?rd=http%3A%2F%2F127.0.0.1%3A{}%2Fadmin%2Fusers%3Fx%3D1%26y%3D2",
            site.auth_port, site.app_port
        ),
        "{}",
        a.head
    );
}

/// The shipped file itself, with a stand-in for gatehouse that lets
/// everything through and records what it is told: one header family,
/// set by the proxy over every copy the client sent, and none of the
/// other family.
async fn the_proxy_tells_gatehouse_one_header_family(proxy: Proxy, test: &str) {
    let Some(bin) = proxy.installed(test) else {
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let gate = routing_app().await;
    let app = routing_app().await;
    let _shipped = proxy
        .start(&bin, auth_port, app_port, gate.addr, app.addr, |c| {
            c.to_string()
        })
        .await;
    let host = format!("127.0.0.1:{app_port}");
    let mut req = format!("DELETE /notes/a%2Fb/../c;x?q=1 HTTP/1.1\r\nHost: {host}\r\n");
    for line in [
        "X-Original-URL: http://evil.example.com/public",
        "X-Original-Method: GET",
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example.com",
        "X-Forwarded-Uri: /public",
        "X-Forwarded-Port: 1",
        "Connection: close",
    ] {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let answer = raw(([127, 0, 0, 1], app_port).into(), req.as_bytes()).await;
    let told = gate.take();
    assert_eq!(told.len(), 1, "{answer}");
    let told = &told[0];
    assert!(told.target.starts_with("/auth/verify"), "{told:?}");
    let name = proxy.name();
    for (header, want) in [
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-uri", "/notes/a%2Fb/../c;x?q=1"),
    ] {
        assert_eq!(told.header(header), [want], "{name}: {header}: {told:?}");
    }
    // nginx passes `$host` (no port) and the port apart; Caddy the Host
    // as the client sent it, port included.
    match proxy {
        Proxy::Nginx => {
            assert_eq!(told.header("x-forwarded-host"), ["127.0.0.1"], "{told:?}");
            assert_eq!(
                told.header("x-forwarded-port"),
                [app_port.to_string()],
                "{told:?}"
            );
        }
        Proxy::Caddy => {
            assert_eq!(told.header("x-forwarded-host"), [host.as_str()], "{told:?}");
            assert!(told.header("x-forwarded-port").is_empty(), "{told:?}");
        }
    }
    for header in ["x-original-url", "x-original-method"] {
        assert!(told.header(header).is_empty(), "{name}: {header}: {told:?}");
    }
    // The stand-in let it through: the app got the request as sent.
    let served = app.take();
    assert_eq!(served.len(), 1, "{answer}");
    assert_eq!(served[0].target, "/notes/a%2Fb/../c;x?q=1");
}

/// Finding 3, the host: behind nginx, `Host: secure.example.com.` (a
/// trailing dot) or an absolute-form request line naming
/// `secure.example.com` reach the same server block as the plain name,
/// and meet its `two_factor` rule: bob, signed in with a password only,
/// and anonymous clients are kept out. (Caddy only serves the site's own
/// host name here, so only nginx is tried.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_host_spellings_meet_the_domain_rule() {
    let test = "steering::nginx_host_spellings_meet_the_domain_rule";
    let Some(site) = Site::start(Proxy::Nginx, test).await else {
        return;
    };
    let own = site.host();
    for (who, cookie) in [("anonymous", None), ("bob", Some(site.bob.as_str()))] {
        for (target, host) in [
            ("/dash", "secure.example.com"),
            ("/dash", "secure.example.com."),
            ("/dash", "Secure.Example.COM.:8443"),
            ("http://secure.example.com/dash", own.as_str()),
            ("http://secure.example.com./dash", own.as_str()),
        ] {
            let a = site
                .send("GET", target.as_bytes(), host.as_bytes(), cookie, &[])
                .await;
            site.kept_out(&a, &format!("{who}: GET {target}, Host: {host}"));
        }
    }
    // The site under its own name is open to anyone.
    let a = site.get(b"/dash", None, &[]).await;
    site.assert_served(&a, "/dash", "", "anonymous at the open site");
    site.finish();
}

/// The `/_gatehouse_verify` location of `deploy/nginx.conf` as shipped
/// before `forwarded_headers`: the `X-Original-*` family, from
/// `$http_host`, and the client's `X-Forwarded-*` passed on.
fn older_nginx_file(conf: &str) -> String {
    let start = conf
        .find("location = /_gatehouse_verify {")
        .expect("deploy/nginx.conf lost its verify location");
    let end = start + conf[start..].find("\n    }\n").unwrap();
    let older = "location = /_gatehouse_verify {
        internal;
        proxy_pass http://127.0.0.1:8080/auth/verify;
        proxy_pass_request_body off;
        proxy_set_header Content-Length \"\";
        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;";
    format!("{}{older}{}", &conf[..start], &conf[end..])
}

/// The upgrade note: behind an nginx file that still sends `X-Original-URL`
/// and `X-Original-Method`, the default `forwarded_headers` answers every
/// check with 403, never a decision for some other request (not even the
/// open `/public`). With `forwarded_headers = "x-original"` the older file
/// works again, and a client's own `X-Forwarded-*` (which that file passes
/// on) and other spellings of the admin area steer nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_an_older_file_is_refused_until_told_x_original() {
    let test = "steering::nginx_an_older_file_is_refused_until_told_x_original";
    let Some(site) = Site::start_with(Proxy::Nginx, test, "", older_nginx_file).await else {
        return;
    };
    for (who, cookie, target) in [
        ("anonymous", None, &b"/public/status"[..]),
        ("anonymous", None, b"/admin"),
        ("alice", Some(site.alice.as_str()), b"/admin"),
        ("bob", Some(site.bob.as_str()), b"/notes/1"),
    ] {
        let a = site.get(target, cookie, &[]).await;
        let what = format!("{who} at {}", String::from_utf8_lossy(target));
        site.kept_out(&a, &what);
        assert_eq!(a.status, 403, "{what}: {}", a.head);
    }
    site.finish();

    let Some(site) = Site::start_with(
        Proxy::Nginx,
        test,
        "forwarded_headers = \"x-original\"",
        older_nginx_file,
    )
    .await
    else {
        return;
    };
    serves_its_users(&site).await;
    let host = site.host();
    let forged: [(&str, &str); 4] = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Host", &host),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Original-URL", "http://127.0.0.1/public/x"),
    ];
    for (who, cookie) in [("anonymous", None), ("bob", Some(site.bob.as_str()))] {
        let a = site.get(b"/admin/users", cookie, &forged).await;
        site.kept_out(&a, &format!("{who} at /admin/users with forged headers"));
        for spelling in [&b"/%61dmin"[..], b"//admin", b"/admin;x", b"/x/../admin"] {
            let a = site.get(spelling, cookie, &[]).await;
            let what = format!("{who} at {}", String::from_utf8_lossy(spelling));
            site.kept_out(&a, &what);
        }
    }
    site.finish();
}
