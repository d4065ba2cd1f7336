//! gatehouse as the https front door, in Chromium: `[tls]` on port 0 with
//! a certificate from a CA made here, and an app on its own host
//! (`notes.test`, which Chromium resolves to loopback by a resolver rule).
//!
//! Chromium trusts the certificate through
//! `--ignore-certificate-errors-spki-list` (its key's SHA-256, with the
//! test's own profile): that makes this one key valid, as a trusted CA
//! would, and no other certificate error is ignored. So the browser treats
//! the site as it treats a real one: it keeps `Secure` and `__Host-`
//! cookies, records HSTS (which it ignores on a connection with a
//! certificate error) and allows WebAuthn (which it refuses there).

use std::time::Duration;

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::network::{CookieSameSite, EventRequestWillBeSent};
use futures_util::StreamExt;
use rcgen::PublicKeyData;
use sha2::Digest;

use super::{Chrome, Tab, notes_app, session_cookie};
use crate::harness::*;
use crate::tls::{Ca, write_atomic};

/// The apps' hosts.
const NOTES: &str = "notes.test";
const WIKI: &str = "wiki.test";

/// A TLS server with a redirect listener, and what the browser needs to
/// trust it.
struct Site {
    server: TestServer,
    /// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo.
    pin: String,
    _dir: tempfile::TempDir,
}

impl Site {
    /// `[tls]` with a certificate for both apps' hosts and
    /// `http_redirect_bind`, plus `sections`.
    async fn start(sections: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = Ca::new("gatehouse browser test CA").issue(&[NOTES, WIKI]);
        write_atomic(&dir.path().join("cert.pem"), cert.as_bytes());
        write_atomic(&dir.path().join("key.pem"), key.as_bytes());
        let spki = rcgen::KeyPair::from_pem(&key)
            .unwrap()
            .subject_public_key_info();
        let pin = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki));
        let config = config_text(
            "",
            &format!(
                "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
                 http_redirect_bind = \"127.0.0.1:0\"\n\n{sections}"
            ),
        );
        let server = TestServer::start_in(dir.path(), &config).await;
        Site {
            server,
            pin,
            _dir: dir,
        }
    }

    /// Chromium sending every `*.test` name to loopback and trusting this
    /// site's certificate key.
    async fn chrome(&self, test: &str) -> Option<Chrome> {
        Chrome::launch_with(
            test,
            &[
                ("host-resolver-rules", "MAP *.test 127.0.0.1"),
                ("ignore-certificate-errors-spki-list", &self.pin),
            ],
        )
        .await
    }

    /// `https://<host>:<port>` of the TLS listener.
    fn https(&self, host: &str) -> String {
        format!("https://{host}:{}", self.server.addr.port())
    }
}

/// An `[[apps]]` entry for `host`, proxied to `upstream`.
fn app(name: &str, host: &str, upstream: std::net::SocketAddr) -> String {
    format!("[[apps]]\nname = \"{name}\"\nhost = \"{host}\"\nupstream = \"http://{upstream}\"\n\n")
}

