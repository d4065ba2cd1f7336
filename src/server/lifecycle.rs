//! Start, run and stop: the accept loop, the background tasks and the one
//! shutdown path.
//!
//! [`Server::bind`] opens the store, binds the listener and prepares the
//! state; [`Server::run`] serves until the shutdown future completes or the
//! idle timer fires, whichever is first (entered once). It owns every
//! background task (writer, sweeper, heartbeat, idle timer) and every
//! connection, and ends them all before it returns:
//!
//! 1. stop accepting;
//! 2. let in-flight requests finish up to the grace period, then drop the
//!    remaining connections;
//! 3. stop the background tasks;
//! 4. record the counts of refused logins not yet recorded, then append
//!    `server.stopped`;
//! 5. drain and stop the writer;
//! 6. close the database.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::Service;

use super::password::{self, Hasher};
use super::{AppState, Inner};
use crate::config::{self, Config, ConfigError, Overrides, UserEntry};
use crate::store::{
    EventKind, NewEvent, OpenError, Store, StoreOptions, Writer, WriterConfig, WriterTask,
    client_network, now_ms,
};

/// At most one heartbeat per this interval.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(60);
/// `/healthz` says `expired` when the last beat is older than this.
pub const BEAT_EXPIRY: Duration = Duration::from_secs(300);
/// File touched on each beat.
pub const HEARTBEAT_FILE: &str = "heartbeat";
/// File holding the generated admin password on first start.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password hashing: {0}")]
    Hash(#[from] password::HashError),
}

/// Why [`Server::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future completed (a signal, or a test dropping its server).
    Shutdown,
    /// No activity and no connections for the idle timeout.
    Idle,
}

