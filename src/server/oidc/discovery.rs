//! Discovery (`/.well-known/openid-configuration`), the JWKS, and CORS for
//! browser-based public clients: both documents are served from memory.
//!
//! CORS is granted only to the web origins of public clients' registered
//! redirect URIs, never `*`, and never with credentials: a cross-origin
//! script may read what a public client needs (discovery, keys, the token
//! and userinfo answers), and nothing a cookie would unlock.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::state::AppState;

/// `GET /.well-known/openid-configuration`.
pub async fn configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(doc) = state.oidc.discovery.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    with_cors(&state, &headers, json(doc, "public, max-age=300"))
}

/// `GET /oidc/jwks`.
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.oidc.issuer.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match super::keys(&state).await {
        Ok(ring) => with_cors(
            &state,
            &headers,
            json(ring.jwks().to_string(), "public, max-age=300"),
        ),
        Err(e) => e.into_response(),
    }
}

fn json(body: String, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// The request's `Origin` when it is a public client's redirect origin.
fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    state
        .with_policy(|p| {
            p.clients()
                .values()
                .any(|c| c.is_public() && c.origins.iter().any(|x| x == o))
        })
        .then(|| origin.clone())
}

/// `res` with `Access-Control-Allow-Origin` when the request comes from a
/// public client's origin. `Vary: Origin` always, so a cache never hands
/// one origin's answer to another.
pub fn with_cors(state: &AppState, headers: &HeaderMap, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = allowed_origin(state, headers) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    res
}

/// `OPTIONS` on the endpoints public clients call: a CORS preflight,
/// answered `204` for an allowed origin and `403` for any other.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(o) = allowed_origin(&state, &headers) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, o),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type"),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            ),
            (header::VARY, HeaderValue::from_static("Origin")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_endpoint_under_the_issuer() {
        let d: serde_json::Value =
            serde_json::from_str(&crate::oidc::discovery_document("https://auth.example.com"))
                .unwrap();
        assert_eq!(d["issuer"], "https://auth.example.com");
        assert_eq!(d["token_endpoint"], "https://auth.example.com/oidc/token");
        assert_eq!(
            d["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    }
}
