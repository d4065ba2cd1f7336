use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::store::chain::EventRecord;

/// The reference: postcard through serde into `EventRecord`, then the event.
fn by_serde(id: u64, user: &str, bytes: &[u8]) -> Result<Event, String> {
    let rec: EventRecord = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    let kind = EventKind::from_code(rec.kind).ok_or("unknown kind")?;
    Ok(Event {
        id: EventId(id),
        time_us: EventId(id).micros(),
        kind,
        user: (!user.is_empty()).then(|| user.into()),
        ip: rec.ip,
        user_agent: rec.user_agent.map(Into::into),
        session: rec.session.map(Into::into),
        details: rec
            .details
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    })
}

/// Both readers accept the same bytes and read the same event from them.
fn agree(id: u64, user: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    match (event(id, user, bytes), by_serde(id, user, bytes)) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => prop_assert!(false, "hand {a:?}, serde {b:?} on {bytes:?}"),
    }
    Ok(())
}

fn record() -> impl Strategy<Value = EventRecord> {
    let ip = prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|o| Some(IpAddr::from(o))),
        any::<[u8; 16]>().prop_map(|o| Some(IpAddr::from(o))),
    ];
    let text = || "\\PC{0,40}";
    (
        // Known kinds mostly, and a few codes no kind has.
        prop_oneof![1u8..=34, any::<u8>()],
        any::<[u8; 8]>(),
        ip,
        // Agents from a small set too, so that shared ones repeat.
        proptest::option::of(prop_oneof!["[ab]{0,2}", text()]),
        proptest::option::of(text()),
        proptest::collection::vec((text(), text()), 0..5),
    )
        .prop_map(
            |(kind, link, ip, user_agent, session, details)| EventRecord {
                kind,
                link,
                ip,
                user_agent,
                session,
                details,
            },
        )
}

/// Damage to a record's bytes: cut, overwrite or insert at a position.
#[derive(Debug, Clone)]
enum Damage {
    Cut(usize),
    Set(usize, u8),
    Insert(usize, u8),
}

fn damage(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = |i: usize| i % (b.len() + 1);
    match *d {
        Damage::Cut(i) => b.truncate(at(i)),
        Damage::Set(i, v) => {
            if !b.is_empty() {
                let i = i % b.len();
                b[i] = v;
            }
        }
        Damage::Insert(i, v) => {
            let i = at(i);
            b.insert(i, v);
        }
    }
    b
}

fn damages() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Set(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Insert(i, v)),
    ];
    proptest::collection::vec(one, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every record the store writes reads back as serde reads it.
    #[test]
    fn reads_what_serde_reads(rec in record(), id in any::<u64>(), user in "[a-z]{0,30}") {
        agree(id, &user, &rec.to_bytes())?;
    }

    /// Damaged records are refused by both readers or read alike by both.
    #[test]
    fn refuses_what_serde_refuses(rec in record(), ds in damages()) {
        let mut bytes = rec.to_bytes();
        for d in &ds {
            bytes = damage(&bytes, d);
        }
        agree(7, "alice", &bytes)?;
    }

    /// Arbitrary bytes: never a panic, the same answer as serde.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        agree(7, "", &bytes)?;
    }
}

#[test]
fn the_head_is_the_kind_and_address() {
    let rec = EventRecord {
        kind: EventKind::LoginFailure.code(),
        link: [9; 8],
        ip: Some("2001:db8::1".parse().unwrap()),
        user_agent: Some("curl/8.5.0".into()),
        session: None,
        details: vec![("reason".into(), "bad_password".into())],
    };
    let bytes = rec.to_bytes();
    let h = head(5, &bytes).unwrap();
    assert_eq!(h.kind, EventKind::LoginFailure);
    assert_eq!(h.ip, rec.ip);
    let ev = finish(5, "alice", &bytes, h, &mut Agents::default()).unwrap();
    assert_eq!(ev.user.as_deref(), Some("alice"));
    assert_eq!(ev.user_agent.as_deref(), Some("curl/8.5.0"));
    assert_eq!(ev.session, None);
    assert_eq!(
        ev.details,
        vec![("reason".into(), "bad_password".into())] as Vec<(CompactString, CompactString)>
    );
    // A record damaged after its head has a good head and no event.
    let cut = &bytes[..bytes.len() - 3];
    assert!(head(5, cut).is_ok());
    assert!(event(5, "alice", cut).is_err());
    // An unknown kind is refused at the head.
    let mut unknown = bytes.clone();
    unknown[0] = 0;
    assert!(
        head(5, &unknown)
            .unwrap_err()
            .contains("unknown kind code 0")
    );
}

/// Varints at the edges of their width, as postcard writes and refuses them.
#[test]
fn varints_at_their_width() {
    let mut r = Reader {
        bytes: &[0xff, 0xff, 0xff, 0xff, 0x0f],
        at: 0,
    };
    assert_eq!(r.varint(32), Ok(u64::from(u32::MAX)));
    let mut r = Reader {
        bytes: &[0xff, 0xff, 0xff, 0xff, 0x1f],
        at: 0,
    };
    assert_eq!(r.varint(32), Err(Bad::Varint));
    let mut r = Reader {
        bytes: &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        at: 0,
    };
    assert_eq!(r.varint(32), Err(Bad::Varint));
    let mut max = vec![0xff; 9];
    max.push(0x01);
    let mut r = Reader { bytes: &max, at: 0 };
    assert_eq!(r.varint(64), Ok(u64::MAX));
    *max.last_mut().unwrap() = 0x02;
    let mut r = Reader { bytes: &max, at: 0 };
    assert_eq!(r.varint(64), Err(Bad::Varint));
}

proptest! {
    /// Read through one set of shared agents, a run of records gives the
    /// events each gives alone.
    #[test]
    fn shared_agents_read_the_same(recs in proptest::collection::vec(record(), 1..12)) {
        let mut agents = Agents::default();
        for (i, rec) in recs.iter().enumerate() {
            let bytes = rec.to_bytes();
            let alone = event(i as u64, "bob", &bytes);
            let shared = head(i as u64, &bytes)
                .and_then(|h| finish(i as u64, "bob", &bytes, h, &mut agents));
            prop_assert_eq!(alone, shared);
        }
    }
}

/// One client's events hold one copy of its agent; the set stays bounded.
#[test]
fn agents_are_shared_and_bounded() {
    let mut agents = Agents::default();
    let a = agents
        .get(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        .unwrap();
    let b = agents.get(b"curl/8.5.0").unwrap();
    let a2 = agents
        .get(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        .unwrap();
    assert!(Arc::ptr_eq(&a, &a2));
    assert!(Arc::ptr_eq(&b, &agents.get(b"curl/8.5.0").unwrap()));
    for i in 0..10 {
        agents.get(format!("agent {i}").as_bytes()).unwrap();
        assert!(agents.recent.len() <= Agents::KEEP);
    }
    assert!(!Arc::ptr_eq(
        &a,
        &agents
            .get(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
            .unwrap()
    ));
    assert_eq!(agents.get(b"\xff"), Err(Bad::Utf8));
}
