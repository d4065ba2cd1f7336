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

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures_util::Stream;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::admin_wire::{CHUNK_BYTES, EVENTS_PER_FRAME, ErrorKind, Frame, HEARTBEAT};
use crate::domain::{Event, EventFilter, EventId, MAX_LIMIT};
use crate::store::{AuditStore, Backend, QueryError, SessionStore, StoreCheck, TokenStore, now_ms};

/// How long a connection may take for one request that is not a stream.
pub const SINGLE_REPLY: Duration = Duration::from_secs(10);
/// How long a stream may go without a frame leaving it before it is cut.
pub const STALL: Duration = Duration::from_secs(60);
/// Streams running at once; more are refused (busy).
pub const MAX_STREAMS: usize = 8;
/// Frames a producer may have ready ahead of the connection.
pub const QUEUED_FRAMES: usize = 2;
/// How often a follow looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// Events read per step of an export or a follow.
const STEP: usize = 1_000;
/// Most sessions, or busiest users, one answer lists.
const MAX_LISTED: usize = 1_000_000;

/// What the stream routes share.
struct Streams {
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
        .route("/stream/query", get(query))
        .route("/stream/export", get(export))
        .route("/stream/follow", get(follow))
        .route("/stream/stats", get(stats))
        .route("/stream/counts", get(counts))
        .route("/stream/check", get(check))
        .route("/stream/sessions", get(sessions))
        .route("/stream/tokens", get(tokens))
        .route("/stream/backup", get(backup))
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

/// Where a producer puts its frames.
struct Sink(mpsc::Sender<Bytes>);

/// The client went away (or the stream was cut): stop producing.
struct Gone;

impl Sink {
    async fn send(&self, f: Frame) -> Result<(), Gone> {
        self.0.send(f.encode()).await.map_err(|_| Gone)
    }

    /// Awaits `fut`, sending [`Frame::Alive`] every [`HEARTBEAT`] meanwhile.
    async fn alive_while<T>(&self, fut: impl Future<Output = T>) -> Result<T, Gone> {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                v = fut.as_mut() => return Ok(v),
                _ = tick.tick() => self.send(Frame::Alive).await?,
            }
        }
    }

    async fn fail(&self, kind: ErrorKind, message: impl std::fmt::Display) -> Result<(), Gone> {
        self.send(Frame::Error {
            kind,
            message: message.to_string(),
        })
        .await
    }

    /// `events` in frames of [`EVENTS_PER_FRAME`]; the last carries `through`.
    async fn events(&self, events: Vec<Event>, through: Option<EventId>) -> Result<(), Gone> {
        let mut it = events.into_iter().peekable();
        loop {
            let part: Vec<Event> = it.by_ref().take(EVENTS_PER_FRAME).collect();
            let last = it.peek().is_none();
            self.send(Frame::Events {
                events: part,
                through: if last { through } else { None },
            })
            .await?;
            if last {
                return Ok(());
            }
        }
    }
}

type Producer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A response body fed by a producer that runs only while the body is
/// polled: the connection's pace is the producer's.
struct Framed {
    rx: mpsc::Receiver<Bytes>,
    producer: Option<Producer>,
    progress: Option<Progress>,
}

impl Stream for Framed {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(p) = self.producer.as_mut()
            && p.as_mut().poll(cx).is_ready()
        {
            // Its sender is dropped with it: the channel ends once drained.
            self.producer = None;
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                if let Some(p) = &self.progress {
                    p.mark();
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Answers with the frames `produce` sends, holding a stream slot for as
/// long as it runs; busy when every slot is taken.
fn stream<F, Fut>(
    slots: &Arc<Semaphore>,
    progress: Option<Extension<Progress>>,
    produce: F,
) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = Result<(), Gone>> + Send + 'static,
{
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many streams at once (at most {MAX_STREAMS}); try again\n"),
        )
            .into_response();
    };
    let progress = progress.map(|Extension(p)| p);
    if let Some(p) = &progress {
        p.mark();
    }
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let fut = produce(Sink(tx));
    let producer: Producer = Box::pin(async move {
        let _slot: OwnedSemaphorePermit = slot;
        let _ = fut.await;
    });
    let body = Framed {
        rx,
        producer: Some(producer),
        progress,
    };
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A request the routes cannot read: answered 400 with the reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

/// The filter and the other parameters of a request.
fn params(raw: Option<String>) -> Result<(EventFilter, Vec<(String, String)>), BadRequest> {
    crate::admin_wire::filter_from_query(raw.as_deref().unwrap_or("")).map_err(BadRequest)
}

fn param<T: std::str::FromStr>(
    rest: &[(String, String)],
    name: &str,
) -> Result<Option<T>, BadRequest> {
    match rest.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| BadRequest(format!("bad {name}: {v:?}"))),
    }
}

