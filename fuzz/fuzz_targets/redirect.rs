//! Fuzzes the `rd` validator: an accepted target, resolved from the login
//! page as a browser would, lands on this site or an allowed host, and is a
//! clean header value.

#![no_main]

use std::sync::LazyLock;

use gatehouse::config::{Config, FileConfig};
use gatehouse::server::redirect::safe_redirect;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let file = FileConfig {
        public_origin: Some("https://auth.example.com".into()),
        allowed_redirect_domains: vec!["apps.example.org".into()],
        ..FileConfig::default()
    };
    Config::from_file("fuzz.toml".into(), "d".into(), file).unwrap()
});

fn allowed(host: &str) -> bool {
    host == "gate.local"
        || host == "auth.example.com"
        || host == "apps.example.org"
        || host.ends_with(".apps.example.org")
}

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("gate.local:8080"));
    let Some(out) = safe_redirect(&CONFIG, &headers, rd) else {
        return;
    };
    assert!(HeaderValue::from_str(&out).is_ok(), "{out:?}");
    assert!(!out.starts_with("//"), "{out:?}");
    let page = url::Url::parse("http://gate.local:8080/login").unwrap();
    let landed = page.join(&out).expect("an accepted target resolves");
    assert!(matches!(landed.scheme(), "http" | "https"), "{out:?}");
    assert!(landed.username().is_empty() && landed.password().is_none());
    assert!(
        allowed(landed.host_str().unwrap_or("")),
        "{rd:?} -> {out:?}"
    );
});
