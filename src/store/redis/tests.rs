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

/// A node asking for more replicas than the master has refuses to start,
/// naming the setting; one asking for none connects to the same Redis.
#[tokio::test]
async fn a_master_with_too_few_replicas_is_refused() {
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let open = async |n: u32| {
        let target = Target::from_url(&url, None).unwrap();
        RedisState::connect_target(target, &url, &prefix, Durability::Always, Replicas(n)).await
    };
    let e = open(1).await.unwrap_err().to_string();
    assert!(
        e.contains("redis_replicas = 1") && e.contains("0 connected"),
        "{e}"
    );
    open(0).await.unwrap();
}

/// Two Redis nodes and a redb store beside them, and a fresh PostgreSQL
/// database to chain the outbox into; `None` when a service is missing.
pub(super) struct Sides {
    pub(super) nodes: [RedisState; 2],
    pub(super) redb: crate::store::Backend,
    pub(super) task: crate::store::BackendTask,
    _dir: tempfile::TempDir,
    url: String,
    prefix: String,
    pg_url: String,
}

/// `events` with each session id replaced by the label the test gave that
/// session on this side, so that two backends' events compare equal.
pub(super) fn labelled(
    events: Vec<crate::domain::Event>,
    names: &std::collections::HashMap<crate::domain::PublicId, &str>,
) -> Vec<crate::domain::Event> {
    events
        .into_iter()
        .map(|mut e| {
            let id = e
                .session
                .as_deref()
                .and_then(|s| s.parse::<crate::domain::PublicId>().ok());
            e.session = id.map(|id| names[&id].into());
            e
        })
        .collect()
}

pub(super) async fn sides() -> Option<Sides> {
    use crate::store::{Backend, BackendConfig};
    let (url, prefix) = crate::store::outbox::testing::fresh_prefix()?;
    let pg_url = crate::store::postgres::testing::fresh_database().await?;
    let nodes = two_nodes(&url, &prefix).await;
    let dir = tempfile::tempdir().unwrap();
    let (redb, task) = Backend::connect(&BackendConfig::redb(dir.path().join("g.redb")))
        .await
        .unwrap();
    Some(Sides {
        nodes,
        redb,
        task,
        _dir: dir,
        url,
        prefix,
        pg_url,
    })
}

impl Sides {
    /// Chains the outbox into PostgreSQL: the chain, its events and
    /// redb's, newest first.
    pub(super) async fn chained(
        &self,
    ) -> (
        crate::store::postgres::PgAudit,
        Vec<crate::domain::Event>,
        Vec<crate::domain::Event>,
    ) {
        use crate::store::AuditStore;
        use crate::store::outbox::{Chainer, DEFAULT_MAX_ENTRIES, Outbox};
        let pg = crate::store::postgres::PgAudit::connect(&self.pg_url)
            .await
            .unwrap();
        let outbox = Outbox::connect(&self.url, &self.prefix, DEFAULT_MAX_ENTRIES)
            .await
            .unwrap();
        let chainer = Chainer::new(outbox, pg.clone(), 100);
        let leader = chainer.lead().await.unwrap().unwrap();
        chainer.flush(&leader).await.unwrap();
        let all = crate::domain::EventFilter::default();
        let chained = pg.query_events(&all, 1000, None).await.unwrap().events;
        let redb = self
            .redb
            .query_events(&all, 1000, None)
            .await
            .unwrap()
            .events;
        (pg, chained, redb)
    }
}

