//! `cargo bench --bench store`: criterion micro-benchmarks of the store's hot
//! operations on a small warm database (20,000 events over 200 users, 10,000
//! live sessions): validating a session by token, the newest 100 events of
//! one user, and creating a session with its own durable commit.
//!
//! The comparison against SQLite and JSONL at realistic sizes is
//! `cargo bench --bench compare` (`compare/`); this bench is for watching one
//! operation's cost move from change to change.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::store::{
    EventFilter, EventKind, Methods, NewEvent, NewSession, Op, OpOutput, SessionToken, Store,
    StoreOptions,
};

const T0_MS: u64 = 1_800_000_000_000;
const USERS: usize = 200;

fn new_session(i: usize) -> NewSession {
    NewSession {
        user: format!("user{:03}", i % USERS),
        remember_me: true,
        idle_ttl_ms: 30 * 60_000,
        absolute_ttl_ms: 30 * 86_400_000,
        max_per_user: 100,
        ip: Some("203.0.113.7".parse().expect("ip")),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0".into()),
        now_ms: T0_MS,
        methods: Methods::PASSWORD,
    }
}

/// A store with events and live sessions; returns the session tokens.
fn fill(store: &Store) -> Vec<SessionToken> {
    let kinds = [
        EventKind::LoginSuccess,
        EventKind::SessionCreated,
        EventKind::LoginFailure,
        EventKind::Logout,
    ];
    for chunk in 0..20 {
        let ops = (0..1_000)
            .map(|k| {
                let i = chunk * 1_000 + k;
                Op::Append(
                    NewEvent::at(kinds[i % kinds.len()], T0_MS * 1_000 + i as u64 * 1_000)
                        .user(format!("user{:03}", (i * 7) % USERS))
                        .ip(Some("203.0.113.7".parse().expect("ip")))
                        .user_agent(Some("curl/8.5.0".into()))
                        .detail("method", "password"),
                )
            })
            .collect();
        assert!(store.apply_batch(ops).iter().all(|r| r.is_ok()));
    }
    let mut tokens = Vec::new();
    for chunk in 0..10 {
        let ops = (0..1_000)
            .map(|k| Op::CreateSession(new_session(chunk * 1_000 + k)))
            .collect();
        for r in store.apply_batch(ops) {
            match r.expect("create") {
                OpOutput::Created(c) => tokens.push(c.token),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    tokens
}

fn hot_paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("bench.redb"), &StoreOptions::default()).expect("open");
    let tokens = fill(&store);

    let mut i = 0usize;
    c.bench_function("validate_by_token", |b| {
        b.iter(|| {
            i = (i + 7_919) % tokens.len();
            black_box(store.session(&tokens[i], T0_MS + 1).expect("validate"))
        })
    });

    let filters: Vec<EventFilter> = (0..USERS)
        .map(|u| EventFilter {
            user: Some(format!("user{u:03}")),
            ..Default::default()
        })
        .collect();
    let mut u = 0usize;
    c.bench_function("newest_100_one_user", |b| {
        b.iter(|| {
            u = (u + 1) % filters.len();
            black_box(store.query_events(&filters[u], 100, None).expect("query"))
        })
    });

    let mut n = 0usize;
    c.bench_function("session_create_durable", |b| {
        b.iter(|| {
            n += 1;
            black_box(
                store
                    .apply(Op::CreateSession(new_session(n)))
                    .expect("create"),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hot_paths
}
criterion_main!(benches);
