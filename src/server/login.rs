//! `GET /login` (the form), `POST /login` (check a password, start a
//! session) and `POST /logout`.
//!
//! Order of a login: parse and bound the input, refuse banned users and IPs
//! (429, before any hashing), reserve the attempt with the regulator (429
//! when failures and attempts in flight already reach the limit), take a
//! hashing slot (503 when none is free), verify (unknown users against a
//! dummy hash, so they take as long), then either count the failure
//! (possibly banning) or create a fresh session, which the writer refuses if
//! the user's credentials changed since the check (a reload). The token
//! always comes from the store, never from the client. Refusals before
//! hashing are recorded once per subject and window (`rejections`).

use std::net::IpAddr;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::config::UserEntry;
use crate::server::client::ClientIp;
use crate::server::cookie::{clear_cookie, clear_host_only_cookie, cookie_hash};
use crate::server::pages;
use crate::server::password::HashError;
use crate::server::redirect::safe_redirect;
use crate::server::regulation::{AtLimit, Reservation};
use crate::server::rejections::{Note, Refusal};
use crate::server::respond::{ApiError, user_agent, wants_json};
use crate::server::state::AppState;
use crate::store::{
    AuditStore, BanStore, BanSubject, CredentialCheck, EventKind, MAX_USER, NewBan, NewEvent,
    Revocation, RevokeReason, SessionStore, now_ms,
};

/// Longest password accepted (argon2 would take any length; the body limit
/// bounds it anyway, this keeps the message clear).
pub const MAX_PASSWORD: usize = 1024;

/// The one message for every failed login: no hint whether the user exists.
pub const FAILED: &str = "Wrong username or password.";

/// A password. `Debug` never prints it.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Longer than any password gatehouse checks ([`MAX_PASSWORD`]).
    pub fn too_long(&self) -> bool {
        self.0.len() > MAX_PASSWORD
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A checkbox (`on`) or a JSON boolean.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_set(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => matches!(s.as_str(), "on" | "true" | "1" | "yes"),
        }
    }
}

/// The login form or JSON body.
#[derive(Deserialize, Debug)]
pub struct LoginInput {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Password,
    #[serde(default)]
    remember_me: Option<Flag>,
    #[serde(default)]
    rd: Option<String>,
}

#[derive(Deserialize)]
pub struct FormQuery {
    rd: Option<String>,
}

/// Renders the sign-in page. When `rd` is a safe redirect to another
/// origin, the page names it and its policy lets the form's answer go there.
fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
    rd: &str,
) -> Response {
    let continue_to = safe_redirect(&state.config, headers, rd)
        .and_then(|to| url::Url::parse(&to).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null");
    pages::login::page(
        status,
        &pages::login::LoginView {
            error,
            username,
            rd,
            continue_to: continue_to.as_deref(),
            passkeys: crate::server::factors::passkeys::available(state, headers),
        },
    )
}

/// `GET /login`. A malformed query shows the form without `rd`.
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q: FormQuery = crate::server::extract::parse_query(query.as_deref().unwrap_or(""))
        .unwrap_or(FormQuery { rd: None });
    let rd = q.rd.unwrap_or_default();
    let rd = if rd.len() > crate::server::redirect::MAX_RD {
        ""
    } else {
        &rd
    };
    if needs_step_up(&state, &headers, rd) {
        return crate::server::respond::see_other(&crate::server::factors::step::next_page(
            false, rd,
        ));
    }
    page(&state, &headers, StatusCode::OK, None, "", rd)
}

/// Whether the browser is signed in, but without a second factor, and
/// `rd` leads to something the access rules open only to two factors:
/// then it came here from the forward-auth check, and the way on is the
/// second step (step-up), not a password again.
fn needs_step_up(state: &AppState, headers: &HeaderMap, rd: &str) -> bool {
    let Some(to) = safe_redirect(&state.config, headers, rd).and_then(|t| {
        url::Url::parse(&t)
            .ok()
            .or_else(|| url::Url::parse(&format!("http://localhost{t}")).ok())
    }) else {
        return false;
    };
    if to.host_str().is_none() {
        return false;
    }
    let Ok((host, path)) = crate::access::normalize::url(&to) else {
        return false;
    };
    let found = crate::server::authed::lookup_with(state, headers, |session, _, user, policy| {
        if session.methods.two_factor() {
            return false;
        }
        let req = crate::access::Request {
            host: &host,
            path: &path,
            method: "GET",
            ip: None,
        };
        let who = crate::access::Subject {
            user: Some(&user.name),
            groups: policy.group_list(&user.name),
        };
        policy.rules().decide(&req, &who).policy == crate::access::Policy::TwoFactor
    });
    matches!(found, Ok(Some(true)))
}

