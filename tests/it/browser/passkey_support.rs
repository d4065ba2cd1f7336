//! The passkey pieces together, before any server route uses them:
//! `identity::webauthn::Passkeys` behind a tiny local server, the embedded
//! `passkey.js` under a strict policy, and Chromium's virtual authenticator.
//! A registration, a sign-in by passkey alone and one as a second factor
//! prove that the library's options, the script's JSON and a real browser
//! agree.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use gatehouse::identity::webauthn::{Passkeys, user_handle};
use gatehouse::server::{assets, pages};
use serde_json::{Value, json};

use super::Chrome;

/// The one user of the tiny server.
const USER: &str = "alice";

/// What the tiny server keeps: the pending ceremony's state and the stored
/// passkeys, as the real store will (`credential_id`, `credential`).
struct Site {
    passkeys: Passkeys,
    registration: Option<Vec<u8>>,
    sign_in: Option<Vec<u8>>,
    second_factor: Option<Vec<u8>>,
    stored: Vec<(Vec<u8>, Vec<u8>)>,
    /// The name given at registration.
    names: Vec<String>,
    signed_in: Option<String>,
    /// How many sign-ins returned updated credential bytes.
    updates: usize,
}

type Shared = Arc<Mutex<Site>>;

fn refuse(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// The page policy the real pages use, plus scripts and fetches from 'self'.
fn csp() -> String {
    format!("{}; script-src 'self'; connect-src 'self'", pages::CSP)
}

fn page(body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>gatehouse passkeys</title>\
         <script src=\"/assets/passkey.js\" defer></script></head><body>{body}</body></html>"
    );
    let mut r = Html(html).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp()).unwrap(),
    );
    r
}

async fn home() -> Response {
    page(
        "<main><h1>Passkeys</h1>\
         <label for=passkey-name>Name</label> <input id=passkey-name value=\"Laptop\">\
         <button type=button id=register data-passkey=register data-start=/register/start \
           data-finish=/register/finish data-name-input=passkey-name data-done=/registered>Add a passkey</button>\
         <button type=button id=sign-in data-passkey=sign-in data-start=/signin/start \
           data-finish=/signin/finish data-rd=/welcome?from=passkey>Sign in with a passkey</button>\
         <button type=button id=second-factor data-passkey=sign-in data-start=/mfa/start \
           data-finish=/mfa/finish data-rd=/welcome?from=mfa>Confirm with a passkey</button>\
         <p data-passkey-error hidden></p></main>",
    )
}

async fn register_start(State(site): State<Shared>) -> Response {
    let mut s = site.lock().unwrap();
    let existing: Vec<Vec<u8>> = s.stored.iter().map(|(id, _)| id.clone()).collect();
    match s.passkeys.start_registration(USER, "Alice", &existing) {
        Ok((options, state)) => {
            s.registration = Some(state);
            Json(options).into_response()
        }
        Err(e) => refuse(e),
    }
}

async fn register_finish(State(site): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut s = site.lock().unwrap();
    let Some(state) = s.registration.take() else {
        return refuse("no registration under way");
    };
    match s.passkeys.finish_registration(&state, &body["credential"]) {
        Ok((id, credential)) => {
            if s.stored.iter().any(|(known, _)| *known == id) {
                return refuse("this passkey is already registered");
            }
            s.stored.push((id, credential));
            s.names
                .push(body["name"].as_str().unwrap_or_default().to_string());
            Json(json!({})).into_response()
        }
        Err(e) => refuse(e),
    }
}

async fn sign_in_start(State(site): State<Shared>) -> Response {
    let mut s = site.lock().unwrap();
    match s.passkeys.start_discoverable() {
        Ok((options, state)) => {
            s.sign_in = Some(state);
            Json(options).into_response()
        }
        Err(e) => refuse(e),
    }
}

async fn sign_in_finish(State(site): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut s = site.lock().unwrap();
    let Some(state) = s.sign_in.take() else {
        return refuse("no sign-in under way");
    };
    let credential = &body["credential"];
    // The owner is found by the credential id the answer claims; one user
    // here, so it is alice's when she has it.
    let Some(id) = Passkeys::credential_id_of(credential) else {
        return refuse("not a passkey answer");
    };
    if !s.stored.iter().any(|(known, _)| *known == id) {
        return refuse("unknown passkey");
    }
    let creds: Vec<Vec<u8>> = s.stored.iter().map(|(_, c)| c.clone()).collect();
    match s
        .passkeys
        .finish_discoverable(&state, credential, USER, &creds)
    {
        Ok((used, updated)) => {
            assert_eq!(used, id, "verified another credential than claimed");
            if let Some(bytes) = updated {
                s.updates += 1;
                for (known, c) in s.stored.iter_mut() {
                    if *known == used {
                        *c = bytes.clone();
                    }
                }
            }
            s.signed_in = Some(USER.to_string());
            let rd = body["rd"].as_str().unwrap_or("/welcome").to_string();
            Json(json!({ "redirect": rd })).into_response()
        }
        Err(e) => refuse(e),
    }
}

/// The second factor after a password: alice is known, her passkeys are
/// the allow-list.
async fn mfa_start(State(site): State<Shared>) -> Response {
    let mut s = site.lock().unwrap();
    let creds: Vec<Vec<u8>> = s.stored.iter().map(|(_, c)| c.clone()).collect();
    match s.passkeys.start_authentication(&creds) {
        Ok((options, state)) => {
            s.second_factor = Some(state);
            Json(options).into_response()
        }
        Err(e) => refuse(e),
    }
}

