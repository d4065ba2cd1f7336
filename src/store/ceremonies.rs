//! Passkey ceremonies in flight, in process: the redb backend's
//! [`CeremonyStore`](super::CeremonyStore).
//!
//! A ceremony is two requests. Its state (`identity::webauthn`) is kept
//! here under the hash of a random token that the browser holds in a
//! short-lived cookie; it is taken at the finish, so each is used once.
//! The map is bounded: entries live five minutes ([`CEREMONY_MS`]), a user
//! has one in flight per purpose, and anonymous ones (a passkey alone) are
//! at most [`MAX_ANONYMOUS_CEREMONIES`] in all and a quota per client (its
//! address, an IPv6 address counting as its /64). A client at its quota is
//! refused ([`Busy`]); when all are taken, the oldest ceremony of the
//! client with the most is ended only if that client is at its quota, and
//! otherwise the newcomer is refused. So a flood from a few clients never
//! pushes out another client's ceremony, and neither anonymous floods nor
//! anything else touch a user's own. It is in memory: a restart only means
//! clicking the button again.

use crate::domain::{
    EnrollerId, MAX_ANONYMOUS_CEREMONIES, SessionToken, TokenHash, client_network,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most anonymous ceremonies (sign-in with a passkey alone) in flight at
/// once, from all clients together. A user's own ceremonies are one per
/// user and purpose, so they are bounded by the users, and no flood of
/// anonymous ones can push them out.
const MAX_ANONYMOUS: usize = MAX_ANONYMOUS_CEREMONIES;

/// Life of a ceremony: what the authenticator is given, too.
pub const CEREMONY_MS: u64 = 300_000;

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Register,
    /// The second step (after a password, or a step-up).
    Step,
    /// A sign-in with a passkey alone.
    Discover,
}

/// A ceremony in flight, as its finish takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    purpose: Purpose,
    /// Whose ceremony (none for a discoverable sign-in).
    pub user: Option<String>,
    /// For a registration: the session or sign-in that started it (with
    /// its proof, see `proof`), the only one that may finish it.
    pub by: Option<EnrollerId>,
    /// For an anonymous ceremony: the network of the client that started
    /// it ([`client_network`]; `None` when the address is unknown, and all
    /// such share one quota).
    client: Option<IpAddr>,
    /// The ceremony's state (`identity::webauthn`), opaque here.
    pub state: Vec<u8>,
    expires_ms: u64,
}

impl Entry {
    /// `user`'s ceremony of `purpose` (started by `by`, for a
    /// registration), from `now` for [`CEREMONY_MS`].
    pub(crate) fn for_user(
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now: u64,
    ) -> Entry {
        Entry {
            purpose,
            user: Some(user),
            by,
            client: None,
            state,
            expires_ms: now + CEREMONY_MS,
        }
    }

    /// An anonymous sign-in's ceremony, of a client in network `client`.
    pub(crate) fn for_client(client: Option<IpAddr>, state: Vec<u8>, now: u64) -> Entry {
        Entry {
            purpose: Purpose::Discover,
            user: None,
            by: None,
            client,
            state,
            expires_ms: now + CEREMONY_MS,
        }
    }

    pub(crate) fn purpose(&self) -> Purpose {
        self.purpose
    }

    pub(crate) fn client(&self) -> Option<IpAddr> {
        self.client
    }

    pub(crate) fn expires_ms(&self) -> u64 {
        self.expires_ms
    }

    /// As a shared store keeps it (postcard).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encoding of an in-memory ceremony")
    }

    /// What [`Entry::to_bytes`] wrote; `None` for anything else.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Entry> {
        postcard::from_bytes(bytes).ok()
    }
}

/// An anonymous ceremony refused: its client has its quota open, or all
/// [`MAX_ANONYMOUS`] are taken and no client at its quota can give one up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Until the first of the ceremonies in the way expires.
    pub retry_after_ms: u64,
}

/// The anonymous ceremonies of one client: how many, and when the oldest
/// expires (with its key).
#[derive(Clone, Copy)]
struct Open {
    count: usize,
    oldest: (u64, TokenHash),
}

/// Ceremony states in flight, bounded: the redb backend's
/// [`CeremonyStore`](super::CeremonyStore), in this process.
#[derive(Default, Debug)]
pub struct Ceremonies {
    map: Mutex<HashMap<TokenHash, Entry>>,
}

