//! [`ConnHandle`]: what a route needs to keep an upgraded stream inside
//! the connection it came from.
//!
//! An HTTP/1 upgrade (a `101` answer, e.g. WebSocket) ends hyper's
//! connection future and hands the socket to whoever awaits
//! `hyper::upgrade::on`. A task the route spawned itself would then hold
//! the socket without the connection's slot and outside the drain. So a
//! route that upgrades must not spawn: it passes the task that serves the
//! upgraded stream to [`ConnHandle::adopt`] (the handle is in the request's
//! extensions) before it answers. The connection's own task then runs it:
//! the stream keeps the connection's slots (global and per client) and
//! counts as a request in flight, the drain signals it
//! ([`ConnHandle::draining`]) and waits for it up to
//! `shutdown_grace_secs`, and after that it is dropped with the
//! connection. HTTP/2 upgrades (extended CONNECT) are adopted the same way
//! and run beside the connection's other streams.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::server::conn::idle::{ConnIdle, InFlight};

/// A task serving an upgraded stream, as the connection's task receives it.
pub(crate) type Adopted = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The connection a request came on; in the extensions of every request
/// that reaches the app.
#[derive(Clone)]
pub struct ConnHandle {
    inner: Arc<Inner>,
}

struct Inner {
    /// To the connection's task, which runs what it receives.
    adopt: mpsc::UnboundedSender<Adopted>,
    /// `true` once the server drains.
    drain: watch::Receiver<bool>,
    /// The connection's requests in flight.
    idle: Arc<ConnIdle>,
}

impl ConnHandle {
    pub(crate) fn new(
        adopt: mpsc::UnboundedSender<Adopted>,
        drain: watch::Receiver<bool>,
        idle: Arc<ConnIdle>,
    ) -> Self {
        ConnHandle {
            inner: Arc::new(Inner { adopt, drain, idle }),
        }
    }

    /// Runs `stream` (the task serving an upgraded stream) as part of this
    /// connection: it holds the connection's slots and keeps the connection
    /// from its idle close until it ends. Call it before answering the
    /// request that upgrades. False when the connection is already gone
    /// (the task is then dropped).
    pub fn adopt(&self, stream: impl Future<Output = ()> + Send + 'static) -> bool {
        let busy = InFlight::enter(self.inner.idle.clone());
        self.inner
            .adopt
            .send(Box::pin(async move {
                let _busy = busy;
                stream.await
            }))
            .is_ok()
    }

    /// Completes once the server has begun to drain: an adopted stream
    /// should then end soon (a WebSocket would send its close frame), as it
    /// is dropped when `shutdown_grace_secs` have passed.
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.drain.clone();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    }
}