/// Goes to `url`, which ends at `last`, and returns every redirect the
/// browser reported on the way, as (status, `Non-Authoritative-Reason`)
/// pairs.
async fn goto_seeing_redirects(tab: &Tab, url: &str, last: &str) -> Vec<(i64, String)> {
    let mut events = tab
        .page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .unwrap();
    tab.goto(url).await;
    let mut seen = Vec::new();
    let collect = async {
        // The request for `last` is the final one, and carries the
        // redirect that led to it.
        while let Some(e) = events.next().await {
            if let Some(r) = &e.redirect_response {
                let reason = r
                    .headers
                    .inner()
                    .get("Non-Authoritative-Reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                seen.push((r.status, reason));
            }
            if e.request.url == last {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .unwrap_or_else(|_| panic!("no request for {last}"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_browser_is_sent_to_https_and_signs_in_with_a_host_cookie_and_hsts() {
    let test = "over_tls_the_browser_is_sent_to_https_and_signs_in_with_a_host_cookie_and_hsts";
    let notes = notes_app().await;
    let site = Site::start(&app("notes", NOTES, notes)).await;
    let Some(chrome) = site.chrome(test).await else {
        return;
    };
    let https = site.https(NOTES);
    let port = site.server.addr.port();
    let plain = site
        .server
        .redirect_addr
        .expect("a redirect listener")
        .port();
    let app_url = format!("{https}/notes/today?view=list");
    let tab = chrome.tab().await;

    // Before any https visit, plain http to the TLS port gets nothing a
    // browser can show: what turns it into https later is HSTS.
    let before = tab
        .page
        .goto(format!("http://{NOTES}:{port}/notes/early"))
        .await;
    assert!(before.is_err(), "plain http on the TLS port loaded a page");

    // Typed as plain http: the redirect listener sends it to https on the
    // same host and path, where signing in happens under the prefix.
    tab.goto(&format!("http://{NOTES}:{plain}/notes/today?view=list"))
        .await;
    let at = tab.url().await;
    assert!(
        at.starts_with(&format!("{https}/.gatehouse/login?rd=")),
        "{at}"
    );
    assert_eq!(tab.eval("window.isSecureContext").await, true);
    tab.check_page("login-over-tls").await;

    tab.fill("#username", "bob").await;
    tab.fill("#password", BOB_PW).await;
    tab.click_and_wait("form[action='/.gatehouse/login'] button[type=submit]")
        .await;
    assert_eq!(tab.url().await, app_url);
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    let sent = tab.text_of("#cookies").await.unwrap_or_default();
    assert!(!sent.contains("gatehouse_session"), "{sent}");

    // The cookie as the browser keeps it: `__Host-` (https, no
    // cookie_domain), so `Secure`, host-only and on `/`; never sent over
    // plain http, and not readable by the app's scripts.
    let c = session_cookie(&tab).await.expect("a session cookie");
    assert_eq!(c.name, "__Host-gatehouse_session");
    assert!(c.secure, "{c:?}");
    assert!(c.http_only, "{c:?}");
    assert_eq!((c.domain.as_str(), c.path.as_str()), (NOTES, "/"));
    assert_eq!(c.same_site, Some(CookieSameSite::Lax));
    assert!(
        c.session,
        "no remember-me: the cookie ends with the browser"
    );
    assert_eq!(tab.eval("document.cookie").await, "");

    // HSTS was recorded: plain http to the same host is now turned into
    // https by the browser itself (an internal 307), before any request
    // leaves it, and the signed-in session carries on.
    let later = format!("{https}/notes/later");
    let redirects =
        goto_seeing_redirects(&tab, &format!("http://{NOTES}:{port}/notes/later"), &later).await;
    assert!(
        redirects.contains(&(307, "HSTS".to_string())),
        "{redirects:?}"
    );
    assert_eq!(tab.url().await, later);
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    tab.assert_clean("after signing in over TLS");
}

/// Signs out through the sign-out page on `site` (`https://host:port`).
async fn sign_out(tab: &Tab, site: &str) {
    tab.goto(&format!("{site}/.gatehouse/logout")).await;
    tab.click_and_wait("form[action='/.gatehouse/logout'] button")
        .await;
    let at = tab.url().await;
    assert!(at.starts_with(&format!("{site}/.gatehouse/login")), "{at}");
}

/// Types bob's password into the sign-in form on an app's host.
async fn password_on_app_host(tab: &Tab) {
    tab.fill("#username", "bob").await;
    tab.fill("#password", BOB_PW).await;
    tab.click_and_wait("form[action='/.gatehouse/login'] button[type=submit]")
        .await;
}

/// Passkeys on an app's own host from the single binary: no
/// `public_origin`, the relying party is the host the browser is on. A
/// passkey registered on `notes.test` signs in there, alone and after
/// the password, and lands on the app; `wiki.test`, another app's host,
/// is a party of its own, where that passkey is not offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_made_on_an_apps_own_host_over_tls_signs_in_there_and_only_there() {
    let test = "a_passkey_made_on_an_apps_own_host_over_tls_signs_in_there_and_only_there";
    let notes = notes_app().await;
    let site = Site::start(&format!(
        "{}{}",
        app("notes", NOTES, notes),
        app("wiki", WIKI, notes)
    ))
    .await;
    let Some(chrome) = site.chrome(test).await else {
        return;
    };
    let https = site.https(NOTES);
    let app_url = format!("{https}/notes/today");
    let tab = chrome.tab().await;
    let authenticator = tab.add_virtual_authenticator().await;

    // The sign-in page on the app's host offers a passkey beside the
    // password.
    tab.goto(&app_url).await;
    assert_eq!(tab.count("[data-passkey=sign-in]").await, 1);
    password_on_app_host(&tab).await;
    assert_eq!(tab.url().await, app_url);

    // Registered from the security page on this host: the first factor,
    // so its recovery codes are shown once.
    tab.goto(&format!("{https}/.gatehouse/account/security"))
        .await;
    tab.fill("#passkey-name", "Laptop").await;
    tab.eval("document.querySelector('[data-passkey=register]').click()")
        .await;
    super::factors::wait_for(
        &tab,
        "!document.querySelector('[data-passkey-codes]').hidden",
    )
    .await;
    let shown = tab
        .eval("document.querySelectorAll('[data-passkey-codes] ol code').length")
        .await;
    assert_eq!(shown.as_u64(), Some(10));
    tab.click_and_wait("[data-passkey-continue]").await;
    assert!(tab.text().await.contains("Laptop"), "{}", tab.text().await);
    tab.check_page("security-passkey-on-app-host").await;
    let held = tab.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].rp_id.as_deref(), Some(NOTES));
    assert!(held[0].is_resident_credential);

    // Alone: no name, no password, and on to the app asked for.
    sign_out(&tab, &https).await;
    tab.goto(&app_url).await;
    tab.click_and_wait("[data-passkey=sign-in]").await;
    assert_eq!(tab.url().await, app_url, "{}", tab.text().await);
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));

    // After the password, the passkey is the second step.
    sign_out(&tab, &https).await;
    tab.goto(&app_url).await;
    password_on_app_host(&tab).await;
    let at = tab.url().await;
    assert!(
        at.starts_with(&format!("{https}/.gatehouse/login/second-factor")),
        "{at}"
    );
    tab.click_and_wait("[data-passkey=sign-in]").await;
    assert_eq!(tab.url().await, app_url, "{}", tab.text().await);
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    tab.assert_clean("after passkeys on the app's host");

    // Another app's host is another party: the passkey is not offered
    // there, so nobody is signed in by it.
    let wiki = site.https(WIKI);
    tab.goto(&format!("{wiki}/")).await;
    let login = tab.url().await;
    assert!(
        login.starts_with(&format!("{wiki}/.gatehouse/login")),
        "{login}"
    );
    tab.eval("document.querySelector('[data-passkey=sign-in]').click()")
        .await;
    super::factors::wait_for(
        &tab,
        "!document.querySelector('[data-passkey-error]').hidden",
    )
    .await;
    let said = tab.text_of("[data-passkey-error]").await.unwrap();
    assert!(said.contains("cancelled"), "{said}");
    assert_eq!(tab.url().await, login);
    assert!(
        tab.cookies()
            .await
            .iter()
            .all(|c| !c.name.ends_with("gatehouse_session")),
        "a session on {WIKI}"
    );
}
