//! An independent relying party, Python's `authlib` (`rp.py` beside this
//! file), against gatehouse: discovery, the code flow with PKCE, the ID
//! token checked against the JWKS, userinfo, a refresh, and back-channel
//! logout to a receiver the script runs.
//!
//! The interpreter is `$GATEHOUSE_AUTHLIB_PYTHON`, else
//! `~/.cache/gatehouse-authlib/bin/python` (`.ci/run` installs authlib
//! there); the test is skipped when there is none, unless
//! `GATEHOUSE_REQUIRE_SERVICES=1` (then it fails).

use std::path::PathBuf;
use std::process::Stdio;

use crate::harness::{ALICE_PW, client, login};
use crate::proxy::free_port;

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("GATEHOUSE_AUTHLIB_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gatehouse-authlib/bin/python"))
        })?;
    path.is_file().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_signs_in_validates_refreshes_and_hears_the_sign_out() {
    let test = "authlib_signs_in_validates_refreshes_and_hears_the_sign_out";
    let Some(py) = python() else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but authlib is not installed \
             (GATEHOUSE_AUTHLIB_PYTHON, or ~/.cache/gatehouse-authlib; .ci/run installs it)"
        );
        eprintln!("SKIPPED {test}: authlib is not installed (run .ci/run, which installs it)");
        return;
    };
    let back_port = free_port();
    let redirect = "http://127.0.0.1:9/cb";
    let s = super::provider(
        redirect,
        Some(&format!("http://127.0.0.1:{back_port}/backchannel")),
        "",
    )
    .await;
    let input = serde_json::json!({
        "issuer": s.url,
        "client_id": "rp",
        "client_secret": super::SECRET,
        "redirect_uri": redirect,
        "username": "alice",
        "password": ALICE_PW,
        "backchannel_port": back_port,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/oidc/rp.py");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(py)
            .arg(script)
            .env("RP_INPUT", input.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the relying party did not finish")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the relying party failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(summary["email"], "alice@example.com");
    assert_eq!(summary["preferred_username"], "alice");
    assert_eq!(summary["groups"], serde_json::json!(["admin"]));
    assert_eq!(summary["acr"], "urn:gatehouse:1fa");
    let sub = summary["sub"].as_str().unwrap();
    assert_ne!(sub, "alice", "sub is opaque, not the name");

    // What the audit trail says, read by alice (an admin) in a new session.
    let c = client();
    login(&c, &s, "alice", ALICE_PW, &[]).await;
    let events = crate::api::get_json(&c, &s, "/api/v1/audit?limit=200").await;
    let kinds: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "oidc.authorized",
        "oidc.consent",
        "oidc.token",
        "oidc.refreshed",
        "oidc.logout_sent",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    let text = events.to_string();
    assert!(
        !text.contains(super::SECRET),
        "a secret reached the audit trail"
    );
    let sent = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "oidc.logout_sent")
        .unwrap();
    assert_eq!(sent["details"]["outcome"], "delivered", "{sent}");
}
