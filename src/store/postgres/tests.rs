//! Against a real PostgreSQL, each test in a database of its own
//! ([`fresh_database`]).

use std::net::IpAddr;

use tokio_postgres::NoTls;

use super::testing::fresh_database;
use super::{Outboxed, PgAudit};
use crate::domain::{EventFilter, EventId, EventKind, NewEvent, Outcome, PublicId};
use crate::store::{AuditStore, Backend, BackendConfig, StoreCheck};

/// A plain connection to `url`, for what the store never does itself.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A day of events in 2026: several users and none, every kind, addresses
/// of both families, details, and times that repeat and go backwards (as
/// nodes' clocks and an outbox's order do), so ids must be moved past the
/// head.
fn day_of_events(n: usize) -> Vec<NewEvent> {
    let start_us = 1_780_000_000_000_000u64;
    let users = ["alice", "bob", "carol", "", "dave"];
    let ips: [Option<IpAddr>; 4] = [
        Some("192.0.2.7".parse().unwrap()),
        Some("2001:db8::1".parse().unwrap()),
        None,
        Some("198.51.100.2".parse().unwrap()),
    ];
    (0..n)
        .map(|i| {
            let at = match i % 7 {
                3 => start_us + (i as u64 - 1) * 1_000, // the one before's time
                5 => start_us + (i as u64).saturating_sub(4) * 1_000, // backwards
                _ => start_us + i as u64 * 1_000,
            };
            let kind = EventKind::ALL[i % EventKind::ALL.len()];
            let mut ev = NewEvent::at(kind, at).ip(ips[i % ips.len()]);
            if !users[i % users.len()].is_empty() {
                ev = ev.user(users[i % users.len()]);
            }
            if i % 3 == 0 {
                ev = ev.detail("rule", format!("r{i}")).detail("path", "/admin");
            }
            if i % 4 == 1 {
                ev.session = Some(PublicId([i as u8; 16]));
                ev.user_agent = Some(format!("agent {i}"));
            }
            ev
        })
        .collect()
}

