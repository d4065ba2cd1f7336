//! The sign-in page.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::server::pages::{csp_with_form_target, layout, respond_with_csp};

/// What the sign-in page shows.
pub struct LoginView<'a> {
    /// Why the last attempt failed, shown next to the form.
    pub error: Option<&'a str>,
    /// The name typed last time, so it need not be typed again.
    pub username: &'a str,
    /// Where to go after signing in, carried through the form as it came.
    pub rd: &'a str,
    /// The origin `rd` leads to when it is another site of ours (already
    /// checked as a safe redirect): named on the page, and allowed as a
    /// form target in the page's policy.
    pub continue_to: Option<&'a str>,
    /// Offer signing in with a passkey alone.
    pub passkeys: bool,
}

/// The sign-in page.
pub fn page(status: StatusCode, v: &LoginView<'_>) -> Response {
    let error_id = "login-error";
    let invalid = v.error.is_some().then_some("true");
    let described = v.error.is_some().then_some(error_id);
    let content = html! {
        div.card {
            h1 { "Sign in" }
            @if let Some(to) = v.continue_to {
                p.lead { "to continue to " strong { (host_of(to)) } }
            } @else {
                p.lead { "with your " (crate::server::pages::PRODUCT) " account" }
            }
            form.stack method="post" action="/login" {
                @if let Some(e) = v.error {
                    p.error id=(error_id) role="alert" { (e) }
                }
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username"
                    autocapitalize="none" spellcheck="false" required autofocus[v.error.is_none()]
                    value=(v.username) aria-invalid=[invalid] aria-describedby=[described];
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password"
                    required autofocus[v.error.is_some()] aria-invalid=[invalid] aria-describedby=[described];
                label.check for="remember_me" {
                    input #remember_me name="remember_me" type="checkbox" value="on";
                    "Keep me signed in"
                }
                input type="hidden" name="rd" value=(v.rd);
                button type="submit" { "Sign in" }
            }
            @if v.passkeys {
                div.actions {
                    button.secondary type="button" data-passkey="sign-in"
                        data-start="/login/passkey/discover/start"
                        data-finish="/login/passkey/discover/finish" data-rd=(v.rd) {
                        "Sign in with a passkey"
                    }
                }
                (crate::server::pages::passkey_script())
            }
        }
    };
    let page = layout("Sign in", None, false, content);
    let csp = csp_with_form_target(v.continue_to);
    let csp = if v.passkeys {
        crate::server::pages::with_passkey_script(&csp)
    } else {
        csp
    };
    respond_with_csp(status, page, &csp)
}

/// `https://app.example.com:8443` -> `app.example.com:8443`.
fn host_of(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body(r: Response) -> String {
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn values_are_escaped_and_the_error_is_tied_to_the_fields() {
        let r = page(
            StatusCode::UNAUTHORIZED,
            &LoginView {
                error: Some("Wrong <b>"),
                username: "\"><script>alert(1)</script>{{rd}}",
                rd: "/x?a=1&b=\"2\"",
                continue_to: Some("https://app.example.com"),
                passkeys: false,
            },
        );
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("form-action 'self' https://app.example.com"),
            "{csp}"
        );
        let html = body(r).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;{{rd}}\""),
            "{html}"
        );
        assert!(
            html.contains("value=\"/x?a=1&amp;b=&quot;2&quot;\""),
            "{html}"
        );
        assert!(html.contains("Wrong &lt;b&gt;"), "{html}");
        assert!(html.contains("aria-describedby=\"login-error\""), "{html}");
        assert!(
            html.contains("to continue to <strong>app.example.com</strong>"),
            "{html}"
        );
    }
}
