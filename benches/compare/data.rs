//! The event stream every store under test is filled from, and the shapes it
//! takes in each store.
//!
//! One deterministic generator (seeded, no external crate) yields realistic
//! audit events: about 1,000 ordinary users plus one monitoring account that
//! writes a large share of the events (it is the user that has enough events
//! for deep pagination), a mix of login and session kinds, an IP per user, a
//! short user agent and a detail or two. Timestamps increase strictly, so the
//! id gatehouse assigns (`EventId::from_micros`) is the id the generator
//! computes, and SQLite and JSONL rows carry the very same ids.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse::store::{EventId, EventKind, NewEvent, PublicId};
use serde::{Deserialize, Serialize};

/// Ordinary users in the audit stream.
pub const USERS: u64 = 1_000;
/// The monitoring account: about 12% of all events are its logins.
pub const HEAVY_USER: &str = "svc-probe";
const HEAVY_PERMILLE: u64 = 120;
/// 2026-01-01T00:00:00Z in microseconds: where the stream's clock starts.
pub const START_US: u64 = 1_767_225_600_000_000;

/// splitmix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn user_name(i: u64) -> String {
    format!("user{i:04}")
}

const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "code-server/4.91",
    "Go-http-client/2.0",
];

/// One generated event, in the stream's own form.
#[derive(Debug, Clone)]
pub struct GenEvent {
    pub id: u64,
    pub at_us: u64,
    pub kind: EventKind,
    pub user: String,
    pub ip: IpAddr,
    pub user_agent: &'static str,
    pub session: Option<String>,
    pub details: Vec<(&'static str, String)>,
}

/// An endless, reproducible stream of events with strictly increasing time.
#[derive(Debug, Clone)]
pub struct EventStream {
    rng: Rng,
    now_us: u64,
}

impl EventStream {
    pub fn new(seed: u64) -> Self {
        EventStream {
            rng: Rng::new(seed),
            now_us: START_US,
        }
    }

    pub fn next_event(&mut self) -> GenEvent {
        let r = &mut self.rng;
        // Mean gap of 2.5 s: 1M events span about a month.
        self.now_us += 1 + r.below(5_000_000);
        let heavy = r.below(1_000) < HEAVY_PERMILLE;
        let (user, uidx) = if heavy {
            (HEAVY_USER.to_string(), USERS)
        } else {
            let i = r.below(USERS);
            (user_name(i), i)
        };
        let kind = if heavy {
            if r.below(10) == 0 {
                EventKind::LoginFailure
            } else {
                EventKind::LoginSuccess
            }
        } else {
            match r.below(100) {
                0..35 => EventKind::LoginSuccess,
                35..60 => EventKind::SessionCreated,
                60..75 => EventKind::LoginFailure,
                75..85 => EventKind::Logout,
                85..89 => EventKind::SessionRevoked,
                89..97 => EventKind::SessionExpired,
                _ => EventKind::LoginRejected,
            }
        };
        let ip = match r.below(10) {
            0 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                uidx as u16,
                0,
                0,
                0,
                0,
                1 + r.below(8) as u16,
            )),
            _ => {
                let net = [192, 198, 203][(uidx % 3) as usize];
                IpAddr::V4(Ipv4Addr::new(
                    net,
                    (uidx / 256) as u8,
                    (uidx % 256) as u8,
                    1 + r.below(4) as u8,
                ))
            }
        };
        let user_agent = AGENTS[((uidx + r.below(2)) % AGENTS.len() as u64) as usize];
        let session = match kind {
            EventKind::SessionCreated
            | EventKind::SessionRevoked
            | EventKind::SessionExpired
            | EventKind::Logout => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&r.next_u64().to_le_bytes());
                b[8..].copy_from_slice(&r.next_u64().to_le_bytes());
                Some(B64.encode(b))
            }
            _ => None,
        };
        let details = match kind {
            EventKind::LoginSuccess => vec![("method", "password".to_string())],
            EventKind::LoginFailure => vec![
                ("reason", "bad_password".to_string()),
                ("attempt", (1 + r.below(5)).to_string()),
            ],
            EventKind::LoginRejected => vec![("reason", "banned".to_string())],
            EventKind::SessionCreated => {
                vec![("remember_me", (r.below(4) == 0).to_string())]
            }
            EventKind::Logout => vec![("reason", "logout".to_string())],
            EventKind::SessionRevoked => {
                vec![("reason", "user".to_string()), ("actor", user.clone())]
            }
            _ => vec![("reason", "idle".to_string())],
        };
        GenEvent {
            id: EventId::from_micros(self.now_us).0,
            at_us: self.now_us,
            kind,
            user,
            ip,
            user_agent,
            session,
            details,
        }
    }
}

impl GenEvent {
    /// The event as gatehouse is asked to append it.
    pub fn to_new_event(&self) -> NewEvent {
        let mut ev = NewEvent::at(self.kind, self.at_us)
            .user(self.user.clone())
            .ip(Some(self.ip))
            .user_agent(Some(self.user_agent.to_string()));
        if let Some(s) = &self.session {
            let id: PublicId = s.parse().expect("generated public ids are valid");
            ev = ev.session(id);
        }
        for (k, v) in &self.details {
            ev = ev.detail(*k, v.clone());
        }
        ev
    }

    /// The details as a JSON object, the way SQLite's `details` column holds them.
    pub fn details_json(&self) -> String {
        let m: BTreeMap<&str, &str> = self.details.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serde_json::to_string(&m).expect("string map serializes")
    }

    /// The event as a JSONL log line (without the newline).
    pub fn to_json_line(&self) -> String {
        let j = JsonEvent {
            id: self.id,
            ts: self.at_us,
            kind: self.kind.as_str().to_string(),
            user: Some(self.user.clone()),
            ip: Some(self.ip.to_string()),
            ua: Some(self.user_agent.to_string()),
            session: self.session.clone(),
            details: self
                .details
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        serde_json::to_string(&j).expect("event serializes")
    }
}

/// One line of the JSONL audit log. Field order matters to the substring
/// filters: `"user":"NAME"` appears verbatim in compact JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonEvent {
    pub id: u64,
    pub ts: u64,
    pub kind: String,
    pub user: Option<String>,
    pub ip: Option<String>,
    pub ua: Option<String>,
    pub session: Option<String>,
    pub details: BTreeMap<String, String>,
}