/// Request activity, connections and heartbeats.
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last counted request.
    last_activity: AtomicU64,
    /// Milliseconds after `start` of the last beat.
    last_beat: AtomicU64,
    /// Wall-clock milliseconds of the last beat, for `/healthz`.
    last_beat_wall: AtomicU64,
    open_connections: AtomicUsize,
    /// Wakes the heartbeat task.
    beat: Notify,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            last_beat: AtomicU64::new(0),
            last_beat_wall: AtomicU64::new(now_ms()),
            open_connections: AtomicUsize::new(0),
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

    pub fn last_beat_ms(&self) -> u64 {
        self.last_beat_wall.load(Ordering::Relaxed)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: a request is activity. Every route has it but `/healthz`
/// (not activity) and `/auth/verify` (which records its own).
pub async fn track_activity(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.activity.record();
    next.run(req).await
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
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

/// Re-reads the users from the config file. Holds the state weakly, so it
/// never keeps the database open past shutdown.
#[derive(Clone)]
pub struct Reloader {
    state: Weak<Inner>,
    overrides: Overrides,
}

impl Reloader {
    /// Reloads users. On error the old users stay and the error is returned
    /// (and logged). Other settings take effect at the next start.
    pub async fn reload(&self) -> Result<usize, ConfigError> {
        let Some(inner) = self.state.upgrade() else {
            return Ok(0);
        };
        let state = AppState { inner };
        match Config::load(&self.overrides) {
            Ok(new) => {
                let n = new.users.len();
                state.replace_users(new.users.clone()).await;
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

/// A bound, ready server.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    writer_task: WriterTask,
    overrides: Overrides,
}

impl Server {
    /// Loads nothing itself: takes a loaded config (and the overrides, for
    /// reloads), creates the first admin when there are no users, opens the
    /// store and binds the listener.
    pub async fn bind(mut config: Config, overrides: Overrides) -> Result<Server, ServerError> {
        create_private_dir(&config.data_dir)?;
        if config.users.is_empty() {
            config = create_first_admin(config, &overrides)?;
        }
        let db = config.db_path();
        let opts = StoreOptions {
            cache_bytes: config.file.cache_mib.saturating_mul(1024 * 1024),
        };
        let store = tokio::task::spawn_blocking(move || Store::open(&db, &opts))
            .await
            .map_err(|e| ServerError::Io {
                path: config.db_path(),
                source: std::io::Error::other(e.to_string()),
            })??;
        warn_if_shared(&config.db_path());
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let l = &config.file.limits;
        let hasher = Hasher::new(l.hash_workers, l.hash_queue, &config.file.argon2)?;
        let (writer, writer_task) = Writer::spawn(store.clone(), WriterConfig::default());
        let state = AppState::new(config, store, writer, hasher, Arc::new(Activity::new()));
        Ok(Server {
            state,
            listener,
            writer_task,
            overrides,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: Arc::downgrade(&self.state.inner),
            overrides: self.overrides.clone(),
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes or the idle timeout fires, then
    /// stops everything it owns (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Exit, ServerError> {
        let Server {
            state,
            listener,
            writer_task,
            overrides: _,
        } = self;
        let cfg = state.config.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(sweeper(state.clone(), stop_rx.clone()));
        if let Some(days) = cfg.file.audit_retention_days {
            tasks.spawn(retention(state.clone(), days, stop_rx.clone()));
        }
        tasks.spawn(heartbeat(
            state.activity.clone(),
            cfg.data_dir.join(HEARTBEAT_FILE),
            stop_rx.clone(),
        ));
        match super::admin::bind(&cfg.data_dir) {
            Ok((l, path)) => {
                tasks.spawn(super::admin::serve(state.clone(), l, path, stop_rx.clone()));
            }
            // The server works without it; `bans lift` then needs a stopped server.
            Err(e) => tracing::warn!(error = %e, "admin socket unavailable"),
        }
        let idle = Arc::new(Notify::new());
        if cfg.file.idle_timeout_secs > 0 {
            tasks.spawn(idle_timer(
                state.activity.clone(),
                Duration::from_secs(cfg.file.idle_timeout_secs),
                idle.clone(),
                stop_rx.clone(),
            ));
        }
        super::login::audit(
            &state,
            NewEvent::now(EventKind::ServerStarted).detail("bind", cfg.bind.to_string()),
        )
        .await;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "gatehouse listening");

        let l = &cfg.file.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No hyper header timer: it arms and clears a timer for every request
        // head. The same bound comes once per connection from `ConnIdle`
        // below: a connection with no request in progress for
        // `header_read_timeout_secs` (counted from the connection's start or
        // from the end of its last request) is closed, so a request head
        // must arrive whole within that time.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(l.header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(l.header_bytes as u32)
            .max_concurrent_streams(64);
        let builder = Arc::new(builder);
        let router = super::router(state.clone());
        let graceful = GracefulShutdown::new();
        let conn_limit = Arc::new(Semaphore::new(l.max_connections));
        let per_ip = PerIp::new(l.max_connections_per_ip);
        let mut conns: JoinSet<()> = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);

        let exit = loop {
            while conns.try_join_next().is_some() {}
            // Wait for a connection slot first: when full, clients wait in the
            // kernel's backlog instead of in our memory.
            let permit = tokio::select! {
                p = conn_limit.clone().acquire_owned() => p.expect("never closed"),
                _ = &mut shutdown => break Exit::Shutdown,
                _ = idle.notified() => break Exit::Idle,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break Exit::Shutdown,
                _ = idle.notified() => break Exit::Idle,
            };
            // The per-client cap: one client must not take every slot.
            // Trusted proxies carry many clients and are not counted here
            // (they must limit each of their clients themselves).
            let peer_ip = config::canonical_ip(peer.ip());
            let per_ip_slot = if cfg.is_trusted_proxy(peer_ip) {
                None
            } else {
                match per_ip.enter(peer_ip) {
                    Some(slot) => Some(slot),
                    None => {
                        state.metrics.conn_refused_per_ip.inc();
                        tracing::debug!(%peer, "too many connections from this client; closing");
                        drop(stream);
                        continue;
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let activity = state.activity.clone();
            activity.open_connections.fetch_add(1, Ordering::Relaxed);
            let conn_idle = Arc::new(ConnIdle::new());
            let in_flight = conn_idle.clone();
            let conn_state = state.clone();
            let mut conn_router = router.clone();
            let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                let routed = match super::answer_hot(&conn_state, &req) {
                    // Answered within this call, which runs inside the
                    // connection's own task: the idle check never sees it in
                    // progress, so marking the activity once is enough.
                    Some(res) => {
                        in_flight.mark();
                        Ok(res)
                    }
                    None => {
                        // Held from the request's dispatch until its response.
                        let busy = InFlight::enter(in_flight.clone());
                        req.extensions_mut().insert(ConnectInfo(peer));
                        // HTTP/2 names the site in `:authority`, not `Host`.
                        super::auth::fill_host(&mut req);
                        // The router is always ready (it has no back-pressure).
                        Err((busy, conn_router.call(req)))
                    }
                };
                async move {
                    match routed {
                        Ok(res) => Ok(res),
                        Err((busy, fut)) => {
                            let res = fut.await;
                            drop(busy);
                            res
                        }
                    }
                }
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let head_timeout = Duration::from_secs(l.header_read_timeout_secs);
            conns.spawn(async move {
                let _guard = ConnGuard {
                    activity,
                    _permit: permit,
                    _per_ip: per_ip_slot,
                };
                // The HTTP version is known only once the first bytes are in;
                // a client that connects and sends nothing would hold its
                // connection slot forever (and enough of them, every slot).
                // So the first bytes get the head deadline as well.
                if !first_bytes(&stream, head_timeout).await {
                    tracing::debug!(%peer, "no request head in time; closing");
                    return;
                }
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                // The head deadline of both versions: any connection without
                // a request in progress for `head_timeout` is closed, whether
                // it is idle between requests, dribbling an HTTP/1 request
                // head (a request counts as in progress only once its head
                // is parsed) or holding an HTTP/2 connection with no stream
                // open. A request in progress is bounded by the request
                // timeout instead.
                tokio::select! {
                    r = watcher.watch(conn) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    }
                    _ = conn_idle.expired(head_timeout) => {
                        tracing::debug!(%peer, "connection idle too long; closing");
                    }
                }
            });
        };
        drop(listener);
        tracing::info!(reason = ?exit, "stopping: no new connections");

        let grace = Duration::from_secs(cfg.file.shutdown_grace_secs);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                open = conns.len(),
                "grace period over; closing remaining connections"
            );
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        drop(router);

        let _ = stop_tx.send(true);
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "background task failed");
            }
        }

        // Every connection and task is done: no refusal can be counted after
        // this, so every count still owed is recorded now.
        super::rejections::record(&state, state.rejections.take_all()).await;
        super::login::audit(
            &state,
            NewEvent::now(EventKind::ServerStopped)
                .detail("reason", format!("{exit:?}").to_lowercase()),
        )
        .await;
        let store = state.store.clone();
        drop(state);
        if let Err(e) = writer_task.shutdown().await {
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

/// Requests in progress on one connection, and when the last one ended.
struct ConnIdle {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when a request last began or ended.
    last_ms: AtomicU64,
}

impl ConnIdle {
    fn new() -> Self {
        ConnIdle {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Completes once no request has been in progress for `limit`.
    async fn expired(&self, limit: Duration) {
        loop {
            let idle_for = Duration::from_millis(
                (self.start.elapsed().as_millis() as u64)
                    .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
            );
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(limit).await;
            } else if idle_for >= limit {
                return;
            } else {
                tokio::time::sleep(limit - idle_for).await;
            }
        }
    }
}

/// Marks a request in progress on its connection until dropped.
struct InFlight(Arc<ConnIdle>);

impl InFlight {
    fn enter(c: Arc<ConnIdle>) -> Self {
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        c.mark();
        InFlight(c)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.mark();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits until the client has sent enough for hyper to tell HTTP/1 from
/// HTTP/2 (the first bytes, or all 24 of an HTTP/2 preface), for at most
/// `limit`. False when the time runs out or the client closes first.
async fn first_bytes(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        if n >= H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] {
            return true;
        }
        // Part of an HTTP/2 preface: `peek` would return the same bytes at
        // once, so wait a little for the rest (still within the deadline).
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(10)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// Counts a connection open for as long as its task lives, and holds its
/// slots (the global one, and its client's when the client is counted).
struct ConnGuard {
    activity: Arc<Activity>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _per_ip: Option<PerIpSlot>,
}

/// Open connections per client network (an IPv4 address, an IPv6 /64: see
/// [`client_network`]), for `limits.max_connections_per_ip`.
///
/// Bounded: an entry exists only while its count is above zero (the last
/// [`PerIpSlot`] removes it), and every counted connection also holds one
/// of the `max_connections` global slots, so there are never more entries
/// than that.
struct PerIp {
    cap: usize,
    counts: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerIp {
            cap,
            counts: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when its network
    /// already has `cap` open.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let key = client_network(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.cap {
            // `cap` is at least 1 (validated), so a refused network already has
            // connections open and no entry is left at zero.
            return None;
        }
        *n += 1;
        Some(PerIpSlot {
            map: self.clone(),
            key,
        })
    }

    /// Client networks with open connections.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One counted connection of a client network; uncounts it when dropped.
struct PerIpSlot {
    map: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut counts = self.map.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.activity
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Removes expired sessions and bans each tick, in batches of 1000 until
/// none remain, and records the counts of refused logins whose aggregation
/// window has ended (`rejections`). Errors are logged and retried next tick.
async fn sweeper(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(state.config.file.session.sweep_interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        super::rejections::record(&state, state.rejections.take_ended(now_ms())).await;
        loop {
            match state.writer.sweep(now_ms(), 1_000).await {
                Ok(r) if r.more && !*stop.borrow() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed; retrying next tick");
                    break;
                }
            }
        }
    }
}

/// Removes audit events older than `days` (archiving them first unless
/// disabled) at start and then every `retention_interval_secs`. Each batch is
/// its own short write, so logins never wait behind a long transaction.
/// Errors are logged and retried next tick.
async fn retention(state: AppState, days: u64, mut stop: watch::Receiver<bool>) {
    let cfg = &state.config.file;
    let keep = Duration::from_secs(days.saturating_mul(86_400));
    let archive = cfg
        .archive_pruned_events
        .then(|| state.config.data_dir.join("archive"));
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.retention_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let pass = crate::retention::run_retention_pass(
            &state.store,
            &state.writer,
            archive.as_deref(),
            keep,
            crate::store::now_us(),
        );
        // A pass stops between batches when the server stops.
        tokio::select! {
            r = pass => match r {
                Ok(r) if r.pruned > 0 => tracing::info!(pruned = r.pruned, "audit retention pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying next tick"),
            },
            _ = stop.changed() => return,
        }
    }
}

/// Touches the heartbeat file at start and whenever [`Activity`] asks.
/// A failed write is logged, never fatal.
async fn heartbeat(activity: Arc<Activity>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    loop {
        let now = now_ms().to_string();
        if let Err(e) = write_beat(&path, now.as_bytes()).await {
            tracing::warn!(error = %e, path = %path.display(), "heartbeat write failed");
        }
        tokio::select! {
            _ = activity.beat.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Writes the heartbeat file, created owner-only like every file in the data dir.
async fn write_beat(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).await?;
    f.write_all(bytes).await?;
    f.flush().await
}

/// Fires `idle` once when there has been no activity for `timeout` and no
/// connection is open.
async fn idle_timer(
    activity: Arc<Activity>,
    timeout: Duration,
    idle: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let check = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = stop.changed() => return,
        }
        if activity.idle_for() >= timeout && activity.open_connections() == 0 {
            tracing::info!(secs = timeout.as_secs(), "idle timeout reached");
            idle.notify_one();
            return;
        }
    }
}

/// Creates the `admin` user with a random password: its hash goes into the
/// config file, the password into `<data-dir>/admin-password` (mode 0600).
/// The password itself is never logged.
fn create_first_admin(config: Config, overrides: &Overrides) -> Result<Config, ServerError> {
    let password = password::random_password();
    let hash = password::hash_password(&password, &config.file.argon2)?;
    let pw_path = config.data_dir.join(ADMIN_PASSWORD_FILE);
    write_private(&pw_path, format!("{password}\n").as_bytes())?;
    config::append_user(
        &config.path,
        &UserEntry {
            name: "admin".into(),
            password_hash: hash,
            admin: true,
        },
    )?;
    tracing::warn!(
        config = %config.path.display(),
        password_file = %pw_path.display(),
        "no users configured: created user \"admin\"; its password is in the password file"
    );
    // Load again so that what runs is exactly what the file now says.
    let mut ov = overrides.clone();
    ov.config = Some(config.path.clone());
    ov.data_dir = Some(config.data_dir.clone());
    Ok(Config::load(&ov)?)
}

/// Creates the data dir, owner-only, if it does not exist yet (an existing
/// one keeps the mode its owner gave it).
fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| ServerError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Warns when a file made before files were created owner-only (or
/// loosened by hand) can be read by other local users.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "the database can be read by other users; `chmod 600` it"
            );
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let err = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_timer_waits_for_quiet_and_closed_connections() {
        let activity = Arc::new(Activity::new());
        let idle = Arc::new(Notify::new());
        let (_stop_tx, stop_rx) = watch::channel(false);
        activity.open_connections.store(1, Ordering::Relaxed);
        let timer = tokio::spawn(idle_timer(
            activity.clone(),
            Duration::from_secs(60),
            idle.clone(),
            stop_rx,
        ));
        // Quiet, but a connection is open: no exit.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!timer.is_finished());
        // Activity resets the clock.
        activity.open_connections.store(0, Ordering::Relaxed);
        activity.record();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!timer.is_finished());
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert!(timer.is_finished(), "fires once quiet for the timeout");
        // The notification is stored for the accept loop.
        tokio::time::timeout(Duration::from_secs(1), idle.notified())
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timer_ends_on_stop() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let timer = tokio::spawn(idle_timer(
            Arc::new(Activity::new()),
            Duration::from_secs(3600),
            Arc::new(Notify::new()),
            stop_rx,
        ));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), timer)
            .await
            .unwrap()
            .unwrap();
    }

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

    #[test]
    fn per_ip_counts_are_capped_and_cleaned() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.enter(a).unwrap();
        let s2 = p.enter(a).unwrap();
        assert!(p.enter(a).is_none(), "a third from one address");
        // IPv4-mapped is the same client.
        assert!(p.enter("::ffff:192.0.2.1".parse().unwrap()).is_none());
        let s3 = p.enter(b).unwrap();
        assert_eq!(p.tracked(), 2);
        drop(s1);
        let s4 = p.enter(a).unwrap();
        drop((s2, s3, s4));
        assert_eq!(p.tracked(), 0, "entries at zero are removed");
        // A refused attempt leaves nothing behind either.
        let p = PerIp::new(1);
        let held = p.enter(a).unwrap();
        assert!(p.enter(a).is_none());
        drop(held);
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn per_ip_counts_an_ipv6_client_per_64() {
        let p = PerIp::new(2);
        let _x = p.enter("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _y = p.enter("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(p.enter("2001:db8:1:2::abcd".parse().unwrap()).is_none());
        let _z = p.enter("2001:db8:1:3::1".parse().unwrap()).unwrap();
        assert_eq!(p.tracked(), 2);
    }

    #[tokio::test]
    async fn heartbeat_failure_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be written as a file: every beat fails.
        let path = dir.path().to_path_buf();
        let activity = Arc::new(Activity::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(heartbeat(activity.clone(), path, stop_rx));
        activity.beat.notify_one();
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
