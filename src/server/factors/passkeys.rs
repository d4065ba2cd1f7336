//! Passkeys over HTTP: registering one (a signed-in session, or a pending
//! sign-in that must enroll), using one as the second step (after the
//! password, or to step up), and signing in with one alone (discoverable,
//! user verification required). The page side is `assets/passkey.js`.
//!
//! A ceremony is two requests. Its state (`identity::webauthn`) stays on
//! the server in [`Ceremonies`], under the hash of a random token that the
//! browser holds in a short-lived cookie (`<cookie_name>_webauthn`); it is
//! taken at the finish, so each is used once. The map is bounded: entries
//! live five minutes, a user has one in flight per purpose, and anonymous
//! ones (a passkey alone) are at most 1,024 in all and
//! `[second_factor] passkey_ceremonies_per_client` (16) per client (its
//! address, an IPv6 address counting as its /64). A client at its quota is
//! refused (429 with `Retry-After`); when all 1,024 are taken, the oldest
//! ceremony of the client with the most is ended only if that client is at
//! its quota, and otherwise the newcomer is refused. So a flood from a few
//! clients never pushes out another client's ceremony, and neither
//! anonymous floods nor anything else touch a user's own. It is in memory:
//! a restart only means clicking the button again.
//!
//! The relying party is the public origin; without one, a request to
//! `localhost` uses its own origin (development). Anything else cannot use
//! passkeys, and the pages do not offer them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::identity::recovery::RecoveryCodes;
use crate::identity::webauthn::{Passkeys, WebAuthnError};
use crate::server::client::ClientIp;
use crate::server::cookie::cookie;
use crate::server::factors::enroll::Enroller;
use crate::server::factors::proof::ProofInput;
use crate::server::factors::step::{Proof, Stepper, attempt_with};
use crate::server::factors::{SignIn, complete, factors_of, signed_in};
use crate::server::login::{admit, audit, regulate};
use crate::server::respond::{ApiError, user_agent};
use crate::server::state::AppState;
use crate::store::{
    BanSubject, EnrollerId, EventKind, FactorChange, FactorStore, MAX_PASSKEY_NAME, Method,
    Methods, NewEvent, Passkey, PublicId, SessionToken, TokenHash, client_network, now_ms,
    truncate,
};

/// Most anonymous ceremonies (sign-in with a passkey alone) in flight at
/// once, from all clients together. A user's own ceremonies are one per
/// user and purpose, so they are bounded by the users, and no flood of
/// anonymous ones can push them out.
const MAX_ANONYMOUS: usize = crate::config::MAX_ANONYMOUS_CEREMONIES;
/// Life of a ceremony: what the authenticator is given, too.
const CEREMONY_MS: u64 = 300_000;

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Register,
    /// The second step (after a password, or a step-up).
    Step,
    /// A sign-in with a passkey alone.
    Discover,
}

