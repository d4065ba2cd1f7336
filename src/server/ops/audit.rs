//! `GET /api/v1/audit`: admins page through the audit trail, newest first,
//! with keyset cursors. The store runs the query off the async workers (the
//! redb backend on the blocking pool): it is a bounded range scan, but it is
//! not the hot path and must not hold an async worker.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::server::authed::Authed;
use crate::server::extract::Query;
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{
    AuditStore, DEFAULT_LIMIT, Event, EventFilter, EventKind, MAX_LIMIT, QueryError,
};

#[derive(Deserialize)]
pub struct AuditQuery {
    user: Option<String>,
    /// One kind or several, comma-separated (`login.failure,ban.added`).
    kind: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    since: Option<u64>,
    /// Milliseconds since the epoch, exclusive.
    until: Option<u64>,
    outcome: Option<String>,
    ip: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Page {
    events: Vec<Event>,
    next_cursor: Option<String>,
}

/// Turns query parameters into a filter, or a 400 naming the bad one.
pub fn filter(q: &AuditQuery) -> Result<EventFilter, ApiError> {
    let mut f = EventFilter {
        user: q.user.clone().filter(|u| !u.is_empty()),
        since_us: q.since.map(|ms| ms.saturating_mul(1000)),
        until_us: q.until.map(|ms| ms.saturating_mul(1000)),
        ..EventFilter::default()
    };
    if let Some(kinds) = &q.kind {
        for k in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            f.kinds
                .push(k.parse::<EventKind>().map_err(ApiError::bad_request)?);
        }
    }
    if let Some(o) = &q.outcome {
        f.outcome = Some(o.parse().map_err(ApiError::bad_request)?);
    }
    if let Some(ip) = &q.ip {
        f.ip = Some(
            ip.parse()
                .map_err(|_| ApiError::bad_request(format!("ip: {ip:?} is not an IP address")))?,
        );
    }
    Ok(f)
}

/// `GET /api/v1/audit`.
pub async fn query(
    State(state): State<AppState>,
    me: Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    if !me.is_admin() {
        return Err(ApiError::forbidden());
    }
    let f = filter(&q)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // The store runs the scan off the async workers.
    match state
        .store
        .query_events(&f, limit, q.cursor.as_deref())
        .await
    {
        Ok(p) => {
            let mut res = Json(Page {
                events: p.events,
                next_cursor: p.next_cursor,
            })
            .into_response();
            // Events carry IPs, user agents and names: no cache may keep them.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(res)
        }
        Err(QueryError::Cursor(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
        Err(QueryError::Store(e)) => Err(ApiError::internal("audit query failed", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::extract::parse_query;
    use proptest::prelude::*;

    proptest! {
        /// Any audit query string: a filter or a 400, never a panic.
        #[test]
        fn random_audit_queries(
            q in "(?s).{0,120}",
            kinds in proptest::collection::vec(prop_oneof![Just("login.failure"), Just("ban.added"), Just(","), Just("nope"), Just(" ")], 0..5),
            since in "[0-9a-z-]{0,22}",
            ip in "[0-9a-f.:]{0,40}",
            outcome in "[a-z]{0,8}",
        ) {
            let structured = format!("kind={}&since={since}&until={since}&ip={ip}&outcome={outcome}&limit={since}", kinds.concat());
            for q in [q.as_str(), structured.as_str()] {
                match parse_query::<AuditQuery>(q) {
                    Ok(a) => {
                        if let Err(e) = filter(&a) {
                            prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                        }
                    }
                    Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
                }
            }
        }
    }
}
