//! SIGINT or SIGTERM, the two signals that ask a process to stop, received
//! as one: `gatehouse serve` shuts down on the first and exits at the
//! second, `auditctl tail` stops following, `auditctl export` removes its
//! partial file.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, received as one.
pub struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    /// Installs the handlers; needs a Tokio runtime with I/O enabled. From
    /// then on these signals no longer end the process by themselves.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Completes at the next SIGINT or SIGTERM. Cancel-safe: dropped by a
    /// `select!` for another branch, it loses no signal.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
