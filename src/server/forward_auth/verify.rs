//! `GET /auth/verify`: the forward-auth check for nginx `auth_request`,
//! Caddy `forward_auth` and Traefik `ForwardAuth`.
//!
//! This is the hot path: one read transaction, no write, no lock, no
//! hashing. A stale session is touched fire-and-forget (see
//! [`crate::server::authed::lookup`]). Without a session cookie, an access token in
//! `Authorization` is checked the same way (one read, a coalesced touch;
//! see [`crate::server::forward_auth::bearer`]). The one exception is a Basic password
//! (`[tokens] basic_auth_passwords`) not checked within the last minute:
//! [`answer`] then declines and [`verify`], behind the router, checks it
//! through the bounded hashing pool and the failure limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::{
    Decision, Original, Policy as AccessPolicy, Request as AccessRequest, Subject, Unreadable,
    read_original,
};
use crate::config::{Policy, UserEntry};
use crate::identity::basic::Checked;
use crate::server::authed::lookup_with;
use crate::server::client::client_ip;
use crate::server::cookie::cookie;
use crate::server::forward_auth::bearer::{
    Presented, Refused, basic_password, cached_password, password_not_enough, presented, token_with,
};
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::AccessTokenInfo;

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
/// borrowing it spares copying the header map. Reached through the router
/// only when [`answer`] could not answer on the spot (a `HEAD`, or a Basic
/// password not checked within the last minute), or from tests.
pub async fn verify(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(r) = answer(&state, &req, peer) {
        return r;
    }
    let (query, headers) = (req.uri().query(), req.headers());
    let orig = match original(&state, headers, peer) {
        Ok(o) => o,
        Err(why) => return unreadable(&state, why),
    };
    // A Basic password not seen within the last minute: checked as the
    // sign-in form checks one, off the hot path.
    let Presented::Password { user, secret } = presented(headers) else {
        return not_signed_in(&state, query, headers, orig.as_ref());
    };
    match basic_password(&state, headers, peer, &user, secret).await {
        Ok(()) => check_as(&state, query, headers, peer, Some(&user))
            .unwrap_or_else(|| not_signed_in(&state, query, headers, orig.as_ref())),
        // A wrong password answers as no credential does (with the challenge).
        Err(Refused::Wrong) => not_signed_in(&state, query, headers, orig.as_ref()),
        Err(Refused::Answer(r)) => r,
    }
}

/// Set once a trusted proxy has sent the family of headers the settings do
/// not name, so that the warning is logged once per process.
static OTHER_FAMILY_WARNED: AtomicBool = AtomicBool::new(false);

/// The original request a trusted proxy names, read once per check from
/// the one header family `[access] forwarded_headers` names, normalised.
/// `Ok(None)` for a peer that is not a trusted proxy: its headers are not
/// believed, and the rules see host "" and path "/". A trusted proxy's
/// request that cannot be read is refused (403): deciding it as some other
/// request is how rules get steered.
fn original<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Original<'h>>, Unreadable> {
    if !peer.is_some_and(|p| state.config.is_trusted_proxy(p)) {
        return Ok(None);
    }
    let family = state.config.forwarded_headers;
    read_original(headers, family)
        .map(Some)
        .inspect_err(|&why| {
            if why == Unreadable::OtherFamily && !OTHER_FAMILY_WARNED.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    setting = "access.forwarded_headers",
                    configured = family.as_str(),
                    "a trusted proxy sent the other family of original-request headers; \
                 its checks are refused until the proxy's configuration or this setting changes"
                );
            } else {
                tracing::debug!(reason = %why, "original request refused");
            }
        })
}

/// 403 for an original request that a trusted proxy named and that cannot
/// be read; the body says what was wrong, never the value.
fn unreadable(state: &AppState, why: Unreadable) -> Response {
    state.metrics.verify_denied.inc();
    ApiError::new(StatusCode::FORBIDDEN, why.to_string()).into_response()
}

/// The answer to a forward-auth request, made on the spot; `None` when it
/// needs a password checked first (see [`verify`]). Counts it as activity:
/// the route is outside the activity middleware (see `crate::server::router`).
pub fn answer<B>(
    state: &AppState,
    req: &http::Request<B>,
    peer: Option<IpAddr>,
) -> Option<Response> {
    state.activity.record();
    check(state, req.uri().query(), req.headers(), peer)
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// A session cookie; `two_factor`: signed in with a second factor.
    Session { two_factor: bool },
    /// An access token (Bearer, or Basic with the token as the secret).
    Token,
    /// Basic with the user's password (`basic_auth_passwords`).
    Password,
}

