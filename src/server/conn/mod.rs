//! The connection layer: the accept loop, connection slots (global and per
//! client), the per-connection deadline, dispatch to the hot path or the
//! app, upgraded streams and the drain.
//!
//! Rules every connection follows:
//!
//! - it takes a global slot before it is accepted (when all are taken,
//!   clients wait in the kernel's backlog) and a slot of its client's
//!   network unless the peer is a trusted proxy; it holds both until its
//!   task ends, upgraded streams included (`slots`);
//! - it must send its first request head within `header_read_timeout_secs`
//!   of its accept (on a TLS listener the handshake counts in that time,
//!   `tls`), and it is closed once no request has been in flight for that
//!   long (`idle`); a request is in flight from its dispatch until its
//!   response body ends (`body`);
//! - past the accept (and the handshake) it is served the same over any
//!   stream: plain TCP or TLS;
//! - each request goes first to [`Dispatch::answer_hot`], answered on the
//!   spot inside the connection's task, else to [`Dispatch::route`] (the
//!   app);
//! - an upgraded stream runs inside its connection's task
//!   ([`upgrade::ConnHandle::adopt`]);
//! - at shutdown the listener closes, every connection is told to finish
//!   (hyper's graceful shutdown: the request in flight completes, then the
//!   connection closes; adopted streams see [`ConnHandle::draining`]), and
//!   whatever still runs after `shutdown_grace_secs` is dropped
//!   (`Connections::drain`).

mod body;
mod idle;
mod slots;
mod tls;
mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::Response as AppResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::server::conn::body::TrackedBody;
use crate::server::conn::idle::{ConnIdle, InFlight, first_bytes};
use crate::server::conn::slots::{ConnSlot, PerIp};
use crate::server::conn::upgrade::Adopted;
use crate::server::state::AppState;

pub use crate::server::conn::upgrade::ConnHandle;

/// Where a connection's requests go: the hot path, then the app.
pub trait Dispatch: Clone + Send + Sync + 'static {
    /// The app's answer to one request.
    type Future: Future<Output = Result<AppResponse, Infallible>> + Send + 'static;

    /// The answer to a hot request, made on the spot inside the
    /// connection's task (so it must not wait on anything), or `None` for
    /// every other request. Its body must be whole in memory: a hot answer
    /// is never in flight. `peer` is the connection's remote address (hot
    /// requests carry no extensions: inserting one would allocate).
    fn answer_hot(&self, req: &Request<Incoming>, peer: SocketAddr) -> Option<AppResponse>;

    /// The app's answer. The request carries the peer (`ConnectInfo`) and
    /// its connection ([`ConnHandle`]) in its extensions.
    fn route(&mut self, req: Request<Incoming>) -> Self::Future;
}

/// The accepted connections of one server and what they share.
pub(crate) struct Connections<D> {
    /// Where requests go.
    dispatch: D,
    /// The state: config (limits, trusted proxies), metrics, activity.
    state: AppState,
    /// hyper's HTTP/1 and HTTP/2 settings.
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// The global slots (`limits.max_connections`).
    global: Arc<Semaphore>,
    /// The per-client slots (`limits.max_connections_per_ip`).
    per_ip: Arc<PerIp>,
    /// The per-connection deadline (`limits.header_read_timeout_secs`).
    head_timeout: Duration,
    /// Set to `true` once, when the drain begins.
    drain: watch::Sender<bool>,
    /// One task per connection; its upgraded streams run inside it.
    tasks: JoinSet<()>,
    /// The TLS handshake every connection begins with; `None`: plain HTTP.
    tls: Option<TlsAcceptor>,
}

