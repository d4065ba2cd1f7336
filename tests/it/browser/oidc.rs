//! The OpenID Connect provider in Chromium, with an app written here as
//! its relying party ([`Notes`]): a confidential client on loopback that
//! starts the code flow (PKCE S256, `state`, `nonce`), exchanges the code
//! on its own server, checks the ID token against the JWKS, and keeps the
//! back-channel logout tokens it receives.
//!
//! The walks: a sign-in with a password and an authenticator app, consent,
//! and the way back to the app; the app listed under the session and among
//! the connected apps; the sign-out heard by the app, and a second sign-in
//! that goes straight back. A password-only session stepped up, consent
//! refused, given, then withdrawn. A request with an unregistered
//! `redirect_uri` and a user the client does not admit, each answered by a
//! gatehouse page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Chrome, Tab, sign_in};
use crate::api::App;
use crate::harness::*;
use crate::oidc::SECRET;

/// The client's id.
const CLIENT: &str = "notes";

/// The event a logout token must carry (Back-Channel Logout 1.0 §2.4).
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Most authorization requests the app keeps open, and logout tokens and
/// refusals it records: a test makes a handful.
const KEPT: usize = 32;

/// An authorization request the app started and awaits the answer of.
struct Pending {
    verifier: String,
    nonce: String,
}

/// An error answer the app received on its callback.
#[derive(Debug, Clone)]
struct Refusal {
    error: String,
    /// The `state` came back and names a request the app started.
    state_known: bool,
    iss: Option<String>,
}

/// What the app knows and has seen.
#[derive(Default)]
struct Seen {
    pending: HashMap<String, Pending>,
    /// The claims of the last ID token, checked.
    id_claims: Option<Value>,
    refusals: Vec<Refusal>,
    logout_tokens: Vec<String>,
}

/// The relying party: gatehouse's issuer, its own origin, what it has seen.
#[derive(Clone)]
struct Notes {
    issuer: String,
    origin: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

impl Notes {
    /// Starts the app on loopback for `issuer`; returns it and its address.
    async fn start(issuer: &str) -> (Notes, SocketAddr) {
        // The router needs the app's origin, known once it listens: the
        // listener is bound first, the router served on it after.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let notes = Notes {
            issuer: issuer.to_string(),
            origin: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            seen: Arc::default(),
        };
        let router = Router::new()
            .route("/", get(begin))
            .route("/cb", get(callback))
            .route("/backchannel", post(backchannel))
            .with_state(notes.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (notes, addr)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

/// A random base64url string of `n` bytes.
fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    B64.encode(b)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A page of the app.
fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><title>Notes</title><link rel=icon href=data:,>\
         <h1 id=app>Notes</h1>{body}"
    );
    (status, Html(html)).into_response()
}

/// `GET /`: sends the browser to gatehouse with a new request.
async fn begin(State(n): State<Notes>) -> Response {
    let (state, nonce, verifier) = (random(16), random(16), random(32));
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    {
        let mut seen = n.seen();
        if seen.pending.len() >= KEPT {
            return page(StatusCode::SERVICE_UNAVAILABLE, "<p>Too many sign-ins.</p>");
        }
        seen.pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce: nonce.clone(),
            },
        );
    }
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", &format!("{}/cb", n.origin))
        .append_pair("scope", "openid profile email")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    Redirect::to(&format!("{}/oidc/authorize?{q}", n.issuer)).into_response()
}

/// `GET /cb`: the authorization response.
async fn callback(State(n): State<Notes>, Query(q): Query<HashMap<String, String>>) -> Response {
    let pending = q.get("state").and_then(|s| n.seen().pending.remove(s));
    if let Some(error) = q.get("error") {
        let mut seen = n.seen();
        if seen.refusals.len() < KEPT {
            seen.refusals.push(Refusal {
                error: error.clone(),
                state_known: pending.is_some(),
                iss: q.get("iss").cloned(),
            });
        }
        let body = format!("<p id=refused>Not signed in: {}</p>", escape(error));
        return page(StatusCode::OK, &body);
    }
    match finish(&n, &q, pending).await {
        Ok(claims) => {
            let user = claims["preferred_username"]
                .as_str()
                .unwrap_or("")
                .to_string();
            n.seen().id_claims = Some(claims);
            let body = format!(
                "<p id=who>Signed in as <span id=user>{}</span></p>",
                escape(&user)
            );
            page(StatusCode::OK, &body)
        }
        Err(why) => page(
            StatusCode::BAD_REQUEST,
            &format!("<p id=failed>{}</p>", escape(&why)),
        ),
    }
}

