//! The `/stream/...` routes that read the store: query, export, follow,
//! stats, counts, check, sessions and tokens.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::framed::stream;
use crate::admin_wire::{EVENTS_PER_FRAME, ErrorKind, Frame, HEARTBEAT};
use crate::domain::{Event, EventFilter, EventId, MAX_LIMIT};
use crate::server::ops::admin_stream::{FOLLOW_POLL, MAX_LISTED, Prog, STEP, Shared};
use crate::store::{AuditStore, QueryError, SessionStore, StoreCheck, TokenStore, now_ms};

/// A request the routes cannot read: answered 400 with the reason.
pub(super) struct BadRequest(String);

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

pub(super) type Answer = Result<Response, BadRequest>;

pub(super) async fn query(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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

pub(super) async fn export(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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

pub(super) async fn follow(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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

pub(super) async fn stats(State(s): Shared, p: Prog) -> Response {
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

pub(super) async fn counts(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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

pub(super) async fn check(State(s): Shared, p: Prog) -> Response {
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

pub(super) async fn sessions(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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

pub(super) async fn tokens(State(s): Shared, p: Prog, RawQuery(raw): RawQuery) -> Answer {
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
