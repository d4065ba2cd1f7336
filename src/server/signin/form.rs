//! `GET /login` (the form), `POST /login` (check a password, start a
//! session) and `POST /logout`.
//!
//! Order of a login: parse and bound the input, refuse banned users and IPs
//! (429, before any hashing), reserve the attempt with the regulator (429
//! when failures and attempts in flight already reach the limit), take a
//! hashing slot (503 when none is free), verify (unknown users against a
//! dummy hash, so they take as long), then either count the failure
//! (possibly banning) or create a fresh session, which the writer refuses if
//! the user's credentials changed since the check (a reload). The token
//! always comes from the store, never from the client. Refusals before
//! hashing are recorded once per subject and window (`rejections`).

use std::net::IpAddr;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::server::client::ClientIp;
use crate::server::guard::{FAILED, Password, PasswordCheck, check_password};
use crate::server::pages;
use crate::server::respond::{ApiError, user_agent, wants_json};
use crate::server::signin::redirect::safe_redirect;
use crate::server::state::AppState;
use crate::store::MAX_USER;

/// A checkbox (`on`) or a JSON boolean.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_set(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => matches!(s.as_str(), "on" | "true" | "1" | "yes"),
        }
    }
}

/// The login form or JSON body.
#[derive(Deserialize, Debug)]
pub struct LoginInput {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Password,
    #[serde(default)]
    remember_me: Option<Flag>,
    #[serde(default)]
    rd: Option<String>,
}

#[derive(Deserialize)]
pub struct FormQuery {
    rd: Option<String>,
    /// A name to fill in (an OpenID Connect client's `login_hint`).
    login_hint: Option<String>,
}

/// Renders the sign-in page. When `rd` is a safe redirect to another
/// origin, the page names it and its policy lets the form's answer go there.
fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
    rd: &str,
) -> Response {
    let continue_to = crate::server::signin::redirect::continue_to(state, headers, rd);
    pages::login::page(
        status,
        &pages::login::LoginView {
            error,
            username,
            rd,
            continue_to: continue_to.as_deref(),
            passkeys: crate::server::factors::passkeys::available(state, headers),
        },
    )
}

/// `GET /login`. A malformed query shows the form without `rd`.
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q: FormQuery = crate::server::extract::parse_query(query.as_deref().unwrap_or(""))
        .unwrap_or(FormQuery {
            rd: None,
            login_hint: None,
        });
    let rd = q.rd.unwrap_or_default();
    let rd = if rd.len() > crate::server::signin::redirect::MAX_RD {
        ""
    } else {
        &rd
    };
    if needs_step_up(&state, &headers, rd).await {
        return crate::server::respond::see_other(&crate::server::signin::redirect::next_page(
            false, rd,
        ));
    }
    let hint = q
        .login_hint
        .filter(|h| h.len() <= MAX_USER && !h.chars().any(char::is_control))
        .unwrap_or_default();
    page(&state, &headers, StatusCode::OK, None, &hint, rd)
}

/// Whether the browser is signed in, but without a second factor, and
/// `rd` leads to something the access rules open only to two factors:
/// then it came here from the forward-auth check, and the way on is the
/// second step (step-up), not a password again.
async fn needs_step_up(state: &AppState, headers: &HeaderMap, rd: &str) -> bool {
    let Some(to) = safe_redirect(&state.config, headers, rd).and_then(|t| {
        url::Url::parse(&t)
            .ok()
            .or_else(|| url::Url::parse(&format!("http://localhost{t}")).ok())
    }) else {
        return false;
    };
    if to.host_str().is_none() {
        return false;
    }
    let Ok((host, path)) = crate::access::normalize::url(&to) else {
        return false;
    };
    let found = crate::server::authed::lookup_with(state, headers, |session, _, user, policy| {
        if session.methods.two_factor() {
            return false;
        }
        let req = crate::access::Request {
            host: &host,
            path: &path,
            method: "GET",
            ip: None,
        };
        let who = crate::access::Subject {
            user: Some(&user.name),
            groups: policy.group_list(&user.name),
        };
        policy.rules().decide(&req, &who).policy == crate::access::Policy::TwoFactor
    })
    .await;
    matches!(found, Ok(Some(true)))
}

