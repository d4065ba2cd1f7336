//! The JSON API as a client script drives it, shared by the tests of second
//! factors: a JSON client, sign-in, an authenticator app's codes and its
//! enrollment, the passkey endpoints on `localhost`, audit queries, and a
//! backup restored on a second server.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// An authenticator app: the secret from enrollment, codes at any time.
pub(crate) struct App(pub(crate) Vec<u8>);

impl App {
    /// From the secret in base32, as the API gives it or a page shows it
    /// (in groups, with spaces).
    pub(crate) fn new(base32: &str) -> App {
        let base32: String = base32.chars().filter(|c| !c.is_whitespace()).collect();
        App(totp_rs::Secret::try_from_base32(base32)
            .unwrap()
            .as_bytes()
            .to_vec())
    }

    /// The code `steps` 30-second steps from now.
    pub(crate) fn code(&self, steps: i64) -> String {
        let now = gatehouse::store::now_ms() / 1000;
        let t = (now as i64 + steps * 30) as u64;
        gatehouse::identity::totp::TotpSecret::from_bytes(self.0.clone())
            .unwrap()
            .code_at(t)
    }
}

pub(crate) fn json_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("accept", "application/json".parse().unwrap());
            h
        })
        .build()
        .unwrap()
}

pub(crate) async fn post(
    c: &reqwest::Client,
    s: &TestServer,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = c.post(s.at(path)).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `GET path`'s JSON body.
pub(crate) async fn get_json(c: &reqwest::Client, s: &TestServer, path: &str) -> Value {
    c.get(s.at(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn sign_in(
    c: &reqwest::Client,
    s: &TestServer,
    user: &str,
    pw: &str,
) -> (StatusCode, Value) {
    post(c, s, "/login", json!({"username": user, "password": pw})).await
}

pub(crate) async fn verify(c: &reqwest::Client, s: &TestServer, url: Option<&str>) -> StatusCode {
    let mut r = c.get(s.at("/auth/verify"));
    if let Some(u) = url {
        r = forwarded(r, "GET", u);
    }
    r.send().await.unwrap().status()
}

/// Begins enrolling an authenticator app in `c`'s sign-in, with `body`
/// (`{}`, or the current password); returns the app and the answer.
pub(crate) async fn begin_totp(c: &reqwest::Client, s: &TestServer, body: Value) -> (App, Value) {
    let (st, begun) = post(c, s, "/api/v1/mfa/totp", body).await;
    assert_eq!(st, StatusCode::OK, "{begun}");
    (App::new(begun["secret"].as_str().unwrap()), begun)
}

/// Confirms the enrollment `c` began with the app's code `steps` from now;
/// returns the answer, with the recovery codes.
pub(crate) async fn confirm_totp(
    c: &reqwest::Client,
    s: &TestServer,
    app: &App,
    steps: i64,
) -> Value {
    let (st, done) = post(
        c,
        s,
        "/api/v1/mfa/totp/confirm",
        json!({"code": app.code(steps)}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    done
}

/// Signs `user` in and enrolls TOTP; returns the app and the recovery codes.
pub(crate) async fn enroll(
    c: &reqwest::Client,
    s: &TestServer,
    user: &str,
    pw: &str,
) -> (App, Vec<String>) {
    let (st, _) = sign_in(c, s, user, pw).await;
    assert_eq!(st, StatusCode::OK);
    let (app, begun) = begin_totp(c, s, json!({})).await;
    let uri = begun["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/gatehouse:"), "{uri}");
    let (st, body) = post(c, s, "/api/v1/mfa/totp/confirm", json!({"code": "000000x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let done = confirm_totp(c, s, &app, 0).await;
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (app, codes)
}

/// `POST` to a passkey endpoint as the page's script does, on `localhost`
/// (passkeys need it, or an https public origin).
pub(crate) async fn passkey_post(
    c: &reqwest::Client,
    s: &TestServer,
    path: &str,
    body: Value,
) -> reqwest::Response {
    c.post(s.at(path))
        .header("host", format!("localhost:{}", s.addr.port()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The audit trail's answer to `query` (`kind=…`, `limit=…`), as alice,
/// an administrator, reads it.
pub(crate) async fn audit(s: &TestServer, query: &str) -> Value {
    let admin = client();
    login(&admin, s, "alice", ALICE_PW, &[]).await;
    get_json(&admin, s, &format!("/api/v1/audit?{query}")).await
}

/// The audit events of one kind, oldest first.
pub(crate) async fn kinds(s: &TestServer, kind: &str) -> Vec<Value> {
    audit(s, &format!("kind={kind}")).await["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// `auditctl backup` of a running server, as its operator runs it: the
/// snapshot at `dest`; its output.
pub(crate) async fn backup(data_dir: &std::path::Path, dest: &std::path::Path) -> String {
    let (dir, dest) = (data_dir.to_path_buf(), dest.to_path_buf());
    // Off the test's runtime: `auditctl backup` records its event through
    // the server's admin socket, which this runtime serves.
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditctl"))
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("GATEHOUSE_DATA_DIR")
            .arg("backup")
            .arg(&dest)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A restore as the docs tell it, into a new data dir: the snapshot as
/// `gatehouse.redb`, `secrets.key` from `from` (its mode kept) and the
/// config file's text, with which a second server then starts there.
pub(crate) async fn restore(
    from: &std::path::Path,
    snapshot: &std::path::Path,
    into: &std::path::Path,
) -> TestServer {
    use gatehouse::identity::secret_box::KEY_FILE;
    std::fs::copy(snapshot, into.join("gatehouse.redb")).unwrap();
    std::fs::copy(from.join(KEY_FILE), into.join(KEY_FILE)).unwrap();
    let config = std::fs::read_to_string(from.join("gatehouse.toml")).unwrap();
    TestServer::start_in(into, &config).await
}
