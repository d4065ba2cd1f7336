//! Figure 11: the audit trail in PostgreSQL. Chaining, as the chainer
//! does it (lock the head, hash, insert, move the head, commit), against a
//! plain batched `INSERT` of the same rows into a table with the same
//! indexes and no chain; and newest-100 of one user on PostgreSQL against
//! the redb store, on the same events. Runs only when
//! `GATEHOUSE_BENCH_POSTGRES_URL` names a server where it may create
//! databases, or `source .ci/services` started one (its URL is
//! `GATEHOUSE_TEST_POSTGRES_URL`). The outbox's figures are `outbox.rs`.

use std::time::{Duration, Instant};

use gatehouse::domain::{EventFilter, EventKind, NewEvent};
use gatehouse::store::chain::EventRecord;
use gatehouse::store::postgres::{Outboxed, PgAudit};
use gatehouse::store::{AuditStore, Backend, BackendConfig};
use gatehouse_benches::figure::POSTGRES_CHAIN;
use gatehouse_benches::stats::{Better, Lat};
use tokio::runtime::Runtime;

use crate::Params;
use crate::report::{Report, Unit};

/// One row of the plain table: id, user, kind, address, record, source.
type PlainRow = (i64, String, i16, Option<std::net::IpAddr>, Vec<u8>, String);

/// Events per chained batch: what a chainer takes from the outbox at once.
const BATCH: usize = 500;

/// Users the events are spread over; newest-100 reads the first.
const USERS: usize = 50;

fn events(n: usize) -> Vec<NewEvent> {
    let start = 1_780_000_000_000_000u64;
    (0..n)
        .map(|i| {
            NewEvent::at(EventKind::ALL[i % 4], start + i as u64 * 10)
                .user(format!("user{}", i % USERS))
                .ip(Some(std::net::IpAddr::from([
                    10,
                    0,
                    (i >> 8) as u8,
                    i as u8,
                ])))
                .detail("path", "/app/page")
        })
        .collect()
}

pub fn figures(p: &Params, rt: &Runtime, dir: &std::path::Path, rep: &mut Report) {
    let (_, Some(url)) = gatehouse_benches::services::urls() else {
        rep.note(
            "figure 11 skipped: set GATEHOUSE_BENCH_POSTGRES_URL, or `source .ci/services`, to \
             measure the PostgreSQL audit trail",
        );
        return;
    };
    let n = p.create_n * 25;
    rt.block_on(async {
        let chained_url = gatehouse_benches::services::fresh_database(&url, "gh_bench_chain").await;
        let pg = PgAudit::connect(&chained_url).await.expect("connect");
        let plain = gatehouse_benches::services::plain_events_table(&url, "gh_bench_plain").await;
        let all = events(n);
        // The plain side inserts the same rows, their bytes made up front.
        let rows: Vec<PlainRow> = all
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let record = EventRecord {
                    kind: e.kind.code(),
                    link: [0; 8],
                    ip: e.ip,
                    user_agent: None,
                    session: None,
                    details: e.details.clone(),
                };
                (
                    i as i64,
                    e.user.clone().unwrap_or_default(),
                    i16::from(e.kind.code()),
                    e.ip,
                    record.to_bytes(),
                    format!("0-{i}"),
                )
            })
            .collect();
        // Alternate batch by batch, so both meet the same machine.
        let (mut chained, mut inserted) = (Duration::ZERO, Duration::ZERO);
        for (b, chunk) in all.chunks(BATCH).enumerate() {
            let batch: Vec<Outboxed> = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| Outboxed {
                    source: Some(format!("0-{}", b * BATCH + i)),
                    event: e.clone(),
                })
                .collect();
            let t = Instant::now();
            pg.append_batch(batch).await.expect("chain a batch");
            chained += t.elapsed();
            let part = &rows[b * BATCH..(b * BATCH + chunk.len())];
            let cols = (
                part.iter().map(|r| r.0).collect::<Vec<_>>(),
                part.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                part.iter().map(|r| r.2).collect::<Vec<_>>(),
                part.iter().map(|r| r.3).collect::<Vec<_>>(),
                part.iter().map(|r| r.4.clone()).collect::<Vec<_>>(),
                part.iter().map(|r| r.5.clone()).collect::<Vec<_>>(),
            );
            let t = Instant::now();
            plain
                .execute(
                    "INSERT INTO events SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], \
                     $3::SMALLINT[], $4::INET[], $5::BYTEA[], $6::TEXT[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
                )
                .await
                .expect("plain insert");
            inserted += t.elapsed();
        }
        rep.row(
            POSTGRES_CHAIN,
            format!("chaining {n} events in batches of {BATCH}"),
            Some(n as f64 / chained.as_secs_f64()),
            "plain batched INSERT, same rows and indexes",
            Some(n as f64 / inserted.as_secs_f64()),
            Unit::Rate("events".into()),
            Better::Higher,
            "both durable (PostgreSQL defaults: fsync, synchronous_commit on)",
        );

        // Newest-100 of one user, on the same events in redb.
        let (redb, task) = Backend::connect(&BackendConfig::redb(dir.join("pg-compare.redb")))
            .await
            .unwrap();
        for e in &all {
            redb.append(e.clone()).await.unwrap();
        }
        let filter = EventFilter {
            user: Some("user0".into()),
            ..Default::default()
        };
        let (mut on_pg, mut on_redb) = (Vec::new(), Vec::new());
        for _ in 0..p.fast_iters.min(500) {
            let t = Instant::now();
            let page = pg.query_events(&filter, 100, None).await.unwrap();
            on_pg.push(t.elapsed());
            assert_eq!(page.events.len(), 100);
            let t = Instant::now();
            let page = redb.query_events(&filter, 100, None).await.unwrap();
            on_redb.push(t.elapsed());
            assert_eq!(page.events.len(), 100);
        }
        let (a, b) = (Lat::of(&mut on_pg), Lat::of(&mut on_redb));
        rep.row(
            POSTGRES_CHAIN,
            format!("newest-100 of one user of {USERS}, {n} events, p50"),
            Some(a.p50_us),
            "redb store, same events",
            Some(b.p50_us),
            Unit::Micros,
            Better::Lower,
            format!(
                "p99 {:.0} µs against {:.0} µs; PostgreSQL over loopback TCP",
                a.p99_us, b.p99_us
            ),
        );
        task.shutdown().await.unwrap();
    });
}
