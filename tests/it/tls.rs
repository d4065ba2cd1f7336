//! TLS on the listener (`[tls]`): a real client over TLS with a CA made
//! here (rcgen), ALPN (h2 or http/1.1), WebSockets through the proxy over
//! TLS, the handshake's deadline, and certificates swapped on disk.
//! Every wait is bounded by a generous hang guard; no assertion reads the
//! clock.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode, Version};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::io::AsyncReadExt;

use crate::harness::{TestServer, config_text};

/// Every wait of a test step.
pub const STEP: Duration = Duration::from_secs(20);

/// The name the test certificates are made for; clients resolve it to the
/// server's loopback address.
pub const NAME: &str = "gatehouse.test";

/// A certificate authority of the test's own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) and
    /// its key, both PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a server certificate for [`NAME`] as `cert.pem` and
    /// `key.pem` in `dir`; returns the certificate's DER.
    pub fn write_server_cert(&self, dir: &Path) -> Vec<u8> {
        let (cert, key) = self.issue(&[NAME]);
        write_atomic(&dir.join("cert.pem"), cert.as_bytes());
        write_atomic(&dir.join("key.pem"), key.as_bytes());
        der_of(&cert)
    }
}

/// The DER of the first certificate of a PEM text.
pub fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Replaces `path` with `bytes` in one rename, as an operator's tooling
/// (certbot, cert-manager) does.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TLS connection to [`NAME`] at `addr`, trusting `ca_pem` only,
/// offering `alpn`.
pub async fn tls_connect(
    ca_pem: &str,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_tls_connect(ca_pem, addr, alpn)
        .await
        .expect("the handshake failed")
}

/// [`tls_connect`], whose handshake may fail.
pub async fn try_tls_connect(
    ca_pem: &str,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    tls_connect_to(ca_pem, addr, NAME, alpn).await
}

/// A TLS connection to `name` at `addr`, trusting `ca_pem` only,
/// offering `alpn`; the handshake may fail.
pub async fn tls_connect_to(
    ca_pem: &str,
    addr: SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from(name.to_string()).unwrap(), tcp),
    )
    .await
    .expect("the handshake hung")
}

/// The ALPN protocols a client offers.
pub const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];
pub const HTTP1: &[&[u8]] = &[b"http/1.1"];