/// Bans made, read, lifted and swept on two nodes, and their events
/// chained: the very events (and chain) redb records for the same calls.
#[tokio::test]
async fn bans_are_shared_and_recorded_as_redb_records_them() {
    use crate::domain::{BanSubject, NewBan};
    use crate::store::{BanStore, SessionStore, StoreCheck};

    let Some(sides) = sides().await else { return };
    let [a, b] = &sides.nodes;
    let redb = &sides.redb;

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
    let (pg, chained, on_redb) = sides.chained().await;
    assert_eq!(chained.len(), 4);
    assert_eq!(chained, on_redb);
    assert_eq!(
        pg.check().await.unwrap().chain_head,
        redb.check().await.unwrap().chain_head
    );
    sides.task.shutdown().await.unwrap();
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

/// The same sessions made, touched, capped, revoked, swept and checked on
/// Redis (two nodes) and on redb: the same answers, and once chained, the
/// same events, session for session.
#[tokio::test]
async fn sessions_behave_and_are_recorded_as_on_redb() {
    use std::collections::HashMap;

    use crate::domain::{
        EventKind, Method, Methods, NewEvent, NewSession, PublicId, Revocation, RevokeReason,
    };
    use crate::store::credentials::CredentialCheck;
    use crate::store::{SessionStore, WriteError};

    let Some(sides) = sides().await else { return };
    let [a, b] = &sides.nodes;
    let redb = &sides.redb;

    let t0 = 1_780_000_000_000u64;
    let new = |user: &str, at: u64, remember: bool| NewSession {
        user: user.into(),
        remember_me: remember,
        idle_ttl_ms: 10_000,
        absolute_ttl_ms: 3_600_000,
        max_per_user: 2,
        ip: Some("198.51.100.7".parse().unwrap()),
        user_agent: Some("Firefox".into()),
        now_ms: t0 + at,
        methods: Methods::of(&[Method::Password]),
    };
    let login = |user: &str, at: u64| {
        NewEvent::at(EventKind::LoginSuccess, (t0 + at) * 1000)
            .user(user)
            .ip(Some("198.51.100.7".parse().unwrap()))
    };
    // The same sign-in on a Redis node and on redb.
    let create_both = async |node: &RedisState, user: &str, at: u64, remember: bool| {
        let r = node
            .create_session(new(user, at, remember), login(user, at), None)
            .await
            .unwrap();
        let d = redb
            .create_session(new(user, at, remember), login(user, at), None)
            .await
            .unwrap();
        (r, d)
    };
    // Labels for each side's public ids, to compare events.
    let mut names: [HashMap<PublicId, &str>; 2] = Default::default();
    let mut tokens: HashMap<&str, [crate::domain::TokenHash; 2]> = HashMap::new();
    for (label, user, at, remember) in [
        ("A1", "alice", 0, false),
        ("A2", "alice", 1, false),
        ("A3", "alice", 2, false),
    ] {
        let (r, d) = create_both(a, user, at, remember).await;
        assert_eq!(r.evicted.len(), d.evicted.len(), "{label}");
        names[0].insert(r.session.id, label);
        names[1].insert(d.session.id, label);
        tokens.insert(label, [r.token.hash(), d.token.hash()]);
    }
    // A3 is used at +5 s (on the other node), so it outlives A2.
    b.touch(tokens["A3"][0], t0 + 5_000).unwrap();
    redb.touch(tokens["A3"][1], t0 + 5_000).unwrap();
    for (label, user, at, remember) in
        [("A4", "alice", 12_000, false), ("B1", "bob", 12_001, false)]
    {
        let (r, d) = create_both(b, user, at, remember).await;
        names[0].insert(r.session.id, label);
        names[1].insert(d.session.id, label);
        tokens.insert(label, [r.token.hash(), d.token.hash()]);
    }
    let live =
        |s: Vec<crate::domain::Session>, side: usize, names: &[HashMap<PublicId, &str>; 2]| {
            s.iter()
                .map(|s| {
                    (
                        names[side][&s.id].to_string(),
                        s.deadline_ms(),
                        s.last_seen_ms,
                    )
                })
                .collect::<Vec<_>>()
        };
    assert_eq!(
        live(
            a.sessions_of("alice", t0 + 12_050).await.unwrap(),
            0,
            &names
        ),
        live(
            redb.sessions_of("alice", t0 + 12_050).await.unwrap(),
            1,
            &names
        ),
    );
    assert_eq!(a.session_count().await.unwrap(), 3);

    // Revocations, by id (another user's id is not found), token and user.
    let how = |reason, at: u64| Revocation {
        reason,
        actor: None,
        ip: Some("198.51.100.7".parse().unwrap()),
        now_ms: t0 + at,
    };
    let id_of =
        |side: usize, label: &str| *names[side].iter().find(|(_, l)| **l == label).unwrap().0;
    for side in 0..2 {
        let store_revoke = async |user: &str, label: &str, at: u64| match side {
            0 => {
                a.revoke_session(user, id_of(0, label), how(RevokeReason::ByUser, at))
                    .await
            }
            _ => {
                redb.revoke_session(user, id_of(1, label), how(RevokeReason::ByUser, at))
                    .await
            }
        };
        assert!(store_revoke("alice", "A3", 12_010).await.unwrap());
        assert!(!store_revoke("bob", "A4", 12_011).await.unwrap());
    }
    assert!(
        b.revoke_by_token(tokens["B1"][0], how(RevokeReason::Logout, 12_020))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        redb.revoke_by_token(tokens["B1"][1], how(RevokeReason::Logout, 12_020))
            .await
            .unwrap()
            .is_some()
    );
    let (r, d) = create_both(a, "alice", 12_100, true).await;
    names[0].insert(r.session.id, "A5");
    names[1].insert(d.session.id, "A5");
    let mut others = how(RevokeReason::RevokeOthers, 12_200);
    others.actor = Some("admin".into());
    let ra = b
        .revoke_user("alice", Some(r.session.id), others.clone())
        .await
        .unwrap();
    let da = redb
        .revoke_user("alice", Some(d.session.id), others)
        .await
        .unwrap();
    assert_eq!(ra.len(), 1);
    assert_eq!(names[0][&ra[0]], names[1][&da[0]]);

    // The credentials changed: a sign-in checked against the old ones
    // creates nothing, on either.
    let (old, current) = (CredentialCheck::of("old"), CredentialCheck::of("new"));
    a.set_credentials(vec![("alice".into(), Some(current))])
        .await
        .unwrap();
    redb.set_credentials(vec![("alice".into(), Some(current))])
        .await
        .unwrap();
    for r in [
        b.create_session(
            new("alice", 12_300, false),
            login("alice", 12_300),
            Some(old),
        )
        .await,
        redb.create_session(
            new("alice", 12_300, false),
            login("alice", 12_300),
            Some(old),
        )
        .await,
    ] {
        assert!(matches!(r, Err(WriteError::CredentialsChanged)), "{r:?}");
    }

    // bob signs in again and goes idle.
    let (r, d) = create_both(b, "bob", 12_500, false).await;
    names[0].insert(r.session.id, "B2");
    names[1].insert(d.session.id, "B2");

    // An hour on, the remember-me session ran out and bob's went idle:
    // swept on either node, each with its reason.
    let ra = a.sweep(t0 + 3_700_000, 100).await.unwrap();
    let da = redb.sweep(t0 + 3_700_000, 100).await.unwrap();
    assert_eq!((ra.expired, ra.more), (da.expired, da.more));
    assert_eq!(ra.expired, 2);
    assert_eq!(b.session_count().await.unwrap(), 0);

    // Chained, the events are redb's, session for session.
    let (_, chained, on_redb) = sides.chained().await;
    let chained = labelled(chained, &names[0]);
    assert_eq!(chained, labelled(on_redb, &names[1]));
    // Every kind of session change is among them.
    for kind in [
        EventKind::SessionCreated,
        EventKind::SessionEvicted,
        EventKind::SessionExpired,
        EventKind::SessionRevoked,
        EventKind::Logout,
        EventKind::LoginSuccess,
    ] {
        assert!(chained.iter().any(|e| e.kind == kind), "{kind}");
    }
    let reasons: Vec<_> = chained
        .iter()
        .filter(|e| e.kind == EventKind::SessionExpired)
        .filter_map(|e| e.details.first().map(|d| d.1.clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "idle") && reasons.iter().any(|r| r == "absolute"));
    sides.task.shutdown().await.unwrap();
}

/// Access tokens made (from a two-factor session, at the cap, from an
/// ended session), used, revoked and swept on Redis and on redb: the same
/// answers, and once chained, the same events, token for token.
#[tokio::test]
async fn tokens_behave_and_are_recorded_as_on_redb() {
    use std::collections::HashMap;

    use crate::domain::{
        EventKind, Method, Methods, NewAccessToken, NewEvent, NewSession, PublicId, Revocation,
        RevokeReason, SessionToken,
    };
    use crate::store::{SessionStore, TokenStore};

    let Some(sides) = sides().await else { return };
    let [a, b] = &sides.nodes;
    let redb = &sides.redb;
    let t0 = 1_780_000_000_000u64;
    let session = NewSession {
        user: "alice".into(),
        remember_me: false,
        idle_ttl_ms: 3_600_000,
        absolute_ttl_ms: 7_200_000,
        max_per_user: 5,
        ip: None,
        user_agent: None,
        now_ms: t0,
        methods: Methods::of(&[Method::Password, Method::Totp]),
    };
    let login = || NewEvent::at(EventKind::LoginSuccess, t0 * 1000).user("alice");
    let ra = a
        .create_session(session.clone(), login(), None)
        .await
        .unwrap();
    let da = redb.create_session(session, login(), None).await.unwrap();
    let mut names: [HashMap<String, &str>; 2] = Default::default();
    names[0].insert(ra.session.id.to_string(), "S");
    names[1].insert(da.session.id.to_string(), "S");
    let sessions = [ra.token.hash(), da.token.hash()];

    let new = |name: &str, at: u64, expires: u64| NewAccessToken {
        user: "alice".into(),
        name: name.into(),
        domains: if name == "T2" {
            vec!["git.example.com".into()]
        } else {
            vec![]
        },
        expires_ms: t0 + expires,
        max_per_user: 2,
        ip: Some("192.0.2.1".parse().unwrap()),
        now_ms: t0 + at,
        two_factor: true,
    };
    let mut hashes: HashMap<&str, [crate::domain::TokenHash; 2]> = HashMap::new();
    let mut ids: HashMap<&str, [PublicId; 2]> = HashMap::new();
    for (label, at, expires, from_session) in [
        ("T1", 0, 1_000, true),
        ("T2", 1, 100_000, false),
        ("T3", 2_000, 100_000, true),
    ] {
        let via = |side: usize| from_session.then_some(sessions[side]);
        let r = a
            .create_token(new(label, at, expires), via(0))
            .await
            .unwrap()
            .unwrap();
        let d = redb
            .create_token(new(label, at, expires), via(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.info.two_factor, d.info.two_factor, "{label}");
        assert_eq!(r.info.two_factor, from_session, "{label}");
        names[0].insert(r.info.id.to_string(), label);
        names[1].insert(d.info.id.to_string(), label);
        hashes.insert(label, [r.token.hash(), d.token.hash()]);
        ids.insert(label, [r.info.id, d.info.id]);
    }
    // At the cap (T1 expired and was removed on the way), and from a
    // session that is no more.
    let ended = Some(SessionToken::generate().hash());
    assert_eq!(
        b.create_token(new("T4", 2_001, 100_000), None)
            .await
            .unwrap()
            .err(),
        redb.create_token(new("T4", 2_001, 100_000), None)
            .await
            .unwrap()
            .err()
    );
    // A session that is no more is refused first, as on redb.
    assert_eq!(
        b.create_token(new("T4", 2_001, 100_000), ended)
            .await
            .unwrap()
            .err(),
        Some(crate::domain::TokenRefusal::SessionEnded)
    );
    a.revoke_token(
        "alice",
        ids["T3"][0],
        Revocation::new(RevokeReason::ByUser, t0 + 2_002),
    )
    .await
    .unwrap();
    redb.revoke_token(
        "alice",
        ids["T3"][1],
        Revocation::new(RevokeReason::ByUser, t0 + 2_002),
    )
    .await
    .unwrap();
    assert_eq!(
        b.create_token(new("T4", 2_003, 100_000), ended)
            .await
            .unwrap()
            .err(),
        redb.create_token(new("T4", 2_003, 100_000), ended)
            .await
            .unwrap()
            .err()
    );

    // Uses from two addresses (the second use of one records nothing),
    // each followed by a write that changes nothing (another user's id):
    // a use is applied before the handle's next write, on both (redb
    // coalesces uses of one token while one is waiting).
    for (at, ip) in [
        (3_000, "198.51.100.1"),
        (3_001, "198.51.100.1"),
        (3_002, "198.51.100.2"),
    ] {
        let ip = Some(ip.parse().unwrap());
        let nothing = Revocation::new(RevokeReason::ByUser, t0 + at);
        b.touch_token(hashes["T2"][0], t0 + at, ip).unwrap();
        redb.touch_token(hashes["T2"][1], t0 + at, ip).unwrap();
        assert!(
            !b.revoke_token("bob", ids["T2"][0], nothing.clone())
                .await
                .unwrap()
        );
        assert!(
            !redb
                .revoke_token("bob", ids["T2"][1], nothing)
                .await
                .unwrap()
        );
    }
    let strip = |t: Option<crate::domain::AccessTokenInfo>| {
        t.map(|t| {
            (
                t.name,
                t.domains,
                t.expires_ms,
                t.last_used_ms,
                t.recent_ips,
                t.two_factor,
            )
        })
    };
    assert_eq!(
        strip(a.token_by_hash(hashes["T2"][0], t0 + 3_200).await.unwrap()),
        strip(
            redb.token_by_hash(hashes["T2"][1], t0 + 3_200)
                .await
                .unwrap()
        )
    );
    assert_eq!(a.tokens_of("alice", t0 + 3_200).await.unwrap().len(), 1);

    // An admin ends them all; one made later runs out and is swept.
    let mut admin = Revocation::new(RevokeReason::ByAdmin, t0 + 4_000);
    admin.actor = Some("root".into());
    assert_eq!(
        a.revoke_user_tokens("alice", admin.clone())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        redb.revoke_user_tokens("alice", admin).await.unwrap().len(),
        1
    );
    let r = a
        .create_token(new("T5", 5_000, 6_000), None)
        .await
        .unwrap()
        .unwrap();
    let d = redb
        .create_token(new("T5", 5_000, 6_000), None)
        .await
        .unwrap()
        .unwrap();
    names[0].insert(r.info.id.to_string(), "T5");
    names[1].insert(d.info.id.to_string(), "T5");
    let rs = b.sweep(t0 + 10_000, 100).await.unwrap();
    let ds = redb.sweep(t0 + 10_000, 100).await.unwrap();
    assert_eq!((rs.tokens_expired, rs.more), (ds.tokens_expired, ds.more));
    assert_eq!(rs.tokens_expired, 1);
    assert_eq!(b.token_count().await.unwrap(), 0);

    // Chained, the events are redb's, token for token.
    let (_, chained, on_redb) = sides.chained().await;
    let shown = |events: Vec<crate::domain::Event>, side: usize| {
        events
            .into_iter()
            .map(|mut e| {
                e.session = e
                    .session
                    .map(|s| names[side].get(s.as_str()).map_or(s, |l| (*l).into()));
                for (k, v) in e.details.iter_mut() {
                    if k == "token" {
                        *v = names[side]
                            .get(v.as_str())
                            .map_or(v.clone(), |l| (*l).into());
                    }
                }
                e
            })
            .collect::<Vec<_>>()
    };
    let chained = shown(chained, 0);
    assert_eq!(chained, shown(on_redb, 1));
    for kind in [
        EventKind::TokenCreated,
        EventKind::TokenUsed,
        EventKind::TokenRevoked,
        EventKind::TokenExpired,
    ] {
        assert!(chained.iter().any(|e| e.kind == kind), "{kind}");
    }
    sides.task.shutdown().await.unwrap();
}

/// A session read on node B is then answered on the spot from B's cache;
/// revoked on node A, it is refused on B as soon as the invalidation
/// arrives (the time is printed, not asserted: the machines are shared;
/// the bound below only ends a hung test), and a cache that loses its
/// invalidations serves nothing until they are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_is_refused_on_the_other_within_a_second() {
    use crate::domain::{
        EventKind, Method, Methods, NewEvent, NewSession, Revocation, RevokeReason, now_ms,
    };
    use crate::store::SessionStore;

    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let [a, b] = two_nodes(&url, &prefix).await;
    // The listener subscribes in the background.
    let subscribed = async |node: &RedisState| {
        for _ in 0..200 {
            if node.listener.cache.is_live() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the cache never subscribed");
    };
    subscribed(&b).await;
    let now = now_ms();
    let new = NewSession {
        user: "alice".into(),
        remember_me: false,
        idle_ttl_ms: 600_000,
        absolute_ttl_ms: 3_600_000,
        max_per_user: 5,
        ip: None,
        user_agent: None,
        now_ms: now,
        methods: Methods::of(&[Method::Password]),
    };
    let login = NewEvent::at(EventKind::LoginSuccess, now * 1000).user("alice");
    let made = a.create_session(new, login, None).await.unwrap();
    let hash = made.token.hash();
    // A miss is not cached: B reads Redis, then answers on the spot.
    assert!(b.session_by_hash_now(hash, now).is_none());
    assert!(b.session_by_hash(hash, now).await.unwrap().is_some());
    assert!(matches!(
        b.session_by_hash_now(hash, now_ms()),
        Some(Ok(Some(_)))
    ));
    assert_eq!(b.listener.cache.sessions_held(), 1);

    let revoked = std::time::Instant::now();
    a.revoke_by_token(hash, Revocation::new(RevokeReason::Logout, now_ms()))
        .await
        .unwrap();
    // A's own cache forgot it before the revocation answered.
    assert!(a.session_by_hash_now(hash, now_ms()).is_none());
    while let Some(Ok(Some(_))) = b.session_by_hash_now(hash, now_ms()) {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(30),
            "B never refused it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    eprintln!("revoked on A, refused on B after {:?}", revoked.elapsed());
    assert!(b.session_by_hash(hash, now_ms()).await.unwrap().is_none());

    // B loses its subscription: its cache serves nothing, then is back.
    let again = a
        .create_session(
            NewSession {
                user: "bob".into(),
                remember_me: true,
                idle_ttl_ms: 600_000,
                absolute_ttl_ms: 3_600_000,
                max_per_user: 5,
                ip: None,
                user_agent: None,
                now_ms: now_ms(),
                methods: Methods::of(&[Method::Password]),
            },
            NewEvent::now(EventKind::LoginSuccess).user("bob"),
            None,
        )
        .await
        .unwrap();
    let h2 = again.token.hash();
    assert!(b.session_by_hash(h2, now_ms()).await.unwrap().is_some());
    assert!(b.session_by_hash_now(h2, now_ms()).is_some());
    let mut conn = a.conn.clone();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    let lost = std::time::Instant::now();
    while b.session_by_hash_now(h2, now_ms()).is_some() {
        assert!(
            lost.elapsed() < std::time::Duration::from_secs(30),
            "the cache kept serving"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    subscribed(&b).await;
    assert!(b.session_by_hash(h2, now_ms()).await.unwrap().is_some());
    assert!(b.session_by_hash_now(h2, now_ms()).is_some());
}

/// The same for an access token: read on B, answered from B's cache,
/// revoked on A, refused on B once the invalidation arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_the_other_node() {
    use crate::domain::{NewAccessToken, Revocation, RevokeReason, now_ms};
    use crate::store::TokenStore;

    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let [a, b] = two_nodes(&url, &prefix).await;
    for _ in 0..200 {
        if b.listener.cache.is_live() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let now = now_ms();
    let made = a
        .create_token(
            NewAccessToken {
                user: "alice".into(),
                name: "ci".into(),
                domains: vec![],
                expires_ms: now + 3_600_000,
                max_per_user: 5,
                ip: None,
                now_ms: now,
                two_factor: false,
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let hash = made.token.hash();
    assert!(
        b.token_by_hash_now(hash, now).is_none(),
        "a miss is not cached"
    );
    assert!(b.token_by_hash(hash, now).await.unwrap().is_some());
    assert!(matches!(
        b.token_by_hash_now(hash, now_ms()),
        Some(Ok(Some(_)))
    ));
    let revoked = std::time::Instant::now();
    assert!(
        a.revoke_token(
            "alice",
            made.info.id,
            Revocation::new(RevokeReason::ByUser, now_ms())
        )
        .await
        .unwrap()
    );
    while let Some(Ok(Some(_))) = b.token_by_hash_now(hash, now_ms()) {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(30),
            "B never refused it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    eprintln!(
        "token revoked on A, refused on B after {:?}",
        revoked.elapsed()
    );
    assert!(b.token_by_hash(hash, now_ms()).await.unwrap().is_none());
}

/// The bound on anonymous passkey ceremonies of all clients together holds
/// in Redis as in process (`ceremonies::tests`): when every place is
/// taken, only a client at its quota gives its oldest up, and otherwise a
/// newcomer is refused; a ceremony taken frees its place.
#[tokio::test]
async fn anonymous_ceremonies_are_bounded_in_all_as_in_process() {
    use crate::domain::MAX_ANONYMOUS_CEREMONIES as MAX;
    use crate::store::ceremonies::{CEREMONY_MS, Purpose};
    use crate::store::contract::CeremonyStore;
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let state = RedisState::connect(&url, &prefix, Durability::Always)
        .await
        .unwrap();
    let ip = |n: u32| Some(std::net::IpAddr::from(n.to_be_bytes()));
    let now = 1_800_000_000_000u64;
    let put =
        |n: u32, at: u64, tag: u8| state.put_anonymous_ceremony(ip(n), 16, vec![tag], now + at);
    let real = put(0, 0, 1).await.unwrap().unwrap();
    let flooders = (MAX - 1) / 16;
    for n in 1..=flooders as u32 {
        for _ in 0..16 {
            put(n, n as u64, 2).await.unwrap().unwrap();
        }
    }
    let filler = MAX - 1 - flooders * 16;
    let mut fillers = Vec::new();
    for i in 0..filler as u32 {
        fillers.push(put(10_000 + i, 5_000, 3).await.unwrap().unwrap());
    }
    let all = || async {
        let mut conn = state.conn.clone();
        let n: usize = redis::cmd("ZCARD")
            .arg(state.key("ca", "all"))
            .query_async(&mut conn)
            .await
            .unwrap();
        n
    };
    assert_eq!(all().await, MAX);
    // Newcomers push out a flooder's oldest, one from each flooder.
    for i in 0..flooders as u32 {
        put(20_000 + i, 6_000, 4).await.unwrap().unwrap();
        assert_eq!(all().await, MAX);
    }
    // Every place is now held by a client under its quota: refused.
    for n in [30_000, 1] {
        let busy = put(n, 7_000, 5).await.unwrap().unwrap_err();
        assert!(busy.retry_after_ms > 0 && busy.retry_after_ms <= CEREMONY_MS);
    }
    assert_eq!(all().await, MAX);
    for f in &fillers {
        assert!(
            state
                .take_ceremony(f.hash(), Purpose::Discover, now + 7_000)
                .await
                .unwrap()
                .is_some(),
            "a client under its quota lost its ceremony"
        );
    }
    assert!(
        state
            .take_ceremony(real.hash(), Purpose::Discover, now + 7_000)
            .await
            .unwrap()
            .is_some()
    );
    // The places they free are open again.
    assert_eq!(all().await, MAX - filler - 1);
    put(0, 7_000, 1).await.unwrap().unwrap();
}

/// Queued calls go in one pipeline, in order, and a Redis that has
/// forgotten the script (restarted, or `SCRIPT FLUSH`) is given it again
/// and runs them all once.
#[tokio::test]
async fn a_batch_of_queued_calls_runs_once_each_even_after_a_script_flush() {
    let Some((url, prefix)) = crate::store::outbox::testing::fresh_prefix() else {
        return;
    };
    let state = RedisState::connect(&url, &prefix, Durability::Always)
        .await
        .unwrap();
    let script = redis::Script::new(
        "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('LLEN', KEYS[1])",
    );
    let key = state.key("batch", "test");
    let calls = |from: u32, to: u32| {
        (from..to)
            .map(|n| super::Call::new(vec![key.clone()]).arg(n))
            .collect::<Vec<_>>()
    };
    let list = || async {
        let mut conn = state.conn.clone();
        let got: Vec<u32> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        got
    };
    // Unknown to Redis at first (never loaded): loaded, then run.
    state.send_batch(&script, calls(0, 3), "test").await;
    assert_eq!(list().await, [0, 1, 2]);
    let mut conn = state.conn.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    state.send_batch(&script, calls(3, 5), "test").await;
    assert_eq!(list().await, [0, 1, 2, 3, 4]);
}
