//! Connections to an app's upstream: a TCP address or a Unix socket,
//! opened within `connect_timeout_secs`, each holding one of the app's
//! `max_connections` places for as long as it stays open (pooled or not),
//! and the pooled client that reuses them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Upstream;
use crate::server::proxy::body::IdleBody;

/// Pooled connections of an idle app are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why no connection to the upstream could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No place under `max_connections`, or no answer to the connect,
    /// within `connect_timeout_secs`.
    #[error("the upstream did not accept a connection in time")]
    Timeout,
    #[error("the upstream refused the connection: {0}")]
    Io(#[from] io::Error),
}

/// An open connection to an upstream.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Opens a connection to `target`, without a time limit of its own.
async fn open(target: &Upstream) -> io::Result<Stream> {
    match target {
        Upstream::Tcp { authority } => {
            let s = TcpStream::connect(authority.as_str()).await?;
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Upstream::Unix { path } => Ok(Stream::Unix(UnixStream::connect(path).await?)),
    }
}

/// Opens a connection to `target` within `timeout`, taking one of `slots`
/// first when given (the app's `max_connections`).
pub async fn connect(
    target: &Upstream,
    slots: Option<&Arc<Semaphore>>,
    timeout: Duration,
) -> Result<Held, ConnectError> {
    let work = async {
        let permit = match slots {
            Some(s) => Some(s.clone().acquire_owned().await.map_err(|_| {
                ConnectError::Io(io::Error::other("the app's connection slots are closed"))
            })?),
            None => None,
        };
        Ok(Held {
            stream: open(target).await?,
            _permit: permit,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

/// A connection and the place it holds under its app's cap (released when
/// the connection is dropped, pooled or not).
pub struct Held {
    stream: Stream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Connection for Held {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// The pooled client's connector: every URI goes to the one upstream of
/// its app.
#[derive(Clone)]
pub struct Connector {
    target: Arc<Upstream>,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Held>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Held>, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            connect(&this.target, Some(&this.slots), this.timeout)
                .await
                .map(TokioIo::new)
        })
    }
}

/// The request body the client sends upstream.
pub type UpBody = IdleBody<hyper::body::Incoming>;

/// One app's pooled HTTP/1.1 client.
pub type AppClient = Client<Connector, UpBody>;

/// A pooled client for `target`, its connections capped by `slots`.
pub fn client(target: Upstream, slots: Arc<Semaphore>, timeout: Duration) -> AppClient {
    let connector = Connector {
        target: Arc::new(target),
        slots,
        timeout,
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .timer(TokioTimer::new())
        // Every request names its Host itself (the client's, or the
        // upstream's with `preserve_host = false`).
        .set_host(false)
        .build(connector)
}

/// Whether `e` (a client error) or anything under it is a connect timeout.
pub fn is_connect_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(ConnectError::Timeout) = err.downcast_ref::<ConnectError>() {
            return true;
        }
        cur = err.source();
    }
    false
}