/// One HTTPS connection of a test client (HTTP/2 when the server chose
/// it, else HTTP/1.1), and the certificate the server presented on it.
pub struct Https {
    sender: Sender,
    /// The server's certificate, DER.
    pub cert: Vec<u8>,
    /// Port of the server, for `Host`.
    port: u16,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One answer.
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Https {
    /// Opens a connection, offering `alpn`.
    pub async fn open(ca_pem: &str, addr: SocketAddr, alpn: &[&[u8]]) -> Https {
        let stream = tls_connect(ca_pem, addr, alpn).await;
        let (_, session) = stream.get_ref();
        let cert = session.peer_certificates().unwrap()[0].to_vec();
        let h2 = session.alpn_protocol() == Some(b"h2");
        let io = hyper_util::rt::TokioIo::new(stream);
        let sender = if h2 {
            let (tx, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Sender::H2(tx)
        } else {
            let (tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            Sender::H1(tx)
        };
        Https {
            sender,
            cert,
            port: addr.port(),
        }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], String::new()).await
    }

    /// Sends one request on this connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Answer {
        let authority = format!("{NAME}:{}", self.port);
        let mut b = Request::builder().method(method);
        b = match self.sender {
            // HTTP/2 names the authority in the URI; HTTP/1.1 in `Host`.
            Sender::H2(_) => b.uri(format!("https://{authority}{path}")),
            Sender::H1(_) => b.uri(path).header("host", &authority),
        };
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        let res = tokio::time::timeout(STEP, async {
            match &mut self.sender {
                Sender::H1(tx) => tx.send_request(req).await,
                Sender::H2(tx) => tx.send_request(req).await,
            }
        })
        .await
        .expect("no answer in time")
        .expect("the request failed");
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(STEP, body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Signs in as `user` with a form post; the session token.
    pub async fn sign_in(&mut self, user: &str, pw: &str) -> String {
        let form = serde_urlencoded::to_string([("username", user), ("password", pw)]).unwrap();
        let a = self
            .send(
                Method::POST,
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                form,
            )
            .await;
        let cookie = a
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("__Host-gatehouse_session="))
            .unwrap_or_else(|| panic!("no session cookie: {:?}", a.headers))
            .to_string();
        assert!(cookie.contains("Secure"), "{cookie}");
        cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap()
    }
}

/// A server whose `[tls]` reads `cert.pem` and `key.pem` from its data
/// dir and redirects plain HTTP from a second port, with `extra` settings
/// and `sections`; returns it and the CA.
async fn tls_server(extra: &str, sections: &str) -> (TestServer, Ca, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("gatehouse test CA");
    ca.write_server_cert(tmp.path());
    let config = config_text(
        extra,
        &format!(
            "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nhttp_redirect_bind = \"127.0.0.1:0\"\n\n{sections}"
        ),
    );
    let s = TestServer::start_in(tmp.path(), &config).await;
    (s, ca, tmp)
}

#[tokio::test]
async fn a_tls_client_gets_h2_when_it_offers_it_and_http1_otherwise() {
    let (s, ca, tmp) = tls_server("", "").await;
    let written = der_of(&std::fs::read_to_string(tmp.path().join("cert.pem")).unwrap());
    let mut h2 = Https::open(&ca.pem(), s.addr, BOTH).await;
    assert_eq!(h2.cert, written);
    let a = h2.get("/healthz").await;
    assert_eq!((a.status, a.version), (StatusCode::OK, Version::HTTP_2));
    let mut h1 = Https::open(&ca.pem(), s.addr, HTTP1).await;
    let a = h1.get("/healthz").await;
    assert_eq!((a.status, a.version), (StatusCode::OK, Version::HTTP_11));
    // Over TLS the session cookie is `Secure`, with the `__Host-` prefix
    // (`sign_in` checks both), and pages carry HSTS, with no public origin.
    let token = h2.sign_in("alice", crate::harness::ALICE_PW).await;
    let a = h2
        .send(
            Method::GET,
            "/api/v1/sessions",
            &[("cookie", &format!("__Host-gatehouse_session={token}"))],
            String::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = h1.get("/login").await;
    assert!(a.headers.contains_key("strict-transport-security"));

    // Plain HTTP on the TLS port gets no HTTP answer (a TLS alert at
    // most), and a client that does not trust the CA gets no connection.
    let plain = crate::harness::raw_get(s.addr, "/healthz").await;
    assert!(!plain.contains("HTTP/"), "{plain:?}");
    let other = Ca::new("another CA");
    assert!(
        try_tls_connect(&other.pem(), s.addr, BOTH).await.is_err(),
        "a client trusting another CA connected"
    );
}

#[tokio::test]
async fn a_client_that_never_sends_its_hello_is_cut_after_the_head_timeout() {
    let (s, ca, _tmp) = tls_server("", "[limits]\nheader_read_timeout_secs = 1\n").await;
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // A second one sends half a ClientHello and stops.
    let mut partial = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    for conn in [&mut silent, &mut partial] {
        let mut buf = Vec::new();
        // The server closes; a reset is a close too.
        let r = tokio::time::timeout(STEP, conn.read_to_end(&mut buf))
            .await
            .expect("the connection was never closed");
        assert!(buf.is_empty() || r.is_err() || buf[0] == 0x15, "{buf:?}");
    }
    eprintln!("silent TLS clients closed after {:?}", started.elapsed());
    // The server still serves.
    let a = Https::open(&ca.pem(), s.addr, BOTH)
        .await
        .get("/healthz")
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn websockets_through_the_proxy_work_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let up = crate::apps::upstream().await;
    let app = format!(
        "[[apps]]\nname = \"up\"\npath_prefix = \"/up/\"\nstrip_prefix = true\nupstream = \"http://{}\"\n",
        up.addr
    );
    let (s, ca, _tmp) = tls_server("", &app).await;
    let mut https = Https::open(&ca.pem(), s.addr, BOTH).await;
    // The app's answers carry gatehouse's HSTS, as its own pages do: the
    // redirect to sign in, and the app's page.
    let a = https
        .send(
            Method::GET,
            "/up/h",
            &[("accept", "text/html")],
            String::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FOUND);
    assert!(a.headers.contains_key("strict-transport-security"));
    let token = https.sign_in("bob", crate::harness::BOB_PW).await;
    let cookie = format!("__Host-gatehouse_session={token}");
    let a = https
        .send(Method::GET, "/up/h", &[("cookie", &cookie)], String::new())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.headers["strict-transport-security"], "max-age=31536000",
        "{:?}",
        a.headers
    );

    // A WebSocket needs HTTP/1.1: the client offers only that.
    let stream = tls_connect(&ca.pem(), s.addr, HTTP1).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut req = format!("wss://{NAME}:{}/up/ws", s.addr.port())
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert(
        "cookie",
        format!("__Host-gatehouse_session={token}").parse().unwrap(),
    );
    h.insert(
        "origin",
        format!("https://{NAME}:{}", s.addr.port()).parse().unwrap(),
    );
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(req, stream))
        .await
        .unwrap()
        .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    let m = tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("over tls"));
    ws.close(None).await.unwrap();
}