type Answer = Result<Response, BadRequest>;

type Shared = State<Arc<Streams>>;
type Prog = Option<Extension<Progress>>;

async fn query(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (filter, rest) = params(raw)?;
    let limit = param::<usize>(&rest, "limit")?
        .unwrap_or(100)
        .clamp(1, MAX_LIMIT);
    let cursor = param::<String>(&rest, "cursor")?;
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        let page = sink
            .alive_while(store.query_events(&filter, limit, cursor.as_deref()))
            .await?;
        match page {
            Ok(page) => {
                sink.events(page.events, None).await?;
                sink.send(Frame::Page {
                    next_cursor: page.next_cursor,
                })
                .await?;
                sink.send(Frame::End).await
            }
            Err(QueryError::Cursor(c)) => sink.fail(ErrorKind::Cursor, c).await,
            Err(QueryError::Store(e)) => sink.fail(ErrorKind::Store, e).await,
        }
    }))
}

async fn export(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (filter, rest) = params(raw)?;
    let after = EventId(param::<u64>(&rest, "after")?.unwrap_or(0));
    let end = EventId(param::<u64>(&rest, "end")?.unwrap_or(u64::MAX));
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        let mut after = after;
        loop {
            let batch = match sink.alive_while(store.events_after(after, STEP)).await? {
                Ok(b) => b,
                Err(e) => return sink.fail(ErrorKind::Store, e).await,
            };
            let full = batch.len() == STEP;
            let mut out = Vec::new();
            let mut done = !full;
            for ev in batch {
                if ev.id > end
                    || filter
                        .until_us
                        .is_some_and(|t| ev.id >= EventId::from_micros(t))
                {
                    done = true;
                    break;
                }
                after = ev.id;
                if filter.matches(&ev) {
                    out.push(ev);
                }
            }
            sink.events(out, Some(after)).await?;
            if done {
                return sink.send(Frame::End).await;
            }
        }
    }))
}

async fn follow(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (filter, rest) = params(raw)?;
    let after = EventId(param::<u64>(&rest, "after")?.unwrap_or(0));
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        let mut after = after;
        let mut tick = tokio::time::interval(FOLLOW_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut quiet_since = Instant::now();
        // Ends when the client goes (a send fails) or the connection is
        // dropped at shutdown.
        loop {
            tick.tick().await;
            loop {
                let batch = match store.events_after(after, STEP).await {
                    Ok(b) => b,
                    Err(e) => return sink.fail(ErrorKind::Store, e).await,
                };
                let full = batch.len() == STEP;
                let Some(last) = batch.last().map(|e| e.id) else {
                    break;
                };
                after = last;
                let out: Vec<Event> = batch.into_iter().filter(|e| filter.matches(e)).collect();
                if !out.is_empty() {
                    sink.events(out, Some(after)).await?;
                    quiet_since = Instant::now();
                }
                if !full {
                    break;
                }
            }
            if quiet_since.elapsed() >= HEARTBEAT {
                sink.send(Frame::Alive).await?;
                quiet_since = Instant::now();
            }
        }
    }))
}

async fn stats(State(s): Shared, p: Prog) -> Response {
    let store = s.store.clone();
    stream(&s.slots, p, move |sink| async move {
        match sink.alive_while(store.stats()).await? {
            Ok(stats) => {
                sink.send(Frame::Stats { stats }).await?;
                sink.send(Frame::End).await
            }
            Err(e) => sink.fail(ErrorKind::Store, e).await,
        }
    })
}

