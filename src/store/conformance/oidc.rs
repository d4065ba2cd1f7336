//! The conformance suite for the OpenID Connect provider's state: random
//! sequences of authorizations, redemptions, refreshes, revocations,
//! consents and logout sends, interleaved with session creations (past the
//! per-user cap), revocations, removed users, time and sweeps, run against
//! a backend through [`OidcStore`] and against a model of `BTreeMap`s.
//! After every step, every token ever issued is looked up, each user's
//! connected apps and the logouts due are read, and all agree with the
//! model, and the backend's own check finds its tables agreeing; at the
//! end, so do the counts of `oidc.*` events.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::domain::oidc::*;
use crate::domain::*;
use crate::store::contract::{AuditStore, OidcStore, SessionStore, StoreCheck};
use crate::store::redb::MAX_GRANT_ACCESS_TOKENS;

const USERS: [&str; 2] = ["alice", "bob"];
const CLIENTS: [&str; 2] = ["grafana", "forgejo"];
const REDIRECT: &str = "https://app.test/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const SESSION_MS: u64 = 100_000;
const ACCESS_MS: u64 = 20_000;
const REFRESH_MS: u64 = 70_000;
const CAP: usize = 2;

#[derive(Debug, Clone)]
enum Step {
    Session {
        user: usize,
    },
    EndSession {
        session: usize,
    },
    RevokeUser {
        user: usize,
    },
    RemoveUser {
        user: usize,
    },
    Authorize {
        session: usize,
        client: usize,
        pkce: bool,
    },
    Redeem {
        code: usize,
        other_client: bool,
        bad_verifier: bool,
        offline: bool,
    },
    Refresh {
        token: usize,
        other_client: bool,
        narrow: bool,
    },
    Revoke {
        token: usize,
        other_client: bool,
    },
    Consent {
        user: usize,
        client: usize,
    },
    Disconnect {
        user: usize,
        client: usize,
    },
    Subject {
        user: usize,
    },
    Attempt {
        notice: usize,
        outcome: u8,
    },
    Advance {
        ms: u64,
    },
    Sweep {
        limit: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..USERS.len()).prop_map(|user| Step::Session { user }),
        1 => any::<usize>().prop_map(|session| Step::EndSession { session }),
        1 => (0..USERS.len()).prop_map(|user| Step::RevokeUser { user }),
        1 => (0..USERS.len()).prop_map(|user| Step::RemoveUser { user }),
        4 => (any::<usize>(), 0..CLIENTS.len(), any::<bool>())
            .prop_map(|(session, client, pkce)| Step::Authorize { session, client, pkce }),
        4 => (any::<usize>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15), any::<bool>())
            .prop_map(|(code, other_client, bad_verifier, offline)| Step::Redeem { code, other_client, bad_verifier, offline }),
        4 => (any::<usize>(), prop::bool::weighted(0.1), prop::bool::weighted(0.2))
            .prop_map(|(token, other_client, narrow)| Step::Refresh { token, other_client, narrow }),
        1 => (any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(token, other_client)| Step::Revoke { token, other_client }),
        1 => (0..USERS.len(), 0..CLIENTS.len()).prop_map(|(user, client)| Step::Consent { user, client }),
        1 => (0..USERS.len(), 0..CLIENTS.len()).prop_map(|(user, client)| Step::Disconnect { user, client }),
        1 => (0..USERS.len()).prop_map(|user| Step::Subject { user }),
        2 => (any::<usize>(), 0..3u8).prop_map(|(notice, outcome)| Step::Attempt { notice, outcome }),
        2 => (0..40_000u64).prop_map(|ms| Step::Advance { ms }),
        1 => (1..3usize).prop_map(|limit| Step::Sweep { limit }),
    ]
}

struct MSession {
    user: &'static str,
    id: PublicId,
    created: u64,
}

struct MCode {
    hash: TokenHash,
    grant: CodeGrant,
    spent: Option<GrantId>,
    /// Not yet swept.
    stored: bool,
}

