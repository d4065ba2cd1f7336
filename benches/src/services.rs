//! The Redis and PostgreSQL that the distributed figures run on:
//! `GATEHOUSE_BENCH_REDIS_URL` and `GATEHOUSE_BENCH_POSTGRES_URL`, else the
//! `GATEHOUSE_TEST_*` URLs that `source .ci/services` exports; and fresh
//! places in them for one run.

/// The Redis URL and the PostgreSQL URL, each when set.
pub fn urls() -> (Option<String>, Option<String>) {
    let var = |bench: &str, test: &str| std::env::var(bench).or_else(|_| std::env::var(test)).ok();
    (
        var("GATEHOUSE_BENCH_REDIS_URL", "GATEHOUSE_TEST_REDIS_URL"),
        var(
            "GATEHOUSE_BENCH_POSTGRES_URL",
            "GATEHOUSE_TEST_POSTGRES_URL",
        ),
    )
}

/// A database `name` made afresh (dropped first) on the server of `url`,
/// and its URL.
pub async fn fresh_database(url: &str, name: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the bench PostgreSQL answers");
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.expect("create database");
    }
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// The competitor of the chain in PostgreSQL: a fresh database `name` on
/// the server of `url` with the same `events` table and indexes as the
/// chain's, and no chain; a client connected to it.
pub async fn plain_events_table(url: &str, name: &str) -> tokio_postgres::Client {
    let plain_url = fresh_database(url, name).await;
    let (plain, conn) = tokio_postgres::connect(&plain_url, tokio_postgres::NoTls)
        .await
        .expect("the bench PostgreSQL answers");
    tokio::spawn(conn);
    plain
        .batch_execute(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, user_name TEXT NOT NULL, \
             kind SMALLINT NOT NULL, ip INET, record BYTEA NOT NULL, source TEXT UNIQUE); \
             CREATE INDEX ON events (user_name, id DESC); CREATE INDEX ON events (kind, id DESC)",
        )
        .await
        .expect("create the plain table");
    plain
}

/// A Redis key prefix no other run uses.
pub fn fresh_prefix(what: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("gh_bench_{what}_{}_{now}", std::process::id())
}
