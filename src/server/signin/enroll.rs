//! Enrollment during a pending sign-in (`/login/enroll`): a user who must
//! have a second factor and has none sets one up before the session starts.

use std::net::IpAddr;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::client::ClientIp;
use crate::server::factors::enroll::{confirm_totp, enrolling, enrolling_or_new};
use crate::server::pages;
use crate::server::respond::{ApiError, user_agent, wants_json};
use crate::server::signin::redirect::rd_of;
use crate::server::signin::session::{SignIn, complete, signed_in};
use crate::server::signin::step::CodeInput;
use crate::server::state::AppState;
use crate::store::{EnrollerId, Method, PendingSignIn, TokenHash};

// --------------------------------------------------- pending enrollment

/// `GET /login/enroll`: a pending sign-in that must enroll sees the QR
/// code of a fresh secret (the one it started, if any).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let rd = rd_of(query.as_deref());
    let run = async {
        let Some((hash, p)) = crate::server::factors::pending::pending_of(&state, &headers)
            .await?
            .filter(|(_, p)| p.enroll)
        else {
            return Ok(crate::server::respond::see_other(
                &crate::server::signin::redirect::next_page(false, &rd),
            ));
        };
        let secret = enrolling_or_new(&state, &p.user, EnrollerId::Pending(hash.0)).await?;
        Ok::<_, ApiError>(pages::factors::enroll_totp(
            StatusCode::OK,
            &pages::factors::EnrollView {
                user: &p.user,
                secret: &secret,
                action: "/login/enroll",
                rd: &rd,
                error: None,
                required: true,
                passkeys: crate::server::factors::passkeys::available(&state, &headers),
            },
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `POST /login/enroll` with `code`: confirms, signs in, shows the
/// recovery codes once with a way on to `rd`.
pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let input: CodeInput = match crate::server::extract::json_or_form(&state, req).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let rd = crate::server::signin::redirect::bounded_rd(input.rd.clone());
    let run = async {
        let Some((hash, p)) = crate::server::factors::pending::pending_of(&state, &headers)
            .await?
            .filter(|(_, p)| p.enroll)
        else {
            return Ok(crate::server::respond::see_other(
                &crate::server::signin::redirect::next_page(false, &rd),
            ));
        };
        let by = EnrollerId::Pending(hash.0);
        let ua = user_agent(&headers);
        let codes = match confirm_totp(&state, &p.user, by, &input.code, ip, ua).await {
            Ok(c) => c,
            Err(e) if e.status == StatusCode::BAD_REQUEST && !wants_json(&headers) => {
                let secret = enrolling(&state, &p.user, by).await?;
                let Some(secret) = secret else { return Err(e) };
                return Ok(pages::factors::enroll_totp(
                    e.status,
                    &pages::factors::EnrollView {
                        user: &p.user,
                        secret: &secret,
                        action: "/login/enroll",
                        rd: &rd,
                        error: Some(&e.message),
                        required: true,
                        passkeys: crate::server::factors::passkeys::available(&state, &headers),
                    },
                ));
            }
            Err(e) => return Err(e),
        };
        let created = finish_enrollment(&state, &headers, hash, &p, ip).await?;
        let target = crate::server::signin::redirect::safe_redirect(&state.config, &headers, &rd)
            .unwrap_or_else(|| "/".into());
        let signed = signed_in(&state, &headers, ip, &p.user, &created, p.remember_me, &rd);
        let mut res = pages::factors::recovery_codes(
            codes.as_ref().map(|c| c.shown()).unwrap_or(&[]),
            &target,
            Some(&p.user),
        );
        for v in signed.headers().get_all(axum::http::header::SET_COOKIE) {
            res.headers_mut()
                .append(axum::http::header::SET_COOKIE, v.clone());
        }
        Ok::<_, ApiError>(res)
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// Turns a pending sign-in that just enrolled TOTP into its session.
pub async fn finish_enrollment(
    state: &AppState,
    headers: &HeaderMap,
    hash: TokenHash,
    p: &PendingSignIn,
    ip: Option<IpAddr>,
) -> Result<crate::store::CreatedSession, ApiError> {
    let Some(user) = state.user_for_login(&p.user).0 else {
        return Err(ApiError::unauthorized());
    };
    let s = SignIn {
        user: &user,
        remember: p.remember_me,
        ip,
        ua: user_agent(headers),
        rd: "",
    };
    complete(state, hash, &s, Method::Totp)
        .await?
        .ok_or_else(crate::server::factors::pending::no_sign_in)
}
