//! `GET /auth/verify`: the forward-auth check for nginx `auth_request`,
//! Caddy `forward_auth` and Traefik `ForwardAuth`.
//!
//! This is the hot path: one read transaction, no write, no lock, no
//! hashing. A stale session is touched fire-and-forget (see
//! [`super::auth::lookup`]).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::lookup_with;
use super::redirect::original_url;
use super::{ApiError, AppState};

/// Whether the query asks for a redirect to the login page instead of 401
/// (`redirect=1` or `redirect=true`, for proxies that pass the answer on to
/// the browser). Read leniently: whatever else the query holds, verify
/// answers 200, 401 or 302, never 400, because a proxy turns any other
/// status into an error page for the protected app.
pub fn wants_redirect(query: Option<&str>) -> bool {
    let Some(q) = query.filter(|q| q.len() <= super::extract::MAX_QUERY) else {
        return false;
    };
    url::form_urlencoded::parse(q.as_bytes())
        .any(|(k, v)| k == "redirect" && (v == "1" || v == "true"))
}

/// Headers that name the signed-in user to the protected app.
const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
/// Always sent on a 200, empty for a user in no group: a proxy that copies it
/// (Caddy's `copy_headers`) then always has a value to copy, and overwrites
/// whatever a client sent under that name.
const REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
/// On a 401: the login page with `rd` set to the original URL, encoded. For
/// nginx, whose `auth_request` passes only 401/403 on and has no URL encoding
/// of its own (`auth_request_set` reads it; see `deploy/nginx.conf`).
pub const LOGIN_URL_HEADER: HeaderName = HeaderName::from_static("x-gatehouse-login");

/// `GET /auth/verify`. Takes the request whole: it reads only the head, and
/// borrowing it spares copying the header map.
pub async fn verify(State(state): State<AppState>, req: Request) -> Response {
    answer(&state, &req)
}

/// The answer to a forward-auth request. Counts it as activity: the route
/// is outside the activity middleware (see `super::router`).
pub fn answer<B>(state: &AppState, req: &http::Request<B>) -> Response {
    state.activity.record();
    check(state, req.uri().query(), req.headers())
}

/// The answer to a forward-auth check with this query and these headers.
pub fn check(state: &AppState, query: Option<&str>, headers: &HeaderMap) -> Response {
    let start = Instant::now();
    // Only what the answer needs is taken from the user's entry.
    let found = lookup_with(state, headers, |_, _, user| {
        // Names are validated at config load: no control characters.
        (HeaderValue::from_str(&user.name).ok(), user.admin)
    });
    let res = match found {
        Ok(Some((name, admin))) => {
            state.metrics.verify_ok.inc();
            let mut r = StatusCode::OK.into_response();
            let h = r.headers_mut();
            if let Some(v) = name {
                h.insert(REMOTE_USER, v);
            }
            let groups = if admin { "admin" } else { "" };
            h.insert(REMOTE_GROUPS, HeaderValue::from_static(groups));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(None) => {
            state.metrics.verify_denied.inc();
            if wants_redirect(query) {
                let login = login_url(state, original_url(headers).as_deref());
                let mut r = StatusCode::FOUND.into_response();
                if let Ok(v) = HeaderValue::from_str(&login) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            } else {
                let mut r = ApiError::unauthorized().into_response();
                // Only when the proxy said where the browser was going: an
                // anonymous check without it stays as cheap as before.
                if let Some(rd) = original_url(headers) {
                    if let Ok(v) = HeaderValue::from_str(&login_url(state, Some(&rd))) {
                        r.headers_mut().insert(LOGIN_URL_HEADER, v);
                    }
                }
                r
            }
        }
        Err(e) => {
            state.metrics.verify_error.inc();
            e.into_response()
        }
    };
    state
        .metrics
        .verify_micros
        .observe(start.elapsed().as_micros() as u64);
    res
}

/// The login page URL with `rd` set: absolute on the public origin when one
/// is configured (the browser is on another host), else a path.
pub fn login_url(state: &AppState, rd: Option<&str>) -> String {
    let base = match &state.config.public_origin {
        Some(o) => format!("{}/login", o.as_str().trim_end_matches('/')),
        None => "/login".to_string(),
    };
    match rd {
        Some(rd) => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", rd)
                .finish();
            format!("{base}?{q}")
        }
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::wants_redirect;
    use proptest::prelude::*;

    #[test]
    fn redirect_flag() {
        assert!(wants_redirect(Some("redirect=1")));
        assert!(wants_redirect(Some("x=%FF&redirect=true")));
        assert!(!wants_redirect(Some("redirect=0")));
        assert!(!wants_redirect(Some("redirect=%FF")));
        assert!(!wants_redirect(None));
    }

    proptest! {
        /// Any query: a yes or a no, never a panic.
        #[test]
        fn random_verify_queries(q in "(?s).{0,200}") {
            let _ = wants_redirect(Some(&q));
        }
    }
}
