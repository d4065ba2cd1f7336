//! Static assets embedded in the binary, served with a content hash as
//! `ETag`, `Cache-Control`, and `304 Not Modified` on a matching
//! `If-None-Match`. Nothing is read from disk at run time.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// Quoted strong ETag: a prefix of the body's SHA-256.
    pub etag: String,
    pub cache_control: &'static str,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str, cache_control: &'static str) -> Self {
        let d = Sha256::digest(body);
        let etag = format!(
            "\"{}\"",
            d[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Asset {
            body,
            content_type,
            etag,
            cache_control,
        }
    }

    /// The response to a GET carrying `headers`.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let matches = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == self.etag);
        let mut res = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = self.body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            r
        };
        let h = res.headers_mut();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&self.etag).expect("hex etag"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        res
    }
}

/// Cache for a day, then revalidate with the ETag.
const CACHE: &str = "public, max-age=86400";

pub static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("assets/style.css"),
        "text/css; charset=utf-8",
        CACHE,
    )
});

pub static ROBOTS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("assets/robots.txt"),
        "text/plain; charset=utf-8",
        CACHE,
    )
});

pub static SECURITY: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("assets/security.txt"),
        "text/plain; charset=utf-8",
        CACHE,
    )
});

/// The passkey buttons' script (`data-passkey`), for
/// `GET /assets/passkey.js`. Pages that load it need `script-src 'self'` and
/// `connect-src 'self'` in their policy, on top of [`crate::server::pages::CSP`].
pub static PASSKEY_JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("assets/passkey.js"),
        "text/javascript; charset=utf-8",
        CACHE,
    )
});

pub static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_bytes!("assets/icon.svg"), "image/svg+xml", CACHE));

pub async fn style(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}

pub async fn icon(headers: HeaderMap) -> Response {
    ICON.respond(&headers)
}

pub async fn passkey_js(headers: HeaderMap) -> Response {
    PASSKEY_JS.respond(&headers)
}

pub async fn robots(headers: HeaderMap) -> Response {
    ROBOTS.respond(&headers)
}

pub async fn security(headers: HeaderMap) -> Response {
    SECURITY.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_round_trip_gives_304() {
        let r = ROBOTS.respond(&HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(ROBOTS.respond(&h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(ROBOTS.respond(&h).status(), StatusCode::OK);
    }

    #[test]
    fn the_passkey_script_is_javascript_without_eval_or_dialogs() {
        let r = PASSKEY_JS.respond(&HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let js = std::str::from_utf8(PASSKEY_JS.body).unwrap();
        for banned in [
            "eval(",
            "new Function",
            "alert(",
            "innerHTML",
            "document.write",
        ] {
            assert!(!js.contains(banned), "passkey.js uses {banned}");
        }
    }
}
