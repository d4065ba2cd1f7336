//! Two nodes on a Redis behind Sentinel (`redis+sentinel://`), with one
//! replica that every change must reach (`redis_replicas = 1`): a
//! failover moves both nodes to the new master by themselves, and a crash
//! of a master loses no acknowledged sign-in.
//!
//! The master, its replica and the Sentinel are the test's own processes
//! (they are killed and started again); PostgreSQL is `.ci/services`'.

use std::time::Duration;

use reqwest::StatusCode;

use crate::distributed::{OwnRedis, redis_answers, sign_out, verify, with_own_redis};
use crate::harness::*;

/// Hang guard for each step. A Sentinel learns of a replica within ten
/// seconds and fails over a dead master within a few; this only keeps a
/// broken build from hanging.
const HANG: Duration = Duration::from_secs(60);

/// [`until`]'s own guard, longer than [`HANG`] so that a caller with a
/// guard of its own can say more.
const UNTIL: Duration = Duration::from_secs(90);

/// The master's name in the Sentinel's configuration.
const SERVICE: &str = "gh";

fn free_port() -> u16 {
    crate::proxy::free_port()
}

/// One command to the Redis or Sentinel on `port`.
async fn command(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await
}

/// Retries `step` every 100 ms until it returns `Some`, within [`HANG`].
async fn until<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut step: F) -> T {
    let found = async {
        loop {
            if let Some(v) = step().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(UNTIL, found)
        .await
        .unwrap_or_else(|_| panic!("{what}"))
}

/// The port of the master the Sentinel on `sentinel` names.
async fn master_port(sentinel: u16) -> Option<u16> {
    let v = command(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
        .await
        .ok()?;
    let addr: Vec<String> = redis::from_redis_value(v).ok()?;
    addr.get(1)?.parse().ok()
}

/// A Sentinel of the test's own watching the master on `master` (one
/// Sentinel, so a quorum of one). Killed on drop.
pub(crate) struct OwnSentinel(std::process::Child);

impl OwnSentinel {
    fn start(dir: &std::path::Path, port: u16, master: u16) -> OwnSentinel {
        Self::with_conf(
            dir,
            &format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n",
                dir.display()
            ),
        )
    }

    /// A Sentinel on the configuration `text`, written into `dir` (a
    /// Sentinel rewrites its file).
    pub(crate) fn with_conf(dir: &std::path::Path, text: &str) -> OwnSentinel {
        let conf = dir.join("sentinel.conf");
        std::fs::write(&conf, text).unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        OwnSentinel(child)
    }
}

impl Drop for OwnSentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sign-in of alice on `node` once it succeeds (a node answers 503
/// while its Redis is moving): the session's token.
async fn signed_in(node: &TestServer, what: &str) -> String {
    let last = std::sync::Mutex::new(String::new());
    let found = tokio::time::timeout(
        HANG,
        until(what, async || {
            let r = login(&client(), node, "alice", ALICE_PW, &[]).await;
            if r.status() == StatusCode::SEE_OTHER {
                return token_of(&r);
            }
            *last.lock().unwrap() =
                format!("{} {}", r.status(), r.text().await.unwrap_or_default());
            None
        }),
    )
    .await;
    found.unwrap_or_else(|_| panic!("{what}; the last answer: {}", last.lock().unwrap()))
}

/// Waits until `node` accepts `token`, asserting that meanwhile it never
/// refuses it: a 401 would mean the session was lost; 503 is a node
/// waiting for its Redis.
async fn accepted(node: &TestServer, token: &str, what: &str) {
    until(what, async || match verify(node, token).await {
        StatusCode::OK => Some(()),
        StatusCode::SERVICE_UNAVAILABLE => None,
        other => panic!("{what}: the session was answered {other}"),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover_and_a_dead_master_loses_no_sign_in() {
    // The Redis servers and the Sentinel are the test's own.
    let Some(pg) = with_own_redis().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (one_dir, two_dir, s_dir) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("sentinel"),
    );
    for d in [&one_dir, &two_dir, &s_dir] {
        std::fs::create_dir(d).unwrap();
    }
    let (one, two, sp) = (free_port(), free_port(), free_port());
    let replica_of = |port: u16| {
        [
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            port.to_string(),
        ]
    };
    let _one = OwnRedis::start(&one_dir, one);
    redis_answers(one).await;
    let two_args = replica_of(one);
    let two_redis = OwnRedis::start_with(
        &two_dir,
        two,
        &two_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    redis_answers(two).await;
    let _sentinel = OwnSentinel::start(&s_dir, sp, one);
    redis_answers(sp).await;
    until("the replica is in sync", async || {
        let info: String =
            redis::from_redis_value(command(two, &["INFO", "replication"]).await.ok()?).ok()?;
        info.contains("master_link_status:up").then_some(())
    })
    .await;

    let storage = format!(
        "[storage]\nbackend = \"distributed\"\n\
         redis_url = \"redis+sentinel://127.0.0.1:{sp}/{SERVICE}\"\nredis_replicas = 1\n\
         postgres_url = \"{pg}\"\nprefix = \"sentinel\"\n"
    );
    let text = config_text("", &storage);
    let a = TestServer::start(&text).await;
    let b = TestServer::start_beside(&a, &text).await;

    let first = signed_in(&a, "a sign-in before any failover").await;
    assert_eq!(verify(&b, &first).await, StatusCode::OK);

    // A failover by hand: the replica becomes the master, the master its
    // replica. Both nodes move to it by themselves.
    until("the Sentinel starts a failover", async || {
        command(sp, &["SENTINEL", "FAILOVER", SERVICE]).await.ok()
    })
    .await;
    until("the Sentinel names the new master", async || {
        (master_port(sp).await == Some(two)).then_some(())
    })
    .await;
    // A change needs the master of now: written to the old one, it would
    // be refused (READONLY).
    let second = signed_in(&b, "a sign-in on B after the failover").await;
    accepted(&a, &first, "A accepts the first session after the failover").await;
    accepted(&a, &second, "A accepts B's new session").await;
    // A sign-out on one node still reaches the other's cache.
    sign_out(&b, &first).await;
    until("A refuses the session signed out on B", async || {
        (verify(&a, &first).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // The new master dies. Every acknowledged change was on its replica,
    // so once the Sentinel has promoted that, the session made on B is
    // still accepted: never refused as unknown.
    let third = signed_in(&a, "a sign-in on A before the crash").await;
    two_redis.kill();
    until("the Sentinel fails over the dead master", async || {
        (master_port(sp).await == Some(one)).then_some(())
    })
    .await;
    for token in [&second, &third] {
        accepted(&a, token, "A accepts a session made before the crash").await;
        accepted(&b, token, "B accepts a session made before the crash").await;
    }
    // With no replica left, a change cannot be acknowledged (503); the
    // dead master comes back as a replica, and sign-ins go on.
    let r = login(&client(), &a, "alice", ALICE_PW, &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a sign-in with no replica to hold it"
    );
    let _two = OwnRedis::start_with(
        &two_dir,
        two,
        &replica_of(one)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let fourth = signed_in(&b, "a sign-in once a replica is back").await;
    accepted(&a, &fourth, "A accepts it").await;
    a.stop().await;
    b.stop().await;
}
