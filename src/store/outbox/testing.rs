//! For tests against a real Redis (`GATEHOUSE_TEST_REDIS_URL`, which
//! `.ci/services` starts): a key prefix of its own per test. Without the
//! URL a test says so and passes, unless `GATEHOUSE_REQUIRE_SERVICES=1`.

use std::sync::atomic::{AtomicU32, Ordering};

/// The Redis URL and a fresh key prefix, or `None` (the test is skipped).
pub fn fresh_prefix() -> Option<(String, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var("GATEHOUSE_TEST_REDIS_URL") else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GATEHOUSE_REQUIRE_SERVICES=1, but GATEHOUSE_TEST_REDIS_URL is not set"
        );
        eprintln!("skipped: no Redis (set GATEHOUSE_TEST_REDIS_URL; see .ci/services)");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Some((
        url,
        format!(
            "gh_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
    ))
}
