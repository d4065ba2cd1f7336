//! The HTML pages: their shared layout, security headers and
//! Content-Security-Policy.
//!
//! Markup is written with `maud`: the compiler checks it, and every
//! interpolated value is escaped, so no page builds HTML from strings.
//! Pages carry no inline script and no inline style; the one stylesheet,
//! the icon and the passkey buttons' script (only on pages with such a
//! button, whose policy then allows it) are embedded assets served from
//! `'self'` (`crate::server::assets`).
//!
//! Referrer policy: `same-origin`. A browser then sends our own origin in
//! `Origin` on the pages' form posts (which the cross-site guard,
//! `crate::server::csrf::csrf_guard`, compares with the site), while a request to
//! another site carries no `Referer` at all. `no-referrer` would make
//! Chromium send `Origin: null` on our own forms, which the guard must
//! refuse because sandboxed frames send the same.

pub mod describe;
pub mod factors;
pub mod forbidden;
pub mod login;
pub mod oidc;
pub mod sessions;
pub mod tokens;
pub mod upstream;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// The product's name, shown on every page.
pub const PRODUCT: &str = "gatehouse";

/// Content-Security-Policy of every page: the stylesheet and icon from
/// `'self'`, forms posting only to `'self'`, no script, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page's `Referrer-Policy` (see the module docs for why).
pub const REFERRER_POLICY: &str = "same-origin";

/// [`CSP`] whose `form-action` also allows `origin`: browsers apply
/// `form-action` to the redirect that answers a form post, so the sign-in
/// page must name the origin its `rd` sends the browser to.
pub fn csp_with_form_target(origin: Option<&str>) -> String {
    match origin {
        Some(o) => CSP.replace("form-action 'self'", &format!("form-action 'self' {o}")),
        None => CSP.to_string(),
    }
}

/// `csp` that also runs the passkey script (`/assets/passkey.js`) and lets
/// it reach our own endpoints: for the pages with a passkey button only.
pub fn with_passkey_script(csp: &str) -> String {
    format!("{csp}; script-src 'self'; connect-src 'self'")
}

/// The passkey script's tag and the box its errors go to.
pub fn passkey_script() -> Markup {
    html! {
        p.error data-passkey-error hidden {}
        script src="/assets/passkey.js" defer {}
    }
}

/// [`CSP`] that also lets styles and images come from `origin`.
pub fn csp_with_assets(origin: &str) -> String {
    CSP.replace("style-src 'self'", &format!("style-src 'self' {origin}"))
        .replace("img-src 'self'", &format!("img-src 'self' {origin}"))
}

/// Sets the headers every HTML page carries, with `csp` as its policy.
pub fn html_headers(headers: &mut HeaderMap, csp: &str) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(csp).unwrap_or(HeaderValue::from_static(CSP)),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A page answer with the security headers and the default policy.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    respond_with_csp(status, page, CSP)
}

/// A page answer with the security headers and policy `csp`.
pub fn respond_with_csp(status: StatusCode, page: Markup, csp: &str) -> Response {
    let mut res = (status, page.into_string()).into_response();
    html_headers(res.headers_mut(), csp);
    res
}

/// Who the page is shown to, for the top bar.
pub struct Viewer<'a> {
    pub user: &'a str,
}

/// The frame of every page: the product's name, who is signed in, and the
/// page's content in `main`. `wide` for pages with lists.
pub fn layout(title: &str, viewer: Option<Viewer<'_>>, wide: bool, content: Markup) -> Markup {
    layout_from(None, title, viewer, wide, content)
}

/// [`layout`] with the stylesheet and icon loaded from `assets` (an origin,
/// `https://auth.example.com`) instead of the page's own origin: for a page
/// an app shows through the proxy, on the app's origin. Its policy must then
/// allow that origin (see [`csp_with_assets`]).
pub fn layout_from(
    assets: Option<&str>,
    title: &str,
    viewer: Option<Viewer<'_>>,
    wide: bool,
    content: Markup,
) -> Markup {
    let base = assets.unwrap_or("");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                meta name="color-scheme" content="light dark";
                title { (title) " · " (PRODUCT) }
                link rel="stylesheet" href={ (base) "/assets/style.css" };
                link rel="icon" href={ (base) "/assets/icon.svg" } type="image/svg+xml";
            }
            body {
                header.bar {
                    a.brand href={ (base) "/sessions" } {
                        img src={ (base) "/assets/icon.svg" } alt="";
                        (PRODUCT)
                    }
                    @if let Some(v) = viewer {
                        span.who { "Signed in as " strong { (v.user) } }
                    }
                }
                main.wide[wide] {
                    (content)
                }
            }
        }
    }
}

/// A short page that says what happened, with a way back: used for errors
/// of the pages' own form posts.
pub fn message(status: StatusCode, title: &str, text: &str, back: (&str, &str)) -> Response {
    let page = layout(
        title,
        None,
        false,
        html! {
            div.card {
                h1 { (title) }
                p.error role="alert" { (text) }
                p { a href=(back.0) { (back.1) } }
            }
        },
    );
    respond(status, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_escapes_and_names_the_product() {
        let page = layout(
            "<t>",
            Some(Viewer {
                user: "<script>x</script>",
            }),
            false,
            html! { p { "\"a\" & b" } },
        )
        .into_string();
        assert!(page.contains("&lt;t&gt; · gatehouse"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&quot;a&quot; &amp; b"), "{page}");
    }

    #[test]
    fn form_target_joins_form_action_only() {
        let c = csp_with_form_target(Some("https://app.example.com"));
        assert!(
            c.contains("form-action 'self' https://app.example.com;"),
            "{c}"
        );
        assert!(c.contains("default-src 'none'") && c.contains("frame-ancestors 'none'"));
        assert_eq!(csp_with_form_target(None), CSP);
    }
}
