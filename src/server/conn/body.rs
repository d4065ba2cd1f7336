//! [`TrackedBody`]: a response body that keeps its request in flight
//! ([`InFlight`]) until the body has ended or been dropped, and tells the
//! connection when it waits for the client to read.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};

use crate::server::conn::idle::InFlight;

/// A response body and the in-flight marker of its request.
pub(crate) struct TrackedBody {
    /// The body the app answered with.
    inner: Body,
    /// Dropped when the body ends; `None` for answers that were never in
    /// flight (the hot path) and after the end.
    busy: Option<InFlight>,
}

impl TrackedBody {
    /// A body that keeps `busy` until it ends.
    pub(crate) fn new(inner: Body, busy: InFlight) -> Self {
        TrackedBody {
            inner,
            busy: Some(busy),
        }
    }

    /// A body with nothing to track: an answer made whole on the spot.
    pub(crate) fn untracked(inner: Body) -> Self {
        TrackedBody { inner, busy: None }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(b) = &mut this.busy {
            b.asked();
        }
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(b) = &mut this.busy {
                    b.handed_frame();
                }
            }
            // The end (or an error, which ends the response): no longer in
            // flight, even if hyper keeps the body a while.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.busy = None,
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
