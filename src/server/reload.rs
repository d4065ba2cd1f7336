//! Reloading the users: [`Reloader`] (used by the SIGHUP task and by
//! tests) and the SIGHUP task the server runs among its background tasks
//! (`super::tasks`).
//!
//! A reload re-reads the config file and swaps the policy (the users)
//! whole ([`AppState::replace_policy`]); other settings take effect at the
//! next start. A failed reload keeps the previous policy.

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::{AppState, Inner};
use crate::config::{Config, ConfigError, Overrides};
use crate::store::{EventKind, NewEvent};

/// Re-reads the users from the config file. Holds the state weakly, so it
/// never keeps the database open past shutdown.
#[derive(Clone)]
pub struct Reloader {
    /// The running server's state; gone once the server has stopped.
    state: Weak<Inner>,
    /// The overrides the server was started with, so that a reload reads
    /// the same file with the same precedence.
    overrides: Overrides,
}

impl Reloader {
    pub(super) fn new(state: &AppState, overrides: Overrides) -> Self {
        Reloader {
            state: Arc::downgrade(&state.inner),
            overrides,
        }
    }

    /// Reloads users. On error the old users stay and the error is returned
    /// (and logged). Other settings take effect at the next start.
    pub async fn reload(&self) -> Result<usize, ConfigError> {
        let Some(inner) = self.state.upgrade() else {
            return Ok(0);
        };
        let state = AppState { inner };
        match Config::load(&self.overrides) {
            Ok(new) => {
                let n = new.policy().len();
                state.replace_policy(new.policy().clone()).await;
                tracing::info!(users = n, path = %new.path.display(), "config reloaded");
                super::login::audit(
                    &state,
                    NewEvent::now(EventKind::ConfigReloaded).detail("users", n.to_string()),
                )
                .await;
                Ok(n)
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the previous users");
                Err(e)
            }
        }
    }
}

/// Reloads the users on every SIGHUP until `stop` changes. A reload that
/// has begun runs to its end before the task stops: its revocations must
/// reach the writer, which stops only after every task is joined.
pub(super) async fn reload_on_hangup(reloader: Reloader, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; users reload only at restart");
            return;
        }
    };
    loop {
        tokio::select! {
            r = hup.recv() => if r.is_none() { return },
            _ = stop.changed() => return,
        }
        let _ = reloader.reload().await;
    }
}
