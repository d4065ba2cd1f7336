//! The streamed answers of the admin socket: how `auditctl` reads the
//! database through a running server, which holds the file for itself
//! (redb's exclusive mode). This module owns the protocol both sides
//! speak: the frames, their encoding, and the client that reads them.
//!
//! A stream is one `GET /stream/...` over the socket (HTTP/1.1); its body is
//! a sequence of [`Frame`]s, one JSON object a line, ending with
//! [`Frame::End`] or [`Frame::Error`]. A body that ends without either was
//! cut (the server stopped or gave up on a stalled reader).
//!
//! Bounds: a frame is at most [`MAX_FRAME`] bytes (the client refuses a
//! longer line); the server sends [`Frame::Alive`] at least every
//! [`HEARTBEAT`] while it works or waits, so the client gives up when
//! nothing arrives for [`ANSWER_TIMEOUT`] instead of hanging on a server
//! that holds the file but does not answer.

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::domain::{AccessTokenInfo, Event, EventFilter, EventId, Outcome, Session};
use crate::store::{AuditCounts, CheckReport, StoreStats};

/// Name of the socket in the data dir (the admin socket's own).
pub const SOCKET_FILE: &str = "admin.sock";
/// Longest frame, newline included.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// The server sends something at least this often on an open stream.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The client gives up when nothing arrives for this long: several
/// heartbeats missed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Events in one [`Frame::Events`].
pub const EVENTS_PER_FRAME: usize = 250;
/// Raw bytes in one [`Frame::Chunk`] (base64 makes them a third longer).
pub const CHUNK_BYTES: usize = 48 * 1024;

/// One unit of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Frame {
    /// Events in the order of the request, and (export, follow) the newest
    /// id examined so far, matching or not.
    Events {
        events: Vec<Event>,
        through: Option<EventId>,
    },
    /// The end of a query page: where the next one starts.
    Page {
        next_cursor: Option<String>,
    },
    Stats {
        stats: StoreStats,
    },
    Counts {
        counts: AuditCounts,
    },
    Check {
        report: CheckReport,
    },
    Sessions {
        sessions: Vec<Session>,
    },
    Tokens {
        tokens: Vec<AccessTokenInfo>,
    },
    /// A snapshot taken and checked by the server; its bytes follow as
    /// [`Frame::Chunk`]s.
    Snapshot {
        bytes: u64,
        rows: u64,
        check: CheckReport,
    },
    /// Base64 of the next bytes of a snapshot.
    Chunk {
        data: String,
    },
    /// Nothing new; the server is working or waiting.
    Alive,
    /// The answer is complete.
    End,
    /// The answer failed; nothing more follows.
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// What kind of failure a [`Frame::Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The query's cursor is not one of this query's.
    Cursor,
    /// The request itself is malformed.
    BadRequest,
    /// Too many streams at once, or a backup already running.
    Busy,
    /// The store failed.
    Store,
}

impl Frame {
    /// The frame as one line.
    pub fn encode(&self) -> Bytes {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|e| {
            // Every frame's fields serialize; a failure would be a bug, and
            // it is reported rather than sent as a broken line.
            serde_json::to_vec(&Frame::Error {
                kind: ErrorKind::Store,
                message: format!("cannot encode the answer: {e}"),
            })
            .unwrap_or_default()
        });
        v.push(b'\n');
        Bytes::from(v)
    }
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot reach the admin socket {path}: {reason}")]
    Connect { path: String, reason: String },
    #[error(
        "the server did not answer on its admin socket within {}s",
        ANSWER_TIMEOUT.as_secs()
    )]
    NoAnswer,
    #[error("the server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the server's answer was cut off before its end")]
    Cut,
    #[error("the server sent a frame longer than {} MiB", MAX_FRAME / (1024 * 1024))]
    TooLong,
    #[error("the server sent a malformed frame: {0}")]
    Malformed(String),
    #[error("the server reported: {message}")]
    Failed { kind: ErrorKind, message: String },
}

/// The query string of `filter`, as the server reads it back with
/// [`filter_from_query`].
pub fn filter_query(filter: &EventFilter, q: &mut url::form_urlencoded::Serializer<'_, String>) {
    if let Some(u) = &filter.user {
        q.append_pair("user", u);
    }
    for k in &filter.kinds {
        q.append_pair("kind", k.as_str());
    }
    if let Some(t) = filter.since_us {
        q.append_pair("since", &t.to_string());
    }
    if let Some(t) = filter.until_us {
        q.append_pair("until", &t.to_string());
    }
    if let Some(ip) = filter.ip {
        q.append_pair("ip", &ip.to_string());
    }
    if let Some(o) = filter.outcome {
        q.append_pair(
            "outcome",
            match o {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            },
        );
    }
}

/// Reads a query string into its pairs and the filter they name; the pairs
/// that are not filter fields are returned for the route to read.
pub fn filter_from_query(raw: &str) -> Result<(EventFilter, Vec<(String, String)>), String> {
    let mut f = EventFilter::default();
    let mut rest = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("bad {k}: {v:?}"));
        match &*k {
            "user" => f.user = Some(v.into_owned()),
            "kind" => f.kinds.push(v.parse()?),
            "since" => f.since_us = Some(num(&v)?),
            "until" => f.until_us = Some(num(&v)?),
            "ip" => f.ip = Some(v.parse().map_err(|_| format!("bad ip: {v:?}"))?),
            "outcome" => f.outcome = Some(v.parse()?),
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
        if f.kinds.len() > crate::domain::EventKind::ALL.len() {
            return Err("too many kinds".into());
        }
    }
    Ok((f, rest))
}

