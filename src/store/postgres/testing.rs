//! For tests against a real PostgreSQL (`GATEHOUSE_TEST_POSTGRES_URL`,
//! which `.ci/services` starts): a fresh database per test. Without the
//! URL a test says so and passes, unless `GATEHOUSE_REQUIRE_SERVICES=1`
//! (set by `.ci/run`), which makes it fail.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

/// The URL of a fresh, empty database, or `None` (the test is skipped).
pub async fn fresh_database() -> Option<String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but GATEHOUSE_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: no PostgreSQL (set GATEHOUSE_TEST_POSTGRES_URL; see .ci/services)");
        return None;
    };
    let name = format!(
        "gh_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("GATEHOUSE_TEST_POSTGRES_URL answers");
    tokio::spawn(conn);
    // Two statements: neither may run inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    Some(format!("{base}/{name}"))
}
