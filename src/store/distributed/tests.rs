//! The composition: messages without secrets, and chaining shared between
//! a node's background task and the calls of another node. The whole
//! contract runs in `store::conformance::distributed_conforms`.

use std::time::Duration;

use super::testing::{fresh_config, services};
use super::*;
use crate::domain::{EventFilter, EventKind, NewEvent};
use crate::store::contract::{AuditStore, StoreCheck};

/// Longest a test waits for the services (a hang guard, not a threshold).
const HANG: Duration = Duration::from_secs(60);

#[test]
fn a_password_never_reaches_debug_or_display() {
    let c = DistributedConfig::new(
        "redis://:r3dis-secret@cache.internal:6380/2",
        "postgres://gatehouse:pg-secret@db.internal:5432/gatehouse",
    );
    let backend = crate::store::BackendConfig::Distributed(c.clone());
    for shown in [
        format!("{c:?}"),
        format!("{c}"),
        format!("{backend:?}"),
        format!("{backend}"),
    ] {
        assert!(
            !shown.contains("r3dis-secret") && !shown.contains("pg-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("cache.internal") && shown.contains("db.internal"),
            "{shown}"
        );
    }
    // A string that is not a URL may hold a password anywhere: not shown.
    assert!(!config::redact_postgres("host=db password=pg-secret").contains("pg-secret"));
}

/// Node A runs its chainer (and leads); node B has none. B's append waits
/// for A's chainer and answers the id the chain gave its event; the trail
/// and its check agree on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_on_one_node_is_chained_by_the_other_nodes_task() {
    if !services() {
        return;
    }
    let config = fresh_config().await.expect("checked above");
    let (a, task) = Distributed::open(&config).await.unwrap();
    let b = Distributed::connect(&config).await.unwrap();
    let work = async {
        let mut ids = Vec::new();
        for n in 0..5 {
            let ev = NewEvent::now(EventKind::ConfigReloaded).detail("n", n.to_string());
            ids.push(b.append(ev).await.unwrap());
        }
        a.settle().await.unwrap();
        let page = a
            .query_events(&EventFilter::default(), 100, None)
            .await
            .unwrap();
        let got: Vec<_> = page.events.iter().rev().map(|e| e.id).collect();
        assert_eq!(got, ids);
        let report = b.check().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.events, 5);
    };
    tokio::time::timeout(HANG, work).await.expect("no hang");
    task.shutdown().await.unwrap();
}

/// A node's task that led lets the lead go at shutdown: appends are still
/// chained, by whichever node leads next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_chained_after_the_leading_task_stops() {
    if !services() {
        return;
    }
    let config = fresh_config().await.expect("checked above");
    let (a, first) = Distributed::open(&config).await.unwrap();
    let work = async {
        a.append(NewEvent::now(EventKind::ConfigReloaded))
            .await
            .unwrap();
        first.shutdown().await.unwrap();
        let (b, second) = Distributed::open(&config).await.unwrap();
        // A's handle has no task now: B's task or A's append leads.
        a.append(NewEvent::now(EventKind::ConfigReloaded))
            .await
            .unwrap();
        assert_eq!(b.check().await.unwrap().events, 2);
        second.shutdown().await.unwrap();
    };
    tokio::time::timeout(HANG, work).await.expect("no hang");
}