/// Reads the body as JSON or as a form, with the body limit applied.
async fn parse<S: Send + Sync>(state: &S, req: Request) -> Result<LoginInput, ApiError> {
    let input: LoginInput = crate::server::extract::json_or_form(state, req).await?;
    if input.username.is_empty() || input.password.0.is_empty() {
        return Err(ApiError::bad_request("username and password are required"));
    }
    if input.username.len() > MAX_USER || input.username.chars().any(char::is_control) {
        return Err(ApiError::bad_request("username too long or malformed"));
    }
    if input.password.0.len() > MAX_PASSWORD {
        return Err(ApiError::bad_request("password too long"));
    }
    Ok(input)
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let json = wants_json(&headers);
    let input = match parse(&state, req).await {
        Ok(i) => i,
        Err(e) if json => return e.into_response(),
        Err(e) => return page(&state, &headers, e.status, Some(&e.message), "", ""),
    };
    match attempt(&state, ip, &headers, input).await {
        Ok(res) => res,
        Err((e, username, rd)) if !json => {
            let mut res = page(&state, &headers, e.status, Some(&e.message), &username, &rd);
            if let Some(s) = e.retry_after {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            res
        }
        Err((e, _, _)) => e.into_response(),
    }
}

type Failure = (ApiError, String, String);

async fn attempt(
    state: &AppState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    input: LoginInput,
) -> Result<Response, Failure> {
    let LoginInput {
        username,
        password,
        remember_me,
        rd,
    } = input;
    let rd = rd.unwrap_or_default();
    let fail = |e: ApiError| (e, username.clone(), rd.clone());
    let ua = user_agent(headers);
    let checked = check_password(state, &username, password, ip, &ua, None)
        .await
        .map_err(fail)?;
    let PasswordCheck::Right(user, credentials, reservation) = checked else {
        return Err(fail(ApiError::new(StatusCode::UNAUTHORIZED, FAILED)));
    };

    // The password is right: a session, or first a second step.
    let remember = remember_me.is_some_and(|f| f.is_set());
    let signed = crate::server::factors::SignIn {
        user: &user,
        remember,
        ip,
        ua: ua.clone(),
        rd: &rd,
    };
    crate::server::factors::after_password(state, headers, signed, credentials, reservation)
        .await
        .map_err(fail)
}

/// A password checked as the sign-in form checks one.
pub(super) enum PasswordCheck<'s> {
    /// Right: the user's entry and its credential generation, both as they
    /// were when checked, and the attempt's reservation, for the caller to
    /// settle (or to release by dropping it).
    Right(UserEntry, CredentialCheck, Reservation<'s>),
    /// Wrong, or no such user: already counted, logged and audited.
    Wrong,
}

/// Checks `password` for `username`, from `ip`, the one way a typed
/// password is checked: bans (429, before any hashing), a reservation under
/// the failure limit (429), a hashing slot (503 when none is free), then the
/// hash (a dummy one for unknown users, so that they take as long). A wrong
/// password counts toward a ban, is logged as `login failed` (the line
/// fail2ban reads) and audited as `login.failure`, with `via` when given.
pub(super) async fn check_password<'s>(
    state: &'s AppState,
    username: &str,
    password: Password,
    ip: Option<IpAddr>,
    ua: &Option<String>,
    via: Option<&str>,
) -> Result<PasswordCheck<'s>, ApiError> {
    let now = now_ms();
    let m = &state.metrics;
    let mut subjects = vec![BanSubject::User(username.to_string())];
    subjects.extend(ip.map(BanSubject::ip));
    // The entry and its credential generation come from one snapshot, so
    // a session made from this check is refused if a reload replaced it.
    let (user, credentials) = state.user_for_login(username);
    let reservation = admit(state, &subjects, user.is_some(), username, ip, ua, now).await?;
    let ok = match state
        .hasher
        .verify(password.0, user.as_ref().map(|u| u.password_hash.clone()))
        .await
    {
        Ok(ok) => ok,
        Err(HashError::Busy) => {
            m.login_busy.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy. Try again in a moment.",
            )
            .retry_after(1));
        }
        Err(e) => return Err(ApiError::internal("password check failed", &e)),
    };
    let Some(user) = user.filter(|_| ok) else {
        m.login_failure.inc();
        // One line per failure for fail2ban; the IP comes first and the user
        // is quoted so that a crafted name cannot forge the IP field.
        tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?username, "login failed");
        let mut event = NewEvent::now(EventKind::LoginFailure)
            .user(username.to_string())
            .ip(ip)
            .user_agent(ua.clone());
        if let Some(via) = via {
            event = event.detail("via", via);
        }
        audit(state, event).await;
        regulate(state, reservation, ip, now).await;
        return Ok(PasswordCheck::Wrong);
    };
    Ok(PasswordCheck::Right(user, credentials, reservation))
}

