//! Second factors in the browser, on `http://localhost` (a secure context,
//! so passkeys work without https): enroll an authenticator app from the
//! security page (the test computes the codes), sign in with it, sign in
//! with a recovery code; register a passkey through Chromium's virtual
//! authenticator, use it after the password, then sign in with it alone.

use std::time::Duration;

use super::{Chrome, Tab, sign_in};
use crate::api::{App, kinds};
use crate::harness::*;

/// The server's pages as the browser reaches them: `localhost`, not the IP.
fn local(s: &TestServer, path: &str) -> String {
    format!("http://localhost:{}{path}", s.addr.port())
}

/// Waits until `js` (an expression) is true in the page.
pub(super) async fn wait_for(tab: &Tab, js: &str) {
    let wait = async {
        loop {
            if tab.eval(js).await.as_bool() == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("never true: {js}"));
}

/// On the authenticator app's enrollment page: reads the key shown as
/// text and confirms it with the app's current code; returns the app.
async fn confirm_app_on_page(tab: &Tab) -> App {
    let app = App::new(&tab.text_of("code.secret").await.unwrap());
    tab.fill("#code", &app.code(0)).await;
    tab.click_and_wait("form.stack button[type=submit]").await;
    app
}

/// At the second step: types the app's code `steps` from now.
async fn second_step_with_app(tab: &Tab, app: &App, steps: i64) {
    tab.fill("#code", &app.code(steps)).await;
    tab.click_and_wait("form[action='/login/totp'] button")
        .await;
}

/// The tab is at `path` on `s` (else the page's text says why).
async fn assert_at(tab: &Tab, s: &TestServer, path: &str) {
    assert_eq!(tab.url().await, local(s, path), "{}", tab.text().await);
}

/// Presses the page's *Add a passkey* with `name` typed, and waits for the
/// recovery codes that a first factor shows once (all 10).
async fn register_passkey_showing_codes(tab: &Tab, name: &str) {
    tab.fill("#passkey-name", name).await;
    // The script's click: the registration is fetches, not a new page.
    tab.eval("document.querySelector('[data-passkey=register]').click()")
        .await;
    wait_for(
        tab,
        "!document.querySelector('[data-passkey-codes]').hidden",
    )
    .await;
    let shown = tab
        .eval("document.querySelectorAll('[data-passkey-codes] ol code').length")
        .await;
    assert_eq!(shown.as_u64(), Some(10));
}

async fn sign_out(tab: &Tab, s: &TestServer) {
    tab.goto(&local(s, "/sessions")).await;
    tab.click_and_wait(".actions form[action='/logout'] button")
        .await;
    assert!(tab.url().await.starts_with(&local(s, "/login")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticator_app_and_a_recovery_code() {
    let Some(chrome) = Chrome::launch("an_authenticator_app_and_a_recovery_code").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;
    let tab = chrome.tab().await;
    tab.goto(&local(&s, "/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.click_and_wait("a[href='/account/security']").await;
    assert_eq!(tab.url().await, local(&s, "/account/security"));
    tab.check_page("security").await;

    // Enrollment: the QR code and the key as text; the app's first code.
    tab.click_and_wait("form[action='/account/security/totp'] button")
        .await;
    assert_eq!(tab.count("figure.qr svg").await, 1);
    // Who is signed in, and a way back without setting anything up.
    assert_eq!(
        tab.text_of("header .who").await.as_deref(),
        Some("Signed in as bob")
    );
    assert_eq!(
        tab.count("a.button.secondary[href='/account/security']")
            .await,
        1
    );
    tab.check_page("enroll-totp").await;
    let app = confirm_app_on_page(&tab).await;
    let codes: Vec<String> = serde_json::from_value(
        tab.eval("[...document.querySelectorAll('ol.codes code')].map(c => c.textContent)")
            .await,
    )
    .unwrap();
    assert_eq!(codes.len(), 10, "{}", tab.text().await);
    tab.check_page("recovery-codes").await;
    tab.click_and_wait("a.button").await;
    assert!(
        tab.text().await.contains("On since"),
        "{}",
        tab.text().await
    );

    // Signing in now takes the second step.
    sign_out(&tab, &s).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, local(&s, "/login/second-factor"));
    tab.check_page("second-factor").await;
    second_step_with_app(&tab, &app, 1).await;
    assert_at(&tab, &s, "/sessions").await;
    assert!(
        tab.text()
            .await
            .contains("with password and authenticator app")
    );

    // A recovery code instead, once.
    sign_out(&tab, &s).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.eval("document.querySelector('details').open = true")
        .await;
    tab.fill("#recovery", &codes[0]).await;
    tab.click_and_wait("form[action='/login/recovery'] button")
        .await;
    // Signed in, and told how many codes are left before going on.
    let text = tab.text().await;
    assert!(text.contains("9 recovery codes left"), "{text}");
    tab.check_page("recovery-used").await;
    tab.click_and_wait(".actions a.button:not(.secondary)")
        .await;
    assert_at(&tab, &s, "/sessions").await;
    tab.goto(&local(&s, "/account/security")).await;
    assert!(
        tab.text().await.contains("9 unused"),
        "{}",
        tab.text().await
    );
    // Signed in with a second factor just now: new codes and removal work
    // from the page without another step.
    tab.click_and_wait("form[action='/account/security/recovery'] button")
        .await;
    let fresh: Vec<String> = serde_json::from_value(
        tab.eval("[...document.querySelectorAll('ol.codes code')].map(c => c.textContent)")
            .await,
    )
    .unwrap();
    assert_eq!(fresh.len(), 10);
    assert!(!fresh.contains(&codes[1]), "the old codes are void");
    tab.click_and_wait("a.button").await;
    assert!(
        tab.text().await.contains("10 unused"),
        "{}",
        tab.text().await
    );
    tab.click_and_wait("form[action='/account/security/totp/remove'] button")
        .await;
    let text = tab.text().await;
    assert!(
        text.contains("Your authenticator app is removed."),
        "{text}"
    );
    assert!(text.contains("Not set up."), "{text}");
    tab.assert_clean("after a recovery code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_after_the_password_and_alone() {
    let Some(chrome) = Chrome::launch("a_passkey_after_the_password_and_alone").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;
    let tab = chrome.tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    tab.goto(&local(&s, "/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.goto(&local(&s, "/account/security")).await;

    // Registration: the first factor, so its recovery codes are shown once.
    register_passkey_showing_codes(&tab, "Laptop").await;
    tab.screenshot("passkey-registered-codes").await;
    tab.click_and_wait("[data-passkey-continue]").await;
    assert!(tab.text().await.contains("Laptop"), "{}", tab.text().await);
    tab.check_page("security-passkey").await;
    let held = tab.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].is_resident_credential);

    // After the password, the passkey is the second step.
    sign_out(&tab, &s).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, local(&s, "/login/second-factor"));
    tab.check_page("second-factor-passkey").await;
    tab.click_and_wait("[data-passkey=sign-in]").await;
    assert_at(&tab, &s, "/sessions").await;

    // Alone: no name, no password.
    sign_out(&tab, &s).await;
    tab.check_page("login-passkey").await;
    tab.click_and_wait("[data-passkey=sign-in]").await;
    assert_at(&tab, &s, "/sessions").await;
    assert!(tab.text().await.contains("bob"));
    tab.assert_clean("after signing in with a passkey alone");

    // Rename it, then remove it: the recovery codes go with the last factor.
    tab.goto(&local(&s, "/account/security")).await;
    tab.fill("input[name=name]", "Work laptop").await;
    tab.click_and_wait("form.inline button").await;
    assert!(tab.text().await.contains("The passkey is renamed."));
    assert!(tab.text().await.contains("Work laptop"));
    tab.click_and_wait("form[action$='/remove'] button.danger")
        .await;
    let text = tab.text().await;
    assert!(text.contains("The passkey is removed."), "{text}");
    assert!(text.contains("None registered."), "{text}");
    assert!(
        text.contains("Made when you set up your first second factor."),
        "{text}"
    );

    // The trail says how.
    let events = kinds(&s, "mfa.success").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["details"]["passkey_only"], "true");
    assert_eq!(events[1]["details"]["method"], "webauthn");
}

/// A sign-in that is not recent (here `recent_secs = 0`: never) adds a
/// first factor only with the current password: the security page asks
/// for it beside the passkey button and in the authenticator app's form.
/// Without it, or with a wrong one, the page says so; with it, the factor
/// is added. Once there is one, adding another goes through the second
/// step instead, and the page asks for no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_factor_after_an_old_sign_in_asks_for_the_password() {
    let test = "a_first_factor_after_an_old_sign_in_asks_for_the_password";
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let s = TestServer::start(&config_text("", "[second_factor]\nrecent_secs = 0\n")).await;
    let mut tab = chrome.tab().await;
    // The refusals below are on purpose.
    tab.expect_problem("status of 403");
    let authenticator = tab.add_virtual_authenticator().await;

    // alice: a passkey, with her password typed beside the button.
    tab.goto(&local(&s, "/login")).await;
    sign_in(&tab, "alice", ALICE_PW, false).await;
    tab.goto(&local(&s, "/account/security")).await;
    for field in ["#totp-password", "#passkey-password"] {
        let typed = format!("{field}[type=password][autocomplete=current-password]");
        assert_eq!(tab.count(&typed).await, 1, "{field}");
    }
    tab.check_page("security-password").await;
    tab.fill("#passkey-name", "Laptop").await;
    tab.eval("document.querySelector('[data-passkey=register]').click()")
        .await;
    wait_for(
        &tab,
        "!document.querySelector('[data-passkey-error]').hidden",
    )
    .await;
    let said = tab.text_of("[data-passkey-error]").await.unwrap();
    assert!(said.contains("password"), "{said}");
    assert!(
        tab.authenticator_credentials(&authenticator)
            .await
            .is_empty()
    );
    tab.fill("#passkey-password", ALICE_PW).await;
    register_passkey_showing_codes(&tab, "Laptop").await;
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);

    // bob: the authenticator app, through its form.
    sign_out(&tab, &s).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.goto(&local(&s, "/account/security")).await;
    tab.fill("#totp-password", "guess").await;
    tab.click_and_wait("form[action='/account/security/totp'] button")
        .await;
    assert_eq!(tab.status(), Some(403));
    let text = tab.text().await;
    assert!(text.contains("Wrong password"), "{text}");
    assert_eq!(tab.count("#totp-password[aria-invalid=true]").await, 1);
    tab.check_page("security-password-wrong").await;
    tab.fill("#totp-password", BOB_PW).await;
    tab.click_and_wait("form[action='/account/security/totp'] button")
        .await;
    assert_eq!(tab.count("figure.qr svg").await, 1, "{}", tab.text().await);
    confirm_app_on_page(&tab).await;
    let shown = tab.count("ol.codes code").await;
    assert_eq!(shown, 10, "{}", tab.text().await);
    tab.click_and_wait("a.button").await;
    let text = tab.text().await;
    assert!(text.contains("On since"), "{text}");
    // bob has a factor: another one needs a second factor first, and no
    // password is asked for.
    assert_eq!(tab.count("input[type=password]").await, 0);
    assert_eq!(tab.count("[data-passkey=register]").await, 0);
    tab.click_and_wait("a[href='/login/second-factor?rd=%2Faccount%2Fsecurity']")
        .await;
    assert!(
        tab.text().await.contains("This needs a second factor"),
        "{}",
        tab.text().await
    );
    tab.assert_clean("after adding first factors with the password");
}

/// Step-up through real nginx running the shipped `deploy/nginx.conf`: a
/// session signed in with a password, whose owner then sets up an
/// authenticator app, meets an app area that a `two_factor` rule guards. The
/// login page sends it to the second step (not to the password again), and
/// a code brings it back to the app URL, query intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_factor_app_steps_the_session_up_through_nginx() {
    use crate::proxy::{PROXY_RULES, Shipped, binary, free_port};
    let test = "a_two_factor_app_steps_the_session_up_through_nginx";
    let Some(nginx) = binary("nginx", &["/usr/sbin"]) else {
        eprintln!("SKIPPED {test}: nginx is not installed");
        return;
    };
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let (auth_port, app_port) = (free_port(), free_port());
    let config = config_text(
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\npublic_origin = \"http://127.0.0.1:{auth_port}\"\n\
             allowed_redirect_domains = [\"127.0.0.1\"]"
        ),
        &format!("[[rules]]\npaths = ['^/secure(/|$)']\npolicy = \"two_factor\"\n\n{PROXY_RULES}"),
    );
    let s = TestServer::start(&config).await;
    let app = super::serve(axum::Router::new().fallback(axum::routing::get(
        |h: axum::http::HeaderMap| async move {
            let user = h
                .get("remote-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            axum::response::Html(format!(
                "<!doctype html><title>Vault</title><link rel=icon href=data:,>\
                 <h1 id=app>Vault</h1><p id=user>{user}</p>"
            ))
        },
    )))
    .await;
    let _nginx = Shipped::nginx(&nginx, auth_port, app_port, s.addr, app).await;
    let login_site = format!("http://127.0.0.1:{auth_port}");

    // Signed in with a password, then an authenticator app set up.
    let tab = chrome.tab().await;
    tab.goto(&format!("{login_site}/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.goto(&format!("{login_site}/account/security")).await;
    tab.click_and_wait("form[action='/account/security/totp'] button")
        .await;
    let app = confirm_app_on_page(&tab).await;

    // An open area of the app lets the session in; the guarded one asks
    // for the second factor.
    tab.goto(&format!("http://127.0.0.1:{app_port}/notes"))
        .await;
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    let guarded = format!("http://127.0.0.1:{app_port}/secure/files?sort=name");
    tab.goto(&guarded).await;
    let url = tab.url().await;
    assert!(
        url.starts_with(&format!("{login_site}/login/second-factor?rd=")),
        "{url}"
    );
    assert!(tab.text().await.contains("This needs a second factor"));
    tab.check_page("step-up").await;
    second_step_with_app(&tab, &app, 1).await;
    assert_eq!(tab.url().await, guarded, "{}", tab.text().await);
    assert_eq!(tab.text_of("#app").await.as_deref(), Some("Vault"));
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    tab.assert_clean("back at the guarded app");
}

/// A required second factor, enrolled as a passkey right after the
/// password: the enrollment page's passkey button registers it, shows the
/// recovery codes once, and the way on is signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_factor_enrolled_as_a_passkey() {
    let Some(chrome) = Chrome::launch("a_required_factor_enrolled_as_a_passkey").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "[second_factor]\nrequired = true\n")).await;
    let tab = chrome.tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    tab.goto(&local(&s, "/login?rd=%2Fsessions")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert!(
        tab.url().await.starts_with(&local(&s, "/login/enroll")),
        "{}",
        tab.url().await
    );
    assert!(tab.text().await.contains("needs a second factor"));
    tab.check_page("enroll-required").await;
    // Nothing else works meanwhile.
    tab.goto(&local(&s, "/sessions")).await;
    assert!(tab.url().await.starts_with(&local(&s, "/login")));
    tab.goto(&local(&s, "/login/enroll?rd=%2Fsessions")).await;
    register_passkey_showing_codes(&tab, "Phone").await;
    tab.click_and_wait("[data-passkey-continue]").await;
    assert_at(&tab, &s, "/sessions").await;
    assert!(
        tab.text().await.contains("with a passkey")
            || tab.text().await.contains("with password and passkey")
    );
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);
    tab.assert_clean("after enrolling a required passkey");
}

