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

/// A Redis key prefix no other run uses.
pub fn fresh_prefix(what: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("gh_bench_{what}_{}_{now}", std::process::id())
}
