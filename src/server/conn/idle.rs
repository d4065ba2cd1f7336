//! The per-connection deadline: [`ConnIdle`] counts a connection's requests
//! in flight ([`InFlight`]) and closes a connection that has had none for
//! `header_read_timeout_secs`; [`first_bytes`] bounds the wait for the
//! bytes that tell HTTP/1 from HTTP/2.
//!
//! A request is in flight from its dispatch until its response body has
//! ended (or was dropped), not only until its response head: a body that
//! streams for longer than the deadline is not cut. While a request is in
//! flight the connection is closed only when every request in flight is a
//! response body that waits for the client to read (hyper has taken its
//! last frame and not asked for the next) and none has moved for the
//! deadline: a client that stops reading does not hold its slot forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection, and when one last began, moved
/// or ended.
pub(crate) struct ConnIdle {
    /// The origin of `last_ms`.
    start: Instant,
    /// Requests dispatched whose response body has not ended.
    in_flight: AtomicUsize,
    /// Of those, response bodies whose last frame hyper has taken without
    /// asking for the next: they wait for the client to read.
    waiting_on_client: AtomicUsize,
    /// Milliseconds after `start` when a request last began, handed over a
    /// frame of its body, or ended.
    last_ms: AtomicU64,
}

impl ConnIdle {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnIdle {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            waiting_on_client: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records progress: the idle time counts from now.
    pub(crate) fn mark(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Completes once no request has been in flight for `limit` (or every
    /// request in flight has waited on the client that long).
    pub(crate) async fn expired(&self, limit: Duration) {
        loop {
            let idle_for = Duration::from_millis(
                (self.start.elapsed().as_millis() as u64)
                    .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
            );
            let busy = self.in_flight.load(Ordering::Relaxed);
            let waiting = self.waiting_on_client.load(Ordering::Relaxed);
            if busy > waiting {
                // The server is still producing: the request timeout bounds
                // a handler, and a streaming body is the route's business.
                tokio::time::sleep(limit).await;
            } else if idle_for >= limit {
                return;
            } else {
                tokio::time::sleep(limit - idle_for).await;
            }
        }
    }

    /// Requests in flight right now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Marks one request in flight on its connection until dropped.
pub(crate) struct InFlight {
    /// The connection.
    conn: Arc<ConnIdle>,
    /// Whether this request is counted in `waiting_on_client`.
    waiting: bool,
}

impl InFlight {
    pub(crate) fn enter(conn: Arc<ConnIdle>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.mark();
        InFlight {
            conn,
            waiting: false,
        }
    }

    /// The response body handed a frame over: progress, and until hyper
    /// asks for the next one, a wait on the client.
    pub(crate) fn handed_frame(&mut self) {
        self.conn.mark();
        if !self.waiting {
            self.waiting = true;
            self.conn.waiting_on_client.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hyper asks the response body for its next frame.
    pub(crate) fn asked(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.conn.waiting_on_client.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.asked();
        self.conn.mark();
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits until the client has sent enough for hyper to tell HTTP/1 from
/// HTTP/2 (the first bytes, or all 24 of an HTTP/2 preface), for at most
/// `limit`. False when the time runs out or the client closes first.
///
/// hyper reads these bytes with no deadline of its own: without this, a
/// client that connects and sends nothing would hold its slot forever.
pub(crate) async fn first_bytes(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_idle_close_while_a_request_is_in_flight() {
        let c = ConnIdle::new();
        let limit = Duration::from_secs(1);
        let busy = InFlight::enter(c.clone());
        let expiry = tokio::spawn({
            let c = c.clone();
            async move { c.expired(limit).await }
        });
        tokio::time::sleep(limit * 10).await;
        assert!(!expiry.is_finished(), "closed with a request in flight");
        drop(busy);
        // Counted from the end of the request, within two rounds.
        tokio::time::sleep(limit * 2 + Duration::from_millis(1)).await;
        assert!(expiry.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_the_client_does_not_read_is_closed_after_the_limit() {
        let c = ConnIdle::new();
        let limit = Duration::from_secs(1);
        let mut busy = InFlight::enter(c.clone());
        busy.handed_frame();
        let expiry = tokio::spawn({
            let c = c.clone();
            async move { c.expired(limit).await }
        });
        tokio::time::sleep(limit / 2).await;
        // Hyper asks for more and the body is slow to produce it: not idle.
        busy.asked();
        tokio::time::sleep(limit * 5).await;
        assert!(!expiry.is_finished(), "closed while the body was producing");
        // A frame handed over that the client never reads: closed.
        busy.handed_frame();
        tokio::time::sleep(limit * 3).await;
        assert!(expiry.is_finished());
        drop(busy);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.waiting_on_client.load(Ordering::Relaxed), 0);
    }
}
