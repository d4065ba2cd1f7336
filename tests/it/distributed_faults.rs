//! Failures of a distributed deployment (two `gatehouse serve` nodes on
//! one Redis and one PostgreSQL) under sign-in load:
//!
//! - SIGKILL of one node loses no acknowledged sign-in or sign-out: the
//!   other node, and the killed one once restarted, accept every
//!   acknowledged session, and every acknowledged event is chained once;
//! - SIGKILL of the node that chains the outbox (the leader) while it
//!   chains: the other node takes the lead, and every acknowledged event is
//!   in the chain exactly once, with no gap (`auditctl --db postgres://…
//!   verify` accepts it, and the chain's count is the table's);
//!
//! PostgreSQL stopped under load is in `distributed_outage.rs`, which
//! shares the load and the checks of this file.
//!
//! `GATEHOUSE_CRASH_CYCLES` sets the kill cycles (default 3).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse::domain::{EventFilter, EventKind, NewEvent};
use gatehouse::store::outbox::{DEFAULT_MAX_ENTRIES, Outbox};
use gatehouse::store::postgres::PgAudit;
use reqwest::StatusCode;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::child::*;
use crate::harness::{ALICE_PW, config_text, share_key};

/// Longest wait for the chain to catch up or a node to take the lead (a
/// hang guard, not a threshold).
const HANG: Duration = Duration::from_secs(90);

/// What the load drivers were told: sessions whose sign-in was
/// acknowledged and that were not signed out, and the public ids of the
/// sessions whose sign-out was acknowledged.
#[derive(Default)]
pub(crate) struct Acked {
    pub(crate) live: Vec<String>,
    pub(crate) signed_out: Vec<String>,
}

/// A deployment's `[storage]` on `redis_url` (a fresh key prefix) and
/// `postgres_url`.
pub(crate) fn storage(redis_url: &str, prefix: &str, postgres_url: &str) -> String {
    format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"{redis_url}\"\n\
         postgres_url = \"{postgres_url}\"\nprefix = \"{prefix}\"\n"
    )
}

/// The config of every node: no cap on alice's sessions or failures.
pub(crate) fn node_config(storage: &str) -> String {
    config_text(
        "",
        &format!(
            "[session]\nmax_per_user = 1000000\n\n[regulation]\nmax_failures = 1000000\n\n{storage}"
        ),
    )
}

/// A fresh deployment on the shared services: its `[storage]`, its
/// PostgreSQL URL and its outbox, or `None` (skipped).
async fn shared_deployment() -> Option<(String, String, Outbox)> {
    let (redis, prefix) = gatehouse::store::outbox::testing::fresh_prefix()?;
    let pg = gatehouse::store::postgres::testing::fresh_database().await?;
    let outbox = Outbox::connect(&redis, &prefix, DEFAULT_MAX_ENTRIES)
        .await
        .expect("the deployment's outbox");
    Some((storage(&redis, &prefix, &pg), pg, outbox))
}

/// Entries put straight into the outbox around each kill of the chainer,
/// so that it is in the middle of chaining them when it dies.
const BULK: usize = 4_000;

/// Pushes [`BULK`] events into `outbox` from a few callers; their entry ids.
async fn push_bulk(outbox: Outbox, cycle: usize) -> Vec<String> {
    let callers: Vec<_> = (0..8)
        .map(|k| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (k..BULK).step_by(8) {
                    let e = NewEvent::now(EventKind::LoginFailure)
                        .user("bob")
                        .detail("bulk", format!("{cycle}-{i}"));
                    ids.push(outbox.push(&e).await.expect("push to the outbox"));
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(BULK);
    for c in callers {
        ids.extend(c.await.unwrap());
    }
    ids
}

/// Data directories of two nodes of `config`; the second holds the first's
/// `secrets.key` once the first has started.
pub(crate) fn node_dirs(root: &Path, config: &str) -> [PathBuf; 2] {
    ["a", "b"].map(|n| {
        let dir = root.join(n);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("gatehouse.toml"), config).unwrap();
        dir
    })
}

/// Sign-ins of alice on `url` until `stop`, each fourth signed out again;
/// what was acknowledged goes into `acked`. A sign-out whose answer was
/// lost (the node died) is neither live nor signed out, and is left out.
async fn load(url: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let c = plain_client();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(token) = form_login(&c, &url, "alice", ALICE_PW, true).await else {
            // Busy, or the node is gone.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if i % 4 != 3 {
            acked.lock().await.live.push(token);
            continue;
        }
        let Some(id) = session_id(&c, &url, &token).await else {
            acked.lock().await.live.push(token);
            continue;
        };
        let out = c
            .post(format!("{url}/logout"))
            .header("cookie", format!("gatehouse_session={token}"))
            .send()
            .await;
        if out.is_ok_and(|r| r.status().is_redirection() || r.status().is_success()) {
            acked.lock().await.signed_out.push(id);
        }
    }
}

