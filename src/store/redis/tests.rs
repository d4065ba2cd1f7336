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

/// Bans made, read, lifted and swept on two nodes, and their events
/// chained: the very events (and chain) redb records for the same calls.
#[tokio::test]
async fn bans_are_shared_and_recorded_as_redb_records_them() {
    use crate::domain::{BanSubject, NewBan};
    use crate::store::outbox::{Chainer, DEFAULT_MAX_ENTRIES, Outbox};
    use crate::store::postgres::PgAudit;
    use crate::store::postgres::testing::fresh_database;
    use crate::store::{AuditStore, Backend, BackendConfig, BanStore, SessionStore, StoreCheck};

    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let Some(pg_url) = fresh_database().await else {
        return;
    };
    let [a, b] = two_nodes(&url, &prefix).await;
    let dir = tempfile::tempdir().unwrap();
    let (redb, task) = Backend::connect(&BackendConfig::redb(dir.path().join("g.redb")))
        .await
        .unwrap();

    let now = 1_780_000_000_000u64;
    let alice = BanSubject::User("alice".into());
    let client = BanSubject::ip("2001:db8:5::9".parse().unwrap());
    let bans = [
        NewBan {
            subject: alice.clone(),
            until_ms: now + 60_000,
            reason: "5 failed sign-ins".into(),
            ip: Some("192.0.2.4".parse().unwrap()),
            now_ms: now,
        },
        NewBan {
            subject: client.clone(),
            until_ms: now + 1_000,
            reason: "x".repeat(600),
            ip: None,
            now_ms: now + 1,
        },
    ];
    for ban in &bans {
        a.add_ban(ban.clone()).await.unwrap();
        redb.add_ban(ban.clone()).await.unwrap();
    }
    // The other node sees both, as redb does.
    assert_eq!(
        b.ban(&alice, now + 10).await.unwrap(),
        redb.ban(&alice, now + 10).await.unwrap()
    );
    assert_eq!(
        b.bans(now + 10).await.unwrap(),
        redb.bans(now + 10).await.unwrap()
    );
    assert_eq!(b.bans(now + 10).await.unwrap().len(), 2);
    // An operator lifts alice's on one node; the other finds none.
    assert!(
        b.lift_ban(&alice, "lifted by an operator", Some("root"), now + 20)
            .await
            .unwrap()
    );
    assert!(!a.lift_ban(&alice, "again", None, now + 21).await.unwrap());
    assert!(
        redb.lift_ban(&alice, "lifted by an operator", Some("root"), now + 20)
            .await
            .unwrap()
    );
    assert!(
        !redb
            .lift_ban(&alice, "again", None, now + 21)
            .await
            .unwrap()
    );
    // The address's ban runs out; one sweep ends it, whichever node.
    assert_eq!(a.sweep_bans(now + 5_000, 10).await.unwrap(), 1);
    assert_eq!(b.sweep_bans(now + 5_000, 10).await.unwrap(), 0);
    assert!(b.bans(now + 5_000).await.unwrap().is_empty());
    assert_eq!(redb.sweep(now + 5_000, 10).await.unwrap().bans_lifted, 1);

    // Chained, the outbox's events are redb's: the same ids and chain.
    let pg = PgAudit::connect(&pg_url).await.unwrap();
    let outbox = Outbox::connect(&url, &prefix, DEFAULT_MAX_ENTRIES)
        .await
        .unwrap();
    let chainer = Chainer::new(outbox, pg.clone(), 100);
    let leader = chainer.lead().await.unwrap().unwrap();
    assert_eq!(chainer.flush(&leader).await.unwrap(), 4);
    let filter = crate::domain::EventFilter::default();
    assert_eq!(
        pg.query_events(&filter, 100, None).await.unwrap().events,
        redb.query_events(&filter, 100, None).await.unwrap().events
    );
    assert_eq!(
        pg.check().await.unwrap().chain_head,
        redb.check().await.unwrap().chain_head
    );
    task.shutdown().await.unwrap();
}

/// A change whose event cannot join a full outbox is not made at all.
#[tokio::test]
async fn a_ban_is_refused_whole_when_the_outbox_is_full() {
    use crate::domain::{BanSubject, NewBan};
    use crate::store::BanStore;
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let state = RedisState::connect(&url, &prefix, Durability::Always)
        .await
        .unwrap()
        .with_outbox_max(1);
    let ban = |user: &str| NewBan {
        subject: BanSubject::User(user.into()),
        until_ms: u64::MAX / 2,
        reason: "test".into(),
        ip: None,
        now_ms: 1_780_000_000_000,
    };
    state.add_ban(ban("alice")).await.unwrap();
    let e = state.add_ban(ban("bob")).await.unwrap_err();
    assert!(matches!(e, crate::store::WriteError::Busy), "{e}");
    let bob = BanSubject::User("bob".into());
    assert_eq!(state.ban(&bob, 1_780_000_000_001).await.unwrap(), None);
}