/// Checks the response and exchanges its code: the ID token's claims.
async fn finish(
    n: &Notes,
    q: &HashMap<String, String>,
    pending: Option<Pending>,
) -> Result<Value, String> {
    let pending = pending.ok_or("the state names no request of ours")?;
    if q.get("iss") != Some(&n.issuer) {
        return Err(format!("iss is {:?}", q.get("iss")));
    }
    let code = q.get("code").ok_or("no code")?;
    let redirect_uri = format!("{}/cb", n.origin);
    let r = n
        .http
        .post(format!("{}/oidc/token", n.issuer))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &pending.verifier),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let tokens: Value = r.json().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("the token endpoint said {status}: {tokens}"));
    }
    let id_token = tokens["id_token"].as_str().ok_or("no id_token")?;
    let claims = verified(n, id_token).await?;
    let now = gatehouse::store::now_ms() / 1000;
    let checks = [
        (claims["iss"] == n.issuer.as_str(), "iss"),
        (claims["aud"] == CLIENT, "aud"),
        (claims["nonce"] == pending.nonce.as_str(), "nonce"),
        (claims["exp"].as_u64().is_some_and(|e| e > now), "exp"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("the ID token's {what} is wrong: {claims}")),
        None => Ok(claims),
    }
}

/// The claims of `jws` once its RS256 signature verifies with a key of
/// gatehouse's JWKS (checked here, not with gatehouse's own code).
async fn verified(n: &Notes, jws: &str) -> Result<Value, String> {
    let jwks: Value = n
        .http
        .get(format!("{}/oidc/jwks", n.issuer))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    verify_with(&jwks, jws)
}

fn verify_with(jwks: &Value, jws: &str) -> Result<Value, String> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, sig] = parts[..] else {
        return Err(format!("not a JWS: {jws}"));
    };
    let decode = |s: &str| B64.decode(s).map_err(|e| e.to_string());
    let json = |s: &str| -> Result<Value, String> {
        serde_json::from_slice(&decode(s)?).map_err(|e| e.to_string())
    };
    let header = json(h)?;
    if header["alg"] != "RS256" {
        return Err(format!("alg is {}", header["alg"]));
    }
    let key = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == header["kid"]))
        .ok_or_else(|| format!("no key {} in the JWKS", header["kid"]))?;
    let component = |name: &str| decode(key[name].as_str().unwrap_or(""));
    let public = RsaPublicKeyComponents {
        n: component("n")?,
        e: component("e")?,
    };
    public
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{p}").as_bytes(),
            &decode(sig)?,
        )
        .map_err(|_| "the signature does not verify".to_string())?;
    json(p)
}

