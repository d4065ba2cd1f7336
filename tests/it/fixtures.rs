//! Data written by an earlier build, used by this one: the data dir in
//! `tests/fixtures/factors/` (see `tests/fixtures/README.md`) holds alice
//! with a password hash, an authenticator app (its secret sealed under the
//! checked-in `secrets.key`), recovery codes and a passkey, all as an
//! earlier build stored them. Each must still sign her in.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use gatehouse::identity::soft_passkey::SoftPasskey;
use gatehouse::store::{Backend, BackendConfig, FactorStore};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{App, begin_totp, confirm_totp, json_client, passkey_post, post, sign_in, verify};
use crate::harness::*;

/// What the fixture's files do not say by themselves: the secrets a person
/// and their devices hold, and the stored credential as the build that
/// wrote it serialised it.
#[derive(Serialize, Deserialize)]
struct Facts {
    written_by: String,
    written_ms: u64,
    user: String,
    password: String,
    /// The PHC string, at the default (production) argon2 parameters.
    password_hash: String,
    /// The authenticator app's secret, in base32.
    totp_secret: String,
    recovery_code: String,
    passkey: PasskeyFacts,
}

#[derive(Serialize, Deserialize)]
struct PasskeyFacts {
    /// The software authenticator's private key, base64url.
    secret: String,
    credential_id: String,
    user_handle: String,
    counter: u32,
    /// The credential bytes as stored (the library's serialised passkey).
    stored: String,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/factors")
}

/// alice only, with `hash` and cheap hashing for new hashes (a stored hash
/// is verified at its own parameters).
fn config(hash: &str) -> String {
    format!(
        "bind = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\n\
         [argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nadmin = true\n"
    )
}

fn origin(s: &TestServer) -> String {
    format!("http://localhost:{}", s.addr.port())
}

