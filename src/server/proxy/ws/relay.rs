//! The relay of one adopted WebSocket: messages both ways, one at a time, and
//! gatehouse's own close frames (1008 when the session or access token that
//! opened it ends, 1001 at the drain or after `ws_idle_secs` without a
//! message), each cut recorded as `proxy.closed` before its close frame is
//! sent.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::server::proxy::ws::{CHECK_AT_MOST_EVERY, CLOSE_WAIT, Ws, ws_config};
use crate::server::state::AppState;
use crate::store::{
    AuditStore, EventKind, NewEvent, PublicId, SessionStore, TokenHash, TokenStore, now_ms,
};

/// An open socket's relay and what it watches.
pub(super) struct Relay {
    pub(super) state: AppState,
    /// The app's name, for the audit event.
    pub(super) app: String,
    /// `ws_idle_secs`: closed (1001) after this long without a message.
    pub(super) idle: Duration,
    /// `ws_recheck_secs`: the session is looked at again at least this often.
    pub(super) recheck: Duration,
    /// The session that opened it, when a cookie did.
    pub(super) session: Option<(TokenHash, PublicId)>,
    /// The access token that opened it, when one did.
    pub(super) token: Option<TokenHash>,
    pub(super) user: Option<String>,
    pub(super) ip: Option<IpAddr>,
}

/// What a look at the session found.
enum Seen {
    /// Valid until this many ms since the epoch; last recorded use.
    Live {
        deadline_ms: u64,
        last_seen_ms: u64,
    },
    Ended,
    /// The store could not say; asked again at the next check.
    Unknown,
}

