//! Fuzzes the Cookie header parser and token parsing: no panic, and a
//! token that parses has exactly one spelling.

#![no_main]

use gatehouse::server::auth::cookie;
use gatehouse::store::SessionToken;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Split the input into up to four Cookie headers at 0x00 bytes.
    for part in data.split(|b| *b == 0).take(4) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(header::COOKIE, v);
        }
    }
    if let Some(v) = cookie(&headers, "gatehouse_session")
        && let Some(t) = SessionToken::parse(v)
    {
        assert_eq!(t.expose(), v);
    }
});
