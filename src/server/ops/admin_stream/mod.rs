//! The admin socket's streamed answers: what `auditctl` reads through a
//! running server, which holds the database file for itself. This module
//! owns the `/stream/...` routes, the bodies that produce their frames
//! (`crate::admin_wire`), and how long a connection on the socket may last.
//!
//! Routes (all `GET`, filters as `crate::admin_wire::filter_query` writes
//! them): `/stream/query?...&limit=N&cursor=C` (one page),
//! `/stream/export?...&after=ID&end=ID` (every match above `after` up to
//! `end`, oldest first), `/stream/follow?...&after=ID` (new matches as they
//! are committed, until the client goes or the server stops),
//! `/stream/stats`, `/stream/counts?top=N`, `/stream/check`,
//! `/stream/sessions?user=U&limit=N`, `/stream/tokens?user=U`,
//! `/stream/backup` (a checked snapshot, then its bytes).
//!
//! Bounds and backpressure: a body is a [`Framed`] stream whose producer
//! runs only when the connection asks for more, and hands frames over a
//! channel of [`QUEUED_FRAMES`]; a client that stops reading stops the
//! producer. At most [`MAX_STREAMS`] streams run at once, and one backup.
//! A connection that has not begun a stream is cut after
//! [`SINGLE_REPLY`] (the other admin routes' bound); a stream is cut when
//! no frame has left it for [`STALL`]. Producers send
//! [`Frame::Alive`](crate::admin_wire::Frame::Alive) while they work or
//! wait, so a live stream never stalls by itself.

mod backup;

pub use backup::remove_abandoned_snapshots;
mod framed;
mod routes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::store::Backend;

/// How long a connection may take for one request that is not a stream.
pub const SINGLE_REPLY: Duration = Duration::from_secs(10);

/// How long a stream may go without a frame leaving it before it is cut.
pub const STALL: Duration = Duration::from_secs(60);

/// Streams running at once; more are refused (busy).
pub const MAX_STREAMS: usize = 8;

/// Frames a producer may have ready ahead of the connection.
pub const QUEUED_FRAMES: usize = 2;

/// How often a follow looks for new events.
pub(super) const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Events read per step of an export or a follow.
pub(super) const STEP: usize = 1_000;

/// Most sessions, or busiest users, one answer lists.
pub(super) const MAX_LISTED: usize = 1_000_000;

/// What the stream routes share.
pub(super) struct Streams {
    store: Backend,
    slots: Arc<Semaphore>,
    /// One backup at a time; the permit is held until its blocking work ends.
    backup: Arc<Semaphore>,
}

/// The stream routes over `store`.
pub fn router(store: Backend) -> Router {
    let state = Arc::new(Streams {
        store,
        slots: Arc::new(Semaphore::new(MAX_STREAMS)),
        backup: Arc::new(Semaphore::new(1)),
    });
    Router::new()
        .route("/stream/query", get(routes::query))
        .route("/stream/export", get(routes::export))
        .route("/stream/follow", get(routes::follow))
        .route("/stream/stats", get(routes::stats))
        .route("/stream/counts", get(routes::counts))
        .route("/stream/check", get(routes::check))
        .route("/stream/sessions", get(routes::sessions))
        .route("/stream/tokens", get(routes::tokens))
        .route("/stream/backup", get(backup::backup))
        .with_state(state)
}

/// When a connection last moved: `None` until it begins a stream.
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Option<Instant>>>);

impl Progress {
    fn mark(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves one connection of the admin socket: cut after [`SINGLE_REPLY`]
/// unless it began a stream, then when the stream stalls for [`STALL`].
pub async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: UnixStream,
    router: Router,
) {
    let progress = Progress::default();
    let svc = hyper_util::service::TowerToHyperService::new(
        router.layer(axum::Extension(progress.clone())),
    );
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut deadline = Instant::now() + SINGLE_REPLY;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(deadline) => match progress.last() {
                Some(t) if t + STALL > Instant::now() => deadline = t + STALL,
                _ => return,
            },
        }
    }
}

pub(super) type Shared = State<Arc<Streams>>;

pub(super) type Prog = Option<Extension<Progress>>;

#[cfg(test)]
mod tests {
    use super::framed::*;
    use super::*;
    use crate::admin_wire::{Frame, HEARTBEAT};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// A router with one stream route whose producer sends a frame, then
    /// waits `every`, forever.
    fn endless(every: Duration) -> Router {
        let slots = Arc::new(Semaphore::new(1));
        Router::new().route(
            "/x",
            get(move |p: Prog| {
                let slots = slots.clone();
                async move {
                    stream(&slots, p, move |sink| async move {
                        loop {
                            sink.send(Frame::Alive).await?;
                            tokio::time::sleep(every).await;
                        }
                    })
                }
            }),
        )
    }

    async fn connect(app: Router) -> (UnixStream, tokio::task::JoinHandle<()>) {
        let (server, mut client) = UnixStream::pair().unwrap();
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let conn = tokio::spawn(serve_connection(builder, server, app));
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        (client, conn)
    }

    /// A client that stops reading stops the stream, which is cut once
    /// nothing has left it for `STALL`.
    #[tokio::test(start_paused = true)]
    async fn a_stream_nobody_reads_is_cut_after_the_stall_bound() {
        let (_client, conn) = connect(endless(Duration::ZERO)).await;
        let start = Instant::now();
        conn.await.unwrap();
        let took = start.elapsed();
        assert!(took >= STALL, "{took:?}");
        assert!(took < STALL + SINGLE_REPLY + STALL, "{took:?}");
    }

    /// A stream past the slots is refused at once, with a reason.
    #[tokio::test(start_paused = true)]
    async fn streams_beyond_the_slots_are_refused_as_busy() {
        let app = endless(HEARTBEAT);
        let (mut first, _c1) = connect(app.clone()).await;
        let mut buf = vec![0u8; 4096];
        let n = first.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let (mut second, _c2) = connect(app).await;
        let n = second.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("too many streams"), "{text}");
    }

    /// A stream that keeps moving outlives the single-reply bound.
    #[tokio::test(start_paused = true)]
    async fn a_stream_read_as_it_comes_is_not_cut() {
        let (mut client, conn) = connect(endless(HEARTBEAT)).await;
        let mut buf = vec![0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < 5 * STALL {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "cut after {:?}", start.elapsed());
        }
        assert!(!conn.is_finished());
        // Once the client goes, the connection ends.
        drop(client);
        conn.await.unwrap();
    }

    /// A producer runs only as far as the body is read: with nobody
    /// reading, it stops after filling the channel.
    #[tokio::test(start_paused = true)]
    async fn an_unread_body_stops_its_producer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sent = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
        let counter = sent.clone();
        let sink = Sink(tx);
        let producer: Producer = Box::pin(async move {
            for _ in 0..1_000 {
                if sink.send(Frame::Alive).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut body = Framed {
            rx,
            producer: Some(producer),
            progress: None,
        };
        use futures_util::StreamExt;
        // One read: the producer fills the channel and waits.
        assert!(body.next().await.is_some());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(sent.load(Ordering::Relaxed) <= QUEUED_FRAMES + 1);
        // Reading on lets it go on, to its end.
        let mut n = 1;
        while body.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 1_000);
        assert_eq!(sent.load(Ordering::Relaxed), 1_000);
    }
}
