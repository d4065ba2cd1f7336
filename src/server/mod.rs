//! The HTTP server: shared state, the router and the response helpers every
//! handler uses.
//!
//! [`AppState`] is one `Arc`, cloned per request. It holds the store (reads on
//! the request's own thread, no locks), the writer (all writes), the hashing
//! pool, the regulator and the metrics. The users form one [`Policy`] behind a
//! `RwLock<Arc<Policy>>` that a reload swaps whole, so a request sees one
//! consistent set. Under the same lock the reload moves the credential
//! generation of every changed user ([`CredentialGenerations`]), which the
//! writer checks before it creates a session: a login whose password was
//! checked against a replaced hash gets no session.

pub mod admin;
pub mod admin_stream;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod bearer;
pub mod conn;
mod dispatch;
mod error;
pub mod extract;
pub mod factors;
pub mod first_start;
pub mod health;
pub mod lifecycle;
pub mod login;
pub mod metrics;
pub mod pages;
pub mod password;
pub mod redirect;
pub mod regulation;
pub mod rejections;
pub mod reload;
pub mod sessions;
pub mod tasks;
pub mod tokens;
pub mod verify;

use std::net::IpAddr;

/// Most (user, rule, minute) keys remembered for recording refusals.
const MAX_DENIAL_KEYS: usize = 10_000;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;

use crate::config::{Config, Policy, UserEntry};
use crate::store::{
    Backend, CredentialCheck, CredentialGenerations, Revocation, RevokeReason, SessionStore,
    TokenStore,
};

pub use dispatch::answer_hot;
pub use error::ServerError;
pub use health::Activity;
pub use lifecycle::{Exit, Server};
pub use reload::{Reloaded, Reloader};

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What [`AppState`] holds.
pub struct Inner {
    /// Settings fixed at start. Its policy is the one the server started
    /// with; the current one is [`AppState::policy`].
    pub config: Config,
    /// The current policy, replaced whole by a reload.
    policy: RwLock<Arc<Policy>>,
    /// Per-user credential generations, shared with the writer thread
    /// through the session-creating operation. Bumped only while `policy` is
    /// write-locked, so a reader of `policy` sees a user and a generation of
    /// the same reload.
    credentials: CredentialGenerations,
    /// The store: sessions, bans and the audit trail.
    pub store: Backend,
    pub hasher: password::Hasher,
    pub regulator: regulation::Regulator,
    /// Refused logins not yet recorded, per subject and window.
    pub rejections: rejections::Rejections,
    /// Which access refusals become `access.denied` events (bounded).
    pub denials: crate::access::denials::Denials,
    pub metrics: metrics::Metrics,
    pub activity: Arc<Activity>,
    /// Seals second-factor secrets at rest, with the data directory's key.
    pub secrets: crate::identity::secret_box::SecretBox,
    /// Passkey ceremonies in flight (bounded).
    pub ceremonies: factors::passkeys::Ceremonies,
    /// The WebAuthn relying party of the public origin, built once.
    pub relying: factors::passkeys::Relying,
    /// Results of Basic password checks on `/auth/verify`, a minute at
    /// most, keyed by an HMAC of the credential; cleared when a reload
    /// changes users.
    pub basic: crate::identity::basic::BasicCache,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(
        config: Config,
        store: Backend,
        hasher: password::Hasher,
        activity: Arc<Activity>,
        secrets: crate::identity::secret_box::SecretBox,
    ) -> Self {
        let regulator = regulation::Regulator::new(config.regulation.clone());
        let rejections = rejections::Rejections::new(&config.regulation);
        let relying = factors::passkeys::relying_party(&config);
        AppState {
            inner: Arc::new(Inner {
                policy: RwLock::new(config.policy().clone()),
                credentials: CredentialGenerations::default(),
                config,
                store,
                hasher,
                regulator,
                rejections,
                denials: crate::access::denials::Denials::new(MAX_DENIAL_KEYS),
                metrics: metrics::Metrics::default(),
                activity,
                secrets,
                ceremonies: Default::default(),
                relying,
                basic: crate::identity::basic::BasicCache::new(
                    bearer::BASIC_CACHE_ENTRIES,
                    crate::identity::basic::MAX_TTL_MS,
                ),
            }),
        }
    }

