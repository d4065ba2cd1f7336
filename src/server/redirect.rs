//! Where a browser may be sent after login (`rd`), and the original URL a
//! forward-auth proxy reports.
//!
//! An `rd` is followed only when it is a path on this site or an http(s) URL
//! whose host is this site, the public origin's host, or an allowed domain
//! (or a subdomain of one). Everything else falls back to `/`: an open
//! redirect would make the login page a phishing tool.

use axum::http::{HeaderMap, header};

use crate::config::Config;

/// Longest `rd` accepted.
pub const MAX_RD: usize = 2048;

/// Returns `rd` when it is safe to redirect to, else `None`.
pub fn safe_redirect(config: &Config, headers: &HeaderMap, rd: &str) -> Option<String> {
    if rd.is_empty()
        || rd.len() > MAX_RD
        || rd
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    if rd.starts_with('/') {
        // `//host` and `/\host` are protocol-relative URLs to another site.
        return (!rd.starts_with("//")).then(|| rd.to_string());
    }
    let url = url::Url::parse(rd).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let ours = config
        .public_origin
        .as_ref()
        .and_then(|o| o.host_str())
        .is_some_and(|h| h.eq_ignore_ascii_case(&host));
    let same_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_only)
        .is_some_and(|h| h.eq_ignore_ascii_case(&host));
    let allowed = config.file.allowed_redirect_domains.iter().any(|d| {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        !d.is_empty() && (host == d || host.ends_with(&format!(".{d}")))
    });
    (ours || same_host || allowed).then(|| url.to_string())
}

/// The host part of a `Host` header value (drops the port).
fn host_only(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h)
}

/// The URL the user originally asked for, as a forward-auth proxy reports it:
/// `X-Original-URL` (nginx), or `X-Forwarded-Proto` + `X-Forwarded-Host` +
/// `X-Forwarded-Uri` (Caddy, Traefik). `None` when the headers are missing
/// or do not form an http(s) URL.
pub fn original_url(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let candidate = match get("x-original-url") {
        Some(u) => u.to_string(),
        None => {
            let host = get("x-forwarded-host")?;
            let proto = get("x-forwarded-proto").unwrap_or("https");
            let uri = get("x-forwarded-uri").unwrap_or("/");
            let uri = if uri.starts_with('/') {
                uri.to_string()
            } else {
                format!("/{uri}")
            };
            format!("{proto}://{host}{uri}")
        }
    };
    if candidate.len() > MAX_RD {
        return None;
    }
    let url = url::Url::parse(&candidate).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;
    use axum::http::HeaderValue;

    fn config() -> Config {
        let file = FileConfig {
            public_origin: Some("https://auth.example.com".into()),
            allowed_redirect_domains: vec!["apps.example.org".into()],
            ..FileConfig::default()
        };
        Config::from_file("t.toml".into(), "d".into(), file).unwrap()
    }

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn relative_paths_pass() {
        let c = config();
        assert_eq!(
            safe_redirect(&c, &HeaderMap::new(), "/x?y=1").as_deref(),
            Some("/x?y=1")
        );
    }

    #[test]
    fn other_sites_are_refused() {
        let c = config();
        let h = host("gate.local:8080");
        for rd in [
            "",
            "//evil.com/x",
            "/\\evil.com",
            "https://evil.com/",
            "https://auth.example.com.evil.com/",
            "https://user@evil.com/",
            "https://auth.example.com@evil.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://evilapps.example.org/",
            "https://evil.com/\n",
            "ftp://auth.example.com/",
        ] {
            assert_eq!(safe_redirect(&c, &h, rd), None, "{rd}");
        }
    }

    #[test]
    fn own_and_allowed_hosts_pass() {
        let c = config();
        let h = host("gate.local:8080");
        for rd in [
            "https://auth.example.com/a",
            "http://gate.local:8080/b",
            "https://apps.example.org/",
            "https://wiki.apps.example.org/page?q=1",
            "https://WIKI.apps.example.org/",
        ] {
            assert!(safe_redirect(&c, &h, rd).is_some(), "{rd}");
        }
    }

    #[test]
    fn original_url_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(original_url(&h), None);
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("app.example.com"),
        );
        h.insert("x-forwarded-uri", HeaderValue::from_static("/p?q=1"));
        assert_eq!(
            original_url(&h).as_deref(),
            Some("https://app.example.com/p?q=1")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert_eq!(
            original_url(&h).as_deref(),
            Some("http://app.example.com/p?q=1")
        );
        h.insert(
            "x-original-url",
            HeaderValue::from_static("https://o.example.com/z"),
        );
        assert_eq!(original_url(&h).as_deref(), Some("https://o.example.com/z"));
        h.insert("x-original-url", HeaderValue::from_static("javascript:x"));
        assert_eq!(original_url(&h), None);
    }
}
