//! Brute-force regulation: bans before hashing, bans that survive a restart,
//! and lifting them from the command line.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

const STRICT: &str = "[regulation]\nmax_failures = 3\nwindow_secs = 600\nban_secs = 900\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_hold_across_a_restart_and_lift() {
    let tmp = tempfile::tempdir().unwrap();
    let text = config_text("", STRICT);
    let s = TestServer::start_in(tmp.path(), &text).await;
    let c = client();
    for _ in 0..3 {
        // Different IPs would not help: the user is counted too.
        assert_eq!(
            login(&c, &s, "bob", "guess", &[]).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password is refused, before any hashing.
    let r = login(&c, &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
    // The IP is banned as well (3 failures from it), so alice cannot log in from here either.
    let r = login(&c, &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;

    let s = TestServer::start_in(tmp.path(), &text).await;
    let r = login(&client(), &s, "bob", BOB_PW, &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "ban survives restart"
    );

    // While the server runs, the CLI goes through its admin socket.
    let dir = tmp.path().to_str().unwrap();
    let listed = cli(&["bans", "--data-dir", dir, "list"]).await;
    assert!(
        listed.contains("user bob") && listed.contains("ip 127.0.0.1"),
        "{listed}"
    );
    let out = cli(&["bans", "--data-dir", dir, "lift", "--user", "bob"]).await;
    assert!(out.contains("lifted the ban on user bob"), "{out}");
    let listed = cli(&["bans", "--data-dir", dir, "list"]).await;
    assert!(!listed.contains("user bob"), "{listed}");
    s.stop().await;
    assert!(!tmp.path().join("admin.sock").exists());

    // Without a server, it opens the database itself.
    let out = cli(&["bans", "--data-dir", dir, "lift", "--ip", "127.0.0.1"]).await;
    assert!(out.contains("lifted the ban on ip 127.0.0.1"), "{out}");
    let out = cli(&["bans", "--data-dir", dir, "list"]).await;
    assert!(out.contains("no bans in force"), "{out}");

    let s = TestServer::start_in(tmp.path(), &text).await;
    let c = client();
    assert_eq!(
        login(&c, &s, "bob", BOB_PW, &[]).await.status(),
        StatusCode::SEE_OTHER
    );
    let admin = client();
    login(&admin, &s, "alice", ALICE_PW, &[]).await;
    let ev: Value = admin
        .get(s.at("/api/v1/audit?kind=ban.added,ban.lifted,login.rejected"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "ban.added").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "ban.lifted").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"login.rejected"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    // Trusted: each forwarded client is its own IP, so bob's user counter bans
    // but carol's IP stays clean.
    let text = config_text("trusted_proxies = [\"127.0.0.1\"]", STRICT);
    let s = TestServer::start(&text).await;
    for i in 0..3 {
        let r = client()
            .post(s.at("/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .form(&[("username", "bob"), ("password", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = client()
        .post(s.at("/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("username", "alice"), ("password", ALICE_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "no IP was banned");
    let admin = client();
    let r = admin
        .post(s.at("/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("username", "alice"), ("password", ALICE_PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let list: Value = admin
        .get(s.at("/api/v1/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"][0]["ip"], "203.0.113.9");
}

/// Runs the `gatehouse` binary; returns its stdout, failing on a non-zero exit.
async fn cli(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_hashes_at_most_the_limit() {
    // Slots and queue for every attempt: only the regulator may refuse.
    let s = TestServer::start(&config_text(
        "",
        "[regulation]\nmax_failures = 5\nwindow_secs = 600\nban_secs = 900\n\n\
         [limits]\nhash_workers = 4\nhash_queue = 64\n",
    ))
    .await;
    const N: usize = 12;
    const LIMIT: usize = 5;
    // Held before hashing, the first attempts are still in flight when the
    // later ones arrive: the ban check alone would let all of them through.
    s.gate.close();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..N {
        let url = s.at("/login");
        burst.spawn(async move {
            client()
                .post(url)
                .form(&[("username", "bob"), ("password", "guess")])
                .send()
                .await
                .unwrap()
        });
    }
    // Every attempt beyond the limit is answered while the others wait.
    for _ in 0..N - LIMIT {
        let r = tokio::time::timeout(crate::child::WAIT, burst.join_next())
            .await
            .expect("the attempts beyond the limit were not refused")
            .unwrap()
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key("retry-after"));
    }
    // Bounded, so that a request that never reaches the pool fails the
    // test instead of hanging it.
    tokio::time::timeout(std::time::Duration::from_secs(60), s.gate.wait_held(LIMIT))
        .await
        .expect("the guesses reach the hashing pool");
    assert_eq!(s.gate.held(), LIMIT);
    s.gate.open();
    while let Some(r) = burst.join_next().await {
        assert_eq!(r.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(s.gate.passed(), LIMIT, "hashed beyond the limit");
    // The failures that were hashed made the ban.
    let r = login(&client(), &s, "bob", BOB_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.gate.passed(), LIMIT, "a banned login was hashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_names_and_addresses_cannot_push_out_a_users_counter() {
    // Few counters; every client address is its own (forwarded) IP.
    let s = TestServer::start(&config_text(
        "trusted_proxies = [\"127.0.0.1\"]",
        "[regulation]\nmax_failures = 5\nwindow_secs = 600\nban_secs = 900\nmax_tracked = 20\n",
    ))
    .await;
    let post = |from: String, user: String, pw: &'static str| {
        let url = s.at("/login");
        async move {
            client()
                .post(url)
                .header("x-forwarded-for", from)
                .form(&[("username", user.as_str()), ("password", pw)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut n = 0u32;
    for round in 0..5 {
        // One guess at alice, from an address of its own...
        let r = post(format!("198.51.100.{round}"), "alice".into(), "guess").await;
        assert_eq!(r, StatusCode::UNAUTHORIZED);
        // ...then more fresh names from fresh addresses than there are counters.
        for _ in 0..30 {
            n += 1;
            let from = format!("203.0.{}.{}", n / 250, n % 250);
            let r = post(from, format!("nobody-{n}"), "guess").await;
            assert_eq!(r, StatusCode::UNAUTHORIZED);
        }
    }
    // Five failures at alice within the window: she is banned.
    let r = post("192.0.2.1".into(), "alice".into(), ALICE_PW).await;
    assert_eq!(r, StatusCode::TOO_MANY_REQUESTS);
}
