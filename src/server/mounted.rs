//! gatehouse's own pages served under the reserved prefix on an app's host
//! (`/.gatehouse/login` on `code.example.com`, see `[proxy]
//! reserved_prefix`). The pages and answers are written for the root of
//! gatehouse's own host: `href="/sessions"`, `Location: /login`,
//! `{"redirect": "/account/security"}`. Under the prefix each such
//! same-origin path must carry the prefix, or the browser leaves
//! gatehouse for the app. [`under`] adds it to the answer, in one place,
//! instead of every page and handler knowing where it is mounted.
//!
//! What is rewritten: a `Location` that is a path; in HTML, the values of
//! the attributes that hold a URL gatehouse's pages use (`href`, `src`,
//! `action`, `formaction`, and the passkey script's `data-start`,
//! `data-finish`, `data-done`); in JSON, a `"redirect"` that is a path.
//! Never a value that is absolute (`https://app/...`) or
//! protocol-relative (`//host`), so the `rd` of a sign-in, which names the
//! app, is left alone. A body over [`MAX_BODY`] is not gatehouse's page
//! and is answered as it is.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// Largest page or JSON answer rewritten; gatehouse's are a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// The HTML attributes whose path values get the prefix.
const URL_ATTRIBUTES: [&str; 7] = [
    "href",
    "src",
    "action",
    "formaction",
    "data-start",
    "data-finish",
    "data-done",
];

/// `res`, an answer of gatehouse's own routes to a request under `prefix`
/// (`/.gatehouse`), with its same-origin paths under `prefix` too.
pub async fn under(prefix: &str, res: Response) -> Response {
    let (mut parts, body) = res.into_parts();
    if let Some(to) = parts.headers.get(LOCATION).and_then(|v| v.to_str().ok())
        && let Some(moved) = prefixed(prefix, to)
        && let Ok(v) = HeaderValue::from_str(&moved)
    {
        parts.headers.insert(LOCATION, v);
    }
    let kind = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rewrite: fn(&str, &str) -> String = if kind.starts_with("text/html") {
        html
    } else if kind.starts_with("application/json") {
        json
    } else {
        return Response::from_parts(parts, body);
    };
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "a page under the reserved prefix could not be read");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let out = rewrite(prefix, text);
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// `to` under `prefix` when it is a path on this origin (`/x`, not
/// `//host/x` or `https://...`) and not under `prefix` already.
fn prefixed(prefix: &str, to: &str) -> Option<String> {
    moves(prefix, to).then(|| format!("{prefix}{to}"))
}

/// Whether the URL `to` (or the start of one) is a same-origin path not
/// yet under `prefix`.
fn moves(prefix: &str, to: &str) -> bool {
    let under = to
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '"']));
    to.starts_with('/') && !to.starts_with("//") && !under
}

/// Every `NAME="/...` of the URL attributes, as maud writes them (double
/// quotes, the name after a space), gets the prefix.
fn html(prefix: &str, page: &str) -> String {
    let mut out = String::with_capacity(page.len() + 256);
    let mut rest = page;
    while let Some(i) = rest.find("=\"/") {
        let (head, tail) = rest.split_at(i + 2);
        out.push_str(head);
        let name = head[..i]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("");
        if URL_ATTRIBUTES.contains(&name) && moves(prefix, tail) {
            out.push_str(prefix);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A top-level `"redirect"` that is a path gets the prefix; anything else,
/// or a body that is not a JSON object, is left as it is.
fn json(prefix: &str, body: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    let Some(to) = v.get("redirect").and_then(|r| r.as_str()) else {
        return body.to_string();
    };
    match prefixed(prefix, to) {
        Some(moved) => {
            v["redirect"] = moved.into();
            v.to_string()
        }
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_move_under_the_prefix_and_nothing_else_does() {
        let page = r#"<link rel="stylesheet" href="/assets/style.css"><a href="/sessions">x</a>
<form method="post" action="/login"><input type="hidden" name="rd" value="/app/x">
<button data-start="/login/passkey/start" data-finish="/login/passkey/finish" data-rd="https://app/x">
<a href="//evil/x">y</a><a href="https://app.example.com/">z</a><p title="a=/b">="/c"</p>"#;
        let out = html("/.gatehouse", page);
        for moved in [
            r#"href="/.gatehouse/assets/style.css""#,
            r#"href="/.gatehouse/sessions""#,
            r#"action="/.gatehouse/login""#,
            r#"data-start="/.gatehouse/login/passkey/start""#,
            r#"data-finish="/.gatehouse/login/passkey/finish""#,
        ] {
            assert!(out.contains(moved), "{moved} in {out}");
        }
        for kept in [
            r#"value="/app/x""#,
            r#"data-rd="https://app/x""#,
            r#"href="//evil/x""#,
            r#"href="https://app.example.com/""#,
            r#"title="a=/b""#,
            r#"<p title="a=/b">="/c"</p>"#,
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
    }

    #[test]
    fn redirects_and_locations_that_are_paths_move() {
        let moved: serde_json::Value =
            serde_json::from_str(&json("/.g", r#"{"redirect":"/account/security","n":1}"#))
                .unwrap();
        assert_eq!(
            moved,
            serde_json::json!({"redirect": "/.g/account/security", "n": 1})
        );
        let app = r#"{"redirect":"https://app/x"}"#;
        assert_eq!(json("/.g", app), app);
        assert_eq!(json("/.g", "[1]"), "[1]");
        assert_eq!(
            prefixed("/.g", "/login?rd=x").as_deref(),
            Some("/.g/login?rd=x")
        );
        assert_eq!(prefixed("/.g", "//evil"), None);
        // An answer that already names the prefix keeps it once.
        assert_eq!(prefixed("/.g", "/.g/login?rd=x"), None);
        assert_eq!(prefixed("/.g", "/.g"), None);
        assert_eq!(prefixed("/.g", "/.gx").as_deref(), Some("/.g/.gx"));
        assert_eq!(
            html("/.g", r#"<a href="/.g/login">"#),
            r#"<a href="/.g/login">"#
        );
        assert_eq!(prefixed("/.g", "https://app/"), None);
    }
}
