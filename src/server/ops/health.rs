//! Liveness: [`Activity`] (request activity, open connections, heartbeats)
//! and `GET /healthz`.
//!
//! Requests count as activity (the idle timer stops the server after a quiet
//! period); at most once per [`BEAT_INTERVAL`] a request also wakes the
//! heartbeat task (`crate::server::tasks`), which touches the heartbeat file.
//! `/healthz` says `alive` while the last beat is younger than
//! [`BEAT_EXPIRY`]. Health checks themselves are not activity.
//!
//! On the distributed store it also reports the store
//! (`crate::store::distributed::StoreHealth`): `unavailable` (Redis does
//! not answer, so no session can be checked) answers 503, so that a load
//! balancer takes the node out; `degraded` (PostgreSQL away or the audit
//! chain behind, while sign-ins go on) stays 200, with the reason. On redb
//! the store is `ok` and the answer is made on the spot
//! (`crate::server::dispatch::answer_hot`).
//!
//! [`Activity`]: crate::server::activity::Activity
//! [`BEAT_INTERVAL`]: crate::server::activity::BEAT_INTERVAL

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::activity::BEAT_EXPIRY;
use crate::server::state::AppState;
use crate::store::distributed::{StoreHealth, StoreState};
use crate::store::now_ms;

/// The body of a `/healthz` answer.
#[derive(Serialize)]
struct Health {
    /// `alive` or `expired`.
    status: &'static str,
    /// Wall-clock milliseconds of the last heartbeat.
    last_heartbeat: u64,
    /// `ok`, `degraded` or `unavailable`.
    store: &'static str,
    /// Why the store is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Audit events waiting to be chained (distributed store).
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox_depth: Option<u64>,
    /// How long the oldest of them has waited, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox_lag_ms: Option<u64>,
}

/// `GET /healthz`: no auth, not activity.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let store = state.store.health().await;
    answer(&state, store.as_ref())
}

/// The `/healthz` answer of a store with nothing to probe (redb), made on
/// the spot.
pub fn health(state: &AppState) -> Response {
    answer(state, None)
}

fn answer(state: &AppState, store: Option<&StoreHealth>) -> Response {
    let last = state.activity.last_beat_ms();
    let alive = now_ms().saturating_sub(last) < BEAT_EXPIRY.as_millis() as u64;
    let (code, kind, reason) = match store.map(|s| &s.state) {
        None | Some(StoreState::Ok) => (StatusCode::OK, "ok", None),
        Some(StoreState::Degraded(why)) => (StatusCode::OK, "degraded", Some(why.clone())),
        Some(StoreState::Unavailable(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(why.clone()),
        ),
    };
    let outbox = store.and_then(|s| s.outbox);
    let body = Health {
        status: if alive { "alive" } else { "expired" },
        last_heartbeat: last,
        store: kind,
        reason,
        outbox_depth: outbox.map(|o| o.depth),
        outbox_lag_ms: outbox.map(|o| o.lag_ms),
    };
    (code, axum::Json(body)).into_response()
}