/// `POST /backchannel`: a logout token, kept as it came.
async fn backchannel(State(n): State<Notes>, Form(f): Form<HashMap<String, String>>) -> StatusCode {
    let Some(token) = f.get("logout_token") else {
        return StatusCode::BAD_REQUEST;
    };
    let mut seen = n.seen();
    if seen.logout_tokens.len() >= KEPT {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    seen.logout_tokens.push(token.clone());
    StatusCode::OK
}

/// gatehouse for `notes`: the issuer is its own loopback URL; `notes` is
/// confidential, asks two factors and consent, admits bob only, and is told
/// of sign-outs on its back channel.
async fn gatehouse_and_notes() -> (TestServer, Notes, SocketAddr) {
    let port = crate::proxy::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (notes, app) = Notes::start(&issuer).await;
    let hash = gatehouse::config::oidc::hash_secret(SECRET);
    let client = format!(
        "[[oidc.clients]]\nid = \"{CLIENT}\"\nname = \"Notes\"\nsecret_hash = \"{hash}\"\n\
         redirect_uris = [\"http://{app}/cb\"]\n\
         backchannel_logout_uri = \"http://{app}/backchannel\"\n\
         scopes = [\"openid\", \"profile\", \"email\"]\n\
         policy = \"two_factor\"\nconsent = \"explicit\"\nsubjects = [\"user:bob\"]\n"
    );
    let text = config_text(
        &format!("bind = \"127.0.0.1:{port}\"\npublic_origin = \"{issuer}\""),
        &client,
    )
    .replacen("bind = \"127.0.0.1:0\"\n", "", 1);
    let s = TestServer::start(&text).await;
    assert_eq!(s.url, issuer);
    (s, notes, app)
}

/// bob with an authenticator app, set up through the API; its codes from
/// the next step on are unused.
async fn bob_with_an_app(s: &TestServer) -> App {
    use crate::api::{begin_totp, confirm_totp, json_client};
    let c = json_client();
    let (st, _) = crate::api::sign_in(&c, s, "bob", BOB_PW).await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let (app, _) = begin_totp(&c, s, serde_json::json!({})).await;
    confirm_totp(&c, s, &app, -1).await;
    app
}

/// From the app's start page to gatehouse's consent page: bob's password,
/// then his authenticator app's current code.
async fn sign_in_from_the_app(tab: &Tab, s: &TestServer, app: SocketAddr, totp: &App) {
    tab.goto(&format!("http://{app}/")).await;
    let url = tab.url().await;
    assert!(url.starts_with(&s.at("/login?rd=")), "{url}");
    sign_in(tab, "bob", BOB_PW, false).await;
    let url = tab.url().await;
    assert!(url.starts_with(&s.at("/login/second-factor?rd=")), "{url}");
    tab.fill("#code", &totp.code(0)).await;
    tab.click_and_wait("form[action='/login/totp'] button")
        .await;
    assert_on_consent(tab, s).await;
}

/// The tab shows gatehouse's consent page for Notes.
async fn assert_on_consent(tab: &Tab, s: &TestServer) {
    let url = tab.url().await;
    assert!(url.starts_with(&s.at("/oidc/authorize?")), "{url}");
    let text = tab.text().await;
    assert!(text.contains("Allow Notes?"), "{text}");
}

/// Waits (bounded) until `f` finds something in what the app has seen.
async fn app_hears<T>(notes: &Notes, f: impl Fn(&Seen) -> Option<T>) -> T {
    let wait = async {
        loop {
            if let Some(t) = f(&notes.seen()) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the app never heard it")
}

/// The app's rows on the security page.
async fn connected(tab: &Tab) -> usize {
    tab.count(&format!("#apps li[data-app={CLIENT}]")).await
}

/// The whole way: the app's start page, gatehouse's sign-in with the
/// password and the authenticator app, consent, the app signed in as bob
/// with a two-factor ID token; the session and the security page name the
/// app; signing out on the sessions page sends the app a logout token for
/// that session, signed with a key of the JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_signs_in_through_gatehouse_with_a_second_factor_and_hears_the_sign_out() {
    let test = "an_app_signs_in_through_gatehouse_with_a_second_factor_and_hears_the_sign_out";
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let (s, notes, app) = gatehouse_and_notes().await;
    let totp = bob_with_an_app(&s).await;

    // The app sends the browser to gatehouse: password, code, consent.
    let tab = chrome.tab().await;
    sign_in_from_the_app(&tab, &s, app, &totp).await;
    let text = tab.text().await;
    assert!(text.contains("your user name and display name"), "{text}");
    assert!(text.contains("your email address"), "{text}");
    tab.check_page("oidc-consent").await;
    tab.click_and_wait("button[name=decision][value=allow]")
        .await;

    // Back on the app, which exchanged the code and checked the ID token.
    let url = tab.url().await;
    assert!(url.starts_with(&format!("http://{app}/cb?")), "{url}");
    assert_eq!(
        tab.text_of("#user").await.as_deref(),
        Some("bob"),
        "{}",
        tab.text().await
    );
    let claims = notes.seen().id_claims.clone().unwrap();
    assert_eq!(claims["acr"], "urn:gatehouse:2fa", "{claims}");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"pwd") && amr.contains(&"otp"), "{claims}");
    let sid = claims["sid"].as_str().unwrap().to_string();
    let sub = claims["sub"].as_str().unwrap().to_string();
    assert_ne!(sub, "bob", "sub is opaque");
    tab.assert_clean("back on the app");

    // gatehouse lists the app under the session, and among connected apps.
    tab.goto(&s.at("/sessions")).await;
    let text = tab.text().await;
    assert!(text.contains("Signed in to Notes"), "{text}");
    tab.goto(&s.at("/account/security")).await;
    assert_eq!(connected(&tab).await, 1, "{}", tab.text().await);
    let row = tab
        .text_of(&format!("#apps li[data-app={CLIENT}]"))
        .await
        .unwrap();
    assert!(row.contains("Notes"), "{row}");
    assert!(row.contains("signed in from 1 session"), "{row}");
    tab.check_page("oidc-connected-apps").await;

    // Signing out on the sessions page: the app hears it on its back channel.
    tab.goto(&s.at("/sessions")).await;
    tab.click_and_wait(".actions form[action='/logout'] button")
        .await;
    assert!(tab.url().await.starts_with(&s.at("/login")));
    let token = app_hears(&notes, |seen| seen.logout_tokens.first().cloned()).await;
    let jwks: Value = client()
        .get(s.at("/oidc/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logout = verify_with(&jwks, &token).unwrap_or_else(|e| panic!("{e}: {token}"));
    assert_eq!(logout["iss"], s.url.as_str(), "{logout}");
    assert_eq!(logout["aud"], CLIENT, "{logout}");
    assert_eq!(logout["sid"], sid.as_str(), "{logout}");
    assert_eq!(logout["sub"], sub.as_str(), "{logout}");
    assert!(logout["events"][BACKCHANNEL_EVENT].is_object(), "{logout}");
    assert!(logout.get("nonce").is_none(), "{logout}");
    // The send is audited once the app has answered; alice, an admin,
    // reads the trail.
    let admin = client();
    login(&admin, &s, "alice", ALICE_PW, &[]).await;
    let audited = async {
        loop {
            let found =
                crate::api::get_json(&admin, &s, "/api/v1/audit?kind=oidc.logout_sent").await;
            let events = found["events"].as_array().cloned().unwrap_or_default();
            if !events.is_empty() {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let sent = tokio::time::timeout(Duration::from_secs(30), audited)
        .await
        .expect("the send was never audited");
    assert_eq!(sent[0]["details"]["outcome"], "delivered", "{sent:?}");
    assert_eq!(
        notes.seen().logout_tokens.len(),
        1,
        "one token per sign-out"
    );
    tab.assert_clean("after signing out");

    // Signing in again from the app: consent is remembered, so the second
    // step's form leads through the authorization endpoint straight back to
    // the app (the page's `form-action` must name the app's origin).
    tab.goto(&format!("http://{app}/")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    tab.fill("#code", &totp.code(1)).await;
    tab.click_and_wait("form[action='/login/totp'] button")
        .await;
    let url = tab.url().await;
    assert!(url.starts_with(&format!("http://{app}/cb?")), "{url}");
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));
    let again = notes.seen().id_claims.clone().unwrap();
    assert_eq!(again["sub"], sub.as_str(), "{again}");
    assert_ne!(again["sid"], sid.as_str(), "a new session: {again}");
    tab.assert_clean("signed in again at the app");
}

/// A password-only session meets the two-factor client and takes the
/// second step; Deny sends the app `access_denied` with its `state` and
/// `iss`; Allow is remembered until Disconnect on the security page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_refused_then_given_then_withdrawn() {
    let Some(chrome) = Chrome::launch("consent_refused_then_given_then_withdrawn").await else {
        return;
    };
    let (s, notes, app) = gatehouse_and_notes().await;
    let tab = chrome.tab().await;
    // A session signed in with the password alone, before bob sets up his
    // authenticator app elsewhere: the app's request steps it up.
    tab.goto(&s.at("/login")).await;
    sign_in(&tab, "bob", BOB_PW, false).await;
    assert_eq!(tab.url().await, s.at("/sessions"));
    let totp = bob_with_an_app(&s).await;
    tab.goto(&format!("http://{app}/")).await;
    let url = tab.url().await;
    assert!(url.starts_with(&s.at("/login/second-factor?rd=")), "{url}");
    tab.fill("#code", &totp.code(0)).await;
    tab.click_and_wait("form[action='/login/totp'] button")
        .await;
    assert_on_consent(&tab, &s).await;

    // Deny: the app hears access_denied, with its state and the issuer.
    tab.click_and_wait("button[name=decision][value=deny]")
        .await;
    let url = tab.url().await;
    assert!(url.starts_with(&format!("http://{app}/cb?")), "{url}");
    assert!(
        tab.text().await.contains("Not signed in: access_denied"),
        "{}",
        tab.text().await
    );
    let refusals = notes.seen().refusals.clone();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].error, "access_denied");
    assert!(refusals[0].state_known, "{refusals:?}");
    assert_eq!(refusals[0].iss.as_deref(), Some(s.url.as_str()));
    assert!(notes.seen().id_claims.is_none());

    // A refusal is not remembered: asked again, and allowed.
    tab.goto(&format!("http://{app}/")).await;
    assert_on_consent(&tab, &s).await;
    tab.click_and_wait("button[name=decision][value=allow]")
        .await;
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));

    // Remembered: the next sign-in at the app does not ask.
    tab.goto(&format!("http://{app}/")).await;
    assert_eq!(tab.text_of("#user").await.as_deref(), Some("bob"));

    // Withdrawn on the security page: gone from the list, asked again.
    tab.goto(&s.at("/account/security")).await;
    assert_eq!(connected(&tab).await, 1, "{}", tab.text().await);
    tab.click_and_wait(&format!(
        "#apps li[data-app={CLIENT}] form[action='/account/apps/disconnect'] button"
    ))
    .await;
    assert_eq!(tab.url().await, s.at("/account/security#apps"));
    assert_eq!(connected(&tab).await, 0, "{}", tab.text().await);
    assert!(
        tab.text()
            .await
            .contains("No app signs in with your account."),
        "{}",
        tab.text().await
    );
    tab.goto(&format!("http://{app}/")).await;
    assert_on_consent(&tab, &s).await;
    tab.assert_clean("asked again after disconnecting");
}

