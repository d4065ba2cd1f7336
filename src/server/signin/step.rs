//! The second step: `GET /login/second-factor` (the page), `POST
//! /login/totp` and `POST /login/recovery`.
//!
//! Two callers reach it: a pending sign-in (its cookie), which the step
//! turns into a session; and a signed-in session that meets an app asking
//! for two factors (step-up), which the step moves to a new token that
//! records the factor. Each attempt goes through the same gate as a
//! password (bans, the failure limit reserved first), and a wrong code
//! counts, logs and audits like a wrong password.

use std::net::IpAddr;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::identity::recovery;
use crate::identity::signin::{self, Need, Next};
use crate::identity::totp::TotpError;
use crate::server::authed::{Authed, lookup};
use crate::server::client::ClientIp;
use crate::server::factors::{change, factors_of, open_totp};
use crate::server::guard::{admit, audit, regulate};
use crate::server::pages;
use crate::server::respond::{ApiError, user_agent, wants_json};
use crate::server::signin::redirect::{bounded_rd, next_page, rd_of};
use crate::server::signin::session::{SignIn, complete};
use crate::server::state::AppState;
use crate::store::{
    BanSubject, EventKind, FactorChange, FactorRefusal, FactorStore, Method, NewEvent,
    PendingSignIn, RegulationStore, TokenHash, now_ms,
};

/// Longest code accepted (a recovery code with its dashes, with room).
const MAX_CODE: usize = 64;

/// A code typed or sent. `Debug` never prints it.
#[derive(Deserialize, Default)]
pub struct CodeInput {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub rd: Option<String>,
}

impl std::fmt::Debug for CodeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeInput(<redacted>)")
    }
}

/// What a second step offers as proof.
pub enum Proof {
    /// A TOTP or recovery code as typed.
    Code(String),
    /// A passkey's answer to the ceremony whose state is kept.
    Passkey {
        state: Vec<u8>,
        response: serde_json::Value,
    },
}

/// Who is doing the second step.
pub enum Stepper {
    /// A sign-in between its password and its second step.
    Pending(TokenHash, PendingSignIn),
    /// A signed-in session adding a factor (step-up).
    Session(Box<Authed>),
}

impl Stepper {
    /// The request's pending sign-in, else its session; `None` for neither.
    pub async fn of(state: &AppState, headers: &HeaderMap) -> Result<Option<Stepper>, ApiError> {
        if let Some((hash, p)) = crate::server::factors::pending::pending_of(state, headers).await?
        {
            return Ok(Some(Stepper::Pending(hash, p)));
        }
        Ok(lookup(state, headers)
            .await?
            .map(|a| Stepper::Session(Box::new(a))))
    }

    pub fn user(&self) -> &str {
        match self {
            Stepper::Pending(_, p) => &p.user,
            Stepper::Session(a) => &a.user.name,
        }
    }
}

/// `GET /login/second-factor`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let rd = rd_of(query.as_deref());
    let who = match Stepper::of(&state, &headers).await {
        Ok(Some(w)) => w,
        Ok(None) => return expired_page(&rd),
        Err(e) => return e.into_response(),
    };
    if let Stepper::Pending(_, p) = &who
        && p.enroll
    {
        return crate::server::respond::see_other(&next_page(true, &rd));
    }
    let set = match factors_of(&state, who.user()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let step_up = matches!(who, Stepper::Session(_));
    pages::factors::second_step(
        StatusCode::OK,
        &pages::factors::StepView {
            user: who.user(),
            methods: &set.methods(),
            recovery_left: set.recovery.len(),
            rd: &rd,
            error: None,
            step_up,
            continue_to: crate::server::signin::redirect::continue_to(&state, &headers, &rd)
                .as_deref(),
            passkeys: crate::server::factors::passkeys::available(&state, &headers),
        },
    )
}

/// The page for a sign-in that is no longer there.
fn expired_page(rd: &str) -> Response {
    let again = if rd.is_empty() {
        "/login".to_string()
    } else {
        format!(
            "/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", rd)
                .finish()
        )
    };
    pages::message(
        StatusCode::UNAUTHORIZED,
        "Sign in again",
        "This sign-in has expired or was already used. Sign in again with your password.",
        (&again, "Sign in"),
    )
}

/// `POST /login/totp`.
pub async fn totp(State(state): State<AppState>, ClientIp(ip): ClientIp, req: Request) -> Response {
    second_step(state, ip, req, Method::Totp).await
}

/// `POST /login/recovery`.
pub async fn recovery(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    second_step(state, ip, req, Method::Recovery).await
}