/// Every page of `filter` from `store`, `limit` at a time.
async fn all(
    store: &impl AuditStore,
    filter: &EventFilter,
    limit: usize,
) -> Vec<crate::domain::Event> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_events(filter, limit, cursor.as_deref())
            .await
            .unwrap();
        out.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn the_chain_and_every_query_match_the_redb_backends() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let pg = PgAudit::connect(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (redb, task) = Backend::connect(&BackendConfig::redb(dir.path().join("g.redb")))
        .await
        .unwrap();
    let events = day_of_events(600);
    let mut pg_ids = Vec::new();
    // Batches of varying size, as a chainer takes them.
    let mut rest = events.clone();
    let mut size = 1;
    while !rest.is_empty() {
        let batch: Vec<Outboxed> = rest
            .drain(..size.min(rest.len()))
            .map(|event| Outboxed {
                source: None,
                event,
            })
            .collect();
        pg_ids.extend(
            pg.append_batch(batch)
                .await
                .unwrap()
                .into_iter()
                .map(Option::unwrap),
        );
        size = size % 97 + 13;
    }
    let mut redb_ids = Vec::new();
    for ev in events {
        redb_ids.push(redb.append(ev).await.unwrap());
    }
    assert_eq!(pg_ids, redb_ids, "the same ids from the same events");
    assert!(pg_ids.windows(2).all(|w| w[0] < w[1]));

    // One chain: the same head, and each side verifies.
    let redb_check = redb.check().await.unwrap();
    let pg_check = pg.check().await.unwrap();
    assert!(pg_check.is_ok(), "{pg_check:?}");
    assert!(redb_check.is_ok(), "{redb_check:?}");
    assert_eq!(pg_check.chain_head, redb_check.chain_head);
    assert_eq!(pg_check.events, 600);

    // Every query gives the same events, whatever the page size.
    let kinds = |ks: &[EventKind]| ks.to_vec();
    let filters = [
        EventFilter::default(),
        EventFilter {
            user: Some("alice".into()),
            ..Default::default()
        },
        EventFilter {
            user: Some("nobody".into()),
            ..Default::default()
        },
        EventFilter {
            kinds: kinds(&[EventKind::LoginFailure, EventKind::SessionCreated]),
            ..Default::default()
        },
        EventFilter {
            user: Some("bob".into()),
            kinds: kinds(&[EventKind::LoginSuccess, EventKind::LoginFailure]),
            ..Default::default()
        },
        EventFilter {
            outcome: Some(Outcome::Failure),
            ..Default::default()
        },
        EventFilter {
            ip: Some("2001:db8::1".parse().unwrap()),
            user: Some("carol".into()),
            ..Default::default()
        },
        EventFilter {
            since_us: Some(1_780_000_000_100_000),
            until_us: Some(1_780_000_000_400_000),
            ..Default::default()
        },
    ];
    for f in &filters {
        let want = all(&redb, f, 1000).await;
        for limit in [1, 7, 100, 1000] {
            let got = all(&pg, f, limit).await;
            assert_eq!(got, want, "{f:?} by {limit}");
        }
    }
    // A cursor of one filter is refused for another, as on redb.
    let page = pg.query_events(&filters[1], 5, None).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    assert!(
        pg.query_events(&filters[0], 5, Some(&cursor))
            .await
            .is_err()
    );
    // Following the trail.
    let after = pg_ids[99];
    assert_eq!(
        pg.events_after(after, 50).await.unwrap(),
        redb.events_after(after, 50).await.unwrap()
    );
    assert!(
        pg.events_after(EventId(u64::MAX), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        pg.audit_counts(3).await.unwrap(),
        redb.audit_counts(3).await.unwrap()
    );

    // Retention: the same archive, the same steps, the same anchor.
    let through = pg_ids[250];
    assert_eq!(
        pg.oldest_events(through, 100).await.unwrap(),
        redb.oldest_events(through, 100).await.unwrap()
    );
    loop {
        let a = AuditStore::prune(&pg, through, 100).await.unwrap();
        let b = redb.prune(through, 100).await.unwrap();
        assert_eq!(a, b);
        if !a.more {
            break;
        }
    }
    // Appended after the prune, on both: still one chain.
    for ev in day_of_events(20) {
        let a = AuditStore::append(&pg, ev.clone()).await.unwrap();
        assert_eq!(a, redb.append(ev).await.unwrap());
    }
    let pg_check = pg.check().await.unwrap();
    let redb_check = redb.check().await.unwrap();
    assert!(pg_check.is_ok(), "{pg_check:?}");
    assert!(redb_check.is_ok(), "{redb_check:?}");
    assert_eq!(pg_check.chain_head, redb_check.chain_head);
    assert_eq!(pg_check.events, 600 - 251 + 20);
    assert_eq!(
        all(&pg, &EventFilter::default(), 1000).await,
        all(&redb, &EventFilter::default(), 1000).await
    );
    task.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_chain_is_neither_archived_nor_pruned() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let pg = PgAudit::connect(&url).await.unwrap();
    let mut ids = Vec::new();
    for ev in day_of_events(10) {
        ids.push(AuditStore::append(&pg, ev).await.unwrap());
    }
    raw(&url)
        .await
        .execute(
            "UPDATE events SET user_name = 'mallory' WHERE id = $1",
            &[&super::sql_id(ids[3].0)],
        )
        .await
        .unwrap();
    let err = pg.oldest_events(ids[9], 10).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("broken at event {}", ids[4].0)),
        "{err}"
    );
    let err = AuditStore::prune(&pg, ids[9], 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to prune"), "{err}");
    assert_eq!(pg.check().await.unwrap().events, 10, "nothing was removed");
    // Up to the break, retention goes on.
    let r = AuditStore::prune(&pg, ids[2], 10).await.unwrap();
    assert_eq!((r.pruned, r.through, r.more), (3, Some(ids[2]), false));
}

