//! The page a person sees when the built-in proxy cannot reach an app: 502
//! when the app refused or broke the exchange, 504 when it did not answer
//! in time. It names the app, and is served on the app's own origin, so
//! its stylesheet comes from gatehouse's public origin when one is set.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::server::pages::{csp_with_assets, layout_from, respond_with_csp};

/// The page for `app` with `status` (502 or 504); `assets`: gatehouse's
/// public origin, where the stylesheet is.
pub fn page(status: StatusCode, app: &str, assets: Option<&str>) -> Response {
    let (title, text) = if status == StatusCode::GATEWAY_TIMEOUT {
        ("App not answering", "did not answer in time")
    } else {
        ("App unavailable", "is not answering")
    };
    let content = html! {
        div.card {
            h1 { (title) }
            p { "The app " strong { (app) } " " (text) ". Try again in a moment." }
        }
    };
    let csp = assets.map_or(crate::server::pages::CSP.to_string(), csp_with_assets);
    respond_with_csp(
        status,
        layout_from(assets, title, None, false, content),
        &csp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_the_app_escaped() {
        let r = page(StatusCode::BAD_GATEWAY, "<code>", None);
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("&lt;code&gt;"), "{html}");
    }
}