/// Lets an attempt (a password or a second-factor code) of `username` from
/// `ip` go on to its check, or refuses it: banned users and IPs first (one
/// read each, no hashing), then a place under the failure limit, reserved
/// before the check so that a burst cannot outrun the ban (attempts in
/// flight count; they settle within one check). Both refusals are the
/// same 429.
pub(super) async fn admit<'s>(
    state: &'s AppState,
    subjects: &[BanSubject],
    configured: bool,
    username: &str,
    ip: Option<IpAddr>,
    ua: &Option<String>,
    now: u64,
) -> Result<Reservation<'s>, ApiError> {
    let m = &state.metrics;
    for subject in subjects {
        match state.store.ban(subject, now).await {
            Ok(Some(ban)) => {
                m.login_rejected.inc();
                let secs = ban.until_ms.saturating_sub(now).div_ceil(1000);
                reject(state, subject, Refusal::Banned, username, ip, ua, now).await;
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Try again later.",
                )
                .retry_after(secs));
            }
            Ok(None) => {}
            Err(e) => return Err(ApiError::internal("ban lookup failed", &e)),
        }
    }
    match state.regulator.reserve(subjects, configured, now) {
        Ok(r) => Ok(r),
        Err(AtLimit(subject)) => {
            m.login_rejected.inc();
            reject(state, &subject, Refusal::AtLimit, username, ip, ua, now).await;
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed attempts. Try again later.",
            )
            .retry_after(1))
        }
    }
}

/// Counts a failure against the user and the IP (settling the attempt's
/// reservation), and stores a ban when a limit is reached.
pub(super) async fn regulate(
    state: &AppState,
    reservation: Reservation<'_>,
    ip: Option<IpAddr>,
    now: u64,
) {
    for (subject, until) in reservation.fail(now) {
        state.metrics.bans_added.inc();
        tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), subject = %subject, until_ms = until, "banned after repeated login failures");
        let ban = NewBan {
            subject,
            until_ms: until,
            reason: "too many failed logins".into(),
            ip,
            now_ms: now,
        };
        if let Err(e) = state.store.add_ban(ban).await {
            tracing::error!(error = %e, "storing a ban failed");
        }
    }
}

/// A login refused before hashing, of `subject` (the banned or at-limit
/// one): recorded and logged only when it is the first of its subject's
/// window, otherwise only counted (see `rejections`), so that a flood of
/// refused attempts writes a bounded number of events and log lines.
pub(super) async fn reject(
    state: &AppState,
    subject: &BanSubject,
    refusal: Refusal,
    username: &str,
    ip: Option<IpAddr>,
    ua: &Option<String>,
    now: u64,
) {
    let Note::Record { count } = state.rejections.note(subject, refusal, now) else {
        return;
    };
    audit(
        state,
        NewEvent::now(EventKind::LoginRejected)
            .user(username.to_string())
            .ip(ip)
            .user_agent(ua.clone())
            .detail("reason", refusal.reason())
            .detail("count", count.to_string()),
    )
    .await;
    match refusal {
        Refusal::Banned => {
            tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?username, subject = %subject, "login refused: banned")
        }
        Refusal::AtLimit => {
            tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?username, subject = %subject, "login refused: failure limit reached")
        }
    }
}