/// Load drivers on each of `urls` (`per_node` each).
pub(crate) fn start_load(
    urls: &[&str],
    per_node: usize,
    acked: &Arc<Mutex<Acked>>,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut drivers = Vec::new();
    for url in urls {
        for _ in 0..per_node {
            drivers.push(tokio::spawn(load(
                url.to_string(),
                stop.clone(),
                acked.clone(),
            )));
        }
    }
    (stop, drivers)
}

pub(crate) async fn stop_load(stop: Arc<AtomicBool>, drivers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        tokio::time::timeout(WAIT, d)
            .await
            .expect("a load driver hung")
            .unwrap();
    }
}

/// Every live acknowledged session is accepted on `url`; their public ids.
pub(crate) async fn live_ids(url: &str, acked: &Acked, what: &str) -> HashSet<String> {
    let c = plain_client();
    let mut ids = HashSet::new();
    for t in &acked.live {
        assert_eq!(
            verify_status(&c, url, t).await,
            Some(StatusCode::OK),
            "{what}: /auth/verify refused an acknowledged session"
        );
        let id = match session_id(&c, url, t).await {
            Some(id) => id,
            None => {
                let r = c
                    .get(format!("{url}/api/v1/sessions"))
                    .header("cookie", format!("gatehouse_session={t}"))
                    .send()
                    .await;
                let detail = match r {
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                };
                panic!(
                    "{what}: an acknowledged session was lost: {}",
                    &detail[..detail.len().min(2000)]
                )
            }
        };
        ids.insert(id);
    }
    ids
}

