//! The server's background tasks, owned by one `Tasks` set: the expiry
//! sweeper, audit retention, the heartbeat, the idle timer, the admin
//! socket, the SIGHUP reload and the ACME renewal (`crate::tls::acme`). `Server::run` starts the set before it
//! accepts connections and stops and joins it after the connections have
//! drained and before the writer and the store close; no task outlives the
//! set.
//!
//! Each task ends when the set's stop signal changes. A task failing never
//! stops the server: errors are logged and retried on the next tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::RetentionConfig;
use crate::server::activity::Activity;
use crate::server::ops::first_start::write_private_unsynced;
use crate::server::ops::reload::{Reloader, reload_on_hangup};
use crate::server::state::AppState;
use crate::store::{SessionStore, now_ms};

/// File touched on each beat.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// The running background tasks and their stop signal.
pub(crate) struct Tasks {
    /// Set to `true` once, to stop every task.
    stop: watch::Sender<bool>,
    /// Every task; joined by [`Tasks::stop`].
    set: JoinSet<()>,
    /// Notified once by the idle timer when the idle timeout is reached.
    idle: Arc<Notify>,
}

impl Tasks {
    /// Starts every background task the config asks for.
    pub(crate) fn start(state: &AppState, reloader: Reloader) -> Tasks {
        let cfg = &state.config;
        let (stop, stop_rx) = watch::channel(false);
        let mut set = JoinSet::new();
        set.spawn(sweeper(state.clone(), stop_rx.clone()));
        if state.oidc.issuer.is_some() {
            set.spawn(crate::server::oidc::logout::sender(
                state.clone(),
                stop_rx.clone(),
            ));
        }
        if let Some(r) = &cfg.retention {
            set.spawn(retention(state.clone(), r.clone(), stop_rx.clone()));
        }
        set.spawn(heartbeat(
            state.activity.clone(),
            cfg.data_dir.join(HEARTBEAT_FILE),
            stop_rx.clone(),
        ));
        match crate::server::ops::admin::bind(&cfg.data_dir) {
            Ok((l, path)) => {
                set.spawn(crate::server::ops::admin::serve(
                    state.clone(),
                    reloader.clone(),
                    l,
                    path,
                    stop_rx.clone(),
                ));
            }
            // The server works without it; `bans lift` then needs a stopped server.
            Err(e) => tracing::warn!(error = %e, "admin socket unavailable"),
        }
        set.spawn(reload_on_hangup(reloader, stop_rx.clone()));
        if let Some((acme, due)) = state.tls.as_ref().and_then(|t| t.acme()) {
            let mut stop = stop_rx.clone();
            set.spawn(acme.run(due, async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        let idle = Arc::new(Notify::new());
        if let Some(timeout) = cfg.idle_timeout {
            set.spawn(idle_timer(
                state.activity.clone(),
                timeout,
                idle.clone(),
                stop_rx,
            ));
        }
        Tasks { stop, set, idle }
    }

    /// Completes once the idle timeout is reached (never without one).
    pub(crate) async fn idle(&self) {
        self.idle.notified().await
    }

    /// Stops every task and waits for each to end.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while let Some(r) = self.set.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "background task failed");
            }
        }
    }
}

/// Removes expired sessions and bans each tick, in batches of 1000 until
/// none remain, and records the counts of refused logins whose aggregation
/// window has ended (`rejections`). Errors are logged and retried next tick.
async fn sweeper(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.config.session.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        crate::server::guard::rejections::record(
            &state.store,
            state.rejections.take_ended(now_ms()),
        )
        .await;
        loop {
            match state.store.sweep(now_ms(), 1_000).await {
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

/// Removes audit events older than `r.keep` (archiving them first unless
/// disabled) at start and then every `r.interval`. Each batch is its own
/// short write, so logins never wait behind a long transaction. Errors are
/// logged and retried next tick.
async fn retention(state: AppState, r: RetentionConfig, mut stop: watch::Receiver<bool>) {
    let keep = r.keep;
    let archive = r.archive.then(|| state.config.data_dir.join("archive"));
    let mut tick = tokio::time::interval(r.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let pass = crate::retention::run_retention(
            &state.store,
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
/// A failed write is logged, never fatal; the next beat tries again.
async fn heartbeat(activity: Arc<Activity>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    loop {
        let now = now_ms().to_string();
        match write_private_unsynced(&path, now.as_bytes()).await {
            Ok(()) => {
                let failed = activity.beat_written(true);
                if failed > 0 {
                    tracing::info!(path = %path.display(), failed, "heartbeat written again");
                }
            }
            Err(e) => {
                let failed = activity.beat_written(false) + 1;
                tracing::warn!(error = %e, path = %path.display(), failed, "heartbeat write failed");
            }
        }
        tokio::select! {
            _ = activity.beat.notified() => {}
            _ = stop.changed() => return,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::activity::BEAT_INTERVAL;

    #[tokio::test(start_paused = true)]
    async fn idle_timer_waits_for_quiet_and_closed_connections() {
        let activity = Arc::new(Activity::new());
        let idle = Arc::new(Notify::new());
        let (_stop_tx, stop_rx) = watch::channel(false);
        activity.connection_opened();
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
        activity.connection_closed();
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

    /// Waits, a bounded number of times, for `cond`. Real file writes run
    /// on the blocking pool, outside the paused clock: each round gives
    /// them a moment of real time and the heartbeat task a turn.
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
            tokio::task::yield_now().await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_is_written_again_once_the_path_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HEARTBEAT_FILE);
        let activity = Arc::new(Activity::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(heartbeat(activity.clone(), path.clone(), stop_rx));
        let beat = || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        until("the first beat", || beat().is_some()).await;
        // The path turns into a directory: the next beat fails.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        tokio::time::advance(BEAT_INTERVAL).await;
        activity.record();
        until("a failed beat", || activity.beat_failures() == 1).await;
        assert!(path.is_dir(), "a failed beat leaves the path alone");
        // The path works again: the next beat writes the file.
        std::fs::remove_dir(&path).unwrap();
        tokio::time::advance(BEAT_INTERVAL).await;
        activity.record();
        until("a beat after the failure", || {
            activity.beat_failures() == 0 && beat().is_some()
        })
        .await;
        assert!(!task.is_finished());
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
