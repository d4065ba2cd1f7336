//! The durability check and the name in messages. The guards run through
//! the conformance model (`store::conformance::guards`).

use super::*;

#[test]
fn only_a_durable_redis_is_accepted_and_the_message_names_the_setting() {
    assert_eq!(
        durability_problem("yes", "always", "noeviction", Durability::Always),
        None
    );
    assert_eq!(
        durability_problem("yes", "everysec", "noeviction", Durability::Everysec),
        None
    );
    for (aof, fsync, policy, accept, names) in [
        (
            "no",
            "always",
            "noeviction",
            Durability::Always,
            "appendonly yes",
        ),
        (
            "yes",
            "everysec",
            "noeviction",
            Durability::Always,
            "redis_durability",
        ),
        (
            "yes",
            "no",
            "noeviction",
            Durability::Everysec,
            "appendfsync always",
        ),
        (
            "yes",
            "always",
            "allkeys-lru",
            Durability::Always,
            "noeviction",
        ),
    ] {
        let why = durability_problem(aof, fsync, policy, accept).expect("refused");
        assert!(why.contains(names), "{why}");
    }
}

#[test]
fn a_password_never_reaches_a_message() {
    let n = redact("redis://:s3cret@cache.internal:6380/2");
    assert!(
        !n.contains("s3cret") && n.contains("cache.internal:6380"),
        "{n}"
    );
    assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
}

/// The test Redis of `.ci/services` is durable; the state connects.
#[tokio::test]
async fn a_durable_redis_is_opened() {
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let state = RedisState::connect(&url, &prefix, Durability::Always)
        .await
        .unwrap();
    assert!(!state.name().contains('@'));
}
