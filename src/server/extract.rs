//! Extractors whose rejections are [`ApiError`]s: a short `{"error": ...}`
//! with a 4xx status, never the framework's internal wording and never the
//! rejected value (which may be a password or a token).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::server::respond::ApiError;

/// Longest query string looked at; the request head limit bounds it anyway.
pub const MAX_QUERY: usize = 8192;

/// Query parameters. A malformed or oversized query is a 400 naming the
/// parameter when serde can tell which one.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Parses a query string into `T` (invalid UTF-8 in a value becomes U+FFFD).
pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    if q.len() > MAX_QUERY {
        return Err(ApiError::bad_request("query string too long"));
    }
    serde_urlencoded::from_str(q).map_err(|e| {
        // serde_urlencoded's messages name the problem, not the value
        // ("invalid digit found in string", "unknown field").
        ApiError::bad_request(format!(
            "malformed query: {}",
            crate::store::truncate(e.to_string(), 120)
        ))
    })
}

/// A form body, with the body limit of the route.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| Form(v))
            .map_err(|r| body_error(r.into_response().status(), "form"))
    }
}

/// A JSON body, with the body limit of the route.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Json(v))
            .map_err(|r| body_error(r.into_response().status(), "JSON"))
    }
}

/// The error for a body that could not be read as `what`, from the status
/// the framework chose (413 too large, 415 wrong type, 400/422 malformed).
pub fn body_error(status: StatusCode, what: &str) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a {what} body"),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what} body has missing fields or fields of the wrong type"),
        ),
        s if s.is_client_error() => ApiError::new(s, format!("malformed {what} body")),
        _ => ApiError::bad_request(format!("malformed {what} body")),
    }
}

/// A JSON or form body (by `Content-Type`), with the route's body limit.
pub async fn json_or_form<T: DeserializeOwned, S: Send + Sync>(
    state: &S,
    req: axum::extract::Request,
) -> Result<T, ApiError> {
    use axum::extract::FromRequest;
    let ct = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/json") {
        Json::<T>::from_request(req, state).await.map(|Json(i)| i)
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        Form::<T>::from_request(req, state).await.map(|Form(i)| i)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/x-www-form-urlencoded or application/json",
        ))
    }
}

/// [`json_or_form`] for a body that may be left out: an empty body, of
/// any type or none, is `T::default()`.
pub async fn optional_json_or_form<T: DeserializeOwned + Default, S: Send + Sync>(
    state: &S,
    req: axum::extract::Request,
) -> Result<T, ApiError> {
    use axum::extract::FromRequest;
    let (parts, body) = req.into_parts();
    // Read with the route's limit, which travels in the extensions.
    let mut read = axum::extract::Request::new(body);
    *read.extensions_mut() = parts.extensions.clone();
    let bytes = axum::body::Bytes::from_request(read, state)
        .await
        .map_err(|r| body_error(r.into_response().status(), "JSON"))?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    json_or_form(state, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<usize>,
        since: Option<u64>,
        user: Option<String>,
    }

    #[test]
    fn bad_numbers_are_400_without_the_value() {
        let e = parse_query::<Q>("limit=secret123x").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(!e.message.contains("secret"), "{}", e.message);
        let q: Q = parse_query("user=%FF%FE&since=5").unwrap();
        assert_eq!(q.since, Some(5));
        assert!(q.user.unwrap().contains('\u{FFFD}'));
    }

    proptest! {
        /// Any query string: a value or a 400, never a panic.
        #[test]
        fn random_queries_parse_or_400(q in "(?s).{0,200}", raw in "[a-z%0-9A-F=&+;]{0,80}") {
            for q in [q.as_str(), raw.as_str()] {
                if let Err(e) = parse_query::<Q>(q) {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                }
            }
        }
    }
}
