//! The cross-site request guard: a state-changing request whose `Origin`
//! (or `Referer`) is not this site is refused with 403.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::server::respond::ApiError;
use crate::server::state::AppState;

/// Whether a state-changing request comes from our own pages: its `Origin`
/// (or, without one, its `Referer`) must be the public origin, or name the
/// `Host` the request was sent to (host and port) with the public origin's
/// scheme. Without a public origin the scheme the browser used is unknown
/// (TLS ends at the proxy), so only host and port are compared then.
/// Requests with neither header are not from a browser form on another site
/// (browsers send `Origin` on cross-site POSTs) and pass; the cookie's
/// `SameSite=Lax` is the second line.
///
/// `Host` is the request's authority: for HTTP/2 requests, which carry
/// `:authority` instead, the connection service copies it into `Host`
/// first ([`fill_host`]).
pub fn same_origin(config: &Config, headers: &HeaderMap) -> bool {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    let Some(source) = source else {
        return true;
    };
    let Some(url) = source.to_str().ok().and_then(|s| url::Url::parse(s).ok()) else {
        // Includes `Origin: null` (sandboxed frames, some redirects).
        return false;
    };
    if let Some(public) = &config.public_origin {
        if url.origin() == public.origin() {
            return true;
        }
        // An `http://` page must not post to an https-only deployment (nor
        // the reverse) just because it names the same host.
        if url.scheme() != public.scheme() {
            return false;
        }
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    authority.eq_ignore_ascii_case(host)
}

/// Gives a request without a `Host` header one made from the authority of
/// its URI. HTTP/2 requests carry `:authority` (hyper puts it in the URI)
/// and usually no `Host`; the cross-site check and the `rd` check then
/// compare with it like with an HTTP/1 `Host`. A request that has a `Host`
/// keeps it.
pub fn fill_host<B>(req: &mut axum::http::Request<B>) {
    if req.headers().contains_key(header::HOST) {
        return;
    }
    let Some(value) = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    else {
        return;
    };
    req.headers_mut().insert(header::HOST, value);
}

/// Middleware: refuses cross-site state-changing requests with 403.
pub async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(&state.config, req.headers()) {
        let status = axum::http::StatusCode::FORBIDDEN;
        if crate::server::respond::wants_html(req.headers()) {
            return crate::server::pages::message(
                status,
                "Request refused",
                "This form was sent from another site, so it was refused (cross-site request refused). \
                 Nothing was changed. To sign in or out, use gatehouse's own pages.",
                ("/sessions", "Go to your sessions"),
            );
        }
        return ApiError::new(status, "cross-site request refused (Origin does not match)")
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{config, headers};

    #[test]
    fn origin_scheme_must_be_the_public_origins() {
        let c = config(&[], Some("https://auth.example.com"));
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        // Same host as the request, but plain HTTP: refused.
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("origin", "http://auth.example.com")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("referer", "http://auth.example.com/login")
        ]));
        // The page's own forms pass, on the public origin or on the host
        // the request was sent to with the public origin's scheme.
        assert!(ok(&[
            ("host", "auth.example.com"),
            ("origin", "https://auth.example.com")
        ]));
        assert!(ok(&[
            ("host", "gate.internal:8443"),
            ("origin", "https://gate.internal:8443")
        ]));
        assert!(!ok(&[("host", "auth.example.com"), ("origin", "null")]));
        assert!(!ok(&[
            ("host", "auth.example.com"),
            ("origin", "https://evil.example")
        ]));
        // An http public origin refuses https pages of another origin the same way.
        let c = config(&[], Some("http://auth.example.com"));
        assert!(!same_origin(
            &c,
            &headers(&[("host", "h:1"), ("origin", "https://h:1")])
        ));
        assert!(same_origin(
            &c,
            &headers(&[("host", "h:1"), ("origin", "http://h:1")])
        ));
        // Without a public origin the scheme is unknown: host and port decide.
        let c = config(&[], None);
        for origin in ["http://h:1", "https://h:1"] {
            assert!(same_origin(
                &c,
                &headers(&[("host", "h:1"), ("origin", origin)])
            ));
        }
    }

    #[test]
    fn http2_authority_becomes_the_host() {
        let c = config(&[], None);
        // An HTTP/2 request: authority in the URI, no Host header.
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:8080/logout")
            .header("origin", "http://127.0.0.1:8080")
            .body(())
            .unwrap();
        assert!(
            !same_origin(&c, req.headers()),
            "nothing to compare with yet"
        );
        fill_host(&mut req);
        assert_eq!(req.headers()["host"], "127.0.0.1:8080");
        assert!(same_origin(&c, req.headers()));
        // A Host that is there is kept.
        let mut req = axum::http::Request::builder()
            .uri("http://other:1/x")
            .header("host", "h:2")
            .body(())
            .unwrap();
        fill_host(&mut req);
        assert_eq!(req.headers()["host"], "h:2");
        // No authority, no Host: nothing is made up.
        let mut req = axum::http::Request::builder().uri("/x").body(()).unwrap();
        fill_host(&mut req);
        assert!(req.headers().get("host").is_none());
    }

    #[test]
    fn origin_checks() {
        let c = config(&[], Some("https://auth.example.com"));
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        assert!(ok(&[]));
        assert!(ok(&[("origin", "https://auth.example.com")]));
        assert!(!ok(&[("origin", "http://auth.example.com")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://127.0.0.1:9999")
        ]));
        assert!(ok(&[
            ("host", "h:1"),
            ("referer", "https://h:1/login?rd=x")
        ]));
        assert!(!ok(&[("host", "h:1"), ("referer", "https://evil/login")]));
        let c = config(&[], None);
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&c, &headers(pairs));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        assert!(ok(&[("host", "h:1"), ("referer", "http://h:1/login?rd=x")]));
        assert!(!ok(&[("host", "h:1"), ("referer", "http://evil/login")]));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// With an https public origin, no page served over plain HTTP
            /// passes, whatever host it names and whatever the request's
            /// `Host`; an https page passes exactly when it is the public
            /// origin or names the request's `Host`.
            #[test]
            fn origin_scheme_is_checked(
                host in "[a-z.]{1,12}(:[0-9]{1,5})?",
                named in "[a-z.]{1,12}(:[0-9]{1,5})?",
                same in any::<bool>(),
                https in any::<bool>(),
                referer in any::<bool>(),
            ) {
                let c = config(&[], Some("https://auth.example.com"));
                let named = if same { host.clone() } else { named };
                let scheme = if https { "https" } else { "http" };
                let source = format!("{scheme}://{named}");
                let Ok(parsed) = url::Url::parse(&source) else { return Ok(()) };
                let mut h = HeaderMap::new();
                h.insert(header::HOST, HeaderValue::from_str(&host).unwrap());
                let key = if referer { header::REFERER } else { header::ORIGIN };
                h.insert(key, HeaderValue::from_str(&source).unwrap());
                let passed = same_origin(&c, &h);
                if !https {
                    prop_assert!(!passed, "{source} to {host}");
                } else {
                    let written = match (parsed.host_str(), parsed.port()) {
                        (Some(h), Some(p)) => format!("{h}:{p}"),
                        (Some(h), None) => h.to_string(),
                        _ => String::new(),
                    };
                    let expect = parsed.origin() == c.public_origin.as_ref().unwrap().origin()
                        || written.eq_ignore_ascii_case(&host);
                    prop_assert_eq!(passed, expect, "{} to {}", source, host);
                }
            }

            /// Origin/Referer checks never panic on any header text.
            #[test]
            fn same_origin_never_panics(origin in "(?s).{0,60}", host in "(?s).{0,30}", referer in "(?s).{0,60}") {
                let c = config(&[], Some("https://auth.example.com"));
                let mut h = HeaderMap::new();
                for (k, v) in [("origin", &origin), ("host", &host), ("referer", &referer)] {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.insert(k, v);
                    }
                }
                let _ = same_origin(&c, &h);
            }
        }
    }
}
