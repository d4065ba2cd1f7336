//! Domain types of the store's public API: sessions, tokens, events, filters,
//! pages and bans. Nothing here refers to redb.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Maximum stored length of a user agent, in bytes.
pub const MAX_USER_AGENT: usize = 256;
/// Maximum number of detail entries on one event.
pub const MAX_DETAILS: usize = 16;
/// Maximum length of a detail key, in bytes.
pub const MAX_DETAIL_KEY: usize = 64;
/// Maximum length of a detail value, in bytes.
pub const MAX_DETAIL_VALUE: usize = 512;
/// Maximum length of a user name, in bytes.
pub const MAX_USER: usize = 128;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    now_us() / 1_000
}

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Truncates `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

// ---------------------------------------------------------------- tokens

/// A session token: 256 bits from the operating system's CSPRNG. It exists in
/// memory only to be handed to the client once; the store keeps its hash.
/// `Debug` never prints it.
#[derive(Clone)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// Draws a fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        SessionToken(bytes)
    }

    /// Parses the cookie form (unpadded base64url, 43 characters). Any other
    /// input is rejected without revealing why.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 43 {
            return None;
        }
        let mut out = [0u8; 32];
        match B64.decode_slice(s.as_bytes(), &mut out) {
            Ok(32) => Some(SessionToken(out)),
            _ => None,
        }
    }

    /// The cookie form of the token. Only ever sent to the client.
    pub fn expose(&self) -> String {
        B64.encode(self.0)
    }

    /// SHA-256 of the token: what the store keeps and looks up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a session token: the primary key of a session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    /// Constant-time equality, for callers comparing hashes they did not look up.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines and useless to an attacker.
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The public id of a session: random, shown in lists and used to revoke a
/// session without knowing its token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicId(pub(crate) [u8; 16]);

impl PublicId {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        PublicId(bytes)
    }
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicId({self})")
    }
}

impl FromStr for PublicId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 22 {
            return Err(());
        }
        let mut out = [0u8; 16];
        match B64.decode_slice(s.as_bytes(), &mut out) {
            Ok(16) => Ok(PublicId(out)),
            _ => Err(()),
        }
    }
}

impl Serialize for PublicId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------- sessions

/// What a caller asks for when creating a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user: String,
    /// Remember-me sessions have no idle deadline, only the absolute one.
    pub remember_me: bool,
    /// Sliding idle lifetime for ordinary sessions.
    pub idle_ttl_ms: u64,
    /// Lifetime from creation, whatever the activity.
    pub absolute_ttl_ms: u64,
    /// Most sessions one user may hold; creating one more evicts the oldest.
    pub max_per_user: usize,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub now_ms: u64,
}

/// A session as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: PublicId,
    pub user: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// `None` for remember-me sessions.
    pub idle_deadline_ms: Option<u64>,
    pub absolute_deadline_ms: u64,
    pub remember_me: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Session {
    /// The earlier of the two deadlines: the session is invalid from then on.
    pub fn deadline_ms(&self) -> u64 {
        match self.idle_deadline_ms {
            Some(i) => i.min(self.absolute_deadline_ms),
            None => self.absolute_deadline_ms,
        }
    }
}

/// The result of creating a session. The token is returned here once.
#[derive(Debug)]
pub struct CreatedSession {
    pub token: SessionToken,
    pub session: Session,
    /// Sessions of the same user removed to stay within the cap.
    pub evicted: Vec<PublicId>,
}

/// Why a session was revoked, recorded in the audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    ByUser,
    ByAdmin,
    RevokeOthers,
    /// The user was removed from the config or their password hash changed.
    UserChanged,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::ByUser => "user",
            RevokeReason::ByAdmin => "admin",
            RevokeReason::RevokeOthers => "revoke_others",
            RevokeReason::UserChanged => "user_changed",
        }
    }
}

// ---------------------------------------------------------------- events

/// The kinds of audit event. Their string names are stored and indexed: a name,
/// once shipped, never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    LoginSuccess,
    LoginFailure,
    LoginRejected,
    Logout,
    SessionCreated,
    SessionRevoked,
    SessionExpired,
    SessionEvicted,
    BanAdded,
    BanLifted,
    ServerStarted,
    ServerStopped,
    BackupCreated,
    ConfigReloaded,
    RetentionPruned,
}

/// Whether an event records a success or a failure, for the outcome filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            _ => Err(format!(
                "unknown outcome {s:?} (expected success or failure)"
            )),
        }
    }
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::LoginSuccess,
        EventKind::LoginFailure,
        EventKind::LoginRejected,
        EventKind::Logout,
        EventKind::SessionCreated,
        EventKind::SessionRevoked,
        EventKind::SessionExpired,
        EventKind::SessionEvicted,
        EventKind::BanAdded,
        EventKind::BanLifted,
        EventKind::ServerStarted,
        EventKind::ServerStopped,
        EventKind::BackupCreated,
        EventKind::ConfigReloaded,
        EventKind::RetentionPruned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginSuccess => "login.success",
            EventKind::LoginFailure => "login.failure",
            EventKind::LoginRejected => "login.rejected",
            EventKind::Logout => "logout",
            EventKind::SessionCreated => "session.created",
            EventKind::SessionRevoked => "session.revoked",
            EventKind::SessionExpired => "session.expired",
            EventKind::SessionEvicted => "session.evicted",
            EventKind::BanAdded => "ban.added",
            EventKind::BanLifted => "ban.lifted",
            EventKind::ServerStarted => "server.started",
            EventKind::ServerStopped => "server.stopped",
            EventKind::BackupCreated => "backup.created",
            EventKind::ConfigReloaded => "config.reloaded",
            EventKind::RetentionPruned => "retention.pruned",
        }
    }

    /// The one-byte code stored in event records and the kind index. Codes are
    /// part of the file format (schema 3, `gatehouse_migrations::KIND_CODES`):
    /// a new kind takes the next free code, an old code is never reused.
    pub fn code(self) -> u8 {
        match self {
            EventKind::LoginSuccess => 1,
            EventKind::LoginFailure => 2,
            EventKind::LoginRejected => 3,
            EventKind::Logout => 4,
            EventKind::SessionCreated => 5,
            EventKind::SessionRevoked => 6,
            EventKind::SessionExpired => 7,
            EventKind::SessionEvicted => 8,
            EventKind::BanAdded => 9,
            EventKind::BanLifted => 10,
            EventKind::ServerStarted => 11,
            EventKind::ServerStopped => 12,
            EventKind::BackupCreated => 13,
            EventKind::ConfigReloaded => 14,
            EventKind::RetentionPruned => 15,
        }
    }

    /// The kind stored as `code`, if this build knows it.
    pub fn from_code(code: u8) -> Option<EventKind> {
        // Codes are 1..=15 in `ALL` order; the unit test below holds them to it.
        EventKind::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// The outcome this kind records, if it is a success or failure at all.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            EventKind::LoginSuccess => Some(Outcome::Success),
            EventKind::LoginFailure | EventKind::LoginRejected => Some(Outcome::Failure),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Audit event id: microseconds since the epoch in the high 52 bits and a
/// per-microsecond sequence in the low 12, so ids sort by time and a time window
/// is an id range. Ids are assigned by the writer and strictly increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u64);

impl EventId {
    pub const SEQ_BITS: u32 = 12;

    /// The smallest id at or after `us` microseconds.
    pub fn from_micros(us: u64) -> Self {
        EventId(us.saturating_mul(1 << Self::SEQ_BITS))
    }

    /// The time part of the id, in microseconds since the epoch.
    pub fn micros(self) -> u64 {
        self.0 >> Self::SEQ_BITS
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for EventId {
    /// As a string: JSON consumers such as `jq` lose precision above 2^53.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An event to append. The writer assigns its id from `at_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub at_us: u64,
    pub user: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub session: Option<PublicId>,
    pub details: Vec<(String, String)>,
}