async fn second_step(
    state: AppState,
    ip: Option<IpAddr>,
    req: Request,
    method: Method,
) -> Response {
    let headers = req.headers().clone();
    let json = wants_json(&headers);
    let input: CodeInput = match crate::server::extract::json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let rd = bounded_rd(input.rd.clone());
    let who = match Stepper::of(&state, &headers).await {
        Ok(Some(w)) => w,
        Ok(None) if json => {
            return crate::server::factors::pending::no_sign_in().into_response();
        }
        Ok(None) => return expired_page(&rd),
        Err(e) => return e.into_response(),
    };
    let proof = Proof::Code(input.code.clone());
    match attempt_with(&state, ip, &headers, &who, method, &proof, &rd).await {
        Ok(res) => res,
        Err(e) if json => e.into_response(),
        Err(e) => {
            let set = factors_of(&state, who.user()).await.unwrap_or_default();
            let mut res = pages::factors::second_step(
                e.status,
                &pages::factors::StepView {
                    user: who.user(),
                    methods: &set.methods(),
                    recovery_left: set.recovery.len(),
                    rd: &rd,
                    error: Some(&e.message),
                    step_up: matches!(who, Stepper::Session(_)),
                    continue_to: crate::server::signin::redirect::continue_to(
                        &state, &headers, &rd,
                    )
                    .as_deref(),
                    passkeys: crate::server::factors::passkeys::available(&state, &headers),
                },
            );
            if let Some(s) = e.retry_after {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            res
        }
    }
}

/// Why a code was refused, for the audit trail.
enum Failed {
    Malformed,
    Wrong,
    /// A TOTP code already used; the step it replays.
    Replayed(u64),
}

impl Failed {
    fn reason(&self) -> &'static str {
        match self {
            Failed::Malformed => "malformed",
            Failed::Wrong => "wrong",
            Failed::Replayed(_) => "replayed",
        }
    }

    /// What the person is told.
    fn message(&self) -> &'static str {
        match self {
            Failed::Replayed(_) => "This code was already used. Wait for the next one.",
            _ => "Wrong code.",
        }
    }
}