struct Entry {
    purpose: Purpose,
    /// Whose ceremony (none for a discoverable sign-in).
    user: Option<String>,
    /// For a registration: the session or sign-in that started it (with
    /// its proof, see `proof`), the only one that may finish it.
    by: Option<EnrollerId>,
    /// For an anonymous ceremony: the network of the client that started
    /// it ([`client_network`]; `None` when the address is unknown, and all
    /// such share one quota).
    client: Option<IpAddr>,
    state: Vec<u8>,
    expires_ms: u64,
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

/// Ceremony states in flight, bounded. Owned by the server state.
#[derive(Default)]
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
    fn put(
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
    fn put_anonymous(
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
    fn take(&self, hash: TokenHash, purpose: Purpose, now: u64) -> Option<Entry> {
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
    let (user, by, client) = match owner {
        Owner::User(user, by) => (Some(user), by, None),
        Owner::Client(client) => (None, None, client),
    };
    map.insert(
        token.hash(),
        Entry {
            purpose,
            user,
            by,
            client,
            state,
            expires_ms: now + CEREMONY_MS,
        },
    );
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

/// The relying party of the public origin, built once at start: `None`
/// without a public origin, an error when the origin cannot use passkeys.
pub type Relying = Option<Result<Arc<Passkeys>, WebAuthnError>>;

/// [`Relying`] for `config`.
pub fn relying_party(config: &crate::config::Config) -> Relying {
    let origin = config.public_origin.as_ref()?;
    let built = Passkeys::new(origin).map(Arc::new);
    if let Err(e) = &built {
        tracing::warn!(origin = %origin, "passkeys are off: {e}");
    }
    Some(built)
}

/// The relying party for this request, if passkeys can be used here.
pub fn passkeys_for(state: &AppState, headers: &HeaderMap) -> Result<Arc<Passkeys>, ApiError> {
    let refuse = |e: WebAuthnError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string());
    if let Some(built) = &state.relying {
        return built.clone().map_err(refuse);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if name == "localhost" || name.ends_with(".localhost") {
        let url = url::Url::parse(&format!("http://{host}")).map_err(|_| {
            ApiError::bad_request("passkeys need public_origin on https, or localhost")
        })?;
        return Passkeys::new(&url).map(Arc::new).map_err(refuse);
    }
    Err(ApiError::bad_request(
        "passkeys need public_origin on https, or localhost",
    ))
}

/// Whether pages should offer passkeys for this request.
pub fn available(state: &AppState, headers: &HeaderMap) -> bool {
    passkeys_for(state, headers).is_ok()
}

fn cookie_name(state: &AppState) -> String {
    format!("{}_webauthn", state.config.cookie.name)
}

/// The options answer with the ceremony's cookie.
fn started(state: &AppState, token: &SessionToken, options: Value) -> Response {
    let mut c = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(state),
        token.expose(),
        CEREMONY_MS / 1000
    );
    if state.config.cookie.secure {
        c.push_str("; Secure");
    }
    let mut res = Json(options).into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Takes the request's ceremony of `purpose`.
fn taken(state: &AppState, headers: &HeaderMap, purpose: Purpose) -> Result<Entry, ApiError> {
    cookie(headers, &cookie_name(state))
        .and_then(SessionToken::parse)
        .and_then(|t| state.ceremonies.take(t.hash(), purpose, now_ms()))
        .ok_or_else(stale_ceremony)
}

/// The answer for a finish whose ceremony is gone, used, or another's.
fn stale_ceremony() -> ApiError {
    ApiError::bad_request("this passkey request is no longer valid; please start again")
}

/// A finish request: the browser's answer, and for registrations a name.
#[derive(Deserialize)]
pub struct Finish {
    #[serde(default)]
    name: String,
    credential: Value,
    #[serde(default)]
    rd: Option<String>,
}

async fn body(state: &AppState, req: Request) -> Result<Finish, ApiError> {
    crate::server::extract::json_or_form(state, req).await
}

// ------------------------------------------------------------ register

/// `POST /api/v1/mfa/passkeys/register/start`, with `{"password"}` when a
/// session needs it (see `proof`).
pub async fn register_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let who = Enroller::of(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let input: ProofInput = crate::server::extract::optional_json_or_form(&state, req).await?;
        let pk = passkeys_for(&state, &headers)?;
        crate::server::factors::enroll::may_add(&state, &who, input.password, ip, &headers).await?;
        let set = factors_of(&state, who.user()).await?;
        let existing: Vec<Vec<u8>> = set
            .passkeys
            .iter()
            .map(|p| p.credential_id.clone())
            .collect();
        let (options, st) = pk
            .start_registration(who.user(), who.user(), &existing)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state.ceremonies.put(
            Purpose::Register,
            who.user().to_string(),
            Some(who.id()),
            st,
            now_ms(),
        );
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /api/v1/mfa/passkeys/register/finish` with `{name, credential}`.
/// Answers `{"enrolled": "webauthn", "recovery_codes"?: [...], "redirect"}`;
/// a pending sign-in that had to enroll is signed in by it.
pub async fn register_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let who = Enroller::of(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let entry = taken(&state, &headers, Purpose::Register)?;
        if entry.user.as_deref() != Some(who.user()) || entry.by != Some(who.id()) {
            return Err(stale_ceremony());
        }
        let pk = passkeys_for(&state, &headers)?;
        let (credential_id, credential) = pk
            .finish_registration(&entry.state, &input.credential)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let name = truncate(input.name.trim().to_string(), MAX_PASSKEY_NAME);
        let name = if name.is_empty() || name.chars().any(char::is_control) {
            "Passkey".to_string()
        } else {
            name
        };
        let codes = RecoveryCodes::generate();
        let event = NewEvent::now(EventKind::MfaEnrolled)
            .user(who.user().to_string())
            .ip(ip)
            .user_agent(user_agent(&headers))
            .detail("method", Method::WebAuthn.as_str())
            .detail("name", name.clone());
        let applied = state
            .store
            .change_factors(
                who.user(),
                FactorChange::AddPasskey {
                    passkey: Passkey {
                        id: PublicId::generate().0,
                        name,
                        credential_id,
                        credential,
                        created_ms: now_ms(),
                        last_used_ms: None,
                    },
                    recovery: codes.hashes().into_iter().map(|h| h.0).collect(),
                    by: who.id(),
                },
                Some(event),
                now_ms(),
            )
            .await
            .map_err(|e| ApiError::internal("registering the passkey failed", &e))?
            .map_err(|r| ApiError::new(StatusCode::CONFLICT, r.to_string()))?;
        // A Basic password of this user cached as enough must stop passing now.
        state.basic.clear();
        let codes = applied.recovery_set.then_some(codes);
        let mut answer = serde_json::json!({
            "enrolled": Method::WebAuthn.as_str(),
            "redirect": "/account/security",
        });
        if let Some(c) = &codes {
            answer["recovery_codes"] = serde_json::json!(c.shown());
        }
        match who {
            Enroller::Session(_) => Ok(Json(answer).into_response()),
            Enroller::Pending(hash, p) => {
                let Some(user) = state.user_for_login(&p.user).0 else {
                    return Err(ApiError::unauthorized());
                };
                let rd = input.rd.unwrap_or_default();
                let s = SignIn {
                    user: &user,
                    remember: p.remember_me,
                    ip,
                    ua: user_agent(&headers),
                    rd: &rd,
                };
                let created = complete(&state, hash, &s, Method::WebAuthn)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?;
                let signed = signed_in(&state, &headers, ip, &p.user, &created, p.remember_me, &rd);
                let to = crate::server::redirect::safe_redirect(&state.config, &headers, &rd);
                answer["redirect"] = Value::from(to.unwrap_or_else(|| "/".into()));
                let mut res = Json(answer).into_response();
                for v in signed.headers().get_all(header::SET_COOKIE) {
                    res.headers_mut().append(header::SET_COOKIE, v.clone());
                }
                Ok(res)
            }
        }
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

// ---------------------------------------------------------- second step

/// `POST /login/passkey/start`: the second step with a passkey (a pending
/// sign-in, or a session stepping up).
pub async fn step_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let run = async {
        let who = Stepper::of(&state, &headers)
            .await?
            .ok_or_else(crate::server::factors::no_sign_in)?;
        let pk = passkeys_for(&state, &headers)?;
        let set = factors_of(&state, who.user()).await?;
        let creds: Vec<Vec<u8>> = set.passkeys.iter().map(|p| p.credential.clone()).collect();
        let (options, st) = pk
            .start_authentication(&creds)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state
            .ceremonies
            .put(Purpose::Step, who.user().to_string(), None, st, now_ms());
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /login/passkey/finish` with `{credential, rd}`.
pub async fn step_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let who = Stepper::of(&state, &headers)
            .await?
            .ok_or_else(crate::server::factors::no_sign_in)?;
        let entry = taken(&state, &headers, Purpose::Step)?;
        if entry.user.as_deref() != Some(who.user()) {
            return Err(stale_ceremony());
        }
        let rd = crate::server::factors::step::bounded_rd(input.rd);
        let proof = Proof::Passkey {
            state: entry.state,
            response: input.credential,
        };
        // The script asks for JSON: the answer names where to go.
        attempt_with(&state, ip, &headers, &who, Method::WebAuthn, &proof, &rd).await
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

// ------------------------------------------------------ passkey alone

/// `POST /login/passkey/discover/start`: a sign-in with a passkey alone.
/// Anyone may start one, so each client has a quota of open ones
/// (`[second_factor] passkey_ceremonies_per_client`); past it, or when
/// every place is taken by clients under theirs, the answer is 429 with
/// `Retry-After` (see [`Ceremonies`]).
pub async fn discover_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let pk = passkeys_for(&state, &headers)?;
        let (options, st) = pk
            .start_discoverable()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let quota = state.config.second_factor.passkey_ceremonies_per_client;
        let token = state
            .ceremonies
            .put_anonymous(ip, quota, st, now_ms())
            .map_err(too_many_ceremonies)?;
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// 429 for a passkey sign-in that cannot start now ([`Busy`]).
fn too_many_ceremonies(busy: Busy) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many passkey sign-ins in progress; try again shortly",
    )
    .retry_after(busy.retry_after_ms.div_ceil(1000).max(1))
}

/// `POST /login/passkey/discover/finish` with `{credential, rd}`: the
/// passkey names its user; bans and the failure limit apply as for a
/// password, and the session records the passkey as its method (it is two
/// factors in one: the key and its PIN or biometric).
pub async fn discover_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let run = async {
        let input = body(&state, req).await?;
        let entry = taken(&state, &headers, Purpose::Discover)?;
        let unknown = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "This passkey is not registered here.",
            )
        };
        let id = Passkeys::credential_id_of(&input.credential).ok_or_else(unknown)?;
        let owner = state
            .store
            .passkey_owner(&id)
            .await
            .map_err(|e| ApiError::internal("looking up the passkey failed", &e))?
            .ok_or_else(unknown)?;
        let (user, credentials) = state.user_for_login(&owner);
        let user = user.ok_or_else(unknown)?;
        let now = now_ms();
        let ua = user_agent(&headers);
        let mut subjects = vec![BanSubject::User(user.name.clone())];
        subjects.extend(ip.map(BanSubject::ip));
        let reservation = admit(&state, &subjects, true, &user.name, ip, &ua, now).await?;
        let set = factors_of(&state, &user.name).await?;
        let creds: Vec<Vec<u8>> = set.passkeys.iter().map(|p| p.credential.clone()).collect();
        let pk = passkeys_for(&state, &headers)?;
        let checked = pk.finish_discoverable(&entry.state, &input.credential, &user.name, &creds);
        state.metrics.second_step(Method::WebAuthn, checked.is_ok());
        let (cred_id, updated) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                state.metrics.login_failure.inc();
                tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user.name, method = "webauthn", "login failed");
                audit(
                    &state,
                    NewEvent::now(EventKind::MfaFailure)
                        .user(user.name.clone())
                        .ip(ip)
                        .user_agent(ua.clone())
                        .detail("method", Method::WebAuthn.as_str())
                        .detail("reason", "wrong"),
                )
                .await;
                regulate(&state, reservation, ip, now).await;
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
            }
        };
        let stored = set
            .passkeys
            .iter()
            .find(|p| p.credential_id == cred_id)
            .map(|p| p.credential.clone())
            .unwrap_or_default();
        let event = NewEvent::now(EventKind::MfaSuccess)
            .user(user.name.clone())
            .ip(ip)
            .user_agent(ua.clone())
            .detail("method", Method::WebAuthn.as_str())
            .detail("passkey_only", "true");
        crate::server::factors::step::change(
            &state,
            &user.name,
            FactorChange::UsePasskey {
                credential_id: cred_id,
                credential: updated.unwrap_or(stored),
            },
            Some(event),
        )
        .await?
        .map_err(|r| ApiError::new(StatusCode::UNAUTHORIZED, r.to_string()))?;
        let rd = crate::server::factors::step::bounded_rd(input.rd);
        let s = SignIn {
            user: &user,
            remember: false,
            ip,
            ua,
            rd: &rd,
        };
        let created = crate::server::factors::create(
            &state,
            &s,
            Methods::of(&[Method::WebAuthn]),
            credentials,
            now,
        )
        .await?;
        reservation.succeed(now);
        Ok(signed_in(
            &state, &headers, ip, &user.name, &created, false, &rd,
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
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

    #[test]
    fn the_global_cap_matches_the_config_bound() {
        assert_eq!(MAX_ANONYMOUS, crate::config::MAX_ANONYMOUS_CEREMONIES);
        assert_eq!(
            crate::config::SecondFactorSettings::default().passkey_ceremonies_per_client,
            16
        );
    }
}
