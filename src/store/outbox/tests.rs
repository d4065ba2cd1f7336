//! The outbox and the chainer against a real Redis and PostgreSQL
//! (`.ci/services`): each test on a key prefix and a database of its own.

use std::time::Duration;

use super::testing::fresh_prefix;
use super::*;
use crate::domain::{EventFilter, EventKind, NewEvent};
use crate::store::postgres::PgAudit;
use crate::store::postgres::testing::fresh_database;

/// An outbox and a chain, or `None` when a service is missing.
async fn both(max: u64) -> Option<(Outbox, PgAudit, String)> {
    let (redis, prefix) = fresh_prefix()?;
    let url = fresh_database().await?;
    let outbox = Outbox::connect(&redis, &prefix, max).await.unwrap();
    let pg = PgAudit::connect(&url).await.unwrap();
    Some((outbox, pg, url))
}

fn event(i: u64) -> NewEvent {
    // Times that repeat and go backwards, as several nodes' clocks do.
    let at = 1_780_000_000_000_000 + (i % 5) * 1_000 + i;
    NewEvent::at(EventKind::ALL[i as usize % EventKind::ALL.len()], at)
        .user(format!("user{}", i % 3))
        .detail("n", i.to_string())
}

async fn chained(pg: &PgAudit) -> Vec<crate::domain::Event> {
    let mut all = pg
        .query_events(&EventFilter::default(), 1000, None)
        .await
        .unwrap()
        .events;
    all.reverse();
    all
}

#[tokio::test]
async fn entries_reach_the_chain_once_in_their_order_with_their_own_time() {
    let Some((outbox, pg, _)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    for i in 0..250 {
        outbox.push(&event(i)).await.unwrap();
    }
    assert_eq!(outbox.depth().await.unwrap(), 250);
    let chainer = Chainer::new(outbox.clone(), pg.clone(), 64);
    let leader = chainer.lead().await.unwrap().expect("no one else leads");
    assert_eq!(chainer.flush(&leader).await.unwrap(), 250);
    assert_eq!(outbox.depth().await.unwrap(), 0);
    let all = chained(&pg).await;
    assert_eq!(all.len(), 250);
    for (i, ev) in all.iter().enumerate() {
        assert_eq!(ev.details, vec![("n".into(), i.to_string().into())]);
        // The time of the change, moved on only past the event before.
        assert!(ev.time_us >= event(i as u64).at_us);
        assert!(ev.time_us - event(i as u64).at_us < 10_000);
    }
    assert!(pg.check().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_crash_between_commit_and_acknowledgement_chains_nothing_twice() {
    let Some((outbox, pg, _)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    for i in 0..10 {
        outbox.push(&event(i)).await.unwrap();
    }
    // A chainer committed the first six, and died before removing them.
    let first = outbox.oldest(6).await.unwrap();
    pg.append_batch(
        first
            .into_iter()
            .map(|e| crate::store::postgres::Outboxed {
                source: Some(e.id),
                event: e.event.unwrap(),
            })
            .collect(),
    )
    .await
    .unwrap();
    // The next leader reads them again, with the rest.
    let chainer = Chainer::new(outbox.clone(), pg.clone(), 4);
    let leader = chainer.lead().await.unwrap().unwrap();
    assert_eq!(chainer.flush(&leader).await.unwrap(), 10);
    assert_eq!(outbox.depth().await.unwrap(), 0);
    let check = pg.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.events, 10, "no duplicate and no gap");
    let all = chained(&pg).await;
    let ns: Vec<String> = all.iter().map(|e| e.details[0].1.to_string()).collect();
    assert_eq!(ns, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn one_node_leads_at_a_time_and_another_takes_over() {
    let Some((outbox, pg, _)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    let a = Chainer::new(outbox.clone(), pg.clone(), 10);
    let b = Chainer::new(outbox, pg, 10);
    let leader = a.lead().await.unwrap().expect("a leads");
    assert!(b.lead().await.unwrap().is_none(), "two leaders");
    drop(leader);
    // The session ends a moment after its connection is dropped.
    let took = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(l) = b.lead().await.unwrap() {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b took over");
    assert!(!took.is_lost());
}

#[tokio::test]
async fn a_full_outbox_refuses_until_its_events_are_chained() {
    let Some((outbox, pg, _)) = both(5).await else {
        return;
    };
    for i in 0..5 {
        outbox.push(&event(i)).await.unwrap();
    }
    let e = outbox.push(&event(5)).await.unwrap_err();
    assert!(matches!(e, OutboxError::Full(5)), "{e}");
    let chainer = Chainer::new(outbox.clone(), pg, 100);
    let leader = chainer.lead().await.unwrap().unwrap();
    chainer.flush(&leader).await.unwrap();
    outbox.push(&event(5)).await.unwrap();
}

#[tokio::test]
async fn an_entry_that_is_no_event_is_set_aside_and_holds_nothing_up() {
    let Some((outbox, pg, _)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    outbox.push(&event(0)).await.unwrap();
    let mut conn = outbox.conn.clone();
    let _: String = redis::cmd("XADD")
        .arg(&outbox.key)
        .arg("*")
        .arg("e")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    outbox.push(&event(1)).await.unwrap();
    let chainer = Chainer::new(outbox.clone(), pg.clone(), 100);
    let leader = chainer.lead().await.unwrap().unwrap();
    assert_eq!(chainer.flush(&leader).await.unwrap(), 3);
    assert_eq!(chained(&pg).await.len(), 2);
    let aside: u64 = redis::cmd("XLEN")
        .arg(&outbox.unreadable_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(aside, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_running_chainers_make_one_chain_of_every_event() {
    let Some((outbox, pg, url)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    let pg_b = PgAudit::connect(&url).await.unwrap();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut nodes = Vec::new();
    for pg in [pg.clone(), pg_b] {
        let mut stop = stop_tx.subscribe();
        let chainer = Chainer::new(outbox.clone(), pg, 16);
        nodes.push(tokio::spawn(chainer.run(async move {
            let _ = stop.recv().await;
        })));
    }
    // Both nodes' changes land in one outbox while the chainers run.
    for i in 0..300 {
        outbox.push(&event(i)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while outbox.depth().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the outbox drained");
    stop_tx.send(()).unwrap();
    for n in nodes {
        n.await.unwrap();
    }
    let check = pg.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.events, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_for_a_while_loses_nothing() {
    let Some((outbox, pg, url)) = both(DEFAULT_MAX_ENTRIES).await else {
        return;
    };
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(
        Chainer::new(outbox.clone(), pg.clone(), 16).run(async move {
            let _ = (&mut stop).await;
        }),
    );
    let drained = |outbox: Outbox| async move {
        tokio::time::timeout(Duration::from_secs(30), async {
            while outbox.depth().await.unwrap() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the outbox drained")
    };
    for i in 0..50 {
        outbox.push(&event(i)).await.unwrap();
    }
    drained(outbox.clone()).await;

    // The database goes away: no new connection, and the open ones cut.
    let (base, db) = url.rsplit_once('/').unwrap();
    let (admin, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .await
        .unwrap();
    // Changes go on: their events wait in the outbox.
    for i in 50..100 {
        outbox.push(&event(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        outbox.depth().await.unwrap(),
        50,
        "chained without a database?"
    );

    // It comes back, and the chainer carries on by itself.
    admin
        .batch_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    drained(outbox.clone()).await;
    stop_tx.send(()).unwrap();
    node.await.unwrap();
    let check = pg.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.events, 100);
}