/// Appends an audit event and waits until it is durable. A failure is
/// logged: the request's answer does not depend on it.
pub async fn audit(state: &AppState, ev: NewEvent) {
    if let Err(e) = state.store.append(ev).await {
        tracing::error!(error = %e, "audit append failed");
    }
}

/// `POST /logout`: ends the session, clears the cookie, back to the form.
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    if let Some(hash) = cookie_hash(&state, &headers) {
        let how = Revocation {
            ip,
            ..Revocation::new(RevokeReason::Logout, now_ms())
        };
        if let Err(e) = state.store.revoke_by_token(hash, how).await {
            return ApiError::internal("logout failed", &e).into_response();
        }
    }
    let mut res = if wants_json(&headers) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        crate::server::respond::see_other("/login")
    };
    if let Some(stale) = clear_host_only_cookie(&state.config) {
        res.headers_mut().append(header::SET_COOKIE, stale);
    }
    res.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(&state.config));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use proptest::prelude::*;

    fn run(ct: &str, body: Vec<u8>, limit: usize) -> Result<LoginInput, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // The route's limit, as the router applies it.
            let req = {
                let (parts, body) = req.into_parts();
                let body = Body::new(http_body_util::Limited::new(body, limit));
                Request::from_parts(parts, body)
            };
            parse(&(), req).await
        })
    }

    /// Checks an answer: an accepted input is within bounds; a refusal is a
    /// 4xx whose message does not repeat the password.
    fn check(r: Result<LoginInput, ApiError>, password: &str) {
        match r {
            Ok(i) => {
                assert!(!i.username.is_empty() && i.username.len() <= MAX_USER);
                assert!(!i.username.chars().any(char::is_control));
                assert!(!i.password.0.is_empty() && i.password.0.len() <= MAX_PASSWORD);
                assert!(!format!("{i:?}").contains(&i.password.0) || i.password.0.len() < 4);
            }
            Err(e) => {
                assert!(e.status.is_client_error(), "{}", e.status);
                if password.len() >= 4 {
                    assert!(!e.message.contains(password), "{}", e.message);
                }
            }
        }
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,10}",
            "(?s).{0,40}",
            ".{120,140}",
            Just("a\r\nSet-Cookie: x=y".to_string()),
            Just("x".repeat(MAX_PASSWORD + 1)),
        ]
    }

    proptest! {
        /// Form bodies built from random fields, and random bytes.
        #[test]
        fn form_bodies(user in field(), pw in field(), extra in "[a-z_=&%0-9A-F]{0,30}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("username", &user)
                .append_pair("password", &pw)
                .finish() + "&" + &extra;
            check(run("application/x-www-form-urlencoded", body.into_bytes(), 16384), &pw);
            check(run("application/x-www-form-urlencoded", raw, 16384), "");
        }

        /// JSON bodies with random values of random types, and random bytes.
        #[test]
        fn json_bodies(
            user in prop_oneof![field().prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null), Just(serde_json::json!(["a"]))],
            pw in field(),
            remember in prop_oneof![any::<bool>().prop_map(serde_json::Value::from), "[a-z]{0,5}".prop_map(serde_json::Value::from), any::<u8>().prop_map(serde_json::Value::from)],
            raw in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let body = serde_json::json!({"username": user, "password": pw, "remember_me": remember});
            check(run("application/json", body.to_string().into_bytes(), 16384), &pw);
            check(run("application/json", raw, 16384), "");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let i = run(
            "application/x-www-form-urlencoded",
            b"username=bob&password=correct-horse-battery".to_vec(),
            16384,
        )
        .unwrap();
        let d = format!("{i:?}");
        assert!(d.contains("bob") && !d.contains("correct-horse"), "{d}");
    }

    #[test]
    fn refusals() {
        let e = run(
            "application/json",
            br#"{"username": 5, "password": "hunter2-secret"}"#.to_vec(),
            16384,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!e.message.contains("hunter2"));
        let e = run(
            "application/json",
            b"{\"username\": \"a\", \"password\": 123456789}".to_vec(),
            16384,
        )
        .unwrap_err();
        assert!(!e.message.contains("123456789"), "{}", e.message);
        let e = run("application/json", vec![b'{'; 100], 50).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = run("text/plain", b"x".to_vec(), 50).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = run(
            "application/x-www-form-urlencoded",
            b"username=a%0d%0ab&password=x".to_vec(),
            50,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
