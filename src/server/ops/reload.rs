//! Reloading the users and the certificate: [`Reloader`] (used by the
//! SIGHUP task and by tests) and the SIGHUP task the server runs among its
//! background tasks (`crate::server::tasks`).
//!
//! A reload re-reads the config file and swaps the policy (the users and
//! the rules) whole ([`AppState::replace_policy`]); other settings take
//! effect at the next start, and each one that changed is named in the log.
//! A failed reload keeps the previous policy. With `[tls] cert` and `key`
//! it also reads those files again, at the paths the file names now (or,
//! when the file is refused, at those in force): the handshakes that
//! follow present the new certificate, connections already open keep
//! theirs, and a file that cannot be read keeps the certificate in force.
//! SIGHUP and the admin socket's `POST /config/reload` (what `gatehouse
//! users add|remove|passwd` send) reload the same way.

use std::path::Path;
use std::sync::Weak;

use tokio::sync::watch;

use crate::config::{CertSource, Config, ConfigError, Overrides};
use crate::server::state::{AppState, Inner};
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
    pub(crate) fn new(state: &AppState, overrides: Overrides) -> Self {
        Reloader {
            state: state.downgrade(),
            overrides,
        }
    }

    /// Reloads the users and the rules, and the certificate files (see the
    /// module doc). On error the old users and rules stay and the
    /// error is returned (and logged). Other settings take effect at the
    /// next start: each one that changed in the file is logged by name,
    /// and listed in the answer.
    pub async fn reload(&self) -> Result<Reloaded, ConfigError> {
        let Some(state) = AppState::upgrade(&self.state) else {
            return Ok(Reloaded::default());
        };
        let loaded = Config::load(&self.overrides);
        // The certificate does not depend on the file's users: it is read
        // even when the file is refused, then from the paths in force.
        let newer = loaded.as_ref().ok().and_then(cert_files);
        let certificate = reload_certificate(&state, newer);
        let new_paths = certificate.is_some() && newer.is_some();
        match loaded {
            Ok(new) => {
                let mut waiting = state.config.restart_changes(&new);
                if new_paths {
                    // New paths were read by this reload (or, if they
                    // could not be, are tried again by the next one).
                    waiting.retain(|k| k != "tls.cert" && k != "tls.key");
                }
                let done = Reloaded {
                    certificate,
                    // Absolute, so that a client elsewhere can tell which
                    // file this is.
                    path: std::fs::canonicalize(&new.path)
                        .unwrap_or_else(|_| new.path.clone())
                        .display()
                        .to_string(),
                    users: new.policy().len(),
                    rules: new.policy().rules().len(),
                    waiting,
                };
                state.replace_policy(new.policy().clone()).await;
                for setting in &done.waiting {
                    tracing::warn!(setting = %setting, path = %done.path, "setting changed in the config file; it applies at the next start");
                }
                tracing::info!(
                    users = done.users,
                    rules = done.rules,
                    waiting_for_restart = done.waiting.len(),
                    path = %done.path,
                    "config reloaded: users and rules replaced"
                );
                let mut event = NewEvent::now(EventKind::ConfigReloaded)
                    .detail("users", done.users.to_string())
                    .detail("rules", done.rules.to_string());
                if !done.waiting.is_empty() {
                    event = event.detail("restart_needed", done.waiting.join(","));
                }
                if let Some(c) = &done.certificate {
                    event =
                        event.detail("certificate", if c.is_ok() { "reloaded" } else { "kept" });
                }
                crate::server::guard::audit(&state, event).await;
                Ok(done)
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the previous users and rules");
                Err(e)
            }
        }
    }
}

/// The certificate files `config` names, if its certificate comes from
/// files.
fn cert_files(config: &Config) -> Option<(&Path, &Path)> {
    match &config.tls.as_ref()?.certificate {
        CertSource::Files { cert, key } => Some((cert.as_path(), key.as_path())),
        CertSource::Acme(_) => None,
    }
}

/// Reads the certificate files again, when the listener has them: from
/// `newer` when the reloaded config names files, else from the paths in
/// force; logs the outcome. `None`: no certificate files.
fn reload_certificate(
    state: &AppState,
    newer: Option<(&Path, &Path)>,
) -> Option<Result<(), String>> {
    let tls = state.tls.as_ref()?;
    match tls.reload(newer) {
        Ok(false) => None,
        Ok(true) => {
            tracing::info!("TLS certificate reloaded; new connections get it");
            Some(Ok(()))
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS certificate reload failed; keeping the certificate in force");
            Some(Err(e.to_string()))
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The certificate files (`[tls] cert` and `key`): `None` without
    /// them, else whether they were read again or why not (the certificate
    /// in force then stays).
    pub certificate: Option<Result<(), String>>,
    /// The file read.
    pub path: String,
    /// Users and rules now in force.
    pub users: usize,
    pub rules: usize,
    /// Settings that changed in the file and wait for a restart, by file
    /// key (`metrics`, `session.idle_secs`).
    pub waiting: Vec<String>,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        writeln!(
            f,
            "reloaded {}: {} user{}, {} rule{}",
            self.path,
            self.users,
            s(self.users),
            self.rules,
            s(self.rules)
        )?;
        match &self.certificate {
            None => {}
            Some(Ok(())) => writeln!(f, "TLS certificate reloaded")?,
            Some(Err(e)) => writeln!(
                f,
                "TLS certificate not reloaded, the previous one stays: {e}"
            )?,
        }
        for setting in &self.waiting {
            writeln!(f, "changed, applies at the next start: {setting}")?;
        }
        Ok(())
    }
}

/// Reloads the users (and the certificate) on every SIGHUP until `stop` changes. A reload that
/// has begun runs to its end before the task stops: its revocations must
/// reach the writer, which stops only after every task is joined.
pub(crate) async fn reload_on_hangup(reloader: Reloader, mut stop: watch::Receiver<bool>) {
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
