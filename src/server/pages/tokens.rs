//! The access tokens page (`/tokens`): the person's tokens, a form to
//! create one (the new token is shown on the answer to that form, once),
//! and a revoke button each. Plain forms, no script.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::server::pages::describe::{exact, machine, relative};
use crate::server::pages::{Viewer, layout, respond};
use crate::store::AccessTokenInfo;

/// A message after an action on the page, chosen by a fixed code in the
/// query so that no text from the URL reaches the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A token was revoked.
    Revoked,
}

impl Notice {
    /// The query value that names this notice.
    pub fn code(self) -> &'static str {
        match self {
            Notice::Revoked => "revoked",
        }
    }

    /// The notice a query value names, if any.
    pub fn from_code(code: &str) -> Option<Notice> {
        [Notice::Revoked].into_iter().find(|n| n.code() == code)
    }

    fn text(self) -> &'static str {
        match self {
            Notice::Revoked => "That token is revoked: it no longer works anywhere.",
        }
    }
}

/// What the tokens page shows.
pub struct TokensView<'a> {
    pub user: &'a str,
    /// The user's live tokens, newest first.
    pub tokens: &'a [AccessTokenInfo],
    pub now_ms: u64,
    pub notice: Option<Notice>,
    /// A token just created and its secret, shown this once.
    pub created: Option<(&'a AccessTokenInfo, &'a str)>,
    /// Why the last form was refused.
    pub error: Option<&'a str>,
    pub max_days: u64,
    pub default_days: u64,
}

/// The form's error in words for the page (the API's names the JSON field).
pub fn error_text(api_message: &str) -> String {
    let (field, rest) = api_message.split_once(": ").unwrap_or(("", api_message));
    let what = match field {
        "name" => "Name",
        "expires_in_days" => "Expires in (days)",
        f if f.starts_with("domains") => "Only for these sites",
        _ => return capitalise(api_message),
    };
    format!("{what}: {rest}.")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

/// The tokens page.
pub fn page(status: StatusCode, v: &TokensView<'_>) -> Response {
    let content = html! {
        div.card {
            h1 { "Access tokens" }
            p.lead {
                "Tokens let scripts, " code { "git" } " and other tools reach your apps as "
                strong { (v.user) } " without signing in. Send one as "
                code { "Authorization: Bearer TOKEN" } ", or as the password with your user name."
            }
            @if let Some((info, secret)) = v.created {
                div.notice role="status" {
                    p.plain { "New token " strong { (info.name) } " created. Copy it now: it will not be shown again." }
                    code.secret id="new-token" { (secret) }
                }
            }
            @if let Some(n) = v.notice {
                p.notice role="status" { (n.text()) }
            }
            @if let Some(e) = v.error {
                p.error role="alert" { (e) }
            }
            @if v.tokens.is_empty() {
                p.meta { "You have no tokens yet." }
            } @else {
                ul.sessions {
                    @for t in v.tokens {
                        (row(t, v.now_ms))
                    }
                }
            }
        }
        div.card.spaced {
            h2 { "Create a token" }
            form.stack method="post" action="/tokens" {
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="64" autocomplete="off"
                    placeholder="CI deploy" aria-invalid=[v.error.filter(|e| e.starts_with("Name")).map(|_| "true")];
                label for="days" { "Expires in (days)" }
                input #days type="number" name="days" min="1" max=(v.max_days) value=(v.default_days);
                label for="domains" { "Only for these sites (optional)" }
                input #domains type="text" name="domains" autocomplete="off"
                    placeholder="git.example.com *.ci.example.com" aria-describedby="domains-help";
                p.meta #domains-help { "Host names separated by spaces. Leave empty for every app you may reach." }
                button type="submit" { "Create token" }
            }
        }
    };
    respond(
        status,
        layout(
            "Access tokens",
            Some(Viewer { user: v.user }),
            true,
            content,
        ),
    )
}

fn row(t: &AccessTokenInfo, now: u64) -> Markup {
    html! {
        li {
            div {
                div { span.device { (t.name) } }
                p.meta { code { (t.hint) "…" } }
                p.meta {
                    "Created " (when(t.created_ms, now))
                    " · expires " time datetime=(machine(t.expires_ms)) { (exact(t.expires_ms)) }
                }
                p.meta {
                    @match t.last_used_ms {
                        Some(u) => { "Last used " (when(u, now)) }
                        None => { "Never used" }
                    }
                    " · "
                    @if t.domains.is_empty() {
                        "every app"
                    } @else {
                        "only " (t.domains.join(", "))
                    }
                }
            }
            form method="post" action="/tokens/revoke" {
                input type="hidden" name="id" value=(t.id.to_string());
                button.danger type="submit" {
                    "Revoke"
                    span.sr { " " (t.name) }
                }
            }
        }
    }
}

/// A relative time with the exact one in its `title`.
fn when(ms: u64, now: u64) -> Markup {
    html! {
        time datetime=(machine(ms)) title=(exact(ms)) { (relative(now, ms)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_codes_round_trip_and_errors_read_as_words() {
        assert_eq!(
            Notice::from_code(Notice::Revoked.code()),
            Some(Notice::Revoked)
        );
        assert_eq!(Notice::from_code("<script>"), None);
        assert_eq!(
            error_text("expires_in_days: from 1 to 365"),
            "Expires in (days): from 1 to 365."
        );
        assert_eq!(
            error_text("domains[2]: a host name or *.domain"),
            "Only for these sites: a host name or *.domain."
        );
        assert_eq!(
            error_text("token limit reached (50); revoke one first"),
            "Token limit reached (50); revoke one first."
        );
    }
}
