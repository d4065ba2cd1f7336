//! `GET /auth/verify`: the forward-auth check for nginx `auth_request`,
//! Caddy `forward_auth` and Traefik `ForwardAuth`.
//!
//! This is the hot path: one read transaction, no write, no lock, no
//! hashing. The request is read once ([`Asked`]); a stale session is
//! touched fire-and-forget (see [`crate::server::authed::lookup`]). Without
//! a session cookie, an access token in `Authorization` is checked the same
//! way (one read, a coalesced touch; see [`crate::server::forward_auth::bearer`]).
//! Two things make [`answer`] decline, leaving the request to [`verify`]
//! behind the router: a Basic password (`[tokens] basic_auth_passwords`)
//! not checked within the last minute, which [`verify`] checks through the
//! bounded hashing pool and the failure limit; and a store that cannot
//! answer a lookup without waiting (a network store on a cache miss),
//! whose reads [`verify`] awaits ([`Awaited`]) before it checks again.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{self, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::{Decision, Policy as AccessPolicy, Subject};
use crate::config::{Policy, UserEntry};
use crate::identity::basic::Checked;
use crate::server::authed::{Read, lookup_with_now, session_read};
use crate::server::forward_auth::answers::{Identity, granted, not_signed_in, refuse, unreadable};
use crate::server::forward_auth::asked::Asked;
use crate::server::forward_auth::bearer::{
    Presented, Refused, basic_password, cached_password, password_not_enough, presented,
    token_read, token_with,
};
use crate::server::respond::ApiError;
use crate::server::state::AppState;
use crate::store::{AccessTokenInfo, PublicId, Session, TokenHash};

/// `GET /auth/verify`. Takes the request whole: it reads only the head, and
/// borrowing it spares copying the header map. Reached through the router
/// only when [`answer`] could not answer on the spot (a `HEAD`, or a Basic
/// password not checked within the last minute), or from tests.
pub async fn verify(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    state.activity.record();
    let asked = match Asked::read(&state.config, req.uri().query(), req.headers(), peer) {
        Ok(a) => a,
        Err(why) => return unreadable(&state, why),
    };
    decide_request(&state, &asked).await.into_response()
}

/// The decision on a request: [`check`]; when that cannot be made on the
/// spot, [`check`] again with the store's reads awaited; and when that
/// needs a Basic password not seen within the last minute, that password
/// checked as the sign-in form checks one (bans, the failure limit, the
/// bounded hashing pool). Used by `/auth/verify` behind the router and by
/// the built-in proxy, which may wait.
pub async fn decide_request(state: &AppState, asked: &Asked<'_>) -> Verdict {
    if let Some(v) = check(state, asked, None, &Awaited::default()) {
        return v;
    }
    let awaited = Awaited::fetch(state, asked).await;
    if let Some(v) = check(state, asked, None, &awaited) {
        return v;
    }
    let Presented::Password { user, secret } = presented(asked.headers) else {
        return Verdict::Answer(not_signed_in(state, asked));
    };
    match basic_password(state, asked.headers, asked.ip(), &user, secret).await {
        Ok(()) => check(state, asked, Some(&user), &awaited)
            .unwrap_or_else(|| Verdict::Answer(not_signed_in(state, asked))),
        // A wrong password answers as no credential does (with the challenge).
        Err(Refused::Wrong) => Verdict::Answer(not_signed_in(state, asked)),
        Err(Refused::Answer(r)) => Verdict::Answer(r),
    }
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
    match Asked::read(&state.config, req.uri().query(), req.headers(), peer) {
        Ok(asked) => check(state, &asked, None, &Awaited::default()).map(Verdict::into_response),
        Err(why) => Some(unreadable(state, why)),
    }
}

/// A check's decision: let the request through as someone, or answer it.
pub enum Verdict {
    /// Allowed: the identity headers' values, and how it was authenticated.
    Allowed(Allowed),
    /// Not signed in, refused, or failed: the answer to send.
    Answer(Response),
}

