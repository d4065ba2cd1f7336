//! The guard every typed secret passes: bans, the failure counters (the
//! store's, held through a [`Reservation`]), the aggregation of refusals
//! (`rejections`) and the one password check. Used by the sign-in flow and by Basic credentials on the
//! forward-auth path; it uses only the core.

use std::net::IpAddr;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::config::UserEntry;
use crate::server::guard::rejections::{Note, Refusal};
use crate::server::guard::reservation::Reservation;
use crate::server::password::HashError;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{
    AtLimit, AuditStore, BanStore, BanSubject, CredentialCheck, EventKind, NewBan, NewEvent, now_ms,
};

pub mod rejections;
pub mod reservation;

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

/// A password checked as the sign-in form checks one.
pub(crate) enum PasswordCheck<'s> {
    /// Right: the user's entry as it was checked and the check of its
    /// credentials, and the attempt's reservation, for the caller to
    /// settle (or to release by dropping it). Boxed: the entry is large
    /// and the wrong answer is the common one under a guessing flood.
    Right(Box<UserEntry>, CredentialCheck, Reservation<'s>),
    /// Wrong, or no such user: already counted, logged and audited.
    Wrong,
}

/// Checks `password` for `username`, from `ip`, the one way a typed
/// password is checked: bans (429, before any hashing), a reservation under
/// the failure limit (429), a hashing slot (503 when none is free), then the
/// hash (a dummy one for unknown users, so that they take as long). A wrong
/// password counts toward a ban, is logged as `login failed` (the line
/// fail2ban reads) and audited as `login.failure`, with `via` when given.
pub(crate) async fn check_password<'s>(
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
    // The check is of the very entry whose hash is verified, so a session
    // made from it is refused if a reload replaced that hash.
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
    Ok(PasswordCheck::Right(
        Box::new(user),
        credentials,
        reservation,
    ))
}

/// Lets an attempt (a password or a second-factor code) of `username` from
/// `ip` go on to its check, or refuses it: banned users and IPs first (one
/// read each, no hashing), then a place under the failure limit, reserved
/// before the check so that a burst cannot outrun the ban (attempts in
/// flight count; they settle within one check). Both refusals are the
/// same 429.
pub(crate) async fn admit<'s>(
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
    match Reservation::take(state, subjects, configured, now).await {
        Ok(Ok(r)) => Ok(r),
        Err(e) => Err(ApiError::internal("reserving an attempt failed", &e)),
        Ok(Err(AtLimit(subject))) => {
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
pub(crate) async fn regulate(
    state: &AppState,
    reservation: Reservation<'_>,
    ip: Option<IpAddr>,
    now: u64,
) {
    for (subject, until) in reservation.fail(now).await {
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
pub(crate) async fn reject(
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

/// Longest password accepted (argon2 would take any length; the body limit
/// bounds it anyway, this keeps the message clear).
pub const MAX_PASSWORD: usize = 1024;