impl Ceremonies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the state of `user`'s ceremony, started by `by` (for a
    /// registration); returns the token its cookie carries. The user's
    /// earlier ceremony of the same purpose ends (one in flight each).
    pub fn put(
        &self,
        purpose: Purpose,
        user: String,
        by: Option<EnrollerId>,
        state: Vec<u8>,
        now: u64,
    ) -> SessionToken {
        let mut map = self.lock();
        map.retain(|_, e| {
            e.expires_ms > now && !(e.user.as_deref() == Some(&user) && e.purpose == purpose)
        });
        let owner = Owner::User(user, by);
        insert(&mut map, purpose, owner, state, now)
    }

    /// Keeps the state of an anonymous ceremony (a sign-in with a passkey
    /// alone) started by a client at `ip`, which may have at most `quota`
    /// open. Refused ([`Busy`]) when that client is at its quota, or when
    /// all [`MAX_ANONYMOUS`] are taken and the client with the most is
    /// under its quota; otherwise, when all are taken, that client's oldest
    /// ends. A client under its quota is never pushed out by another.
    pub fn put_anonymous(
        &self,
        ip: Option<IpAddr>,
        quota: usize,
        state: Vec<u8>,
        now: u64,
    ) -> Result<SessionToken, Busy> {
        let client = ip.map(client_network);
        let quota = quota.max(1);
        let mut map = self.lock();
        map.retain(|_, e| e.expires_ms > now);
        let open = open_by_client(&map);
        let wait = |o: &Open| Busy {
            retry_after_ms: o.oldest.0.saturating_sub(now),
        };
        if let Some(mine) = open.get(&client).filter(|o| o.count >= quota) {
            return Err(wait(mine));
        }
        if open.values().map(|o| o.count).sum::<usize>() >= MAX_ANONYMOUS {
            // The client with the most, the oldest of them on a tie.
            let most = open
                .values()
                .max_by_key(|o| (o.count, std::cmp::Reverse(o.oldest.0)))
                .copied();
            match most {
                Some(o) if o.count >= quota => {
                    map.remove(&o.oldest.1);
                }
                _ => {
                    let first = open.values().min_by_key(|o| o.oldest.0);
                    return Err(first.map_or(Busy { retry_after_ms: 0 }, wait));
                }
            }
        }
        Ok(insert(
            &mut map,
            Purpose::Discover,
            Owner::Client(client),
            state,
            now,
        ))
    }

    /// Takes the live ceremony `hash` of `purpose`: used once.
    pub fn take(&self, hash: TokenHash, purpose: Purpose, now: u64) -> Option<Entry> {
        let e = self.lock().remove(&hash)?;
        (e.purpose == purpose && e.expires_ms > now).then_some(e)
    }
}

/// Whose ceremony: a user's (and for a registration, the enroller that
/// started it), or an anonymous client's.
enum Owner {
    User(String, Option<EnrollerId>),
    Client(Option<IpAddr>),
}

/// Adds a ceremony under a fresh token.
fn insert(
    map: &mut HashMap<TokenHash, Entry>,
    purpose: Purpose,
    owner: Owner,
    state: Vec<u8>,
    now: u64,
) -> SessionToken {
    let token = SessionToken::generate();
    let entry = match owner {
        Owner::User(user, by) => Entry::for_user(purpose, user, by, state, now),
        Owner::Client(client) => Entry::for_client(client, state, now),
    };
    map.insert(token.hash(), entry);
    token
}

