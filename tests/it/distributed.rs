//! Two servers on one distributed store (`[storage] backend =
//! "distributed"`, the Redis and PostgreSQL of `.ci/services`): a sign-in
//! on one node is accepted by the other's forward-auth check, a sign-out
//! on the first is refused by the second, and both nodes' events join one
//! chain.

use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::*;

/// Longest wait for the other node to hear of a sign-out (a hang guard,
/// not a threshold: it hears at once through Redis pub/sub).
const HANG: Duration = Duration::from_secs(30);

/// A fresh deployment: a Redis URL, a PostgreSQL database's URL and a key
/// prefix, or `None` (skipped) without the services.
pub(crate) async fn deployment() -> Option<(String, String, String)> {
    let (redis, prefix) = gatehouse::store::outbox::testing::fresh_prefix()?;
    let pg = gatehouse::store::postgres::testing::fresh_database().await?;
    Some((redis, pg, prefix))
}

/// `[storage]` naming the deployment `(redis, pg, prefix)`.
pub(crate) fn storage_section((redis, pg, prefix): &(String, String, String)) -> String {
    format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"{redis}\"\n\
         postgres_url = \"{pg}\"\nprefix = \"{prefix}\"\n"
    )
}

/// The distributed store of the deployment `(redis, pg, prefix)`, as one
/// more node sees it.
pub(crate) async fn connect(
    (redis, pg, prefix): &(String, String, String),
) -> gatehouse::store::distributed::Distributed {
    gatehouse::store::distributed::Distributed::connect(
        &gatehouse::store::distributed::DistributedConfig::new(redis.clone(), pg.clone())
            .with_prefix(prefix.clone()),
    )
    .await
    .unwrap()
}

/// `[storage]` of a fresh deployment, or `None` (skipped) without the
/// services.
async fn storage() -> Option<String> {
    Some(storage_section(&deployment().await?))
}

