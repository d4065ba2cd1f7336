//! Liveness: [`Activity`] (request activity, open connections, heartbeats)
//! and `GET /healthz`.
//!
//! Requests count as activity (the idle timer stops the server after a quiet
//! period); at most once per [`BEAT_INTERVAL`] a request also wakes the
//! heartbeat task (`crate::server::tasks`), which touches the heartbeat file.
//! `/healthz` says `alive` while the last beat is younger than
//! [`BEAT_EXPIRY`]. Health checks themselves are not activity.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::activity::BEAT_EXPIRY;
use crate::server::state::AppState;
use crate::store::now_ms;

/// The body of a `/healthz` answer.
#[derive(Serialize)]
struct Health {
    /// `alive` or `expired`.
    status: &'static str,
    /// Wall-clock milliseconds of the last heartbeat.
    last_heartbeat: u64,
}

/// `GET /healthz`: no auth, not activity.
pub async fn healthz(State(state): State<AppState>) -> Response {
    health(&state)
}

/// The `/healthz` answer.
pub fn health(state: &AppState) -> Response {
    let last = state.activity.last_beat_ms();
    let alive = now_ms().saturating_sub(last) < BEAT_EXPIRY.as_millis() as u64;
    axum::Json(Health {
        status: if alive { "alive" } else { "expired" },
        last_heartbeat: last,
    })
    .into_response()
}
