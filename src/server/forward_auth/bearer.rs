//! Credentials in `Authorization` on the forward-auth check, for clients
//! that cannot sign in with a form (scripts, CI, `git`, scrapers):
//!
//! - **An access token**, as `Bearer TOKEN` or `Basic base64(user:TOKEN)`:
//!   one lookup of its hash in the store's cached snapshot, like a session
//!   cookie; its last use is touched fire-and-forget (coalesced), and a use
//!   from an address it was not recently used from is recorded.
//! - **A password in Basic**, only with `[tokens] basic_auth_passwords`:
//!   a result cached for a minute ([`BasicCache`], keyed by an HMAC of the
//!   credential) answers on the spot, after the same ban check as a
//!   sign-in (the user and the client's address, from the store's hot
//!   snapshot); anything else is checked off the hot path
//!   ([`basic_password`]) exactly as a sign-in form is (bans, the failure
//!   limit, the bounded hashing pool, a dummy hash for unknown users,
//!   failures counted, logged for fail2ban and audited).
//! - **A password alone is never a second factor.** A user who has a
//!   second factor, or must have one, is refused a Basic password even
//!   when it is right ([`password_not_enough`]: use an access token), and
//!   a right Basic password never settles its attempt as a success, which
//!   would forget the user's failures, wrong second-step codes among them.
//!
//! A Bearer value that is not a gatehouse token, or a Basic secret that is
//! not one while passwords are off, is no credential at all: the check then
//! answers as for an anonymous request. Unknown users, wrong tokens and
//! wrong passwords all get the same 401.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::{Policy, UserEntry};
use crate::identity::basic::{self, Checked, Credential};
use crate::server::authed::{Read, copy_read};
use crate::server::guard::rejections::Refusal;
use crate::server::guard::reservation::Reservation;
use crate::server::password::HashError;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{
    ACCESS_TOKEN_PREFIX, AccessToken, AccessTokenInfo, AtLimit, BanStore, BanSubject, EventKind,
    FactorStore, NewEvent, TokenStore, now_ms,
};

/// What a request's `Authorization` header presents.
pub enum Presented {
    /// Nothing gatehouse knows.
    Nothing,
    /// An access token; with Basic, the user name that came with it.
    Token {
        token: AccessToken,
        basic_user: Option<String>,
    },
    /// Basic with a secret that is not an access token: a password.
    Password { user: String, secret: String },
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Nothing => f.write_str("Nothing"),
            Presented::Token { .. } => f.write_str("Token(<redacted>)"),
            Presented::Password { user, .. } => write!(f, "Password({user:?}, <redacted>)"),
        }
    }
}

/// Reads `Authorization`. Several values, or one that is not text, present
/// nothing.
pub fn presented(headers: &HeaderMap) -> Presented {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Presented::Nothing;
    };
    let Some(cred) = value.to_str().ok().and_then(basic::parse) else {
        return Presented::Nothing;
    };
    match cred {
        Credential::Bearer(t) => match AccessToken::parse(t) {
            Some(token) => Presented::Token {
                token,
                basic_user: None,
            },
            None => Presented::Nothing,
        },
        Credential::Basic { user, secret } if secret.starts_with(ACCESS_TOKEN_PREFIX) => {
            match AccessToken::parse(&secret) {
                Some(token) => Presented::Token {
                    token,
                    basic_user: Some(user),
                },
                None => Presented::Nothing,
            }
        }
        Credential::Basic { user, secret } => Presented::Password { user, secret },
    }
}

/// Looks up an access token on the spot: one read of the cached snapshot,
/// or the read the caller awaited already (`awaited`, from [`token_read`]).
/// `f` gets the token, its user's current entry and the policy, under the
/// policy's read lock (keep it short). `Some(Ok(None))` for an unknown,
/// expired or revoked token, a Basic user name that is not the token's
/// owner, or an owner no longer in the config; `None` when the store
/// cannot answer without waiting. Touches the token (fire and forget) when
/// its last recorded use is older than the touch interval or it comes from
/// a new address.
pub fn token_with<T>(
    state: &AppState,
    client_ip: impl FnOnce() -> Option<IpAddr>,
    token: &AccessToken,
    basic_user: Option<&str>,
    awaited: Option<&Read<AccessTokenInfo>>,
    f: impl FnOnce(&AccessTokenInfo, &UserEntry, &Policy) -> T,
) -> Option<Result<Option<T>, ApiError>> {
    let hash = token.hash();
    let now = now_ms();
    let found = match awaited {
        Some(read) => copy_read(read),
        None => state.store.token_by_hash_now(hash, now)?,
    };
    let info = match found {
        Ok(Some(t)) => t,
        Ok(None) => return Some(Ok(None)),
        Err(e) => return Some(Err(ApiError::internal("token lookup failed", &e))),
    };
    if basic_user.is_some_and(|u| u != info.user) {
        return Some(Ok(None));
    }
    let Some(out) = state.with_policy(|policy| {
        let user = policy.user(&info.user)?;
        Some(f(&info, user, policy))
    }) else {
        return Some(Ok(None));
    };
    let ip = client_ip();
    let stale = info
        .last_used_ms
        .is_none_or(|t| now.saturating_sub(t) >= state.config.session.touch_interval_ms);
    if stale || !info.seen_from(ip) {
        // A dropped touch (queue full) only delays the record to the next use.
        if let Err(e) = state.store.touch_token(hash, now, ip) {
            tracing::debug!(error = %e, "token touch dropped");
        }
    }
    Some(Ok(Some(out)))
}