/// The anonymous ceremonies in `map`, by client.
fn open_by_client(map: &HashMap<TokenHash, Entry>) -> HashMap<Option<IpAddr>, Open> {
    let mut open: HashMap<Option<IpAddr>, Open> = HashMap::new();
    for (k, e) in map.iter().filter(|(_, e)| e.user.is_none()) {
        let o = open.entry(e.client).or_insert(Open {
            count: 0,
            oldest: (e.expires_ms, *k),
        });
        o.count += 1;
        if e.expires_ms < o.oldest.0 {
            o.oldest = (e.expires_ms, *k);
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client at 10.0.N.M (N: one network each in IPv6 terms too).
    fn ip(n: u32) -> Option<IpAddr> {
        Some(std::net::Ipv4Addr::from(0x0a00_0000 + n).into())
    }

    #[test]
    fn ceremonies_are_single_use_bounded_and_floods_cannot_push_out_a_users() {
        let c = Ceremonies::default();
        let alice = c.put(Purpose::Step, "alice".into(), None, vec![1], 0);
        // A flood of anonymous ceremonies from many clients: bounded, and
        // alice's stays.
        for n in 0..3 * MAX_ANONYMOUS as u32 {
            let _ = c.put_anonymous(ip(n / 16), 16, vec![2], 0);
        }
        assert_eq!(
            c.lock().len(),
            MAX_ANONYMOUS + 1,
            "anonymous ones are bounded"
        );
        // A newer ceremony of alice's ends the older; a token presented for
        // the wrong purpose is refused and burnt.
        let again = c.put(Purpose::Step, "alice".into(), None, vec![3], 1);
        assert!(
            c.take(alice.hash(), Purpose::Step, 1).is_none(),
            "replaced by the newer one"
        );
        assert!(c.take(again.hash(), Purpose::Register, 1).is_none());
        assert!(
            c.take(again.hash(), Purpose::Step, 1).is_none(),
            "single use"
        );
        // Expired ones are not taken.
        let late = c.put(Purpose::Register, "bob".into(), None, vec![4], 0);
        assert!(
            c.take(late.hash(), Purpose::Register, CEREMONY_MS)
                .is_none()
        );
        let ok = c.put(Purpose::Register, "bob".into(), None, vec![5], 0);
        assert_eq!(
            c.take(ok.hash(), Purpose::Register, 1).unwrap().state,
            vec![5]
        );
    }

    #[test]
    fn a_flooding_client_is_held_to_its_quota() {
        let c = Ceremonies::default();
        let real = c.put_anonymous(ip(1), 16, vec![1], 0).unwrap();
        // One client: 16 open at most, then refused until its oldest expires.
        for _ in 0..16 {
            c.put_anonymous(ip(2), 16, vec![2], 10).unwrap();
        }
        for _ in 0..5000 {
            let busy = c.put_anonymous(ip(2), 16, vec![2], 20).unwrap_err();
            assert_eq!(busy.retry_after_ms, CEREMONY_MS - 10);
        }
        // An IPv6 client counts as its /64.
        let v6 = |host: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, host]));
        for h in 0..16 {
            c.put_anonymous(v6(h), 16, vec![3], 10).unwrap();
        }
        assert!(c.put_anonymous(v6(999), 16, vec![3], 10).is_err());
        // The real user's ceremony is still there, and its own quota open.
        assert_eq!(
            c.take(real.hash(), Purpose::Discover, 30).unwrap().state,
            vec![1]
        );
        c.put_anonymous(ip(1), 16, vec![1], 30).unwrap();
        // Once the flooder's expire, it may start again.
        c.put_anonymous(ip(2), 16, vec![2], 10 + CEREMONY_MS)
            .unwrap();
    }

    #[test]
    fn when_all_places_are_taken_only_a_client_at_its_quota_gives_one_up() {
        let c = Ceremonies::default();
        let real = c.put_anonymous(ip(0), 16, vec![1], 0).unwrap();
        // Flooders at their quota fill every other place.
        let flooders = (MAX_ANONYMOUS - 1) / 16;
        for n in 1..=flooders as u32 {
            for _ in 0..16 {
                c.put_anonymous(ip(n), 16, vec![2], n as u64).unwrap();
            }
        }
        let filler = MAX_ANONYMOUS - 1 - flooders * 16;
        for i in 0..filler as u32 {
            c.put_anonymous(ip(10_000 + i), 16, vec![3], 5_000).unwrap();
        }
        assert_eq!(c.lock().len(), MAX_ANONYMOUS);
        // Newcomers push out a flooder's oldest, one from each flooder at
        // its quota, never the real user's or a filler's.
        for i in 0..flooders as u32 {
            c.put_anonymous(ip(20_000 + i), 16, vec![4], 6_000).unwrap();
            assert_eq!(c.lock().len(), MAX_ANONYMOUS);
        }
        // Now every place is held by a client under its quota: a newcomer,
        // or a flooder wanting its place back, is refused rather than
        // pushing anyone out.
        for n in [30_000, 1] {
            let busy = c.put_anonymous(ip(n), 16, vec![5], 7_000).unwrap_err();
            assert!(busy.retry_after_ms > 0 && busy.retry_after_ms <= CEREMONY_MS);
        }
        assert_eq!(c.lock().len(), MAX_ANONYMOUS);
        let map = c.lock();
        let fillers = map.values().filter(|e| e.state == vec![3]).count();
        assert_eq!(fillers, filler, "a client under its quota lost one");
        drop(map);
        assert!(c.take(real.hash(), Purpose::Discover, 7_000).is_some());
        // The place it frees is open to anyone under their quota.
        c.put_anonymous(ip(0), 16, vec![1], 7_000).unwrap();
    }
}
