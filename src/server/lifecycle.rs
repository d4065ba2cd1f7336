//! Start, run and stop: [`Server::bind`], [`Server::run`] and the one
//! shutdown path.
//!
//! [`Server::bind`] prepares the data dir (`crate::server::ops::first_start`), opens the
//! store, binds the listener and builds the state; [`Server::run`] starts
//! the background tasks (`crate::server::tasks`), serves connections
//! (`crate::server::conn`) until the shutdown future completes or the idle timer
//! fires, whichever is first (entered once), and then stops everything it
//! owns before it returns:
//!
//! 1. stop accepting (on the redirect listener too, when there is one);
//! 2. drain: let requests in flight (and upgraded streams) finish, up to
//!    `shutdown_grace_secs`, then drop the remaining connections;
//! 3. stop and join the background tasks;
//! 4. record the counts of refused logins not yet recorded, then append
//!    `server.stopped`;
//! 5. drain and stop the writer;
//! 6. close the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, Overrides};
use crate::server::activity::Activity;
use crate::server::conn::Connections;
use crate::server::dispatch::AppDispatch;
use crate::server::error::ServerError;
use crate::server::ops::first_start;
use crate::server::ops::reload::Reloader;
use crate::server::password::Hasher;
use crate::server::redirect::RedirectDispatch;
use crate::server::state::AppState;
use crate::server::tasks::Tasks;
use crate::store::{Backend, BackendConfig, BackendTask, EventKind, NewEvent};
use crate::tls::Tls;

/// Why [`Server::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future completed (a signal, or a test dropping its server).
    Shutdown,
    /// No activity and no connections for the idle timeout.
    Idle,
}

/// A bound, ready server.
pub struct Server {
    /// Everything the handlers share.
    state: AppState,
    /// Bound, not yet accepting.
    listener: TcpListener,
    /// `[tls] http_redirect_bind`: plain HTTP, redirected to https.
    redirect: Option<TcpListener>,
    /// The store's writer, stopped last but one (before the store closes).
    store_task: BackendTask,
    /// The start's overrides, for reloads.
    overrides: Overrides,
}

impl Server {
    /// Loads nothing itself: takes a loaded config (and the overrides, for
    /// reloads), creates the first admin when there are no users, opens the
    /// store and binds the listener.
    pub async fn bind(config: Config, overrides: Overrides) -> Result<Server, ServerError> {
        let backend = config.backend_config();
        Self::bind_to(config, overrides, backend).await
    }

    /// [`Server::bind`] on the store `backend` instead of the one the
    /// config names (tests run the server on a store that answers no read
    /// on the spot, as a network store's cache miss).
    pub async fn bind_to(
        config: Config,
        overrides: Overrides,
        backend: BackendConfig,
    ) -> Result<Server, ServerError> {
        let config = first_start::prepare(config, &overrides)?;
        // First: a key file other users can read stops the start before
        // anything is opened or bound.
        let secrets = crate::identity::secret_box::SecretBox::open_or_create(&config.data_dir)?;
        let backend = backend.with_key_fingerprint(secrets.fingerprint());
        let (store, store_task) = Backend::connect(&backend).await?;
        first_start::warn_if_shared(&config.db_path());
        if let Some(db) = store.file() {
            crate::server::ops::admin_stream::remove_abandoned_snapshots(db);
        }
        // An unreadable certificate stops the start before the listener is bound.
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(Tls::new(t, &config.data_dir)?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let redirect = match config.tls.as_ref().and_then(|t| t.http_redirect_bind) {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let l = &config.limits;
        let hasher = Hasher::new(l.hash_workers, l.hash_queue, &config.argon2)?;
        let state = AppState::new(
            config,
            store,
            hasher,
            Arc::new(Activity::new()),
            secrets,
            tls,
        );
        // The signing keys are made (or checked) before the first request,
        // so that a key sealed with another secrets.key stops the start.
        if !state.policy().clients().is_empty() {
            crate::oidc::provider::load_or_make(&state.store, &state.secrets)
                .await
                .map_err(|e| ServerError::Oidc(e.to_string()))?;
        }
        Ok(Server {
            state,
            listener,
            redirect,
            store_task,
            overrides,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The plain-HTTP listener's address (`[tls] http_redirect_bind`).
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that reloads the users, as SIGHUP does.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(&self.state, self.overrides.clone())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes or the idle timeout fires, then
    /// stops everything it owns (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Exit, ServerError> {
        let reloader = self.reloader();
        let Server {
            state,
            listener,
            redirect,
            store_task,
            overrides: _,
        } = self;
        let cfg = &state.config;
        let tasks = Tasks::start(&state, reloader);
        crate::server::guard::audit(
            &state,
            NewEvent::now(EventKind::ServerStarted).detail("bind", cfg.bind.to_string()),
        )
        .await;
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            tls = state.tls.is_some(),
            "gatehouse listening"
        );

        let mut conns = Connections::new(&state, AppDispatch::new(state.clone()));
        if let Some(tls) = &state.tls {
            conns = conns.with_tls(tls.acceptor());
        }
        // The redirect listener stops accepting with the main one.
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let mut redirects = redirect.map(|l| {
            let tls_port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
            tracing::info!(
                addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                "redirecting plain HTTP to https"
            );
            let d = RedirectDispatch::new(cfg, state.tls.as_deref(), tls_port);
            (l, Connections::new(&state, d))
        });
        let main = async {
            let exit = conns
                .accept_until(&listener, async {
                    tokio::select! {
                        _ = shutdown => Exit::Shutdown,
                        _ = tasks.idle() => Exit::Idle,
                    }
                })
                .await;
            let _ = stopping.send(true);
            exit
        };
        let plain = async {
            if let Some((l, c)) = &mut redirects {
                let mut stopped = stopped;
                c.accept_until(l, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            }
        };
        let (exit, ()) = tokio::join!(main, plain);
        drop(listener);
        tracing::info!(reason = ?exit, "stopping: no new connections");
        let grace = cfg.shutdown_grace;
        match redirects {
            Some((l, c)) => {
                drop(l);
                tokio::join!(conns.drain(grace), c.drain(grace));
            }
            None => conns.drain(grace).await,
        }
        tasks.stop().await;

        // Every connection and task is done: no refusal can be counted after
        // this, so every count still owed is recorded now.
        crate::server::guard::rejections::record(&state.store, state.rejections.take_all()).await;
        crate::server::guard::audit(
            &state,
            NewEvent::now(EventKind::ServerStopped)
                .detail("reason", format!("{exit:?}").to_lowercase()),
        )
        .await;
        let store = state.store.clone();
        drop(state);
        if let Err(e) = store_task.shutdown().await {
            tracing::error!(error = %e, "writer shutdown failed");
        }
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "database not closed cleanly"),
            Err(e) => tracing::error!(error = %e, "closing the database failed"),
        }
        tracing::info!("gatehouse stopped");
        Ok(exit)
    }
}