/// An open stream: reads its frames one by one.
pub struct FrameStream {
    body: Incoming,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as frames.
    start: usize,
    /// Drives the connection; aborted when the stream is dropped.
    conn: tokio::task::JoinHandle<()>,
    ended: bool,
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl FrameStream {
    /// Opens `GET path_and_query` on the admin socket of `data_dir`.
    /// `Ok(None)` when nothing listens there, or when the server closes or
    /// resets the connection before answering: a stopping server resets the
    /// connections still queued on its listener and cuts those it accepted,
    /// so a client that connects as it stops finds nobody there, as it
    /// would a moment later. Needs a Tokio runtime.
    pub async fn open(
        data_dir: &Path,
        path_and_query: &str,
    ) -> Result<Option<FrameStream>, WireError> {
        let path = data_dir.join(SOCKET_FILE);
        let connect_err = |e: &dyn std::fmt::Display| WireError::Connect {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let sock = match tokio::net::UnixStream::connect(&path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(connect_err(&e)),
        };
        let (mut send, conn) =
            match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(sock)).await {
                Ok(h) => h,
                Err(e) if closed_unanswered(&e) => return Ok(None),
                Err(e) => return Err(connect_err(&e)),
            };
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, "gatehouse")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| connect_err(&e))?;
        let resp = match tokio::time::timeout(ANSWER_TIMEOUT, send.send_request(req)).await {
            Err(_) => {
                conn.abort();
                return Err(WireError::NoAnswer);
            }
            Ok(Err(e)) => {
                conn.abort();
                if closed_unanswered(&e) {
                    return Ok(None);
                }
                return Err(connect_err(&e));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let mut stream = FrameStream {
            body: resp.into_body(),
            buf: Vec::new(),
            start: 0,
            conn,
            ended: false,
        };
        if status != 200 {
            // A short text answer (a refusal, or an older server's 404).
            let mut text = Vec::new();
            while text.len() < 64 * 1024 {
                match stream.chunk().await {
                    Ok(Some(b)) => text.extend_from_slice(&b),
                    _ => break,
                }
            }
            text.truncate(64 * 1024);
            return Err(WireError::Refused {
                status,
                message: String::from_utf8_lossy(&text).trim().to_string(),
            });
        }
        Ok(Some(stream))
    }

    /// The next piece of the body, waiting at most [`ANSWER_TIMEOUT`].
    async fn chunk(&mut self) -> Result<Option<Bytes>, WireError> {
        loop {
            let next = tokio::time::timeout(ANSWER_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| WireError::NoAnswer)?;
            match next {
                None => return Ok(None),
                Some(Err(_)) => return Err(WireError::Cut),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The next frame other than [`Frame::Alive`]. [`Frame::End`] once at
    /// the end; a [`Frame::Error`] is returned as [`WireError::Failed`].
    pub async fn next(&mut self) -> Result<Frame, WireError> {
        loop {
            let frame = self.next_any().await?;
            match frame {
                Frame::Alive => continue,
                Frame::Error { kind, message } => {
                    self.ended = true;
                    return Err(WireError::Failed { kind, message });
                }
                Frame::End => {
                    self.ended = true;
                    return Ok(Frame::End);
                }
                f => return Ok(f),
            }
        }
    }

    async fn next_any(&mut self) -> Result<Frame, WireError> {
        if self.ended {
            return Ok(Frame::End);
        }
        loop {
            if let Some(nl) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.start..self.start + nl];
                let frame = serde_json::from_slice(line)
                    .map_err(|e| WireError::Malformed(e.to_string()))?;
                self.start += nl + 1;
                return Ok(frame);
            }
            if self.buf.len() - self.start >= MAX_FRAME {
                return Err(WireError::TooLong);
            }
            // Keep only the unread part before reading more.
            self.buf.drain(..self.start);
            self.start = 0;
            match self.chunk().await? {
                Some(b) => self.buf.extend_from_slice(&b),
                None => return Err(WireError::Cut),
            }
        }
    }
}

/// Whether `e` says that the server closed or reset the connection before
/// its answer began.
fn closed_unanswered(e: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;

    #[test]
    fn filters_travel_whole() {
        let f = EventFilter {
            user: Some("o'brien & co".into()),
            kinds: vec![EventKind::LoginFailure, EventKind::LoginSuccess],
            since_us: Some(5),
            until_us: Some(9),
            outcome: Some(Outcome::Failure),
            ip: Some("2001:db8::1".parse().unwrap()),
        };
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        filter_query(&f, &mut q);
        q.append_pair("limit", "7");
        let (back, rest) = filter_from_query(&q.finish()).unwrap();
        assert_eq!(back, f);
        assert_eq!(rest, [("limit".to_string(), "7".to_string())]);
        assert!(filter_from_query("kind=nope").is_err());
        assert!(filter_from_query("since=x").is_err());
    }

    #[test]
    fn frames_are_single_lines_that_read_back() {
        let f = Frame::Error {
            kind: ErrorKind::Cursor,
            message: "line\nbreak".into(),
        };
        let b = f.encode();
        assert_eq!(b.iter().filter(|&&c| c == b'\n').count(), 1);
        assert_eq!(serde_json::from_slice::<Frame>(&b).unwrap(), f);
    }
}
