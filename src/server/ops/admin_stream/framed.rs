//! A stream's body: a producer that runs only when the connection asks for
//! more, handing frames over a channel of [`QUEUED_FRAMES`](super::QUEUED_FRAMES),
//! under a stream slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hyper::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::admin_wire::{EVENTS_PER_FRAME, ErrorKind, Frame, HEARTBEAT};
use crate::domain::{Event, EventId};
use crate::server::ops::admin_stream::{MAX_STREAMS, Progress, QUEUED_FRAMES};

/// Where a producer puts its frames.
pub(super) struct Sink(pub(super) mpsc::Sender<Bytes>);

/// The client went away (or the stream was cut): stop producing.
pub(super) struct Gone;

impl Sink {
    pub(super) async fn send(&self, f: Frame) -> Result<(), Gone> {
        self.0.send(f.encode()).await.map_err(|_| Gone)
    }

    /// Awaits `fut`, sending [`Frame::Alive`] every [`HEARTBEAT`] meanwhile.
    pub(super) async fn alive_while<T>(&self, fut: impl Future<Output = T>) -> Result<T, Gone> {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                v = fut.as_mut() => return Ok(v),
                _ = tick.tick() => self.send(Frame::Alive).await?,
            }
        }
    }

    pub(super) async fn fail(
        &self,
        kind: ErrorKind,
        message: impl std::fmt::Display,
    ) -> Result<(), Gone> {
        self.send(Frame::Error {
            kind,
            message: message.to_string(),
        })
        .await
    }

    /// `events` in frames of [`EVENTS_PER_FRAME`]; the last carries `through`.
    pub(super) async fn events(
        &self,
        events: Vec<Event>,
        through: Option<EventId>,
    ) -> Result<(), Gone> {
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

/// A response body fed by a producer that runs only while the body is
/// polled: the connection's pace is the producer's.
pub(super) struct Framed {
    pub(super) rx: mpsc::Receiver<Bytes>,
    pub(super) producer: Option<Producer>,
    pub(super) progress: Option<Progress>,
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
pub(super) fn stream<F, Fut>(
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

pub(super) type Producer = Pin<Box<dyn Future<Output = ()> + Send>>;