impl<D: Dispatch> Connections<D> {
    pub(crate) fn new(state: &AppState, dispatch: D) -> Self {
        let l = &state.config.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No hyper header timer: it arms and clears a timer for every
        // request head. The same bound comes once per connection from
        // `ConnIdle`: a connection with no request in flight for
        // `header_read_timeout_secs` is closed, so a request head must
        // arrive whole within that time.
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
        Connections {
            dispatch,
            state: state.clone(),
            builder: Arc::new(builder),
            global: Arc::new(Semaphore::new(l.max_connections)),
            per_ip: PerIp::new(l.max_connections_per_ip),
            head_timeout: l.header_read_timeout,
            drain: watch::channel(false).0,
            tasks: JoinSet::new(),
            tls: None,
        }
    }

    /// Every connection begins with a TLS handshake through `tls`.
    pub(crate) fn with_tls(mut self, tls: TlsAcceptor) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Accepts and serves connections until `stop` completes; returns its
    /// output. Connections keep running until [`Connections::drain`].
    pub(crate) async fn accept_until<T>(
        &mut self,
        listener: &TcpListener,
        stop: impl Future<Output = T>,
    ) -> T {
        let mut stop = std::pin::pin!(stop);
        loop {
            while self.tasks.try_join_next().is_some() {}
            // Wait for a connection slot first: when full, clients wait in the
            // kernel's backlog instead of in our memory.
            let permit = tokio::select! {
                p = self.global.clone().acquire_owned() => p.expect("never closed"),
                t = &mut stop => return t,
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
                t = &mut stop => return t,
            };
            // The per-client cap: one client must not take every slot.
            // Trusted proxies carry many clients and are not counted here
            // (they must limit each of their clients themselves).
            let peer_ip = crate::domain::canonical_ip(peer.ip());
            let per_ip = if self.state.config.is_trusted_proxy(peer_ip) {
                None
            } else {
                match self.per_ip.enter(peer_ip) {
                    Some(slot) => Some(slot),
                    None => {
                        self.state.metrics.conn_refused_per_ip.inc();
                        tracing::debug!(%peer, "too many connections from this client; closing");
                        drop(stream);
                        continue;
                    }
                }
            };
            let slot = ConnSlot::new(self.state.activity.clone(), permit, per_ip);
            let conn = Conn {
                peer,
                slot,
                builder: self.builder.clone(),
                dispatch: self.dispatch.clone(),
                head_timeout: self.head_timeout,
                drain: self.drain.subscribe(),
            };
            self.tasks.spawn(conn.serve(stream, self.tls.clone()));
        }
    }

    /// The drain: tells every connection to finish, waits up to `grace`
    /// for all of them (adopted streams included), then drops the rest.
    pub(crate) async fn drain(mut self, grace: Duration) {
        let _ = self.drain.send(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                open = self.tasks.len(),
                "grace period over; closing remaining connections"
            );
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Connections whose task still runs.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.tasks.len()
    }
}

/// One accepted connection, before its task starts.
struct Conn<D> {
    peer: SocketAddr,
    /// Its slots, held until the task ends.
    slot: ConnSlot,
    builder: Arc<auto::Builder<TokioExecutor>>,
    dispatch: D,
    head_timeout: Duration,
    /// Changes when the drain begins.
    drain: watch::Receiver<bool>,
}

impl<D: Dispatch> Conn<D> {
    /// The connection's task: the handshake on a TLS listener, then
    /// [`Conn::serve_http`] over the stream.
    async fn serve(mut self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        // The deadline counts from the accept: the handshake, the first
        // bytes and the first request head all come within `head_timeout`.
        let idle = ConnIdle::new();
        let Some(tls) = tls else {
            // The HTTP version is known only once the first bytes are in,
            // and until then the connection has no request to finish: the
            // drain closes it at once.
            let ready = tokio::select! {
                ok = first_bytes(&stream, self.head_timeout) => ok,
                _ = self.drain.wait_for(|d| *d) => false,
            };
            if !ready {
                tracing::debug!(peer = %self.peer, "no request head in time; closing");
                return;
            }
            return self.serve_http(stream, idle).await;
        };
        // Until the handshake is done there is no request to finish either.
        // After it, hyper reads the first bytes itself: the drain cancels
        // that read, and the idle deadline below bounds it.
        let handshake = tls::handshake(&tls, stream, self.head_timeout, self.peer);
        let stream = tokio::select! {
            s = handshake => s,
            _ = self.drain.wait_for(|d| *d) => None,
        };
        if let Some(stream) = stream {
            self.serve_http(stream, idle).await;
        }
    }