/// What a signed-in check found: the identity headers' values and the
/// rules' decision (`None` when there are no rules to ask).
struct Found {
    user: Option<HeaderValue>,
    groups: Option<HeaderValue>,
    email: Option<HeaderValue>,
    name: Option<HeaderValue>,
    decision: Option<Decision>,
    /// An access token whose scope does not include the requested host.
    out_of_scope: bool,
    /// The decision needs more than this factor: a token (or a password in
    /// Basic) is one factor, and a `two_factor` rule refuses it unless the
    /// rule sets `allow_tokens` (tokens only).
    needs_more: bool,
    /// A one-factor session meets a `two_factor` decision: the answer is
    /// "sign in", and the login page sends the browser to the second step
    /// (step-up), then back.
    step_up: bool,
    /// Authenticated by `Authorization` (a token or a Basic password), not
    /// a cookie: the answer says so ([`CREDENTIAL`]) so that the proxy can
    /// keep the credential from the app.
    by_authorization: bool,
}

/// On a 200 for a request authenticated by its `Authorization` header:
/// `X-Gatehouse-Credential: authorization`. `deploy/nginx.conf` then drops
/// that header from the request the app receives, as it drops the session
/// cookie. Absent on cookie answers, which stay as they were.
pub const CREDENTIAL: HeaderName = HeaderName::from_static("x-gatehouse-credential");

/// Builds what a check of `user` found, asking the rules. A session
/// without a second factor steps up for a `two_factor` decision; a token
/// is also held to its scope.
#[allow(clippy::too_many_arguments)]
fn found_for(
    state: &AppState,
    policy: &Policy,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    orig: Option<&Original<'_>>,
    user: &UserEntry,
    factor: Factor,
    token: Option<&AccessTokenInfo>,
) -> Found {
    let decision = decide(state, policy, headers, peer, orig, Some(user));
    let step_up = matches!(
        (factor, decision),
        (Factor::Session { two_factor: false }, Some(d)) if d.policy == AccessPolicy::TwoFactor
    );
    let needs_more = match (factor, decision) {
        (Factor::Session { .. }, _) | (_, None) => false,
        (Factor::Token, Some(d)) => {
            let two_factor_made = token.is_some_and(|t| t.two_factor);
            !policy
                .rules()
                .admits_token(d.policy, d.rule, two_factor_made)
        }
        (Factor::Password, Some(d)) => d.policy == AccessPolicy::TwoFactor,
    };
    let out_of_scope = token.is_some_and(|t| {
        // Believed only from a trusted proxy, like the rules' view of the
        // request: from anyone else the host is unknown and a scoped token
        // matches nothing.
        !t.domains.is_empty() && !t.allows_host(orig.map_or("", |o| &o.host))
    });
    Found {
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
        decision,
        out_of_scope,
        needs_more,
        step_up,
        by_authorization: !matches!(factor, Factor::Session { .. }),
    }
}