async fn counts(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (_, rest) = params(raw)?;
    let top = param::<usize>(&rest, "top")?.unwrap_or(10).min(MAX_LISTED);
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        match sink.alive_while(store.audit_counts(top)).await? {
            Ok(counts) => {
                sink.send(Frame::Counts { counts }).await?;
                sink.send(Frame::End).await
            }
            Err(e) => sink.fail(ErrorKind::Store, e).await,
        }
    }))
}

async fn check(State(s): Shared, p: Prog) -> Response {
    let store = s.store.clone();
    stream(&s.slots, p, move |sink| async move {
        match sink.alive_while(store.check()).await? {
            Ok(report) => {
                sink.send(Frame::Check { report }).await?;
                sink.send(Frame::End).await
            }
            Err(e) => sink.fail(ErrorKind::Store, e).await,
        }
    })
}

async fn sessions(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (filter, rest) = params(raw)?;
    let limit = param::<usize>(&rest, "limit")?
        .unwrap_or(1_000)
        .min(MAX_LISTED);
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        let now = now_ms();
        let list = match &filter.user {
            Some(u) => sink.alive_while(store.sessions_of(u, now)).await?,
            None => sink.alive_while(store.all_sessions(now, limit)).await?,
        };
        match list {
            Ok(mut list) => {
                list.truncate(limit);
                let mut it = list.into_iter().peekable();
                while it.peek().is_some() {
                    let part = it.by_ref().take(EVENTS_PER_FRAME).collect();
                    sink.send(Frame::Sessions { sessions: part }).await?;
                }
                sink.send(Frame::End).await
            }
            Err(e) => sink.fail(ErrorKind::Store, e).await,
        }
    }))
}

async fn tokens(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
    let (filter, _) = params(raw)?;
    let Some(user) = filter.user else {
        return Err(BadRequest("give user".into()));
    };
    let store = s.store.clone();
    Ok(stream(&s.slots, p, move |sink| async move {
        match sink.alive_while(store.tokens_of(&user, now_ms())).await? {
            Ok(tokens) => {
                sink.send(Frame::Tokens { tokens }).await?;
                sink.send(Frame::End).await
            }
            Err(e) => sink.fail(ErrorKind::Store, e).await,
        }
    }))
}

/// Removes the server's copy of a snapshot once it is sent, or abandoned.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the server writes a snapshot before sending it: beside the
/// database (owner-only, like it), under a name no other file takes.
fn snapshot_path(db: &Path) -> PathBuf {
    db.with_file_name(format!(".admin-snapshot.{}.redb", std::process::id()))
}

async fn backup(State(s): Shared, p: Prog) -> Response {
    let Ok(one) = s.backup.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "a backup is already running; try again when it ends\n",
        )
            .into_response();
    };
    let store = s.store.clone();
    stream(&s.slots, p, move |sink| async move {
        let path = snapshot_path(store.location());
        // Left by an abandoned backup: none runs now (this one holds the
        // permit, which a backup's blocking work keeps until it ends).
        let _ = std::fs::remove_file(&path);
        let guard = RemoveOnDrop(path.clone());
        let work = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let _one = one;
                store.backup_to(&path)
            })
        };
        let report = match sink.alive_while(work).await? {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return sink.fail(ErrorKind::Store, e).await,
            Err(e) => return sink.fail(ErrorKind::Store, e).await,
        };
        sink.send(Frame::Snapshot {
            bytes: report.bytes,
            rows: report.rows,
            check: report.check,
        })
        .await?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => return sink.fail(ErrorKind::Store, e).await,
        };
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut sent = 0u64;
        loop {
            use tokio::io::AsyncReadExt;
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => return sink.fail(ErrorKind::Store, e).await,
            };
            if n == 0 {
                break;
            }
            sent += n as u64;
            let data = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
            sink.send(Frame::Chunk { data }).await?;
        }
        drop(guard);
        if sent != report.bytes {
            return sink
                .fail(
                    ErrorKind::Store,
                    format!(
                        "the snapshot changed size while sent ({sent} of {} bytes)",
                        report.bytes
                    ),
                )
                .await;
        }
        sink.send(Frame::End).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