impl NewEvent {
    /// An event of `kind` happening now.
    pub fn now(kind: EventKind) -> Self {
        Self::at(kind, now_us())
    }

    /// An event of `kind` at `at_us` microseconds since the epoch.
    pub fn at(kind: EventKind, at_us: u64) -> Self {
        NewEvent {
            kind,
            at_us,
            user: None,
            ip: None,
            user_agent: None,
            session: None,
            details: Vec::new(),
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    pub fn user_agent(mut self, ua: Option<String>) -> Self {
        self.user_agent = ua;
        self
    }

    pub fn session(mut self, id: PublicId) -> Self {
        self.session = Some(id);
        self
    }

    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: EventId,
    /// Microseconds since the epoch (the time part of the id).
    pub time_us: u64,
    pub kind: EventKind,
    pub user: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub session: Option<String>,
    pub details: Vec<(String, String)>,
}

/// Which events a query wants. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub user: Option<String>,
    /// Any of these kinds (empty: all kinds).
    pub kinds: Vec<EventKind>,
    /// Events at or after this time (microseconds).
    pub since_us: Option<u64>,
    /// Events strictly before this time (microseconds).
    pub until_us: Option<u64>,
    pub outcome: Option<Outcome>,
    pub ip: Option<IpAddr>,
}

impl EventFilter {
    /// Whether `ev` matches every field of the filter, checked on the event
    /// itself (no index): for following new events and streaming exports.
    pub fn matches(&self, ev: &Event) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| ev.user.as_ref() == Some(u))
            && (self.kinds.is_empty() || self.kinds.contains(&ev.kind))
            && self
                .since_us
                .is_none_or(|t| ev.id >= EventId::from_micros(t))
            && self
                .until_us
                .is_none_or(|t| ev.id < EventId::from_micros(t))
            && self.outcome.is_none_or(|o| ev.kind.outcome() == Some(o))
            && self.ip.is_none_or(|ip| ev.ip == Some(ip))
    }
}