/// One second step of `who` with `method` and `proof`: through the gate,
/// checked, counted when wrong, and on success a session (or a stepped-up
/// one) answered as a sign-in.
pub async fn attempt_with(
    state: &AppState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    who: &Stepper,
    method: Method,
    proof: &Proof,
    rd: &str,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let ua = user_agent(headers);
    let (user, _) = state.user_for_login(who.user());
    let Some(user) = user else {
        return Err(crate::server::factors::pending::no_sign_in());
    };
    let mut subjects = vec![BanSubject::User(user.name.clone())];
    subjects.extend(ip.map(BanSubject::ip));
    let reservation = admit(state, &subjects, true, &user.name, ip, &ua, now).await?;
    let step_up = matches!(who, Stepper::Session(_));
    let set = factors_of(state, &user.name).await?;
    if !set.methods().contains(&method) {
        return Err(ApiError::bad_request(match method {
            Method::Recovery => "you have no recovery codes left",
            _ => "this method is not set up for your account",
        }));
    }
    let code = match proof {
        Proof::Code(c) => c.trim(),
        Proof::Passkey { .. } => "",
    };
    // Unused recovery codes after spending one, from the write itself.
    let mut recovery_left = None;
    let checked: Result<(), Failed> = if method != Method::WebAuthn
        && (code.is_empty() || code.len() > MAX_CODE)
    {
        Err(Failed::Malformed)
    } else {
        match method {
            Method::Totp => {
                let Some(totp) = set.totp.as_ref() else {
                    return Err(ApiError::bad_request(
                        "this method is not set up for your account",
                    ));
                };
                let secret = open_totp(state, &user.name, &totp.sealed)?;
                match secret.verify(code, now / 1000, totp.last_step) {
                    Ok(step) => {
                        // The step is stored in the same write that accepts
                        // it: two requests with one code succeed once.
                        let event = (!step_up).then(|| success_event(&user.name, ip, &ua, method));
                        match change(state, &user.name, FactorChange::UseTotp { step }, event)
                            .await?
                        {
                            Ok(()) => Ok(()),
                            Err(FactorRefusal::Replayed) => Err(Failed::Replayed(step)),
                            Err(_) => Err(Failed::Wrong),
                        }
                    }
                    // The code is of a step at or before the last one used.
                    Err(TotpError::Replayed) => {
                        Err(Failed::Replayed(totp.last_step.unwrap_or_default()))
                    }
                    Err(TotpError::Malformed) => Err(Failed::Malformed),
                    Err(_) => Err(Failed::Wrong),
                }
            }
            Method::Recovery => match recovery::hash(code) {
                None => Err(Failed::Malformed),
                Some(h) => {
                    let event = NewEvent::now(EventKind::MfaRecoveryUsed)
                        .user(user.name.clone())
                        .ip(ip)
                        .user_agent(ua.clone())
                        .detail("method", method.as_str());
                    let used = state
                        .store
                        .change_factors(
                            &user.name,
                            FactorChange::UseRecovery { hash: h.0 },
                            Some(event),
                            now_ms(),
                        )
                        .await
                        .map_err(|e| ApiError::internal("updating second factors failed", &e))?;
                    match used {
                        Ok(applied) => {
                            recovery_left = Some(applied.recovery_left);
                            Ok(())
                        }
                        Err(_) => Err(Failed::Wrong),
                    }
                }
            },
            Method::WebAuthn => {
                let Proof::Passkey {
                    state: st,
                    response,
                } = proof
                else {
                    return Err(ApiError::bad_request("a passkey answer is required"));
                };
                let pk = crate::server::factors::passkeys::passkeys_for(state, headers)?;
                let creds: Vec<Vec<u8>> =
                    set.passkeys.iter().map(|p| p.credential.clone()).collect();
                match pk.finish_authentication(st, response, &creds) {
                    Ok((credential_id, updated)) => {
                        let stored = set
                            .passkeys
                            .iter()
                            .find(|p| p.credential_id == credential_id)
                            .map(|p| p.credential.clone())
                            .unwrap_or_default();
                        let event = (!step_up).then(|| success_event(&user.name, ip, &ua, method));
                        let used = FactorChange::UsePasskey {
                            credential_id,
                            credential: updated.unwrap_or(stored),
                        };
                        match change(state, &user.name, used, event).await? {
                            Ok(()) => Ok(()),
                            Err(_) => Err(Failed::Wrong),
                        }
                    }
                    Err(_) => Err(Failed::Wrong),
                }
            }
            Method::Password => Err(Failed::Wrong),
        }
    };
    // A pending sign-in moves on as the state machine says.
    if let Stepper::Pending(_, p) = who {
        let machine = signin::Pending {
            user: p.user.clone(),
            need: if p.enroll {
                Need::Enrollment
            } else {
                Need::SecondFactor(set.methods())
            },
            remember_me: p.remember_me,
            expires_ms: p.expires_ms,
        };
        match signin::second_step(&machine, method, checked.is_ok(), now) {
            Next::Expired => {
                return Err(crate::server::factors::pending::no_sign_in());
            }
            Next::NotOffered => {
                return Err(ApiError::bad_request(
                    "this method is not set up for your account",
                ));
            }
            Next::Retry | Next::Session(_) => {}
        }
    }
    state.metrics.second_step(method, checked.is_ok());
    if let Err(wrong) = checked {
        // A code already used counts once per step: retyping the code just
        // used, within its 30 seconds, is a slip, not a guess.
        let counted = match wrong {
            // A store that cannot say counts it: never fewer failures.
            Failed::Replayed(step) => state
                .store
                .first_replay(&state.config.regulation, &user.name, step)
                .await
                .unwrap_or(true),
            _ => true,
        };
        let mut event = NewEvent::now(EventKind::MfaFailure)
            .user(user.name.clone())
            .ip(ip)
            .user_agent(ua.clone())
            .detail("method", method.as_str())
            .detail("reason", wrong.reason());
        if counted {
            state.metrics.login_failure.inc();
            // The same line as a wrong password: fail2ban counts it.
            tracing::warn!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user.name, method = %method, "login failed");
        } else {
            tracing::info!(target: "gatehouse::auth", ip = %crate::server::respond::ip_str(ip), user = ?user.name, method = %method, "code already used; counted once for its step");
            event = event.detail("counted", "false");
        }
        audit(state, event).await;
        if counted {
            regulate(state, reservation, ip, now).await;
        } else {
            // Released uncounted.
            drop(reservation);
        }
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, wrong.message()));
    }
    let created = match who {
        Stepper::Pending(hash, p) => {
            let s = SignIn {
                user: &user,
                remember: p.remember_me,
                ip,
                ua: ua.clone(),
                rd,
            };
            complete(state, *hash, &s, method).await?
        }
        Stepper::Session(me) => state
            .store
            .step_up(
                me.hash,
                method,
                success_event(&user.name, ip, &ua, method).detail("step_up", "true"),
                now,
            )
            .await
            .map_err(|e| ApiError::internal("recording the second factor failed", &e))?,
    };
    let Some(created) = created else {
        return Err(crate::server::factors::pending::no_sign_in());
    };
    reservation.succeed(now).await;
    let remember = created.session.remember_me;
    // After a recovery code, the person is told how many are left (as the
    // write that spent it counted them).
    Ok(crate::server::signin::session::signed_in_with(
        state,
        headers,
        ip,
        &user.name,
        &created,
        remember,
        rd,
        recovery_left,
    ))
}

fn success_event(user: &str, ip: Option<IpAddr>, ua: &Option<String>, method: Method) -> NewEvent {
    NewEvent::now(EventKind::MfaSuccess)
        .user(user.to_string())
        .ip(ip)
        .user_agent(ua.clone())
        .detail("method", method.as_str())
}
