//! Logout, both ways.
//!
//! - **RP-initiated** (`GET|POST /oidc/logout`, OpenID Connect RP-Initiated
//!   Logout 1.0): with an `id_token_hint` of ours naming the browser's
//!   session, the session ends and the browser goes to a registered
//!   `post_logout_redirect_uri` (with `state`). Without one, a signed-in
//!   browser is asked on the sign-out page, so that a link on another site
//!   cannot sign anyone out. A hint that is not ours (tampered, `alg:
//!   none`, another key) is refused with an error page.
//! - **Back-channel** ([`sender`]): the store queues a notice for every
//!   client that received tokens in a session that ended, whatever ended
//!   it; one task sends each client a signed logout token, with bounded
//!   retries, and audits every send (`oidc.logout_sent`).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Deserialize;
use tokio::sync::watch;

use crate::domain::oidc::{LogoutAttempt, LogoutNotice};
use crate::oidc::claims::LogoutClaims;
use crate::server::client::ClientIp;
use crate::server::pages;
use crate::server::respond::see_other;
use crate::server::state::AppState;
use crate::store::{OidcStore, now_ms};

/// Sends tried per notice.
pub const MAX_ATTEMPTS: u32 = 5;

/// Longest wait for an app's answer to a logout token.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the sender looks for due notices without being woken (a
/// retry coming due).
const POLL: Duration = Duration::from_secs(1);

/// Least time between two looks: the store's commits wake the sender, and
/// a busy store commits far more often than sessions end.
const SETTLE: Duration = Duration::from_millis(50);

/// Notices taken per pass.
const BATCH: usize = 32;

#[derive(Deserialize, Default)]
struct EndSession {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// What an ID token hint must hold.
#[derive(Deserialize)]
struct Hint {
    iss: String,
    aud: String,
    sid: String,
}

/// `GET /oidc/logout`.
pub async fn end_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    run(&state, &headers, ip, q.as_deref().unwrap_or("").as_bytes()).await
}

/// `POST /oidc/logout`.
pub async fn end_session_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    run(&state, &headers, ip, &body).await
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    encoded: &[u8],
) -> Response {
    let Ok(p) = serde_urlencoded::from_bytes::<EndSession>(encoded) else {
        return pages::oidc::error("The sign-out request could not be read.");
    };
    let issuer = match super::issuer(state) {
        Ok(i) => i.to_string(),
        Err(e) => return e.into_response(),
    };
    let hint = match &p.id_token_hint {
        None => None,
        Some(h) if h.len() > 16 * 1024 => {
            return pages::oidc::error("The id_token_hint is too long.");
        }
        Some(h) => {
            let keys = match super::keys(state).await {
                Ok(k) => k,
                Err(e) => return e.into_response(),
            };
            match keys.verify::<Hint>(h) {
                Ok(c) if c.iss == issuer => Some(c),
                _ => {
                    return pages::oidc::error(
                        "The id_token_hint was not issued by this sign-in service.",
                    );
                }
            }
        }
    };
    let client_id = match (&hint, &p.client_id) {
        (Some(h), Some(c)) if &h.aud != c => {
            return pages::oidc::error("client_id is not the audience of the id_token_hint.");
        }
        (Some(h), _) => Some(h.aud.clone()),
        (None, c) => c.clone(),
    };
    let client = client_id.and_then(|id| state.with_policy(|pol| pol.client(&id).cloned()));
    let back = match (&p.post_logout_redirect_uri, &client) {
        (None, _) => None,
        (Some(uri), Some(c)) if c.post_logout_allowed(uri) => Some(uri.clone()),
        (Some(_), _) => {
            return pages::oidc::error(
                "The app asked to return to an address it has not registered (post_logout_redirect_uri).",
            );
        }
    };
    let current = crate::server::authed::lookup(state, headers)
        .await
        .ok()
        .flatten();
    let answer = match back {
        Some(uri) => {
            let mut params = Vec::new();
            if let Some(s) = &p.state {
                params.push(("state", s.as_str()));
            }
            see_other(&super::params::redirect_with(&uri, &issuer, &params))
        }
        None => see_other("/login"),
    };
    match (current, &hint) {
        // Not signed in: nothing to end.
        (None, _) => answer,
        // The app names this very session: end it without asking.
        (Some(me), Some(h)) if h.sid == me.session.id.to_string() => {
            crate::server::account::sessions::sign_out(state, headers, ip, answer).await
        }
        // Anything else is asked on the sign-out page.
        (Some(_), _) => see_other("/logout"),
    }
}