/// Why the relay ended.
enum End {
    /// A side closed or failed: nothing for gatehouse to send or record.
    Peer,
    /// gatehouse cuts it: the reason recorded and the client's close code.
    Cut(&'static str, CloseCode),
}

impl Relay {
    /// Relays until a side closes or gatehouse cuts the socket.
    pub(super) async fn run(
        self,
        client: Upgraded,
        upstream: Upgraded,
        mut drain: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) {
        let mut c: Ws =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(ws_config()))
                .await;
        let mut u: Ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upstream),
            Role::Client,
            Some(ws_config()),
        )
        .await;
        let mut commits = self.state.store.commits();
        let watching = self.session.is_some() || self.token.is_some();
        // Cleared if the store's notice ends (the store closed): a closed
        // `watch` is ready at once, every time.
        let mut notices = watching;
        let mut last_moved = Instant::now();
        let mut moved_since_check = false;
        let mut last_check = Instant::now();
        let mut next_check = Instant::now();
        let end = loop {
            let idle_at = last_moved + self.idle;
            tokio::select! {
                m = c.next() => match m {
                    Some(Ok(Message::Close(f))) => {
                        pass_close(&mut c, &mut u, f).await;
                        break End::Peer;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_moved = Instant::now(),
                    Some(Ok(m)) => {
                        last_moved = Instant::now();
                        moved_since_check = true;
                        if !matches!(timeout(self.idle, u.send(m)).await, Ok(Ok(()))) {
                            break End::Peer;
                        }
                    }
                    _ => break End::Peer,
                },
                m = u.next() => match m {
                    Some(Ok(Message::Close(f))) => {
                        pass_close(&mut u, &mut c, f).await;
                        break End::Peer;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_moved = Instant::now(),
                    Some(Ok(m)) => {
                        last_moved = Instant::now();
                        moved_since_check = true;
                        if !matches!(timeout(self.idle, c.send(m)).await, Ok(Ok(()))) {
                            break End::Peer;
                        }
                    }
                    _ => break End::Peer,
                },
                _ = &mut drain => break End::Cut("shutdown", CloseCode::Away),
                _ = sleep_until(idle_at) => break End::Cut("idle", CloseCode::Away),
                r = commits.changed(), if notices => {
                    if r.is_ok() {
                        let soonest = (last_check + CHECK_AT_MOST_EVERY).max(Instant::now());
                        next_check = next_check.min(soonest);
                    } else {
                        notices = false;
                    }
                }
                _ = sleep_until(next_check), if watching => {
                    last_check = Instant::now();
                    let wait = match self.look(moved_since_check).await {
                        Seen::Ended if self.session.is_some() => {
                            break End::Cut("session_ended", CloseCode::Policy);
                        }
                        Seen::Ended => break End::Cut("token_ended", CloseCode::Policy),
                        Seen::Live { deadline_ms, .. } => {
                            let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()) + 1);
                            left.min(self.recheck)
                        }
                        Seen::Unknown => self.recheck,
                    };
                    moved_since_check = false;
                    next_check = last_check + wait;
                }
            }
        };
        if let End::Cut(reason, code) = end {
            // Recorded (durably) before the client is told, so a client
            // that saw the close finds the event.
            self.record(reason).await;
            let text = match reason {
                "session_ended" => "session ended",
                "token_ended" => "access token ended",
                "shutdown" => "server shutting down",
                _ => "idle",
            };
            let close = |code| {
                Some(CloseFrame {
                    code,
                    reason: text.into(),
                })
            };
            let _ = timeout(CLOSE_WAIT, c.close(close(code))).await;
            let _ = timeout(CLOSE_WAIT, u.close(close(CloseCode::Away))).await;
        }
    }

    /// Looks the session up again (one read of the store's snapshot), and
    /// touches it when messages moved and its last recorded use is older
    /// than the touch interval, as a page load would; or the access token
    /// that opened the socket.
    async fn look(&self, moved: bool) -> Seen {
        let Some((hash, _)) = self.session else {
            return match self.token {
                Some(hash) => self.look_token(hash).await,
                None => Seen::Unknown,
            };
        };
        let now = now_ms();
        let seen = match self.state.store.session_by_hash(hash, now).await {
            Ok(Some(s)) => {
                if self.state.with_policy(|p| p.user(&s.user).is_some()) {
                    Seen::Live {
                        deadline_ms: s.deadline_ms(),
                        last_seen_ms: s.last_seen_ms,
                    }
                } else {
                    Seen::Ended
                }
            }
            Ok(None) => Seen::Ended,
            // A failed read is asked again later: cutting every open socket
            // on one failed read would be worse than a late cut, and the
            // next sign-in check fails closed anyway.
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket session check failed");
                Seen::Unknown
            }
        };
        if let Seen::Live { last_seen_ms, .. } = seen
            && moved
            && now.saturating_sub(last_seen_ms) >= self.state.config.session.touch_interval_ms
            && let Err(e) = self.state.store.touch(hash, now)
        {
            tracing::debug!(error = %e, "session touch dropped");
        }
        seen
    }

    /// Looks the access token up again: live while it is neither revoked
    /// nor expired and its owner is still configured.
    async fn look_token(&self, hash: TokenHash) -> Seen {
        let now = now_ms();
        match self.state.store.token_by_hash(hash, now).await {
            Ok(Some(t)) if self.state.with_policy(|p| p.user(&t.user).is_some()) => Seen::Live {
                deadline_ms: t.expires_ms,
                last_seen_ms: t.last_used_ms.unwrap_or(t.created_ms),
            },
            Ok(_) => Seen::Ended,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket token check failed");
                Seen::Unknown
            }
        }
    }

    /// Counts and records a cut (`proxy.closed`).
    async fn record(&self, reason: &'static str) {
        *self
            .state
            .metrics
            .proxy_ws_closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
        tracing::info!(app = %self.app, user = ?self.user, reason, "WebSocket closed by gatehouse");
        let mut e = NewEvent::now(EventKind::ProxyClosed);
        e.user = self.user.clone();
        e.session = self.session.map(|(_, id)| id);
        e.ip = self.ip;
        e.details = vec![
            ("app".into(), self.app.clone()),
            ("reason".into(), reason.into()),
        ];
        // Bounded by the writer's backpressure, and at shutdown by the
        // grace period that drops this task.
        if let Err(e) = self.state.store.append(e).await {
            tracing::warn!(error = %e, "proxy.closed not recorded");
        }
    }
}

/// Passes a close frame from `from` to `to`, lets `from`'s automatic reply
/// go out, and waits briefly for `to`'s reply: each within [`CLOSE_WAIT`].
async fn pass_close(from: &mut Ws, to: &mut Ws, frame: Option<CloseFrame>) {
    let _ = timeout(CLOSE_WAIT, to.send(Message::Close(frame))).await;
    let _ = timeout(CLOSE_WAIT, from.flush()).await;
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = to.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}