/// An allowed request.
pub struct Allowed {
    /// The identity headers (`Identity::by_authorization` when
    /// `Authorization` carried the credential).
    pub id: Identity,
    /// How it was authenticated; `None` for a bypass rule (no one).
    pub factor: Option<Factor>,
    /// The session's token hash and public id, when a session cookie
    /// authenticated it: what the proxy checks again while a WebSocket of
    /// it stays open.
    pub session: Option<(TokenHash, PublicId)>,
    /// The access token's hash, when one authenticated it: checked again
    /// the same way.
    pub token: Option<TokenHash>,
    /// The user's name, when someone is signed in.
    pub user: Option<String>,
}

impl Verdict {
    /// The forward-auth answer: 200 with the identity headers, or the answer.
    pub fn into_response(self) -> Response {
        match self {
            Verdict::Allowed(a) => granted(a.id),
            Verdict::Answer(r) => r,
        }
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
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
    id: Identity,
    factor: Factor,
    session: Option<(TokenHash, PublicId)>,
    token: Option<TokenHash>,
    user: String,
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
}

/// Builds what a check of `user` found, asking the rules. A session
/// without a second factor steps up for a `two_factor` decision; a token
/// is also held to its scope.
fn found_for(
    policy: &Policy,
    asked: &Asked<'_>,
    user: &UserEntry,
    factor: Factor,
    token: Option<&AccessTokenInfo>,
) -> Found {
    let decision = decide(policy, asked, Some(user));
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
    // Believed only from a trusted proxy, like the rules' view of the
    // request: from anyone else the host is "" and a scoped token matches
    // nothing.
    let out_of_scope = token.is_some_and(|t| !t.domains.is_empty() && !t.allows_host(asked.host()));
    Found {
        id: Identity {
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
            by_authorization: !matches!(factor, Factor::Session { .. }),
        },
        factor,
        session: None,
        token: None,
        user: user.name.clone(),
        decision,
        out_of_scope,
        needs_more,
        step_up,
    }
}

/// The rules' decision for this check, or `None` when the policy has no
/// rules and the default is `one_factor` (the common case, which then
/// costs nothing more than the session lookup).
fn decide(policy: &Policy, asked: &Asked<'_>, user: Option<&UserEntry>) -> Option<Decision> {
    let rules = policy.rules();
    if rules.is_empty() && rules.default_policy() == AccessPolicy::OneFactor {
        return None;
    }
    // The client's address is worked out only when a rule can use it.
    let request = asked.access_request(rules.uses_networks());
    let subject = match user {
        None => Subject::ANONYMOUS,
        Some(u) => Subject {
            user: Some(&u.name),
            groups: policy.group_list(&u.name),
        },
    };
    Some(rules.decide(&request, &subject))
}

/// Store reads awaited ahead of [`check`], for a store that could not
/// answer them on the spot: the session of the request's cookie and the
/// access token in its `Authorization`. Empty on the hot path, where
/// [`check`] reads on the spot.
#[derive(Default)]
pub struct Awaited {
    session: Option<Read<Session>>,
    token: Option<Read<AccessTokenInfo>>,
}

impl Awaited {
    /// Awaits the reads a check of `asked` makes: the session, and the
    /// token only when no live session was found (as [`check`] reads).
    pub async fn fetch(state: &AppState, asked: &Asked<'_>) -> Awaited {
        let session = session_read(state, asked.headers).await;
        let token = match (&session, presented(asked.headers)) {
            (Some(Ok(Some(_))), _) => None,
            (_, Presented::Token { token, .. }) => Some(token_read(state, &token).await),
            _ => None,
        };
        Awaited { session, token }
    }
}

/// The decision on a check, made on the spot: a session cookie,
/// else an access token or a Basic password checked within the last
/// minute. `None` when the request carries a Basic password that must be
/// hashed first, or the store cannot answer a read without waiting and
/// `awaited` does not hold it (see [`decide_request`]). `verified`: the
/// user whose Basic password was just checked and found right, answered
/// without the cache (which may be full).
pub fn check(
    state: &AppState,
    asked: &Asked<'_>,
    verified: Option<&str>,
    awaited: &Awaited,
) -> Option<Verdict> {
    let start = Instant::now();
    let headers = asked.headers;
    // Only what the answer needs is taken from the user's entry.
    let mut found = lookup_with_now(
        state,
        headers,
        awaited.session.as_ref(),
        |session, hash, user, policy| {
            let factor = Factor::Session {
                two_factor: session.methods.two_factor(),
            };
            let mut f = found_for(policy, asked, user, factor, None);
            f.session = Some((hash, session.id));
            f
        },
    )?;
    // Without a valid session cookie, `Authorization` is looked at: a
    // request with neither costs one header lookup more.
    if matches!(found, Ok(None)) && headers.contains_key(header::AUTHORIZATION) {
        match presented(headers) {
            Presented::Token { token, basic_user } => {
                found = token_with(
                    state,
                    || asked.ip(),
                    &token,
                    basic_user.as_deref(),
                    awaited.token.as_ref(),
                    |info, user, policy| found_for(policy, asked, user, Factor::Token, Some(info)),
                )?;
                if let Ok(Some(f)) = &mut found {
                    f.token = Some(token.hash());
                }
            }
            Presented::Password { user, secret } if state.config.tokens.basic_auth_passwords => {
                let ok = match verified {
                    Some(v) => v == user,
                    None => match cached_password(state, || asked.ip(), &user, &secret)? {
                        Checked::Right => true,
                        Checked::Wrong => false,
                        Checked::NeedsSecondFactor => {
                            state.metrics.verify_denied.inc();
                            return Some(Verdict::Answer(password_not_enough()));
                        }
                    },
                };
                if ok {
                    found = Ok(state.with_policy(|p| {
                        p.user(&user)
                            .map(|u| found_for(p, asked, u, Factor::Password, None))
                    }));
                }
            }
            _ => {}
        }
    }
    let res = match found {
        Ok(Some(f)) if f.out_of_scope => {
            state.metrics.verify_denied.inc();
            Verdict::Answer(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this access token is not valid for this site",
                )
                .into_response(),
            )
        }
        Ok(Some(f)) if f.step_up => Verdict::Answer(not_signed_in(state, asked)),
        Ok(Some(f)) => match f.decision {
            Some(d) if d.policy == AccessPolicy::Deny || f.needs_more => {
                let user = f.id.user.as_ref().and_then(|v| v.to_str().ok());
                Verdict::Answer(refuse(state, asked, d, Some(user.unwrap_or(""))))
            }
            _ => {
                state.metrics.verify_ok.inc();
                Verdict::Allowed(Allowed {
                    id: f.id,
                    factor: Some(f.factor),
                    session: f.session,
                    token: f.token,
                    user: Some(f.user),
                })
            }
        },
        Ok(None) => match state.with_policy(|p| decide(p, asked, None)) {
            Some(d) if !d.needs_subject && d.policy == AccessPolicy::Bypass => {
                state.metrics.verify_ok.inc();
                Verdict::Allowed(Allowed {
                    id: Identity::anonymous(),
                    factor: None,
                    session: None,
                    token: None,
                    user: None,
                })
            }
            Some(d) if !d.needs_subject && d.policy == AccessPolicy::Deny => {
                Verdict::Answer(refuse(state, asked, d, None))
            }
            _ => Verdict::Answer(not_signed_in(state, asked)),
        },
        Err(e) => {
            state.metrics.verify_error.inc();
            Verdict::Answer(e.into_response())
        }
    };
    state
        .metrics
        .verify_micros
        .observe(start.elapsed().as_micros() as u64);
    Some(res)
}