/// The back-channel logout sender: sends what the store has due, when
/// woken by a commit of the store (however a session ended: a sign-out, a
/// revocation, the sweep, a reload),
/// or every [`POLL`], until `stop` changes.
pub async fn sender(state: AppState, mut stop: watch::Receiver<bool>) {
    let tls = match crate::store::tls::client_config(None) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout cannot run: no TLS roots");
            return;
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build(https);
    let mut commits = state.store.commits();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = commits.changed() => {
                if r.is_err() {
                    // The store is closing; the stop signal follows.
                    commits = state.store.commits();
                    tokio::time::sleep(POLL).await;
                }
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        tokio::time::sleep(SETTLE).await;
        commits.borrow_and_update();
        let due = match state.store.logouts_due(now_ms(), BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading due logouts failed");
                continue;
            }
        };
        for notice in due {
            if *stop.borrow() {
                return;
            }
            send_one(&state, &client, notice).await;
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Sends one notice and records what became of it.
async fn send_one(state: &AppState, client: &HttpClient, n: LogoutNotice) {
    let now = now_ms();
    let target = state.with_policy(|p| {
        p.client(&n.client)
            .and_then(|c| c.backchannel_logout_uri.clone())
            .map(|u| (u, p.user(&n.user).is_some()))
    });
    let Some((uri, user_known)) = target else {
        // Not wanted (no URI, or the client is gone): dropped unaudited.
        record(state, n.id, LogoutAttempt::Done, None).await;
        return;
    };
    let outcome = match token_for(state, &n, user_known, now).await {
        Ok(token) => post(client, &uri, &token).await,
        Err(e) => Err(e),
    };
    let (attempt, event) = match outcome {
        Ok(()) => (LogoutAttempt::Done, n.sent_event("delivered", None, now)),
        Err(why) if n.attempts + 1 >= MAX_ATTEMPTS => {
            tracing::warn!(client = %n.client, error = %why, "back-channel logout given up");
            (
                LogoutAttempt::GaveUp,
                n.sent_event("gave_up", Some(&why), now),
            )
        }
        Err(why) => {
            let backoff = 5_000u64 << n.attempts.min(6);
            (
                LogoutAttempt::Retry {
                    not_before_ms: now + backoff,
                },
                n.sent_event("failed", Some(&why), now),
            )
        }
    };
    record(state, n.id, attempt, Some(event)).await;
}

async fn record(
    state: &AppState,
    id: u64,
    attempt: LogoutAttempt,
    event: Option<crate::domain::NewEvent>,
) {
    if let Err(e) = state.store.logout_attempted(id, attempt, event).await {
        tracing::warn!(error = %e, "recording a logout send failed");
    }
}

/// The signed logout token of a notice. `sub` is left out for a user no
/// longer configured (their subject is gone); `sid` is always there.
async fn token_for(
    state: &AppState,
    n: &LogoutNotice,
    user_known: bool,
    now: u64,
) -> Result<String, String> {
    let issuer = state.oidc.issuer.clone().ok_or("no issuer")?;
    let sub = if user_known {
        state
            .store
            .oidc_subject(&n.user, super::token::random_subject())
            .await
            .map_err(|e| e.to_string())?
    } else {
        String::new()
    };
    let claims = LogoutClaims::new(&issuer, &n.client, &sub, &n.session.to_string(), now);
    let keys = state
        .oidc
        .keys(&state.store, &state.secrets)
        .await
        .map_err(|e| e.to_string())?;
    keys.current()
        .sign("logout+jwt", &claims)
        .map_err(|e| e.to_string())
}

/// POSTs `logout_token` (§2.5); a `200` or `204` is delivery.
async fn post(client: &HttpClient, uri: &url::Url, token: &str) -> Result<(), String> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    let req = hyper::Request::post(uri.as_str())
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(SEND_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| format!("cannot reach the app: {e}"))?;
    let status = res.status();
    // Drained within the same bound, so the connection can be reused.
    let _ = tokio::time::timeout(
        SEND_TIMEOUT,
        http_body_util::Limited::new(res.into_body(), 64 * 1024).collect(),
    )
    .await;
    if status.as_u16() == 200 || status.as_u16() == 204 {
        Ok(())
    } else {
        Err(format!("the app answered {status}"))
    }
}