/// A backup restored with `secrets.key` and the config on a second server
/// (the docs' three things): bob, who had set up an authenticator app and a
/// passkey on the first, signs in there with his password and a code, then
/// with the passkey alone, which the browser's authenticator still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_signs_in_with_every_factor() {
    use crate::api::{backup, begin_totp, confirm_totp, json_client, restore};
    use serde_json::json;
    let Some(chrome) = Chrome::launch("a_restored_backup_signs_in_with_every_factor").await else {
        return;
    };
    let s = TestServer::start(&config_text("", "")).await;

    // An authenticator app, confirmed with the code of the step before
    // this one, so that each later sign-in has a fresh step at hand.
    let c = json_client();
    let (st, _) = crate::api::sign_in(&c, &s, "bob", BOB_PW).await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let (app, _) = begin_totp(&c, &s, json!({})).await;
    confirm_totp(&c, &s, &app, -1).await;

    // A passkey, added in a session signed in with password and code.
    let tab = chrome.tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    tab.goto(&local(&s, "/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    second_step_with_app(&tab, &app, 0).await;
    assert_at(&tab, &s, "/sessions").await;
    tab.goto(&local(&s, "/account/security")).await;
    tab.fill("#passkey-name", "Laptop").await;
    tab.eval("document.querySelector('[data-passkey=register]').click()")
        .await;
    // The script reloads the page once the passkey is stored: wait through
    // that navigation (an evaluation it interrupts is tried again).
    let listed =
        "[...document.querySelectorAll('span.device')].some(e => e.textContent == 'Laptop')";
    let wait = async {
        loop {
            if let Ok(v) = tab.page.evaluate(listed).await
                && v.value().and_then(|v| v.as_bool()) == Some(true)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the passkey was never listed");
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);

    // The backup, taken while the server runs; then the browser signs out.
    let out = tempfile::tempdir().unwrap();
    let snapshot = out.path().join("snap.redb");
    let printed = backup(&s.dir, &snapshot).await;
    assert!(
        printed.contains("to restore, keep three things together"),
        "{printed}"
    );
    sign_out(&tab, &s).await;

    // Restored on a second server, in another data dir.
    let second = tempfile::tempdir().unwrap();
    let r = restore(&s.dir, &snapshot, second.path()).await;
    s.stop().await;
    tab.goto(&local(&r, "/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, local(&r, "/login/second-factor"));
    second_step_with_app(&tab, &app, 1).await;
    assert_at(&tab, &r, "/sessions").await;
    assert!(
        tab.text()
            .await
            .contains("with password and authenticator app")
    );
    sign_out(&tab, &r).await;
    // The passkey alone.
    tab.click_and_wait("[data-passkey=sign-in]").await;
    assert_at(&tab, &r, "/sessions").await;
    assert!(tab.text().await.contains("bob"));
    tab.assert_clean("signed in on the restored server");
    r.stop().await;
}
