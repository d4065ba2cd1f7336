//! The sessions page (`/sessions`) and the confirmation before signing out
//! every other session.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::server::pages::describe::{browser_and_os, exact, machine, relative};
use crate::server::pages::{Viewer, layout, respond};
use crate::store::{PublicId, Session};

/// A message after an action on the page, chosen by a fixed code in the
/// query so that no text from the URL reaches the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// One session was signed out.
    SignedOutOne,
    /// Every other session was signed out.
    SignedOutOthers,
}

impl Notice {
    /// The query value that names this notice.
    pub fn code(self) -> &'static str {
        match self {
            Notice::SignedOutOne => "signed-out",
            Notice::SignedOutOthers => "signed-out-others",
        }
    }

    /// The notice a query value names, if any.
    pub fn from_code(code: &str) -> Option<Notice> {
        [Notice::SignedOutOne, Notice::SignedOutOthers]
            .into_iter()
            .find(|n| n.code() == code)
    }

    fn text(self) -> &'static str {
        match self {
            Notice::SignedOutOne => "That session is signed out.",
            Notice::SignedOutOthers => "All your other sessions are signed out.",
        }
    }
}

/// What the sessions page shows.
pub struct SessionsView<'a> {
    pub user: &'a str,
    /// The user's sessions, newest first.
    pub sessions: &'a [Session],
    /// The session viewing the page.
    pub current: PublicId,
    pub now_ms: u64,
    pub notice: Option<Notice>,
    /// The names of the apps each session signed into (OpenID Connect).
    pub apps: &'a std::collections::HashMap<PublicId, Vec<String>>,
}

/// The sessions page.
pub fn page(v: &SessionsView<'_>) -> Response {
    let others = v.sessions.iter().filter(|s| s.id != v.current).count();
    let content = html! {
        div.card {
            h1 { "Your sessions" }
            p.lead { "Browsers and devices signed in as " strong { (v.user) } ", newest first." }
            @if let Some(n) = v.notice {
                p.notice role="status" { (n.text()) }
            }
            ul.sessions {
                @for s in v.sessions {
                    (row(s, s.id == v.current, v.now_ms, v.apps.get(&s.id)))
                }
            }
            div.actions {
                a.button.secondary href="/account/security" { "Sign-in security" }
                @if others > 0 {
                    a.button.secondary href="/sessions/revoke-others" { "Sign out all other sessions" }
                }
                a.button.secondary href="/tokens" { "Access tokens" }
                form method="post" action="/logout" {
                    button type="submit" { "Sign out" }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(
            "Your sessions",
            Some(Viewer { user: v.user }),
            true,
            content,
        ),
    )
}

fn row(s: &Session, current: bool, now: u64, apps: Option<&Vec<String>>) -> Markup {
    let device = browser_and_os(s.user_agent.as_deref());
    let ip = s.ip.map(|i| i.to_string());
    html! {
        li {
            div {
                div {
                    span.device title=[s.user_agent.as_deref()] { (device) }
                    @if current { span.badge { "This session" } }
                }
                p.meta {
                    "Signed in " (when(s.created_ms, now)) " with " (how(s.methods))
                    " · last active " (when(s.last_seen_ms, now))
                    @if let Some(ip) = &ip { " · from " (ip) }
                }
                @if s.remember_me {
                    p.meta { "Kept signed in until " (exact(s.absolute_deadline_ms)) }
                }
                @if let Some(apps) = apps.filter(|a| !a.is_empty()) {
                    p.meta.apps { "Signed in to " (apps.join(", ")) }
                }
            }
            // The session viewing the page signs out with the one
            // "Sign out" button below the list.
            @if !current {
                form method="post" action="/sessions/revoke" {
                    input type="hidden" name="id" value=(s.id.to_string());
                    button.danger type="submit" {
                        "Sign out"
                        span.sr { " " (device) ", signed in " (relative(now, s.created_ms)) }
                    }
                }
            }
        }
    }
}

/// How a session was signed in, in words.
fn how(m: crate::store::Methods) -> &'static str {
    use crate::store::Method;
    if m.contains(Method::WebAuthn) && !m.contains(Method::Password) {
        "a passkey"
    } else if m.contains(Method::WebAuthn) {
        "password and passkey"
    } else if m.contains(Method::Totp) {
        "password and authenticator app"
    } else if m.contains(Method::Recovery) {
        "password and recovery code"
    } else {
        "password"
    }
}

/// A relative time with the exact one in its `title`.
fn when(ms: u64, now: u64) -> Markup {
    html! {
        time datetime=(machine(ms)) title=(exact(ms)) { (relative(now, ms)) }
    }
}

/// The sign-out page: a plain form that signs this browser out. Links from
/// other sites (the 403 page an app shows through the proxy) lead here,
/// because a form on their origin would be refused as cross-site.
pub fn sign_out(user: &str) -> Response {
    let content = html! {
        div.card {
            h1 { "Sign out?" }
            p {
                "You are signed in as " strong { (user) } ". Signing out ends this session; "
                "you can then sign in with another account."
            }
            div.actions {
                form method="post" action="/logout" {
                    button type="submit" { "Sign out" }
                }
                a href="/sessions" { "Cancel" }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout("Sign out", Some(Viewer { user }), false, content),
    )
}

/// The confirmation before signing out every other session: a plain form,
/// no script.
pub fn confirm_others(user: &str, others: usize) -> Response {
    let s = if others == 1 { "" } else { "s" };
    let content = html! {
        div.card {
            h1 { "Sign out " (others) " other session" (s) "?" }
            p {
                "Every other browser and device signed in as " strong { (user) }
                " will have to sign in again. This session stays signed in."
            }
            div.actions {
                form method="post" action="/sessions/revoke-others" {
                    button.danger type="submit" { "Sign out other sessions" }
                }
                a href="/sessions" { "Cancel" }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(
            "Sign out other sessions",
            Some(Viewer { user }),
            false,
            content,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_codes_round_trip() {
        for n in [Notice::SignedOutOne, Notice::SignedOutOthers] {
            assert_eq!(Notice::from_code(n.code()), Some(n));
        }
        assert_eq!(Notice::from_code("<script>"), None);
    }
}
