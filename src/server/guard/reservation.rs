//! An attempt's place under the failure limit, as a handler holds it: the
//! store's [`Lease`] with the state it came from, settled once by
//! [`Reservation::fail`] or [`Reservation::succeed`], and released
//! uncounted when dropped unsettled (the pool was busy, the request was
//! cancelled). Releasing never waits, so it can run in `Drop`.

use crate::server::state::AppState;
use crate::store::{AtLimit, BanSubject, Lease, RegulationStore, StoreError, now_ms};

/// One reserved attempt.
#[must_use = "a reservation is settled by fail or succeed, or released when dropped"]
pub struct Reservation<'s> {
    state: &'s AppState,
    /// `None` once settled.
    lease: Option<Lease>,
}

impl<'s> Reservation<'s> {
    /// Reserves one attempt against each of `subjects` under the limits of
    /// `[regulation]`; `Ok(Err(AtLimit))` when a subject is at the limit.
    pub async fn take(
        state: &'s AppState,
        subjects: &[BanSubject],
        configured: bool,
        now: u64,
    ) -> Result<Result<Reservation<'s>, AtLimit>, StoreError> {
        let limits = &state.config.regulation;
        Ok(state
            .store
            .reserve(limits, subjects, configured, now)
            .await?
            .map(|lease| Reservation {
                state,
                lease: Some(lease),
            }))
    }

    /// The attempt failed: counted against every subject. Returns the
    /// subjects that reached the limit, with the end of their ban. A store
    /// that cannot count it is logged, and no ban comes of this failure.
    pub async fn fail(mut self, now: u64) -> Vec<(BanSubject, u64)> {
        let Some(lease) = self.lease.take() else {
            return Vec::new();
        };
        let limits = &self.state.config.regulation;
        self.state
            .store
            .fail(limits, lease, now)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "counting a failed attempt failed");
                Vec::new()
            })
    }

    /// The attempt succeeded: the user name's failures are forgotten (see
    /// [`RegulationStore::succeed`] for which attempts are successes).
    pub async fn succeed(mut self, now: u64) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let limits = &self.state.config.regulation;
        if let Err(e) = self.state.store.succeed(limits, lease, now).await {
            tracing::error!(error = %e, "settling a successful attempt failed");
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // Whatever the time, releasing only lowers a count; `now` only
            // decides whether an emptied counter may go.
            self.state
                .store
                .release(&self.state.config.regulation, lease, now_ms());
        }
    }
}