/// The presented token's read, awaited: what [`token_with`] takes as
/// `awaited`.
pub async fn token_read(state: &AppState, token: &AccessToken) -> Read<AccessTokenInfo> {
    state.store.token_by_hash(token.hash(), now_ms()).await
}

/// The cached result of a Basic password check, answered on the spot, or
/// `None` when it must be checked off the hot path ([`basic_password`]):
/// it was not checked within the last minute, or it was right and a ban on
/// the user or the client's address is in force, or cannot be ruled out
/// without waiting. A right password is checked against bans here, before
/// it is answered, as the sign-in form checks them: a credential cached
/// just before a ban must not pass for the rest of its minute. It is also
/// held to the user's current `require_second_factor` (a reload may have
/// set it since).
pub fn cached_password(
    state: &AppState,
    client_ip: impl FnOnce() -> Option<IpAddr>,
    user: &str,
    secret: &str,
) -> Option<Checked> {
    let now = now_ms();
    match state.basic.get(user, secret, now)? {
        Checked::Right => {}
        other => return Some(other),
    }
    if must_have_second_factor(state, user) {
        return Some(Checked::NeedsSecondFactor);
    }
    for subject in subjects(user, client_ip()) {
        // Banned, or not known without waiting: the router's path refuses
        // it (and records the refusal) or finds the ban gone.
        if !matches!(state.store.ban_now(&subject, now), Some(Ok(None))) {
            return None;
        }
    }
    Some(Checked::Right)
}

/// The ban subjects of an attempt: the user name and the client's address.
fn subjects(user: &str, ip: Option<IpAddr>) -> Vec<BanSubject> {
    let mut subjects = vec![BanSubject::User(user.to_string())];
    subjects.extend(ip.map(BanSubject::ip));
    subjects
}

/// Whether the configuration says `user` must have a second factor (their
/// `require_second_factor`, else `[second_factor] required`).
fn must_have_second_factor(state: &AppState, user: &str) -> bool {
    state.with_policy(|p| {
        p.user(user)
            .is_some_and(|u| crate::server::factors::required_for(&state.config, u))
    })
}

/// 401 for the right Basic password of a user who has, or must have, a
/// second factor: Basic cannot carry a second step, so the password alone
/// is not enough, and the way for a script is an access token. Carries the
/// challenge, so that `git` and `curl` ask again (for the token).
pub fn password_not_enough() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "a password alone is not enough for this account (it has, or must have, a second factor): use an access token instead",
    )
    .into_response();
    let h = r.headers_mut();
    h.insert(header::WWW_AUTHENTICATE, CHALLENGE);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `WWW-Authenticate` for a 401 that a non-browser client should answer
/// with credentials (`curl -u`, `git` prompt on it).
pub const CHALLENGE: HeaderValue = HeaderValue::from_static("Basic realm=\"gatehouse\"");

/// 401 with `Retry-After`: a banned client, or one at the failure limit.
/// The forward-auth check answers 401 rather than 429 because proxies turn
/// any status but 2xx, 401 and 403 of an auth request into an error page.
fn too_many(secs: u64) -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "too many failed attempts, try again later",
    )
    .retry_after(secs)
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Why [`basic_password`] did not accept a password.
#[derive(Debug)]
pub enum Refused {
    /// A wrong password or an unknown user: the caller answers as for no
    /// credential at all (with the challenge).
    Wrong,
    /// Any other refusal, answered as it is: a ban or the failure limit
    /// (401 with `Retry-After`), a busy pool (503), a password that is not
    /// enough for its user ([`password_not_enough`]), an error.
    Answer(Response),
}

impl From<Response> for Refused {
    fn from(r: Response) -> Self {
        Refused::Answer(r)
    }
}

