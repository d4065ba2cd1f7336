//! The OpenID Connect provider's pages: the consent page, the error page
//! for requests that cannot go back to their app, the page of an app a user
//! may not use, and the "Connected apps" section of the account page.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::server::pages::describe::relative;
use crate::server::pages::{Viewer, csp_with_form_target, layout, respond, respond_with_csp};

/// What the consent page shows.
pub struct ConsentView<'a> {
    pub user: &'a str,
    /// The client's display name.
    pub app: &'a str,
    /// Where the app will receive the answer (its origin or scheme).
    pub app_origin: &'a str,
    pub scopes: &'a [String],
    /// The authorization request, to run again once answered.
    pub request: &'a str,
}

/// What a scope gives the app, in words.
fn scope_words(scope: &str) -> Option<&'static str> {
    match scope {
        "profile" => Some("your user name and display name"),
        "email" => Some("your email address"),
        "groups" => Some("the groups you are in"),
        "offline_access" => Some("access while you are away, until you sign out"),
        _ => None,
    }
}

/// `GET /oidc/authorize` for a client that asks first.
pub fn consent(v: &ConsentView<'_>) -> Response {
    let content = html! {
        div.card {
            h1 { "Allow " (v.app) "?" }
            p.lead { (v.app) " asks to sign you in with your " (crate::server::pages::PRODUCT) " account." }
            p { "It will learn that you are " strong { (v.user) } ", and:" }
            ul.scopes {
                li { "a stable identifier for your account" }
                @for s in v.scopes {
                    @if let Some(w) = scope_words(s) {
                        li { (w) }
                    }
                }
            }
            // Allow and Deny side by side, as on the other confirmation
            // pages (`.stack` makes each button full-width).
            form method="post" action="/oidc/consent" {
                input type="hidden" name="request" value=(v.request);
                div.actions {
                    button type="submit" name="decision" value="allow" { "Allow" }
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
            p.meta { "You can withdraw this later under " a href="/account/security" { "Security" } "." }
        }
    };
    respond_with_csp(
        StatusCode::OK,
        layout(
            "Allow access",
            Some(Viewer { user: v.user }),
            false,
            content,
        ),
        &csp_with_form_target(Some(v.app_origin)),
    )
}

/// A request that cannot be answered to its app (an unknown client, a
/// redirect URI not registered): shown here, never redirected.
pub fn error(message: &str) -> Response {
    let content = html! {
        div.card {
            h1 { "This sign-in request cannot be used" }
            p.error role="alert" { (message) }
            p { "Go back to the app and try again. If this keeps happening, tell whoever runs it." }
            p { a href="/sessions" { "Your sessions" } }
        }
    };
    respond(
        StatusCode::BAD_REQUEST,
        layout("Sign-in request refused", None, false, content),
    )
}

/// A signed-in user whom the client's `subjects` do not name.
pub fn not_allowed(user: &str, app: &str) -> Response {
    let content = html! {
        div.card {
            h1 { "No access" }
            p { "You are signed in as " strong { (user) } ", and this account may not use " strong { (app) } "." }
            p { "If you have another account with access, sign out and sign in with it." }
            div.actions { a.button href="/logout" { "Sign out" } }
        }
    };
    respond(
        StatusCode::FORBIDDEN,
        layout("No access", Some(Viewer { user }), false, content),
    )
}

/// One connected app, as the account page lists it.
pub struct AppRow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub consented: bool,
    pub sessions: usize,
    pub last_issued_ms: u64,
}

/// The "Connected apps" section of the account page.
pub fn connected_apps(rows: &[AppRow<'_>], now_ms: u64) -> Markup {
    html! {
        section.card.spaced id="apps" {
            h2 { "Connected apps" }
            @if rows.is_empty() {
                p.meta { "No app signs in with your account." }
            } @else {
                ul.list {
                    @for r in rows {
                        li data-app=(r.id) {
                            strong { (r.name) }
                            " · "
                            @if r.sessions > 0 {
                                "signed in from " (r.sessions) " session" @if r.sessions != 1 { "s" }
                            } @else if r.consented {
                                "allowed, not signed in"
                            }
                            @if r.last_issued_ms > 0 {
                                " · last " (relative(now_ms, r.last_issued_ms))
                            }
                            form.inline method="post" action="/account/apps/disconnect" {
                                input type="hidden" name="client" value=(r.id);
                                button.secondary type="submit" {
                                    "Disconnect"
                                    span.sr { " " (r.name) }
                                }
                            }
                        }
                    }
                }
                p.meta { "Disconnecting withdraws your consent and revokes every token the app holds for you." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body(r: Response) -> String {
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_consent_form_may_lead_to_the_app_and_keeps_the_request_escaped() {
        let scopes = ["openid".to_string(), "email".to_string()];
        let r = consent(&ConsentView {
            user: "bob",
            app: "<Notes>",
            app_origin: "https://notes.example.com",
            scopes: &scopes,
            request: "client_id=notes&state=\"x\"",
        });
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("form-action 'self' https://notes.example.com;"),
            "{csp}"
        );
        let html = body(r).await;
        assert!(html.contains("action=\"/oidc/consent\""), "{html}");
        assert!(
            html.contains("value=\"client_id=notes&amp;state=&quot;x&quot;\""),
            "{html}"
        );
        assert!(html.contains("Allow &lt;Notes&gt;?"), "{html}");
        assert!(html.contains("your email address"), "{html}");
        assert!(!html.contains("user name and display name"), "{html}");
        // The two answers: one form, one `decision` each.
        assert!(html.contains("name=\"decision\" value=\"allow\""), "{html}");
        assert!(html.contains("name=\"decision\" value=\"deny\""), "{html}");
    }

    #[test]
    fn each_disconnect_button_names_its_app() {
        let rows = [
            AppRow {
                id: "grafana",
                name: "Grafana",
                consented: true,
                sessions: 2,
                last_issued_ms: 1_000,
            },
            AppRow {
                id: "wiki",
                name: "Wiki",
                consented: true,
                sessions: 0,
                last_issued_ms: 0,
            },
        ];
        let html = connected_apps(&rows, 61_000).into_string();
        assert!(html.contains("class=\"card spaced\""), "{html}");
        assert!(html.contains("signed in from 2 sessions"), "{html}");
        assert!(html.contains("allowed, not signed in"), "{html}");
        for (id, name) in [("grafana", "Grafana"), ("wiki", "Wiki")] {
            let form = format!("<input type=\"hidden\" name=\"client\" value=\"{id}\">");
            assert!(html.contains(&form), "{html}");
            let button = format!("Disconnect<span class=\"sr\"> {name}</span>");
            assert!(html.contains(&button), "{html}");
        }
        assert!(
            connected_apps(&[], 0)
                .into_string()
                .contains("No app signs in")
        );
    }
}
