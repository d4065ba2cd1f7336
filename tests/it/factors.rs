//! Second factors through the real server, as a JSON client does them:
//! TOTP enrollment, the pending step that `/auth/verify` never accepts,
//! replay, recovery codes, bans after bad codes, required enrollment,
//! step-up for a `two_factor` rule, the recent-factor rule for removal,
//! the administrator's reset, backups that hold no readable secret, and
//! Basic passwords, which never stand in for a second factor.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{
    App, audit, backup, begin_totp, confirm_totp, enroll, get_json, json_client, kinds,
    passkey_post, post, restore, sign_in, verify,
};
use crate::harness::*;

/// bob's factors are gone: his password alone signs him in, and one
/// `mfa.reset` names `actor`.
async fn assert_factors_were_reset(s: &TestServer, actor: &str) {
    let (st, body) = sign_in(&json_client(), s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.get("second_factor_required").is_none(), "{body}");
    let resets = kinds(s, "mfa.reset").await;
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(resets[0]["details"]["actor"], actor);
}

#[tokio::test]
async fn totp_sign_in_is_two_steps_and_codes_are_used_once() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    // Enrolling does not make the running session a two-factor one.
    c.post(s.at("/logout")).send().await.unwrap();

    let c = json_client();
    let (st, body) = sign_in(&c, &s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["second_factor_required"], json!(true), "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    // The pending state is not a session.
    assert_eq!(verify(&c, &s, None).await, StatusCode::UNAUTHORIZED);
    let r = c.get(s.at("/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The code used to confirm enrollment is spent.
    let (st, _) = post(&c, &s, "/login/totp", json!({"code": app.code(0)})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // One step of skew is accepted, and signs in.
    let next = app.code(1);
    let (st, ok) = post(&c, &s, "/login/totp", json!({"code": next})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(ok["methods"], json!(["password", "totp"]));
    assert_eq!(verify(&c, &s, None).await, StatusCode::OK);
    let me = get_json(&c, &s, "/api/v1/session").await;
    assert_eq!(
        me["session"]["methods"],
        json!(["password", "totp"]),
        "{me}"
    );
    assert!(me["session"]["second_factor_ms"].as_u64().is_some(), "{me}");

    // The same code again, in another sign-in: refused (replay).
    let other = json_client();
    sign_in(&other, &s, "bob", BOB_PW).await;
    let (st, _) = post(&other, &s, "/login/totp", json!({"code": next})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(verify(&other, &s, None).await, StatusCode::UNAUTHORIZED);
    // Two steps away is outside the skew.
    let (st, _) = post(&other, &s, "/login/totp", json!({"code": app.code(3)})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let failures = kinds(&s, "mfa.failure").await;
    let reasons: Vec<&str> = failures
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["wrong", "replayed", "replayed"], "{failures:?}");
    let success = kinds(&s, "mfa.success").await;
    assert_eq!(success.len(), 1);
    assert_eq!(success[0]["details"]["method"], "totp");
    let enrolled = kinds(&s, "mfa.enrolled").await;
    assert_eq!(enrolled.len(), 1);
    // No event carries a secret or a code.
    let all = audit(&s, "limit=500").await;
    let text = all.to_string();
    assert!(!text.contains(&next), "a code reached the audit trail");
    let metrics = metrics_text(&s).await;
    for line in [
        "gatehouse_second_factor_attempts_total{method=\"totp\",result=\"success\"} 1",
        "gatehouse_second_factor_attempts_total{method=\"totp\",result=\"failure\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    s.stop().await;
}

/// Signing in again right after a sign-in, with the code just used: the
/// answer says the code was used (not "Wrong code."), and however often it
/// is retried, it counts toward a ban once for its step. Other failures
/// still count: after the one replay, four wrong codes reach the limit.
#[tokio::test]
async fn a_replayed_code_says_so_and_counts_once_per_step() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    c.post(s.at("/logout")).send().await.unwrap();
    // A sign-in with a code: its step is now used.
    let c = json_client();
    sign_in(&c, &s, "bob", BOB_PW).await;
    let used = app.code(1);
    let (st, body) = post(&c, &s, "/login/totp", json!({"code": used})).await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // Again at once, with the same code, more often than `max_failures`.
    let again = json_client();
    let (st, _) = sign_in(&again, &s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    for i in 0..7 {
        let (st, body) = post(&again, &s, "/login/totp", json!({"code": used})).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "try {i}: {body}");
        assert_eq!(
            body["error"], "This code was already used. Wait for the next one.",
            "try {i}"
        );
    }
    // The page says the same.
    let browser = client();
    let r = login(&browser, &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = browser
        .post(s.at("/login/totp"))
        .form(&[("code", used.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("This code was already used. Wait for the next one."),
        "{page}"
    );
    assert!(!page.contains("Wrong code."), "{page}");

    // Every replay is in the trail; those after the first say they were
    // not counted.
    let failures = kinds(&s, "mfa.failure").await;
    let replays: Vec<&Value> = failures
        .iter()
        .filter(|e| e["details"]["reason"] == "replayed")
        .collect();
    assert_eq!(replays.len(), 8, "{failures:?}");
    let uncounted = replays
        .iter()
        .filter(|e| e["details"]["counted"] == "false")
        .count();
    assert_eq!(uncounted, 7, "{failures:?}");
    // One failure counted so far: four wrong codes reach the limit of five.
    for i in 0..4 {
        let (st, body) = post(&again, &s, "/login/totp", json!({"code": "12345x"})).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong {i}: {body}");
    }
    let (st, body) = post(&again, &s, "/login/totp", json!({"code": "12345x"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");

    s.stop().await;
}

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_the_count_drops() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    let (_, codes) = enroll(&c, &s, "bob", BOB_PW).await;
    let c = json_client();
    sign_in(&c, &s, "bob", BOB_PW).await;
    let (st, ok) = post(&c, &s, "/login/recovery", json!({"code": codes[3]})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(ok["methods"], json!(["password", "recovery_code"]));
    assert_eq!(ok["recovery_codes_left"], json!(9));
    let r = get_json(&c, &s, "/api/v1/mfa").await;
    assert_eq!(r["recovery_codes_left"], json!(9));
    let c2 = json_client();
    sign_in(&c2, &s, "bob", BOB_PW).await;
    let (st, _) = post(&c2, &s, "/login/recovery", json!({"code": codes[3]})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let used = kinds(&s, "mfa.recovery_used").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0]["details"]["remaining"], "9");
    s.stop().await;
}

#[tokio::test]
async fn bad_codes_ban_like_bad_passwords() {
    let s = TestServer::start(&config_text("", "[regulation]\nmax_failures = 3\n")).await;
    let c = json_client();
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    let c = json_client();
    sign_in(&c, &s, "bob", BOB_PW).await;
    for _ in 0..3 {
        let (st, _) = post(&c, &s, "/login/totp", json!({"code": "123456"})).await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::TOO_MANY_REQUESTS,
            "{st}"
        );
    }
    // Banned: even the right code is refused, with Retry-After.
    let r = c
        .post(s.at("/login/totp"))
        .json(&json!({"code": app.code(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    // A right password in between does not clear the count.
    let (st, _) = sign_in(&json_client(), &s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Basic {b64}")
}

/// `/auth/verify` with a Basic credential, from a client with no cookies.
async fn verify_basic(s: &TestServer, user: &str, pw: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(s.at("/auth/verify"))
        .header("authorization", basic(user, pw))
        .send()
        .await
        .unwrap()
}

/// A 401 whose body says to use an access token: a right password that
/// is not enough on its own.
async fn assert_token_needed(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("remote-user").is_none());
    let body = r.text().await.unwrap();
    assert!(body.contains("use an access token"), "{body}");
}

#[tokio::test]
async fn a_basic_password_never_skips_a_second_factor() {
    let s = TestServer::start(&config_text("", "[tokens]\nbasic_auth_passwords = true\n")).await;
    // Cached as right while bob has no factor yet.
    assert_eq!(
        verify_basic(&s, "bob", BOB_PW).await.status(),
        StatusCode::OK
    );
    enroll(&json_client(), &s, "bob", BOB_PW).await;
    // With TOTP, the form asks for a second step; Basic cannot give one,
    // so the password alone is refused, from the cache and after hashing.
    assert_token_needed(verify_basic(&s, "bob", BOB_PW).await).await;
    assert_token_needed(verify_basic(&s, "bob", BOB_PW).await).await;
    // A wrong password still looks like any wrong password.
    let wrong = verify_basic(&s, "bob", "nope").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.text().await.unwrap().contains("access token"));
    // alice has no factor: a password is enough for her.
    let r = verify_basic(&s, "alice", ALICE_PW).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["remote-user"], "alice");
    s.stop().await;

    // A user who must have a second factor, and has none yet, is refused
    // too: the form would send them to enroll.
    let s = TestServer::start(&config_text(
        "",
        "[tokens]\nbasic_auth_passwords = true\n[second_factor]\nrequired = true\n",
    ))
    .await;
    assert_token_needed(verify_basic(&s, "alice", ALICE_PW).await).await;
    assert_token_needed(verify_basic(&s, "alice", ALICE_PW).await).await;
    s.stop().await;
}

#[tokio::test]
async fn a_right_basic_password_does_not_clear_failed_codes() {
    let s = TestServer::start(&config_text(
        "",
        "[tokens]\nbasic_auth_passwords = true\n\
         [regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n",
    ))
    .await;
    enroll(&json_client(), &s, "bob", BOB_PW).await;
    let c = json_client();
    sign_in(&c, &s, "bob", BOB_PW).await;
    for _ in 0..2 {
        let (st, _) = post(&c, &s, "/login/totp", json!({"code": "123456"})).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The right password in Basic between the codes: it must not forget
    // bob's two failures.
    let between = verify_basic(&s, "bob", BOB_PW).await;
    let (st, _) = post(&c, &s, "/login/totp", json!({"code": "123456"})).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::TOO_MANY_REQUESTS,
        "{st}"
    );
    // Three failed codes: bob is banned. Seen from another address, so
    // that it is bob's ban and not this address's.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = login(&elsewhere, &s, "bob", BOB_PW, &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a right Basic password cleared bob's failed codes"
    );
    assert_token_needed(between).await;
    s.stop().await;
}

#[tokio::test]
async fn a_required_factor_is_enrolled_before_anything_else() {
    let s = TestServer::start(&config_text("", "[second_factor]\nrequired = true\n")).await;
    let c = json_client();
    let (st, body) = sign_in(&c, &s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["enrollment_required"], json!(true), "{body}");
    assert_eq!(verify(&c, &s, None).await, StatusCode::UNAUTHORIZED);
    let r = c.get(s.at("/api/v1/sessions")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (app, _) = begin_totp(&c, &s, json!({})).await;
    let done = confirm_totp(&c, &s, &app, 0).await;
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(verify(&c, &s, None).await, StatusCode::OK);
    let me = get_json(&c, &s, "/api/v1/session").await;
    assert_eq!(me["user"], "bob", "{me}");
    s.stop().await;
}

const TRUSTED: &str = "trusted_proxies = [\"127.0.0.1\"]";

const TWO_FACTOR_RULES: &str = r#"
[[rules]]
domains = ["code.example.com"]
policy = "two_factor"
"#;

#[tokio::test]
async fn a_two_factor_rule_steps_a_session_up_and_keeps_its_place() {
    let s = TestServer::start(&config_text(TRUSTED, TWO_FACTOR_RULES)).await;
    let c = json_client();
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    let app_url = "https://code.example.com/x";
    // A password-only session: fine for other apps, not for this one.
    assert_eq!(
        verify(&c, &s, Some("https://wiki.example.com/")).await,
        StatusCode::OK
    );
    assert_eq!(
        verify(&c, &s, Some(app_url)).await,
        StatusCode::UNAUTHORIZED
    );
    let before = get_json(&c, &s, "/api/v1/sessions").await;
    // Removing a factor needs a recent second factor: the API says so, the
    // page's form sends the browser to the second step, which comes back.
    let r = c.delete(s.at("/api/v1/mfa/totp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(s.at("/account/security/totp/remove"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/login/second-factor?rd=%2Faccount%2Fsecurity"
    );
    let r = get_json(&c, &s, "/api/v1/mfa").await;
    assert_eq!(r["totp"], json!(true), "nothing was removed");

    let old = c.get(s.at("/api/v1/session")).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::OK);
    let (st, ok) = post(&c, &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(verify(&c, &s, Some(app_url)).await, StatusCode::OK);
    let after = get_json(&c, &s, "/api/v1/sessions").await;
    let ids = |v: &Value| -> Vec<String> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&before), ids(&after), "the session keeps its place");
    // Now recent: removal works.
    let r = c.delete(s.at("/api/v1/mfa/totp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let removed = kinds(&s, "mfa.removed").await;
    assert_eq!(removed.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_old_token_ends_when_a_session_steps_up() {
    let s = TestServer::start(&config_text(TRUSTED, TWO_FACTOR_RULES)).await;
    let c = client();
    let r = login(&c, &s, "bob", BOB_PW, &[]).await;
    let old = token_of(&r).unwrap();
    let jc = json_client();
    let cookie = format!("gatehouse_session={old}");
    let r = jc
        .post(s.at("/api/v1/mfa/totp"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let app = App::new(r.json::<Value>().await.unwrap()["secret"].as_str().unwrap());
    let r = jc
        .post(s.at("/api/v1/mfa/totp/confirm"))
        .header("cookie", &cookie)
        .json(&json!({"code": app.code(0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The login page sends a one-factor session on its way to the app to
    // the second step.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.at("/login?rd=%2Fsessions"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "not a two-factor target");
    let r = jc
        .post(s.at("/login/totp"))
        .header("cookie", &cookie)
        .json(&json!({"code": app.code(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let new = token_of(&r).unwrap();
    assert_ne!(new, old);
    let check = |t: String| {
        let s = &s;
        async move {
            forwarded(
                reqwest::Client::new()
                    .get(s.at("/auth/verify"))
                    .header("cookie", format!("gatehouse_session={t}")),
                "GET",
                "https://code.example.com/",
            )
            .send()
            .await
            .unwrap()
            .status()
        }
    };
    assert_eq!(check(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(check(new).await, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn an_administrator_resets_a_lost_factor_through_the_socket() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    enroll(&c, &s, "bob", BOB_PW).await;
    let dir = s.dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        gatehouse::server::ops::admin::request(&dir, "POST", "/users/reset-second-factor?user=bob")
    })
    .await
    .unwrap()
    .unwrap()
    .expect("the server's admin socket answers");
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(
        out.body.contains("removed every second factor of bob"),
        "{}",
        out.body
    );
    assert_factors_were_reset(&s, "admin-socket").await;
    s.stop().await;
}

/// A backup holds the sealed TOTP secret but not the key: with any other
/// key (a restored backup without `secrets.key`) nothing opens, and the
/// backup's directory has no key file.
#[tokio::test]
async fn a_backup_without_the_key_has_no_readable_secret() {
    use gatehouse::identity::secret_box::{KEY_FILE, SecretBox};
    use gatehouse::store::{Backend, BackendConfig, FactorStore};
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    assert!(s.dir.join(KEY_FILE).exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.dir.join(KEY_FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("backup.redb");
    // Off the test's runtime: `auditctl backup` records its event through
    // the server's admin socket, which this runtime serves.
    let auditctl = |args: Vec<std::ffi::OsString>| {
        let dir = s.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_auditctl"))
                .arg("--data-dir")
                .arg(&dir)
                .env_remove("GATEHOUSE_DATA_DIR")
                .args(args)
                .output()
                .unwrap()
        })
    };
    let o = auditctl(vec!["backup".into(), dest.clone().into()])
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // `auditctl verify` checks the second-factor tables and counts them.
    let v = auditctl(vec!["verify".into()]).await.unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{text}");
    assert!(
        text.contains("factors     1 users with second factors"),
        "{text}"
    );
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!names.iter().any(|n| n == KEY_FILE), "{names:?}");
    let backup = Backend::open_read_only(&BackendConfig::redb(&dest)).unwrap();
    let set = backup.factors("bob").await.unwrap();
    let sealed = set.totp.expect("the backup has bob's factor").sealed;
    let stranger = SecretBox::from_key(&[7; 32]).unwrap();
    assert!(stranger.open("totp", "bob", &sealed).is_err());
    // The secret's bytes are nowhere in the file in the clear.
    let bytes = std::fs::read(&dest).unwrap();
    assert!(!bytes.windows(app.0.len()).any(|w| w == app.0.as_slice()));
    // With the server's key it opens: the sealing is what protects it.
    let key = std::fs::read(s.dir.join(KEY_FILE)).unwrap();
    let ours = SecretBox::from_key(&key).unwrap();
    assert_eq!(ours.open("totp", "bob", &sealed).unwrap(), app.0);
    s.stop().await;
}

/// A backup restored with its key and config on a second server: bob signs
/// in there with his password and his authenticator app, and a recovery
/// code still works once, as on the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_with_its_key_signs_in_with_password_and_totp() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    let (app, codes) = enroll(&c, &s, "bob", BOB_PW).await;
    let out = tempfile::tempdir().unwrap();
    let snapshot = out.path().join("snap.redb");
    let printed = backup(&s.dir, &snapshot).await;
    assert!(printed.contains("secrets.key"), "{printed}");
    assert!(
        printed.contains("recorded a backup.created event through the running server"),
        "{printed}"
    );

    let second = tempfile::tempdir().unwrap();
    let r = restore(&s.dir, &snapshot, second.path()).await;
    s.stop().await;
    let c = json_client();
    let (st, body) = sign_in(&c, &r, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["second_factor_required"], json!(true), "{body}");
    // The secret opens with the restored key: the app's next code works.
    let (st, ok) = post(&c, &r, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(verify(&c, &r, None).await, StatusCode::OK);
    let c = json_client();
    sign_in(&c, &r, "bob", BOB_PW).await;
    let (st, ok) = post(&c, &r, "/login/recovery", json!({"code": codes[0]})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    // The backup's own event was recorded after its snapshot: not in it.
    let backups = kinds(&r, "backup.created").await;
    assert!(backups.is_empty(), "{backups:?}");
    r.stop().await;
}

/// With the server stopped, the reset writes the database itself, audited
/// with the operator's name.
#[tokio::test]
async fn the_reset_works_on_a_stopped_server_too() {
    use gatehouse::store::{
        AuditStore, Backend, BackendConfig, EventFilter, EventKind, FactorStore,
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), &config_text("", "")).await;
    let c = json_client();
    enroll(&c, &s, "bob", BOB_PW).await;
    s.stop().await;
    let dir = tmp.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["users", "--data-dir"])
            .arg(&dir)
            .arg("--config")
            .arg(dir.join("gatehouse.toml"))
            .args(["reset-second-factor", "bob"])
            .env("USER", "operator")
            .env_remove("GATEHOUSE_DATA_DIR")
            .env_remove("GATEHOUSE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("removed every second factor of bob"),
        "{text}"
    );
    let db =
        Backend::open_read_only(&BackendConfig::redb(tmp.path().join("gatehouse.redb"))).unwrap();
    assert!(!db.factors("bob").await.unwrap().any());
    let filter = EventFilter {
        kinds: vec![EventKind::MfaReset],
        ..EventFilter::default()
    };
    let page = db.query_events(&filter, 10, None).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(
        page.events[0]
            .details
            .iter()
            .any(|(k, v)| k == "actor" && v == "operator"),
        "{:?}",
        page.events[0]
    );
}

/// A name that leaves the config takes its factors with it: whoever gets
/// the name next does not inherit the last person's authenticator or
/// passkeys (which could sign in alone).
#[tokio::test]
async fn a_removed_user_leaves_no_factor_to_the_next_holder_of_the_name() {
    let good = config_text("", "");
    let s = TestServer::start(&good).await;
    let path = s.dir.join("gatehouse.toml");
    let c = json_client();
    enroll(&c, &s, "bob", BOB_PW).await;
    let without_bob = good
        .split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, &without_bob).unwrap();
    s.reloader.reload().await.unwrap();
    std::fs::write(&path, &good).unwrap();
    s.reloader.reload().await.unwrap();
    assert_factors_were_reset(&s, "reload").await;
    s.stop().await;
}

/// The error text of a refused request.
async fn refusal(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    body["error"].as_str().unwrap().to_string()
}

/// A session signed in with the password alone cannot add a factor for a
/// user who has one, not even with the password: a stolen session would
/// otherwise register a passkey that outlives it (and signs in alone,
/// after `revoke-all` and a password change). A second factor in that
/// session first, and it can.
#[tokio::test]
async fn adding_a_factor_to_one_who_has_one_needs_a_recent_second_factor() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    // A fresh sign-in adds the first factor with nothing more.
    let (app, _) = enroll(&c, &s, "bob", BOB_PW).await;
    // The same session, signed in with the password alone.
    for body in [json!({}), json!({"password": BOB_PW})] {
        let r = passkey_post(&c, &s, "/api/v1/mfa/passkeys/register/start", body).await;
        let text = refusal(r, StatusCode::FORBIDDEN).await;
        assert!(text.contains("second factor"), "{text}");
        assert!(text.contains("/login/second-factor"), "{text}");
    }
    let r = passkey_post(&c, &s, "/api/v1/mfa/totp", json!({})).await;
    let text = refusal(r, StatusCode::FORBIDDEN).await;
    assert!(text.contains("second factor"), "{text}");
    let r = c.get(s.at("/api/v1/mfa")).send().await.unwrap();
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["passkeys"], json!([]), "{status}");
    // A second factor in this session: now it may.
    let (st, ok) = post(&c, &s, "/login/totp", json!({"code": app.code(1)})).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    let r = passkey_post(&c, &s, "/api/v1/mfa/passkeys/register/start", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let options: Value = r.json().await.unwrap();
    assert!(options["publicKey"]["challenge"].is_string(), "{options}");
    s.stop().await;
}

/// A user with no factor yet, whose sign-in is no longer recent (here
/// `recent_secs = 0`: never), adds the first one only with the current
/// password, checked as the sign-in form checks it: a wrong one counts
/// toward a ban and is audited as a failed login. A fresh sign-in needs
/// nothing more; confirming needs nothing more; once the user has a
/// factor, the password is no longer enough.
#[tokio::test]
async fn a_first_factor_needs_the_password_once_the_sign_in_is_not_recent() {
    // A fresh sign-in (the default `recent_secs`) adds one without it.
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    sign_in(&c, &s, "bob", BOB_PW).await;
    begin_totp(&c, &s, json!({})).await;
    let r = passkey_post(&c, &s, "/api/v1/mfa/passkeys/register/start", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A registration is finished only by the session that started it
    // (and gave the proof), even one holding the ceremony's cookie.
    let ceremony = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        ceremony.starts_with("gatehouse_session_webauthn="),
        "{ceremony}"
    );
    let other = token_of(&login(&client(), &s, "bob", BOB_PW, &[]).await).unwrap();
    let r = reqwest::Client::new()
        .post(s.at("/api/v1/mfa/passkeys/register/finish"))
        .header("host", format!("localhost:{}", s.addr.port()))
        .header("cookie", format!("gatehouse_session={other}; {ceremony}"))
        .json(&json!({"name": "k", "credential": {"id": "AAAA", "type": "public-key"}}))
        .send()
        .await
        .unwrap();
    let text = refusal(r, StatusCode::BAD_REQUEST).await;
    assert!(text.contains("start again"), "{text}");
    s.stop().await;

    let s = TestServer::start(&config_text(
        "",
        "[second_factor]\nrecent_secs = 0\n[regulation]\nmax_failures = 2\n",
    ))
    .await;
    let c = json_client();
    let (st, _) = sign_in(&c, &s, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    // Without the password: 403, naming what to send.
    let (st, body) = post(&c, &s, "/api/v1/mfa/totp", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let text = body["error"].as_str().unwrap();
    assert!(text.contains("\"password\""), "{text}");
    let r = passkey_post(&c, &s, "/api/v1/mfa/passkeys/register/start", json!({})).await;
    let text = refusal(r, StatusCode::FORBIDDEN).await;
    assert!(text.contains("\"password\""), "{text}");
    // A wrong one: 403, a failed login.
    let (st, body) = post(&c, &s, "/api/v1/mfa/totp", json!({"password": "guess"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains("guess"), "{body}");
    // The right one: the enrollment starts, and its confirmation needs no
    // password again.
    let (app, _) = begin_totp(&c, &s, json!({"password": BOB_PW})).await;
    let r = passkey_post(
        &c,
        &s,
        "/api/v1/mfa/passkeys/register/start",
        json!({"password": BOB_PW}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    confirm_totp(&c, &s, &app, 0).await;
    // bob has a factor now: his password no longer proves anything here.
    let r = passkey_post(
        &c,
        &s,
        "/api/v1/mfa/passkeys/register/start",
        json!({"password": BOB_PW}),
    )
    .await;
    let text = refusal(r, StatusCode::FORBIDDEN).await;
    assert!(text.contains("second factor"), "{text}");
    // The wrong password was a failed login: audited, logged for fail2ban
    // and counted.
    let failures = kinds(&s, "login.failure").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["user"], "bob");
    assert_eq!(failures[0]["details"]["via"], "add_factor");
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("gatehouse_login_attempts_total{outcome=\"failure\"} 1"),
        "{metrics}"
    );
    // Counted toward a ban: one more wrong one from this address (alice,
    // who has no factor either) reaches the limit of 2, and then even a
    // right one is refused.
    let alice = json_client();
    sign_in(&alice, &s, "alice", ALICE_PW).await;
    let (st, _) = post(&alice, &s, "/api/v1/mfa/totp", json!({"password": "guess"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let r = passkey_post(
        &alice,
        &s,
        "/api/v1/mfa/totp",
        json!({"password": ALICE_PW}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_passkey_starts_cannot_push_out_anothers() {
    let s = TestServer::start(&config_text("", "")).await;
    // Someone about to sign in with a passkey alone.
    let real = json_client();
    let r = passkey_post(&real, &s, "/login/passkey/discover/start", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A flood from one other address, past the global cap of 1,024.
    let flooder = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut refused = 0;
    for _ in 0..1_100 {
        let r = passkey_post(&flooder, &s, "/login/passkey/discover/start", json!({})).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let after: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=300).contains(&after), "{after}");
            refused += 1;
        } else {
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    // The first ceremony is still there: its finish gets as far as the
    // credential (a made-up one here), not "start again".
    let r = passkey_post(
        &real,
        &s,
        "/login/passkey/discover/finish",
        json!({"credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key"}}),
    )
    .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(!text.contains("start again"), "pushed out: {text}");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert_eq!(refused, 1_100 - 16, "16 open per client");
    s.stop().await;
}

/// Hostile or broken input on every second-factor endpoint is a clear 4xx,
/// never a 5xx, and never echoes what was sent.
#[tokio::test]
async fn broken_second_factor_requests_get_clear_refusals() {
    let s = TestServer::start(&config_text("", "")).await;
    let c = json_client();
    enroll(&c, &s, "bob", BOB_PW).await;
    let pending = json_client();
    sign_in(&pending, &s, "bob", BOB_PW).await;
    let long = "9".repeat(5000);
    let bodies: Vec<(&str, &str, String)> = vec![
        (
            "/login/totp",
            "application/json",
            json!({"code": long}).to_string(),
        ),
        (
            "/login/totp",
            "application/json",
            "{\"code\": 123456}".into(),
        ),
        ("/login/totp", "application/json", "{not json".into()),
        ("/login/totp", "text/plain", "code=1".into()),
        (
            "/login/recovery",
            "application/json",
            json!({"code": "\u{0}\u{7f}"}).to_string(),
        ),
        (
            "/login/passkey/finish",
            "application/json",
            json!({"credential": {"id": "x"}}).to_string(),
        ),
        (
            "/login/passkey/discover/finish",
            "application/json",
            json!({"credential": "nope"}).to_string(),
        ),
        (
            "/api/v1/mfa/passkeys/register/finish",
            "application/json",
            json!({"name": "k", "credential": []}).to_string(),
        ),
        (
            "/api/v1/mfa/totp/confirm",
            "application/json",
            json!({"code": long}).to_string(),
        ),
    ];
    for who in [&pending, &c, &json_client()] {
        for (path, ct, body) in &bodies {
            let r = who
                .post(s.at(path))
                .header("content-type", *ct)
                .header("host", format!("localhost:{}", s.addr.port()))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(status.is_client_error(), "{path} {body}: {status} {text}");
            assert!(!text.contains(&long), "{path}: echoed the input");
        }
    }
    s.stop().await;
}