    /// Records a refusal by an access rule as an `access.denied` event, at
    /// most once per user, rule and minute. Called on the forward-auth hot
    /// path, which never waits on a write: the append runs in its own short
    /// task, bounded in number by that once-a-minute rule; if it fails (a
    /// full disk, shutdown) the failure is logged and the refusal stands.
    pub fn record_denial(
        &self,
        user: &str,
        rule: Option<usize>,
        host: &str,
        path: &str,
        ip: Option<IpAddr>,
    ) {
        if !self
            .denials
            .should_record(user, rule, crate::store::now_ms())
        {
            return;
        }
        let event = crate::store::NewEvent::now(crate::store::EventKind::AccessDenied)
            .user(user.to_string())
            .ip(ip)
            .detail("host", host)
            .detail("path", path)
            .detail("rule", crate::access::rule_label(rule));
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::store::AuditStore::append(&state.store, event).await {
                tracing::warn!(error = %e, "recording an access refusal failed");
            }
        });
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` on the current policy under its read lock, without cloning
    /// the `Arc` (the forward-auth path).
    pub fn with_policy<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        f(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current entry of `name` and a check, taken under the same lock,
    /// that holds until a reload changes that user's credentials.
    pub fn user_for_login(&self, name: &str) -> (Option<UserEntry>, CredentialCheck) {
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        (policy.user(name).cloned(), self.credentials.check(name))
    }

    /// Replaces the policy (a reload) and ends every session and access
    /// token of a user who was removed, whose password hash changed, or who
    /// was just added. So
    /// a password change signs out the old sessions, and a name that comes
    /// back (perhaps for someone else, perhaps after being removed while the
    /// server was stopped) never inherits sessions from before.
    /// Returns the users whose sessions were ended.
    ///
    /// Logins still checking a password against the old entry are covered
    /// too: the changed users' credential generations move together with the
    /// swap, before any revocation is queued, so their session creation is
    /// refused by the writer if it comes after the revocation.
    pub async fn replace_policy(&self, policy: Arc<Policy>) -> Vec<String> {
        let old = self.policy();
        let removed_or_changed = old.users().values().filter(|u| {
            policy
                .user(&u.name)
                .is_none_or(|n| n.password_hash != u.password_hash)
        });
        let now = crate::store::now_ms();
        // A newly added name should have no sessions; any it has are leftovers.
        let mut changed: Vec<String> = removed_or_changed.map(|u| u.name.clone()).collect();
        for u in policy.users().values() {
            if old.user(&u.name).is_none()
                && (self
                    .store
                    .sessions_of(&u.name, now)
                    .await
                    .map_or(true, |s| !s.is_empty())
                    || self
                        .store
                        .tokens_of(&u.name, now)
                        .await
                        .map_or(true, |t| !t.is_empty()))
            {
                changed.push(u.name.clone());
            }
        }
        changed.sort();
        changed.dedup();
        // A name that leaves or arrives keeps no second factor: a passkey
        // left by the person who had the name must never sign in whoever
        // has it next (passkeys sign in alone).
        let mut arrived_or_left: Vec<String> = old
            .users()
            .keys()
            .filter(|n| policy.user(n).is_none())
            .chain(policy.users().keys().filter(|n| old.user(n).is_none()))
            .cloned()
            .collect();
        arrived_or_left.sort();
        {
            let mut current = self.policy.write().unwrap_or_else(|p| p.into_inner());
            *current = policy;
            // Before the revocations below are queued: the writer applies in
            // order, so each login of a changed user either commits its
            // session before the revocation or finds the generation moved.
            self.credentials.bump(changed.iter().map(String::as_str));
        }
        if !changed.is_empty() {
            // A Basic password checked against a replaced hash must not
            // pass from the cache for the rest of its minute.
            self.basic.clear();
        }
        for user in &changed {
            let how = Revocation::new(RevokeReason::UserChanged, crate::store::now_ms());
            if let Err(e) = self.store.revoke_user(user, None, how.clone()).await {
                tracing::error!(error = %e, user = ?user, "ending the sessions of a changed user failed");
            }
            // Queued after the sessions' revocation: a token being created
            // from one of those sessions is refused once it is gone
            // (`TokenStore::create_token`), or was created before and ends
            // here.
            if let Err(e) = self.store.revoke_user_tokens(user, how).await {
                tracing::error!(error = %e, user = ?user, "ending the tokens of a changed user failed");
            }
        }
        for user in &arrived_or_left {
            match crate::store::FactorStore::factors(&self.store, user).await {
                Ok(set) if set.is_empty() => {}
                Ok(_) => {
                    if let Err(e) = admin::reset_factors(&self.store, user, "reload").await {
                        tracing::error!(error = %e, user = ?user, "removing the second factors of a removed user failed");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, user = ?user, "reading the second factors of a removed user failed")
                }
            }
        }
        changed
    }
}

/// Builds the router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let login_limit = limits.login_body_bytes;
    let body_limit = limits.body_bytes;
    let timeout = limits.request_timeout;
    let login = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/login/second-factor", get(factors::step::page))
        .route("/login/totp", post(factors::step::totp))
        .route("/login/recovery", post(factors::step::recovery))
        .route("/login/passkey/start", post(factors::passkeys::step_start))
        .route(
            "/login/passkey/finish",
            post(factors::passkeys::step_finish),
        )
        .route(
            "/login/passkey/discover/start",
            post(factors::passkeys::discover_start),
        )
        .route(
            "/login/passkey/discover/finish",
            post(factors::passkeys::discover_finish),
        )
        .route(
            "/login/enroll",
            get(factors::enroll::page).post(factors::enroll::submit),
        )
        .layer(DefaultBodyLimit::max(login_limit));
    // The forward-auth check runs on every request to every protected app.
    // These two handlers read no body, change nothing and never wait on I/O
    // they do not bound themselves (one in-memory store read, atomics), so
    // they skip the layers that only matter for bodies, state-changing posts
    // and slow handlers: the CSRF guard, the body limits and the per-request
    // timer. They also skip the activity middleware (`/healthz` is not
    // activity; `verify` records its own) and the request trace layer, each
    // a boxed service and a boxed future per request.
    let hot = Router::new()
        .route("/auth/verify", get(verify::verify))
        .route("/healthz", get(health::healthz));
    let rest = Router::new()
        .merge(login)
        .route("/", get(home))
        .route("/logout", get(sessions::page_sign_out).post(login::logout))
        .route("/api/v1/session", get(sessions::whoami))
        .route("/api/v1/sessions", get(sessions::list))
        .route("/api/v1/sessions/{id}", delete(sessions::revoke_one))
        .route(
            "/api/v1/sessions/revoke-others",
            post(sessions::revoke_others),
        )
        .route("/api/v1/sessions/revoke-all", post(sessions::revoke_all))
        .route("/sessions", get(sessions::page))
        .route(
            "/sessions/revoke-others",
            get(sessions::page_confirm_others).post(sessions::page_revoke_others),
        )
        .route("/sessions/revoke", post(sessions::page_revoke))
        .route("/api/v1/mfa", get(factors::enroll::status))
        .route(
            "/api/v1/mfa/totp",
            post(factors::enroll::api_begin_totp).delete(factors::enroll::api_remove_totp),
        )
        .route(
            "/api/v1/mfa/totp/confirm",
            post(factors::enroll::api_confirm_totp),
        )
        .route(
            "/api/v1/mfa/recovery-codes",
            post(factors::enroll::api_regenerate),
        )
        .route(
            "/api/v1/mfa/passkeys/register/start",
            post(factors::passkeys::register_start),
        )
        .route(
            "/api/v1/mfa/passkeys/register/finish",
            post(factors::passkeys::register_finish),
        )
        .route(
            "/api/v1/mfa/passkeys/{id}",
            axum::routing::patch(factors::enroll::api_rename_passkey)
                .delete(factors::enroll::api_remove_passkey),
        )
        .route("/account/security", get(factors::account::page))
        .route(
            "/account/security/passkeys/{id}/rename",
            post(factors::account::rename_passkey),
        )
        .route(
            "/account/security/passkeys/{id}/remove",
            post(factors::account::remove_passkey),
        )
        .route("/account/security/totp", post(factors::account::begin))
        .route(
            "/account/security/totp/confirm",
            post(factors::account::confirm),
        )
        .route(
            "/account/security/totp/remove",
            post(factors::account::remove),
        )
        .route(
            "/account/security/recovery",
            post(factors::account::new_codes),
        )
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/tokens", get(tokens::page).post(tokens::page_create))
        .route("/tokens/revoke", post(tokens::page_revoke))
        .route("/api/v1/audit", get(audit::query))
        .route("/metrics", get(metrics::render))
        .route("/robots.txt", get(assets::robots))
        .route("/security.txt", get(assets::security))
        .route("/.well-known/security.txt", get(assets::security))
        .route("/assets/style.css", get(assets::style))
        .route("/assets/icon.svg", get(assets::icon))
        .route("/assets/passkey.js", get(assets::passkey_js))
        .route("/favicon.ico", get(assets::icon))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::csrf_guard,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            body_limit.max(login_limit),
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            health::track_activity,
        ))
        // Request spans and timings at debug level (`RUST_LOG=tower_http=debug`).
        .layer(tower_http::trace::TraceLayer::new_for_http());
    // HSTS on every answer a browser may see. The hot routes go without: their
    // answers are read by the proxy, not by browsers (see `answer_hot`).
    let hsts = state
        .config
        .hsts
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    let rest = match hsts {
        Some(v) => rest.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            v,
        )),
        None => rest,
    };
    hot.merge(rest).with_state(state)
}

/// `GET /`: the sessions page is gatehouse's home (it sends anonymous
/// visitors on to the login form).
async fn home() -> Response {
    see_other("/sessions")
}

/// A `303` to `to` (a path of ours, or a URL already checked as a safe
/// redirect).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    r
}

/// `r` with `Cache-Control: no-store`: answers that hold personal data.
pub fn no_store(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

/// An error answer: a status and a short reason that leaks no internals.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not signed in")
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "not allowed")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A failure of ours (store, writer); the details go to the log only.
    pub fn internal(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable, try again",
        )
        .retry_after(1)
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Whether the client is a browser asking for a page: it accepts HTML and
/// did not ask for JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    !wants_json(headers)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// Whether the client asked for JSON.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A user agent header, bounded, for session records and audit events.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| crate::store::truncate(s.to_string(), crate::store::MAX_USER_AGENT))
}

/// Formats an optional IP for log lines.
pub fn ip_str(ip: Option<IpAddr>) -> String {
    ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}