/// How often each (kind, session) of alice's sign-ins and sign-outs is in
/// the chain of `pg`.
async fn chained(pg: &PgAudit) -> HashMap<(EventKind, String), usize> {
    let filter = EventFilter {
        user: Some("alice".into()),
        kinds: vec![EventKind::LoginSuccess, EventKind::Logout],
        ..Default::default()
    };
    let mut seen = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = pg
            .query_events(&filter, 1000, cursor.as_deref())
            .await
            .expect("query the chain");
        for e in page.events {
            if let Some(s) = e.session {
                *seen.entry((e.kind, s.into())).or_insert(0) += 1;
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

/// Waits until every acknowledged event is chained, then checks that each
/// is there exactly once, that the chain counts every row of its table
/// and no source twice, and that `auditctl --db URL verify` accepts it.
/// Returns the number of events checked.
pub(crate) async fn check_chain(
    pg_url: &str,
    live: &HashSet<String>,
    signed_out: &[String],
) -> usize {
    let mut wanted: Vec<(EventKind, String)> = live
        .iter()
        .map(|id| (EventKind::LoginSuccess, id.clone()))
        .collect();
    for id in signed_out {
        wanted.push((EventKind::LoginSuccess, id.clone()));
        wanted.push((EventKind::Logout, id.clone()));
    }
    let pg = PgAudit::connect(pg_url)
        .await
        .expect("the chain's database");
    let all_there = async {
        loop {
            if let Ok(seen) = tokio::time::timeout(Duration::from_secs(10), chained(&pg)).await
                && wanted.iter().all(|w| seen.contains_key(w))
            {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let seen = tokio::time::timeout(HANG, all_there)
        .await
        .expect("every acknowledged event reaches the chain");
    for w in &wanted {
        assert_eq!(seen[w], 1, "{w:?} chained {} times", seen[w]);
    }
    let (client, conn) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT source), count(source), \
             (SELECT appended FROM chain) FROM events",
            &[],
        )
        .await
        .unwrap();
    let (rows, sources, with_source, appended): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(sources, with_source, "an outbox entry chained twice");
    assert_eq!(rows, appended, "the chain's count and its table differ");
    let out = Command::new(env!("CARGO_BIN_EXE_auditctl"))
        .args(["--db", pg_url, "verify"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("auditctl verify finished")
        .unwrap();
    assert!(
        out.status.success(),
        "auditctl --db … verify:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wanted.len()
}

/// A node's `gatehouse_outbox_depth`.
async fn outbox_depth(url: &str) -> Option<u64> {
    let text = plain_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_outbox_depth "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_node_loses_no_acknowledged_sign_in_or_event() {
    let Some((storage, pg_url, _)) = shared_deployment().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dirs = node_dirs(tmp.path(), &node_config(&storage));
    let mut a = Proc::start(&dirs[0]).await.expect("node A starts");
    share_key(&dirs[0], &dirs[1]);
    let mut b = Proc::start(&dirs[1]).await.expect("node B starts");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = Rng(gatehouse::store::now_us() | 1);
    let cycles = cycles(3);
    for cycle in 0..cycles {
        let (stop, drivers) = start_load(&[&a.url, &b.url], 2, &acked);
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        // Alternately A and B die; the other goes on.
        let (victim, survivor, dir) = if cycle % 2 == 0 {
            (a, b, &dirs[0])
        } else {
            (b, a, &dirs[1])
        };
        victim.kill().await;
        stop_load(stop, drivers).await;
        let what = format!("cycle {cycle}, on the surviving node");
        let on_survivor = live_ids(&survivor.url, &*acked.lock().await, &what).await;
        let restarted = Proc::start(dir).await.expect("the killed node restarts");
        let what = format!("cycle {cycle}, on the restarted node");
        let on_restarted = live_ids(&restarted.url, &*acked.lock().await, &what).await;
        assert_eq!(on_survivor, on_restarted, "cycle {cycle}");
        (a, b) = if cycle % 2 == 0 {
            (restarted, survivor)
        } else {
            (survivor, restarted)
        };
    }
    let acked = acked.lock().await;
    let live = live_ids(&a.url, &acked, "at the end").await;
    let events = check_chain(&pg_url, &live, &acked.signed_out).await;
    eprintln!(
        "distributed kill: {cycles} cycles, {} live sessions and {} sign-outs acknowledged, \
         {events} events checked once each in the chain, lost=0",
        live.len(),
        acked.signed_out.len()
    );
    assert!(!live.is_empty(), "no sign-in was acknowledged");
    a.kill().await;
    b.kill().await;
}

/// Which of `nodes` has logged that it chains the outbox since `since`
/// lines of its log (one index per node).
fn leader(nodes: &[&Proc; 2], since: [usize; 2]) -> Option<usize> {
    (0..2).find(|&i| nodes[i].log_lines("now chains the audit outbox").len() > since[i])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_chainer_mid_batch_gives_no_duplicate_and_no_gap() {
    let Some((storage, pg_url, outbox)) = shared_deployment().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dirs = node_dirs(tmp.path(), &node_config(&storage));
    let mut nodes = [Proc::start(&dirs[0]).await.expect("node A starts"), {
        share_key(&dirs[0], &dirs[1]);
        Proc::start(&dirs[1]).await.expect("node B starts")
    }];
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = Rng(gatehouse::store::now_us() | 1);
    let cycles = cycles(3);
    let mut busy_kills = 0;
    let mut pushed: Vec<String> = Vec::new();
    let mut seen_leads = [0usize; 2];
    for cycle in 0..cycles {
        let lead = async {
            loop {
                if let Some(i) = leader(&[&nodes[0], &nodes[1]], seen_leads) {
                    return i;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let l = tokio::time::timeout(HANG, lead)
            .await
            .unwrap_or_else(|_| panic!("cycle {cycle}: no node took the chain's lead"));
        let urls = [nodes[0].url.clone(), nodes[1].url.clone()];
        // Both nodes under load, so that the leader always has a batch.
        let (stop, drivers) = start_load(&[&urls[0], &urls[1]], 2, &acked);
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        // A stream of entries straight into the outbox, which the leader
        // chains as they come; the kill lands while they come.
        let pushing = tokio::spawn(push_bulk(outbox.clone(), cycle));
        tokio::time::sleep(Duration::from_millis(50 + rng.below(200))).await;
        if outbox.depth().await.expect("the outbox's depth") > 0 {
            busy_kills += 1;
        }
        // The survivor's leads so far: the next one is its taking over.
        let survivor_leads = nodes[1 - l].log_lines("now chains the audit outbox").len();
        let dir = &dirs[l];
        let [n0, n1] = nodes;
        let (victim, other) = if l == 0 { (n0, n1) } else { (n1, n0) };
        victim.kill().await;
        // The survivor goes on under load for a while, and takes the lead.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_load(stop, drivers).await;
        pushed.extend(pushing.await.unwrap());
        let restarted = Proc::start(dir).await.expect("the killed leader restarts");
        nodes = if l == 0 {
            [restarted, other]
        } else {
            [other, restarted]
        };
        // The restarted node's log is new.
        seen_leads = [0, 0];
        seen_leads[1 - l] = survivor_leads;
    }
    let acked = acked.lock().await;
    let live = live_ids(&nodes[0].url, &acked, "at the end").await;
    let events = check_chain(&pg_url, &live, &acked.signed_out).await;
    let depth = async {
        loop {
            if outbox_depth(&nodes[0].url).await == Some(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG, depth)
        .await
        .expect("the outbox empties");
    // Every entry pushed is in the chain exactly once, under its entry id.
    let (client, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT source) FROM events WHERE source = ANY($1)",
            &[&pushed],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, distinct, "an entry chained twice");
    assert_eq!(
        rows as usize,
        pushed.len(),
        "an entry missing from the chain"
    );
    eprintln!(
        "chainer kill: {cycles} leaders killed ({busy_kills} while entries waited), \
         {events} sign-in events and {} pushed entries checked once each, chain verified",
        pushed.len()
    );
    assert!(!live.is_empty(), "no sign-in was acknowledged");
    assert!(
        busy_kills > 0,
        "no kill landed while the leader was chaining"
    );
    let [n0, n1] = nodes;
    n0.kill().await;
    n1.kill().await;
}
