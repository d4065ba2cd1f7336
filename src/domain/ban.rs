//! Bans: on a user name or on a client network, until an instant.

use std::fmt;
use std::net::IpAddr;

use super::{EventKind, MAX_DETAIL_VALUE, NewEvent, truncate};

/// Who a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanSubject {
    User(String),
    Ip(IpAddr),
}

/// The network a client address stands for when clients are counted (bans,
/// failure counters, connections). IPv4-mapped addresses count as IPv4, and
/// an IPv6 address counts as its /64 network: one subscriber usually holds a
/// whole /64, so counting single addresses would let a single client spread
/// over 2^64 of them.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

impl BanSubject {
    /// The ban subject for a client address: its [`client_network`].
    pub fn ip(ip: IpAddr) -> Self {
        BanSubject::Ip(client_network(ip))
    }

    pub(crate) fn key(&self) -> String {
        match self {
            BanSubject::User(u) => format!("u:{u}"),
            BanSubject::Ip(ip) => format!("i:{ip}"),
        }
    }

    pub(crate) fn from_key(key: &str) -> Option<Self> {
        if let Some(u) = key.strip_prefix("u:") {
            Some(BanSubject::User(u.to_string()))
        } else {
            key.strip_prefix("i:")
                .and_then(|ip| ip.parse().ok())
                .map(BanSubject::Ip)
        }
    }
}

impl fmt::Display for BanSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanSubject::User(u) => write!(f, "user {u}"),
            BanSubject::Ip(ip) => write!(f, "ip {ip}"),
        }
    }
}

/// An active or expired ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub subject: BanSubject,
    pub created_ms: u64,
    pub until_ms: u64,
    pub reason: String,
}

/// A ban to add (or extend), recorded as a `ban.added` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    /// Who is banned.
    pub subject: BanSubject,
    /// When the ban runs out, in milliseconds since the epoch.
    pub until_ms: u64,
    /// Why, in words (cut to `MAX_DETAIL_VALUE` bytes when stored).
    pub reason: String,
    /// The client address that triggered the ban, for a user ban.
    pub ip: Option<IpAddr>,
    /// When, in milliseconds since the epoch.
    pub now_ms: u64,
}

impl NewBan {
    /// Its `ban.added` event, the same on every backend: at `now_ms`, the
    /// subject (a user name, or the address), `until_ms` and the reason
    /// (cut to `MAX_DETAIL_VALUE` bytes), and for a user ban the address
    /// that triggered it.
    pub fn event(&self) -> NewEvent {
        let mut ev = subject_event(EventKind::BanAdded, &self.subject, self.now_ms)
            .detail("until_ms", self.until_ms.to_string())
            .detail("reason", self.stored_reason());
        if ev.ip.is_none() {
            ev.ip = self.ip;
        }
        ev
    }

    /// The reason as stored: cut to `MAX_DETAIL_VALUE` bytes.
    pub fn stored_reason(&self) -> String {
        truncate(self.reason.clone(), MAX_DETAIL_VALUE)
    }
}

/// The `ban.lifted` event of `subject` at `now_ms`, the same on every
/// backend: `reason` (`expired` when it ran out) and the actor, if any.
pub fn ban_lifted_event(
    subject: &BanSubject,
    reason: &str,
    actor: Option<&str>,
    now_ms: u64,
) -> NewEvent {
    let ev = subject_event(EventKind::BanLifted, subject, now_ms).detail("reason", reason);
    match actor {
        Some(a) => ev.detail("actor", a),
        None => ev,
    }
}

/// An event about a ban's subject: its user, or its address.
fn subject_event(kind: EventKind, subject: &BanSubject, now_ms: u64) -> NewEvent {
    let ev = NewEvent::at(kind, now_ms * 1000);
    match subject {
        BanSubject::User(u) => ev.user(u.clone()),
        BanSubject::Ip(ip) => ev.ip(Some(*ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_keys_round_trip() {
        for s in [
            BanSubject::User("a:b".into()),
            BanSubject::Ip("::1".parse().unwrap()),
        ] {
            assert_eq!(BanSubject::from_key(&s.key()), Some(s));
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let ip = |s: &str| BanSubject::ip(s.parse().unwrap());
        assert_eq!(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "ip 2001:db8:1:2::");
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(ip("192.0.2.7"), ip("192.0.2.8"));
    }
}
