//! The page a signed-in person sees when an access rule refuses them. It is
//! served through the proxy, on the app's own origin, so it holds no form:
//! signing out is a link to gatehouse's sign-out page, where a form of
//! gatehouse's own origin does it, and another account can then be used.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::server::pages::{Viewer, csp_with_assets, layout_from, respond_with_csp};

/// Longest path the page names; a longer one is cut with `…`.
const MAX_PATH_SHOWN: usize = 100;

/// What was refused, in words: the path on its host (`/private` on
/// `app.example.com`), the whole host when the rule refused its root, or
/// "this page" when the proxy named neither. The query is left out: a
/// rule refuses a page, and a query may hold what should not be echoed.
fn refused(host: &str, path: &str) -> maud::Markup {
    let path = path.split('?').next().unwrap_or_default();
    let shown: String = if path.chars().count() > MAX_PATH_SHOWN {
        let mut p: String = path.chars().take(MAX_PATH_SHOWN - 1).collect();
        p.push('…');
        p
    } else {
        path.to_string()
    };
    html! {
        @if host.is_empty() || path.is_empty() {
            "this page"
        } @else if path == "/" {
            strong { (host) }
        } @else {
            strong { (shown) } " on " strong { (host) }
        }
    }
}

/// The 403 page for `user`, refused `path` (the normalised path and query)
/// at `host`; `sign_out` is the URL of gatehouse's sign-out page. `assets`:
/// gatehouse's public origin, where the page's stylesheet and icon are,
/// since the page is on the app's.
pub fn page(user: &str, host: &str, path: &str, sign_out: &str, assets: Option<&str>) -> Response {
    let content = html! {
        div.card {
            h1 { "No access" }
            p {
                "You are signed in as " strong { (user) } ", and this account may not open "
                (refused(host, path)) "."
            }
            p { "If you have another account with access, sign out and sign in with it." }
            div.actions {
                a.button href=(sign_out) { "Sign out" }
            }
        }
    };
    let csp = assets.map_or(crate::server::pages::CSP.to_string(), csp_with_assets);
    respond_with_csp(
        StatusCode::FORBIDDEN,
        layout_from(assets, "No access", Some(Viewer { user }), false, content),
        &csp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn names_the_user_and_escapes() {
        let r = page(
            "<bob>",
            "grafana.example.com",
            "/",
            "https://auth.example.com/logout",
            Some("https://auth.example.com"),
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("style-src 'self' https://auth.example.com;"),
            "{csp}"
        );
        let html =
            String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(
            html.contains("&lt;bob&gt;") && !html.contains("<bob>"),
            "{html}"
        );
        assert!(
            html.contains("href=\"https://auth.example.com/logout\""),
            "{html}"
        );
        assert!(!html.contains("<form"), "{html}");
        assert!(
            html.contains("href=\"https://auth.example.com/assets/style.css\""),
            "{html}"
        );
        assert!(
            html.contains("may not open <strong>grafana.example.com</strong>."),
            "{html}"
        );
    }

    async fn text(r: Response) -> String {
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    /// Only `/private` was refused: the page names that path on its host,
    /// not the whole site; the query stays out; a page the proxy did not
    /// name is "this page".
    #[tokio::test]
    async fn names_the_refused_path() {
        let html = text(page(
            "bob",
            "app.example.com",
            "/private/notes?token=s3cret",
            "/logout",
            None,
        ))
        .await;
        assert!(
            html.contains(
                "may not open <strong>/private/notes</strong> on <strong>app.example.com</strong>."
            ),
            "{html}"
        );
        assert!(!html.contains("s3cret"), "{html}");
        let html = text(page("bob", "", "", "/logout", None)).await;
        assert!(html.contains("may not open this page."), "{html}");
        let long = format!("/{}", "a".repeat(300));
        let html = text(page("bob", "app.example.com", &long, "/logout", None)).await;
        assert!(html.contains(&format!("/{}…", "a".repeat(98))), "{html}");
        assert!(!html.contains(&"a".repeat(100)), "{html}");
    }
}
