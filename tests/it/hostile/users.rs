//! Users who change: removed or re-hashed users lose their sessions, and a
//! login checked against a replaced hash gets none.

use super::*;

/// A config text without bob.
fn config_without_bob(text: &str) -> String {
    text.split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_or_changed_users_lose_their_sessions_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), &config_text("", "")).await;
    let path = s.dir.join("gatehouse.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let bob = login_token(&s, "bob", BOB_PW).await;
    let alice = login_token(&s, "alice", ALICE_PW).await;
    let cookie = |t: &str| format!("gatehouse_session={t}");

    // Bob is removed: his cookie is refused.
    let without_bob = good
        .split("[[users]]\nname = \"bob\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, &without_bob).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    // Bob comes back with the same name: the old session stays dead.
    std::fs::write(&path, &good).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify_with(&s, &cookie(&alice)).await, StatusCode::OK);

    // Alice's password changes: her sessions end.
    let new_hash = gatehouse::server::password::hash_password(
        "a new password for alice",
        &gatehouse::config::Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    let start = good.find("name = \"alice\"\npassword_hash = \"").unwrap()
        + "name = \"alice\"\npassword_hash = \"".len();
    let end = start + good[start..].find('"').unwrap();
    let changed = format!("{}{new_hash}{}", &good[..start], &good[end..]);
    std::fs::write(&path, &changed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&alice)).await,
        StatusCode::UNAUTHORIZED
    );
    // The old password no longer works, the new one does.
    assert_eq!(
        login(&bare(), &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = login_token(&s, "alice", "a new password for alice").await;
    // A reload that changes nothing keeps sessions.
    s.reloader.reload().await.unwrap();
    assert_eq!(verify_with(&s, &cookie(&fresh)).await, StatusCode::OK);

    // Removed while the server is stopped, then added back by a reload:
    // the sessions from before stay dead.
    let bob = login_token(&s, "bob", BOB_PW).await;
    let dir = s.dir.clone();
    s.stop().await;
    std::fs::write(&path, config_without_bob(&changed)).unwrap();
    let s = TestServer::start_in(&dir, &std::fs::read_to_string(&path).unwrap()).await;
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    std::fs::write(&path, &changed).unwrap();
    s.reloader.reload().await.unwrap();
    assert_eq!(
        verify_with(&s, &cookie(&bob)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify_with(&s, &cookie(&fresh)).await, StatusCode::OK);

    // The audit trail says why.
    let admin = bare();
    let ev: Value = admin
        .get(s.at("/api/v1/audit?kind=session.revoked"))
        .header("cookie", cookie(&fresh))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons = ev["events"].to_string();
    assert!(reasons.contains("user_changed"), "{reasons}");
    still_up(&s).await;
}

/// `text` with alice's password hash replaced by a hash of `password`.
fn with_alice_password(text: &str, password: &str) -> String {
    let new_hash = gatehouse::server::password::hash_password(
        password,
        &gatehouse::config::Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    let field = "name = \"alice\"\npassword_hash = \"";
    let start = text.find(field).unwrap() + field.len();
    let end = start + text[start..].find('"').unwrap();
    format!("{}{new_hash}{}", &text[..start], &text[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_checked_against_a_replaced_hash_never_yield_a_session() {
    // Room for every concurrent attempt: this test is about the reload, not
    // about the failure limit.
    let s = TestServer::start(&config_text("", "[regulation]\nmax_failures = 50\n")).await;
    let path = s.dir.join("gatehouse.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    // Several logins with the old password read the old hash, then wait at
    // the hashing gate, mid-check.
    const N: usize = 6;
    s.gate.close();
    let logins: Vec<_> = (0..N)
        .map(|_| {
            let url = s.at("/login");
            tokio::spawn(async move {
                bare()
                    .post(url)
                    .form(&[("username", "alice"), ("password", ALICE_PW)])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    s.gate.wait_held(N).await;
    // The password changes and the server reloads (what SIGHUP does) while
    // they wait; then they finish their check against the old hash.
    std::fs::write(&path, with_alice_password(&good, "alice's next password")).unwrap();
    s.reloader.reload().await.unwrap();
    s.gate.open();
    for l in logins {
        let r = tokio::time::timeout(crate::child::WAIT, l)
            .await
            .expect("a login hung")
            .unwrap();
        let status = r.status();
        let live = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| !c.contains("Max-Age=0"));
        if let Some(c) = live {
            let cookie = c.split(';').next().unwrap().to_string();
            assert_eq!(
                verify_with(&s, &cookie).await,
                StatusCode::UNAUTHORIZED,
                "a session checked against the replaced hash is valid"
            );
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body = r.text().await.unwrap();
        assert!(body.contains("Wrong username or password."), "{body}");
    }
    // The new password works; the old one does not.
    assert_eq!(
        login(&bare(), &s, "alice", ALICE_PW, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    login_token(&s, "alice", "alice's next password").await;
    still_up(&s).await;
}