/// Requests gatehouse answers itself: an unregistered `redirect_uri` gets
/// the error page (400, no navigation away), and alice, whom the client's
/// `subjects` do not name, the 403 page after her sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_redirect_and_a_user_not_admitted_see_gatehouse_pages() {
    let test = "an_unregistered_redirect_and_a_user_not_admitted_see_gatehouse_pages";
    let Some(chrome) = Chrome::launch(test).await else {
        return;
    };
    let (s, notes, app) = gatehouse_and_notes().await;
    let mut tab = chrome.tab().await;
    // The refusals below are on purpose.
    tab.expect_problem("status of 400");
    tab.expect_problem("status of 403");

    // A request naming a redirect URI the client has not registered: an
    // error page on gatehouse, nothing sent anywhere.
    let elsewhere = format!("http://{app}/elsewhere");
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", &elsewhere)
        .append_pair("scope", "openid")
        .append_pair("state", "st")
        .finish();
    let request = s.at(&format!("/oidc/authorize?{q}"));
    tab.goto(&request).await;
    assert_eq!(tab.status(), Some(400));
    assert_eq!(tab.url().await, request);
    let text = tab.text().await;
    assert!(
        text.contains("This sign-in request cannot be used"),
        "{text}"
    );
    assert!(text.contains("has not registered"), "{text}");
    tab.check_page("oidc-error").await;

    // alice is not among the client's subjects: the 403 page, after her
    // sign-in, and the app hears nothing.
    tab.goto(&format!("http://{app}/")).await;
    sign_in(&tab, "alice", ALICE_PW, false).await;
    assert_eq!(tab.status(), Some(403));
    assert!(tab.url().await.starts_with(&s.at("/oidc/authorize?")));
    let text = tab.text().await;
    assert!(text.contains("No access"), "{text}");
    assert!(text.contains("may not use Notes"), "{text}");
    tab.check_page("oidc-not-allowed").await;
    let seen = notes.seen();
    assert!(seen.id_claims.is_none() && seen.refusals.is_empty());
}