/// `node`'s `/healthz`: its status and body.
async fn healthz(node: &TestServer) -> (StatusCode, serde_json::Value) {
    let r = reqwest::get(node.at("/healthz")).await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// The forward-auth answer of `node` to the session cookie `token`, from
/// a client with no cookie jar of its own.
pub(crate) async fn verify(node: &TestServer, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(node.at("/auth/verify"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Signs the session cookie `token` out on `node`.
pub(crate) async fn sign_out(node: &TestServer, token: &str) {
    let out = reqwest::Client::new()
        .post(node.at("/logout"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection() || out.status().is_success());
}

/// Returns once `node` refuses `token` (asked every `pause`), within the
/// hang guard.
async fn until_refused(node: &TestServer, token: &str, pause: Duration) {
    let refused = async {
        while verify(node, token).await != StatusCode::UNAUTHORIZED {
            tokio::time::sleep(pause).await;
        }
    };
    tokio::time::timeout(HANG, refused)
        .await
        .expect("the other node refuses the signed-out session");
}

/// An hour's ban on `subject` from now.
pub(crate) fn an_hours_ban(subject: gatehouse::store::BanSubject) -> gatehouse::store::NewBan {
    let now = gatehouse::store::now_ms();
    gatehouse::store::NewBan {
        subject,
        until_ms: now + 3_600_000,
        reason: "too many failed sign-ins".into(),
        ip: None,
        now_ms: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_on_one_node_holds_on_the_other_and_a_sign_out_too() {
    let Some((a, b)) = two_nodes("").await else {
        return;
    };

    let c = client();
    let r = login(&c, &a, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = token_of(&r).expect("a session cookie");
    assert_eq!(verify(&a, &token).await, StatusCode::OK);
    assert_eq!(verify(&b, &token).await, StatusCode::OK);
    // And again, from B's cache.
    assert_eq!(verify(&b, &token).await, StatusCode::OK);

    sign_out(&a, &token).await;
    assert_eq!(verify(&a, &token).await, StatusCode::UNAUTHORIZED);
    until_refused(&b, &token, Duration::from_millis(10)).await;

    // Both nodes read one trail: A's sign-in and sign-out, as B sees them
    // once the outbox is chained.
    let admin = client();
    login(&admin, &b, "alice", ALICE_PW, &[]).await;
    let chained = async {
        loop {
            let page = crate::api::get_json(&admin, &b, "/api/v1/audit?user=alice&limit=50").await;
            let kinds: Vec<String> = page["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_string))
                .collect();
            let logins = kinds.iter().filter(|k| *k == "login.success").count();
            if kinds.iter().any(|k| k == "logout") && logins == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(HANG, chained)
        .await
        .expect("both nodes' events are chained");

    // `/healthz` reports the store and its outbox.
    let (code, health) = healthz(&a).await;
    assert_eq!(code, StatusCode::OK, "{health}");
    assert_eq!(health["store"], "ok", "{health}");
    assert!(
        health["outbox_depth"].is_u64() && health["outbox_lag_ms"].is_u64(),
        "{health}"
    );

    // `/metrics` shows the outbox: its depth and its oldest entry's age.
    let metrics = reqwest::Client::new()
        .get(a.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for gauge in [
        "gatehouse_outbox_depth",
        "gatehouse_outbox_lag_milliseconds",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(gauge)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{gauge} in /metrics:\n{metrics}"));
        assert!(value.trim().parse::<u64>().is_ok(), "{gauge} {value}");
    }
    a.stop().await;
    b.stop().await;
}

/// A Redis of the test's own on a fixed port and directory, so that it can
/// be killed and started again with its append-only file. Killed on drop.
pub(crate) struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    pub(crate) fn start(dir: &std::path::Path, port: u16) -> OwnRedis {
        Self::start_with(dir, port, &[])
    }

    /// The same with the further arguments `more` (`--replicaof …`).
    pub(crate) fn start_with(dir: &std::path::Path, port: u16, more: &[&str]) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--maxmemory-policy",
                "noeviction",
                "--save",
                "",
            ])
            .args(more)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        OwnRedis { child }
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database's URL for a test that runs Redis servers
/// of its own, or `None` (skipped) without the shared services (they
/// decide whether it runs) or without `redis-server`.
pub(crate) async fn with_own_redis() -> Option<String> {
    gatehouse::store::outbox::testing::fresh_prefix()?;
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()?;
    gatehouse::store::postgres::testing::fresh_database().await
}

/// Waits until Redis on `port` answers a PING.
pub(crate) async fn redis_answers(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ready = async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(HANG, ready)
        .await
        .expect("the test's Redis answers");
}

/// With no users configured, a node of a shared store makes no first
/// admin of its own (each node would make another): it refuses to start
/// and says what to do.
#[tokio::test]
async fn a_node_without_users_makes_no_admin_of_its_own() {
    let Some(storage) = storage().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let message = refused_start(dir.path(), &format!("bind = \"127.0.0.1:0\"\n{storage}")).await;
    assert!(message.contains("gatehouse users add"), "{message}");
    assert!(!dir.path().join("admin-password").exists());
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("[[users]]")
    );
}

/// With no server on this node, `gatehouse bans` reaches the shared store
/// itself, like one more node: it lists a ban another node made, and lifts
/// it for every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bans_command_works_on_the_shared_store_without_a_server() {
    use gatehouse::store::{BanStore, BanSubject, now_ms};
    let Some(deployment) = deployment().await else {
        return;
    };
    let storage = storage_section(&deployment);
    let store = connect(&deployment).await;
    let banned = BanSubject::ip("203.0.113.7".parse().unwrap());
    store.add_ban(an_hours_ban(banned.clone())).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gatehouse.toml"), config_text("", &storage)).unwrap();
    let bans = |args: &'static [&'static str]| {
        let dir = dir.path().to_path_buf();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                .arg("bans")
                .args(args)
                .arg("--data-dir")
                .arg(&dir)
                .arg("--config")
                .arg(dir.join("gatehouse.toml"))
                .env_remove("GATEHOUSE_REDIS_URL")
                .env_remove("GATEHOUSE_POSTGRES_URL")
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{text}\n{err}");
            text
        }
    };
    let listed = bans(&["list"]).await;
    assert!(listed.contains("203.0.113.7"), "{listed}");
    let lifted = bans(&["lift", "--ip", "203.0.113.7"]).await;
    assert!(lifted.contains("lifted the ban on"), "{lifted}");
    assert!(store.bans(now_ms()).await.unwrap().is_empty());
}

/// `auditctl --db postgres://… --redis-url … --prefix …` lists the live
/// sessions and access tokens of a deployment from Redis, as on a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditctl_lists_sessions_and_tokens_from_redis() {
    let Some(deployment) = deployment().await else {
        return;
    };
    let (redis, pg, prefix) = deployment.clone();
    let s = TestServer::start(&config_text("", &storage_section(&deployment))).await;
    let c = client();
    let r = login(&c, &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let made = c
        .post(s.at("/api/v1/tokens"))
        .json(&serde_json::json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditctl"))
            .args(&args)
            .env_remove("GATEHOUSE_DATA_DIR")
            .env_remove("GATEHOUSE_REDIS_URL")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {text}\n{err}");
        text
    };
    let on = |what: &str| {
        [
            "--db",
            &pg,
            "--redis-url",
            &redis,
            "--prefix",
            &prefix,
            what,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut args = on("sessions");
    args.extend(["--user", "alice", "--json"].map(String::from));
    let sessions = run(args).await;
    let listed: Vec<serde_json::Value> = sessions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{sessions}");
    assert_eq!(listed[0]["user"], "alice", "{sessions}");
    let mut args = on("tokens");
    args.extend(["--user", "alice", "--json"].map(String::from));
    let tokens = run(args).await;
    assert!(tokens.contains("\"ci\""), "{tokens}");
    s.stop().await;
}

/// A node whose `secrets.key` is not the deployment's could not open the
/// second factors the others sealed: it refuses to start, naming the fix,
/// and starts once it holds the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_file_is_refused_at_start() {
    let Some(storage) = storage().await else {
        return;
    };
    let text = config_text("", &storage);
    let a = TestServer::start(&text).await;

    let dir = tempfile::tempdir().unwrap();
    let message = refused_start(dir.path(), &text).await;
    assert!(
        message.contains("secrets.key") && message.contains("copy secrets.key from a running node"),
        "{message}"
    );

    let b = TestServer::start_beside(&a, &text).await;
    let c = client();
    let r = login(&c, &b, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_forward_auth_answers_503_and_then_recovers() {
    // The Redis is the test's own, so that it can be stopped.
    let Some(pg) = with_own_redis().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let redis = OwnRedis::start(dir.path(), port);
    redis_answers(port).await;
    let storage = format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"redis://127.0.0.1:{port}\"\n\
         postgres_url = \"{pg}\"\nprefix = \"away\"\n"
    );
    let s = TestServer::start(&config_text("", &storage)).await;
    let c = client();
    let r = login(&c, &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = token_of(&r).expect("a session cookie");
    assert_eq!(verify(&s, &token).await, StatusCode::OK);

    // Redis goes away: the answer becomes 503 (never 401, which would send
    // a signed-in user to sign in again), within the hang guard.
    redis.kill();
    let unavailable = async {
        loop {
            let got = verify(&s, &token).await;
            assert!(
                got == StatusCode::OK || got == StatusCode::SERVICE_UNAVAILABLE,
                "while Redis is away the check answered {got}"
            );
            if got == StatusCode::SERVICE_UNAVAILABLE {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(HANG, unavailable)
        .await
        .expect("the check answers 503 while Redis is away");
    // `/healthz` takes the node out of a load balancer, saying why.
    let (code, health) = healthz(&s).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["store"], "unavailable", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Redis")),
        "{health}"
    );

    // Back with its append-only file: the same session is accepted again.
    let _redis = OwnRedis::start(dir.path(), port);
    redis_answers(port).await;
    let back = async {
        loop {
            let got = verify(&s, &token).await;
            if got == StatusCode::OK {
                return;
            }
            assert_eq!(
                got,
                StatusCode::SERVICE_UNAVAILABLE,
                "after Redis came back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG, back)
        .await
        .expect("the session is accepted once Redis is back");
    let back_in = async {
        loop {
            let (code, health) = healthz(&s).await;
            if code == StatusCode::OK {
                assert_eq!(health["store"], "ok", "{health}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(HANG, back_in)
        .await
        .expect("/healthz answers 200 once Redis is back");
    s.stop().await;
}

/// Two nodes of one fresh deployment with `sections` besides `[storage]`,
/// sharing one `secrets.key` (as every node of a deployment must: second
/// factors are sealed with it), or `None` without the services.
async fn two_nodes(sections: &str) -> Option<(TestServer, TestServer)> {
    let storage = storage().await?;
    let text = config_text("", &format!("{sections}\n{storage}"));
    let a = TestServer::start(&text).await;
    let b = TestServer::start_beside(&a, &text).await;
    Some((a, b))
}

/// Sessions signed in on A, checked on A (so that A holds them in its
/// cache), then signed out on B: A refuses each, and the delay between B's
/// answer and A's first refusal is measured and printed. The aim is
/// one second; the assertion is only that A refuses, within the hang guard
/// (a wall-clock bound would fail on a loaded machine, not on a bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_is_refused_on_the_other_measured() {
    let Some((a, b)) = two_nodes("").await else {
        return;
    };
    const ROUNDS: usize = 20;
    let mut delays = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let r = login(&client(), &a, "alice", ALICE_PW, &[]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let token = token_of(&r).expect("a session cookie");
        // Twice on A: the second answer comes from A's cache.
        assert_eq!(verify(&a, &token).await, StatusCode::OK);
        assert_eq!(verify(&a, &token).await, StatusCode::OK);
        assert_eq!(verify(&b, &token).await, StatusCode::OK);
        sign_out(&b, &token).await;
        let revoked = std::time::Instant::now();
        assert_eq!(verify(&b, &token).await, StatusCode::UNAUTHORIZED);
        until_refused(&a, &token, Duration::from_millis(1)).await;
        delays.push(revoked.elapsed());
    }
    delays.sort();
    eprintln!(
        "revocation on B refused on A: {ROUNDS} rounds, median {:?}, max {:?} (aim: 1 s)",
        delays[ROUNDS / 2],
        delays[ROUNDS - 1]
    );
    a.stop().await;
    b.stop().await;
}

/// Wrong passwords for bob on A ban him; B refuses his right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_made_on_one_node_holds_on_the_other() {
    let Some((a, b)) = two_nodes("[regulation]\nmax_failures = 3\n").await else {
        return;
    };
    // Before: bob signs in on B.
    let (st, _) = crate::api::sign_in(&crate::api::json_client(), &b, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    let c = crate::api::json_client();
    for _ in 0..3 {
        let (st, _) = crate::api::sign_in(&c, &a, "bob", "wrong password").await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::TOO_MANY_REQUESTS,
            "{st}"
        );
    }
    let (st, _) = crate::api::sign_in(&crate::api::json_client(), &a, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "banned on A");
    let r = crate::api::json_client()
        .post(b.at("/login"))
        .json(&serde_json::json!({"username": "bob", "password": BOB_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "banned on B");
    assert!(r.headers().get("retry-after").is_some());
    a.stop().await;
    b.stop().await;
}

/// An authenticator app enrolled on A: B asks for its code, accepts it,
/// and refuses the password alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_factor_enrolled_on_one_node_works_on_the_other() {
    let Some((a, b)) = two_nodes("").await else {
        return;
    };
    let (app, _) = crate::api::enroll(&crate::api::json_client(), &a, "bob", BOB_PW).await;
    let c = crate::api::json_client();
    let (st, body) = crate::api::sign_in(&c, &b, "bob", BOB_PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body["second_factor_required"],
        serde_json::json!(true),
        "{body}"
    );
    // The password alone is no session on B.
    assert_eq!(
        crate::api::verify(&c, &b, None).await,
        StatusCode::UNAUTHORIZED
    );
    // The code that confirmed the enrollment on A is spent on B too.
    let (st, _) = crate::api::post(
        &c,
        &b,
        "/login/totp",
        serde_json::json!({"code": app.code(0)}),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a code used on A, replayed on B"
    );
    let (st, ok) = crate::api::post(
        &c,
        &b,
        "/login/totp",
        serde_json::json!({"code": app.code(1)}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(ok["methods"], serde_json::json!(["password", "totp"]));
    assert_eq!(crate::api::verify(&c, &b, None).await, StatusCode::OK);
    // And the session made on B holds on A.
    assert_eq!(crate::api::verify(&c, &a, None).await, StatusCode::OK);
    a.stop().await;
    b.stop().await;
}