/// Reads the body as JSON or as a form, with the body limit applied.
async fn parse<S: Send + Sync>(state: &S, req: Request) -> Result<LoginInput, ApiError> {
    let input: LoginInput = crate::server::extract::json_or_form(state, req).await?;
    if input.username.is_empty() || input.password.is_empty() {
        return Err(ApiError::bad_request("username and password are required"));
    }
    if input.username.len() > MAX_USER || input.username.chars().any(char::is_control) {
        return Err(ApiError::bad_request("username too long or malformed"));
    }
    if input.password.too_long() {
        return Err(ApiError::bad_request("password too long"));
    }
    Ok(input)
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let json = wants_json(&headers);
    let input = match parse(&state, req).await {
        Ok(i) => i,
        Err(e) if json => return e.into_response(),
        Err(e) => return page(&state, &headers, e.status, Some(&e.message), "", ""),
    };
    match attempt(&state, ip, &headers, input).await {
        Ok(res) => res,
        Err((e, username, rd)) if !json => {
            let mut res = page(&state, &headers, e.status, Some(&e.message), &username, &rd);
            if let Some(s) = e.retry_after {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            res
        }
        Err((e, _, _)) => e.into_response(),
    }
}

type Failure = (ApiError, String, String);

async fn attempt(
    state: &AppState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    input: LoginInput,
) -> Result<Response, Failure> {
    let LoginInput {
        username,
        password,
        remember_me,
        rd,
    } = input;
    let rd = rd.unwrap_or_default();
    let fail = |e: ApiError| (e, username.clone(), rd.clone());
    let ua = user_agent(headers);
    let checked = check_password(state, &username, password, ip, &ua, None)
        .await
        .map_err(fail)?;
    let PasswordCheck::Right(user, credentials, reservation) = checked else {
        return Err(fail(ApiError::new(StatusCode::UNAUTHORIZED, FAILED)));
    };

    // The password is right: a session, or first a second step.
    let remember = remember_me.is_some_and(|f| f.is_set());
    let signed = crate::server::signin::session::SignIn {
        user: &user,
        remember,
        ip,
        ua: ua.clone(),
        rd: &rd,
    };
    crate::server::signin::session::after_password(state, headers, signed, credentials, reservation)
        .await
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use proptest::prelude::*;

    fn run(ct: &str, body: Vec<u8>, limit: usize) -> Result<LoginInput, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // The route's limit, as the router applies it.
            let req = {
                let (parts, body) = req.into_parts();
                let body = Body::new(http_body_util::Limited::new(body, limit));
                Request::from_parts(parts, body)
            };
            parse(&(), req).await
        })
    }

    /// Checks an answer: an accepted input is within bounds; a refusal is a
    /// 4xx whose message does not repeat the password.
    fn check(r: Result<LoginInput, ApiError>, password: &str) {
        match r {
            Ok(i) => {
                assert!(!i.username.is_empty() && i.username.len() <= MAX_USER);
                assert!(!i.username.chars().any(char::is_control));
                assert!(!i.password.is_empty() && !i.password.too_long());
                assert!(password.len() < 4 || !format!("{i:?}").contains(password));
            }
            Err(e) => {
                assert!(e.status.is_client_error(), "{}", e.status);
                if password.len() >= 4 {
                    assert!(!e.message.contains(password), "{}", e.message);
                }
            }
        }
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,10}",
            "(?s).{0,40}",
            ".{120,140}",
            Just("a\r\nSet-Cookie: x=y".to_string()),
            Just("x".repeat(crate::server::guard::MAX_PASSWORD + 1)),
        ]
    }

    proptest! {
        /// Form bodies built from random fields, and random bytes.
        #[test]
        fn form_bodies(user in field(), pw in field(), extra in "[a-z_=&%0-9A-F]{0,30}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("username", &user)
                .append_pair("password", &pw)
                .finish() + "&" + &extra;
            check(run("application/x-www-form-urlencoded", body.into_bytes(), 16384), &pw);
            check(run("application/x-www-form-urlencoded", raw, 16384), "");
        }

        /// JSON bodies with random values of random types, and random bytes.
        #[test]
        fn json_bodies(
            user in prop_oneof![field().prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null), Just(serde_json::json!(["a"]))],
            pw in field(),
            remember in prop_oneof![any::<bool>().prop_map(serde_json::Value::from), "[a-z]{0,5}".prop_map(serde_json::Value::from), any::<u8>().prop_map(serde_json::Value::from)],
            raw in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let body = serde_json::json!({"username": user, "password": pw, "remember_me": remember});
            check(run("application/json", body.to_string().into_bytes(), 16384), &pw);
            check(run("application/json", raw, 16384), "");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let i = run(
            "application/x-www-form-urlencoded",
            b"username=bob&password=correct-horse-battery".to_vec(),
            16384,
        )
        .unwrap();
        let d = format!("{i:?}");
        assert!(d.contains("bob") && !d.contains("correct-horse"), "{d}");
    }

    #[test]
    fn refusals() {
        let e = run(
            "application/json",
            br#"{"username": 5, "password": "hunter2-secret"}"#.to_vec(),
            16384,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!e.message.contains("hunter2"));
        let e = run(
            "application/json",
            b"{\"username\": \"a\", \"password\": 123456789}".to_vec(),
            16384,
        )
        .unwrap_err();
        assert!(!e.message.contains("123456789"), "{}", e.message);
        let e = run("application/json", vec![b'{'; 100], 50).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = run("text/plain", b"x".to_vec(), 50).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = run(
            "application/x-www-form-urlencoded",
            b"username=a%0d%0ab&password=x".to_vec(),
            50,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
