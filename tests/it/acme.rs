//! Automatic certificates (`[tls] acme_domains`) against Debian's `pebble`
//! ACME test server, with real validation: pebble asks
//! `pebble-challtestsrv` (its mock DNS, answering 127.0.0.1 for every
//! name) where the test's name lives, and checks gatehouse's own answer
//! there: TLS-ALPN-01 on the TLS listener, or HTTP-01 on the redirect
//! listener. A client that trusts pebble's root (from its management
//! port) then gets the certificate gatehouse obtained; the account and the
//! certificate are stored owner-only, and a restart presents the stored
//! certificate with pebble gone.
//!
//! Skipped with a notice when pebble is not installed, unless
//! `GATEHOUSE_REQUIRE_SERVICES=1` (then it fails).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

use crate::harness::{TestServer, config_text};
use crate::proxy::{Proc, binary, free_port, wait_for_port};
use crate::tls::{BOTH, Ca, Https, NAME, try_tls_connect};

/// The longest wait for pebble to issue.
const ISSUE: Duration = Duration::from_secs(120);

/// A running pebble and its mock DNS.
struct Pebble {
    _pebble: Proc,
    _dns: Proc,
    /// The ACME directory URL.
    directory: String,
    /// The CA of pebble's own HTTPS (PEM), which gatehouse is told to trust.
    https_ca: String,
    /// Pebble's root, which signs the certificates it issues (PEM).
    root: String,
    _dir: tempfile::TempDir,
}

/// Starts pebble, validating on 127.0.0.1 at `tls_port` (TLS-ALPN-01) and
/// `http_port` (HTTP-01); `None` (with a notice) when it is not installed.
async fn pebble(test: &str, tls_port: u16, http_port: u16) -> Option<Pebble> {
    let found = (
        binary("pebble", &["/usr/bin"]),
        binary("pebble-challtestsrv", &["/usr/bin"]),
    );
    let (Some(pebble), Some(challtest)) = found else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but pebble is not installed"
        );
        eprintln!("SKIPPED {test}: pebble is not installed (apt-get install pebble)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    // Pebble's own HTTPS, on 127.0.0.1.
    let ca = Ca::new("pebble https CA");
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let (acme, management, dns, dns_management) =
        (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let dns_proc = Proc(
        Command::new(challtest)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut pebble_proc = Proc(
        Command::new(pebble)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for_port(acme, &mut pebble_proc).await
            && wait_for_port(management, &mut pebble_proc).await,
        "pebble did not start"
    );
    let root = https_get(&ca.pem(), management, "/roots/0").await;
    assert!(root.contains("BEGIN CERTIFICATE"), "{root}");
    Some(Pebble {
        _pebble: pebble_proc,
        _dns: dns_proc,
        directory: format!("https://127.0.0.1:{acme}/dir"),
        https_ca: ca.pem(),
        root,
        _dir: dir,
    })
}

/// `GET path` on 127.0.0.1:`port` over HTTPS, trusting `ca`; the body.
async fn https_get(ca: &str, port: u16, path: &str) -> String {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stream = crate::tls::tls_connect_to(ca, addr, "127.0.0.1", &[b"http/1.1"])
        .await
        .unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tx.send_request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The config of a server on `port` (TLS) and `http_port` (redirect) that
/// gets its certificate for [`NAME`] from `p` through `challenge`.
fn acme_config(p: &Pebble, port: u16, http_port: u16, challenge: &str) -> String {
    config_text(
        "",
        &format!(
            "[tls]\nacme_domains = [\"{NAME}\"]\nacme_directory = \"{}\"\n\
             acme_contact = \"mailto:admin@{NAME}\"\nacme_ca_file = \"pebble-https-ca.pem\"\n\
             acme_challenge = \"{challenge}\"\nhttp_redirect_bind = \"127.0.0.1:{http_port}\"\n",
            p.directory
        ),
    )
    .replacen(
        "bind = \"127.0.0.1:0\"",
        &format!("bind = \"127.0.0.1:{port}\""),
        1,
    )
}

/// Waits until the server at `addr` presents a certificate that chains to
/// `root`; returns it (DER).
async fn until_certified(root: &str, addr: SocketAddr) -> Vec<u8> {
    let started = Instant::now();
    while started.elapsed() < ISSUE {
        if let Ok(s) = try_tls_connect(root, addr, BOTH).await {
            eprintln!("certificate served {:?} after the start", started.elapsed());
            return s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no certificate from pebble within {ISSUE:?}");
}

/// A server that got its certificate from pebble by `challenge`.
struct Issued {
    p: Pebble,
    tmp: tempfile::TempDir,
    config: String,
    s: TestServer,
    /// The certificate served (DER).
    issued: Vec<u8>,
}

/// Starts pebble for `test` and a server on a fresh data dir that orders a
/// certificate by `challenge`; waits until it serves it, and checks that a
/// client trusting pebble's root reaches it. `None` when pebble is missing.
async fn issued(test: &str, challenge: &str) -> Option<Issued> {
    let (port, http_port) = (free_port(), free_port());
    let p = pebble(test, port, http_port).await?;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pebble-https-ca.pem"), &p.https_ca).unwrap();
    let config = acme_config(&p, port, http_port, challenge);
    let s = TestServer::start_in(tmp.path(), &config).await;
    let issued = until_certified(&p.root, s.addr).await;
    let mut c = Https::open(&p.root, s.addr, BOTH).await;
    assert_eq!(c.cert, issued);
    assert_eq!(c.get("/healthz").await.status, 200);
    Some(Issued {
        p,
        tmp,
        config,
        s,
        issued,
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_gets_a_certificate_stores_it_owner_only_and_a_restart_reuses_it() {
    let Some(Issued {
        p,
        tmp,
        config,
        s,
        issued,
    }) = issued(
        "tls_alpn_01_gets_a_certificate_stores_it_owner_only_and_a_restart_reuses_it",
        "tls-alpn-01",
    )
    .await
    else {
        return;
    };

    let acme = tmp.path().join("acme");
    assert_eq!(mode(&acme), 0o700);
    let account = acme.join("account.json");
    let certificate = acme.join("certificate.pem");
    assert_eq!(mode(&account), 0o600);
    assert_eq!(mode(&certificate), 0o600);
    let stored = std::fs::read_to_string(&certificate).unwrap();
    assert!(stored.contains("PRIVATE KEY"));
    assert_eq!(crate::tls::der_of(&stored), issued);
    let account_before = std::fs::read(&account).unwrap();
    s.stop().await;

    // Pebble gone: the restart can order nothing, and presents the stored
    // certificate at once.
    let root = p.root.clone();
    drop(p);
    let s = TestServer::start_in(tmp.path(), &config).await;
    let mut again = Https::open(&root, s.addr, BOTH).await;
    assert_eq!(again.cert, issued);
    assert_eq!(again.get("/healthz").await.status, 200);
    assert_eq!(std::fs::read(&account).unwrap(), account_before);
    assert_eq!(std::fs::read_to_string(&certificate).unwrap(), stored);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_on_the_redirect_listener_gets_a_certificate() {
    let Some(Issued { s, .. }) = issued(
        "http_01_on_the_redirect_listener_gets_a_certificate",
        "http-01",
    )
    .await
    else {
        return;
    };
    // Once issued, the redirect listener has no answer open: a challenge
    // path is 404, every other path a redirect.
    let plain = s.redirect_addr.unwrap();
    let a = crate::harness::raw(
        plain,
        format!("GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 404"), "{a}");
    s.stop().await;
}
