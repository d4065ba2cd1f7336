//! Liveness: [`Activity`] (request activity, open connections, heartbeats).
//!
//! Requests count as activity (the idle timer stops the server after a quiet
//! period); at most once per [`BEAT_INTERVAL`] a request also wakes the
//! heartbeat task (`crate::server::tasks`), which touches the heartbeat file.
//! `/healthz` says `alive` while the last beat is younger than
//! [`BEAT_EXPIRY`]. Health checks themselves are not activity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::now_ms;

/// At most one heartbeat per this interval.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(60);

/// `/healthz` says `expired` when the last beat is older than this.
pub const BEAT_EXPIRY: Duration = Duration::from_secs(300);

/// Request activity, connections and heartbeats.
pub struct Activity {
    /// The origin of the millisecond counters below.
    start: Instant,
    /// Milliseconds after `start` of the last counted request.
    last_activity: AtomicU64,
    /// Milliseconds after `start` of the last beat.
    last_beat: AtomicU64,
    /// Wall-clock milliseconds of the last beat, for `/healthz`.
    last_beat_wall: AtomicU64,
    /// Connections holding a connection slot (the connection layer counts
    /// them in and out).
    open_connections: AtomicUsize,
    /// Heartbeat writes that failed since the last one that worked.
    beat_failures: AtomicU64,
    /// Wakes the heartbeat task.
    pub(crate) beat: Notify,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            last_beat: AtomicU64::new(0),
            last_beat_wall: AtomicU64::new(now_ms()),
            open_connections: AtomicUsize::new(0),
            beat_failures: AtomicU64::new(0),
            beat: Notify::new(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Counts a request as activity and, at most once per beat interval,
    /// wakes the heartbeat task.
    pub fn record(&self) {
        let now = self.elapsed_ms();
        // A plain load first: under load most requests fall in a millisecond
        // already recorded, and skipping the read-modify-write keeps the
        // cache line shared between cores.
        if self.last_activity.load(Ordering::Relaxed) < now {
            self.last_activity.fetch_max(now, Ordering::Relaxed);
        }
        let last = self.last_beat.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= BEAT_INTERVAL.as_millis() as u64
            && self
                .last_beat
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.last_beat_wall.store(now_ms(), Ordering::Relaxed);
            self.beat.notify_one();
        }
    }

    /// Time since the last counted request (or the start).
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.elapsed_ms()
                .saturating_sub(self.last_activity.load(Ordering::Relaxed)),
        )
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// A connection took a slot.
    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection gave its slot back.
    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn last_beat_ms(&self) -> u64 {
        self.last_beat_wall.load(Ordering::Relaxed)
    }

    /// Heartbeat writes that failed since the last one that worked.
    pub fn beat_failures(&self) -> u64 {
        self.beat_failures.load(Ordering::Relaxed)
    }

    /// Records the outcome of a heartbeat write; returns the failures
    /// before it (for the log line of a recovery).
    pub(crate) fn beat_written(&self, ok: bool) -> u64 {
        if ok {
            self.beat_failures.swap(0, Ordering::Relaxed)
        } else {
            self.beat_failures.fetch_add(1, Ordering::Relaxed)
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: a request is activity. Every route has it but `/healthz`
/// (not activity) and `/auth/verify` (which records its own).
pub async fn track_activity(
    State(activity): State<Arc<Activity>>,
    req: Request,
    next: Next,
) -> Response {
    activity.record();
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beats_at_most_once_a_minute() {
        let a = Activity::new();
        tokio::time::sleep(BEAT_INTERVAL).await;
        a.record();
        // The first record after a minute beats...
        tokio::time::timeout(Duration::from_millis(1), a.beat.notified())
            .await
            .unwrap();
        // ...then nothing until a minute later.
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.record();
        assert!(
            tokio::time::timeout(Duration::from_millis(1), a.beat.notified())
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_secs(31)).await;
        a.record();
        tokio::time::timeout(Duration::from_millis(1), a.beat.notified())
            .await
            .unwrap();
    }
}