#[derive(Clone)]
struct MGrant {
    auth: Authorization,
    access: Vec<(TokenHash, u64)>,
    refresh: Option<(TokenHash, u64)>,
    retired: Vec<(TokenHash, u64)>,
    last_issued: u64,
    /// Narrowed scopes of access tokens issued by a refresh.
    narrowed: BTreeMap<TokenHash, Vec<String>>,
    issued: BTreeMap<TokenHash, u64>,
}

impl MGrant {
    fn expires(&self) -> u64 {
        let all = self.access.iter().chain(&self.refresh).chain(&self.retired);
        all.map(|&(_, e)| e).max().unwrap_or(0)
    }

    fn find(&self, h: TokenHash) -> Option<(OidcTokenKind, u64, bool)> {
        if let Some(&(_, e)) = self.access.iter().find(|(x, _)| *x == h) {
            return Some((OidcTokenKind::Access, e, false));
        }
        if let Some(&(_, e)) = self.refresh.iter().find(|(x, _)| *x == h) {
            return Some((OidcTokenKind::Refresh, e, false));
        }
        let &(_, e) = self.retired.iter().find(|(x, _)| *x == h)?;
        Some((OidcTokenKind::Refresh, e, true))
    }
}

struct MNotice {
    client: String,
    user: String,
    session: PublicId,
    attempts: u32,
    not_before: u64,
}

#[derive(Default)]
struct Model {
    sessions: BTreeMap<TokenHash, MSession>,
    /// Every session made, by creation, for the steps to pick from.
    made: Vec<(TokenHash, &'static str, PublicId)>,
    codes: Vec<MCode>,
    grants: BTreeMap<GrantId, MGrant>,
    /// Every token issued, with its grant.
    tokens: Vec<(TokenHash, GrantId)>,
    consents: BTreeMap<(String, String), Vec<String>>,
    subjects: BTreeMap<String, String>,
    /// Queued logouts in id order, with their ids once learned.
    notices: Vec<(Option<u64>, MNotice)>,
    events: BTreeMap<EventKind, usize>,
}

impl Model {
    fn event(&mut self, kind: EventKind) {
        *self.events.entry(kind).or_default() += 1;
    }

    fn live(&self, user: &str, id: PublicId, now: u64) -> bool {
        self.sessions
            .values()
            .any(|s| s.user == user && s.id == id && s.created + SESSION_MS > now)
    }

    /// A session ended: its grants go, one notice per client queued.
    fn end(&mut self, hash: TokenHash, now: u64) {
        let Some(s) = self.sessions.remove(&hash) else {
            return;
        };
        let ids: Vec<GrantId> = self
            .grants
            .iter()
            .filter(|(_, g)| g.auth.session == s.id)
            .map(|(id, _)| *id)
            .collect();
        let mut clients = BTreeSet::new();
        for id in ids {
            clients.insert(self.grants.remove(&id).unwrap().auth.client);
        }
        for client in clients {
            self.notices.push((
                None,
                MNotice {
                    client,
                    user: s.user.to_string(),
                    session: s.id,
                    attempts: 0,
                    not_before: now,
                },
            ));
        }
    }

    fn due(&self, now: u64) -> Vec<usize> {
        let mut due: Vec<usize> = (0..self.notices.len())
            .filter(|&i| self.notices[i].1.not_before <= now)
            .collect();
        due.sort_by_key(|&i| (self.notices[i].1.not_before, i));
        due
    }

    fn token(&self, h: TokenHash, now: u64) -> Option<OidcToken> {
        let (_, id) = self.tokens.iter().find(|(x, _)| *x == h)?;
        let g = self.grants.get(id)?;
        let (kind, expires, retired) = g.find(h)?;
        if retired || expires <= now || !self.live(&g.auth.user, g.auth.session, now) {
            return None;
        }
        let mut auth = g.auth.clone();
        if let Some(s) = g.narrowed.get(&h) {
            auth.scopes = s.clone();
        }
        Some(OidcToken {
            kind,
            grant: *id,
            auth,
            issued_ms: g.issued[&h],
            expires_ms: expires,
        })
    }