/// A passkey ceremony with the soft passkey: `{kind}/start`, then its
/// answer to `{kind}/finish` (beside the fields of `extra`); returns the
/// finish's response.
async fn ceremony(
    c: &reqwest::Client,
    s: &TestServer,
    soft: &mut SoftPasskey,
    kind: &str,
    extra: Value,
) -> reqwest::Response {
    let r = passkey_post(c, s, &format!("{kind}/start"), json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let options: Value = r.json().await.unwrap();
    let answer = if kind.ends_with("/register") {
        soft.register(&options, &origin(s))
    } else {
        soft.assert(&options, &origin(s))
    };
    let mut body = extra;
    body["credential"] = answer;
    passkey_post(c, s, &format!("{kind}/finish"), body).await
}

/// Signs in with the soft passkey alone; returns the status.
async fn passkey_alone(c: &reqwest::Client, s: &TestServer, soft: &mut SoftPasskey) -> StatusCode {
    ceremony(c, s, soft, "/login/passkey/discover", json!({}))
        .await
        .status()
}

async fn alices_credential(db: &Path) -> Vec<u8> {
    let backend = Backend::open_read_only(&BackendConfig::redb(db)).unwrap();
    let set = backend.factors("alice").await.unwrap();
    assert_eq!(set.passkeys.len(), 1);
    set.passkeys[0].credential.clone()
}

/// Writes `tests/fixtures/factors/` with the current build: the server's
/// data dir after alice enrolled an authenticator app and a passkey and
/// signed in once with it. Run by hand, only to make a new fixture:
/// `cargo test --test it fixtures::write_factors_fixture -- --ignored`.
#[tokio::test]
#[ignore = "writes tests/fixtures/factors; run by hand"]
async fn write_factors_fixture() {
    use gatehouse::config::Argon2Settings;
    use gatehouse::identity::totp::TotpSecret;
    let password = "alice-fixture-pw";
    let hash =
        gatehouse::server::password::hash_password(password, &Argon2Settings::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), &config(&hash)).await;
    let c = json_client();
    // The authenticator app, the first factor: it brings recovery codes.
    let (st, _) = sign_in(&c, &s, "alice", password).await;
    assert_eq!(st, StatusCode::OK);
    let (app, _) = begin_totp(&c, &s, json!({})).await;
    let done = confirm_totp(&c, &s, &app, 0).await;
    let recovery_code = done["recovery_codes"][0].as_str().unwrap().to_string();
    // The passkey.
    let mut soft = SoftPasskey::generate();
    let r = ceremony(
        &c,
        &s,
        &mut soft,
        "/api/v1/mfa/passkeys/register",
        json!({"name": "fixture key"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Used once, so the stored credential is one the server rewrote.
    assert_eq!(
        passkey_alone(&json_client(), &s, &mut soft).await,
        StatusCode::OK
    );
    s.stop().await;

    let db = tmp.path().join(gatehouse::config::DB_FILE);
    let stored = String::from_utf8(alices_credential(&db).await).unwrap();
    let facts = Facts {
        written_by: format!(
            "gatehouse {} at schema {} (webauthn-rs 0.5, redb 4), by the ignored test \
             fixtures::write_factors_fixture",
            env!("CARGO_PKG_VERSION"),
            gatehouse_migrations::LATEST
        ),
        written_ms: gatehouse::store::now_ms(),
        user: "alice".into(),
        password: password.into(),
        password_hash: hash,
        totp_secret: TotpSecret::from_bytes(app.0.clone()).unwrap().base32(),
        recovery_code,
        passkey: PasskeyFacts {
            secret: B64U.encode(soft.secret()),
            credential_id: B64U.encode(soft.credential_id()),
            user_handle: B64U.encode(soft.user_handle()),
            counter: soft.counter(),
            stored,
        },
    };
    let out = fixture_dir();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&db, out.join(gatehouse::config::DB_FILE)).unwrap();
    let key = gatehouse::identity::secret_box::KEY_FILE;
    std::fs::copy(tmp.path().join(key), out.join(key)).unwrap();
    let mut text = serde_json::to_string_pretty(&facts).unwrap();
    text.push('\n');
    std::fs::write(out.join("facts.json"), text).unwrap();
}

/// The fixture's data dir, served by this build: alice signs in with her
/// password and her authenticator app, with her passkey alone, with her
/// password and her passkey, and with a recovery code; the passkey's
/// stored credential is rewritten on use and keeps working; the file
/// verifies.
#[tokio::test]
async fn an_earlier_builds_factors_still_sign_in() {
    use std::os::unix::fs::PermissionsExt;
    let facts: Facts =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("facts.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = gatehouse::identity::secret_box::KEY_FILE;
    for f in [gatehouse::config::DB_FILE, key] {
        std::fs::copy(fixture_dir().join(f), tmp.path().join(f)).unwrap();
    }
    // Git keeps no mode but the executable bit; the server refuses an
    // exposed key.
    std::fs::set_permissions(tmp.path().join(key), PermissionsExt::from_mode(0o600)).unwrap();
    let db = tmp.path().join(gatehouse::config::DB_FILE);
    // Upgraded to the current schema first (a read-only open refuses an
    // older one), and read before a server holds the file for itself.
    let (backend, task) = Backend::open(&BackendConfig::redb(&db)).unwrap();
    task.shutdown().await.unwrap();
    backend.close().unwrap();
    assert_eq!(
        alices_credential(&db).await,
        facts.passkey.stored.as_bytes(),
        "the fixture's database and facts.json disagree"
    );
    let s = TestServer::start_in(tmp.path(), &config(&facts.password_hash)).await;
    let (user, pw) = (facts.user.as_str(), facts.password.as_str());

    // The argon2 hash and the sealed TOTP secret.
    let c = json_client();
    let (st, body) = sign_in(&c, &s, user, pw).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["second_factor_required"], json!(true), "{body}");
    assert_eq!(verify(&c, &s, None).await, StatusCode::UNAUTHORIZED);
    let app = App::new(&facts.totp_secret);
    // The next step's code: accepted within the skew, and later than the
    // step the writer used even when this runs right after writing.
    let (st, body) = post(&c, &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(verify(&c, &s, None).await, StatusCode::OK);

    // The stored passkey, alone.
    let p = &facts.passkey;
    let mut soft = SoftPasskey::from_parts(
        &B64U.decode(&p.secret).unwrap(),
        B64U.decode(&p.credential_id).unwrap(),
        B64U.decode(&p.user_handle).unwrap(),
        p.counter,
    )
    .unwrap();
    let c = json_client();
    assert_eq!(passkey_alone(&c, &s, &mut soft).await, StatusCode::OK);
    assert_eq!(verify(&c, &s, None).await, StatusCode::OK);

    // After the password, with the credential as this build rewrote it.
    let c = json_client();
    let (st, _) = sign_in(&c, &s, user, pw).await;
    assert_eq!(st, StatusCode::OK);
    let r = ceremony(&c, &s, &mut soft, "/login/passkey", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(verify(&c, &s, None).await, StatusCode::OK);

    // A recovery code.
    let c = json_client();
    let (st, _) = sign_in(&c, &s, user, pw).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = post(
        &c,
        &s,
        "/login/recovery",
        json!({"code": facts.recovery_code}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.stop().await;

    assert_ne!(
        alices_credential(&db).await,
        facts.passkey.stored.as_bytes()
    );
    let store = gatehouse::store::Store::open_read_only(&db, &Default::default()).unwrap();
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
