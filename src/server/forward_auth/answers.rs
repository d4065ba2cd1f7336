//! The answers of a forward-auth check: 200 with the identity headers,
//! 401 (or a 302 to the login page), and 403 for a refusal by a rule or an
//! original request that cannot be read.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::{Decision, Unreadable};
use crate::server::cookie::cookie;
use crate::server::forward_auth::asked::Asked;
use crate::server::forward_auth::bearer::CHALLENGE;
use crate::server::respond::{ApiError, wants_html};
use crate::server::state::AppState;

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

/// `Remote-Email` and `Remote-Name`: the user's, or empty.
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");

const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");

/// On a 200 for a request authenticated by its `Authorization` header:
/// `X-Gatehouse-Credential: authorization`. `deploy/nginx.conf` then drops
/// that header from the request the app receives, as it drops the session
/// cookie. Absent on cookie answers, which stay as they were.
pub const CREDENTIAL: HeaderName = HeaderName::from_static("x-gatehouse-credential");

/// The identity headers of a 200.
#[derive(Default)]
pub struct Identity {
    pub user: Option<HeaderValue>,
    pub groups: Option<HeaderValue>,
    pub email: Option<HeaderValue>,
    pub name: Option<HeaderValue>,
    /// Authenticated by `Authorization`, not a cookie ([`CREDENTIAL`]).
    pub by_authorization: bool,
}

impl Identity {
    /// No one signed in (a bypass rule): every identity header empty, so
    /// that a proxy copying them (Caddy) copies nothing rather than a
    /// placeholder's text or a client's value.
    pub fn anonymous() -> Self {
        Identity {
            user: Some(HeaderValue::from_static("")),
            ..Identity::default()
        }
    }
}

/// Whether the query asks for a redirect to the login page instead of 401
/// (`redirect=1` or `redirect=true`, for proxies that pass the answer on to
/// the browser). Read leniently: whatever else the query holds, verify
/// answers 200, 401 or 302, never 400, because a proxy turns any other
/// status into an error page for the protected app.
pub fn wants_redirect(query: Option<&str>) -> bool {
    let Some(q) = query.filter(|q| q.len() <= crate::server::extract::MAX_QUERY) else {
        return false;
    };
    url::form_urlencoded::parse(q.as_bytes())
        .any(|(k, v)| k == "redirect" && (v == "1" || v == "true"))
}

/// 200 with the identity headers.
pub fn granted(id: Identity) -> Response {
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    if let Some(v) = id.user {
        h.insert(REMOTE_USER, v);
    }
    h.insert(
        REMOTE_GROUPS,
        id.groups.unwrap_or(HeaderValue::from_static("")),
    );
    // Sent even when empty, as Remote-Groups is, so that a proxy copying
    // them always has a value to copy.
    h.insert(
        REMOTE_EMAIL,
        id.email.unwrap_or(HeaderValue::from_static("")),
    );
    h.insert(REMOTE_NAME, id.name.unwrap_or(HeaderValue::from_static("")));
    if id.by_authorization {
        h.insert(CREDENTIAL, HeaderValue::from_static("authorization"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 401, or with `?redirect=1` a 302 to the login page.
pub fn not_signed_in(state: &AppState, asked: &Asked<'_>) -> Response {
    state.metrics.verify_denied.inc();
    // A client that neither asks for a page nor holds a session cookie is
    // not a browser: it gets the 401 and the challenge (which makes `curl
    // -u` and `git` ask for credentials) even with `?redirect=1`, since a
    // redirect to a sign-in form is of no use to it.
    let headers = asked.headers;
    let browser = wants_html(headers) || cookie(headers, &state.config.cookie.name).is_some();
    // A request received directly (the built-in proxy) has no proxy to
    // pass a 401 on: a browser is sent to sign in at once.
    if let Some(base) = asked.login
        && browser
    {
        let login = with_rd(base.to_string(), asked.return_url().as_deref());
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else if asked.login.is_some() {
        let mut r = ApiError::unauthorized().into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, CHALLENGE);
        r
    } else if wants_redirect(asked.query) && browser {
        let login = login_url(state, asked.return_url().as_deref());
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let mut r = ApiError::unauthorized().into_response();
        // Only when the proxy said where the browser was going: an
        // anonymous check without it stays as cheap as before.
        if let Some(rd) = asked.return_url()
            && let Ok(v) = HeaderValue::from_str(&login_url(state, Some(&rd)))
        {
            r.headers_mut().insert(LOGIN_URL_HEADER, v);
        }
        // nginx and Caddy pass the challenge on with the 401.
        if !browser {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, CHALLENGE);
        }
        r
    }
}

/// 403 for a request a rule refuses: counted by rule and policy, logged,
/// and a page that names the user when the client wants HTML. Never waits
/// on a write.
pub fn refuse(state: &AppState, asked: &Asked<'_>, d: Decision, user: Option<&str>) -> Response {
    state.metrics.verify_denied.inc();
    *state
        .metrics
        .access_denied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((d.rule, d.policy.as_str()))
        .or_default() += 1;
    let (host, path) = asked.host_path();
    let rule = crate::access::rule_label(d.rule);
    tracing::info!(target: "gatehouse::access", user = ?user.unwrap_or("-"), host = ?host, path = ?path, rule = %rule, "access denied");
    if let Some(u) = user {
        state.record_denial(u, d.rule, host, path, asked.ip());
    }
    match user {
        Some(u) if wants_html(asked.headers) => {
            let origin = state
                .config
                .public_origin
                .as_ref()
                .map(|o| o.origin().ascii_serialization());
            let sign_out = format!("{}/logout", origin.as_deref().unwrap_or(""));
            crate::server::pages::forbidden::page(u, host, path, &sign_out, origin.as_deref())
        }
        _ => ApiError::new(StatusCode::FORBIDDEN, "access denied by rule").into_response(),
    }
}

/// 403 for an original request that a trusted proxy named and that cannot
/// be read; the body says what was wrong, never the value.
pub fn unreadable(state: &AppState, why: Unreadable) -> Response {
    state.metrics.verify_denied.inc();
    ApiError::new(StatusCode::FORBIDDEN, why.to_string()).into_response()
}

/// The login page URL with `rd` set: absolute on the public origin when one
/// is configured (the browser is on another host), else a path.
pub fn login_url(state: &AppState, rd: Option<&str>) -> String {
    let base = match &state.config.public_origin {
        Some(o) => format!("{}/login", o.as_str().trim_end_matches('/')),
        None => "/login".to_string(),
    };
    with_rd(base, rd)
}

/// `base` with `rd` as its query, when there is one.
fn with_rd(base: String, rd: Option<&str>) -> String {
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
