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
//! ones (a passkey alone) are at most 1,024, a new one replacing the
//! oldest, so a flood of them never blocks a user's own. It is in memory: a
//! restart only means clicking the button again.
//!
//! The relying party is the public origin; without one, a request to
//! `localhost` uses its own origin (development). Anything else cannot use
//! passkeys, and the pages do not offer them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::enroll::Enroller;
use super::step::{Proof, Stepper, attempt_with};
use super::{SignIn, complete, factors_of, signed_in};
use crate::identity::recovery::RecoveryCodes;
use crate::identity::webauthn::{Passkeys, WebAuthnError};
use crate::server::auth::{ClientIp, cookie};
use crate::server::login::{admit, audit, regulate};
use crate::server::{ApiError, AppState, user_agent};
use crate::store::{
    BanSubject, EventKind, FactorChange, FactorStore, MAX_PASSKEY_NAME, Method, Methods, NewEvent,
    Passkey, PublicId, SessionToken, TokenHash, now_ms, truncate,
};

/// Most anonymous ceremonies (sign-in with a passkey alone) in flight at
/// once; a new one beyond it replaces the oldest. A user's own ceremonies
/// are one per user and purpose, so they are bounded by the users, and no
/// flood of anonymous ones can push them out.
const MAX_ANONYMOUS: usize = 1024;
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
    state: Vec<u8>,
    expires_ms: u64,
}

/// Ceremony states in flight, bounded. Owned by the server state.
#[derive(Default)]
pub struct Ceremonies {
    map: Mutex<HashMap<TokenHash, Entry>>,
}

impl Ceremonies {
    /// Keeps a ceremony's state; returns the token its cookie carries. A
    /// user's earlier ceremony of the same purpose ends (one in flight
    /// each); an anonymous one beyond [`MAX_ANONYMOUS`] replaces the oldest.
    fn put(
        &self,
        purpose: Purpose,
        user: Option<String>,
        state: Vec<u8>,
        now: u64,
    ) -> SessionToken {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| {
            e.expires_ms > now && !(user.is_some() && e.user == user && e.purpose == purpose)
        });
        if user.is_none() {
            let anonymous = map.values().filter(|e| e.user.is_none()).count();
            if anonymous >= MAX_ANONYMOUS {
                let oldest = map
                    .iter()
                    .filter(|(_, e)| e.user.is_none())
                    .min_by_key(|(_, e)| e.expires_ms)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let token = SessionToken::generate();
        map.insert(
            token.hash(),
            Entry {
                purpose,
                user,
                state,
                expires_ms: now + CEREMONY_MS,
            },
        );
        token
    }

    /// Takes the live ceremony `hash` of `purpose`: used once.
    fn take(&self, hash: TokenHash, purpose: Purpose, now: u64) -> Option<Entry> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.remove(&hash)?;
        (e.purpose == purpose && e.expires_ms > now).then_some(e)
    }
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

/// `POST /api/v1/mfa/passkeys/register/start`.
pub async fn register_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let run = async {
        let who = Enroller::of(&state, &headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let pk = passkeys_for(&state, &headers)?;
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
            Some(who.user().to_string()),
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
        if entry.user.as_deref() != Some(who.user()) {
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
            .ok_or_else(super::no_sign_in)?;
        let pk = passkeys_for(&state, &headers)?;
        let set = factors_of(&state, who.user()).await?;
        let creds: Vec<Vec<u8>> = set.passkeys.iter().map(|p| p.credential.clone()).collect();
        let (options, st) = pk
            .start_authentication(&creds)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state
            .ceremonies
            .put(Purpose::Step, Some(who.user().to_string()), st, now_ms());
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
            .ok_or_else(super::no_sign_in)?;
        let entry = taken(&state, &headers, Purpose::Step)?;
        if entry.user.as_deref() != Some(who.user()) {
            return Err(stale_ceremony());
        }
        let rd = super::step::bounded_rd(input.rd);
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
pub async fn discover_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let run = async {
        let pk = passkeys_for(&state, &headers)?;
        let (options, st) = pk
            .start_discoverable()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = state.ceremonies.put(Purpose::Discover, None, st, now_ms());
        Ok::<_, ApiError>(started(&state, &token, options))
    };
    run.await.unwrap_or_else(|e| e.into_response())
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
                tracing::warn!(target: "gatehouse::auth", ip = %crate::server::ip_str(ip), user = ?user.name, method = "webauthn", "login failed");
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
        super::step::change(
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
        let rd = super::step::bounded_rd(input.rd);
        let s = SignIn {
            user: &user,
            remember: false,
            ip,
            ua,
            rd: &rd,
        };
        let created = super::create(
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

    #[test]
    fn ceremonies_are_single_use_bounded_and_floods_cannot_push_out_a_users() {
        let c = Ceremonies::default();
        let alice = c.put(Purpose::Step, Some("alice".into()), vec![1], 0);
        // A flood of anonymous ceremonies: bounded, and alice's stays.
        for _ in 0..3 * MAX_ANONYMOUS {
            c.put(Purpose::Discover, None, vec![2], 0);
        }
        assert_eq!(
            c.map.lock().unwrap().len(),
            MAX_ANONYMOUS + 1,
            "anonymous ones replace the oldest"
        );
        // A newer ceremony of alice's ends the older; a token presented for
        // the wrong purpose is refused and burnt.
        let again = c.put(Purpose::Step, Some("alice".into()), vec![3], 1);
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
        let late = c.put(Purpose::Register, Some("bob".into()), vec![4], 0);
        assert!(
            c.take(late.hash(), Purpose::Register, CEREMONY_MS)
                .is_none()
        );
        let ok = c.put(Purpose::Register, Some("bob".into()), vec![5], 0);
        assert_eq!(
            c.take(ok.hash(), Purpose::Register, 1).unwrap().state,
            vec![5]
        );
    }
}