    fn apps(&self, user: &str, now: u64) -> Vec<ConnectedApp> {
        let mut apps: BTreeMap<String, ConnectedApp> = BTreeMap::new();
        let blank = |c: &str| ConnectedApp {
            client: c.to_string(),
            consent: None,
            sessions: vec![],
            last_issued_ms: 0,
        };
        for ((u, c), scopes) in &self.consents {
            if u == user {
                apps.entry(c.clone()).or_insert_with(|| blank(c)).consent = Some(Consent {
                    user: u.clone(),
                    client: c.clone(),
                    scopes: scopes.clone(),
                    granted_ms: 0,
                });
            }
        }
        // The store's order: by client, then grant id.
        let mut live: Vec<(&String, &GrantId, &MGrant)> = self
            .grants
            .iter()
            .filter(|(_, g)| {
                g.auth.user == user
                    && g.expires() > now
                    && self.live(&g.auth.user, g.auth.session, now)
            })
            .map(|(id, g)| (&g.auth.client, id, g))
            .collect();
        live.sort_by_key(|(c, id, _)| ((*c).clone(), **id));
        for (c, _, g) in live {
            let app = apps.entry(c.clone()).or_insert_with(|| blank(c));
            if !app.sessions.contains(&g.auth.session) {
                app.sessions.push(g.auth.session);
            }
            app.last_issued_ms = app.last_issued_ms.max(g.last_issued);
        }
        apps.into_values().collect()
    }
}

/// The `i`th element, counting round (steps draw any index).
fn pick<T>(v: &[T], i: usize) -> Option<&T> {
    (!v.is_empty()).then(|| &v[i % v.len()])
}

fn hash() -> TokenHash {
    SessionToken::generate().hash()
}

/// Consents are stored with the time given; the model's carry 0, so both
/// sides are compared without it.
fn without_times(mut apps: Vec<ConnectedApp>) -> Vec<ConnectedApp> {
    for a in &mut apps {
        if let Some(c) = a.consent.as_mut() {
            c.granted_ms = 0;
        }
    }
    apps
}

pub(crate) trait OidcSubject: OidcStore + SessionStore + AuditStore + StoreCheck {}
impl<T: OidcStore + SessionStore + AuditStore + StoreCheck> OidcSubject for T {}

async fn run_steps(
    nodes: &[impl OidcSubject; 2],
    steps: Vec<(usize, Step)>,
) -> Result<(), TestCaseError> {
    let mut m = Model::default();
    let mut now = super::EPOCH_MS;
    for (node, step) in steps {
        let b = &nodes[node];
        apply(b, &mut m, &mut now, step).await?;
        // Read back through the other node.
        let r = &nodes[1 - node];
        for &(h, _) in &m.tokens {
            prop_assert_eq!(r.oidc_token(h, now).await.unwrap(), m.token(h, now));
        }
        for user in USERS {
            let got = without_times(r.connected_apps(user, now).await.unwrap());
            prop_assert_eq!(got, m.apps(user, now), "{}", user);
        }
        let report = r.check().await.unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
        let got = r.logouts_due(now, 100).await.unwrap();
        let due = m.due(now);
        prop_assert_eq!(got.len(), due.len());
        for (n, i) in got.iter().zip(due) {
            let (id, want) = &mut m.notices[i];
            prop_assert_eq!(
                (&n.client, &n.user, n.session, n.attempts, n.not_before_ms),
                (
                    &want.client,
                    &want.user,
                    want.session,
                    want.attempts,
                    want.not_before
                )
            );
            // Ids increase in queue order.
            prop_assert!((*id).is_none_or(|id| id == n.id));
            *id = Some(n.id);
        }
    }
    for (kind, n) in &m.events {
        let filter = EventFilter {
            kinds: vec![*kind],
            ..Default::default()
        };
        let page = nodes[0].query_events(&filter, 500, None).await.unwrap();
        prop_assert_eq!(page.events.len(), *n, "{:?}", kind);
    }
    Ok(())
}

async fn apply(
    b: &impl OidcSubject,
    m: &mut Model,
    now: &mut u64,
    step: Step,
) -> Result<(), TestCaseError> {
    let now = match step {
        Step::Advance { ms } => {
            *now += ms;
            return Ok(());
        }
        _ => *now,
    };
    match step {
        Step::Advance { .. } => {}
        Step::Session { user } => {
            let user = USERS[user];
            let (new, login) = super::sign_in(user, true, (SESSION_MS, SESSION_MS, CAP), now);
            let c = b.create_session(new, login, None).await.unwrap();
            // Expired sessions first, then the oldest past the cap, in the
            // order the store keeps them: by creation, then token hash.
            let mut mine: Vec<(u64, TokenHash)> = m
                .sessions
                .iter()
                .filter(|(_, s)| s.user == user)
                .map(|(h, s)| (s.created, *h))
                .collect();
            mine.sort();
            let mut remaining = mine.len();
            let mut live = Vec::new();
            for (created, h) in mine {
                if created + SESSION_MS <= now {
                    m.end(h, now);
                    remaining -= 1;
                } else {
                    live.push(h);
                }
            }
            for h in live {
                if remaining < CAP {
                    break;
                }
                m.end(h, now);
                remaining -= 1;
            }
            let h = c.token.hash();
            let id = c.session.id;
            m.sessions.insert(
                h,
                MSession {
                    user,
                    id,
                    created: now,
                },
            );
            m.made.push((h, user, id));
        }
        Step::EndSession { session } => {
            let Some(&(h, _, _)) = pick(&m.made, session) else {
                return Ok(());
            };
            let how = Revocation::new(RevokeReason::Logout, now);
            let got = b.revoke_by_token(h, how).await.unwrap();
            prop_assert_eq!(got.is_some(), m.sessions.contains_key(&h));
            m.end(h, now);
        }
        Step::RevokeUser { user } | Step::RemoveUser { user } => {
            let user = USERS[user];
            if matches!(step, Step::RemoveUser { .. }) {
                b.set_credentials(vec![(user.to_string(), None)])
                    .await
                    .unwrap();
                m.subjects.remove(user);
                m.consents.retain(|(u, _), _| u != user);
            }
            let how = Revocation::new(RevokeReason::UserChanged, now);
            b.revoke_user(user, None, how).await.unwrap();
            let mine: Vec<(u64, TokenHash)> = m
                .sessions
                .iter()
                .filter(|(_, s)| s.user == user)
                .map(|(h, s)| (s.created, *h))
                .collect();
            let mut mine = mine;
            mine.sort();
            for (_, h) in mine {
                m.end(h, now);
            }
        }
        Step::Authorize {
            session,
            client,
            pkce,
        } => {
            // An ended session is authorized against too, and refused.
            let Some(&(_, user, id)) = pick(&m.made, session) else {
                return Ok(());
            };
            let s = (user, id);
            let grant = CodeGrant {
                auth: Authorization {
                    client: CLIENTS[client].into(),
                    user: s.0.into(),
                    session: s.1,
                    scopes: vec!["openid".into(), "profile".into(), "offline_access".into()],
                    auth_time_ms: now,
                    methods: Methods::PASSWORD,
                },
                redirect_uri: REDIRECT.into(),
                code_challenge: pkce.then(|| pkce_s256(VERIFIER)),
                nonce: Some("n".into()),
                expires_ms: now + CODE_TTL_MS,
            };
            let code = hash();
            let event = grant.authorized_event(None, now);
            let stored = b.put_code(code, grant.clone(), event).await.unwrap();
            let live = m.live(&grant.auth.user, grant.auth.session, now);
            prop_assert_eq!(stored, live);
            if live {
                m.event(EventKind::OidcAuthorized);
                m.codes.push(MCode {
                    hash: code,
                    grant,
                    spent: None,
                    stored: true,
                });
            }
        }
        Step::Redeem {
            code,
            other_client,
            bad_verifier,
            offline,
        } => {
            let Some(c) = pick(&m.codes, code) else {
                return Ok(());
            };
            let (c_hash, c_grant, c_spent, c_stored) = (c.hash, c.grant.clone(), c.spent, c.stored);
            let client = if other_client {
                "other"
            } else {
                c_grant.auth.client.as_str()
            };
            let with_verifier = c_grant.code_challenge.is_some() != bad_verifier;
            let req = CodeRedemption {
                client: client.into(),
                redirect_uri: Some(REDIRECT.into()),
                code_verifier: with_verifier.then(|| VERIFIER.into()),
                ip: None,
                now_ms: now,
            };
            let grant = GrantId::generate();
            let (access, refresh) = (hash(), hash());
            let tokens = NewTokens {
                access,
                access_expires_ms: now + ACCESS_MS,
                refresh: offline.then_some((refresh, now + REFRESH_MS)),
            };
            let got = b
                .redeem_code(c_hash, req.clone(), grant, tokens)
                .await
                .unwrap();
            let want = if !c_stored {
                Err(CodeRefusal::Unknown)
            } else if other_client {
                Err(CodeRefusal::WrongClient)
            } else if let Some(made) = c_spent {
                if m.grants.remove(&made).is_some() {
                    m.event(EventKind::OidcRevoked);
                }
                Err(CodeRefusal::Replayed)
            } else if let Err(e) = c_grant.check(&req) {
                Err(e)
            } else if !m.live(&c_grant.auth.user, c_grant.auth.session, now) {
                Err(CodeRefusal::SessionEnded)
            } else {
                Ok(())
            };
            match (got, want) {
                (Ok(issued), Ok(())) => {
                    let at = code % m.codes.len();
                    let c = &mut m.codes[at];
                    c.spent = Some(grant);
                    prop_assert_eq!(&issued.auth, &c.grant.auth);
                    prop_assert_eq!(issued.grant, grant);
                    prop_assert_eq!(&issued.nonce, &c.grant.nonce);
                    let mut g = MGrant {
                        auth: c.grant.auth.clone(),
                        access: vec![(access, now + ACCESS_MS)],
                        refresh: offline.then_some((refresh, now + REFRESH_MS)),
                        retired: vec![],
                        last_issued: now,
                        narrowed: BTreeMap::new(),
                        issued: BTreeMap::new(),
                    };
                    g.issued.insert(access, now);
                    m.tokens.push((access, grant));
                    if offline {
                        g.issued.insert(refresh, now);
                        m.tokens.push((refresh, grant));
                    }
                    m.grants.insert(grant, g);
                    m.event(EventKind::OidcToken);
                }
                (got, want) => prop_assert_eq!(got.map(|_| ()), want),
            }
        }
        Step::Refresh {
            token,
            other_client,
            narrow,
        } => {
            let Some(&(presented, id)) = pick(&m.tokens, token) else {
                return Ok(());
            };
            let client = match m.grants.get(&id) {
                Some(g) if !other_client => g.auth.client.clone(),
                _ => "other".to_string(),
            };
            let scopes = narrow.then(|| vec!["openid".to_string()]);
            let (access, refresh) = (hash(), hash());
            let req = RefreshRequest {
                client: client.clone(),
                scopes: scopes.clone(),
                tokens: NewTokens {
                    access,
                    access_expires_ms: now + ACCESS_MS,
                    refresh: Some((refresh, now + REFRESH_MS)),
                },
                ip: None,
                now_ms: now,
            };
            let got = b.refresh_grant(presented, req).await.unwrap();
            let want = model_refresh(m, presented, id, &client, scopes, access, refresh, now);
            prop_assert_eq!(got.map(|i| (i.grant, i.auth)), want);
        }
        Step::Revoke {
            token,
            other_client,
        } => {
            let Some(&(h, id)) = pick(&m.tokens, token) else {
                return Ok(());
            };
            let client = match m.grants.get(&id) {
                Some(g) if !other_client => g.auth.client.clone(),
                _ => "other".to_string(),
            };
            let got = b.revoke_oidc_token(h, &client, None, now).await.unwrap();
            let want = match m.grants.get_mut(&id) {
                Some(g) if g.auth.client == client => match g.find(h) {
                    Some((OidcTokenKind::Refresh, _, _)) => {
                        m.grants.remove(&id);
                        true
                    }
                    Some((OidcTokenKind::Access, _, _)) => {
                        g.access.retain(|(x, _)| *x != h);
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            if want {
                m.event(EventKind::OidcRevoked);
            }
            prop_assert_eq!(got, want);
        }
        Step::Consent { user, client } => {
            let consent = Consent {
                user: USERS[user].into(),
                client: CLIENTS[client].into(),
                scopes: vec!["openid".into()],
                granted_ms: now,
            };
            let event = consent.event(true, None, now);
            b.give_consent(consent, event).await.unwrap();
            m.consents.insert(
                (USERS[user].into(), CLIENTS[client].into()),
                vec!["openid".into()],
            );
            m.event(EventKind::OidcConsent);
            let got = b.consent(USERS[user], CLIENTS[client]).await.unwrap();
            prop_assert_eq!(got.map(|c| c.granted_ms), Some(now));
        }
        Step::Disconnect { user, client } => {
            let (user, client) = (USERS[user], CLIENTS[client]);
            let how = Revocation::new(RevokeReason::ByUser, now);
            let got = b.disconnect_app(user, client, how).await.unwrap();
            let mut held = false;
            if m.consents.remove(&(user.into(), client.into())).is_some() {
                m.event(EventKind::OidcConsent);
                held = true;
            }
            let ids: Vec<GrantId> = m
                .grants
                .iter()
                .filter(|(_, g)| g.auth.user == user && g.auth.client == client)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                m.grants.remove(&id);
                m.event(EventKind::OidcRevoked);
                held = true;
            }
            prop_assert_eq!(got, held);
            prop_assert_eq!(b.consent(user, client).await.unwrap(), None);
        }
        Step::Subject { user } => {
            let user = USERS[user];
            let fresh = GrantId::generate().to_string();
            let got = b.oidc_subject(user, fresh.clone()).await.unwrap();
            let want = m.subjects.entry(user.into()).or_insert(fresh).clone();
            prop_assert_eq!(got, want);
        }
        Step::Attempt { notice, outcome } => {
            let due = m.due(now);
            let Some(&i) = pick(&due, notice) else {
                return Ok(());
            };
            let Some(id) = m.notices[i].0 else {
                return Ok(());
            };
            let attempt = match outcome {
                0 => LogoutAttempt::Done,
                1 => LogoutAttempt::GaveUp,
                _ => LogoutAttempt::Retry {
                    not_before_ms: now + 5_000,
                },
            };
            let n = &m.notices[i].1;
            let notice = LogoutNotice {
                id,
                client: n.client.clone(),
                user: n.user.clone(),
                session: n.session,
                queued_ms: now,
                attempts: n.attempts,
                not_before_ms: n.not_before,
            };
            let event = notice.sent_event("failed", Some("refused"), now);
            b.logout_attempted(id, attempt, Some(event)).await.unwrap();
            m.event(EventKind::OidcLogoutSent);
            match attempt {
                LogoutAttempt::Retry { not_before_ms } => {
                    let n = &mut m.notices[i].1;
                    n.attempts += 1;
                    n.not_before = not_before_ms;
                }
                _ => {
                    m.notices.remove(i);
                }
            }
        }
        Step::Sweep { limit } => {
            let r = b.sweep(now, limit).await.unwrap();
            let mut due: Vec<(u64, TokenHash)> = m
                .sessions
                .iter()
                .filter(|(_, s)| s.created + SESSION_MS <= now)
                .map(|(h, s)| (s.created + SESSION_MS, *h))
                .collect();
            due.sort();
            due.truncate(limit);
            for (_, h) in due {
                m.end(h, now);
            }
            let mut codes: Vec<(u64, TokenHash, usize)> = m
                .codes
                .iter()
                .enumerate()
                .filter(|(_, c)| c.stored && c.grant.expires_ms <= now)
                .map(|(i, c)| (c.grant.expires_ms, c.hash, i))
                .collect();
            codes.sort();
            codes.truncate(limit);
            for &(_, _, i) in &codes {
                m.codes[i].stored = false;
            }
            let mut grants: Vec<(u64, GrantId)> = m
                .grants
                .iter()
                .filter(|(_, g)| g.expires() <= now)
                .map(|(id, g)| (g.expires(), *id))
                .collect();
            grants.sort();
            grants.truncate(limit);
            for (_, id) in &grants {
                m.grants.remove(id);
            }
            prop_assert_eq!((r.oidc_codes, r.oidc_grants), (codes.len(), grants.len()));
        }
    }
    Ok(())
}

/// The model of one refresh: the refusal, or the grant and authorization
/// it answers with (the model's grant rotated).
#[allow(clippy::too_many_arguments)]
fn model_refresh(
    m: &mut Model,
    presented: TokenHash,
    id: GrantId,
    client: &str,
    scopes: Option<Vec<String>>,
    access: TokenHash,
    refresh: TokenHash,
    now: u64,
) -> Result<(GrantId, Authorization), RefreshRefusal> {
    let Some(g) = m.grants.get(&id) else {
        return Err(RefreshRefusal::Unknown);
    };
    let Some((OidcTokenKind::Refresh, expires, retired)) = g.find(presented) else {
        return Err(RefreshRefusal::Unknown);
    };
    if g.auth.client != client {
        return Err(RefreshRefusal::WrongClient);
    }
    if retired {
        m.grants.remove(&id);
        m.event(EventKind::OidcRefreshReused);
        return Err(RefreshRefusal::Reused);
    }
    if expires <= now || !m.live(&g.auth.user, g.auth.session, now) {
        return Err(RefreshRefusal::Expired);
    }
    if let Some(s) = &scopes
        && !s.iter().all(|x| g.auth.scopes.contains(x))
    {
        return Err(RefreshRefusal::ScopeWidened);
    }
    let g = m.grants.get_mut(&id).unwrap();
    g.refresh = None;
    g.retired.push((presented, expires));
    while g.retired.len() > MAX_RETIRED_REFRESH {
        g.retired.remove(0);
    }
    g.access.retain(|&(_, e)| e > now);
    g.retired.retain(|&(_, e)| e > now);
    g.access.push((access, now + ACCESS_MS));
    while g.access.len() > MAX_GRANT_ACCESS_TOKENS {
        g.access.remove(0);
    }
    if let Some(s) = scopes.clone().filter(|s| *s != g.auth.scopes) {
        g.narrowed.insert(access, s);
    }
    g.refresh = Some((refresh, now + REFRESH_MS));
    g.issued.insert(access, now);
    g.issued.insert(refresh, now);
    g.last_issued = now;
    let mut auth = g.auth.clone();
    if let Some(s) = scopes {
        auth.scopes = s;
    }
    m.tokens.push((access, id));
    m.tokens.push((refresh, id));
    m.event(EventKind::OidcRefreshed);
    Ok((id, auth))
}

/// The redb backend keeps the OpenID Connect provider's state as the
/// model does.
#[test]
fn redb_oidc_conforms() {
    super::run_sequences(
        128,
        proptest::collection::vec((0..2usize, step()), 1..50),
        super::redb_pair,
        super::close_redb_pair,
        async |nodes: &[_; 2], steps| run_steps(nodes, steps).await,
    );
}
