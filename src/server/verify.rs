//! `GET /auth/verify`: the forward-auth check for nginx `auth_request`,
//! Caddy `forward_auth` and Traefik `ForwardAuth`.
//!
//! This is the hot path: one read transaction, no write, no lock, no
//! hashing. A stale session is touched fire-and-forget (see
//! [`super::auth::lookup`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{client_ip, lookup_with};
use super::redirect::original_url;
use super::{ApiError, AppState};
use crate::access::{
    Decision, Policy as AccessPolicy, Request as AccessRequest, Subject, original_request,
};
use crate::config::{Policy, UserEntry};

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

/// `Remote-Email` and `Remote-Name`: the user's, or empty.
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");

/// `GET /auth/verify`. Takes the request whole: it reads only the head, and
/// borrowing it spares copying the header map.
pub async fn verify(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    answer(&state, &req, peer)
}

/// The answer to a forward-auth request. Counts it as activity: the route
/// is outside the activity middleware (see `super::router`).
pub fn answer<B>(state: &AppState, req: &http::Request<B>, peer: Option<IpAddr>) -> Response {
    state.activity.record();
    check(state, req.uri().query(), req.headers(), peer)
}

/// What a signed-in check found: the identity headers' values and the
/// rules' decision (`None` when there are no rules to ask).
struct Found {
    user: Option<HeaderValue>,
    groups: Option<HeaderValue>,
    email: Option<HeaderValue>,
    name: Option<HeaderValue>,
    decision: Option<Decision>,
    /// The session was signed in with a second factor.
    two_factor: bool,
}

/// The rules' decision for this check, or `None` when the policy has no
/// rules and the default is today's `one_factor` (the common case, which
/// then costs nothing more than the session lookup).
fn decide(
    state: &AppState,
    policy: &Policy,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    user: Option<&UserEntry>,
) -> Option<Decision> {
    let rules = policy.rules();
    if rules.is_empty() && rules.default_policy() == AccessPolicy::OneFactor {
        return None;
    }
    let trusted = peer.is_some_and(|p| state.config.is_trusted_proxy(p));
    // The client's address is worked out only when a rule can use it.
    let ip = if rules.uses_networks() {
        client_ip(&state.config, peer, headers)
    } else {
        None
    };
    let request = original_request(headers, trusted, ip).unwrap_or(AccessRequest {
        host: "",
        path: "/",
        method: "GET",
        ip,
    });
    let subject = match user {
        None => Subject::ANONYMOUS,
        Some(u) => Subject {
            user: Some(&u.name),
            groups: policy.group_list(&u.name),
        },
    };
    Some(rules.decide(&request, &subject))
}

/// The answer to a forward-auth check with this query, these headers and
/// this peer.
pub fn check(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Response {
    let start = Instant::now();
    // Only what the answer needs is taken from the user's entry.
    let found = lookup_with(state, headers, |session, _, user, policy| Found {
        two_factor: session.methods.two_factor(),
        // Values are validated at config load: no control characters.
        user: HeaderValue::from_str(&user.name).ok(),
        groups: HeaderValue::from_str(policy.groups_header(&user.name)).ok(),
        email: user
            .email
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok()),
        name: user
            .display_name
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok()),
        decision: decide(state, policy, headers, peer, Some(user)),
    });
    let res = match found {
        Ok(Some(f)) => match f.decision {
            Some(d) if d.policy == AccessPolicy::Deny => {
                let user = f.user.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
                refuse(state, headers, peer, d, Some(user))
            }
            // A one-factor session meets an app that asks for two: the
            // answer is "sign in", and the login page sends the browser to
            // the second step (step-up), then back.
            Some(d) if d.policy == AccessPolicy::TwoFactor && !f.two_factor => {
                not_signed_in(state, query, headers)
            }
            _ => {
                state.metrics.verify_ok.inc();
                granted(f)
            }
        },
        Ok(None) => {
            let decision = state.with_policy(|p| decide(state, p, headers, peer, None));
            match decision {
                Some(d) if !d.needs_subject && d.policy == AccessPolicy::Bypass => {
                    state.metrics.verify_ok.inc();
                    // No one is signed in: every identity header empty, so
                    // that a proxy copying them (Caddy) copies nothing
                    // rather than a placeholder's text or a client's value.
                    granted(Found {
                        user: Some(HeaderValue::from_static("")),
                        groups: None,
                        email: None,
                        name: None,
                        decision: None,
                        two_factor: false,
                    })
                }
                Some(d) if !d.needs_subject && d.policy == AccessPolicy::Deny => {
                    refuse(state, headers, peer, d, None)
                }
                _ => not_signed_in(state, query, headers),
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

/// 200 with the identity headers.
fn granted(f: Found) -> Response {
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    if let Some(v) = f.user {
        h.insert(REMOTE_USER, v);
    }
    h.insert(
        REMOTE_GROUPS,
        f.groups.unwrap_or(HeaderValue::from_static("")),
    );
    // Sent even when empty, as Remote-Groups is, so that a proxy copying
    // them always has a value to copy.
    h.insert(
        REMOTE_EMAIL,
        f.email.unwrap_or(HeaderValue::from_static("")),
    );
    h.insert(REMOTE_NAME, f.name.unwrap_or(HeaderValue::from_static("")));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 401, or with `?redirect=1` a 302 to the login page.
fn not_signed_in(state: &AppState, query: Option<&str>, headers: &HeaderMap) -> Response {
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

/// 403 for a request a rule refuses: counted by rule and policy, logged,
/// and a page that names the user when the client wants HTML. Never waits
/// on a write.
fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    d: Decision,
    user: Option<&str>,
) -> Response {
    state.metrics.verify_denied.inc();
    *state
        .metrics
        .access_denied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((d.rule, d.policy.as_str()))
        .or_default() += 1;
    let trusted = peer.is_some_and(|p| state.config.is_trusted_proxy(p));
    let original = original_request(headers, trusted, None);
    let (host, path) = original.map_or(("", ""), |r| (r.host, r.path));
    let rule = crate::access::rule_label(d.rule);
    tracing::info!(target: "gatehouse::access", user = ?user.unwrap_or("-"), host = ?host, path = ?path, rule = %rule, "access denied");
    if let Some(u) = user {
        let ip = client_ip(&state.config, peer, headers);
        state.record_denial(u, d.rule, host, path, ip);
    }
    match user {
        Some(u) if super::wants_html(headers) => {
            let origin = state
                .config
                .public_origin
                .as_ref()
                .map(|o| o.origin().ascii_serialization());
            let sign_out = format!("{}/logout", origin.as_deref().unwrap_or(""));
            super::pages::forbidden::page(u, host, &sign_out, origin.as_deref())
        }
        _ => ApiError::new(StatusCode::FORBIDDEN, "access denied by rule").into_response(),
    }
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
