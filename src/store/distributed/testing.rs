//! For tests against the real services of `.ci/services`: two nodes of
//! one deployment (a fresh Redis key prefix, a fresh PostgreSQL database),
//! or `None` when a service is missing (the test is skipped).

use super::{Distributed, DistributedConfig};

/// The config of a fresh deployment on the test services.
pub(crate) async fn fresh_config() -> Option<DistributedConfig> {
    let (url, prefix) = crate::store::outbox::testing::fresh_prefix()?;
    let pg = crate::store::postgres::testing::fresh_database().await?;
    Some(DistributedConfig::new(url, pg).with_prefix(prefix))
}

/// Two nodes of `config`, their chainers not started: whoever must see
/// the outbox chained (an append, a settle) chains it.
pub(crate) async fn two_nodes(config: &DistributedConfig) -> [Distributed; 2] {
    let node = async || {
        Distributed::connect(config)
            .await
            .expect("the test services open")
    };
    [node().await, node().await]
}

/// Whether both test services are there; when one is not, the test says
/// so and passes, unless `GATEHOUSE_REQUIRE_SERVICES=1` (then it fails).
pub(crate) fn services() -> bool {
    if crate::store::outbox::testing::fresh_prefix().is_none() {
        return false;
    }
    if std::env::var("GATEHOUSE_TEST_POSTGRES_URL").is_err() {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but GATEHOUSE_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: no PostgreSQL (set GATEHOUSE_TEST_POSTGRES_URL; see .ci/services)");
        return false;
    }
    true
}