/// Default page size of an audit query.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page an audit query returns.
pub const MAX_LIMIT: usize = 1_000;

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts; `None` when there are no older matches.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- bans

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_debug_hides_it() {
        let t = SessionToken::generate();
        let s = t.expose();
        assert_eq!(s.len(), 43);
        let back = SessionToken::parse(&s).unwrap();
        assert_eq!(back.hash(), t.hash());
        assert!(!format!("{t:?}").contains(&s));
        assert!(!format!("{:?}", t.hash()).contains(&s));
    }

    /// The stored kind codes are the ones schema 3 wrote, and they round-trip.
    #[test]
    fn kind_codes_match_the_schema() {
        let mut schema = gatehouse_migrations::KIND_CODES.to_vec();
        schema.sort_by_key(|&(_, c)| c);
        let ours: Vec<(&str, u8)> = EventKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.code()))
            .collect();
        assert_eq!(ours, schema);
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code(0), None);
        assert_eq!(EventKind::from_code(16), None);
        assert_eq!(EventKind::from_code(255), None);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(
            SessionToken::generate().hash(),
            SessionToken::generate().hash()
        );
    }

    #[test]
    fn bad_tokens_are_rejected() {
        for s in [
            "",
            "short",
            &"A".repeat(44),
            &"!".repeat(43),
            "ü".repeat(22).as_str(),
        ] {
            assert!(SessionToken::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        }
        assert!("login.bogus".parse::<EventKind>().is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }

    #[test]
    fn filter_matches_each_field() {
        let ev = Event {
            id: EventId::from_micros(5_000),
            time_us: 5_000,
            kind: EventKind::LoginFailure,
            user: Some("alice".into()),
            ip: Some("192.0.2.1".parse().unwrap()),
            user_agent: None,
            session: None,
            details: vec![],
        };
        let f = |f: EventFilter| f.matches(&ev);
        assert!(f(EventFilter::default()));
        assert!(f(EventFilter {
            user: Some("alice".into()),
            kinds: vec![EventKind::Logout, EventKind::LoginFailure],
            since_us: Some(5_000),
            until_us: Some(5_001),
            outcome: Some(Outcome::Failure),
            ip: ev.ip,
        }));
        assert!(!f(EventFilter {
            user: Some("bob".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            kinds: vec![EventKind::Logout],
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            since_us: Some(5_001),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            until_us: Some(5_000),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            ip: Some("::1".parse().unwrap()),
            ..Default::default()
        }));
    }

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