#[tokio::test]
async fn an_outbox_entry_is_chained_once() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let pg = PgAudit::connect(&url).await.unwrap();
    let entry = |source: &str, user: &str| Outboxed {
        source: Some(source.into()),
        event: NewEvent::now(EventKind::LoginSuccess).user(user),
    };
    let first = pg
        .append_batch(vec![entry("1-0", "alice"), entry("1-1", "bob")])
        .await
        .unwrap();
    assert!(first.iter().all(Option::is_some));
    // Redelivered after a crash between commit and acknowledgement, with
    // new entries behind it, one of them twice.
    let again = pg
        .append_batch(vec![
            entry("1-1", "bob"),
            entry("1-2", "carol"),
            entry("1-2", "carol"),
        ])
        .await
        .unwrap();
    assert!(again[0].is_none() && again[1].is_some() && again[2].is_none());
    let check = pg.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!((check.events, check.appended), (3, 3));
}

#[tokio::test]
async fn two_nodes_appending_at_once_make_one_chain() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let a = PgAudit::connect(&url).await.unwrap();
    let b = PgAudit::connect(&url).await.unwrap();
    let node = |pg: PgAudit, name: &'static str| {
        tokio::spawn(async move {
            for i in 0..40 {
                let batch = (0..5)
                    .map(|j| Outboxed {
                        source: Some(format!("{name}-{i}-{j}")),
                        event: NewEvent::now(EventKind::SessionCreated).user(name),
                    })
                    .collect();
                pg.append_batch(batch).await.unwrap();
            }
        })
    };
    let (ra, rb) = tokio::join!(node(a.clone(), "a"), node(b, "b"));
    ra.unwrap();
    rb.unwrap();
    let check = a.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.events, 400);
    let events = all(&a, &EventFilter::default(), 1000).await;
    assert_eq!(events.len(), 400);
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
}

#[tokio::test]
async fn a_changed_or_removed_event_is_found_by_the_check() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let pg = PgAudit::connect(&url).await.unwrap();
    let batch = day_of_events(50)
        .into_iter()
        .map(|event| Outboxed {
            source: None,
            event,
        })
        .collect();
    let ids: Vec<EventId> = pg
        .append_batch(batch)
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert!(pg.check().await.unwrap().is_ok());
    let sql = raw(&url).await;
    // Someone with write access renames the user of event 20.
    sql.execute(
        "UPDATE events SET user_name = 'mallory' WHERE id = $1",
        &[&super::sql_id(ids[20].0)],
    )
    .await
    .unwrap();
    let check = pg.check().await.unwrap();
    assert!(!check.is_ok());
    assert_eq!(check.first_bad_event, Some(ids[21].0), "{check:?}");
    // And removes event 30.
    sql.execute(
        "DELETE FROM events WHERE id = $1",
        &[&super::sql_id(ids[30].0)],
    )
    .await
    .unwrap();
    let check = pg.check().await.unwrap();
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("50 appended, 0 pruned, 49 present")),
        "{check:?}"
    );
}

#[tokio::test]
async fn the_schema_is_applied_once_and_a_newer_one_is_refused() {
    let Some(url) = fresh_database().await else {
        return;
    };
    // Nodes starting together.
    let opens = futures_util::future::join_all((0..4).map(|_| PgAudit::connect(&url))).await;
    assert!(opens.iter().all(Result::is_ok));
    let sql = raw(&url).await;
    let v: i32 = sql
        .query_one("SELECT version FROM gatehouse_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v as u32, gatehouse_migrations::postgres::LATEST);
    sql.execute("UPDATE gatehouse_schema SET version = 99", &[])
        .await
        .unwrap();
    let err = PgAudit::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, crate::store::OpenError::Newer { found: 99, .. }),
        "{err}"
    );
    // The message names the database, never a password.
    let with_password = url.replacen("postgres@", "postgres:s3cret@", 1);
    let err = PgAudit::connect(&with_password)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schema version 99") && !err.contains("s3cret"),
        "{err}"
    );
}