async fn mfa_finish(State(site): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut s = site.lock().unwrap();
    let Some(state) = s.second_factor.take() else {
        return refuse("no second factor under way");
    };
    let creds: Vec<Vec<u8>> = s.stored.iter().map(|(_, c)| c.clone()).collect();
    match s
        .passkeys
        .finish_authentication(&state, &body["credential"], &creds)
    {
        Ok((used, updated)) => {
            if let Some(bytes) = updated {
                s.updates += 1;
                for (known, c) in s.stored.iter_mut() {
                    if *known == used {
                        *c = bytes.clone();
                    }
                }
            }
            s.signed_in = Some(format!("{USER} (2FA)"));
            let rd = body["rd"].as_str().unwrap_or("/welcome").to_string();
            Json(json!({ "redirect": rd })).into_response()
        }
        Err(e) => refuse(e),
    }
}

async fn registered() -> Response {
    page("<main><h1>Passkey added</h1></main>")
}

async fn welcome(State(site): State<Shared>) -> Response {
    let who = site.lock().unwrap().signed_in.clone().unwrap_or_default();
    page(&format!("<main><h1>Welcome {who}</h1></main>"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registers_then_signs_in_alone_and_as_a_second_factor() {
    let Some(chrome) =
        Chrome::launch("a_passkey_registers_then_signs_in_alone_and_as_a_second_factor").await
    else {
        return;
    };
    // WebAuthn needs a secure context: http is one only on `localhost`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = format!("http://localhost:{port}");
    let site: Shared = Arc::new(Mutex::new(Site {
        passkeys: Passkeys::new(&url::Url::parse(&origin).unwrap()).unwrap(),
        registration: None,
        sign_in: None,
        second_factor: None,
        stored: Vec::new(),
        names: Vec::new(),
        signed_in: None,
        updates: 0,
    }));
    let router = Router::new()
        .route("/", get(home))
        .route("/registered", get(registered))
        .route("/welcome", get(welcome))
        .route("/assets/passkey.js", get(assets::passkey_js))
        .route("/favicon.ico", get(assets::icon))
        .route("/register/start", post(register_start))
        .route("/register/finish", post(register_finish))
        .route("/signin/start", post(sign_in_start))
        .route("/signin/finish", post(sign_in_finish))
        .route("/mfa/start", post(mfa_start))
        .route("/mfa/finish", post(mfa_finish))
        .with_state(site.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let tab = chrome.tab().await;
    let authenticator = tab.add_virtual_authenticator().await;
    tab.goto(&format!("{origin}/")).await;
    assert_eq!(tab.status(), Some(200));

    // Registration: the script asks, the authenticator makes a resident key
    // for alice, the library accepts it, the page moves on.
    tab.click_and_wait("#register").await;
    assert_eq!(
        tab.url().await,
        format!("{origin}/registered"),
        "{}",
        tab.text().await
    );
    let held = tab.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let key = &held[0];
    assert!(key.is_resident_credential, "not discoverable: {key:?}");
    assert_eq!(key.rp_id.as_deref(), Some("localhost"));
    let handle: &str = key.user_handle.as_ref().expect("a user handle").as_ref();
    assert_eq!(handle, b64(user_handle(USER).as_bytes()));
    {
        let s = site.lock().unwrap();
        assert_eq!(s.stored.len(), 1);
        let id: &str = key.credential_id.as_ref();
        assert_eq!(b64(&s.stored[0].0), id, "stored another credential id");
        assert_eq!(s.names, vec!["Laptop".to_string()]);
    }
    tab.assert_clean("after registering a passkey");

    // Sign-in by passkey alone: no name typed, no allow-list; the answer's
    // credential id finds alice, and `finish_discoverable` verifies it.
    tab.goto(&format!("{origin}/")).await;
    tab.click_and_wait("#sign-in").await;
    assert_eq!(
        tab.url().await,
        format!("{origin}/welcome?from=passkey"),
        "{}",
        tab.text().await
    );
    assert!(tab.text().await.contains("Welcome alice"));
    {
        let s = site.lock().unwrap();
        assert_eq!(s.signed_in.as_deref(), Some(USER));
        // The virtual authenticator counts signatures: the counter moved,
        // so new credential bytes came back.
        assert_eq!(s.updates, 1);
    }
    let held = tab.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].sign_count >= 1, "{held:?}");
    tab.assert_clean("after signing in with a passkey");

    // As a second factor: the allow-list of alice's passkeys, verified by
    // `finish_authentication` against the bytes the sign-in updated.
    tab.goto(&format!("{origin}/")).await;
    tab.click_and_wait("#second-factor").await;
    assert_eq!(
        tab.url().await,
        format!("{origin}/welcome?from=mfa"),
        "{}",
        tab.text().await
    );
    {
        let s = site.lock().unwrap();
        assert_eq!(s.signed_in.as_deref(), Some("alice (2FA)"));
        assert_eq!(s.updates, 2, "the counter moved again");
    }
    tab.assert_clean("after a passkey as second factor");

    // The same authenticator again: excluded, and the script says so in
    // the page, not in a dialog.
    tab.goto(&format!("{origin}/")).await;
    let before = tab.url().await;
    let el = tab.page.find_element("#register").await.unwrap();
    el.click().await.unwrap();
    let mut error = None;
    for _ in 0..200 {
        error = tab
            .text_of("[data-passkey-error]")
            .await
            .filter(|t| !t.is_empty());
        if error.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let error = error.expect("no error shown for an excluded authenticator");
    assert!(error.contains("already holds a passkey"), "{error}");
    assert_eq!(
        tab.eval("document.querySelector('[data-passkey-error]').getAttribute('role')")
            .await,
        json!("alert")
    );
    assert_eq!(tab.url().await, before);
    assert_eq!(tab.authenticator_credentials(&authenticator).await.len(), 1);
    assert_eq!(site.lock().unwrap().stored.len(), 1);
    tab.assert_clean("after an excluded registration");
}