/// The rules' decision for this check, or `None` when the policy has no
/// rules and the default is today's `one_factor` (the common case, which
/// then costs nothing more than the session lookup).
fn decide(
    state: &AppState,
    policy: &Policy,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    orig: Option<&Original<'_>>,
    user: Option<&UserEntry>,
) -> Option<Decision> {
    let rules = policy.rules();
    if rules.is_empty() && rules.default_policy() == AccessPolicy::OneFactor {
        return None;
    }
    // The client's address is worked out only when a rule can use it.
    let ip = if rules.uses_networks() {
        client_ip(&state.config, peer, headers)
    } else {
        None
    };
    let request = orig.map_or(
        AccessRequest {
            host: "",
            path: "/",
            method: "GET",
            ip,
        },
        |o| o.request(ip),
    );
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
/// this peer, made on the spot: a session cookie, else an access token or a
/// Basic password checked within the last minute. `None` when the request
/// carries a Basic password that must be hashed first (see [`verify`]).
pub fn check(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<Response> {
    check_as(state, query, headers, peer, None)
}

/// [`check`]; `verified`: the user whose Basic password was just checked and
/// found right, answered without the cache (which may be full).
fn check_as(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    verified: Option<&str>,
) -> Option<Response> {
    let start = Instant::now();
    let orig = match original(state, headers, peer) {
        Ok(o) => o,
        Err(why) => return Some(unreadable(state, why)),
    };
    let orig = orig.as_ref();
    // Only what the answer needs is taken from the user's entry.
    let mut found = lookup_with(state, headers, |session, _, user, policy| {
        let factor = Factor::Session {
            two_factor: session.methods.two_factor(),
        };
        found_for(state, policy, headers, peer, orig, user, factor, None)
    });
    // Without a valid session cookie, `Authorization` is looked at: a
    // request with neither costs one header lookup more than before.
    if matches!(found, Ok(None)) && headers.contains_key(header::AUTHORIZATION) {
        match presented(headers) {
            Presented::Token { token, basic_user } => {
                found = token_with(
                    state,
                    headers,
                    peer,
                    &token,
                    basic_user.as_deref(),
                    |info, user, policy| {
                        found_for(
                            state,
                            policy,
                            headers,
                            peer,
                            orig,
                            user,
                            Factor::Token,
                            Some(info),
                        )
                    },
                );
            }
            Presented::Password { user, secret } if state.config.tokens.basic_auth_passwords => {
                let ok = match verified {
                    Some(v) => v == user,
                    None => match cached_password(state, headers, peer, &user, &secret)? {
                        Checked::Right => true,
                        Checked::Wrong => false,
                        Checked::NeedsSecondFactor => {
                            state.metrics.verify_denied.inc();
                            return Some(password_not_enough());
                        }
                    },
                };
                if ok {
                    found = Ok(state.with_policy(|p| {
                        p.user(&user).map(|u| {
                            found_for(state, p, headers, peer, orig, u, Factor::Password, None)
                        })
                    }));
                }
            }
            _ => {}
        }
    }
    let res = match found {
        Ok(Some(f)) if f.out_of_scope => {
            state.metrics.verify_denied.inc();
            ApiError::new(
                StatusCode::FORBIDDEN,
                "this access token is not valid for this site",
            )
            .into_response()
        }
        Ok(Some(f)) if f.step_up => not_signed_in(state, query, headers, orig),
        Ok(Some(f)) => match f.decision {
            Some(d) if d.policy == AccessPolicy::Deny || f.needs_more => {
                let user = f.user.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
                refuse(state, headers, peer, orig, d, Some(user))
            }
            _ => {
                state.metrics.verify_ok.inc();
                granted(f)
            }
        },
        Ok(None) => {
            let decision = state.with_policy(|p| decide(state, p, headers, peer, orig, None));
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
                        out_of_scope: false,
                        needs_more: false,
                        step_up: false,
                        by_authorization: false,
                    })
                }
                Some(d) if !d.needs_subject && d.policy == AccessPolicy::Deny => {
                    refuse(state, headers, peer, orig, d, None)
                }
                _ => not_signed_in(state, query, headers, orig),
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
    Some(res)
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
    if f.by_authorization {
        h.insert(CREDENTIAL, HeaderValue::from_static("authorization"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 401, or with `?redirect=1` a 302 to the login page.
fn not_signed_in(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    orig: Option<&Original<'_>>,
) -> Response {
    state.metrics.verify_denied.inc();
    // A client that neither asks for a page nor holds a session cookie is
    // not a browser: it gets the 401 and the challenge (which makes `curl
    // -u` and `git` ask for credentials) even with `?redirect=1`, since a
    // redirect to a sign-in form is of no use to it.
    let browser = crate::server::respond::wants_html(headers)
        || cookie(headers, &state.config.cookie.name).is_some();
    if wants_redirect(query) && browser {
        let login = login_url(state, return_url(state, headers, orig).as_deref());
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let mut r = ApiError::unauthorized().into_response();
        // Only when the proxy said where the browser was going: an
        // anonymous check without it stays as cheap as before.
        if let Some(rd) = return_url(state, headers, orig)
            && let Ok(v) = HeaderValue::from_str(&login_url(state, Some(&rd)))
        {
            r.headers_mut().insert(LOGIN_URL_HEADER, v);
        }
        // nginx and Caddy pass the challenge on with the 401.
        if !browser {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                crate::server::forward_auth::bearer::CHALLENGE,
            );
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
    orig: Option<&Original<'_>>,
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
    let (host, path) = orig.map_or(("", ""), |o| (&*o.host, &*o.path));
    let rule = crate::access::rule_label(d.rule);
    tracing::info!(target: "gatehouse::access", user = ?user.unwrap_or("-"), host = ?host, path = ?path, rule = %rule, "access denied");
    if let Some(u) = user {
        let ip = client_ip(&state.config, peer, headers);
        state.record_denial(u, d.rule, host, path, ip);
    }
    match user {
        Some(u) if crate::server::respond::wants_html(headers) => {
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

/// Where the browser goes back to after signing in: the original URL the
/// proxy named. A peer that is not a trusted proxy is not believed about
/// the request, but its URL is still offered as `rd`, which the sign-in
/// checks like any other.
fn return_url(
    state: &AppState,
    headers: &HeaderMap,
    orig: Option<&Original<'_>>,
) -> Option<String> {
    match orig {
        Some(o) => o.return_url(),
        None => read_original(headers, state.config.forwarded_headers)
            .ok()?
            .return_url(),
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