/// Checks a Basic password off the hot path, exactly as the sign-in form
/// checks one: bans first (no hashing), then a result from the last minute
/// if there is one, then a place under the failure limit, then a slot of
/// the bounded hashing pool (503 when it and its queue are full), then
/// argon2 (a dummy hash for an unknown user, so both take as long and
/// answer alike). A right password is then held to the user's second
/// factors: one who has, or must have, a second factor is refused
/// ([`password_not_enough`]). The result is cached for at most a minute
/// under a keyed hash of the credential. A failure is counted toward a ban,
/// logged as `login failed` (fail2ban's line) and audited as
/// `login.failure` with `via = basic`. A right password is never settled
/// as a success: that forgets the user's failures, and a password alone
/// must not clear failed second steps. Returns `Ok(())` when the password
/// is right and enough (the caller answers for the user).
pub async fn basic_password(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    user: &str,
    secret: String,
) -> Result<(), Refused> {
    let ua = crate::server::respond::user_agent(headers);
    let now = now_ms();
    let m = &state.metrics;
    if user.len() > crate::store::MAX_USER || secret.len() > crate::server::guard::MAX_PASSWORD {
        return Err(Refused::Wrong);
    }
    let subjects = subjects(user, ip);
    for subject in &subjects {
        match state.store.ban(subject, now).await {
            Ok(Some(ban)) => {
                m.login_rejected.inc();
                crate::server::guard::reject(state, subject, Refusal::Banned, user, ip, &ua, now)
                    .await;
                return Err(too_many(ban.until_ms.saturating_sub(now).div_ceil(1000)).into());
            }
            Ok(None) => {}
            Err(e) => {
                return Err(ApiError::internal("ban lookup failed", &e)
                    .into_response()
                    .into());
            }
        }
    }
    // Checked within the last minute (the hot path sends a cached right
    // password here when it could not rule out a ban without waiting).
    match state.basic.get(user, &secret, now) {
        Some(Checked::Wrong) => return Err(Refused::Wrong),
        Some(Checked::NeedsSecondFactor) => return Err(password_not_enough().into()),
        Some(Checked::Right) if must_have_second_factor(state, user) => {
            return Err(password_not_enough().into());
        }
        Some(Checked::Right) => return Ok(()),
        None => {}
    }
    let (entry, _) = state.user_for_login(user);
    let reservation = match Reservation::take(state, &subjects, entry.is_some(), now).await {
        Ok(Ok(r)) => r,
        Err(e) => {
            return Err(ApiError::internal("reserving an attempt failed", &e)
                .into_response()
                .into());
        }
        Ok(Err(AtLimit(subject))) => {
            m.login_rejected.inc();
            crate::server::guard::reject(state, &subject, Refusal::AtLimit, user, ip, &ua, now)
                .await;
            return Err(too_many(1).into());
        }
    };
    let ok = match state
        .hasher
        .verify(
            secret.clone(),
            entry.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
    {
        Ok(ok) => ok,
        Err(HashError::Busy) => {
            m.login_busy.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy, try again in a moment",
            )
            .retry_after(1)
            .into_response()
            .into());
        }
        Err(e) => {
            return Err(ApiError::internal("password check failed", &e)
                .into_response()
                .into());
        }
    };
    let Some(entry) = entry.filter(|_| ok) else {
        state.basic.put(user, &secret, Checked::Wrong, now_ms());
        drop(secret);
        m.login_failure.inc();
        tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user, "login failed");
        crate::server::guard::audit(
            state,
            NewEvent::now(EventKind::LoginFailure)
                .user(user.to_string())
                .ip(ip)
                .user_agent(ua)
                .detail("via", "basic"),
        )
        .await;
        crate::server::guard::regulate(state, reservation, ip, now).await;
        return Err(Refused::Wrong);
    };
    // Right. Released, not settled as a success: see above.
    drop(reservation);
    let factors = match state.store.factors(user).await {
        Ok(f) => f,
        Err(e) => {
            return Err(ApiError::internal("reading second factors failed", &e)
                .into_response()
                .into());
        }
    };
    let needs_more = factors.any() || crate::server::factors::required_for(&state.config, &entry);
    let checked = if needs_more {
        Checked::NeedsSecondFactor
    } else {
        Checked::Right
    };
    state.basic.put(user, &secret, checked, now_ms());
    if needs_more {
        tracing::info!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user, "basic password refused: the user has or must have a second factor");
        return Err(password_not_enough().into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn what_authorization_presents() {
        let t = AccessToken::generate();
        let shown = t.expose();
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        match presented(&with_auth(&format!("Bearer {shown}"))) {
            Presented::Token { token, basic_user } => {
                assert_eq!(token.hash(), t.hash());
                assert_eq!(basic_user, None);
            }
            other => panic!("{other:?}"),
        }
        match presented(&with_auth(&basic(&format!("alice:{shown}")))) {
            Presented::Token { token, basic_user } => {
                assert_eq!(token.hash(), t.hash());
                assert_eq!(basic_user.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        match presented(&with_auth(&basic("alice:hunter2 and more"))) {
            p @ Presented::Password { .. } => {
                assert!(!format!("{p:?}").contains("hunter2"));
            }
            other => panic!("{other:?}"),
        }
        // Another service's bearer token, a broken token, no header: nothing.
        for v in [
            "Bearer abc.def.ghi",
            &format!("Bearer {}", &shown[..shown.len() - 1]),
            &basic(&format!("alice:{}", &shown[..shown.len() - 1])),
            "Digest x",
        ] {
            assert!(
                matches!(presented(&with_auth(v)), Presented::Nothing),
                "{v}"
            );
        }
        assert!(matches!(presented(&HeaderMap::new()), Presented::Nothing));
        // Two values are ambiguous.
        let mut two = with_auth(&format!("Bearer {shown}"));
        two.append(
            header::AUTHORIZATION,
            format!("Bearer {shown}").parse().unwrap(),
        );
        assert!(matches!(presented(&two), Presented::Nothing));
    }
}