/// The address a child server listens on.
fn child_addr(p: &crate::child::Proc) -> SocketAddr {
    p.url.trim_start_matches("http://").parse().unwrap()
}

/// Sends `sig` to the child server.
fn signal(p: &crate::child::Proc, sig: &str) {
    let pid = p.child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits, a bounded number of times, until a new connection presents `der`.
async fn until_served(ca_pem: &str, addr: SocketAddr, der: &[u8]) {
    for _ in 0..400 {
        if Https::open(ca_pem, addr, BOTH).await.cert == der {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the new certificate was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_swapped_certificate_to_new_connections_and_keeps_open_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("gatehouse test CA");
    let first = ca.write_server_cert(tmp.path());
    std::fs::write(
        tmp.path().join("gatehouse.toml"),
        config_text("", "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"),
    )
    .unwrap();
    let p = crate::child::Proc::start(tmp.path()).await.unwrap();
    let addr = child_addr(&p);
    // Connections opened before the swap, one of each version.
    let mut h2 = Https::open(&ca.pem(), addr, BOTH).await;
    let mut h1 = Https::open(&ca.pem(), addr, HTTP1).await;
    for c in [&mut h2, &mut h1] {
        assert_eq!(c.cert, first);
        assert_eq!(c.get("/healthz").await.status, StatusCode::OK);
    }

    let second = ca.write_server_cert(tmp.path());
    assert_ne!(first, second);
    let swapped = Instant::now();
    signal(&p, "-HUP");
    until_served(&ca.pem(), addr, &second).await;
    eprintln!(
        "the new certificate was served {:?} after SIGHUP",
        swapped.elapsed()
    );
    // The connections made before keep working, on their certificate.
    for c in [&mut h2, &mut h1] {
        let a = c.get("/healthz").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(c.cert, first);
    }

    // A file that cannot be read keeps the certificate in force.
    write_atomic(&tmp.path().join("key.pem"), b"not a key");
    signal(&p, "-HUP");
    for _ in 0..400 {
        if !p.log_lines("TLS certificate reload failed").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(p.log_lines("TLS certificate reload failed").len(), 1);
    let mut after = Https::open(&ca.pem(), addr, BOTH).await;
    assert_eq!(after.cert, second);
    assert_eq!(after.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(h2.get("/healthz").await.status, StatusCode::OK);
    p.kill().await;
}

#[tokio::test]
async fn a_reload_reads_the_certificate_at_the_paths_the_file_names_now() {
    let (s, ca, tmp) = tls_server("", "").await;
    let config_path = tmp.path().join("gatehouse.toml");
    let with_paths = |cert: &str, key: &str| {
        let text = std::fs::read_to_string(&config_path).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("cert = ") {
                    format!("cert = \"{cert}\"")
                } else if l.starts_with("key = ") {
                    format!("key = \"{key}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config_path, text).unwrap();
    };
    let (cert, key) = ca.issue(&[NAME]);
    write_atomic(&tmp.path().join("renewed-cert.pem"), cert.as_bytes());
    write_atomic(&tmp.path().join("renewed-key.pem"), key.as_bytes());
    with_paths("renewed-cert.pem", "renewed-key.pem");
    let done = s.reloader.reload().await.unwrap();
    assert_eq!(done.certificate, Some(Ok(())));
    assert!(
        !done.waiting.iter().any(|k| k.starts_with("tls.")),
        "{:?}",
        done.waiting
    );
    let renewed = der_of(&cert);
    assert_eq!(Https::open(&ca.pem(), s.addr, BOTH).await.cert, renewed);

    // The old files are no longer read: replacing them changes nothing.
    ca.write_server_cert(tmp.path());
    assert_eq!(s.reloader.reload().await.unwrap().certificate, Some(Ok(())));
    assert_eq!(Https::open(&ca.pem(), s.addr, BOTH).await.cert, renewed);

    // New paths that cannot be read keep the certificate in force, and
    // the next reload reads the paths then named.
    with_paths("missing.pem", "renewed-key.pem");
    let done = s.reloader.reload().await.unwrap();
    let why = done.certificate.unwrap().unwrap_err();
    assert!(why.contains("missing.pem"), "{why}");
    assert_eq!(Https::open(&ca.pem(), s.addr, BOTH).await.cert, renewed);
    with_paths("cert.pem", "key.pem");
    assert_eq!(s.reloader.reload().await.unwrap().certificate, Some(Ok(())));
    let back = der_of(&std::fs::read_to_string(tmp.path().join("cert.pem")).unwrap());
    assert_eq!(Https::open(&ca.pem(), s.addr, BOTH).await.cert, back);
}

#[tokio::test]
async fn the_redirect_listener_sends_plain_http_to_https_on_the_same_host_and_path() {
    // With hosts named (the public origin's, the apps'), the redirect
    // goes only to those.
    let (s, ca, _tmp) = tls_server(
        "public_origin = \"https://gatehouse.test\"",
        "[[apps]]\nname = \"app\"\nhost = \"app.test\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .await;
    let plain = s.redirect_addr.expect("a redirect listener");
    let get = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let a = crate::harness::raw(plain, get("/sessions?x=1", "gatehouse.test:80").as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 301"), "{a}");
    // The public origin is https on 443: no port in the location.
    assert!(
        a.to_ascii_lowercase()
            .contains("\r\nlocation: https://gatehouse.test/sessions?x=1\r\n"),
        "{a}"
    );
    let post =
        "POST /login HTTP/1.1\r\nHost: App.Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let a = crate::harness::raw(plain, post.as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 308"), "{a}");
    assert!(
        a.to_ascii_lowercase()
            .contains("\r\nlocation: https://app.test/login\r\n"),
        "{a}"
    );
    // A host gatehouse does not serve is not sent anywhere.
    let a = crate::harness::raw(plain, get("/", "evil.example").as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    assert!(!a.to_ascii_lowercase().contains("location"), "{a}");
    // The TLS listener still answers.
    let a = Https::open(&ca.pem(), s.addr, BOTH)
        .await
        .get("/healthz")
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn without_named_hosts_the_redirect_keeps_the_clients_host_and_the_tls_port() {
    let (s, _ca, _tmp) = tls_server("", "").await;
    let plain = s.redirect_addr.unwrap();
    let req = format!(
        "GET /a/b HTTP/1.1\r\nHost: {NAME}:{}\r\nConnection: close\r\n\r\n",
        plain.port()
    );
    let a = crate::harness::raw(plain, req.as_bytes()).await;
    assert!(a.starts_with("HTTP/1.1 301"), "{a}");
    let want = format!("\r\nlocation: https://{NAME}:{}/a/b\r\n", s.addr.port());
    assert!(a.to_ascii_lowercase().contains(&want), "{a}");
}
