//! How a node's shared store is doing, for `/healthz`:
//!
//! - **unavailable** when Redis does not answer: the node cannot check a
//!   session, so a load balancer should take it out (`/healthz` answers
//!   503);
//! - **degraded** when PostgreSQL does not answer, or the chain lags the
//!   outbox by more than [`LAG_DEGRADED_MS`]: sign-ins and revocations go
//!   on and their events wait in the outbox, so the node stays in (200),
//!   with the reason;
//! - **ok** otherwise.
//!
//! Invariant: however often `/healthz` is asked, a node probes the
//! services at most once per [`PROBE_EVERY`]: callers in between share the
//! last answer, and callers during a probe wait for it (one probe in
//! flight), so a flood of health checks cannot flood Redis or take
//! PostgreSQL connections from the chainer.

use std::time::{Duration, Instant};

use crate::store::distributed::{Distributed, OutboxStatus};

/// Longest wait for each service's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe's answer is reused for this long.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// An outbox whose oldest entry has waited longer than this makes the node
/// degraded: the audit trail is behind.
pub const LAG_DEGRADED_MS: u64 = 30_000;

/// The store's state as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreState {
    Ok,
    /// Serving, with the audit trail behind; the reason.
    Degraded(String),
    /// Not serving; the reason.
    Unavailable(String),
}

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub state: StoreState,
    /// The outbox, when Redis answered.
    pub outbox: Option<OutboxStatus>,
}

/// The last probe, shared by the callers of [`Distributed::health`].
#[derive(Debug, Default)]
pub(super) struct Probes(tokio::sync::Mutex<Option<(Instant, StoreHealth)>>);

impl Distributed {
    /// The store's health, probed at most once per [`PROBE_EVERY`].
    pub async fn health(&self) -> StoreHealth {
        let mut last = self.probes.0.lock().await;
        if let Some((at, h)) = last.as_ref()
            && at.elapsed() < PROBE_EVERY
        {
            return h.clone();
        }
        let h = self.probe().await;
        *last = Some((Instant::now(), h.clone()));
        h
    }

    async fn probe(&self) -> StoreHealth {
        let now = crate::domain::now_ms();
        let outbox = match tokio::time::timeout(PROBE_TIMEOUT, self.outbox_status(now)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return unavailable(format!("Redis ({}) fails: {e}", self.redis.name())),
            Err(_) => {
                return unavailable(format!(
                    "Redis ({}) did not answer within {} s",
                    self.redis.name(),
                    PROBE_TIMEOUT.as_secs()
                ));
            }
        };
        let pg = match tokio::time::timeout(PROBE_TIMEOUT, self.audit.ping()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        let state = match pg {
            Err(e) => StoreState::Degraded(format!(
                "PostgreSQL ({}) fails: {e}; audit events wait in the outbox ({} now)",
                self.audit.name(),
                outbox.depth
            )),
            Ok(()) => lag_state(&outbox),
        };
        StoreHealth {
            state,
            outbox: Some(outbox),
        }
    }
}

/// Degraded when the oldest waiting event is older than [`LAG_DEGRADED_MS`].
fn lag_state(o: &OutboxStatus) -> StoreState {
    if o.lag_ms > LAG_DEGRADED_MS {
        StoreState::Degraded(format!(
            "the audit chain is {} s behind ({} events wait in the outbox)",
            o.lag_ms / 1000,
            o.depth
        ))
    } else {
        StoreState::Ok
    }
}

fn unavailable(reason: String) -> StoreHealth {
    StoreHealth {
        state: StoreState::Unavailable(reason),
        outbox: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_far_behind_is_degraded_and_says_by_how_much() {
        let fresh = OutboxStatus {
            depth: 3,
            lag_ms: 200,
        };
        assert_eq!(lag_state(&fresh), StoreState::Ok);
        let behind = OutboxStatus {
            depth: 12_000,
            lag_ms: 95_000,
        };
        let StoreState::Degraded(why) = lag_state(&behind) else {
            panic!("not degraded");
        };
        assert!(
            why.contains("95 s behind") && why.contains("12000 events"),
            "{why}"
        );
    }
}