    /// Serves the connection over `io` until it closes, its deadline
    /// passes or the drain ends it, and then runs its adopted streams to
    /// their end.
    async fn serve_http<I>(self, io: I, idle: Arc<ConnIdle>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            slot: _slot,
            builder,
            dispatch,
            head_timeout,
            mut drain,
        } = self;
        let (adopt_tx, mut adopt_rx) = mpsc::unbounded_channel::<Adopted>();
        let svc = ConnService {
            dispatch,
            idle: idle.clone(),
            peer,
            handle: ConnHandle::new(adopt_tx, drain.clone(), idle.clone()),
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        let mut conn = std::pin::pin!(conn);
        let mut adopted: JoinSet<()> = JoinSet::new();
        let mut conn_done = false;
        let mut draining = *drain.borrow_and_update();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                r = conn.as_mut(), if !conn_done => {
                    conn_done = true;
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    // Streams adopted before the upgrade completed.
                    while let Ok(f) = adopt_rx.try_recv() {
                        adopted.spawn(f);
                    }
                }
                Some(f) = adopt_rx.recv(), if !conn_done => {
                    adopted.spawn(f);
                }
                Some(_) = adopted.join_next(), if !adopted.is_empty() => {}
                _ = drain.changed(), if !draining => {
                    draining = true;
                    if !conn_done {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                // The deadline of both versions: a connection without a
                // request in flight for `head_timeout` is closed, whether it
                // is idle between requests, dribbling an HTTP/1 request head
                // (a request is in flight only once its head is parsed) or
                // holding an HTTP/2 connection with no stream open.
                _ = idle.expired(head_timeout), if !conn_done => {
                    tracing::debug!(%peer, "connection idle too long; closing");
                    return;
                }
            }
            if conn_done && adopted.is_empty() {
                return;
            }
        }
    }
}

/// The service of one connection: hot path first, then the app; routed
/// requests stay in flight until their response body ends.
struct ConnService<D> {
    dispatch: D,
    /// The connection's requests in flight.
    idle: Arc<ConnIdle>,
    peer: SocketAddr,
    /// Handed to every routed request.
    handle: ConnHandle,
}

impl<D: Dispatch> hyper::service::Service<Request<Incoming>> for ConnService<D> {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Answer<D::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(res) = self.dispatch.answer_hot(&req, self.peer) {
            // Answered within this call, inside the connection's own task:
            // the deadline check never sees it in flight, so marking the
            // progress once is enough.
            self.idle.mark();
            return Answer::Hot(Some(res.map(TrackedBody::untracked)));
        }
        let busy = InFlight::enter(self.idle.clone());
        req.extensions_mut().insert(ConnectInfo(self.peer));
        req.extensions_mut().insert(self.handle.clone());
        let fut = self.dispatch.clone().route(req);
        Answer::Routed(Box::pin(fut), Some(busy))
    }
}

/// The future of one answer.
enum Answer<F> {
    /// Ready; taken when polled.
    Hot(Option<Response<TrackedBody>>),
    /// The app's future and the request's in-flight marker, which moves
    /// into the response body.
    Routed(Pin<Box<F>>, Option<InFlight>),
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<AppResponse, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Answer` is `Unpin`: the app's future is boxed.
        match self.get_mut() {
            Answer::Hot(res) => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            Answer::Routed(fut, busy) => {
                let Ok(res) = std::task::ready!(fut.as_mut().poll(cx));
                let busy = busy.take().expect("polled after completion");
                Poll::Ready(Ok(res.map(|b| TrackedBody::new(b, busy))))
            }
        }
    }
}

#[cfg(test)]
mod tests;
